#!/bin/bash
# record_fixtures.sh - dev-time only (never run by the tests): records the reference
# values that tests/test_model.c checks herd's forward pass against, from the two
# independent oracles in ../shared/oracle (README.md there):
#   llama.cpp (node-llama-cpp 3.21.1, prebuilt llama.cpp commit 80fb11ac) via llamacpp.mjs
#   numpy float64 (npref.py's Model, through tools/nll_ref.py)
# on random-weight models that `herd init` writes (same seed => same bf16 weights in
# every form; the GGUF types differ only in how those weights are stored).
# Writes tests/data/model_<name>.txt (format documented at the top of each file).
# Usage (from the project root, after `make`): bash tools/record_fixtures.sh [name...]
# Needs: node + node-llama-cpp in $ORACLE_CACHE/node, /usr/bin/python3 with numpy, jq.
set -euo pipefail
cd "$(dirname "$0")/.."
O=${HERD_ORACLE_DIR:-../shared/oracle}
export ORACLE_CACHE=${ORACLE_CACHE:-$HOME/.cache/herd-oracle}
PY=/usr/bin/python3
HERD=${HERD:-./herd}
NODE_VER=$(node --version)
NLC_VER=$(jq -r .version "$ORACLE_CACHE/node/node_modules/node-llama-cpp/package.json")
NP_VER=$($PY -c 'import numpy; print(numpy.__version__)')
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
MIN_GAP=0.05   # wanted minimum top1-top2 log-prob gap of the F32 greedy over all steps

# name | shape flags | first seed to try | prompt text (ids: 256 then its bytes) | n_gen | long prompt length (0: none)
MODELS=(
  "gqa|--dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 160|1|The quick brown fox|32|0"
  "tied|--dim 96 --layers 2 --heads 4 --kv-heads 1 --head-dim 32 --ffn 256 --tie|11|Hello, world! 123|32|0"
  "mha|--dim 128 --layers 4 --heads 8 --kv-heads 8 --ffn 352|21|Once upon a time|32|0"
  "long|--dim 64 --layers 2 --heads 2 --kv-heads 1 --ffn 160|31||16|8300"
)

