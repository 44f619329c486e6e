#!/usr/bin/env bash
# kubectl against the real kube-apiserver and against the fake API server
# (build/kcache-fakeapi), the same commands, outputs compared after
# normalising uids, timestamps, resourceVersions, ages and the server URL.
#
# Each step records stdout, stderr and exit code in
#   $KC_REAL_DIR/compare/{real,fake}/NN-step.{out,err,rc}
# and the differences go to $KC_REAL_DIR/compare/diff.txt.
#
# Exit: 0 when both agree; 1 on a difference, or when a step against the
# real server does not do what kubectl users expect; 77 (skipped) when
# there is no fake server program yet (the real-server half still ran).
# Runs under tests/realapi/run.sh (needs KC_REAL_*); KC_FAKEAPI_BIN
# overrides the fake server program; KC_COMPARE_REPORT_ONLY=1 prints the
# differences without failing.
set -uo pipefail
: "${KC_REAL_KUBECONFIG:?run me through tests/realapi/run.sh}"
W=$KC_REAL_DIR/compare
rm -rf "$W"; mkdir -p -m 700 "$W"
FAKE_BIN=${KC_FAKEAPI_BIN:-$PWD/${KC_BUILD:-build}/kcache-fakeapi}
NS=kc-compare
if ! command -v kubectl >/dev/null 2>&1; then
    echo "skipped: no kubectl on this machine"; exit 77
fi
echo "kubectl: $(kubectl version --client 2>/dev/null | head -1)"

cat > "$W/ns.yaml" <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $NS
EOF
mkcm() { # mkcm VALUE EXTRA-LABEL
    cat <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: cm1
  namespace: $NS
  labels:
    app: kcache
    stage: "$2"
data:
  key: "$1"
  other: "same"
EOF
}
mkcm v1 one > "$W/cm-v1.yaml"
cat > "$W/cm2.yaml" <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: cm2
  namespace: $NS
data:
  owned: "by-apply"
EOF
sed 's/by-apply/by-other/' "$W/cm2.yaml" > "$W/cm2-other.yaml"
sed 's/name: cm2/name: Bad_Name/' "$W/cm2.yaml" > "$W/cm-bad.yaml"
sed 's/name: cm2/name: late/' "$W/cm2.yaml" > "$W/cm-late.yaml"
cat > "$W/cm1-stale.yaml" <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: cm1
  namespace: $NS
  resourceVersion: "1"
data:
  key: stale
EOF
mkcm v2 two > "$W/cm-v2.yaml"
mkcm v3 three > "$W/cm-v3.yaml"

