#!/usr/bin/env bash
# 410 Expired after compaction.
#
# Part 1, on the shared server (watch cache on, as in real clusters): write
# objects, remember an old resourceVersion, write more, compact etcd through
# the harness; an exact list at the old resourceVersion must answer 410
# Expired.  A watch from the old resourceVersion is recorded but not judged:
# kube-apiserver's watch cache keeps serving events newer than its own start
# whatever etcd compacted (its window, not compaction, makes watches expire).
#
# Then the harness restarts kube-apiserver (POST /restart): an open watch is
# cut, and the watch from the old resourceVersion gets 410 Expired.
#
# Part 2, on a second harness started here with --watch-cache=false (watches
# then go to etcd): after compaction a watch from the old resourceVersion
# must end in a 410 (an HTTP 410, or a 200 stream whose first event is an
# ERROR Status with code 410), also through kubectl get --raw; a watch from
# a current resourceVersion must still work.
# Runs under tests/realapi/run.sh (needs KC_REAL_*).
set -euo pipefail
: "${KC_REAL_KUBECONFIG:?run me through tests/realapi/run.sh}"
W=$KC_REAL_DIR/expired
rm -rf "$W"; mkdir -p -m 700 "$W"
export HOME=$W/home; mkdir -p "$HOME"
fail() { echo "FAIL: $*"; exit 1; }

# use_server KUBECONFIG CA: point k (kubectl) and c (curl, client cert) at a server
use_server() {
    KC=$1; CA=$2
    SERVER=$(kubectl --kubeconfig "$KC" config view --raw -o jsonpath='{.clusters[0].cluster.server}')
    kubectl --kubeconfig "$KC" config view --raw -o jsonpath='{.users[0].user.client-certificate-data}' | base64 -d > "$W/admin.crt"
    kubectl --kubeconfig "$KC" config view --raw -o jsonpath='{.users[0].user.client-key-data}' | base64 -d > "$W/admin.key"
    chmod 600 "$W/admin.key"
}
k() { kubectl --kubeconfig "$KC" "$@"; }
c() { curl -sS --cacert "$CA" --cert "$W/admin.crt" --key "$W/admin.key" "$@"; }

# fill NS: creates objects; sets OLD and NEW resourceVersions
fill() {
    k create namespace "$1" >/dev/null
    k -n "$1" create configmap c0 --from-literal=k=v0 >/dev/null
    OLD=$(k -n "$1" get configmap c0 -o jsonpath='{.metadata.resourceVersion}')
    for i in 1 2 3 4 5; do
        k -n "$1" create configmap "c$i" --from-literal=k=v$i >/dev/null
        k -n "$1" patch configmap c0 --type merge -p "{\"data\":{\"k\":\"v0-$i\"}}" >/dev/null
    done
    NEW=$(k -n "$1" get configmap c0 -o jsonpath='{.metadata.resourceVersion}')
    echo "old resourceVersion $OLD, new $NEW"
}

exact_list_410() { # exact_list_410 NS  (the cache learns of compaction within ~15s)
    local t0=$SECONDS
    for _ in $(seq 1 30); do
        code=$(c -o "$W/list.json" -w '%{http_code}' "$SERVER/api/v1/namespaces/$1/configmaps?resourceVersion=$OLD&resourceVersionMatch=Exact")
        [ "$code" = 410 ] && break
        sleep 1
    done
    echo "exact list 410 after $((SECONDS - t0))s"
    echo "exact list at $OLD: HTTP $code: $(head -c 300 "$W/list.json")"
    [ "$code" = 410 ] || fail "exact list at a compacted resourceVersion: HTTP $code, want 410"
    grep -Eq '"reason": *"Expired"' "$W/list.json" || fail "exact list 410 without reason Expired"
}

