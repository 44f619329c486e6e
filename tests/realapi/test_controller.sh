#!/usr/bin/env bash
# build/kcache-controller against the real kube-apiserver, as the
# ServiceAccount kcache-system/kcache-controller with exactly the RBAC of
# manifests/ (applied by run.sh):
#  - the replicator end to end: a Secret and a ConfigMap annotated
#    kcache.io/replicate-to are copied into the named namespaces and a glob's
#    namespaces (also one created later); a source update follows; a hand
#    edit and a deleted copy are undone; a foreign object is left alone (a
#    Warning Event); narrowing the annotation and deleting the source remove
#    the copies; nothing the controller does is refused (no 403 logged);
#  - leader election with two processes: one leads; SIGKILL of the leader
#    and the other leads within the lease duration (+ retries); SIGTERM
#    releases the lease at once and a third process takes over.
# Runs under tests/realapi/run.sh (needs KC_REAL_*).  Every process it
# starts is killed on exit.
set -euo pipefail
: "${KC_REAL_KUBECONFIG:?run me through tests/realapi/run.sh}"
B=${KC_BUILD:-build}
W=$KC_REAL_DIR/controller
rm -rf "$W"; mkdir -p -m 700 "$W"
export HOME=$W/home; mkdir -p "$HOME"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "FAIL: $*" >&2; for f in "$W"/*.log; do echo "--- $f"; tail -25 "$f"; done >&2; exit 1; }
k() { kubectl --kubeconfig "$KC_REAL_KUBECONFIG" "$@"; }
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" "$1" "$(now)"; }
# until CMD succeeds, for at most $1 seconds
until_ok() {
    local n=$(( $1 * 10 )); shift
    for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    return 1
}
wait_log() { # file pattern seconds
    local n=$(( ${3} * 20 ))
    for _ in $(seq "$n"); do grep -q "$2" "$1" && return 0; sleep 0.05; done
    return 1
}
holder() {
    k -n kcache-system get lease kcache-controller -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true
}
LEASE=3 RENEW=2 RETRY=0.25
RUN=r$(printf '%04x' $((RANDOM % 65536)))
start() { # name
    "$B/kcache-controller" --kubeconfig "$KC_REAL_SA_KUBECONFIG" --leader-elect \
        --leader-election-namespace kcache-system \
        --leader-elect-lease-duration $LEASE --leader-elect-renew-deadline $RENEW \
        --leader-elect-retry-period $RETRY \
        --metrics-bind-address 127.0.0.1:0 --health-probe-bind-address 127.0.0.1:0 \
        --log-format json ${KC_REAL_CTRL_ARGS:-} >"$W/$1.log" 2>&1 &
    pids+=($!)
    eval "pid_$1=$!"
}
leader_of() { # names...: the one whose log says it acquired the lease
    for n in "$@"; do grep -q 'acquired as' "$W/$n.log" && { echo "$n"; return; }; done
}

# a previous run's lease (same harness) would delay the first election
k -n kcache-system delete lease kcache-controller --ignore-not-found >/dev/null

start A
sleep 0.3
start B
wait_log "$W/A.log" 'acquired as' 10 || wait_log "$W/B.log" 'acquired as' 5 || fail "nobody leads"
sleep 0.5
L=$(leader_of A B)
[ "$L" = A ] && S=B || S=A
grep -q 'acquired as' "$W/$S.log" && fail "both lead"
lv=pid_$L; sv=pid_$S; lp=${!lv}; sp=${!sv}
id=$(sed -n 's/.*acquired as \([^"]*\)".*/\1/p' "$W/$L.log" | head -1)
[ "$(holder)" = "$id" ] || fail "lease holder '$(holder)' is not the leader '$id'"
wait_log "$W/$L.log" 'starting 2 controllers' 10 || fail "leader did not start its controllers"
echo "leader $L ($id)"

# ---- the replicator, end to end
# (namespaces get a per-run prefix: without kube-controller-manager a
# deleted namespace stays Terminating, so a rerun on the same server needs
# new names)
for ns in kc-$RUN-src kc-$RUN-a kc-$RUN-t1 kc-$RUN-other; do k create namespace "$ns" >/dev/null; done
k -n kc-$RUN-src create secret generic sec --from-literal=pw=one >/dev/null
k -n kc-$RUN-src create configmap cfg --from-literal=k=v1 >/dev/null
k -n kc-$RUN-src label secret/sec team=red >/dev/null
# a foreign ConfigMap where a copy would go: left alone
k -n kc-$RUN-t1 create configmap cfg --from-literal=k=mine >/dev/null
k -n kc-$RUN-src annotate secret/sec configmap/cfg "kcache.io/replicate-to=kc-$RUN-a,kc-$RUN-t*" >/dev/null

copy_is() { # ns kind name jsonpath want
    [ "$(k -n "$1" get "$2" "$3" -o jsonpath="$4" 2>/dev/null)" = "$5" ]
}
pw_b64=$(printf one | base64)
until_ok 20 copy_is kc-$RUN-a secret sec '{.data.pw}' "$pw_b64" || fail "secret not copied to kc-$RUN-a"
until_ok 10 copy_is kc-$RUN-t1 secret sec '{.data.pw}' "$pw_b64" || fail "secret not copied to kc-$RUN-t1 (glob)"
until_ok 10 copy_is kc-$RUN-a configmap cfg '{.data.k}' v1 || fail "configmap not copied"
copy_is kc-$RUN-a secret sec '{.metadata.annotations.kcache\.io/replicated-from}' kc-$RUN-src/sec || fail "replicated-from"
copy_is kc-$RUN-a secret sec '{.metadata.labels.app\.kubernetes\.io/managed-by}' kcache || fail "managed-by label"
copy_is kc-$RUN-a secret sec '{.metadata.labels.team}' red || fail "source labels not copied"
k -n kc-$RUN-other get secret sec >/dev/null 2>&1 && fail "copied into a namespace not named"
copy_is kc-$RUN-t1 configmap cfg '{.data.k}' mine || fail "a foreign object was overwritten"
until_ok 10 bash -c "kubectl --kubeconfig '$KC_REAL_KUBECONFIG' -n kc-$RUN-t1 get events -o json |
    jq -e '[.items[] | select(.type == \"Warning\" and .involvedObject.name == \"cfg\")] | length > 0'" ||
    fail "no Warning Event for the foreign object"
