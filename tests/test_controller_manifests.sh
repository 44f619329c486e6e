#!/usr/bin/env bash
# manifests/: `kubectl kustomize` renders; `kubectl apply -k` against the fake
# API server creates every object; and the rendered RBAC grants exactly what
# kcache-controller uses: the controller runs as a user restricted to the
# rendered ClusterRole + Role rules (anything missing would be a 403 and the
# replication below would not happen), its requests (client debug log) are
# mapped to (verb, resource) and compared with the grants, both ways.
set -euo pipefail
B=${KC_BUILD:-build}
export TSAN_OPTIONS="detect_deadlocks=0 ${TSAN_OPTIONS:-}"
if ! command -v kubectl >/dev/null 2>&1; then
    echo "SKIP: kubectl not installed"
    exit 0
fi
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d /tmp/kc-manifests-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; for f in "$tmp"/*.log; do echo "--- $f"; tail -30 "$f"; done >&2; exit 1; }
export HOME=$tmp/home   # fresh kubectl discovery cache
mkdir -p "$HOME"

kubectl kustomize "$root/manifests" >"$tmp/rendered.yaml" || fail "kustomize does not render"

# the allow-list for user "ctl", from the rendered rules
python3 - "$tmp/rendered.yaml" >"$tmp/grants" <<'EOF'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d.get("kind") in ("ClusterRole", "Role") and d["metadata"]["name"].startswith("kcache-controller"):
        for r in d.get("rules", []):
            for res in r["resources"]:
                for v in r["verbs"]:
                    print(f"{v} {res}")
EOF
sort -u -o "$tmp/grants" "$tmp/grants"
allow=()
while read -r v r; do allow+=(--allow "ctl:$v:$r"); done <"$tmp/grants"

"$B/kcache-fakeapi" --kubeconfig-out "$tmp/admin.kc" --ca-out "$tmp/ca.pem" --token t0k \
    --user-token ctl=ctltok "${allow[@]}" >"$tmp/fa.out" 2>"$tmp/fa.log" &
pids+=($!)
for _ in $(seq 100); do grep -q '^ready ' "$tmp/fa.out" 2>/dev/null && break; sleep 0.05; done
url=$(sed -n 's/^ready //p' "$tmp/fa.out")
[ -n "$url" ] || fail "fake API server did not start"

kubectl --kubeconfig "$tmp/admin.kc" apply -k "$root/manifests" --validate=false >"$tmp/apply.log" 2>&1 ||
    fail "kubectl apply -k failed"
want=$(grep -c '^kind:' "$tmp/rendered.yaml")
got=$(kubectl --kubeconfig "$tmp/admin.kc" get -k "$root/manifests" -o name | wc -l)
[ "$got" = "$want" ] || fail "apply -k created $got of $want objects"

api() { curl -sS --noproxy '*' --cacert "$tmp/ca.pem" -H "Authorization: Bearer t0k" "$@"; }
post() { api -X POST -H 'Content-Type: application/json' "$url$1" -d "$2" >/dev/null; }
put() { # path json-without-rv: PUT with the current resourceVersion
    local rv
    rv=$(api "$url$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["resourceVersion"])')
    api -X PUT -H 'Content-Type: application/json' "$url$1" \
        -d "$(python3 -c 'import json,sys; o=json.loads(sys.argv[1]); o["metadata"]["resourceVersion"]=sys.argv[2]; print(json.dumps(o))' "$2" "$rv")" >/dev/null
}
field() { # path python-expr-on-o ; prints "" when absent
    api "$url$1" | python3 -c "import json,sys
o=json.load(sys.stdin)
try: print($2)
except Exception: print('')"
}
wait_for() { # description command...
    local d=$1; shift
    for _ in $(seq 200); do "$@" && return 0; sleep 0.05; done
    fail "timed out: $d"
}
data_is() { [ "$(field "$1" "o['data']['$2']")" = "$3" ]; }
gone() { [ "$(field "$1" "o['kind']")" = "Status" ]; }

for ns in src team-a team-b team-c; do
    post /api/v1/namespaces "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"$ns\"}}"
done
post /api/v1/namespaces/team-c/secrets '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","namespace":"team-c"},"data":{"k":"Zm9yZWlnbg=="}}'
post /api/v1/namespaces/src/secrets '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","namespace":"src","annotations":{"kcache.io/replicate-to":"team-*"}},"data":{"k":"djE="}}'
post /api/v1/namespaces/src/configmaps '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"src","annotations":{"kcache.io/replicate-to":"team-a,team-b"}},"data":{"k":"v1"}}'

sed 's/^\( *token:\).*/\1 ctltok/' "$tmp/admin.kc" >"$tmp/ctl.kc"
chmod 600 "$tmp/ctl.kc"
"$B/kcache-controller" --kubeconfig "$tmp/ctl.kc" --leader-elect \
    --leader-election-namespace kcache-system --leader-elect-lease-duration 2 \
    --leader-elect-renew-deadline 1.5 --leader-elect-retry-period 0.25 \
    --metrics-bind-address 0 --health-probe-bind-address 0 --log-format json -v 1 \
    >"$tmp/ctl.log" 2>&1 &
