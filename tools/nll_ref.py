#!/usr/bin/python3
"""nll_ref.py - dev-time helper for tools/record_fixtures.sh (never run by the tests).

Uses the oracle's numpy float64 reference (../shared/oracle/npref.py, imported, not
copied) on a Hugging Face directory:

  nll_ref.py nll HFDIR IDS          mean -log p(ids[i+1] | ids[..i]) over i = 0..n-2 (float64)
  nll_ref.py greedy HFDIR IDS N     greedy N ids + per-step top1-top2 gaps, with the prompt
                                    prefilled in chunks of 512 (npref.py's own greedy does
                                    the whole prompt at once: (T, T) float64 scores per head)
  nll_ref.py xorshift N             the long-context prompt: 256 (BOS), then N-1 bytes from
                                    xorshift64 (state 88172645463325252; s ^= s<<13, s ^= s>>7,
                                    s ^= s<<17; byte = (s >> 24) & 255), one line of ids
  nll_ref.py llnll JSONFILE         mean NLL from `llamacpp.mjs logits ... --top V --json` output
IDS: "256,84,104" or "256 84 104". Run with /usr/bin/python3 (Debian numpy).
"""
import json, os, sys

import numpy as np

ORACLE = os.environ.get("HERD_ORACLE_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "oracle")
sys.path.insert(0, ORACLE)
from npref import Model, logsoftmax  # noqa: E402


def parse_ids(s):
    return [int(t) for t in s.replace(",", " ").split()]


def xorshift_prompt(n):
    s, m, out = 88172645463325252, (1 << 64) - 1, [256]
    while len(out) < n:
        s ^= (s << 13) & m
        s ^= s >> 7
        s ^= (s << 17) & m
        out.append((s >> 24) & 255)
    return out


def main():
    cmd = sys.argv[1]
    if cmd == "xorshift":
        print(" ".join(map(str, xorshift_prompt(int(sys.argv[2])))))
    elif cmd == "llnll":
        d = json.load(open(sys.argv[2]))
        ids = d["prompt"]
        tot = 0.0
        for p in d["positions"]:
            i = p["pos"]
            if i + 1 >= len(ids):
                continue
            lp = dict((t, v) for t, v in p["top"])
            v = lp[ids[i + 1]]  # KeyError if --top did not cover the vocabulary
            if not v > -1e30:
                sys.exit("llnll: log-prob of id %d at pos %d underflowed (-inf)" % (ids[i + 1], i))
            tot -= v
        print("%.9f" % (tot / (len(ids) - 1)))
    elif cmd == "nll":
        ids = parse_ids(sys.argv[3])
        m = Model(sys.argv[2], np.float64)
        lp = logsoftmax(m.forward(ids))
        nll = -np.mean([lp[i, ids[i + 1]] for i in range(len(ids) - 1)])
        print("%.12f" % nll)
    elif cmd == "greedy":
        ids, n = parse_ids(sys.argv[3]), int(sys.argv[4])
        m = Model(sys.argv[2], np.float64)
        for i in range(0, len(ids), 512):
            lg = m.forward(ids[i:i + 512], last_only=True)[-1]
        gen, gaps = [], []
        for _ in range(n):
            lp = logsoftmax(lg[None])[0]
            o = np.argsort(-lp, kind="stable")[:2]
            gen.append(int(o[0]))
            gaps.append(float(lp[o[0]] - lp[o[1]]))
            lg = m.forward([gen[-1]], last_only=True)[-1]
        print(" ".join(map(str, gen)))
        print(" ".join("%.4f" % g for g in gaps))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
