#!/usr/bin/env bash
# `make run` from a clean clone: git clone of this checkout's HEAD into a
# temporary directory, `make run` there (it installs what is missing, builds,
# runs the demo of scripts/run-demo.sh), and the summary must say PASS with
# every expected replica in place.  Skips (exit 0, a "SKIP:" line) while the
# branch has no kcache-controller or fake API server program yet, and under
# the sanitizer builds (the demo builds and runs the plain build).
set -u
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)

if [ -n "${KC_SANITIZER:-}" ]; then
    echo "SKIP: make run from a clean clone is tested in the plain build only (KC_SANITIZER=$KC_SANITIZER)"
    exit 0
fi
for src in cmd/kcache-controller.c tests/fakeapi/main.c; do
    if ! git cat-file -e "HEAD:$src" 2>/dev/null; then
        echo "SKIP: $src is not committed on this branch yet (make run needs build/kcache-controller and build/kcache-fakeapi)"
        exit 0
    fi
done
if ! command -v kubectl >/dev/null 2>&1; then
    echo "SKIP: kubectl is not installed (the demo drives the fake server with it)"
    exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! git clone -q "$root" "$tmp/kcache" 2> "$tmp/clone.err"; then
    echo "FAIL: git clone: $(cat "$tmp/clone.err")"
    exit 1
fi
echo "cloned $(git -C "$tmp/kcache" rev-parse --short HEAD) into $tmp/kcache; make run (build + demo)..."
start=$SECONDS
# A short demo: the test is about the whole path working, not its length.
# As a user would run it: not as a sub-make of `make test` (no inherited
# MAKEFLAGS, command-line variables or jobserver).
(cd "$tmp/kcache" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES \
    make -j2 run ARGS="--duration 15 --settle 20" < /dev/null > "$tmp/run.log" 2>&1)
rc=$?
echo "make run: exit $rc after $((SECONDS - start))s"
sed -n '/== Summary ==/,$p' "$tmp/run.log"

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
[ $rc = 0 ] || fail "make run exited $rc"
grep -q '^PASS' "$tmp/run.log" || fail "the summary does not say PASS"
sed -n '/== Summary ==/,$p' "$tmp/run.log" | grep -q 'FAIL' && fail "the summary reports a FAIL"
grep -q '^\[ *[0-9.]*s\] cached' "$tmp/run.log" || fail "no progress lines (not a terminal: plain lines expected)"
grep -q 'replicas in place' "$tmp/run.log" || fail "no replica count in the output"
grep -q 'stopped cleanly on SIGTERM' "$tmp/run.log" || fail "the controller did not stop cleanly"
if [ $fails -gt 0 ]; then
    echo "--- make run output (last 60 lines):"
    tail -n 60 "$tmp/run.log"
    exit 1
fi
echo "test_make_run: ok"
