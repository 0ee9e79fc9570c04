#!/bin/bash
# End-to-end CLI tests of the KV cache type flag (--kv f32|f16|q8_0) on a model
# herd writes itself (head dim 32, so Q8_0 applies): each type generates the
# requested number of tokens, greedy output is deterministic per type, the f16 /
# q8_0 caches change the nll by less than 1% / 3%, and bad values fail with one
# 'herd: ...' line.
HERD=${HERD:-build/herd}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/lib.sh"

$HERD init -o "$T/m" --seed 4 --dim 128 --layers 2 --heads 4 --kv-heads 2 --ffn 256 2>/dev/null
$HERD init -o "$T/s" --seed 4 --dim 64 --layers 1 --heads 4 --kv-heads 2 --ffn 128 2>/dev/null
ids="256 104 101 108 108 111 32 119 111 114 108 100 33 32 116 104 105 115 32 105 115"
for kv in f32 f16 q8_0; do
    g1=$($HERD generate -m "$T/m" --kv $kv --prompt-ids "$ids" -n 20 --temp 0 --ids 2>"$T/err")
    g2=$($HERD generate -m "$T/m" --kv $kv --prompt-ids "$ids" -n 20 --temp 0 --ids -c 100 2>>"$T/err")
    check "--kv $kv generates 20 ids: $(head -c 200 "$T/err")" test "$(echo $g1 | wc -w)" = 20
    check "--kv $kv greedy deterministic" test "$g1" = "$g2"
    nll=$($HERD perplexity -m "$T/m" --kv $kv --prompt-ids "$ids" 2>"$T/err" | sed -n 's/^nll: //p')
    eval "nll_$kv=\$nll"
    check "--kv $kv perplexity: $(head -c 200 "$T/err")" test -n "$nll"
    check "--kv $kv chat" bash -c "$HERD chat -m $T/m --kv $kv -p hello -n 4 --temp 0 >/dev/null 2>&1"
    check "--kv $kv bench" bash -c "$HERD bench -m $T/m --kv $kv -p 8 -n 4 -r 1 --json 2>/dev/null | tail -1 | grep -q tg_tokens_per_s"
done
check "f16 nll within 1% of f32 ($nll_f16 vs $nll_f32)" awk -v a="$nll_f32" -v b="$nll_f16" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 0.01 * a) }'
check "q8_0 nll within 3% of f32 ($nll_q8_0 vs $nll_f32)" awk -v a="$nll_f32" -v b="$nll_q8_0" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 0.03 * a) }'
# the default is f16
d=$($HERD perplexity -m "$T/m" --prompt-ids "$ids" 2>/dev/null | sed -n 's/^nll: //p')
check "default --kv is f16 ($d vs $nll_f16)" test "$d" = "$nll_f16"

expect_err "bad --kv" "expects f32, f16 or q8_0" $HERD generate -m "$T/m" --kv q4_0 -p hi
expect_err "bad --kv in perplexity" "expects f32, f16 or q8_0" $HERD perplexity -m "$T/m" --kv x --prompt-ids "1 2"
expect_err "bad --kv in bench" "expects f32, f16 or q8_0" $HERD bench -m "$T/m" --kv x
expect_err "bad --kv in serve" "expects f32, f16 or q8_0" $HERD serve -m "$T/m" --kv x
expect_err "--kv needs a value" "needs a value" $HERD generate -m "$T/m" -p hi --kv
expect_err "q8_0 needs head dim % 32" "multiple of 32" $HERD generate -m "$T/s" --kv q8_0 -p hi -n 1

summary
