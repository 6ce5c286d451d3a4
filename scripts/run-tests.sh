#!/bin/sh
# Run every test binary given, print each one's output, then one closing
# line counting cmocka test cases. Exits 1 when anything failed.
BUILD=${BUILD:-build}
top=$(pwd)
export BATON_SRC="$top"
export BATON_BIN="$top/$BUILD/baton"
export BATON_PLUGINS="$top/$BUILD/plugins"
export BATON_FIXTURES="$top/$BUILD/tests/fixtures"
export BATON_BUILD="$top/$BUILD"
# tests that run make themselves (the SDK install test) build the same way
case "$BUILD" in build-san) export BATON_MAKEFLAGS="SANITIZE=1" ;; *) export BATON_MAKEFLAGS="" ;; esac
passed=0; failed=0; broken=""
log=$(mktemp)
for t in "$@"; do
    echo "== $t"
    "$t" >"$log" 2>&1
    rc=$?
    cat "$log"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    passed=$((passed + p)); failed=$((failed + f))
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
        failed=$((failed + 1)); broken="$broken $t(rc=$rc)"
    fi
done
rm -f "$log"
[ -n "$broken" ] && echo "crashed or failed outside a test case:$broken"
echo "tests: $passed passed, $failed failed"
[ $failed -eq 0 ]
