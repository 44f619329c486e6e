#!/usr/bin/env bash
# manifests/: `kubectl kustomize` renders them; the rendered objects hold
# what issue 7 asks for (tests/deploy/check-manifests.py); the ClusterRole and
# Role grant exactly tests/deploy/expected-rbac.txt; the checkers catch a
# weakened Deployment and an extra grant; and, once build/kcache-fakeapi
# exists, `kubectl apply -k manifests/` against it creates every object and
# `kubectl delete -k manifests/` removes them all.
set -u
cd "$(dirname "$0")/.." || exit 1
build=${KC_BUILD:-build}
fails=0
ok()   { echo "ok: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

if ! command -v kubectl >/dev/null 2>&1; then
    echo "SKIP: kubectl is not installed (it renders and applies the manifests)"
    exit 0
fi
py=
for p in python3 /usr/bin/python3; do
    if "$p" -c 'import yaml' >/dev/null 2>&1; then py=$p; break; fi
done
if [ -z "$py" ]; then
    echo "FAIL: no python3 with the yaml module (Debian: python3-yaml)"
    exit 1
fi

tmp=$(mktemp -d)
fake_pid=
cleanup() {
    if [ -n "$fake_pid" ]; then
        kill -TERM "$fake_pid" 2>/dev/null
        wait "$fake_pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# 1. Render.
if kubectl kustomize manifests/ > "$tmp/rendered.yaml" 2> "$tmp/kustomize.err"; then
    ok "kubectl kustomize manifests/ renders $(grep -c '^kind:' "$tmp/rendered.yaml") objects"
else
    fail "kubectl kustomize manifests/: $(cat "$tmp/kustomize.err")"
    exit 1
fi

# 2. Contents.  With the controller built, its --help must know every flag
# the Deployment passes.
help_args=()
if [ -x "$build/kcache-controller" ]; then
    if "$build/kcache-controller" --help > "$tmp/help.txt" 2>&1; then
        help_args=(--controller-help "$tmp/help.txt")
    else
        fail "$build/kcache-controller --help exited non-zero"
    fi
fi
if "$py" tests/deploy/check-manifests.py "${help_args[@]}" "$tmp/rendered.yaml"; then
    ok "objects, Deployment hardening, probes, ports${help_args:+, flags known to kcache-controller --help}"
else
    fail "rendered manifests miss required settings (above)"
fi

# 3. RBAC is exactly the expected list.
grep -v -e '^#' -e '^[[:space:]]*$' tests/deploy/expected-rbac.txt | sort > "$tmp/expected"
if "$py" tests/deploy/rbac.py from-manifests "$tmp/rendered.yaml" > "$tmp/granted" &&
   diff -u "$tmp/expected" "$tmp/granted"; then
    ok "RBAC grants exactly tests/deploy/expected-rbac.txt ($(wc -l < "$tmp/expected") grants)"
else
    fail "RBAC differs from tests/deploy/expected-rbac.txt (diff above: - expected, + granted)"
fi

# 4. The checkers catch what they must: a weakened Deployment, an extra verb,
#    and a request log that needs an ungranted verb.
sed 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/' "$tmp/rendered.yaml" > "$tmp/weak.yaml"
if "$py" tests/deploy/check-manifests.py "$tmp/weak.yaml" 2>/dev/null; then
    fail "check-manifests.py accepted readOnlyRootFilesystem: false"
else
    ok "check-manifests.py rejects a writable root filesystem"
fi
sed 's/^  - watch$/  - watch\n  - deletecollection/' "$tmp/rendered.yaml" > "$tmp/extra.yaml"
"$py" tests/deploy/rbac.py from-manifests "$tmp/extra.yaml" > "$tmp/granted-extra"
if cmp -s "$tmp/expected" "$tmp/granted-extra"; then
    fail "an extra deletecollection grant went unnoticed"
else
    ok "an extra grant changes the RBAC list"
fi
printf '%s\n' 'GET /api/v1/secrets?limit=500' 'GET /api/v1/secrets?watch=true&resourceVersion=7' \
    'POST /api/v1/namespaces/team-a/secrets' 'GET /apis' \
    'PUT /apis/coordination.k8s.io/v1/namespaces/kcache-system/leases/kcache-controller' \
    'DELETE /api/v1/namespaces/team-a/configmaps' > "$tmp/requests"
"$py" tests/deploy/rbac.py from-requests --lease-namespace kcache-system "$tmp/requests" > "$tmp/used"
want='cluster core configmaps deletecollection
cluster core secrets create
cluster core secrets list
cluster core secrets watch
namespace coordination.k8s.io leases:kcache-controller update'
if [ "$(cat "$tmp/used")" = "$want" ]; then
    ok "rbac.py from-requests maps requests to verbs"
else
    fail "rbac.py from-requests gave: $(cat "$tmp/used")"
fi

# 5. Apply and delete against the fake API server.
fake=$build/kcache-fakeapi
if [ ! -x "$fake" ]; then
    echo "SKIP: $fake not built on this branch: kubectl apply -k / delete -k not tested"
else
    mkdir -p "$tmp/home"
    export HOME=$tmp/home            # kubectl caches discovery under HOME
    export KUBECONFIG=$tmp/kubeconfig
    "$fake" --listen 127.0.0.1:0 --kubeconfig-out "$KUBECONFIG" > "$tmp/fake.out" 2> "$tmp/fake.err" &
    fake_pid=$!
    for _ in $(seq 100); do
        grep -q '^ready ' "$tmp/fake.out" 2>/dev/null && break
        kill -0 "$fake_pid" 2>/dev/null || break
        sleep 0.1
    done
    if ! grep -q '^ready ' "$tmp/fake.out"; then
        fail "kcache-fakeapi did not print ready: $(tail -5 "$tmp/fake.err")"
    else
        "$py" tests/deploy/check-manifests.py --list "$tmp/rendered.yaml" > "$tmp/objects"
        if timeout 60 kubectl apply -k manifests/ > "$tmp/apply.out" 2>&1; then
            ok "kubectl apply -k manifests/: $(tr '\n' ';' < "$tmp/apply.out")"
        else
            fail "kubectl apply -k manifests/: $(cat "$tmp/apply.out")"
        fi
        missing=0
        while read -r res ns name; do
            nsarg=(); [ "$ns" != - ] && nsarg=(-n "$ns")
            if ! kubectl get "$res/$name" "${nsarg[@]}" -o name > /dev/null 2> "$tmp/get.err"; then
                fail "after apply, $res $ns/$name is missing: $(cat "$tmp/get.err")"
                missing=1
            fi
        done < "$tmp/objects"
        [ $missing = 0 ] && ok "every object exists after apply ($(wc -l < "$tmp/objects"))"
        # What the server stored is what was rendered (spot checks).
        reps=$(kubectl get deployment kcache-controller -n kcache-system -o jsonpath='{.spec.replicas}' 2>&1)
        [ "$reps" = 2 ] && ok "stored Deployment has 2 replicas" || fail "stored Deployment replicas: $reps"
        kubectl get clusterrole kcache-controller -o yaml > "$tmp/cr.yaml" 2>&1
        if "$py" - "$tmp/cr.yaml" "$tmp/rendered.yaml" <<'PY'
import sys, yaml
stored = yaml.safe_load(open(sys.argv[1]))
rendered = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d and d["kind"] == "ClusterRole"][0]
sys.exit(0 if stored.get("rules") == rendered.get("rules") else 1)
PY
        then ok "stored ClusterRole rules equal the rendered ones"
        else fail "stored ClusterRole rules differ: $(cat "$tmp/cr.yaml")"
        fi
        # Applying again changes nothing.
        if timeout 60 kubectl apply -k manifests/ > "$tmp/apply2.out" 2>&1 &&
           ! grep -v -q -e unchanged -e configured "$tmp/apply2.out"; then
            ok "second apply: $(grep -c unchanged "$tmp/apply2.out") unchanged"
        else
            fail "second kubectl apply -k: $(cat "$tmp/apply2.out")"
        fi
        # The fake server deletes a namespace's contents at once (a real one
        # marks it Terminating and empties it later), so kubectl's deletes of
        # the objects inside it find nothing: --ignore-not-found.
        if timeout 60 kubectl delete -k manifests/ --ignore-not-found > "$tmp/delete.out" 2>&1; then
            ok "kubectl delete -k manifests/: $(tr '\n' ';' < "$tmp/delete.out")"
        else
            fail "kubectl delete -k manifests/: $(cat "$tmp/delete.out")"
        fi
        left=0
        while read -r res ns name; do
            nsarg=(); [ "$ns" != - ] && nsarg=(-n "$ns")
            if kubectl get "$res/$name" "${nsarg[@]}" -o name > /dev/null 2>&1; then
                fail "after delete, $res $ns/$name still exists"
                left=1
            fi
        done < "$tmp/objects"
        [ $left = 0 ] && ok "every object is gone after delete -k"
    fi
fi

if [ $fails -gt 0 ]; then
    echo "test_manifests: $fails failed"
    exit 1
fi
echo "test_manifests: all ok"
