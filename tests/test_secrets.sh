#!/usr/bin/env bash
# Secrets and trust, end to end with the real programs:
#  - kcache-controller (at --v 2, the highest) replicates Secrets whose
#    values are known markers, follows an update, undoes a hand edit, meets
#    a foreign object (conflict: Event + log), and a second controller runs
#    with a wrong token (401s logged).  No marker (raw or base64), no bearer
#    token and no private key (-----BEGIN) may appear in any log, in
#    /metrics or in the Events the controller writes.
#  - TLS verification: a kubeconfig without CA data fails with a TLS
#    error; "insecure-skip-tls-verify: false" still verifies; a non-boolean
#    value is a configuration error; only "true" disables verification, and
#    then a warning is logged at start.
#  - files the programs write (the fake server's kubeconfig and CA) are 0600.
set -euo pipefail
B=${KC_BUILD:-build}
tmp=$(mktemp -d /tmp/kc-secrets-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
fail() { echo "FAIL: $*" >&2; for f in "$tmp"/*.log; do echo "--- $f"; tail -15 "$f"; done >&2; exit 1; }

TOKEN="tok-MARKER-bearer-7f3a9c1e55d24b08"
WRONG="tok-MARKER-wrong-0b1c2d3e4f"
M1="MARKER-secret-value-one-8d1f"
M2="MARKER-secret-value-two-42aa"
M3="MARKER-secret-value-three-c0de"
KEY=$'-----BEGIN PRIVATE KEY-----\nMARKERkeyMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n'
b64() { printf '%s' "$1" | base64 -w0; }

umask 022   # the programs must not rely on the caller's umask
"$B/kcache-fakeapi" --kubeconfig-out "$tmp/kc" --ca-out "$tmp/ca.pem" --token "$TOKEN" \
    --user-token "other=$WRONG-x" -v >"$tmp/fa.out" 2>"$tmp/fa.log" &
pids+=($!)
for _ in $(seq 200); do grep -q '^ready ' "$tmp/fa.out" 2>/dev/null && break; sleep 0.05; done
url=$(sed -n 's/^ready //p' "$tmp/fa.out")
[ -n "$url" ] || fail "fake API server did not start"

# files written by the fake server: 0600
for f in "$tmp/kc" "$tmp/ca.pem"; do
    m=$(stat -c %a "$f")
    [ "$m" = 600 ] || fail "$f has mode $m, want 600"
done

api() { curl -sS --noproxy '*' --cacert "$tmp/ca.pem" -H "Authorization: Bearer $TOKEN" "$@"; }
post() { api -X POST -H 'Content-Type: application/json' "$url$1" -d "$2" >/dev/null; }
for ns in src team-a team-b; do
    post /api/v1/namespaces "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"$ns\"}}"
done
# a foreign Secret where a copy would go: a conflict the controller reports
post /api/v1/namespaces/team-b/secrets \
    '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"creds","namespace":"team-b"},"data":{"x":"eA=="}}'
post /api/v1/namespaces/src/secrets "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"creds\",\"namespace\":\"src\",\"annotations\":{\"kcache.io/replicate-to\":\"team-*\"}},\"type\":\"Opaque\",\"data\":{\"password\":\"$(b64 "$M1")\",\"tls.key\":\"$(b64 "$KEY")\"},\"stringData\":{\"token\":\"$M3\"}}"
post /api/v1/namespaces/src/configmaps "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"plain\",\"namespace\":\"src\",\"annotations\":{\"kcache.io/replicate-to\":\"team-a\"}},\"data\":{\"k\":\"v\"}}"

start_ctrl() { # name kubeconfig format
    "$B/kcache-controller" --kubeconfig "$2" --v 2 --log-format "$3" \
        --metrics-bind-address 127.0.0.1:0 --health-probe-bind-address 127.0.0.1:0 \
        >"$tmp/$1.log" 2>&1 &
    pids+=($!)
    eval "pid_$1=$!"
}
wait_for() { # seconds command...
    local n=$(( $1 * 20 )); shift
    for _ in $(seq "$n"); do "$@" && return 0; sleep 0.05; done
    return 1
}
copy_has() { # ns value
    local d
    d=$(api "$url/api/v1/namespaces/$1/secrets/creds" 2>/dev/null) || return 1
    grep -q "$(b64 "$2")" <<<"$d"
}

start_ctrl text "$tmp/kc" text
wait_for 15 copy_has team-a "$M1" || fail "the Secret was not replicated"
# update the source; the copy follows
api -X PATCH -H 'Content-Type: application/merge-patch+json' "$url/api/v1/namespaces/src/secrets/creds" \
    -d "{\"data\":{\"password\":\"$(b64 "$M2")\"}}" >/dev/null
wait_for 15 copy_has team-a "$M2" || fail "the copy did not follow the update"
# a hand edit of the copy is undone
api -X PATCH -H 'Content-Type: application/merge-patch+json' "$url/api/v1/namespaces/team-a/secrets/creds" \
    -d "{\"data\":{\"password\":\"$(b64 "hand-edit")\"}}" >/dev/null
sleep 0.3
wait_for 15 copy_has team-a "$M2" || fail "the hand edit was not undone"
# the conflict was seen (log) before we look at the logs
wait_for 10 grep -qi 'conflict\|not managed\|foreign' "$tmp/text.log" || fail "no conflict logged"

# metrics of the running controller
mp=$(sed -n 's/.*serving metrics on port \([0-9]*\).*/\1/p' "$tmp/text.log" | head -1)
[ -n "$mp" ] || fail "no metrics port in the log"
curl -s --noproxy '*' "http://127.0.0.1:$mp/metrics" >"$tmp/metrics.txt"
grep -q '^kcache_' "$tmp/metrics.txt" || grep -q '^controller_runtime_' "$tmp/metrics.txt" ||
    fail "/metrics looks empty"
# Events written by the controller (their messages are error messages too)
api "$url/api/v1/events" >"$tmp/events.json" 2>/dev/null || true
api "$url/apis/events.k8s.io/v1/events" >>"$tmp/events.json" 2>/dev/null || true
grep -q ReplicationConflict "$tmp/events.json" || fail "no conflict Event: the Event check would prove nothing"

# the same controller in JSON format, and one with a wrong token (401s)
start_ctrl json "$tmp/kc" json
sed "s/$TOKEN/$WRONG/" "$tmp/kc" >"$tmp/kc-wrong"
start_ctrl wrong "$tmp/kc-wrong" text
sleep 3
grep -qi 'unauthorized\|401' "$tmp/wrong.log" || fail "the wrong token's 401 was not logged"
kill -TERM "$pid_text" "$pid_json" "$pid_wrong"
wait "$pid_text" || fail "controller exit status $?"
wait "$pid_json" 2>/dev/null || true
wait "$pid_wrong" 2>/dev/null || true

# nothing secret anywhere
leaks=0
for pat in "$M1" "$M2" "$M3" "$(b64 "$M1")" "$(b64 "$M2")" "$(b64 "$M3")" \
           "$TOKEN" "$WRONG" "-----BEGIN" "MARKERkey" "$(b64 "$KEY" | cut -c1-24)"; do
    for f in "$tmp/text.log" "$tmp/json.log" "$tmp/wrong.log" "$tmp/fa.log" "$tmp/metrics.txt" \
             "$tmp/events.json"; do
        if grep -qF -- "$pat" "$f"; then
            echo "LEAK: '$pat' in $(basename "$f"):" >&2
            grep -nF -- "$pat" "$f" | head -3 >&2
            leaks=1
        fi
    done
done
[ "$leaks" = 0 ] || fail "secret material in logs, metrics or events"
grep -l "Sanitizer" "$tmp"/*.log 2>/dev/null && fail "a sanitizer report in a log"
lines=$(cat "$tmp/text.log" "$tmp/json.log" | wc -l)
[ "$lines" -gt 20 ] || fail "only $lines log lines at --v 2: the check would prove nothing"
grep -q 'level=debug' "$tmp/text.log" || fail "no debug lines at --v 2"

# ---- TLS verification cannot be turned off by accident
srv=$(sed -n 's/^ *server: *//p' "$tmp/kc" | head -1)
mk() { # file cluster-extra-lines
    printf 'apiVersion: v1\nkind: Config\ncurrent-context: t\nclusters:\n- name: c\n  cluster:\n    server: %s\n%busers:\n- name: u\n  user:\n    token: %s\ncontexts:\n- name: t\n  context: {cluster: c, user: u}\n' \
        "$srv" "$2" "$TOKEN" >"$1"
    chmod 600 "$1"
}
run_briefly() { # name kubeconfig -> exit status in $rc, log in $tmp/NAME.log
    rc=0
    timeout -s TERM 4 "$B/kcache-controller" --kubeconfig "$2" --v 1 --cache-sync-timeout 2 \
        --metrics-bind-address 0 --health-probe-bind-address 0 >"$tmp/$1.log" 2>&1 || rc=$?
}
mk "$tmp/kc-noca" ""
run_briefly noca "$tmp/kc-noca"
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "no CA: exit $rc, want a failure"
grep -q 'TLS error.*certificate' "$tmp/noca.log" || fail "no CA: no TLS error logged"
mk "$tmp/kc-false" "    insecure-skip-tls-verify: false\n"
run_briefly false "$tmp/kc-false"
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "insecure-skip-tls-verify false: exit $rc, want a failure"
grep -q 'TLS error.*certificate' "$tmp/false.log" || fail "insecure-skip-tls-verify false: no TLS error"
grep -qi 'insecure' "$tmp/false.log" && fail "insecure-skip-tls-verify false: warned as insecure"
mk "$tmp/kc-yes" "    insecure-skip-tls-verify: yes please\n"
run_briefly yes "$tmp/kc-yes"
[ "$rc" = 1 ] || fail "a non-boolean insecure-skip-tls-verify: exit $rc, want 1"
grep -q 'insecure-skip-tls-verify' "$tmp/yes.log" || fail "the bad value is not named"
# the environment does not turn verification off either
rc=0
SSL_CERT_FILE=/dev/null CURL_CA_BUNDLE= GODEBUG=x509ignoreCN=0 KUBERNETES_INSECURE=1 \
    timeout -s TERM 4 "$B/kcache-controller" --kubeconfig "$tmp/kc-noca" --cache-sync-timeout 2 \
    --metrics-bind-address 0 --health-probe-bind-address 0 >"$tmp/env.log" 2>&1 || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "environment: exit $rc, want a failure"
grep -q 'TLS error.*certificate' "$tmp/env.log" || fail "environment: no TLS error"
mk "$tmp/kc-insecure" "    insecure-skip-tls-verify: true\n"
timeout -s TERM 3 "$B/kcache-controller" --kubeconfig "$tmp/kc-insecure" \
    --metrics-bind-address 0 --health-probe-bind-address 0 >"$tmp/insecure.log" 2>&1 || true
grep -i 'insecure-skip-tls-verify' "$tmp/insecure.log" | grep -qi 'warn\|NOT verified' ||
    fail "insecure-skip-tls-verify: true: no warning at start"
grep -q 'caches synced' "$tmp/insecure.log" || fail "insecure-skip-tls-verify: true did not connect"
echo "ok"
