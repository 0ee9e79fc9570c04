#!/bin/bash
# The chat page at GET / in headless Chromium (Debian's chromium package), driven over
# the DevTools protocol by tests/web/chat_page.mjs: the page loads the model id, sends
# a message, streams the answer into the log; with --api-key and no key in the page,
# it shows the server's 401 message as an error; with --lora, the model menu lists the
# adapter and a chat with it reaches it. Prints SKIP without chromium or node.
HERD=${HERD:-build/herd}
if ! command -v chromium >/dev/null || ! command -v node >/dev/null; then
    echo "cli_web: SKIP (needs chromium and node; scripts/install-deps.sh installs chromium)"; exit 0
fi
T=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null
    rm -rf "$T" 2>/dev/null || { sleep 1; rm -rf "$T" 2>/dev/null; }; }
trap cleanup EXIT
. "$(dirname "$0")/lib.sh"
$HERD init -o "$T/m" --seed 3 2>/dev/null
port_of() { for _ in $(seq 1 100); do p=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$1" | head -1); [ -n "$p" ] && { echo "$p"; return; }; sleep 0.1; done; }
serve() {  # serve LOG ARGS...: starts herd serve on a free port (not in a subshell: cleanup kills it)
    local log=$1; shift
    $HERD serve -m "$T/m" --port 0 -t 1 -c 256 "$@" >"$log" 2>&1 &
    pids+=($!)
}
chromium --headless --no-sandbox --disable-gpu --user-data-dir="$T/chrome" --remote-debugging-port=0 \
    about:blank >"$T/chrome.log" 2>&1 &
pids+=($!)
dport=""
for _ in $(seq 1 100); do
    dport=$(sed -n 's|.*DevTools listening on ws://127.0.0.1:\([0-9]*\)/.*|\1|p' "$T/chrome.log" | head -1)
    [ -n "$dport" ] && break; sleep 0.1
done
[ -n "$dport" ] || { echo "cli_web: FAILED: chromium did not start: $(head -c 300 "$T/chrome.log")"; exit 1; }
drive() { timeout 90 node --experimental-websocket --no-warnings tests/web/chat_page.mjs "$dport" "$@"; }

serve "$T/s1.log"; p1=$(port_of "$T/s1.log")
out=$(drive "http://127.0.0.1:$p1/" "Hello there" 2>&1)
if echo "$out" | grep -q '"user":"Hello there","assistant":"[^"]' && echo "$out" | grep -q '"error":false'; then ok
else bad "page streams an answer: $(echo "$out" | head -c 300)"; fi
serve "$T/s2.log" --api-key sekrit; p2=$(port_of "$T/s2.log")
out=$(drive "http://127.0.0.1:$p2/" "Hello" 2>&1)
if echo "$out" | grep -q '"error":true' && echo "$out" | grep -qi 'api key'; then ok
else bad "page shows the 401 error: $(echo "$out" | head -c 300)"; fi

# the model menu: the model, then a LoRA adapter; a chat picked for the adapter goes to it
MK=${MK_LORA:-$(dirname "$HERD")/tests/mk_lora}
if "$MK" "$T/m" "$T/ad" --seed 5 >/dev/null 2>&1; then
    serve "$T/s3.log" --lora tuned="$T/ad"; p3=$(port_of "$T/s3.log")
    out=$(drive "http://127.0.0.1:$p3/" "Hello" tuned 2>&1)
    if echo "$out" | grep -q '"error":false,"model":"tuned","models":\["m","tuned (LoRA)"\]' &&
       curl -s --max-time 5 "http://127.0.0.1:$p3/metrics" | grep -q '^herd_model_requests_total{model="tuned"} 1$'; then ok
    else bad "page chats with a picked adapter: $(echo "$out" | head -c 300)"; fi
else bad "mk_lora"; fi

summary
