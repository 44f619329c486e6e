#!/usr/bin/env bash
# build/kcache-fakeapi's command line: --allow rules for user names with
# colons (ServiceAccounts: system:serviceaccount:NS:NAME) are split at the
# last two colons, so the user is limited to exactly its rules; a malformed
# rule stops the server with a message instead of being ignored.
set -u
B=${KC_BUILD:-build}
case $B in /*) ;; *) B=$PWD/$B ;; esac
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 1' INT TERM
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok   $*"; }

sa=system:serviceaccount:kcache-system:kcache-controller
"$B/kcache-fakeapi" --listen 127.0.0.1:0 --kubeconfig-out "$work/kc" --ca-out "$work/ca.pem" \
    --token admintok --user-token "$sa=satok" --allow "$sa:list:configmaps" \
    >"$work/ready" 2>"$work/log" &
pid=$!
for _ in $(seq 100); do grep -q '^ready ' "$work/ready" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^ready //p' "$work/ready")
[ -n "$url" ] || { echo "FAIL: server did not start"; cat "$work/log"; exit 1; }
code() { curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --cacert "$work/ca.pem" \
    -H "Authorization: Bearer $1" "$url$2"; }
[ "$(code satok /api/v1/configmaps)" = 200 ] && ok "ServiceAccount may list configmaps" ||
    fail "ServiceAccount list configmaps: $(code satok /api/v1/configmaps)"
[ "$(code satok /api/v1/secrets)" = 403 ] && ok "ServiceAccount may not list secrets (403)" ||
    fail "ServiceAccount list secrets: $(code satok /api/v1/secrets), want 403"
[ "$(code satok /api/v1/namespaces/default/configmaps/x)" = 403 ] && ok "ServiceAccount may not get (403)" ||
    fail "ServiceAccount get: want 403"
[ "$(code admintok /api/v1/secrets)" = 200 ] && ok "admin without rules is unrestricted" || fail "admin list secrets"
kill "$pid"; wait "$pid" 2>/dev/null; pid=

for bad in "justauser" "user:list" ":list:configmaps" "user:list:"; do
    if timeout 10 "$B/kcache-fakeapi" --listen 127.0.0.1:0 --allow "$bad" >"$work/out" 2>"$work/err"; then
        fail "--allow '$bad' accepted"
    elif grep -q 'allow wants USER:VERB:RESOURCE' "$work/err"; then
        ok "--allow '$bad' rejected with a message"
    else
        fail "--allow '$bad': no clear message: $(cat "$work/err")"
    fi
done
[ $fails = 0 ] || exit 1
echo "all fakeapi command-line checks passed"
