#!/bin/bash
# record_lora_fixture.sh - dev-time only (never run by the tests): records the reference
# values that tests/test_lora.c checks herd's LoRA adapters against, from two
# independent oracles (../shared/oracle/README.md):
#   numpy float64: npref.py's forward pass on the base weights merged with the PEFT
#                  adapter (tools/lora_ref.py: W + alpha/r B A, PEFT's merge)
#   llama.cpp:     node-llama-cpp 3.21.1 with the same adapter as a GGUF LoRA adapter
#                  on the F32 GGUF (tools/lora_llamacpp.mjs, F32 KV cache)
# Models: `herd init` (same seed => same weights as tests/data/model_gqa.txt's); the
# adapters: build/tests/mk_lora (tests/lora_writer.h), the same values in both forms.
# Writes tests/data/lora_ref.txt. Usage (from the project root, after `make`):
#   bash tools/record_lora_fixture.sh
# Needs: node + node-llama-cpp in $ORACLE_CACHE/node, /usr/bin/python3 with numpy, jq.
set -euo pipefail
cd "$(dirname "$0")/.."
O=${HERD_ORACLE_DIR:-../shared/oracle}
export ORACLE_CACHE=${ORACLE_CACHE:-$HOME/.cache/herd-oracle}
PY=/usr/bin/python3
HERD=${HERD:-./herd}
MK=${MK_LORA:-build/tests/mk_lora}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
MIN_GAP=0.05
SHAPE="--dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 160"
SEED=1
PROMPT="256 84 104 101 32 113 117 105 99 107 32 98 114 111 119 110"   # BOS, "The quick brown"
NGEN=24
# name | mk_lora flags (the seed is searched from the given one)
CASES=(
  "all|--rank 8 --alpha 16 --b-range 0.05|3"
  "qv_rslora|--rank 4 --alpha 4 --rslora --targets qv --b-range 0.08|5"
)
csv() { echo "$*" | tr ' ' ','; }
$HERD init -o "$T/hf" --gguf "$T/F32.gguf" --type F32 $SHAPE --seed $SEED 2>/dev/null
base=$(node "$O/llamacpp.mjs" greedy "$T/F32.gguf" "$(csv $PROMPT)" $NGEN --kv f32 --json | jq -r '.generated | map(tostring) | join(" ")')
out=tests/data/lora_ref.txt
{
cat <<HDR
# herd LoRA fixture (tests/test_lora.c); written by tools/record_lora_fixture.sh, do not edit.
# Recorded $(date -u +%Y-%m-%d) with numpy $($PY -c 'import numpy; print(numpy.__version__)') (float64, npref.py on
# PEFT-merged weights: tools/lora_ref.py) and node-llama-cpp $(jq -r .version "$ORACLE_CACHE/node/node_modules/node-llama-cpp/package.json")
# (llama.cpp commit 80fb11ac, CPU, F32 KV, the adapter as a GGUF LoRA: tools/lora_llamacpp.mjs).
# Model: herd init -o DIR --gguf DIR/F32.gguf --type F32 $SHAPE --seed $SEED
# Keys: shape (herd init flags), seed, prompt IDS, n_gen N, greedy_base IDS (llama.cpp, no
# adapter); per case 'case NAME', mk_lora FLAGS (with --seed), greedy_np IDS, gaps_np G...,
# logprob_np L... (top-1 log-prob per step), greedy_llamacpp IDS, logprob_llamacpp L...,
# herd_gguf_fnv1a X (FNV-1a 64 of the file 'herd lora convert -m F32.gguf ADAPTER OUT.gguf'
# writes) and greedy_llamacpp_herd_gguf IDS (llama.cpp with that file as its adapter)
shape $SHAPE
seed $SEED
prompt $PROMPT
n_gen $NGEN
greedy_base $base
HDR
} > "$out.tmp"
for c in "${CASES[@]}"; do
    IFS='|' read -r name flags lseed <<< "$c"
    tries=0
    while :; do
        rm -rf "$T/ad" "$T/ad.gguf"
        $MK "$T/hf" "$T/ad" --gguf "$T/ad.gguf" $flags --seed $lseed
        np=$($PY tools/lora_ref.py greedy "$T/hf" "$T/ad" "$PROMPT" $NGEN)
        gmin=$(echo "$np" | sed -n 2p | tr ' ' '\n' | sort -g | head -1)
        echo "$name seed $lseed: min gap $gmin" >&2
        if $PY -c "import sys; sys.exit(0 if $gmin > $MIN_GAP else 1)"; then break; fi
        tries=$((tries + 1)); [ $tries -ge 10 ] && { echo "$name: no seed with min gap > $MIN_GAP" >&2; exit 1; }
        lseed=$((lseed + 1))
    done
    ll=$(node tools/lora_llamacpp.mjs "$T/F32.gguf" "$T/ad.gguf" "$PROMPT" $NGEN)
    ll_greedy=$(echo "$ll" | jq -r '.generated | map(tostring) | join(" ")')
    [ "$ll_greedy" = "$(echo "$np" | sed -n 1p)" ] || echo "$name: DISAGREEMENT llama.cpp != numpy" >&2
    [ "$ll_greedy" != "$base" ] || echo "$name: the adapter does not change the greedy output" >&2
    $HERD lora convert -m "$T/F32.gguf" "$T/ad" "$T/conv.gguf" 2>/dev/null
    fnv=$($PY -c 'import sys
h = 0xcbf29ce484222325
for b in open(sys.argv[1], "rb").read(): h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
print("%016x" % h)' "$T/conv.gguf")
    llc=$(node tools/lora_llamacpp.mjs "$T/F32.gguf" "$T/conv.gguf" "$PROMPT" $NGEN | jq -r '.generated | map(tostring) | join(" ")')
    [ "$llc" = "$ll_greedy" ] || echo "$name: llama.cpp with herd's GGUF != with the reference GGUF" >&2
    {
    echo "case $name"
    echo "mk_lora $flags --seed $lseed"
    echo "greedy_np $(echo "$np" | sed -n 1p)"
    echo "gaps_np $(echo "$np" | sed -n 2p)"
    echo "logprob_np $(echo "$np" | sed -n 3p)"
    echo "greedy_llamacpp $ll_greedy"
    echo "logprob_llamacpp $(echo "$ll" | jq -r '.logprobs | map(. * 1000000 | round / 1000000 | tostring) | join(" ")')"
    echo "herd_gguf_fnv1a $fnv"
    echo "greedy_llamacpp_herd_gguf $llc"
    } >> "$out.tmp"
done
mv "$out.tmp" "$out"
echo "wrote $out" >&2
