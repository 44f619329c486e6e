#!/usr/bin/env bash
# The harness itself: kubeconfig files and modes, the two identities, and
# --apply binding RBAC to the ServiceAccount (a second harness started here
# with a generated ClusterRole/ClusterRoleBinding): what the role allows
# works, a verb outside it gets a clear 403.
# Runs under tests/realapi/run.sh (needs KC_REAL_*).
set -euo pipefail
: "${KC_REAL_KUBECONFIG:?run me through tests/realapi/run.sh}"
W=$KC_REAL_DIR/harness
rm -rf "$W"; mkdir -p -m 700 "$W"
export HOME=$W/home; mkdir -p "$HOME"
fail() { echo "FAIL: $*"; exit 1; }

# files and modes of the shared harness
D=$(dirname "$KC_REAL_KUBECONFIG")
[ "$(stat -c %a "$D")" = 700 ] || fail "kubeconfig dir mode $(stat -c %a "$D")"
for f in admin.kubeconfig controller.kubeconfig ca.crt admin.url; do
    [ "$(stat -c %a "$D/$f")" = 600 ] || fail "$f mode $(stat -c %a "$D/$f"), want 600"
done
# identities
who=$(kubectl --kubeconfig "$KC_REAL_KUBECONFIG" auth whoami -o jsonpath='{.status.userInfo.username} {.status.userInfo.groups}')
echo "admin: $who"
case $who in *system:masters*) ;; *) fail "admin is not in system:masters" ;; esac
who=$(kubectl --kubeconfig "$KC_REAL_SA_KUBECONFIG" auth whoami -o jsonpath='{.status.userInfo.username}')
echo "controller: $who"
[ "$who" = system:serviceaccount:kcache-system:kcache-controller ] || fail "controller identity $who"
# version reported (clients parse it)
ver=$(kubectl --kubeconfig "$KC_REAL_KUBECONFIG" get --raw /version | jq -r .gitVersion)
echo "server version $ver"
[[ $ver =~ ^v1\.[0-9]+\.[0-9]+$ ]] || fail "server version $ver"

# --apply with RBAC for the ServiceAccount
cat > "$W/rbac.yaml" <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: kcache-test-reader
rules:
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kcache-test-reader
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: kcache-test-reader
subjects:
- kind: ServiceAccount
  name: kcache-controller
  namespace: kcache-system
EOF
"$KC_REAL_BIN" --kubeconfig-dir "$W/kube" --max-lifetime 5m --log-file "$W/apiserver.log" --apply "$W/rbac.yaml" \
    > "$W/harness.out" 2> "$W/harness.err" &
HPID=$!
trap 'kill -TERM $HPID 2>/dev/null; wait $HPID 2>/dev/null' EXIT
for _ in $(seq 1 1200); do
    grep -q '^ready https://' "$W/harness.out" 2>/dev/null && break
    kill -0 $HPID 2>/dev/null || break
    sleep 0.1
done
grep -q '^ready https://' "$W/harness.out" || fail "harness with --apply not ready: $(tail -3 "$W/harness.err")"
grep -q 'applied ClusterRoleBinding kcache-test-reader' "$W/harness.err" || fail "no 'applied' line: $(cat "$W/harness.err")"
SA=(kubectl --kubeconfig "$W/kube/controller.kubeconfig")
"${SA[@]}" get configmaps -A > /dev/null || fail "ServiceAccount cannot list configmaps"
if "${SA[@]}" delete configmap -n kube-system extension-apiserver-authentication > "$W/del.out" 2> "$W/del.err"; then
    fail "ServiceAccount could delete a configmap"
fi
echo "outside the role: $(cat "$W/del.err")"
grep -q 'Forbidden' "$W/del.err" && grep -q 'cannot delete resource "configmaps"' "$W/del.err" \
    || fail "delete outside the role: no clear 403"
kill -TERM $HPID; wait $HPID; trap - EXIT
grep -q 'realapi: stopped$' "$W/harness.err" || fail "second harness did not stop cleanly"
echo "ok"
