#!/bin/bash
# bench/serve_load.sh - load test of `herd serve`: 1, 2, 4, 8, 16 concurrent
# streaming clients (bench/serve_load.mjs) against one server, a table of aggregate
# generated tok/s, median and p99 time to first token; then (--rss N) N short
# requests at 8 clients with the server's RSS sampled at start and end.
#
#   bench/serve_load.sh [-m MODEL] [--herd PATH] [-t THREADS] [-c CTX] [--parallel N]
#                       [--levels "1 2 4 8 16"] [--per-client K] [-n MAX_TOKENS]
#                       [--words W] [--think MS] [--linger MS] [--rss N] [--rss-only]
#                       [--lora NAME=ADAPTER] (requests name the model and the adapter in turn)
#                       [--no-interleave] (the server's flag: new prompts wait for the step to end)
# MODEL defaults to the oracle's 1B-shape Q4_0 GGUF. Each level sends K requests
# per client (default 3) of MAX_TOKENS (default 32) generated tokens, so every
# request after a client's first arrives while the others decode: at once after the
# previous response (the default), or after a think time of 0 .. 2 MS ms (--think MS:
# arrivals spread over the steps, as real clients' are; tok/s then counts the idle
# time too, so compare throughput without it). 'srv queue' / 'srv ttft': the server's
# own means over the level (its /metrics histograms): queued -> admitted, queued ->
# first token chosen (the client's TTFT less HTTP and tokenizing).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$HOME/.cache/herd-oracle/models/llama3.2-1b/llama3.2-1b-Q4_0.gguf
HERD=build/herd THREADS=2 CTX=512 PAR=16 LEVELS="1 2 4 8 16" PER=3 NTOK=32 WORDS=40 THINK=0 LINGER= RSS=0 RSS_ONLY=0
while [ $# -gt 0 ]; do
    case $1 in
        -m) MODEL=$2; shift 2 ;; --herd) HERD=$2; shift 2 ;; -t) THREADS=$2; shift 2 ;;
        -c) CTX=$2; shift 2 ;; --parallel) PAR=$2; shift 2 ;; --levels) LEVELS=$2; shift 2 ;;
        --per-client) PER=$2; shift 2 ;; -n) NTOK=$2; shift 2 ;; --words) WORDS=$2; shift 2 ;; --think) THINK=$2; shift 2 ;; --linger) LINGER=$2; shift 2 ;;
        --rss) RSS=$2; shift 2 ;; --rss-only) RSS_ONLY=1; shift ;; --lora) LORA=$2; shift 2 ;;
        --no-interleave) NOINT=--no-interleave; shift ;;
        *) echo "bench/serve_load.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
[ -e "$MODEL" ] || { echo "bench/serve_load.sh: no model at $MODEL (-m MODEL)" >&2; exit 2; }
LOG=$(mktemp)
"$HERD" serve --port 0 -t "$THREADS" -m "$MODEL" --parallel "$PAR" -c "$CTX" --queue 4096 ${LINGER:+--linger "$LINGER"} ${LORA:+--lora "$LORA"} ${NOINT:-} 2>"$LOG" &
SPID=$!
trap 'kill $SPID 2>/dev/null; wait $SPID 2>/dev/null; rm -f "$LOG"' EXIT
for _ in $(seq 600); do
    port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\)\/$/\1/p' "$LOG")
    [ -n "$port" ] && curl -s --max-time 2 "http://127.0.0.1:$port/health" | grep -q ok && break
    kill -0 $SPID 2>/dev/null || { cat "$LOG" >&2; exit 1; }
    sleep 0.2
