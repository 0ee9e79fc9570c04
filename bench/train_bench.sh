#!/bin/bash
# train_bench.sh - training tokens/s of `herd train` against tools/train_ref.py
# (PyTorch on CPU, Debian's python3-torch) on the same model, batch, sequence
# length and thread count. Not part of the test run.
#   bench/train_bench.sh [THREADS] [DIM] [LAYERS] [BATCH] [SEQ] [STEPS]
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
herd_tps=$($HERD train --init "$T/m" --data "$T/d.tok" --out "$T/o" $ARGS --no-shuffle --log-json -t "$TH" |
           sed -n 's/.*"tokens_per_s": \([0-9.]*\).*/\1/p' | tail -n +2 | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
torch_tps=$(/usr/bin/python3 tools/train_ref.py --model "$T/m" --data "$T/d.tok" $ARGS --threads "$TH" |
            sed -n 's/^tokens_per_s //p')
echo "model dim $DIM, $LAYERS layers, vocab 512; batch $B x seq $SEQ; $TH threads"
echo "herd  train: $herd_tps tokens/s (median step)"
echo "torch train: $torch_tps tokens/s (whole run incl. first step)"
awk -v h="$herd_tps" -v t="$torch_tps" 'BEGIN { printf "herd / torch: %.2fx\n", h / t }'