ids_of() { local s=256; local t=$1; for ((i = 0; i < ${#t}; i++)); do s="$s $(printf '%d' "'${t:i:1}")"; done; echo "$s"; }
csv() { echo "$*" | tr ' ' ','; }

record() {
    local name=$1 shape=$2 seed=$3 text=$4 ngen=$5 nlong=$6
    local ids ctxflag=""
    if [ "$nlong" -gt 0 ]; then
        ids=$($PY tools/nll_ref.py xorshift "$nlong")
        ctxflag="--ctx $((nlong + ngen + 64)) --batch 512"
    else
        ids=$(ids_of "$text")
    fi
    local D="$T/$name" tries=0 j gap
    # pick the first seed whose llama.cpp F32 greedy has every gap above MIN_GAP
    while :; do
        rm -rf "$D"; mkdir -p "$D"
        $HERD init -o "$D/hf" --gguf "$D/F32.gguf" --type F32 $shape --seed "$seed" 2>/dev/null
        node "$O/llamacpp.mjs" greedy "$D/F32.gguf" "$(csv $ids)" "$ngen" --kv f32 $ctxflag --json > "$D/g_f32.json"
        gap=$(jq .minMargin "$D/g_f32.json")
        echo "$name seed $seed: min gap $gap" >&2
        if $PY -c "import sys; sys.exit(0 if $gap > $MIN_GAP else 1)"; then break; fi
        tries=$((tries + 1)); [ $tries -ge 10 ] && { echo "$name: no seed with min gap > $MIN_GAP" >&2; exit 1; }
        seed=$((seed + 1))
    done
    local out=tests/data/model_$name.txt
    local np_greedy np_gaps np_line
    np_line=$($PY tools/nll_ref.py greedy "$D/hf" "$(csv $ids)" "$ngen")
    np_greedy=$(echo "$np_line" | sed -n 1p); np_gaps=$(echo "$np_line" | sed -n 2p)
    local ll_greedy ll_gaps agree
    ll_greedy=$(jq -r '.generated | map(tostring) | join(" ")' "$D/g_f32.json")
    ll_gaps=$(jq -r '.steps | map(.margin * 10000 | round / 10000 | tostring) | join(" ")' "$D/g_f32.json")
    if [ "$ll_greedy" = "$np_greedy" ]; then agree="llama.cpp F32 greedy == numpy float64 greedy (all $ngen ids)"
    else agree="DISAGREEMENT: llama.cpp F32 greedy != numpy float64 greedy"; echo "$name: $agree" >&2; fi
    {
    cat <<HDR
# herd forward-pass fixture '$name' (tests/test_model.c); written by tools/record_fixtures.sh,
# do not edit. Recorded $(date -u +%Y-%m-%d) with node-llama-cpp $NLC_VER (llama.cpp commit 80fb11ac,
# CPU), node $NODE_VER, numpy $NP_VER (Debian /usr/bin/python3, float64).
# Model: herd init -o DIR --gguf DIR/F32.gguf --type F32 $shape --seed $seed
#   (and --type BF16 / --type Q8_0 / --type Q4_0 into other files: same seed => same bf16 weights);
#   byte vocabulary, 512 tokens (0..255 bytes, 256 BOS), llama3 rope scaling factor 8.
# Format: one 'key value...' per line, '#' starts a comment line. Keys:
#   dim layers heads kv_heads head_dim (0: dim/heads) ffn tie seed: herd_init_model config
#   prompt IDS          prompt ids (absent for a long-context fixture)
#   long_prompt N       prompt = tools/nll_ref.py xorshift N (256, then xorshift64 bytes)
#   n_gen N             greedy length
#   greedy_f32 IDS      llama.cpp greedy on F32.gguf:
#                         node llamacpp.mjs greedy F32.gguf IDS N --kv f32 [--ctx C --batch 512] --json
#   gaps_f32 G...       its per-step top1-top2 log-prob gaps (= logit gaps)
#   greedy_np IDS       numpy float64 greedy on the HF dir (tools/nll_ref.py greedy HFDIR IDS N,
#   gaps_np G...          same as npref.py greedy but with the prompt prefilled in chunks)
#   nll_np X            numpy float64 mean NLL of prompt ids 1..n-1 given their prefix
#                         (tools/nll_ref.py nll HFDIR IDS)
#   nll_q8 / nll_q4 X   llama.cpp mean NLL of the same ids on the Q8_0 / Q4_0 GGUF:
#                         node llamacpp.mjs logits FILE IDS --top 512 --kv f32 --json | nll_ref.py llnll
#   greedy_q8 / greedy_q4 IDS, gaps_q8 / gaps_q4 G...: llama.cpp greedy on those files (--kv f32)
#   greedy_bf16 IDS     llama.cpp greedy on BF16.gguf (rounds activations to bf16 before each
#   gaps_bf16 G...        matmul), flags as for greedy_f32; its per-step gaps
#   nll_bf16 X          llama.cpp mean NLL of the prompt ids on BF16.gguf, as nll_q8
#                         (absent for a long-context fixture)
# Cross-check: $agree.
HDR
    local -a sh=($shape); local dim=64 layers=2 heads=4 kvh=2 hd=0 ffn=192 tie=0
    for ((k = 0; k < ${#sh[@]}; k++)); do
        case ${sh[k]} in
            --dim) dim=${sh[k+1]};; --layers) layers=${sh[k+1]};; --heads) heads=${sh[k+1]};;
            --kv-heads) kvh=${sh[k+1]};; --head-dim) hd=${sh[k+1]};; --ffn) ffn=${sh[k+1]};; --tie) tie=1;;
        esac
    done
    echo "dim $dim"; echo "layers $layers"; echo "heads $heads"; echo "kv_heads $kvh"
    echo "head_dim $hd"; echo "ffn $ffn"; echo "tie $tie"; echo "seed $seed"
    if [ "$nlong" -gt 0 ]; then echo "long_prompt $nlong"; else echo "prompt $ids"; fi
    echo "n_gen $ngen"
    echo "greedy_f32 $ll_greedy"; echo "gaps_f32 $ll_gaps"
    echo "greedy_np $np_greedy"; echo "gaps_np $np_gaps"
    [ "$nlong" -gt 0 ] || echo "nll_np $($PY tools/nll_ref.py nll "$D/hf" "$(csv $ids)")"
    # the same weights as BF16 (llama.cpp rounds activations to bf16), Q8_0, Q4_0 GGUFs; a
    # long-context fixture records BF16's greedy only
    local q tag
    for q in BF16 Q8_0 Q4_0; do
        [ "$nlong" -gt 0 ] && [ "$q" != BF16 ] && continue
        tag=$(echo "$q" | tr 'A-Z' 'a-z' | sed 's/_0//')
        $HERD init -o "$D/hf_$q" --gguf "$D/$q.gguf" --type "$q" $shape --seed "$seed" 2>/dev/null
        cmp -s "$D/hf/model.safetensors" "$D/hf_$q/model.safetensors" || { echo "$name: $q weights differ" >&2; exit 1; }
        if [ "$nlong" -eq 0 ]; then
            node "$O/llamacpp.mjs" logits "$D/$q.gguf" "$(csv $ids)" --top 512 --kv f32 --json > "$D/l_$q.json"
            echo "nll_$tag $($PY tools/nll_ref.py llnll "$D/l_$q.json")"
        fi
        node "$O/llamacpp.mjs" greedy "$D/$q.gguf" "$(csv $ids)" "$ngen" --kv f32 $ctxflag --json > "$D/g_$q.json"
        echo "greedy_$tag $(jq -r '.generated | map(tostring) | join(" ")' "$D/g_$q.json")"
        echo "gaps_$tag $(jq -r '.steps | map(.margin * 10000 | round / 10000 | tostring) | join(" ")' "$D/g_$q.json")"
    done
    } > "$out.tmp"
    mv "$out.tmp" "$out"
    echo "wrote $out" >&2
}

for m in "${MODELS[@]}"; do
    IFS='|' read -r name shape seed text ngen nlong <<<"$m"
    if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$name"; then continue; fi
    record "$name" "$shape" "$seed" "$text" "$ngen" "$nlong"
done
