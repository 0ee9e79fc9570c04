#!/bin/bash
# End-to-end tests of `herd train` on models herd writes itself: per-step losses
# against recorded PyTorch runs (tools/train_ref.py; fixtures tests/data/train_ref_*.txt),
# HF and GGUF starts agreeing, loss going down, SIGKILL + --resume ending with
# byte-identical weights, the exported GGUF and HF dir loading in herd, and bad
# data files rejected with one `herd: ...` line without touching a checkpoint.
HERD=${HERD:-build/herd}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/lib.sh"
# mktok FILE VOCAB ID...: a token file (tokfile.h layout)
mktok() { local f=$1 v=$2; shift 2; perl -e '($v,@i)=@ARGV; print "HERDTOK1", pack("V V Q<", 1, $v, scalar @i), pack("V*", @i)' "$v" "$@" >"$f"; }
losses() { sed -n 's/.*"loss": \([^,]*\),.*/\1/p' "$1"; }
# cmp_losses WHAT HERD_JSON FIXTURE: 1e-4 relative at step 0, 1e-3 between, 2e-3 at the last step
cmp_losses() {
    paste <(losses "$2") <(grep -v '^#' "$3" | awk '{print $NF}') | awk -v what="$1" '
        { n++; d = ($1 - $2) / $2; if (d < 0) d = -d; tol = n == 1 ? 1e-4 : 1e-3; last = d
          if (n > 1 && d > tol) { printf "%s: step %d loss %s vs %s (rel %g)\n", what, n - 1, $1, $2, d; bad = 1 }
          if (n == 1 && d > tol) { printf "%s: step 0 loss %s vs %s (rel %g)\n", what, $1, $2, d; bad = 1 } }
        END { if (n != 20 || last > 2e-3) { printf "%s: %d steps, last rel %g\n", what, n, last; bad = 1 }
              exit bad }' >&2
}
fixture_arg() { sed -n "s/^# $1: //p" "$2"; }

# ---- losses match PyTorch ------------------------------------------------------
for fx in a b; do  # fixture a runs with 2 threads, b with 1
    F=tests/data/train_ref_$fx.txt
    $HERD init -o "$T/m$fx" --gguf "$T/m$fx.gguf" --type F32 $(fixture_arg init $F) 2>/dev/null
    $HERD train --init "$T/m$fx" --data tests/data/train_ref.tok --out "$T/o$fx" $(fixture_arg args $F) \
        --no-shuffle --log-json -t $([ $fx = a ] && echo 2 || echo 1) >"$T/log$fx" 2>"$T/err$fx"
    check "train runs ($fx): $(head -c 300 "$T/err$fx")" test -s "$T/o$fx/hf/model.safetensors"
    check "losses match torch ($fx)" cmp_losses "fixture $fx" "$T/log$fx" "$F"
    check "json has lr, grad_norm, tokens_per_s ($fx)" grep -q '"lr": .*"grad_norm": .*"tokens_per_s": ' "$T/log$fx"
done
# the same run started from the GGUF (Meta's interleaved q/k order) gives the same losses
F=tests/data/train_ref_a.txt
$HERD train --init "$T/ma.gguf" --data tests/data/train_ref.tok --out "$T/og" $(fixture_arg args $F) \
    --no-shuffle --log-json -t 2 >"$T/logg" 2>&1
check "GGUF start matches torch" cmp_losses "gguf start" "$T/logg" "$F"
check "loss.svg written" grep -q "<polyline" "$T/oa/loss.svg"
check "F32 export says torch_dtype float32" grep -q '"torch_dtype": "float32"' "$T/oa/hf/config.json"

# ---- exports load and agree -----------------------------------------------------
g1=$($HERD generate -m "$T/oa/model.gguf" -p "The miller" -n 12 --temp 0 --ids 2>"$T/gerr")
g2=$($HERD generate -m "$T/oa/hf" -p "The miller" -n 12 --temp 0 --ids 2>>"$T/gerr")
check "exported GGUF generates: $(head -c 200 "$T/gerr")" test -n "$g1"
check "exported GGUF and HF dir agree" test "$g1" = "$g2"

# ---- --from-scratch: same shape, training initialisation (loss near ln V at step 0)
$HERD train --init "$T/ma" --from-scratch --data tests/data/train_ref.tok --out "$T/os" --batch 2 \
    --seq 16 --steps 1 --lr 1e-3 --log-json -t 1 >"$T/logs" 2>&1
s0=$(losses "$T/logs" | head -1); v=$(sed -n 's/.*"vocab_size": \([0-9]*\).*/\1/p' "$T/ma/config.json")
check "--from-scratch starts near ln V (loss $s0, V $v)" \
    awk -v a="$s0" -v v="$v" 'BEGIN { exit !(a > 0.9 * log(v) && a < 1.1 * log(v)) }'

