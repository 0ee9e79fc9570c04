#!/bin/bash
# End-to-end tests of `herd tokenizer train` and `herd data`: a vocabulary learned
# from a small text, written as tokenizer.model + tokenizer.json and used by herd
# init; token files from text and JSONL inputs (header, BOS before each document,
# the same ids as `herd tokenize --bos`, the validation split); one-line errors.
HERD=${HERD:-build/herd}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/lib.sh"
u32s() { od -An -tu4 -v -j "$2" "$1" | tr -s ' \n' ' ' | sed 's/^ //; s/ $//'; } # FILE OFFSET

for i in 1 2 3 4 5 6 7 8; do
    echo "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife. Café naïve $i."
    echo "However little known the feelings or views of such a man may be on his first entering a neighbourhood, ..."
done > "$T/corpus.txt"
printf 'bytes \xff\xfe here\n' > "$T/corpus2.txt"

$HERD tokenizer train -i "$T/corpus.txt" -i "$T/corpus2.txt" --vocab 600 -o "$T/tok" -q 2>"$T/train.log"
check "train writes tokenizer.model and tokenizer.json" test -s "$T/tok/tokenizer.model" -a -s "$T/tok/tokenizer.json"
check "train reports vocab_size" grep -q "vocab_size 600" "$T/train.log"
check "tokenizer.model has the BPE ranks" test "$(wc -l < "$T/tok/tokenizer.model")" = 344
$HERD tokenizer train -i "$T/corpus.txt" -i "$T/corpus2.txt" --vocab 600 -o "$T/tok2" -q 2>/dev/null
check "training is deterministic" cmp -s "$T/tok/tokenizer.model" "$T/tok2/tokenizer.model"
check "tokenizer --help" bash -c "$HERD tokenizer --help | grep -q -- --vocab"

$HERD init -o "$T/m" --tokenizer "$T/tok/tokenizer.model" --dim 64 --layers 1 --heads 2 --ffn 128 2>/dev/null
check "init takes the trained tokenizer" grep -q '"vocab_size": *600' "$T/m/config.json"
BOS=344
ids=$($HERD tokenize -m "$T/m" "It is a truth universally acknowledged")
check "trained vocabulary compresses ($ids)" test "$(echo $ids | wc -w)" -lt 19

# token file from a text file and a JSONL file
printf 'First document.\nStill the first.' > "$T/a.txt"
printf '{"text": "Second, a truth."}\n\n{"text": "Third: caf\\u00e9 \\ud83d\\ude42", "meta": 1}\n{"text": "<|eot_id|> plain"}\n' > "$T/b.jsonl"
$HERD data -m "$T/m" -i "$T/a.txt" -i "$T/b.jsonl" -o "$T/d.tok" 2>"$T/data.log"
check "data writes the file" test -s "$T/d.tok"
check "data reports 4 documents" grep -q "4 documents" "$T/data.log"
check "magic HERDTOK1" test "$(head -c 8 "$T/d.tok")" = "HERDTOK1"
hdr=($(u32s "$T/d.tok" 8 | cut -d' ' -f1-4))
check "version 1, vocab 600 (${hdr[*]})" test "${hdr[0]} ${hdr[1]}" = "1 600"
n=${hdr[2]}
check "size = 24 + 4 n" test "$(stat -c %s "$T/d.tok")" = $((24 + 4 * n))
got=$(u32s "$T/d.tok" 24)
want="$($HERD tokenize -m "$T/m" --bos -f "$T/a.txt") $($HERD tokenize -m "$T/m" --bos "Second, a truth.") $($HERD tokenize -m "$T/m" --bos "Third: café 🙂") $($HERD tokenize -m "$T/m" --bos "<|eot_id|> plain")"
check "ids = BOS + each document, nothing between" test "$got" = "$want"
check "first id is BOS" test "$(echo $got | cut -d' ' -f1)" = $BOS
check "4 BOS ids" test "$(echo $got | tr ' ' '\n' | grep -cx $BOS)" = 4
$HERD data -m "$T/tok" -i "$T/a.txt" -i "$T/b.jsonl" -o "$T/d2.tok" 2>/dev/null
check "tokenizer dir gives the same file" cmp -s "$T/d.tok" "$T/d2.tok"
$HERD data -m "$T/tok/tokenizer.json" -i "$T/a.txt" -i "$T/b.jsonl" -o "$T/d3.tok" 2>/dev/null
check "tokenizer.json gives the same file" cmp -s "$T/d.tok" "$T/d3.tok"

# validation split: documents 1 and 3 of 0..3 with f = 0.5
$HERD data -m "$T/m" -i "$T/a.txt" -i "$T/b.jsonl" -o "$T/tr.tok" --val-fraction 0.5 --val-out "$T/va.tok" 2>/dev/null
check "val split" test "$(u32s "$T/va.tok" 24)" = "$($HERD tokenize -m "$T/m" --bos "Second, a truth.") $($HERD tokenize -m "$T/m" --bos "<|eot_id|> plain")"
check "train split" test "$(u32s "$T/tr.tok" 8 | cut -d' ' -f3)" = $(( $(echo "$($HERD tokenize -m "$T/m" --bos -f "$T/a.txt") $($HERD tokenize -m "$T/m" --bos "Third: café 🙂")" | wc -w) ))

# errors: one line 'herd: ...', non-zero, no partial output
printf '{"text": "ok"}\n{"txt": "no"}\n' > "$T/bad.jsonl"
expect_err "JSONL line without text" "bad.jsonl:2: .*text" $HERD data -m "$T/m" -i "$T/bad.jsonl" -o "$T/x.tok"
printf '{"text": "ok"}\n{"text": "unterminated}\n' > "$T/bad2.jsonl"
expect_err "bad JSON" "bad2.jsonl:2: invalid JSON" $HERD data -m "$T/m" -i "$T/bad2.jsonl" -o "$T/x.tok"
check "no output after an error" test ! -e "$T/x.tok"
expect_err "missing input" "not found" $HERD data -m "$T/m" -i "$T/nope.txt" -o "$T/x.tok"
expect_err "missing model" "not found" $HERD data -m "$T/nomodel" -i "$T/a.txt" -o "$T/x.tok"
expect_err "val fraction selects nothing" "selects none" $HERD data -m "$T/m" -i "$T/a.txt" -o "$T/x.tok" --val-fraction 0.1 --val-out "$T/y.tok"
expect_err "data needs -o" "-o" $HERD data -m "$T/m" -i "$T/a.txt"
expect_err "train missing input" "not found" $HERD tokenizer train -i "$T/nope.txt" --vocab 600 -o "$T/t3"
expect_err "train vocab too small" "512" $HERD tokenizer train -i "$T/corpus.txt" --vocab 300 -o "$T/t3"
expect_err "unknown tokenizer command" "unknown" $HERD tokenizer frobnicate

summary
