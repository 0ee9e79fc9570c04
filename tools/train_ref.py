#!/usr/bin/python3
"""train_ref.py - an independent PyTorch reference for `herd train` (a dev tool:
the test suite reads the losses it recorded and never runs it).

Loads an HF directory herd wrote (config.json + model.safetensors, F32 or BF16),
builds the Llama 3.1 model in plain torch (Meta's model.py structure, HF
rotate-half RoPE order, llama3 frequency scaling), and trains it with
torch.optim.AdamW on a herd token file, walking the file as `herd train
--no-shuffle` does: micro-batch j of step s reads windows ((s*K + j)*B + b) mod
n_windows at token offset window*T. Prints one line per step: `step S loss L`,
then `tokens_per_s X`.

Needs Debian's python3-torch (run with /usr/bin/python3):
  tools/train_ref.py --model DIR --data TOKENS --batch 4 --seq 32 --steps 20 \
      --lr 1e-3 --wd 0.1 --warmup 5 --clip 1.0 [--schedule cosine|constant] [--accum K]
"""
import argparse, json, math, struct, sys, time

import numpy as np
import torch
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[a:b]
        if info["dtype"] == "F32":
            arr = np.frombuffer(raw, dtype="<f4").copy()
        elif info["dtype"] == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            sys.exit("train_ref: unsupported dtype %s" % info["dtype"])
        out[name] = torch.from_numpy(arr.reshape(info["shape"]).astype(np.float32))
    return out


def read_tokens(path):
    with open(path, "rb") as f:
        buf = f.read()
    assert buf[:8] == b"HERDTOK1", "not a herd token file"
    version, vocab, n = struct.unpack("<IIQ", buf[8:24])
    assert version == 1 and len(buf) == 24 + 4 * n
    return np.frombuffer(buf[24:], dtype="<u4").astype(np.int64)


def rope_inv_freq(cfg):
    hs = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    theta = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / (theta ** (torch.arange(0, hs, 2).float() / hs))
    rs = cfg.get("rope_scaling")
    if rs and rs.get("rope_type", rs.get("type")) == "llama3":
        # Meta's apply_scaling
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        lo_wl, hi_wl = old / lo, old / hi
        new = []
        for f in inv.tolist():
            wl = 2 * math.pi / f
            if wl < hi_wl:
                new.append(f)
            elif wl > lo_wl:
                new.append(f / factor)
            else:
                s = (old / wl - lo) / (hi - lo)
                new.append((1 - s) * f / factor + s * f)
        inv = torch.tensor(new, dtype=torch.float32)
    return inv


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Llama(torch.nn.Module):
    def __init__(self, cfg, w):
        super().__init__()
        self.cfg = cfg
        self.p = torch.nn.ParameterDict({k.replace(".", "__"): torch.nn.Parameter(v) for k, v in w.items()})
        self.tied = cfg.get("tie_word_embeddings", False) or "lm_head.weight" not in w
        self.eps = cfg.get("rms_norm_eps", 1e-5)
        self.nh = cfg["num_attention_heads"]
        self.nkv = cfg.get("num_key_value_heads", self.nh)
        self.hs = cfg.get("head_dim") or cfg["hidden_size"] // self.nh
        self.inv_freq = rope_inv_freq(cfg)

    def w(self, name):
        return self.p[name.replace(".", "__")]

    def rmsnorm(self, x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * g

    def forward(self, ids):
        B, T = ids.shape
        x = F.embedding(ids, self.w("model.embed_tokens.weight"))
        ang = torch.outer(torch.arange(T).float(), self.inv_freq)
        cos = torch.cat((ang.cos(), ang.cos()), -1)
        sin = torch.cat((ang.sin(), ang.sin()), -1)
        mask = torch.full((T, T), float("-inf")).triu(1)
        for l in range(self.cfg["num_hidden_layers"]):
            pre = "model.layers.%d." % l
            h = self.rmsnorm(x, self.w(pre + "input_layernorm.weight"))
            q = (h @ self.w(pre + "self_attn.q_proj.weight").T).view(B, T, self.nh, self.hs).transpose(1, 2)
            k = (h @ self.w(pre + "self_attn.k_proj.weight").T).view(B, T, self.nkv, self.hs).transpose(1, 2)
            v = (h @ self.w(pre + "self_attn.v_proj.weight").T).view(B, T, self.nkv, self.hs).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            rep = self.nh // self.nkv
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
            att = (q @ k.transpose(-1, -2)) / math.sqrt(self.hs) + mask
            y = torch.softmax(att, dim=-1) @ v
            y = y.transpose(1, 2).reshape(B, T, self.nh * self.hs)
            x = x + y @ self.w(pre + "self_attn.o_proj.weight").T
            h = self.rmsnorm(x, self.w(pre + "post_attention_layernorm.weight"))
            g = h @ self.w(pre + "mlp.gate_proj.weight").T
            u = h @ self.w(pre + "mlp.up_proj.weight").T
            x = x + (F.silu(g) * u) @ self.w(pre + "mlp.down_proj.weight").T
        x = self.rmsnorm(x, self.w("model.norm.weight"))
        out = self.w("model.embed_tokens.weight") if self.tied else self.w("lm_head.weight")
        return x @ out.T


def lr_at(step, steps, warmup, lr, cosine):
    if step < warmup:
        return lr * (step + 1) / warmup
    if not cosine:
        return lr
    lr_min = 0.1 * lr
    span = max(steps - warmup, 1)
    prog = min((step - warmup) / span, 1.0)
    return lr_min + 0.5 * (1 + math.cos(math.pi * prog)) * (lr - lr_min)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--seq", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--accum", type=int, default=1)
    ap.add_argument("--schedule", default="cosine")
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.95)
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = json.load(open(a.model + "/config.json"))
    model = Llama(cfg, read_safetensors(a.model + "/model.safetensors"))
    toks = read_tokens(a.data)
    B, T, K = a.batch, a.seq, a.accum
    n_windows = (len(toks) - 1) // T
    decay = [p for n, p in model.p.items() if p.dim() == 2]
    no_decay = [p for n, p in model.p.items() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps, foreach=False)
    t0 = time.time()
    for step in range(a.steps):
        opt.zero_grad()
        total = 0.0
        for j in range(K):
            rows = []
            for b in range(B):
                w = ((step * K + j) * B + b) % n_windows
                rows.append(toks[w * T: w * T + T + 1])
            batch = torch.from_numpy(np.stack(rows))
            logits = model(batch[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
            (loss / K).backward()
            total += loss.item()
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        lr = lr_at(step, a.steps, a.warmup, a.lr, a.schedule == "cosine")
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        print("step %d loss %.9g" % (step, total / K), flush=True)
    dt = time.time() - t0
    print("tokens_per_s %.1f" % (a.steps * B * T * K / dt))


if __name__ == "__main__":
    main()
