#!/bin/bash
# bench/compare.sh - herd bench next to llama.cpp on the same GGUF files, same
# thread count, interleaved (herd, llama.cpp, herd, llama.cpp, ...) so both see the
# same machine state. Prints one row per file and test (ppN for each prompt size,
# tgN) with the medians and the ratio herd / llama.cpp.
# llama.cpp: llama-bench built from the source node-llama-cpp ships (see
# ../shared/oracle/README.md) when present, else node-llama-cpp via llamacpp.mjs.
#
#   bench/compare.sh [-t THREADS] [-p PP[,PP...]] [-n TG] [-d DEPTH] [-r REPS] [--rounds K] [--passive] FILE.gguf ...
#
# -d DEPTH: every test runs on a cache already holding DEPTH tokens (herd bench -d,
# llama-bench -d; llama-bench only, not the node fallback). llama.cpp runs with
# flash attention off (-fa 0) throughout.
# --passive: threads that wait sleep instead of spinning, in both engines
# (herd: OMP_WAIT_POLICY=passive; llama-bench: --poll 0). On a machine shared
# with other busy processes, spinning waits burn the time slices the working
# thread needs (measured here with 10 runnable processes on 2 cores: herd tg
# 0.32 tok/s spinning, 1.8 passive); on an idle machine spinning is faster.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=2 PPS=128 TG=64 DEPTH=0 REPS=5 ROUNDS=2 PASSIVE=0
ORACLE=${ORACLE:-../shared/oracle}
ORACLE_CACHE=${ORACLE_CACHE:-$HOME/.cache/herd-oracle}
LLAMA_BENCH=${LLAMA_BENCH:-$ORACLE_CACHE/llama.cpp-src/repo/build/bin/llama-bench}
files=()
while [ $# -gt 0 ]; do
    case $1 in
        -t) THREADS=$2; shift 2 ;; -p) PPS=$2; shift 2 ;; -n) TG=$2; shift 2 ;; -d) DEPTH=$2; shift 2 ;;
        -r) REPS=$2; shift 2 ;; --rounds) ROUNDS=$2; shift 2 ;; --passive) PASSIVE=1; shift ;;
        *) files+=("$1"); shift ;;
    esac
done
[ ${#files[@]} -gt 0 ] || { echo "usage: bench/compare.sh [-t N] [-p PP[,PP]] [-n TG] [-d DEPTH] [-r REPS] [--rounds K] [--passive] FILE.gguf ..." >&2; exit 2; }
[ -x ./herd ] || make -j2 >/dev/null
IFS=, read -r -a pps <<< "$PPS"

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

llama_run() { # prints "pp... tg", one pp per prompt size
    local f=$1 poll=()
    [ "$PASSIVE" = 1 ] && poll=(--poll 0)
    if [ -x "$LLAMA_BENCH" ]; then
        "$LLAMA_BENCH" -m "$f" -t "$THREADS" -p "$PPS" -n "$TG" -d "$DEPTH" -r "$REPS" -fa 0 "${poll[@]}" -o json 2>/dev/null |
            python3 -c 'import json,sys; r=json.load(sys.stdin); pp=[x["avg_ts"] for x in r if x["n_prompt"]>0]; tg=[x["avg_ts"] for x in r if x["n_gen"]>0]; print(*pp, tg[0])'
    else
        [ "$DEPTH" = 0 ] || { echo "bench/compare.sh: -d needs llama-bench (node-llama-cpp's bench has no depth)" >&2; exit 2; }
        local out=()
        for pp in "${pps[@]}"; do
            out+=("$(node "$ORACLE/llamacpp.mjs" bench "$f" --threads "$THREADS" --pp "$pp" --tg "$TG" --reps "$REPS" --json 2>/dev/null |
                python3 -c 'import json,sys; r=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(r["pp_median"], r["tg_median"])')")
        done
        local pp_list=() tg=
        for o in "${out[@]}"; do pp_list+=("${o% *}"); tg=${o#* }; done
        echo "${pp_list[*]} $tg"
    fi
}
herd_run() { # the same; tg measured with the first prompt size's run only
    local f=$1 pp_list=() tg= k=0
    for pp in "${pps[@]}"; do
        local n=0
        [ $k = 0 ] && n=$TG
        read -r a b < <(env ${OMP_ENV:-} ./herd bench -m "$f" -t "$THREADS" -p "$pp" -n "$n" -d "$DEPTH" -r "$REPS" --json | tail -1 |
            python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["pp_tokens_per_s"], r["tg_tokens_per_s"])')
        pp_list+=("$a"); [ $k = 0 ] && tg=$b
        k=$((k + 1))
    done
    echo "${pp_list[*]} $tg"
}
OMP_ENV=
[ "$PASSIVE" = 1 ] && OMP_ENV=OMP_WAIT_POLICY=passive

engine=$([ -x "$LLAMA_BENCH" ] && echo llama-bench || echo node-llama-cpp)
printf "%-28s %-7s %10s %10s %7s\n" "file ($THREADS threads)" test herd llama.cpp ratio
n_tests=$((${#pps[@]} + 1))
for f in "${files[@]}"; do
    declare -A H=() L=()
    for ((k = 0; k < ROUNDS; k++)); do
        read -r -a h < <(herd_run "$f")
        read -r -a l < <(llama_run "$f")
        for ((i = 0; i < n_tests; i++)); do H[$i]+="${h[$i]} "; L[$i]+="${l[$i]} "; done
    done
    for ((i = 0; i < n_tests; i++)); do
        test=$([ $i -lt ${#pps[@]} ] && echo "pp${pps[$i]}" || echo "tg$TG")
        [ "$DEPTH" = 0 ] || test="$test@d$DEPTH"
        HM=$(printf '%s\n' ${H[$i]} | median); LM=$(printf '%s\n' ${L[$i]} | median)
        printf "%-28s %-7s %10.1f %10.1f %7.2f\n" "$(basename "$f")" "$test" "$HM" "$LM" "$(echo "$HM / $LM" | bc -l)"
    done
    unset H L
done
echo "llama.cpp engine: $engine; medians over $ROUNDS interleaved rounds of $REPS reps each$([ "$PASSIVE" = 1 ] && echo '; passive waits (OMP_WAIT_POLICY=passive, --poll 0)')"