echo "copies made"

# a namespace created later matches the glob
k create namespace kc-$RUN-t2 >/dev/null
until_ok 10 copy_is kc-$RUN-t2 secret sec '{.data.pw}' "$pw_b64" || fail "no copy in a new namespace"
# source update
k -n kc-$RUN-src patch secret sec --type merge -p '{"stringData":{"pw":"two"}}' >/dev/null
pw2=$(printf two | base64)
for ns in kc-$RUN-a kc-$RUN-t1 kc-$RUN-t2; do
    until_ok 10 copy_is $ns secret sec '{.data.pw}' "$pw2" || fail "update not followed in $ns"
done
# hand edit undone, deleted copy restored
k -n kc-$RUN-a patch configmap cfg --type merge -p '{"data":{"k":"hand"}}' >/dev/null
until_ok 10 copy_is kc-$RUN-a configmap cfg '{.data.k}' v1 || fail "hand edit not undone"
k -n kc-$RUN-a delete secret sec >/dev/null
until_ok 10 copy_is kc-$RUN-a secret sec '{.data.pw}' "$pw2" || fail "deleted copy not restored"
# narrow the annotation: copies outside it go
k -n kc-$RUN-src annotate --overwrite secret/sec "kcache.io/replicate-to=kc-$RUN-a" >/dev/null
gone() { ! k -n "$1" get "$2" "$3" >/dev/null 2>&1; }
until_ok 10 gone kc-$RUN-t1 secret sec || fail "copy not removed after narrowing"
until_ok 10 gone kc-$RUN-t2 secret sec || fail "copy not removed after narrowing (t2)"
copy_is kc-$RUN-a secret sec '{.data.pw}' "$pw2" || fail "kept copy lost"
# source deleted: its copies go, the foreign object stays
k -n kc-$RUN-src delete secret/sec configmap/cfg >/dev/null
until_ok 10 gone kc-$RUN-a secret sec || fail "copy not removed with its source"
until_ok 10 gone kc-$RUN-a configmap cfg || fail "configmap copy not removed with its source"
copy_is kc-$RUN-t1 configmap cfg '{.data.k}' mine || fail "foreign object touched"
echo "replicator ok"
# everything it needed was allowed by the manifests' RBAC (a 403 is logged
# with its reason, Forbidden; a bare '403' would match timestamps: .403Z)
if grep -qi 'forbidden' "$W/$L.log"; then
    grep -i 'forbidden' "$W/$L.log" | head -5
    fail "the controller was refused something"
fi

# ---- leader election: crash the leader
{ kill -KILL "$lp"; wait "$lp"; } 2>/dev/null || true
t0=$(now)
wait_log "$W/$S.log" 'acquired as' 10 || fail "standby did not take over"
took=$(elapsed "$t0")
echo "takeover after SIGKILL: ${took}s (lease ${LEASE}s, retry ${RETRY}s)"
python3 -c "import sys; sys.exit(0 if $took <= $LEASE + 4 * $RETRY + 1 else 1)" || fail "takeover took ${took}s"
wait_log "$W/$S.log" 'starting 2 controllers' 5 || fail "new leader did not start controllers"
# the new leader replicates
k -n kc-$RUN-src create configmap again --from-literal=k=v >/dev/null
k -n kc-$RUN-src annotate configmap/again "kcache.io/replicate-to=kc-$RUN-a" >/dev/null
until_ok 10 copy_is kc-$RUN-a configmap again '{.data.k}' v || fail "new leader does not replicate"

# a third waits; SIGTERM on the leader releases the lease and exits 0
start C
sleep 1
grep -q 'acquired as' "$W/C.log" && fail "C leads while $S holds the lease"
kill -TERM "$sp"
t0=$(now)
rc=0; wait "$sp" || rc=$?
[ "$rc" = 0 ] || fail "SIGTERM exit status $rc"
grep -q 'released' "$W/$S.log" || fail "lease not released"
wait_log "$W/C.log" 'acquired as' 3 || fail "C did not take over after the release"
took=$(elapsed "$t0")
echo "takeover after SIGTERM: ${took}s"
python3 -c "import sys; sys.exit(0 if $took < $LEASE else 1)" || fail "release takeover took ${took}s"
kill -TERM "$pid_C"
rc=0; wait "$pid_C" || rc=$?
[ "$rc" = 0 ] || fail "C exit status $rc"
[ -z "$(holder)" ] || fail "lease still held after the last SIGTERM: $(holder)"
for n in A B C; do
    if grep -qi 'forbidden' "$W/$n.log"; then grep -i forbidden "$W/$n.log" | head -3; fail "$n was refused something"; fi
done
k delete namespace kc-$RUN-src kc-$RUN-a kc-$RUN-t1 kc-$RUN-t2 kc-$RUN-other --wait=false >/dev/null
echo "ok"
