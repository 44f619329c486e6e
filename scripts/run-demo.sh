#!/usr/bin/env bash
# `make run`: kcache-controller replicating Secrets and ConfigMaps against the
# fake API server, with live progress and a checked summary.
#
# It starts build/kcache-fakeapi on 127.0.0.1 (a free port), creates the demo
# scenario with kubectl (namespaces, annotated source Secrets and ConfigMaps,
# the same name as a source in two namespaces, a foreign object, bulk objects;
# the server itself preloads and churns unannotated ConfigMaps for load),
# starts build/kcache-controller with the kubeconfig the server wrote, makes a
# steady trickle of changes (one namespace created midway, a source added, an
# annotation narrowed, a source deleted, copies edited and deleted by hand),
# shows progress from the controller's /metrics, then checks every expected
# replica on the server with kubectl and prints PASS or FAIL (exit 1 on FAIL).
# It stops by itself after --duration seconds, or on Ctrl-C (then it still
# checks and prints the summary; a second Ctrl-C aborts).  Whatever happens,
# everything it started is stopped.  Logs stay in BUILD/demo/.
set -u

usage() {
    cat <<'EOF'
usage: scripts/run-demo.sh [OPTIONS] [CONTROLLER-FLAGS...] [-- CONTROLLER-FLAGS...]
       make run ARGS="OPTIONS..."

  --duration SECS   how long changes are made (default 30)
  --settle SECS     after that, how long to wait for the copies to converge (default 15)
  --rate N          changes per second, roughly (default 4)
  --seed N          seed of the change sequence (default 1)
  --load N          unannotated ConfigMaps the fake server preloads in load-0..3 (default 400)
  --churn N         background creates/updates/deletes per second on those (default 100)
  --build DIR       where the programs are (default $KC_BUILD or build)
  --plain           plain progress lines even on a terminal
  -h, --help        this text

Any other argument goes to kcache-controller (e.g. --workers 8, -v 2,
--log-format json); so does everything after "--".  The controller's and the
fake server's logs, the kubeconfig and the change log are left in BUILD/demo/.
EOF
}

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2
demo_py=$root/scripts/demo/demo.py

duration=30 settle=15 rate=4 seed=1 load=400 churn=100 build=${KC_BUILD:-build} plain=0
ctrl_args=()
while [ $# -gt 0 ]; do
    case $1 in
        --duration|--settle|--rate|--seed|--load|--churn|--build)
            if [ $# -lt 2 ]; then echo "run-demo: $1 needs a value" >&2; exit 2; fi
            case $1 in
                --duration) duration=$2 ;; --settle) settle=$2 ;; --rate) rate=$2 ;;
                --seed) seed=$2 ;; --load) load=$2 ;; --churn) churn=$2 ;;
                --build) build=$2 ;;
            esac
            shift 2 ;;
        --duration=*) duration=${1#*=}; shift ;;
        --settle=*) settle=${1#*=}; shift ;;
        --rate=*) rate=${1#*=}; shift ;;
        --seed=*) seed=${1#*=}; shift ;;
        --load=*) load=${1#*=}; shift ;;
        --churn=*) churn=${1#*=}; shift ;;
        --build=*) build=${1#*=}; shift ;;
        --plain) plain=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; ctrl_args+=("$@"); break ;;
        *) ctrl_args+=("$1"); shift ;;
    esac
done
for v in duration settle seed load churn; do
    if ! [[ ${!v} =~ ^[0-9]+$ ]]; then echo "run-demo: --$v wants whole seconds/number, got '${!v}'" >&2; exit 2; fi
done
if ! [[ $rate =~ ^[0-9]+(\.[0-9]+)?$ ]] || [ "$rate" = 0 ]; then
    echo "run-demo: --rate wants a positive number, got '$rate'" >&2; exit 2
fi

fake=$build/kcache-fakeapi
ctrl=$build/kcache-controller
for p in "$fake" "$ctrl"; do
    if [ ! -x "$p" ]; then echo "run-demo: $p is not built (run make first)" >&2; exit 2; fi
