#!/usr/bin/env bash
# Hook for the C suites (k8sclient, informer, controller) against the real
# kube-apiserver: runs every binary listed in tests/realapi/c_suites.txt
# (built into $KC_BUILD/realapi/) with the KC_REAL_* environment of
# tests/realapi/run.sh.  Skipped (77) while the list is empty.
set -uo pipefail
: "${KC_REAL_KUBECONFIG:?run me through tests/realapi/run.sh}"
LIST=$(dirname "$0")/c_suites.txt
BUILD=${KC_BUILD:-build}
ran=0 bad=0
while read -r name args; do
    case $name in ''|'#'*) continue ;; esac
    bin=$BUILD/realapi/$name
    if [ ! -x "$bin" ]; then echo "FAIL: $bin not built"; bad=1; continue; fi
    echo "--- $name $args"
    # shellcheck disable=SC2086
    if timeout 900 "$bin" $args; then echo "ok $name"; else echo "FAIL: $name (exit $?)"; bad=1; fi
    ran=$((ran + 1))
done < "$LIST"
if [ $ran = 0 ] && [ $bad = 0 ]; then echo "no C suite listed in $LIST yet"; exit 77; fi
exit $bad
