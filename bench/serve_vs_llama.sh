#!/bin/bash
# bench/serve_vs_llama.sh - herd serve against llama.cpp's llama-server: the same load
# client (bench/serve_load.mjs), model file, threads, slots and context per slot, level by
# level, herd and then llama-server, so that both see the same minutes (this VM's memory
# bandwidth drifts from one minute to the next): aggregate generated tok/s, each one's
# ratio to its own single stream, herd / llama-server, and the time to first token of the
# requests that arrive while the others decode (each client's requests after its first).
#
#   bench/serve_vs_llama.sh --llama-server PATH [-m MODEL] [--herd PATH] [-t THREADS]
#                           [-c CTX] [--parallel N] [--levels "1 2 4 8 16"] [--per-client K]
#                           [-n MAX_TOKENS] [--words W] [--rounds R] [--llama-args "ARGS"]
# llama-server: built from the llama.cpp source that node-llama-cpp ships (see the oracle
# README): cmake -S . -B build -DLLAMA_BUILD_SERVER=ON && cmake --build build --target llama-server.
# Its flags default to "-fa on" (-fa off and --kv-unified were no faster here). For
# llama-server only, the client bans the tokens that are not whole UTF-8 characters and
# opens a connection per request (bench/serve_load.mjs says why).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$HOME/.cache/herd-oracle/models/llama3.2-1b/llama3.2-1b-Q4_0.gguf
HERD=build/herd LLAMA= LLAMA_ARGS="-fa on" THREADS=2 CTX=512 PAR=16 LEVELS="1 2 4 8 16" PER=10 NTOK=32 WORDS=40 ROUNDS=1
while [ $# -gt 0 ]; do
    case $1 in
        -m) MODEL=$2; shift 2 ;; --herd) HERD=$2; shift 2 ;; --llama-server) LLAMA=$2; shift 2 ;;
        --llama-args) LLAMA_ARGS=$2; shift 2 ;; -t) THREADS=$2; shift 2 ;; -c) CTX=$2; shift 2 ;;
        --parallel) PAR=$2; shift 2 ;; --levels) LEVELS=$2; shift 2 ;; --per-client) PER=$2; shift 2 ;;
        -n) NTOK=$2; shift 2 ;; --words) WORDS=$2; shift 2 ;; --rounds) ROUNDS=$2; shift 2 ;;
        *) echo "bench/serve_vs_llama.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
[ -n "$LLAMA" ] && [ -x "$LLAMA" ] || { echo "bench/serve_vs_llama.sh: --llama-server PATH (an executable llama-server)" >&2; exit 2; }
[ -e "$MODEL" ] || { echo "bench/serve_vs_llama.sh: no model at $MODEL (-m MODEL)" >&2; exit 2; }
HLOG=$(mktemp) LLOG=$(mktemp)
"$HERD" serve --port 0 -t "$THREADS" -m "$MODEL" --parallel "$PAR" -c "$CTX" --queue 4096 2>"$HLOG" &
HPID=$!
lport=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
# llama-server takes the total context and splits it over its -np slots
"$LLAMA" -m "$MODEL" -t "$THREADS" -tb "$THREADS" -np "$PAR" -c $((PAR * CTX)) --host 127.0.0.1 --port "$lport" $LLAMA_ARGS >"$LLOG" 2>&1 &
LPID=$!
trap 'kill $HPID $LPID 2>/dev/null; wait $HPID $LPID 2>/dev/null; rm -f "$HLOG" "$LLOG"' EXIT
hport=
for _ in $(seq 600); do
    [ -n "$hport" ] || hport=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\)\/$/\1/p' "$HLOG")
    up=0
    [ -n "$hport" ] && curl -s --max-time 2 "http://127.0.0.1:$hport/health" | grep -q ok && up=$((up + 1))
    curl -s --max-time 2 "http://127.0.0.1:$lport/health" | grep -q ok && up=$((up + 1))
    [ $up = 2 ] && break
    kill -0 $HPID 2>/dev/null || { cat "$HLOG" >&2; exit 1; }
    kill -0 $LPID 2>/dev/null || { cat "$LLOG" >&2; exit 1; }
    sleep 0.2
done
HURL="http://127.0.0.1:$hport" LURL="http://127.0.0.1:$lport"
herd_load() { node bench/serve_load.mjs "$HURL" "$@"; }
llama_load() { SERVE_LOAD_BAN_PARTIAL=$MODEL SERVE_LOAD_CLOSE=1 node bench/serve_load.mjs "$LURL" "$@"; }
herd_load 1 1 4 "$WORDS" >/dev/null # warm up (page in the weights)
llama_load 1 1 4 "$WORDS" >/dev/null
echo "herd: $HERD; llama.cpp: $LLAMA $LLAMA_ARGS"
echo "model $(basename "$MODEL"), $THREADS threads, $PAR slots, $CTX positions each, $PER requests per client of $NTOK tokens on average, prompts of ~$WORDS common words + a distinct tail"
echo "x1: over the same server's single stream in the round; later: TTFT (ms) of each client's requests after its first"
printf '%5s %7s %10s %10s %7s %7s %7s %15s %15s\n' round streams "herd tok/s" "llama tok/s" "herd x1" "llama x1" "ratio" \
    "herd later" "llama later"
for r in $(seq "$ROUNDS"); do
    hbase= lbase=
    for c in $LEVELS; do
        jh=$(herd_load "$c" $((c * PER)) "$NTOK" "$WORDS")
        jl=$(llama_load "$c" $((c * PER)) "$NTOK" "$WORDS")
        ht=$(echo "$jh" | jq .tok_s) lt=$(echo "$jl" | jq .tok_s)
        [ -z "$hbase" ] && hbase=$ht lbase=$lt
        printf '%5d %7d %10.2f %10.2f %7.2f %7.2f %7.2f %15s %15s\n' "$r" "$c" "$ht" "$lt" \
            "$(echo "$ht / $hbase" | bc -l)" "$(echo "$lt / $lbase" | bc -l)" "$(echo "$ht / $lt" | bc -l)" \
            "$(echo "$jh" | jq -r '"\(.ttft_steady_median_ms) / \(.ttft_steady_p99_ms)"')" \
            "$(echo "$jl" | jq -r '"\(.ttft_steady_median_ms) / \(.ttft_steady_p99_ms)"')"
        for j in "$jh" "$jl"; do
            [ "$(echo "$j" | jq .errors)" = 0 ] || echo "  errors: $(echo "$j" | jq -c '{conc, errors}')"
        done
    done
done
