#!/bin/bash
# Runs every test program and the CLI end-to-end tests; prints one closing line
# "N passed, N failed" (counting test programs) and exits non-zero on any failure.
BUILD=${BUILD:-build}
pass=0; fail=0; failed=()
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    if "$t"; then pass=$((pass+1)); else fail=$((fail+1)); failed+=("$(basename "$t")"); fi
done
for t in tests/cli_*.sh; do
    [ -f "$t" ] || continue
    if HERD="$BUILD/herd" bash "$t"; then pass=$((pass+1)); else fail=$((fail+1)); failed+=("$(basename "$t")"); fi
done
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
