#!/bin/bash
# train_bench.sh - training tokens/s of `herd train` against tools/train_ref.py
# (PyTorch on CPU, Debian's python3-torch) on the same model, batch, sequence
# length and thread count. Not part of the test run.
#   [ROUNDS=3] bench/train_bench.sh [THREADS] [DIM] [LAYERS] [BATCH] [SEQ] [STEPS]
set -e
HERD=${HERD:-build/herd}
TH=${1:-2}; DIM=${2:-256}; LAYERS=${3:-4}; B=${4:-8}; SEQ=${5:-128}; STEPS=${6:-10}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
$HERD init -o "$T/m" --seed 1 --dim "$DIM" --layers "$LAYERS" --heads 8 --kv-heads 4 --ffn $((DIM * 3)) 2>/dev/null
# a token file of bytes from the repository's sources
n=$(( (STEPS * B + 1) * SEQ + 1 ))
perl -e 'local $/; my $s = join("", map { open(F, $_); <F> } @ARGV); $s = $s x 4;
         my @b = unpack("C*", substr($s, 0, '"$n"')); print "HERDTOK1", pack("V V Q<", 1, 512, scalar @b), pack("V*", @b)' \
    src/*.c src/train/*.c >"$T/d.tok"
ARGS="--batch $B --seq $SEQ --steps $STEPS --lr 1e-3 --warmup 2"
ROUNDS=${ROUNDS:-3}
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
# Both sides are timed the same way: tokens of all STEPS steps over the time of all
# steps (the first included); herd's from its per-step tokens_per_s, torch's from
# tools/train_ref.py (after model construction). Rounds alternate herd and torch.
: >"$T/h"; : >"$T/t"
for r in $(seq "$ROUNDS"); do
    rm -rf "$T/o"
    h=$($HERD train --init "$T/m" --data "$T/d.tok" --out "$T/o" $ARGS --no-shuffle --log-json -t "$TH" |
        sed -n 's/.*"tokens_per_s": \([0-9.]*\).*/\1/p' |
        awk -v bt=$((B * SEQ)) '{ t += bt / $1; n++ } END { printf "%.1f", n * bt / t }')
    t=$(/usr/bin/python3 tools/train_ref.py --model "$T/m" --data "$T/d.tok" $ARGS --threads "$TH" |
        sed -n 's/^tokens_per_s //p')
    echo "round $r: herd $h tokens/s, torch $t tokens/s, ratio $(awk -v h="$h" -v t="$t" 'BEGIN { printf "%.2f", h / t }')"
    echo "$h" >>"$T/h"; echo "$t" >>"$T/t"
    awk -v h="$h" -v t="$t" 'BEGIN { print h / t }' >>"$T/r"
done
echo "model dim $DIM, $LAYERS layers, vocab 512; batch $B x seq $SEQ; $TH threads; $ROUNDS rounds"
echo "herd  train: $(median <"$T/h") tokens/s (median of rounds)"
echo "torch train: $(median <"$T/t") tokens/s (median of rounds)"
echo "herd / torch: $(median <"$T/r" | awk '{ printf "%.2f", $1 }')x (median of per-round ratios)"
