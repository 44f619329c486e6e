#!/usr/bin/env bash
# Drives Debian's python3-kubernetes against build/kcache-fakeapi: list,
# create, errors, label selector, and watch.Watch().stream() seeing ADDED,
# MODIFIED and DELETED (tests/fakeapi/py/client_test.py).  The server is
# always stopped and must exit 0 (under ASan: no leaks).
set -u
B=${KC_BUILD:-build}
case $B in /*) ;; *) B=$PWD/$B ;; esac
here=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
if ! $PY -c 'import kubernetes' 2>/dev/null; then
    echo "SKIP: python3-kubernetes is not installed for $PY"; exit 0
fi
work=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
"$B/kcache-fakeapi" --listen 127.0.0.1:0 --kubeconfig-out "$work/kubeconfig" \
    >"$work/ready" 2>"$work/server.log" &
pid=$!
for _ in $(seq 100); do grep -q '^ready ' "$work/ready" 2>/dev/null && break; sleep 0.1; done
if ! grep -q '^ready https://' "$work/ready"; then
    echo "FAIL: server did not start"; cat "$work/server.log"; exit 1
fi
cd "$work" && timeout 120 $PY "$here/fakeapi/py/client_test.py" "$work/kubeconfig"
rc=$?
kill "$pid"; wait "$pid"; src=$?; pid=
if [ $src != 0 ]; then echo "FAIL: server exit status $src"; tail -20 "$work/server.log"; exit 1; fi
exit $rc
