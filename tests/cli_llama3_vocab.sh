#!/bin/bash
# The real Llama 3 vocabulary through the CLI: a model written by `herd init
# --tokenizer tokenizer.model` must tokenize identically from its tokenizer.json,
# its tokenizer.model (HF dir without tokenizer.json) and its GGUF vocabulary, and
# match ids recorded from llama.cpp (node-llama-cpp 3.21.1, llamacpp.mjs tokenize,
# special parsing off) on the oracle's GGUF of the same vocabulary.
# Needs ../shared/tokenizers/llama3 (or $HERD_LLAMA3_TOKENIZER); skips otherwise.
HERD=${HERD:-build/herd}
TOK=${HERD_LLAMA3_TOKENIZER:-../shared/tokenizers/llama3/tokenizer.model}
if [ ! -f "$TOK" ]; then echo "cli_llama3_vocab: SKIP: $TOK not found (real Llama 3 vocabulary)"; exit 0; fi
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/lib.sh"

$HERD init -o "$T/m" --gguf "$T/m.gguf" --tokenizer "$TOK" --dim 32 --layers 1 --heads 2 --kv-heads 1 --ffn 64 --tie 2>/dev/null
mkdir -p "$T/tm"; cp "$T/m/config.json" "$T/m/model.safetensors" "$T/m/tokenizer.model" "$T/tm/"
S=$'Hello world!\r\n  3.14159 don\'t 你好 👨‍👩‍👧 <|eot_id|>'
WANT="9906 1917 46726 220 220 18 13 9335 2946 1541 956 118195 53901 62904 101 102470 9468 239 102 102470 9468 239 100 83739 68 354 851 91 29"
WANT_SPECIAL="128000 9906 1917 46726 220 220 18 13 9335 2946 1541 956 118195 53901 62904 101 102470 9468 239 102 102470 9468 239 100 220 128009"
for m in "$T/m" "$T/tm" "$T/m.gguf"; do
    check "ids from $(basename "$m")" test "$($HERD tokenize -m "$m" "$S")" = "$WANT"
    check "--special --bos from $(basename "$m")" test "$($HERD tokenize -m "$m" --special --bos "$S")" = "$WANT_SPECIAL"
done
check "vocab size" bash -c "$HERD info $T/m.gguf | grep -q 'vocab: *128256'"
# Meta's chat format: system + user, ending with the assistant header; the text
# pieces' ids were checked with ../shared/oracle/tokref.py (independent tiktoken port)
echo '[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Hi"}]' > "$T/c.json"
check "chat ids" test "$($HERD tokenize -m "$T/m" --chat "$T/c.json")" = \
    "128000 128006 9125 128007 271 2675 527 264 11190 18328 13 128009 128006 882 128007 271 13347 128009 128006 78191 128007 271"
summary
