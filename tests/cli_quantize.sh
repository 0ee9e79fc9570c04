#!/bin/bash
# End-to-end tests of `herd quantize` on a model herd writes itself (dims multiples of
# 256 so the K types apply): every TYPE loads and generates, the type mixture of
# Q4_K_M follows llama.cpp's rule, HF and GGUF sources give the same model, the
# quantized models' nll on the F32 model's own greedy text stays within stated bounds,
# and bad input gives one `herd: ...` line.
HERD=${HERD:-build/herd}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/lib.sh"
# nll_within A B NATS: |B - A| <= NATS
nll_within() { awk -v a="$1" -v b="$2" -v r="$3" 'BEGIN { d = b - a; if (d < 0) d = -d; exit !(d <= r) }'; }

$HERD init -o "$T/m" --gguf "$T/m-init.gguf" --type F32 --seed 11 --dim 256 --layers 4 --heads 4 --kv-heads 2 --ffn 768 2>/dev/null
check "init" test -f "$T/m/model.safetensors"

# the F32 model's own greedy text, BOS first: a sequence the F32 model predicts well
ids="256 $($HERD generate -m "$T/m" --prompt-ids 256 -n 47 --temp 0 --ids)"
nll() { $HERD perplexity -m "$1" --prompt-ids "$ids" | sed -n 's/^nll: //p'; }

for t in F32 F16 BF16 Q8_0 Q4_0 Q6_K Q4_K_M Q5_K_M; do
    if $HERD quantize -q "$T/m" "$T/m-$t.gguf" $t 2>"$T/qerr"; then ok; else bad "quantize $t: $(cat "$T/qerr")"; continue; fi
    check "$t: loads" bash -c "$HERD info $T/m-$t.gguf > $T/info-$t"
    g=$($HERD generate -m "$T/m-$t.gguf" --prompt-ids "256 104 105" -n 8 --temp 0 --ids)
    check "$t: generates ($g)" test "$(echo "$g" | wc -w)" -ge 1
done
check "F32: info lists F32 only" grep -q "tensor types: *F32 x30 " "$T/info-F32"
check "Q6_K: every matrix Q6_K" grep -q "tensor types: *Q6_K x30 " "$T/info-Q6_K"
# Q4_K_M, 4 layers: output.weight, and attn_v + ffn_down of layers 2 and 3 (use_more_bits) are Q6_K
check "Q4_K_M: mixture Q4_K x25 Q6_K x5" grep -q "tensor types: *Q4_K x25 Q6_K x5 " "$T/info-Q4_K_M"
$HERD quantize "$T/m" "$T/log.gguf" Q4_K_M 2>"$T/log"
check "Q4_K_M: blk.3.attn_v is Q6_K" grep -q "blk.3.attn_v.weight .*-> Q6_K" "$T/log"
check "Q4_K_M: blk.1.ffn_down is Q4_K" grep -q "blk.1.ffn_down.weight .*-> Q4_K" "$T/log"
check "Q4_K_M: output is Q6_K" grep -q "output.weight .*-> Q6_K" "$T/log"
check "Q5_K_M: mixture Q5_K x25 Q6_K x5" grep -q "tensor types: *Q5_K x25 Q6_K x5 " "$T/info-Q5_K_M"

# F32: same model as herd init's F32 GGUF; GGUF source == HF source (q/k permuted once)
n_ref=$(nll "$T/m-init.gguf"); n32=$(nll "$T/m-F32.gguf")
check "F32 quantize == init F32 ($n32 vs $n_ref)" test "$n32" = "$n_ref"
$HERD quantize -q "$T/m-init.gguf" "$T/g-Q4_K_M.gguf" Q4_K_M 2>/dev/null
check "Q4_K_M from GGUF == from HF" test "$(nll "$T/g-Q4_K_M.gguf")" = "$(nll "$T/m-Q4_K_M.gguf")"
# requantizing a quantized GGUF works (Q8_0 -> Q4_0)
check "requantize Q8_0 -> Q4_0" bash -c "$HERD quantize -q $T/m-Q8_0.gguf $T/rq.gguf Q4_0 2>/dev/null && $HERD info $T/rq.gguf | grep -q 'Q4_0 x30'"

# nll bounds in nats over the F32 model (measured when written: F32 0.140, F16 equal
# (the weights are bf16), Q8_0 0.167, Q6_K 0.177, Q4_K_M 0.581, Q4_0 0.991; BF16 0.139
# where AVX-512 rounds x to bf16 for BF16 weights, equal elsewhere)
for t in F16 BF16 Q8_0 Q6_K Q5_K_M Q4_K_M Q4_0; do eval "n_$t=$(nll "$T/m-$t.gguf")"; done
echo "cli_quantize: nll F32 $n32 F16 $n_F16 BF16 $n_BF16 Q8_0 $n_Q8_0 Q6_K $n_Q6_K Q5_K_M $n_Q5_K_M Q4_K_M $n_Q4_K_M Q4_0 $n_Q4_0"
check "F16 nll == F32 ($n_F16 vs $n32)" nll_within "$n32" "$n_F16" 1e-4
check "BF16 nll within 0.01 nats of F32 ($n_BF16 vs $n32)" nll_within "$n32" "$n_BF16" 0.01
check "Q8_0 nll within 0.1 nats of F32" nll_within "$n32" "$n_Q8_0" 0.1
check "Q6_K nll within 0.1 nats of F32" nll_within "$n32" "$n_Q6_K" 0.1
check "Q4_K_M nll within 0.75 nats of F32" nll_within "$n32" "$n_Q4_K_M" 0.75
check "Q4_K_M nll below Q4_0's ($n_Q4_K_M < $n_Q4_0)" awk -v a="$n_Q4_K_M" -v b="$n_Q4_0" 'BEGIN { exit !(a < b) }'
check "Q5_K_M nll within 0.3 nats of F32" nll_within "$n32" "$n_Q5_K_M" 0.3
check "Q5_K_M nll below Q4_K_M's ($n_Q5_K_M < $n_Q4_K_M)" awk -v a="$n_Q5_K_M" -v b="$n_Q4_K_M" 'BEGIN { exit !(a < b) }'

# K types on rows not a multiple of 256 fall back to Q8_0
$HERD init -o "$T/s" --seed 2 --dim 64 --layers 1 --heads 4 --kv-heads 2 --ffn 160 2>/dev/null
check "K fallback to Q8_0" bash -c "$HERD quantize -q $T/s $T/s.gguf Q4_K_M 2>/dev/null && $HERD info $T/s.gguf | grep -q 'tensor types: *Q8_0 x9 '"

expect_err "bad TYPE" "unknown TYPE" $HERD quantize "$T/m" "$T/x.gguf" Q3_K
expect_err "missing IN" "not found" $HERD quantize "$T/nope" "$T/x.gguf" Q8_0
expect_err "missing TYPE" "expected IN OUT TYPE" $HERD quantize "$T/m" "$T/x.gguf"
expect_err "unwritable OUT" "$T/no/dir" $HERD quantize -q "$T/m" "$T/no/dir/x.gguf" Q8_0
check "--help" bash -c "$HERD quantize --help | grep -q Q4_K_M"

summary