ctl=$!
pids+=($ctl)

wait_for "secret copies" data_is /api/v1/namespaces/team-b/secrets/s k djE=
wait_for "secret copy team-a" data_is /api/v1/namespaces/team-a/secrets/s k djE=
wait_for "configmap copies" data_is /api/v1/namespaces/team-b/configmaps/c k v1
data_is /api/v1/namespaces/team-c/secrets/s k Zm9yZWlnbg== || fail "foreign secret changed"
wait_for "conflict event" grep -q ReplicationConflict <(api "$url/api/v1/namespaces/team-c/events")
# hand edits are restored (update)
for kind in secrets configmaps; do
    n=s; [ $kind = configmaps ] && n=c
    put /api/v1/namespaces/team-a/$kind/$n "{\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"$n\",\"namespace\":\"team-a\",\"labels\":{\"app.kubernetes.io/managed-by\":\"kcache\"},\"annotations\":{\"kcache.io/replicated-from\":\"src/$n\"}},\"data\":{\"k\":\"aGFjaw==\"}}"
done
wait_for "secret restored" data_is /api/v1/namespaces/team-a/secrets/s k djE=
wait_for "configmap restored" data_is /api/v1/namespaces/team-a/configmaps/c k v1
# narrowing deletes (delete)
put /api/v1/namespaces/src/secrets/s '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","namespace":"src","annotations":{"kcache.io/replicate-to":"team-a"}},"data":{"k":"djE="}}'
put /api/v1/namespaces/src/configmaps/c '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"src","annotations":{"kcache.io/replicate-to":"team-a"}},"data":{"k":"v1"}}'
wait_for "secret copy deleted" gone /api/v1/namespaces/team-b/secrets/s
wait_for "configmap copy deleted" gone /api/v1/namespaces/team-b/configmaps/c

kill -TERM "$ctl"
rc=0; wait "$ctl" || rc=$?
[ "$rc" = 0 ] || fail "controller exit status $rc"
grep -q '"lease kcache-system/kcache-controller: released"' "$tmp/ctl.log" || fail "lease not released"
grep -q ' 403 ' "$tmp/ctl.log" && fail "the controller was refused a request"

# what it used, as (verb, resource)
python3 - "$tmp/ctl.log" >"$tmp/used" <<'EOF'
import json, re, sys, urllib.parse
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)["msg"]
    except Exception:
        continue
    r = re.match(r"(GET|POST|PUT|PATCH|DELETE) (\S+) -> ", m)
    if not r:
        continue
    method, target = r.groups()
    u = urllib.parse.urlsplit(target)
    q = urllib.parse.parse_qs(u.query)
    parts = [p for p in u.path.split("/") if p]
    parts = parts[2:] if parts[0] == "api" else parts[3:]        # drop api/v1 or apis/G/V
    if len(parts) >= 3 and parts[0] == "namespaces":
        parts = parts[2:]                                         # drop namespaces/NS
    res, named = parts[0], len(parts) > 1
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
            "DELETE": "delete" if named else "deletecollection"}.get(method)
    if verb is None:
        verb = "get" if named else ("watch" if q.get("watch", [""])[0] in ("true", "1") else "list")
    print(verb, res)
EOF
sort -u -o "$tmp/used" "$tmp/used"
echo "granted:"; sed 's/^/  /' "$tmp/grants"
missing=$(comm -13 "$tmp/grants" "$tmp/used")
unused=$(comm -23 "$tmp/grants" "$tmp/used")
[ -z "$missing" ] || fail "used but not granted: $missing"
[ -z "$unused" ] || fail "granted but never used: $unused"
echo "ok: the rendered RBAC grants exactly the $(wc -l <"$tmp/used") (verb, resource) pairs used"
