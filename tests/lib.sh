# Helpers shared by tests/cli_*.sh, sourced with `. "$(dirname "$0")/lib.sh"`:
# pass/fail counters, ok, bad, check, expect_err and summary. Messages start with
# the script's name (cli_basic.sh -> "cli_basic"). Script-specific helpers (curl
# wrappers, server start-up, fixtures) stay in their scripts.
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
# summary: the closing "NAME: N passed, M failed" line; returns non-zero on any failure,
# so a script that ends with it exits non-zero
summary() { echo "$TEST_NAME: $pass passed, $fail failed"; [ "$fail" -eq 0 ]; }