done
for c in kubectl python3 setsid; do
    if ! command -v $c >/dev/null 2>&1; then echo "run-demo: needs $c on PATH" >&2; exit 2; fi
done

run_dir=$build/demo
rm -rf "$run_dir"
mkdir -p "$run_dir/home"
run_dir=$(cd "$run_dir" && pwd)
# kubectl keeps its discovery cache under HOME: a private one per run.
export HOME=$run_dir/home
export KUBECONFIG=$run_dir/kubeconfig

if [ $plain = 0 ] && [ -t 1 ]; then tty=1; else tty=0; fi
if [ $tty = 1 ]; then B=$'\033[1m' G=$'\033[32m' R=$'\033[31m' N=$'\033[0m'; else B='' G='' R='' N=''; fi
say() { echo "${B}==>${N} $*"; }

fake_pid='' ctrl_pid='' drive_pid='' mon_pid=''
interrupted=0

# stop PID [SECS]: SIGTERM, then SIGKILL after SECS (default 5).  Sets
# stop_rc to the exit status (143/137 when killed by the signal).
stop() {
    local pid=$1 secs=${2:-5} i
    stop_rc=0
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; stop_rc=$?; return 0; }
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    stop_rc=$?
}
cleanup() {
    trap - INT TERM
    stop "$mon_pid" 2; mon_pid=
    stop "$drive_pid" 2; drive_pid=
    stop "$ctrl_pid" 10; ctrl_pid=
    stop "$fake_pid" 5; fake_pid=
}
trap cleanup EXIT
# First Ctrl-C: stop the changes and go to the summary.  Second: abort.
on_int() {
    if [ $interrupted = 1 ]; then echo; say "aborted"; exit 130; fi
    interrupted=1
    echo
    say "interrupted: stopping the changes, checking what is on the server (Ctrl-C again aborts)"
}
trap on_int INT
trap 'echo; say "terminated"; exit 143' TERM

# Children run in their own session so that the terminal's Ctrl-C reaches
# only this script, which then stops them in order.
fail_start() {
    echo "${R}FAIL${N}: $1" >&2
    [ -n "${2:-}" ] && [ -f "$2" ] && { echo "--- last lines of $2:" >&2; tail -n 20 "$2" >&2; }
    exit 1
}

say "starting the fake API server ($fake; $load ConfigMaps in load-0..3, $churn changes/s on them)"
load_flags=()
if [ "$load" -gt 0 ]; then
    load_flags=(--preload "$load" --load-namespaces 4)
    [ "$churn" -gt 0 ] && load_flags+=(--churn-rate "$churn")
fi
setsid "$fake" --listen 127.0.0.1:0 --kubeconfig-out "$KUBECONFIG" --seed "$seed" "${load_flags[@]}" \
    > "$run_dir/fakeapi.out" 2> "$run_dir/fakeapi.log" < /dev/null &
fake_pid=$!
for ((i = 0; i < 100; i++)); do
    grep -q '^ready ' "$run_dir/fakeapi.out" 2>/dev/null && break
    kill -0 "$fake_pid" 2>/dev/null || break
    sleep 0.1
done
grep -q '^ready ' "$run_dir/fakeapi.out" || fail_start "the fake API server did not start" "$run_dir/fakeapi.log"
server=$(sed -n 's/^ready //p' "$run_dir/fakeapi.out" | head -n 1)
say "fake API server ready at $server (kubeconfig: $KUBECONFIG)"

say "creating the scenario: namespaces, annotated sources, a foreign object, bulk objects"
if ! python3 "$demo_py" scenario > "$run_dir/scenario.yaml" ||
   ! kubectl create --validate=false -f "$run_dir/scenario.yaml" > "$run_dir/scenario.out" 2>&1; then
    fail_start "kubectl create of the scenario failed" "$run_dir/scenario.out"
