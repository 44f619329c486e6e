#!/usr/bin/env bash
# Drives the real kubectl against build/kcache-fakeapi with the kubeconfig
# the server writes and a fresh HOME (kubectl caches discovery there):
# apply of a Namespace, a ConfigMap and a changed one, get -A, get -o json,
# get -w seeing a change made meanwhile, delete, the clear 415 for
# kubectl's protobuf-only typed create, server-side apply conflicts and
# managedFields, selector errors, namespace deletion.  Every check prints what failed;
# the server is always stopped, and must itself exit 0 (under ASan: no
# leaks).
set -u
B=${KC_BUILD:-build}
case $B in /*) ;; *) B=$PWD/$B ;; esac
PY=/usr/bin/python3
if ! command -v kubectl >/dev/null 2>&1; then
    echo "SKIP: kubectl not on PATH"; exit 0
fi
work=$(mktemp -d)
pid= wpid=
cleanup() {
    [ -n "$wpid" ] && kill "$wpid" 2>/dev/null
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
if ! grep -q '^ready https://127.0.0.1:[0-9]*$' "$work/ready"; then
    echo "FAIL: server did not print its ready line"; cat "$work/ready" "$work/server.log"; exit 1
fi
[ "$(wc -l <"$work/ready")" = 1 ] && ok "exactly one ready line" || fail "more than one line on stdout"
[ "$(stat -c %a "$work/kubeconfig")" = 600 ] && ok "kubeconfig is 0600" || fail "kubeconfig mode $(stat -c %a "$work/kubeconfig")"

export HOME=$work/home KUBECONFIG=$work/kubeconfig
mkdir -p "$HOME"
k() { timeout 60 kubectl "$@" 2>&1; }

cat >"$work/ns.yaml" <<'Y'
apiVersion: v1
kind: Namespace
metadata:
  name: kc-test
Y
cat >"$work/cm.yaml" <<'Y'
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
  namespace: kc-test
  labels: {app: demo}
data:
  key1: value1
  key2: value2
Y
cat >"$work/cm2.yaml" <<'Y'
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
  namespace: kc-test
  labels: {app: demo}
data:
  key2: value2-changed
Y

out=$(k apply -f "$work/ns.yaml")
[ "$out" = "namespace/kc-test created" ] && ok "apply namespace" || fail "apply namespace printed: $out"
out=$(k apply -f "$work/cm.yaml")
[ "$out" = "configmap/cfg created" ] && ok "apply configmap" || fail "apply configmap printed: $out"
out=$(k apply -f "$work/cm2.yaml")
[ "$out" = "configmap/cfg configured" ] && ok "apply changed configmap" || fail "apply changed printed: $out"
out=$(k apply -f "$work/cm2.yaml")
[ "$out" = "configmap/cfg unchanged" ] && ok "apply same configmap" || fail "apply same printed: $out"

out=$(k get configmaps -A)
if echo "$out" | head -1 | grep -q '^NAMESPACE *NAME *DATA *AGE' && echo "$out" | grep -q '^kc-test *cfg *1 '; then
    ok "get configmaps -A"
else
    fail "get configmaps -A printed: $out"
fi

out=$(k get configmap cfg -n kc-test -o json)
if echo "$out" | $PY -c '
import json, sys
o = json.load(sys.stdin)
assert o["kind"] == "ConfigMap" and o["apiVersion"] == "v1", o
assert o["data"] == {"key2": "value2-changed"}, o["data"]
assert o["metadata"]["name"] == "cfg" and o["metadata"]["namespace"] == "kc-test"
assert o["metadata"]["uid"] and o["metadata"]["resourceVersion"]
assert "kubectl.kubernetes.io/last-applied-configuration" in o["metadata"]["annotations"]
'; then ok "get -o json"; else fail "get -o json printed: $out"; fi

timeout 30 kubectl get configmaps -n kc-test -w -o json >"$work/watch.out" 2>&1 &
wpid=$!
for _ in $(seq 100); do grep -q '"value2-changed"' "$work/watch.out" && break; sleep 0.1; done
out=$(k patch configmap cfg -n kc-test --type=merge -p '{"data":{"key3":"value3-watched"}}')
[ "$out" = "configmap/cfg patched" ] && ok "patch" || fail "patch printed: $out"
for _ in $(seq 100); do grep -q '"value3-watched"' "$work/watch.out" && break; sleep 0.1; done
if grep -q '"value3-watched"' "$work/watch.out"; then ok "get -w saw the change"; else
    fail "get -w did not see the change; it printed: $(cat "$work/watch.out")"; fi
kill "$wpid" 2>/dev/null; wait "$wpid" 2>/dev/null; wpid=

# the default (server-side Table) output of get -w: a new row per change
timeout 30 kubectl get configmaps -n kc-test -w >"$work/watch2.out" 2>&1 &
wpid=$!
for _ in $(seq 100); do grep -q '^cfg  *2 ' "$work/watch2.out" && break; sleep 0.1; done
k patch configmap cfg -n kc-test --type=merge -p '{"data":{"key4":"v4"}}' >/dev/null
for _ in $(seq 100); do grep -q '^cfg  *3 ' "$work/watch2.out" && break; sleep 0.1; done
if head -1 "$work/watch2.out" | grep -q '^NAME  *DATA  *AGE' && grep -q '^cfg  *3 ' "$work/watch2.out"; then
    ok "get -w (table) printed the new row"
else
    fail "get -w (table) printed: $(cat "$work/watch2.out")"
fi
kill "$wpid" 2>/dev/null; wait "$wpid" 2>/dev/null; wpid=

out=$(k delete configmap cfg -n kc-test)
[ "$out" = 'configmap "cfg" deleted' ] && ok "delete configmap" || fail "delete printed: $out"
out=$(k get configmap cfg -n kc-test)
echo "$out" | grep -q 'NotFound\|not found' && ok "deleted configmap is gone" || fail "get after delete printed: $out"

out=$(k create configmap typed --from-literal=a=b -n default)
echo "$out" | grep -q 'unknown format' && ok "typed (protobuf) create gets a clear 415" \
    || fail "typed create printed: $out"
out=$(k create configmap piped --from-literal=a=b -n default --dry-run=client -o yaml | timeout 60 kubectl create -f - 2>&1)
[ "$out" = "configmap/piped created" ] && ok "create -f from a pipe" || fail "create -f printed: $out"

# managedFields and server-side apply conflicts, as kube-apiserver words them
cat >"$work/ssa.yaml" <<'Y'
apiVersion: v1
kind: ConfigMap
metadata:
  name: ssa
  namespace: kc-test
data:
  owned: by-apply
Y
out=$(k apply --server-side -f "$work/ssa.yaml")
[ "$out" = "configmap/ssa serverside-applied" ] && ok "apply --server-side" || fail "apply --server-side printed: $out"
sed 's/by-apply/by-other/' "$work/ssa.yaml" >"$work/ssa2.yaml"
out=$(k apply --server-side --field-manager other -f "$work/ssa2.yaml")
echo "$out" | head -1 | grep -qx 'error: Apply failed with 1 conflict: conflict with "kubectl": .data.owned' \
    && ok "apply conflict with another manager" || fail "apply conflict printed: $out"
out=$(k apply --server-side --field-manager other --force-conflicts -f "$work/ssa2.yaml")
[ "$out" = "configmap/ssa serverside-applied" ] && ok "apply --force-conflicts" || fail "force printed: $out"
k label configmap ssa -n kc-test extra=yes >/dev/null
out=$(k get configmap ssa -n kc-test -o jsonpath='{range .metadata.managedFields[*]}{.manager}/{.operation} {end}')
[ "$out" = "other/Apply kubectl-label/Update " ] && ok "managedFields: one entry per manager" \
    || fail "managedFields managers: $out"

# label selector errors in the real parser's words
out=$(k get configmaps -n kc-test -l 'a in (b')
echo "$out" | grep -q "unable to parse requirement: found '', expected: ',' or ')'" \
    && ok "bad label selector message" || fail "bad selector printed: $out"

# delete --wait=false returns with the namespace Terminating; the stand-in
# namespace controller then empties and removes it
out=$(k delete namespace kc-test --wait=false)
[ "$out" = 'namespace "kc-test" deleted' ] && ok "delete namespace" || fail "delete namespace printed: $out"
for _ in $(seq 100); do k get namespace kc-test >/dev/null || break; sleep 0.1; done
out=$(k get namespace kc-test)
echo "$out" | grep -q 'NotFound' && ok "namespace removed after its contents" || fail "namespace still there: $out"

kill "$pid"
wait "$pid"; rc=$?
pid=
[ $rc = 0 ] && ok "server stopped cleanly on SIGTERM" || { fail "server exit status $rc"; tail -20 "$work/server.log"; }
if [ $fails -gt 0 ]; then echo "$fails kubectl check(s) failed"; exit 1; fi
echo "all kubectl checks passed"
