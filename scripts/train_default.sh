#!/bin/bash
# train_default.sh - reproduces models/default, herd's default model: a small Llama
# 3.1-architecture model trained from scratch with herd on Jane Austen's six novels.
#   1. scripts/prepare_corpus.sh: the text from Debian's r-cran-janeaustenr (95% of
#      each book to train on, the last 5% held out);
#   2. herd tokenizer train: a 4096-token byte-level BPE vocabulary (3840 learned
#      tokens + Llama 3's 256 special tokens);
#   3. herd data: training and held-out token files;
#   4. herd init: the shape (weights are replaced by --from-scratch);
#   5. herd train --from-scratch, warmup + cosine, held-out loss every EVAL steps;
#   6. copy the HF export into OUT (models/default) with loss.svg and the train log.
# Usage: scripts/train_default.sh [OUT]   (default models/default)
# Environment: STEPS (default 800), EVAL (default 200), THREADS (default all), WORK (default data/train_default).
# The weights depend on the thread count only through timing: every op sums in a
# fixed order, so a rerun with the same corpus gives the same model.
set -euo pipefail
OUT=${1:-models/default}
HERD=${HERD:-./herd}
WORK=${WORK:-data/train_default}
STEPS=${STEPS:-800}
THREADS=${THREADS:-0}
EVAL=${EVAL:-200}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}   # shared machines: do not spin

[ -d data/corpus ] || scripts/prepare_corpus.sh data/corpus
mkdir -p "$WORK"
train_txt=(data/corpus/*.txt)
val_txt=(data/corpus/val/*.txt)

$HERD tokenizer train -q --vocab 4096 -o "$WORK/tok" $(printf -- '-i %s ' "${train_txt[@]}")
$HERD data -m "$WORK/tok" -o "$WORK/train.tok" $(printf -- '-i %s ' "${train_txt[@]}")
$HERD data -m "$WORK/tok" -o "$WORK/val.tok" $(printf -- '-i %s ' "${val_txt[@]}")
rm -rf "$WORK/init"
$HERD init -o "$WORK/init" --tokenizer "$WORK/tok/tokenizer.model" --tie \
    --dim 192 --layers 4 --heads 6 --kv-heads 2 --head-dim 32 --ffn 512 --ctx 256 >/dev/null

rm -rf "$WORK/run"
start=$(date +%s)
$HERD train --init "$WORK/init" --from-scratch --seed 1 --data "$WORK/train.tok" \
    --eval-data "$WORK/val.tok" --eval-every "$EVAL" --out "$WORK/run" \
    --batch 8 --seq 256 --steps "$STEPS" --lr 2e-3 --warmup 30 --schedule cosine \
    --wd 0.1 --clip 1 -t "$THREADS" | tee "$WORK/train.log"
end=$(date +%s)

mkdir -p "$OUT"
cp "$WORK"/run/hf/{config.json,generation_config.json,model.safetensors,tokenizer.model,tokenizer.json} "$OUT/"
cp "$WORK/run/loss.svg" "$OUT/loss.svg"
cp "$WORK/train.log" "$OUT/train.log"
echo "train_default: $STEPS steps in $((end - start)) s; model in $OUT" | tee -a "$OUT/train.log"