fi
echo "    $(grep -c . "$run_dir/scenario.out") objects created; sources:"
kubectl get secrets,configmaps -A -o \
    'jsonpath={range .items[?(@.metadata.annotations.kcache\.io/replicate-to)]}{"      "}{.kind}{" "}{.metadata.namespace}{"/"}{.metadata.name}{"  replicate-to: "}{.metadata.annotations.kcache\.io/replicate-to}{"\n"}{end}' \
    2>/dev/null

read -r mport hport < <(python3 "$demo_py" free-ports 2 | tr '\n' ' ')
metrics_url=http://127.0.0.1:$mport/metrics
say "starting kcache-controller (metrics $metrics_url, probes http://127.0.0.1:$hport)"
setsid "$ctrl" --kubeconfig "$KUBECONFIG" \
    --metrics-bind-address "127.0.0.1:$mport" --health-probe-bind-address "127.0.0.1:$hport" \
    --log-format text "${ctrl_args[@]}" > "$run_dir/controller.log" 2>&1 < /dev/null &
ctrl_pid=$!
if ! python3 "$demo_py" wait-http "http://127.0.0.1:$hport/readyz" --timeout 30 --pid "$ctrl_pid"; then
    fail_start "kcache-controller did not become ready (/readyz)" "$run_dir/controller.log"
fi
say "controller ready (caches synced); making changes for ${duration}s (Ctrl-C stops early)"

DEMO_T0=$(date +%s.%N)
export DEMO_T0
setsid python3 "$demo_py" drive --duration "$duration" --seed "$seed" --rate "$rate" \
    > "$run_dir/changes.log" 2>&1 < /dev/null &
drive_pid=$!
mon_flags=(--metrics "$metrics_url" --events "$run_dir/changes.log")
[ $tty = 1 ] && mon_flags+=(--tty) || mon_flags+=(--no-tty)
setsid python3 "$demo_py" monitor "${mon_flags[@]}" < /dev/null &
mon_pid=$!

while [ $interrupted = 0 ] && kill -0 "$drive_pid" 2>/dev/null; do
    if ! kill -0 "$ctrl_pid" 2>/dev/null; then break; fi
    sleep 0.2
done
stop "$drive_pid" 5; drive_pid=

ctrl_alive=1
kill -0 "$ctrl_pid" 2>/dev/null || ctrl_alive=0
if [ $ctrl_alive = 1 ]; then
    # Let the controller catch up with the last changes (bounded).
    end=$((SECONDS + settle))
    while :; do
        python3 "$demo_py" check > "$run_dir/settle.out" 2>&1 && break
        [ $SECONDS -ge $end ] && break
        kill -0 "$ctrl_pid" 2>/dev/null || break
        sleep 1
    done
fi
stop "$mon_pid" 2; mon_pid=

echo
echo "${B}== Summary ==${N}"
check_rc=0
python3 "$demo_py" check --verbose --metrics "$metrics_url" || check_rc=$?
verdict=0
[ $check_rc = 0 ] || verdict=1
if [ $ctrl_alive = 0 ] || ! kill -0 "$ctrl_pid" 2>/dev/null; then
    wait "$ctrl_pid" 2>/dev/null
    echo "Controller: exited early (status $?): see $run_dir/controller.log"
    ctrl_pid=
    verdict=1
else
    stop "$ctrl_pid" 15; ctrl_pid=
    if [ "$stop_rc" = 0 ]; then
        echo "Controller: stopped cleanly on SIGTERM (exit 0)"
    else
        echo "Controller: exit status $stop_rc after SIGTERM (expected 0): see $run_dir/controller.log"
        verdict=1
    fi
fi
stop "$fake_pid" 5; fake_pid=
echo "Logs: $run_dir/{controller.log,fakeapi.log,changes.log}"
if [ $verdict = 0 ]; then
    echo "${G}${B}PASS${N}: every expected replica is in place and up to date"
else
    tail -n 15 "$run_dir/controller.log" 2>/dev/null | sed 's/^/    controller.log: /'
    echo "${R}${B}FAIL${N}"
fi
exit $verdict