# normalise volatile fields of kubectl output (JSON, YAML and tables)
norm() {
    perl -pe '
        s/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/<uid>/g;
        s/("resourceVersion":\s*)"[^"]*"/$1"<rv>"/g;
        s/(resourceVersion:\s*)"?[0-9]+"?/$1"<rv>"/g;
        s/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)/<time>/g;
        s{https://127\.0\.0\.1:\d+}{<server>}g;
        # AGE column of a table row (any position)
        s/(?<=\s\s)\d+[smhd](\d+[smh])?(?=\s\s|\s*$)/<age>/g unless /^\s*[\{\}\[\]"]/;
        # table column widths depend on the values: squeeze them
        s/ {2,}/  /g if /^\S/ && !/^[\{\}\[\]"]/;
    '
}

# step DIR NAME CMD...: run one kubectl command, record normalised output
step() {
    local dir=$1 name=$2; shift 2
    "$@" > "$dir/$name.out.raw" 2> "$dir/$name.err.raw"
    echo $? > "$dir/$name.rc"
    norm < "$dir/$name.out.raw" > "$dir/$name.out"
    norm < "$dir/$name.err.raw" > "$dir/$name.err"
}

# scenario KUBECONFIG DIR: the same kubectl session against one server
scenario() {
    local kc=$1 dir=$2
    mkdir -p "$dir/home"
    local K=(env HOME="$dir/home" KUBECONFIG="$kc" kubectl --request-timeout=20s)
    step "$dir" 01-apply-ns "${K[@]}" apply -f "$W/ns.yaml"
    step "$dir" 02-apply-cm "${K[@]}" apply -f "$W/cm-v1.yaml"
    step "$dir" 03-apply-cm-unchanged "${K[@]}" apply -f "$W/cm-v1.yaml"
    step "$dir" 04-apply-cm-changed "${K[@]}" apply -f "$W/cm-v2.yaml"
    step "$dir" 04a-apply-server-side "${K[@]}" apply --server-side -f "$W/cm2.yaml"
    step "$dir" 04b-apply-ssa-conflict "${K[@]}" apply --server-side --field-manager other -f "$W/cm2-other.yaml"
    step "$dir" 04c-create-exists "${K[@]}" create configmap cm1 -n $NS --from-literal=a=b
    step "$dir" 04d-create-invalid "${K[@]}" create configmap Bad_Name -n $NS
    # kubectl create TYPE sends protobuf; create -f sends JSON
    step "$dir" 04c2-create-f-exists "${K[@]}" create -f "$W/cm-v1.yaml"
    step "$dir" 04d2-create-f-invalid "${K[@]}" create -f "$W/cm-bad.yaml"
    step "$dir" 04e-replace-stale "${K[@]}" replace -f "$W/cm1-stale.yaml"
    step "$dir" 04f-patch-json "${K[@]}" patch configmap cm2 -n $NS --type=json -p '[{"op":"add","path":"/data/x","value":"y"}]'
    step "$dir" 04g-patch-merge "${K[@]}" patch configmap cm2 -n $NS --type=merge -p '{"data":{"m":"1"}}'
    step "$dir" 04h-patch-strategic "${K[@]}" patch configmap cm2 -n $NS -p '{"metadata":{"labels":{"s":"1"}}}'
    step "$dir" 04i-label "${K[@]}" label configmap cm2 -n $NS extra=yes
    step "$dir" 04j-annotate "${K[@]}" annotate configmap cm2 -n $NS note=hi
    step "$dir" 04k-get-raw "${K[@]}" get --raw "/api/v1/namespaces/$NS/configmaps/cm2"
    # managedFields entries are ordered by operation, then time in whole
    # seconds, then manager: steps 04f-04j straddle a second boundary at
    # different places on the two servers, so compare them in
    # (operation, manager) order (times are normalised away anyway)
    jq -S 'if .metadata.managedFields then .metadata.managedFields |= sort_by(.operation, .manager) else . end' \
        < "$dir/04k-get-raw.out" > "$dir/04k-get-raw.sorted" 2>&1
    step "$dir" 04l-chunked "${K[@]}" get configmaps -n $NS --chunk-size=1 -o name
    step "$dir" 04m-field-selector "${K[@]}" get configmaps -n $NS --field-selector metadata.name=cm2 -o name
    step "$dir" 04n-get-missing "${K[@]}" get configmap nope -n $NS -o name
    step "$dir" 04o-raw-list-limit "${K[@]}" get --raw "/api/v1/namespaces/$NS/configmaps?limit=1"
    jq -S '{kind, apiVersion, remainingItemCount: .metadata.remainingItemCount,
            hasContinue: (.metadata.continue != null), items: (.items | length)}' \
        < "$dir/04o-raw-list-limit.out" > "$dir/04o-raw-list-limit.sorted" 2>&1
    step "$dir" 04p-bad-selector "${K[@]}" get configmaps -n $NS -l 'a in (b'
    step "$dir" 04q-raw-bad-selector "${K[@]}" get --raw "/api/v1/namespaces/$NS/configmaps?labelSelector=a%3D%3D%3Db"
    step "$dir" 04r-raw-no-such-resource "${K[@]}" get --raw "/api/v1/namespaces/$NS/nosuchthings"
    step "$dir" 04s-show-labels "${K[@]}" get configmaps -n $NS --show-labels
    step "$dir" 05-get-cm-all "${K[@]}" get configmaps -A
    # -A lists other namespaces too (kube-system differs by nature): keep
    # the header and our namespace, column widths squeezed
    grep -E "^NAMESPACE|^$NS " "$dir/05-get-cm-all.out" | tr -s ' ' > "$dir/05-get-cm-all.ours"
    step "$dir" 06-get-cm-json "${K[@]}" get configmap cm1 -n $NS -o json
    step "$dir" 07-get-cm-list-yaml "${K[@]}" get configmaps -n $NS -o yaml
    step "$dir" 08-get-cm-selector "${K[@]}" get configmaps -n $NS -l app=kcache,stage=two
    step "$dir" 09-get-ns-json "${K[@]}" get namespace $NS -o json

    # watch: the current object first, then the change made meanwhile
    "${K[@]}" get configmap cm1 -n $NS -w --output-watch-events -o json \
        > "$dir/10-watch.out.raw" 2> "$dir/10-watch.err.raw" &
    local wpid=$!
    for _ in $(seq 1 100); do grep -q '"ADDED"' "$dir/10-watch.out.raw" 2>/dev/null && break; sleep 0.1; done
    "${K[@]}" apply -f "$W/cm-v3.yaml" > "$dir/10-watch-apply.out" 2>&1
    for _ in $(seq 1 100); do grep -q '"MODIFIED"' "$dir/10-watch.out.raw" 2>/dev/null && break; sleep 0.1; done
    sleep 0.5
    kill "$wpid" 2>/dev/null; wait "$wpid" 2>/dev/null
    norm < "$dir/10-watch.out.raw" > "$dir/10-watch.out"
    norm < "$dir/10-watch.err.raw" > "$dir/10-watch.err"
    grep -c '"type"' "$dir/10-watch.out.raw" > "$dir/10-watch.events"

    # the same in table mode (server-side Table rows for the watch)
    "${K[@]}" get configmaps -n $NS -w > "$dir/10b-watch-table.out.raw" 2> "$dir/10b-watch-table.err.raw" &
    wpid=$!
    for _ in $(seq 1 100); do grep -q 'cm2' "$dir/10b-watch-table.out.raw" 2>/dev/null && break; sleep 0.1; done
    "${K[@]}" label configmap cm2 -n $NS during=watch > /dev/null 2>&1
    sleep 1.5
    kill "$wpid" 2>/dev/null; wait "$wpid" 2>/dev/null
    norm < "$dir/10b-watch-table.out.raw" | tr -s ' ' > "$dir/10b-watch-table.out"
    norm < "$dir/10b-watch-table.err.raw" > "$dir/10b-watch-table.err"

    step "$dir" 11-delete-cm "${K[@]}" delete configmap cm1 -n $NS
    step "$dir" 12-get-deleted "${K[@]}" get configmap cm1 -n $NS
    step "$dir" 13-get-missing-ns "${K[@]}" get configmaps -n kc-no-such-namespace
    step "$dir" 14-delete-ns "${K[@]}" delete namespace $NS --wait=false
    # no namespace controller runs beside this kube-apiserver: the namespace
    # stays Terminating (in a cluster it would be emptied, then removed)
    step "$dir" 15-get-ns-terminating "${K[@]}" get namespace $NS -o jsonpath='{.status.phase} {.metadata.deletionTimestamp} {.spec.finalizers}'
    step "$dir" 16-create-in-terminating "${K[@]}" create configmap late -n $NS
    step "$dir" 16b-create-f-in-terminating "${K[@]}" create -f "$W/cm-late.yaml"
}

bad=0
echo "--- kubectl against the real kube-apiserver"
scenario "$KC_REAL_KUBECONFIG" "$W/real"
# what a kubectl user expects from a real server
expect_rc() { # expect_rc STEP RC
    if [ "$(cat "$W/real/$1.rc")" != "$2" ]; then
        echo "real server: step $1 exit $(cat "$W/real/$1.rc"), want $2: $(head -c 300 "$W/real/$1.err")"
        bad=1
    fi
}
for s in 01-apply-ns 02-apply-cm 03-apply-cm-unchanged 04-apply-cm-changed 04a-apply-server-side \
         04f-patch-json 04g-patch-merge 04h-patch-strategic 04i-label 04j-annotate 04k-get-raw 04l-chunked \
         04m-field-selector 05-get-cm-all 06-get-cm-json 07-get-cm-list-yaml 08-get-cm-selector 09-get-ns-json \
         11-delete-cm 14-delete-ns; do
    expect_rc $s 0
done
for s in 04b-apply-ssa-conflict 04c-create-exists 04d-create-invalid 04c2-create-f-exists 04d2-create-f-invalid \
         04e-replace-stale 04n-get-missing 12-get-deleted 16-create-in-terminating 16b-create-f-in-terminating; do
    expect_rc $s 1
done
grep -q 'configmap/cm1 created' "$W/real/02-apply-cm.out" || { echo "real: apply did not create"; bad=1; }
grep -q 'configmap/cm1 unchanged' "$W/real/03-apply-cm-unchanged.out" || { echo "real: re-apply not unchanged"; bad=1; }
grep -q 'configmap/cm1 configured' "$W/real/04-apply-cm-changed.out" || { echo "real: changed apply not configured"; bad=1; }
grep -q '"MODIFIED"' "$W/real/10-watch.out" || { echo "real: watch saw no MODIFIED event"; bad=1; }
grep -q 'NotFound' "$W/real/12-get-deleted.err" || { echo "real: get after delete not NotFound"; bad=1; }
[ $bad = 0 ] && echo "real server: all steps as expected"

if [ ! -x "$FAKE_BIN" ]; then
    echo "no fake API server program at $FAKE_BIN: comparison skipped"
    [ $bad = 0 ] && exit 77
    exit 1
fi

echo "--- kubectl against the fake API server ($FAKE_BIN)"
# --no-namespace-controller: the harness runs kube-apiserver alone (no
# kube-controller-manager), so a deleted namespace stays Terminating there
# (steps 15, 16); the fake's stand-in namespace controller would remove it.
"$FAKE_BIN" --kubeconfig-out "$W/fake.kubeconfig" --no-namespace-controller \
    > "$W/fake.stdout" 2> "$W/fake.stderr" &
FPID=$!
trap 'kill $FPID 2>/dev/null; wait $FPID 2>/dev/null' EXIT
for _ in $(seq 1 100); do
    grep -q '^ready https://' "$W/fake.stdout" && [ -s "$W/fake.kubeconfig" ] && break
    kill -0 $FPID 2>/dev/null || break
    sleep 0.1
done
if ! grep -q '^ready https://' "$W/fake.stdout"; then
    echo "fake API server did not become ready: $(tail -5 "$W/fake.stderr")"
    exit 1
fi
scenario "$W/fake.kubeconfig" "$W/fake"
kill $FPID 2>/dev/null; wait $FPID 2>/dev/null; trap - EXIT

: > "$W/diff.txt"
for f in "$W"/real/*.out "$W"/real/*.err "$W"/real/*.rc "$W"/real/*.ours "$W"/real/*.events "$W"/real/*.sorted; do
    b=$(basename "$f")
    case $b in
        05-get-cm-all.out) continue ;;  # other namespaces: informational
        04k-get-raw.out|04o-raw-list-limit.out) continue ;;  # compared as .sorted
        # kubectl's typed "create configmap" sends protobuf; the fake server
        # answers it with a clear 415 Status by design (issue 4: "the server
        # answers those with a clear 415 Status rather than garbage"), where
        # the real one decodes it.  The exit code is still compared; the
        # same cases over JSON are steps 04c2, 04d2 and 16b.
        04c-create-exists.err|04d-create-invalid.err|16-create-in-terminating.err) continue ;;
    esac
    if ! diff -u --label "real/$b" --label "fake/$b" "$f" "$W/fake/$b" >> "$W/diff.txt" 2>&1; then
        bad=1
    fi
done
if [ -s "$W/diff.txt" ]; then
    echo "differences between the real and the fake API server (real: -, fake: +):"
    cat "$W/diff.txt"
fi
if [ $bad = 0 ]; then echo "kubectl outputs agree"; fi
if [ $bad != 0 ] && [ "${KC_COMPARE_REPORT_ONLY:-0}" = 1 ]; then
    echo "KC_COMPARE_REPORT_ONLY=1: differences reported, not failed"; exit 0
fi
exit $bad
