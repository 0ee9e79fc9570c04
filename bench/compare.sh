#!/bin/bash
# bench/compare.sh - herd bench next to llama.cpp on the same GGUF files, same
# thread count, interleaved (herd, llama.cpp, herd, llama.cpp, ...) so both see the
# same machine state. Prints a table of medians and the ratio herd / llama.cpp.
# llama.cpp: llama-bench built from the source node-llama-cpp ships (see
# ../shared/oracle/README.md) when present, else node-llama-cpp via llamacpp.mjs.
#
#   bench/compare.sh [-t THREADS] [-p PP] [-n TG] [-r REPS] [--rounds K] FILE.gguf ...
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=2 PP=128 TG=64 REPS=5 ROUNDS=2
ORACLE=${ORACLE:-../shared/oracle}
ORACLE_CACHE=${ORACLE_CACHE:-$HOME/.cache/herd-oracle}
LLAMA_BENCH=${LLAMA_BENCH:-$ORACLE_CACHE/llama.cpp-src/repo/build/bin/llama-bench}
files=()
while [ $# -gt 0 ]; do
    case $1 in
        -t) THREADS=$2; shift 2 ;; -p) PP=$2; shift 2 ;; -n) TG=$2; shift 2 ;;
        -r) REPS=$2; shift 2 ;; --rounds) ROUNDS=$2; shift 2 ;;
        *) files+=("$1"); shift ;;
    esac
done
[ ${#files[@]} -gt 0 ] || { echo "usage: bench/compare.sh [-t N] [-p PP] [-n TG] [-r REPS] FILE.gguf ..." >&2; exit 2; }
[ -x ./herd ] || make -j2 >/dev/null

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

llama_run() { # prints "pp tg"
    local f=$1
    if [ -x "$LLAMA_BENCH" ]; then
        "$LLAMA_BENCH" -m "$f" -t "$THREADS" -p "$PP" -n "$TG" -r "$REPS" -fa 0 -o json 2>/dev/null |
            python3 -c 'import json,sys; r=json.load(sys.stdin); pp=[x["avg_ts"] for x in r if x["n_prompt"]>0]; tg=[x["avg_ts"] for x in r if x["n_gen"]>0]; print(pp[0], tg[0])'
    else
        node "$ORACLE/llamacpp.mjs" bench "$f" --threads "$THREADS" --pp "$PP" --tg "$TG" --reps "$REPS" --json 2>/dev/null |
            python3 -c 'import json,sys; r=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(r["pp_median"], r["tg_median"])'
    fi
}
herd_run() {
    ./herd bench -m "$1" -t "$THREADS" -p "$PP" -n "$TG" -r "$REPS" --json | tail -1 |
        python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["pp_tokens_per_s"], r["tg_tokens_per_s"])'
}

engine=$([ -x "$LLAMA_BENCH" ] && echo llama-bench || echo node-llama-cpp)
printf "%-28s %10s %10s %7s %10s %10s %7s\n" "file ($THREADS threads)" "herd pp$PP" "llama pp" ratio "herd tg$TG" "llama tg" ratio
for f in "${files[@]}"; do
    hp=(); ht=(); lp=(); lt=()
    for ((k = 0; k < ROUNDS; k++)); do
        read -r a b < <(herd_run "$f"); hp+=("$a"); ht+=("$b")
        read -r a b < <(llama_run "$f"); lp+=("$a"); lt+=("$b")
    done
    HP=$(printf '%s\n' "${hp[@]}" | median); HT=$(printf '%s\n' "${ht[@]}" | median)
    LP=$(printf '%s\n' "${lp[@]}" | median); LT=$(printf '%s\n' "${lt[@]}" | median)
    printf "%-28s %10.1f %10.1f %7.2f %10.1f %10.1f %7.2f\n" "$(basename "$f")" "$HP" "$LP" \
        "$(echo "$HP / $LP" | bc -l)" "$HT" "$LT" "$(echo "$HT / $LT" | bc -l)"
done
echo "llama.cpp engine: $engine; medians over $ROUNDS interleaved rounds of $REPS reps each"
