#!/usr/bin/env bash
# 410 Expired after compaction: write objects, remember an old
# resourceVersion, write more, compact etcd through the harness, then
#  - a watch from the old resourceVersion must end in a 410 (an HTTP 410, or
#    a 200 stream whose first event is an ERROR Status with code 410),
#  - an exact list at the old resourceVersion must answer 410,
#  - a watch from a current resourceVersion must still work.
# Runs under tests/realapi/run.sh (needs KC_REAL_*).
set -euo pipefail
: "${KC_REAL_KUBECONFIG:?run me through tests/realapi/run.sh}"
W=$KC_REAL_DIR/expired
rm -rf "$W"; mkdir -p -m 700 "$W"
export HOME=$W/home; mkdir -p "$HOME"
k() { kubectl --kubeconfig "$KC_REAL_KUBECONFIG" "$@"; }
fail() { echo "FAIL: $*"; exit 1; }

# client certificate for curl, from the admin kubeconfig
k config view --raw -o jsonpath='{.users[0].user.client-certificate-data}' | base64 -d > "$W/admin.crt"
k config view --raw -o jsonpath='{.users[0].user.client-key-data}' | base64 -d > "$W/admin.key"
chmod 600 "$W/admin.key"
c() { curl -sS --cacert "$KC_REAL_CA" --cert "$W/admin.crt" --key "$W/admin.key" "$@"; }

NS=kc-expired
k create namespace $NS >/dev/null
k -n $NS create configmap c0 --from-literal=k=v0 >/dev/null
OLD=$(k -n $NS get configmap c0 -o jsonpath='{.metadata.resourceVersion}')
for i in 1 2 3 4 5; do
    k -n $NS create configmap "c$i" --from-literal=k=v$i >/dev/null
    k -n $NS patch configmap c0 --type merge -p "{\"data\":{\"k\":\"v0-$i\"}}" >/dev/null
done
NEW=$(k -n $NS get configmap c0 -o jsonpath='{.metadata.resourceVersion}')
echo "old resourceVersion $OLD, new $NEW"

# before compaction the old resourceVersion is still watchable
code=$(c -o "$W/pre.json" -w '%{http_code}' "$KC_REAL_SERVER/api/v1/namespaces/$NS/configmaps?watch=1&resourceVersion=$OLD&timeoutSeconds=2")
[ "$code" = 200 ] || fail "watch before compaction: HTTP $code"
grep -q '"type":"MODIFIED"' "$W/pre.json" || fail "watch before compaction saw no MODIFIED event"

rev=$(curl -sS -X POST "$KC_REAL_ADMIN_URL/compact")
echo "compacted: $rev"

# 1. watch from the old resourceVersion
ok=0
for _ in $(seq 1 50); do
    code=$(c -o "$W/watch.json" -w '%{http_code}' "$KC_REAL_SERVER/api/v1/namespaces/$NS/configmaps?watch=1&resourceVersion=$OLD&timeoutSeconds=2")
    if [ "$code" = 410 ]; then ok=1; break; fi
    if [ "$code" = 200 ] && head -c 2000 "$W/watch.json" | grep -q '"type":"ERROR".*"code":410'; then ok=1; break; fi
    sleep 0.2
done
echo "watch from $OLD: HTTP $code: $(head -c 400 "$W/watch.json")"
[ $ok = 1 ] || fail "watch from a compacted resourceVersion did not get 410"

# the same through kubectl get --raw (what a kubectl user would see)
k get --raw "/api/v1/namespaces/$NS/configmaps?watch=1&resourceVersion=$OLD&timeoutSeconds=2" > "$W/kwatch.json" 2>&1 || true
echo "kubectl get --raw watch: $(head -c 300 "$W/kwatch.json")"
grep -q '410\|Expired\|Gone\|too old' "$W/kwatch.json" || fail "kubectl --raw watch shows no expiry"

# 2. exact list at the old resourceVersion
code=$(c -o "$W/list.json" -w '%{http_code}' "$KC_REAL_SERVER/api/v1/namespaces/$NS/configmaps?resourceVersion=$OLD&resourceVersionMatch=Exact")
echo "exact list at $OLD: HTTP $code: $(head -c 300 "$W/list.json")"
[ "$code" = 410 ] || fail "exact list at a compacted resourceVersion: HTTP $code, want 410"
grep -q '"reason":"Expired"' "$W/list.json" || fail "exact list 410 without reason Expired"

# 3. a current resourceVersion still works
code=$(c -o "$W/cur.json" -w '%{http_code}' "$KC_REAL_SERVER/api/v1/namespaces/$NS/configmaps?watch=1&resourceVersion=$NEW&timeoutSeconds=1")
[ "$code" = 200 ] || fail "watch from the current resourceVersion: HTTP $code"
if grep -q '"type":"ERROR"' "$W/cur.json"; then fail "watch from the current resourceVersion: $(head -c 300 "$W/cur.json")"; fi

k delete namespace $NS --wait=false >/dev/null
echo "ok"
