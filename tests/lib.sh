# Helpers shared by tests/cli_*.sh, sourced with `. "$(dirname "$0")/lib.sh"`:
# pass/fail counters, ok, bad, check, expect_err, start_server and summary. Messages
# start with the script's name (cli_basic.sh -> "cli_basic"). Script-specific
# helpers (curl wrappers, fixtures) stay in their scripts.
TEST_NAME=$(basename "$0" .sh)
pass=0; fail=0
ok()    { pass=$((pass+1)); }
bad()   { fail=$((fail+1)); echo "$TEST_NAME: FAILED: $*" >&2; }
check() { local what=$1; shift; if "$@"; then ok; else bad "$what"; fi; }
# expect_err WHAT PATTERN CMD...: non-zero exit, one 'herd: ' line matching PATTERN,
# no crash (exit status below 128); uses the script's temporary directory $T
expect_err() {
    local what=$1 pat=$2; shift 2
    "$@" >"$T/out" 2>"$T/err"; local rc=$?
    if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q "^herd: " "$T/err" && grep -qi -- "$pat" "$T/err"; then ok
    else bad "$what (rc $rc): $(head -c 300 "$T/err")"; fi
}
# start_server NAME ARGS...: `$HERD serve --port 0 ARGS` on a free port, its stderr in
# $T/NAME.log, its pid appended to PIDS (the script's cleanup kills them) and kept in
# ${NAME}_pid; sets URL once /health answers; returns 1 (a failure counted) if it
# exits or does not come up within 10 s
start_server() {
    local name=$1; shift
    $HERD serve --port 0 "$@" 2>"$T/$name.log" &
    local pid=$!; PIDS+=("$pid"); eval "${name}_pid=$pid"
    for _ in $(seq 100); do
        local port; port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\)\/$/\1/p' "$T/$name.log")
        if [ -n "$port" ] && curl -s --max-time 5 "http://127.0.0.1:$port/health" | grep -q '"ok"'; then
            URL="http://127.0.0.1:$port"; return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    bad "server $name did not start: $(cat "$T/$name.log")"; return 1
}
# summary: the closing "NAME: N passed, M failed" line; returns non-zero on any failure,
# so a script that ends with it exits non-zero
summary() { echo "$TEST_NAME: $pass passed, $fail failed"; [ "$fail" -eq 0 ]; }
