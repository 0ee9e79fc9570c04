#!/usr/bin/python3
"""lora_ref.py - dev-time helper for tools/record_lora_fixture.sh (never run by the tests).

The numpy float64 reference for a model with a PEFT LoRA adapter: the oracle's forward
pass (../shared/oracle/npref.py, imported, not copied) on weights merged in float64 as
PEFT's merge_and_unload defines them,
    W' = W + (lora_alpha / r) * B @ A      (use_rslora: lora_alpha / sqrt(r))
for every  ...layers.N.<module>.lora_A.weight / lora_B.weight  pair in the adapter.

  lora_ref.py greedy HFDIR ADAPTERDIR IDS N   greedy N ids, then per-step top1-top2 gaps,
                                              then per-step top-1 log-probs (3 lines)
IDS: "256,84,104" or "256 84 104". Run with /usr/bin/python3 (Debian numpy).
"""
import json, os, re, sys

import numpy as np

ORACLE = os.environ.get("HERD_ORACLE_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "oracle")
sys.path.insert(0, ORACLE)
from npref import Model, load_safetensors, logsoftmax  # noqa: E402


def merge(m, adir):
    cfg = json.load(open(os.path.join(adir, "adapter_config.json")))
    W = load_safetensors(os.path.join(adir, "adapter_model.safetensors"), np.float64)
    pat = re.compile(r"^(?:.*\.)?(layers\.\d+\.(?:self_attn|mlp)\.\w+_proj)\.lora_A\.weight$")
    n = 0
    for k, a in W.items():
        g = pat.match(k)
        if not g:
            continue
        b = W[k.replace("lora_A", "lora_B")]
        r = a.shape[0]
        s = cfg["lora_alpha"] / (np.sqrt(r) if cfg.get("use_rslora") else r)
        m.W["model." + g.group(1) + ".weight"] = m.W["model." + g.group(1) + ".weight"] + s * (b @ a)
        n += 1
    if n == 0:
        sys.exit("lora_ref: no LoRA pairs in " + adir)


def main():
    if len(sys.argv) != 6 or sys.argv[1] != "greedy":
        sys.exit(__doc__)
    m = Model(sys.argv[2], np.float64)
    merge(m, sys.argv[3])
    ids = [int(t) for t in sys.argv[4].replace(",", " ").split()]
    n = int(sys.argv[5])
    out, gaps, lps = [], [], []
    z = m.forward(ids, last_only=True)[-1]
    for _ in range(n):
        lp = logsoftmax(z)
        o = np.argsort(-lp)
        out.append(int(o[0]))
        gaps.append(float(lp[o[0]] - lp[o[1]]))
        lps.append(float(lp[o[0]]))
        z = m.forward([int(o[0])], last_only=True)[-1]
    print(" ".join(map(str, out)))
    print(" ".join("%.4f" % g for g in gaps))
    print(" ".join("%.6f" % v for v in lps))


if __name__ == "__main__":
    main()
