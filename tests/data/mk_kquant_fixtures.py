#!/usr/bin/python3
"""mk_kquant_fixtures.py - writes tests/data/kquant_fixtures.bin for tests/test_quant.c.

Independent references, both from the llama.cpp source that node-llama-cpp bundles
(commit 80fb11ac):
  * quantized bytes: ggml's own quantize_row_q{4,5,6}_K_ref (ggml/src/ggml-quants.c,
    compiled here with gcc -O2 for plain x86-64, no FMA contraction, as herd's ref/ is);
  * dequantized floats: gguf-py's numpy dequantizers (gguf/quants.py), which share no
    code with ggml's C or with herd.
Rows: random data of several shapes (normal, heavy tails, all-positive, a zero block,
tiny values). Each type also gets one row of random block bytes (dequant only) so every
bit of the scale packing is exercised.

usage: /usr/bin/python3 tests/data/mk_kquant_fixtures.py LLAMA_SRC [OUT]
  LLAMA_SRC: git clone ~/.cache/herd-oracle/node/node_modules/node-llama-cpp/llama/gitRelease.bundle

File layout (little-endian): "HKQ1", u32 n_records; per record: u32 type (herd_type),
u32 has_x, u32 n (elements), [n f32 x], row bytes, n f32 y.
"""
import os, struct, subprocess, sys, tempfile
import numpy as np

src = sys.argv[1]
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "kquant_fixtures.bin")
sys.path.insert(0, os.path.join(src, "gguf-py"))
from gguf import quants  # noqa: E402
from gguf.constants import GGMLQuantizationType as Q  # noqa: E402

HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <stdnoreturn.h>
#define GGML_COMMON_DECL_C
#include "ggml-common.h"
void quantize_row_q4_K_ref(const float *x, void *y, int64_t k);
void quantize_row_q5_K_ref(const float *x, void *y, int64_t k);
void quantize_row_q6_K_ref(const float *x, void *y, int64_t k);
/* stubs for the few ggml.c symbols ggml-quants.o references */
noreturn void ggml_abort(const char *f, int l, const char *fmt, ...) { (void)f; (void)l; (void)fmt; abort(); }
size_t ggml_row_size(int t, int64_t n) { (void)t; (void)n; abort(); }
const char *ggml_type_name(int t) { (void)t; return "?"; }
size_t ggml_type_size(int t) { (void)t; abort(); }
int main(int argc, char **argv) {
    int type = atoi(argv[1]); long n = atol(argv[2]);
    float *x = malloc(n * 4); unsigned char *y = malloc(n);
    if (fread(x, 4, n, stdin) != (size_t)n) return 1;
    size_t bs = type == 12 ? 144 : type == 13 ? 176 : 210;
    if (type == 12) quantize_row_q4_K_ref(x, y, n);
    if (type == 13) quantize_row_q5_K_ref(x, y, n);
    if (type == 14) quantize_row_q6_K_ref(x, y, n);
    fwrite(y, 1, n / 256 * bs, stdout);
    return 0;
}
"""

tmp = tempfile.mkdtemp()
g = os.path.join(src, "ggml")
with open(os.path.join(tmp, "h.c"), "w") as f:
    f.write(HARNESS)
inc = ["-I" + os.path.join(g, "include"), "-I" + os.path.join(g, "src"), "-I" + os.path.join(g, "src", "ggml-cpu")]
exe = os.path.join(tmp, "h")
subprocess.check_call(["gcc", "-O2", "-o", exe, os.path.join(tmp, "h.c"),
                       os.path.join(g, "src", "ggml-quants.c")] + inc + ["-lm"])

rng = np.random.default_rng(20240901)
def rows():
    yield rng.standard_normal(512).astype(np.float32) * 0.02                # two blocks
    yield (rng.standard_t(2, 256) * 0.05).astype(np.float32)            # heavy tails
    yield np.abs(rng.standard_normal(256)).astype(np.float32) + 0.5        # all positive: min > 0
    r = rng.standard_normal(512).astype(np.float32); r[:256] = 0; yield r  # a zero block
    yield (rng.standard_normal(256) * 1e-6).astype(np.float32)           # tiny
    r = rng.standard_normal(256).astype(np.float32); r[7] = 40; r[200] = -35; yield r  # outliers

BLOCK = {Q.Q4_K: 144, Q.Q5_K: 176, Q.Q6_K: 210}
records = []
for qt in (Q.Q4_K, Q.Q5_K, Q.Q6_K):
    for x in rows():
        q = subprocess.run([exe, str(int(qt)), str(x.size)], input=x.tobytes(), capture_output=True, check=True).stdout
        y = quants.dequantize(np.frombuffer(q, np.uint8), qt).astype(np.float32).reshape(-1)
        records.append((int(qt), x, q, y))
    # random bytes, d/dmin set to sane f16 values (random f16 may be inf/nan)
    nb = 2
    b = rng.integers(0, 256, (nb, BLOCK[qt]), dtype=np.uint8)
    d = (rng.standard_normal((nb, 2)) * 0.01).astype(np.float16).view(np.uint8).reshape(nb, 4)
    if qt == Q.Q6_K: b[:, 208:210] = d[:, :2]
    else: b[:, 0:4] = d
    q = b.tobytes()
    y = quants.dequantize(np.frombuffer(q, np.uint8), qt).astype(np.float32).reshape(-1)
    records.append((int(qt), None, q, y))

with open(out, "wb") as f:
    f.write(b"HKQ1" + struct.pack("<I", len(records)))
    for t, x, q, y in records:
        f.write(struct.pack("<III", t, x is not None, y.size))
        if x is not None: f.write(x.astype("<f4").tobytes())
        f.write(q)
        f.write(y.astype("<f4").tobytes())
print(f"wrote {out}: {len(records)} records, {os.path.getsize(out)} bytes")
