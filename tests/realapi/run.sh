#!/usr/bin/env bash
# make test-real: build the real-apiserver harness (cached), start it, run
# tests/realapi/compare_kubectl.sh and every tests/realapi/test_*.sh against
# it (the C suites hook in as test_*.sh scripts), stop it.  Ends with
# "N passed, N failed" (", N skipped").  Without Go it says why and exits 0.
#
# Environment given to each test script:
#   KC_REAL_KUBECONFIG     admin kubeconfig (client cert, group system:masters)
#   KC_REAL_SA_KUBECONFIG  ServiceAccount kcache-system/kcache-controller (token)
#   KC_REAL_SERVER         https://127.0.0.1:PORT
#   KC_REAL_CA             CA certificate of the server
#   KC_REAL_ADMIN_URL      harness admin endpoint (POST $KC_REAL_ADMIN_URL/compact)
#   KC_REAL_DIR            scratch directory for the scripts (build/realapi/work)
#   KC_REAL_BIN            the harness program (to start a differently configured one)
#   KC_BUILD               C build directory (build)
# A script exits 0 (pass), 77 (skipped) or anything else (fail).
#
# Knobs: KC_REAL_BIN (use this harness binary, no build), KC_REAL_ARGS (extra
# harness flags, e.g. "-- --watch-cache=false"), KC_REAL_ONLY (glob of
# script names to run), GOFLAGS (-p=2 added unless it sets -p).
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD=${KC_BUILD:-build}
OUT=$ROOT/$BUILD/realapi
mkdir -p "$OUT"
BIN=${KC_REAL_BIN:-$OUT/kcache-realapi}

if [ -z "${KC_REAL_BIN:-}" ]; then
    if ! command -v go >/dev/null 2>&1; then
        echo "test-real: skipped: no 'go' command on this machine (the real-apiserver harness is a Go program)"
        exit 0
    fi
    # Rebuild only when a source is newer than the binary (go's build cache
    # makes a rebuild cheap, but linking kube-apiserver still takes a while).
    stale=1
    if [ -x "$BIN" ] && [ -z "$(find tests/realapi -newer "$BIN" \( -name '*.go' -o -name go.mod -o -name go.sum \) -print -quit)" ]; then
        stale=0
    fi
    if [ $stale = 1 ]; then
        echo "test-real: building $BIN (first build with empty Go caches: ~9-15 min, 2.8 GB of build cache)"
        t0=$(date +%s)
        # the server reports the pinned release as its version (kubectl and
        # clients parse it); same flags every time so go's cache is reused
        kver=$(sed -n 's/^[[:space:]]*k8s.io\/kubernetes \(v[0-9.]*\).*/\1/p' tests/realapi/go.mod | head -1)
        minor=$(echo "$kver" | cut -d. -f2)
        V=k8s.io/component-base/version
        ldflags="-X $V.gitVersion=$kver -X $V.gitMajor=1 -X $V.gitMinor=$minor -X $V.gitTreeState=clean"
        ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=$kver"
        gf=${GOFLAGS:-}
        case " $gf" in *" -p="*) ;; *) gf="$gf -p=2" ;; esac  # 2 cores, shared
        if ! (cd tests/realapi && GOFLAGS="$gf" go build -buildvcs=false -trimpath -ldflags "$ldflags" -o "$BIN.tmp" .) > "$OUT/build.log" 2>&1; then
            tail -40 "$OUT/build.log"
            echo "test-real: build failed (log: $OUT/build.log)"
            echo "0 passed, 1 failed"
            exit 1
        fi
        mv "$BIN.tmp" "$BIN"
        echo "test-real: built in $(( $(date +%s) - t0 ))s"
    else
        echo "test-real: $BIN is up to date"
    fi
fi

KDIR=$OUT/kube
WORK=$OUT/work
rm -rf "$KDIR" "$WORK"
mkdir -p "$WORK"
# every manifest but kustomize's own file (not an API object)
APPLY=()
for f in manifests/*.y*ml; do
    [ -e "$f" ] || continue
    case $(basename "$f") in kustomization.y*ml) continue ;; esac
    APPLY+=(--apply "$f")
done
# (the old output goes first: the started process truncates it only once it
# runs, and the wait below must not read the previous run's "ready" line)
rm -f "$OUT/harness.out" "$OUT/harness.err"
: > "$OUT/harness.out"
# shellcheck disable=SC2086
"$BIN" --kubeconfig-dir "$KDIR" --max-lifetime 40m --log-file "$OUT/apiserver.log" \
    "${APPLY[@]}" ${KC_REAL_ARGS:-} > "$OUT/harness.out" 2> "$OUT/harness.err" &
HPID=$!
stop_harness() {
    if kill -0 "$HPID" 2>/dev/null; then
        kill -TERM "$HPID" 2>/dev/null
        for _ in $(seq 1 600); do kill -0 "$HPID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$HPID" 2>/dev/null
    fi
    wait "$HPID" 2>/dev/null
}
trap stop_harness EXIT
trap 'exit 130' INT TERM

t0=$(date +%s)
SERVER=
for _ in $(seq 1 3000); do
    SERVER=$(sed -n 's/^ready \(https:.*\)$/\1/p' "$OUT/harness.out")
    [ -n "$SERVER" ] && break
    kill -0 "$HPID" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$SERVER" ]; then
    echo "test-real: harness did not become ready"
    tail -20 "$OUT/harness.err"; tail -20 "$OUT/apiserver.log" 2>/dev/null
    echo "0 passed, 1 failed"
    exit 1
fi
echo "test-real: kube-apiserver ready at $SERVER in $(( $(date +%s) - t0 ))s"

export KC_BUILD=$BUILD
export KC_REAL_KUBECONFIG=$KDIR/admin.kubeconfig
export KC_REAL_SA_KUBECONFIG=$KDIR/controller.kubeconfig
export KC_REAL_SERVER=$SERVER
export KC_REAL_CA=$KDIR/ca.crt
KC_REAL_ADMIN_URL=$(cat "$KDIR/admin.url")
export KC_REAL_ADMIN_URL
export KC_REAL_DIR=$WORK
export KC_REAL_BIN=$BIN

pass=0 fail=0 skip=0
for t in tests/realapi/compare_kubectl.sh tests/realapi/test_*.sh; do
    [ -e "$t" ] || continue
    name=$(basename "$t" .sh)
    # shellcheck disable=SC2053
    if [ -n "${KC_REAL_ONLY:-}" ] && [[ $name != $KC_REAL_ONLY ]]; then continue; fi
    echo "=== $name"
    timeout 600 bash "$t"
    rc=$?
    case $rc in
        0) echo "--- PASS $name"; pass=$((pass + 1)) ;;
        77) echo "--- SKIP $name"; skip=$((skip + 1)) ;;
        *) echo "--- FAIL $name (exit $rc)"; fail=$((fail + 1)) ;;
    esac
done

stop_harness
trap - EXIT
if grep -q 'realapi: stopped$' "$OUT/harness.err"; then
    echo "test-real: harness stopped cleanly"
else
    echo "test-real: harness did not stop cleanly"; tail -5 "$OUT/harness.err"
    fail=$((fail + 1))
fi
echo "$pass passed, $fail failed, $skip skipped"
[ $fail = 0 ]
