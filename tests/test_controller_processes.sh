#!/usr/bin/env bash
# Two kcache-controller processes with leader election against the fake API
# server: one leads (the other stays ready but idle); SIGKILL the leader and
# the other leads within the lease duration plus a retry; SIGTERM releases
# the lease at once (holderIdentity "") and exits 0, and a third process
# takes over at its next retry.  Also: /readyz and /metrics of a standby.
set -euo pipefail
B=${KC_BUILD:-build}
# The cache's replace_all holds all 64 shard locks at once, which overflows
# TSan's deadlock detector (a CHECK failure); race detection stays on.
export TSAN_OPTIONS="detect_deadlocks=0 ${TSAN_OPTIONS:-}"
tmp=$(mktemp -d /tmp/kc-procs-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; for f in "$tmp"/*.log; do echo "--- $f"; tail -20 "$f"; done >&2; exit 1; }

# flags
grep -q "^kcache-controller [0-9]" <<<"$("$B/kcache-controller" --version)" || fail "--version"
grep -q -- "--leader-election-namespace" <<<"$("$B/kcache-controller" --help)" || fail "--help"
rc=0; "$B/kcache-controller" --no-such-flag >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "a bad flag exits $rc, want 2"
rc=0; "$B/kcache-controller" --log-format xml >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "a bad --log-format exits $rc, want 2"
rc=0; "$B/kcache-controller" --kubeconfig "$tmp/missing" --metrics-bind-address 0 \
    --health-probe-bind-address 0 >"$tmp/missing.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "a missing kubeconfig exits $rc, want 1"

"$B/kcache-fakeapi" --kubeconfig-out "$tmp/kc" --ca-out "$tmp/ca.pem" --token t0k \
    >"$tmp/fa.out" 2>"$tmp/fa.log" &
pids+=($!)
for _ in $(seq 100); do grep -q '^ready ' "$tmp/fa.out" 2>/dev/null && break; sleep 0.05; done
url=$(sed -n 's/^ready //p' "$tmp/fa.out")
[ -n "$url" ] || fail "fake API server did not start"
api() { curl -sS --noproxy '*' --cacert "$tmp/ca.pem" -H "Authorization: Bearer t0k" "$@"; }
api -X POST -H 'Content-Type: application/json' "$url/api/v1/namespaces" \
    -d '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"kcache-system"}}' >/dev/null

holder() {
    api "$url/apis/coordination.k8s.io/v1/namespaces/kcache-system/leases/kcache-controller" |
        python3 -c 'import json,sys; print(json.load(sys.stdin).get("spec",{}).get("holderIdentity",""))' 2>/dev/null || true
}
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$1" "$(now)"; }

start() { # name
    "$B/kcache-controller" --kubeconfig "$tmp/kc" --leader-elect \
        --leader-election-namespace kcache-system \
        --leader-elect-lease-duration 2 --leader-elect-renew-deadline 1.5 \
        --leader-elect-retry-period 0.25 \
        --metrics-bind-address 127.0.0.1:0 --health-probe-bind-address 127.0.0.1:0 \
        --log-format json >"$tmp/$1.log" 2>&1 &
    pids+=($!)
    eval "pid_$1=$!"
}
wait_log() { # file pattern seconds
    local n=$(( ${3} * 20 ))
    for _ in $(seq "$n"); do grep -q "$2" "$1" && return 0; sleep 0.05; done
    return 1
}
probe_port() { sed -n 's/.*probes on port \([0-9]*\).*/\1/p' "$1" | head -1; }
metrics_port() { sed -n 's/.*serving metrics on port \([0-9]*\).*/\1/p' "$1" | head -1; }

start A
sleep 0.5
start B
wait_log "$tmp/A.log" 'acquired as' 5 || wait_log "$tmp/B.log" 'acquired as' 5 || fail "nobody leads"
sleep 1
if grep -q 'acquired as' "$tmp/A.log"; then L=A; S=B; else L=B; S=A; fi
grep -q 'acquired as' "$tmp/$S.log" && fail "both lead"
lv=pid_$L; sv=pid_$S; lp=${!lv}; sp=${!sv}
id=$(sed -n 's/.*acquired as \([^"]*\)".*/\1/p' "$tmp/$L.log" | head -1)
[ "$(holder)" = "$id" ] || fail "lease holder $(holder) is not the leader $id"

# the standby is alive and ready (caches synced), and says it is not master
wait_log "$tmp/$S.log" 'caches synced' 5 || fail "standby caches not synced"
pp=$(probe_port "$tmp/$S.log"); mp=$(metrics_port "$tmp/$S.log")
[ "$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' "http://127.0.0.1:$pp/readyz")" = 200 ] || fail "standby not ready"
# (bodies captured first: grep -q closing a pipe early fails under pipefail)
m=$(curl -s --noproxy '*' "http://127.0.0.1:$mp/metrics")
grep -q '^leader_election_master_status{name="kcache-controller"} 0$' <<<"$m" || fail "standby master status"
m=$(curl -s --noproxy '*' "http://127.0.0.1:$(metrics_port "$tmp/$L.log")/metrics")
grep -q '^leader_election_master_status{name="kcache-controller"} 1$' <<<"$m" || fail "leader master status"

# crash the leader
kill -KILL "$lp"
t0=$(now)
wait_log "$tmp/$S.log" 'acquired as' 6 || fail "standby did not take over"
took=$(elapsed "$t0")
echo "takeover after SIGKILL: ${took}s (lease 2s, retry 0.25s)"
python3 -c "import sys; sys.exit(0 if float('$took') <= 2 + 3*0.25 + 0.5 else 1)" ||
    fail "takeover took ${took}s"
wait_log "$tmp/$S.log" 'starting 2 controllers' 2 || fail "new leader did not start controllers"

# a third waits; SIGTERM on the leader releases the lease and exits 0
start C
sleep 0.8
grep -q 'acquired as' "$tmp/C.log" && fail "C leads while S holds the lease"
kill -TERM "$sp"
t0=$(now)
rc=0; wait "$sp" || rc=$?
[ "$rc" = 0 ] || fail "SIGTERM exit status $rc"
grep -q 'released' "$tmp/$S.log" || fail "lease not released"
wait_log "$tmp/C.log" 'acquired as' 2 || fail "C did not take over after release"
took=$(elapsed "$t0")
echo "takeover after SIGTERM: ${took}s"
python3 -c "import sys; sys.exit(0 if float('$took') < 2 else 1)" || fail "release takeover took ${took}s"
kill -TERM "$pid_C"
rc=0; wait "$pid_C" || rc=$?
[ "$rc" = 0 ] || fail "C exit status $rc"
[ -z "$(holder)" ] || fail "lease still held after the last SIGTERM"
echo "ok"