done
URL="http://127.0.0.1:$port"
rss() { awk '/VmRSS/ { print $2 }' /proc/$SPID/status; }
# the scheduler's counters: uptime, seconds in steps, in the forward, steps, sequences in
# them; queue-wait and first-token histograms' sums and counts
sched() { curl -s --max-time 5 "$URL/metrics" | awk '/^herd_(uptime_seconds|step_seconds_total|forward_seconds_total|batch_steps_total|batch_sequences_total|request_queue_seconds_sum|request_queue_seconds_count|time_to_first_token_seconds_sum|time_to_first_token_seconds_count) / { v[$1] = $2 }
    END { print v["herd_uptime_seconds"], v["herd_step_seconds_total"], v["herd_forward_seconds_total"], v["herd_batch_steps_total"], v["herd_batch_sequences_total"],
                v["herd_request_queue_seconds_sum"], v["herd_request_queue_seconds_count"], v["herd_time_to_first_token_seconds_sum"], v["herd_time_to_first_token_seconds_count"] }'; }
echo "model $(basename "$MODEL"), $THREADS threads, --parallel $PAR, -c $CTX, $NTOK tokens per request on average (spread ±50%), prompts of ~$WORDS common words + a distinct tail, think time ${THINK} ms on average"
echo "all tok/s: while every client is active (after the last one's first token, before the first one ends; not ramp-up or drain)"
echo "TTFT in ms; 'later': each client's requests after its first, which arrive while the others decode"
echo "busy: share of the wall time the scheduler spent in steps (fwd: in the batched forward); batch: mean sequences per step"

if [ "$RSS_ONLY" = 0 ]; then
    node bench/serve_load.mjs "$URL" 1 1 4 "$WORDS" >/dev/null   # warm up (page in the weights)
    printf '%7s %8s %7s %8s %6s %9s %6s %11s %11s %13s %13s %6s %6s %6s %9s %8s\n' streams requests tokens "tok/s" "x1" \
        "all tok/s" "x1" \
        "TTFT med" "TTFT p99" "later med" "later p99" busy fwd batch "srv queue" "srv ttft"
    base=
    for c in $LEVELS; do
        m0=$(sched)
        j=$(node bench/serve_load.mjs "$URL" "$c" $((c * PER)) "$NTOK" "$WORDS" "$THINK")
        m1=$(sched)
        occ=$(echo "$m0 $m1" | awk '{ w = $10 - $1; s = $14 - $5; qn = $16 - $7; fn = $18 - $9
            printf "%.2f %.2f %.2f %.0f %.0f", ($11 - $2) / w, ($12 - $3) / w, s ? ($14 - $5) / ($13 - $4) : 0,
                   qn ? 1000 * ($15 - $6) / qn : -1, fn ? 1000 * ($17 - $8) / fn : -1 }')
        tps=$(echo "$j" | jq .tok_s) atps=$(echo "$j" | jq .all_active_tok_s)
        [ -z "$base" ] && base=$tps abase=$atps
        [ "$base" = 0 ] && base=1
        awk -v a="$abase" 'BEGIN { exit !(a <= 0) }' && abase=1
        printf '%7d %8d %7d %8.2f %6.2f %9.2f %6.2f %11.0f %11.0f %13.0f %13.0f %6s %6s %6s %9s %8s\n' "$c" "$(echo "$j" | jq .requests)" \
            "$(echo "$j" | jq .tokens)" "$tps" "$(echo "$tps / $base" | bc -l)" "$atps" "$(echo "$atps / $abase" | bc -l)" \
            "$(echo "$j" | jq .ttft_median_ms)" \
            "$(echo "$j" | jq .ttft_p99_ms)" "$(echo "$j" | jq .ttft_steady_median_ms)" "$(echo "$j" | jq .ttft_steady_p99_ms)" $occ
        [ "$(echo "$j" | jq .errors)" = 0 ] || echo "  errors: $(echo "$j" | jq .errors)"
    done
fi
if [ "$RSS" -gt 0 ]; then
    node bench/serve_load.mjs "$URL" 8 64 4 "$WORDS" >/dev/null
    r0=$(rss)
    half=$((RSS / 2))
    node bench/serve_load.mjs "$URL" 8 "$half" 4 "$WORDS" | jq -c '{requests, errors}'
    r1=$(rss)
    node bench/serve_load.mjs "$URL" 8 $((RSS - half)) 4 "$WORDS" | jq -c '{requests, errors}'
    r2=$(rss)
    echo "RSS over $RSS requests (after 64 warm-up): start $r0 KiB, after $half $r1 KiB, end $r2 KiB ($(( (r2 - r0) )) KiB change)"
fi
curl -s --max-time 5 "$URL/metrics" | grep -E '^herd_(requests_total|prefills_interleaved_total|generated_tokens_total|prompt_tokens_reused_total|kv_pages)'
