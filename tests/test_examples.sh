#!/usr/bin/env bash
# Runs the README's example (examples/configmap_sizes.c) against
# build/kcache-fakeapi: two ConfigMaps named app-config in team-a and team-b;
# deleting team-a's must be reported for team-a only.  The server and the
# example are always stopped.
set -u
B=${KC_BUILD:-build}
case $B in /*) ;; *) B=$PWD/$B ;; esac
if ! command -v kubectl >/dev/null 2>&1; then
    echo "SKIP: kubectl not on PATH"; exit 0
fi
work=$(mktemp -d)
pid= epid=
cleanup() {
    [ -n "$epid" ] && kill "$epid" 2>/dev/null
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok   $*"; }

"$B/kcache-fakeapi" --listen 127.0.0.1:0 --kubeconfig-out "$work/kubeconfig" \
    >"$work/ready" 2>"$work/server.log" &
pid=$!
for _ in $(seq 100); do grep -q '^ready ' "$work/ready" 2>/dev/null && break; sleep 0.1; done
grep -q '^ready ' "$work/ready" || { echo "FAIL: server not ready"; cat "$work/server.log"; exit 1; }
export HOME=$work/home KUBECONFIG=$work/kubeconfig
mkdir -p "$HOME"
k() { timeout 60 kubectl "$@" >>"$work/kubectl.log" 2>&1; }

for ns in team-a team-b; do
    printf '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"%s"}}' "$ns" >"$work/ns.json"
    k create --validate=false -f "$work/ns.json" || fail "create namespace $ns"
done
printf '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"app-config","namespace":"team-a"},"data":{"a":"1"}}' >"$work/a.json"
printf '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"app-config","namespace":"team-b"},"data":{"a":"1","b":"2"}}' >"$work/b.json"
k create --validate=false -f "$work/a.json" || fail "create team-a/app-config"
k create --validate=false -f "$work/b.json" || fail "create team-b/app-config"

"$B/examples/configmap_sizes" --kubeconfig "$work/kubeconfig" --seconds 20 >"$work/out" 2>"$work/err" &
epid=$!
wait_for() { for _ in $(seq 100); do grep -qx "$1" "$work/out" && return 0; sleep 0.1; done; return 1; }
wait_for 'team-a/app-config: 1 keys (resourceVersion [0-9]*)' && ok "team-a/app-config reconciled" || fail "team-a/app-config not reconciled"
wait_for 'team-b/app-config: 2 keys (resourceVersion [0-9]*)' && ok "team-b/app-config reconciled" || fail "team-b/app-config not reconciled"
k delete configmap app-config -n team-a || fail "kubectl delete"
wait_for 'team-a/app-config: gone' && ok "team-a/app-config reported gone" || fail "delete of team-a/app-config not seen"
sleep 0.5
grep -q '^team-b/app-config: gone' "$work/out" && fail "team-b/app-config reported gone" || ok "team-b/app-config untouched"
kill -TERM "$epid"; wait "$epid"; rc=$?; epid=
[ $rc = 0 ] && ok "example exits 0 on SIGTERM" || fail "example exit status $rc"
if [ $fails -gt 0 ]; then
    echo "--- example stdout"; cat "$work/out"; echo "--- stderr"; cat "$work/err"; cat "$work/kubectl.log"
    exit 1
fi
echo "all example checks passed"
