#!/usr/bin/env bash
# Runs every test program given on the command line, each under a timeout,
# and ends with one summary line "N passed, N failed".  A test program is a
# cmocka binary (build/.../tests/test_*) or a script (tests/test_*.sh).
# Exit status is non-zero when any test failed or timed out.
set -u
timeout_s=${KC_TEST_TIMEOUT:-300}
passed=0 failed=0 failed_names=()
for t in "$@"; do
    name=$(basename "$t")
    echo "=== $name"
    start=$(date +%s)
    if [[ $t == *.sh ]]; then
        timeout --kill-after=10 "$timeout_s" bash "$t"
    else
        timeout --kill-after=10 "$timeout_s" "$t"
    fi
    rc=$?
    secs=$(( $(date +%s) - start ))
    if [ $rc = 0 ]; then
        passed=$((passed + 1)); echo "=== $name: ok (${secs}s)"
    else
        failed=$((failed + 1)); failed_names+=("$name")
        [ $rc = 124 ] && echo "=== $name: TIMEOUT after ${timeout_s}s" || echo "=== $name: FAILED (exit $rc, ${secs}s)"
    fi
done
echo
[ $failed -gt 0 ] && echo "failed: ${failed_names[*]}"
echo "$passed passed, $failed failed"
[ $failed = 0 ]
