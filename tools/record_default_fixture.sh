#!/bin/bash
# record_default_fixture.sh - records tests/data/default_llamacpp.txt for
# tests/cli_default.sh from the committed models/default:
#   prompt_ids     BOS + "Mr. Darcy" in the model's vocabulary (of the prompts tried, the one
#                  whose 32 greedy steps have the widest top-1 / top-2 logit gap: 0.0194 on the 800-step model)
#   llamacpp_ids   llama.cpp's 32 greedy ids (../shared/oracle/llamacpp.mjs, f32 KV cache) on
#                  the F32 GGUF that `herd quantize models/default OUT F32` writes
#   heldout_nll    herd's nll on tests/data/default_heldout.txt (-c 256), as measured
#   heldout_bound  heldout_nll + 0.1 (the test's bound)
# Needs the oracle (node-llama-cpp); the test itself does not.
set -euo pipefail
HERD=${HERD:-build/herd}
ORACLE=${ORACLE:-../shared/oracle}
M=models/default
OUTF=tests/data/default_llamacpp.txt
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
$HERD quantize -q $M "$T/d.gguf" F32
ids=$($HERD tokenize -m $M --bos "Mr. Darcy" | tr -s ' \n' ',' | sed 's/,$//')
got=$(node "$ORACLE/llamacpp.mjs" greedy "$T/d.gguf" "$ids" 32 --kv f32 --ctx 256 |
      sed -n 's/^greedy ([0-9]*): //p' | tr -s ' ' ',' | sed 's/,$//')
[ -n "$got" ] || { echo "record_default_fixture: no ids from llama.cpp" >&2; exit 1; }
nll=$($HERD perplexity -m $M -f tests/data/default_heldout.txt -c 256 | sed -n 's/^nll: //p')
{
    echo "# greedy ids of models/default as an F32 GGUF (herd quantize) in llama.cpp"
    echo "# (node-llama-cpp 3.21.1, --kv f32), and herd's held-out nll; tools/record_default_fixture.sh"
    echo "# prompt_ids: $ids"
    echo "# llamacpp_ids: $got"
    echo "# heldout_nll: $nll"
    echo "# heldout_bound: $(awk -v a="$nll" 'BEGIN { printf "%.4f", a + 0.1 }')"
} >"$OUTF"
cat "$OUTF"