echo "--- part 1: shared server, watch cache on"
use_server "$KC_REAL_KUBECONFIG" "$KC_REAL_CA"
NS=kc-expired
fill $NS
code=$(c -o "$W/pre.json" -w '%{http_code}' "$SERVER/api/v1/namespaces/$NS/configmaps?watch=1&resourceVersion=$OLD&timeoutSeconds=1")
[ "$code" = 200 ] || fail "watch before compaction: HTTP $code"
grep -q '"type":"MODIFIED"' "$W/pre.json" || fail "watch before compaction saw no MODIFIED event"
# a continue token from before the compaction (first page of 2)
TOKEN=$(c "$SERVER/api/v1/namespaces/$NS/configmaps?limit=2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["continue"])')
k -n "$NS" create configmap after-token >/dev/null  # the token's revision falls behind
echo "compacted: $(curl -sS -X POST "$KC_REAL_ADMIN_URL/compact")"
exact_list_410 $NS
# the token has expired too: 410 Expired, a Status whose metadata holds a
# token to go on with (inconsistently), in the words the fake server uses
# (tests/test_fakeapi.c test_continue_expiry checks the fake's)
code=$(c -o "$W/cont.json" -w '%{http_code}' "$SERVER/api/v1/namespaces/$NS/configmaps?limit=2&continue=$TOKEN")
echo "list with a pre-compaction continue token: HTTP $code: $(head -c 200 "$W/cont.json")"
[ "$code" = 410 ] || fail "expired continue token: HTTP $code, want 410"
python3 - "$W/cont.json" <<'PY' || fail "expired continue token: Status differs"
import json, sys
j = json.load(open(sys.argv[1]))
want_msg = ("The provided continue parameter is too old to display a consistent list result. "
            "You can start a new list without the continue parameter, or use the continue token "
            "in this response to retrieve the remainder of the results. Continuing with the "
            "provided token results in an inconsistent list - objects that were created, "
            "modified, or deleted between the time the first chunk was returned and now may "
            "show up in the list.")
assert list(j) == ["kind", "apiVersion", "metadata", "status", "message", "reason", "code"], list(j)
assert list(j["metadata"]) == ["continue"] and j["metadata"]["continue"], j["metadata"]
assert (j["status"], j["message"], j["reason"], j["code"]) == ("Failure", want_msg, "Expired", 410), j
PY
code=$(c -o "$W/watch1.json" -w '%{http_code}' "$SERVER/api/v1/namespaces/$NS/configmaps?watch=1&resourceVersion=$OLD&timeoutSeconds=1")
echo "watch from $OLD with the watch cache (not judged): HTTP $code, $(grep -c '"type"' "$W/watch1.json") events, first: $(head -c 60 "$W/watch1.json")"
# a restart of kube-apiserver cuts open watches, and its new watch cache
# starts at etcd's current revision: now the watch from OLD gets 410
c -o "$W/cut.json" "$SERVER/api/v1/namespaces/$NS/configmaps?watch=1&resourceVersion=$NEW&timeoutSeconds=120" &
CPID=$!
sleep 0.5
echo "restart: $(curl -sS -X POST "$KC_REAL_ADMIN_URL/restart")"
for _ in $(seq 1 50); do kill -0 $CPID 2>/dev/null || break; sleep 0.1; done
if kill -0 $CPID 2>/dev/null; then kill $CPID; fail "an open watch survived the restart"; fi
wait $CPID || true
echo "open watch cut by the restart"
code=$(c -o "$W/watch2.json" -w '%{http_code}' "$SERVER/api/v1/namespaces/$NS/configmaps?watch=1&resourceVersion=$OLD&timeoutSeconds=1")
echo "watch from $OLD after restart: HTTP $code: $(head -c 300 "$W/watch2.json")"
{ [ "$code" = 410 ] || grep -Eq '"type":"ERROR".*"code":410' "$W/watch2.json"; } \
    || fail "watch from an old resourceVersion after restart did not get 410"
k delete namespace $NS --wait=false >/dev/null

echo "--- part 2: own server, --watch-cache=false"
BIN=${KC_REAL_BIN:?}
"$BIN" --kubeconfig-dir "$W/kube" --max-lifetime 5m --log-file "$W/apiserver.log" -- --watch-cache=false \
    > "$W/harness.out" 2> "$W/harness.err" &
HPID=$!
trap 'kill -TERM $HPID 2>/dev/null; wait $HPID 2>/dev/null' EXIT
for _ in $(seq 1 1200); do
    grep -q '^ready https://' "$W/harness.out" 2>/dev/null && break
    kill -0 $HPID 2>/dev/null || break
    sleep 0.1
done
grep -q '^ready https://' "$W/harness.out" || fail "second harness not ready: $(tail -3 "$W/harness.err")"
ADMIN_URL=$(cat "$W/kube/admin.url")
use_server "$W/kube/admin.kubeconfig" "$W/kube/ca.crt"
fill $NS
echo "compacted: $(curl -sS -X POST "$ADMIN_URL/compact")"

# 1. watch from the old resourceVersion
ok=0
for _ in $(seq 1 10); do
    code=$(c -o "$W/watch.json" -w '%{http_code}' "$SERVER/api/v1/namespaces/$NS/configmaps?watch=1&resourceVersion=$OLD&timeoutSeconds=1")
    if [ "$code" = 410 ]; then ok=1; break; fi
    if [ "$code" = 200 ] && head -c 2000 "$W/watch.json" | grep -q '"type":"ERROR".*"code":410'; then ok=1; break; fi
    sleep 0.2
done
echo "watch from $OLD: HTTP $code: $(head -c 400 "$W/watch.json")"
[ $ok = 1 ] || fail "watch from a compacted resourceVersion did not get 410"

# the same through kubectl get --raw (what a kubectl user would see)
k get --raw "/api/v1/namespaces/$NS/configmaps?watch=1&resourceVersion=$OLD&timeoutSeconds=1" > "$W/kwatch.json" 2>&1 || true
echo "kubectl get --raw watch: $(head -c 300 "$W/kwatch.json")"
grep -q '410\|Expired\|Gone\|too old' "$W/kwatch.json" || fail "kubectl --raw watch shows no expiry"

# 2. exact list at the old resourceVersion
exact_list_410 $NS

# 3. a current resourceVersion still works
code=$(c -o "$W/cur.json" -w '%{http_code}' "$SERVER/api/v1/namespaces/$NS/configmaps?watch=1&resourceVersion=$NEW&timeoutSeconds=1")
[ "$code" = 200 ] || fail "watch from the current resourceVersion: HTTP $code"
if grep -q '"type":"ERROR"' "$W/cur.json"; then fail "watch from the current resourceVersion: $(head -c 300 "$W/cur.json")"; fi

kill -TERM $HPID; wait $HPID; trap - EXIT
grep -q "realapi: stopped" "$W/harness.err" || fail "second harness did not stop cleanly"
echo "ok"