# ---- loss goes down on a repetitive file ----------------------------------------
$HERD train --init "$T/ma" --data tests/data/train_ref.tok --out "$T/od" --batch 4 --seq 32 \
    --steps 40 --lr 3e-3 --warmup 4 --log-json -t 1 >"$T/logd" 2>&1
first=$(losses "$T/logd" | head -1); last=$(losses "$T/logd" | tail -1)
check "loss decreases ($first -> $last)" awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < 0.5 * a) }'
$HERD train --init "$T/ma" --data tests/data/train_ref.tok --out "$T/oh" --batch 2 --seq 16 --steps 2 \
    --lr 1e-3 --eval-data tests/data/train_ref.tok -t 1 >"$T/logh" 2>&1
check "human progress line" grep -q "step 2/2 | loss .* tok/s | ETA" "$T/logh"
check "eval loss reported" grep -q "eval loss" "$T/logh"

# ---- SIGKILL + --resume is bit-identical ----------------------------------------
RARGS=(--init "$T/ma" --data tests/data/train_ref.tok --batch 4 --seq 32 --steps 60 --lr 2e-3
       --warmup 5 --save-every 3 --seed 9 --log-json -t 1)
$HERD train "${RARGS[@]}" --out "$T/full" >"$T/logfull" 2>&1
$HERD train "${RARGS[@]}" --out "$T/killed" >"$T/logk" 2>&1 &
pid=$!
for _ in $(seq 1 600); do grep -q '"step": [234][0-9],' "$T/logk" 2>/dev/null && break; sleep 0.01; done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
check "run was killed mid-way" test ! -e "$T/killed/hf/model.safetensors"
check "a checkpoint survived the kill" test -s "$T/killed/checkpoint.bin"
$HERD train "${RARGS[@]}" --out "$T/killed" --resume >"$T/logr" 2>&1
check "resume finished: $(tail -c 200 "$T/logr")" test -s "$T/killed/hf/model.safetensors"
check "resumed safetensors byte-identical" cmp -s "$T/full/hf/model.safetensors" "$T/killed/hf/model.safetensors"
check "resumed GGUF byte-identical" cmp -s "$T/full/model.gguf" "$T/killed/model.gguf"
check "resumed checkpoint byte-identical" cmp -s "$T/full/checkpoint.bin" "$T/killed/checkpoint.bin"

# ---- bad data: clear errors, checkpoint untouched -------------------------------
cp "$T/full/checkpoint.bin" "$T/ckpt.before"
BARGS=(--init "$T/ma" --out "$T/full" --batch 2 --seq 16 --steps 80 --lr 1e-3 --resume)
: >"$T/empty.tok"
expect_err "empty data" "empty" $HERD train "${BARGS[@]}" --data "$T/empty.tok"
mktok "$T/zero.tok" 512
expect_err "no tokens" "no tokens" $HERD train "${BARGS[@]}" --data "$T/zero.tok"
head -c -6 tests/data/train_ref.tok >"$T/trunc.tok"
expect_err "truncated data" "truncated" $HERD train "${BARGS[@]}" --data "$T/trunc.tok"
mktok "$T/oov.tok" 512 1 2 3 700 4
expect_err "id out of range" "id 700 at token 3 (byte offset 36)" $HERD train "${BARGS[@]}" --data "$T/oov.tok"
mktok "$T/bigv.tok" 100000 1 2 3 4
expect_err "vocab larger than the model's" "vocabulary size 100000 but the model's is 512" \
    $HERD train "${BARGS[@]}" --data "$T/bigv.tok"
printf 'hello world, not tokens' >"$T/text.tok"
expect_err "not a token file" "magic" $HERD train "${BARGS[@]}" --data "$T/text.tok"
expect_err "missing data" "nope.tok" $HERD train "${BARGS[@]}" --data "$T/nope.tok"
expect_err "bad eval data" "truncated" $HERD train "${BARGS[@]}" --data tests/data/train_ref.tok --eval-data "$T/trunc.tok"
mktok "$T/short.tok" 512 1 2 3
expect_err "data shorter than a sequence" "smaller --seq" $HERD train "${BARGS[@]}" --data "$T/short.tok"
check "checkpoint untouched by bad data" cmp -s "$T/full/checkpoint.bin" "$T/ckpt.before"
expect_err "resume with another batch" "resume with the same values" \
    $HERD train "${BARGS[@]}" --data tests/data/train_ref.tok
check "checkpoint untouched by a refused resume" cmp -s "$T/full/checkpoint.bin" "$T/ckpt.before"
expect_err "missing --lr" "--lr" $HERD train --init "$T/ma" --data tests/data/train_ref.tok --out "$T/x" --batch 1 --seq 8 --steps 1
check "help" $HERD train --help >/dev/null

summary
