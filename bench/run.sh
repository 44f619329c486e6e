#!/usr/bin/env bash
# bench/run.sh: the orchestrator behind `make bench` (see bench/README.md).
#
# Runs every kcache bench program and the Go peers on the same workloads
# against a fresh fake API server per measurement, alternating kcache and the
# peer, KC_BENCH_RUNS times; collects the JSON-lines records into
# $BUILD/bench/records.jsonl and hands them to bench/report.py, which writes
# results.json, the table and the PNG charts.  A kcache bench that is not
# built yet is skipped with a message; the peers still run.
set -uo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
OUT=$BUILD/bench
# Five runs per figure: a 20,000-event burst lasts ~35 ms at kcache's rate,
# where one scheduler hiccup on a shared 2-core machine moves a single run's
# events/s by 20%; the median of five is steadier than the median of three.
RUNS=${KC_BENCH_RUNS:-5}
WORKLOADS=${KC_BENCH_WORKLOADS:-"configmaps:10000 configmaps:100000 pods:10000"}
CHURN_EVENTS=${KC_BENCH_CHURN_EVENTS:-20000}
# client-go peer modes: "off" = list then watch (impl client-go), "on" =
# client-go's default streaming WatchList (impl client-go-watchlist).  Both
# by default: list-then-watch syncs faster, WatchList peaks lower in memory.
WATCHLIST=${KC_BENCH_WATCHLIST:-both}
ONLY=${KC_BENCH_ONLY:-"peers cache decode informer controller"}
CTRL_OBJECTS=${KC_BENCH_CTRL_OBJECTS:-10000}
SETTLE=3

mkdir -p "$OUT/peers" "$OUT/logs"
RECORDS=$OUT/records.jsonl
: > "$RECORDS"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/kcbench.XXXXXX")
SERVER_PID=
cleanup() {
    stop_server
    [ -n "${CTRL_PID:-}" ] && kill "$CTRL_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
want() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }
T_START=$(date +%s)

# ---- the Go peers: built once, rebuilt when sources or Go change ----------
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
    PATH=$PATH:/usr/local/go/bin
fi
build_peer() { # NAME DIR -> $OUT/peers/NAME
    local name=$1 dir=$2 bin hash
    bin=$(realpath -m "$OUT/peers/$1")
    if ! command -v go >/dev/null 2>&1; then
        log "go not found: peer $name not built"
        return 1
    fi
    hash=$( (go version; cd "$dir" && cat go.mod go.sum ./*.go 2>/dev/null) | sha256sum | cut -c1-16)
    if [ -x "$bin" ] && [ "$(cat "$bin.hash" 2>/dev/null)" = "$hash" ]; then
        return 0
    fi
    log "building peer $name (first time can take a few minutes)"
    local t0=$(date +%s)
    if ! (cd "$dir" && go build -buildvcs=false -trimpath -ldflags "-s -w" -o "$bin.tmp" .) \
            > "$OUT/logs/build-$name.log" 2>&1; then
        log "peer $name failed to build: see $OUT/logs/build-$name.log"
        tail -5 "$OUT/logs/build-$name.log" >&2
        return 1
    fi
    mv "$bin.tmp" "$bin"
    echo "$hash" > "$bin.hash"
    log "built peer $name in $(( $(date +%s) - t0 )) s"
}

CG_PEER= CR_PEER= STUB=
if want peers; then
    build_peer client-go bench/peers/client-go && CG_PEER=$OUT/peers/client-go
    build_peer controller-runtime bench/peers/controller-runtime && CR_PEER=$OUT/peers/controller-runtime
fi

# ---- the fake API server ---------------------------------------------------
# build/bench/bench_server is kcache-fakeapi's library (tests/fakeapi/) with
# a one-shot churn burst on SIGUSR1 (see bench/bench_server.c): the burst is
# applied at once and then only streamed, so the client measured is the
# bottleneck, not the server.  Without it, build/kcache-fakeapi churns at a
# rate through its admin endpoint.
FAKEAPI=$BUILD/kcache-fakeapi
BENCH_SERVER=$BUILD/bench/bench_server
ONESHOT=0
if [ -x "$BENCH_SERVER" ]; then
    SERVER_KIND=fakeapi
    ONESHOT=1
elif [ -x "$FAKEAPI" ]; then
    SERVER_KIND=fakeapi
else
    SERVER_KIND=stub
    log "NOTE: $FAKEAPI is not built: using bench/peers/stubapi instead (development only;"
    log "      peer numbers from it are not comparable with kcache's and not for RESULTS.md)"
    build_peer stubapi bench/peers/stubapi && STUB=$OUT/peers/stubapi
fi

# start_server RESOURCE COUNT: a fresh server preloaded with COUNT objects;
# sets URL, KUBECONFIG_FILE, TOKEN, SERVER_PID.
start_server() {
    local resource=$1 count=$2 out=$TMP/server.out
    KUBECONFIG_FILE=$TMP/kubeconfig
    rm -f "$KUBECONFIG_FILE" "$out"
    local -a cmd
    if [ $ONESHOT = 1 ]; then
        cmd=("$BENCH_SERVER" --listen 127.0.0.1:0 --kubeconfig-out "$KUBECONFIG_FILE"
             --preload "$count" --load-resource "$resource" --history-window 200000
             --churn "$CHURN_EVENTS")
    elif [ "$SERVER_KIND" = fakeapi ]; then
        # A history window larger than the churn burst: a watcher that lags
        # behind must not be sent 410 in the middle of a measurement.
        cmd=("$FAKEAPI" --listen 127.0.0.1:0 --kubeconfig-out "$KUBECONFIG_FILE"
             --preload "$count" --load-resource "$resource" --history-window 200000)
    else
        [ -n "$STUB" ] || return 1
        cmd=("$STUB" --listen 127.0.0.1:0 --kubeconfig-out "$KUBECONFIG_FILE"
             "--preload-$resource" "$count")
    fi
    "${cmd[@]}" > "$out" 2> "$TMP/server.err" &
    SERVER_PID=$!
    local i
    for i in $(seq 1 1200); do
        if grep -q '^ready ' "$out" 2>/dev/null; then
            URL=$(awk '/^ready /{print $2; exit}' "$out")
            TOKEN=$(awk '$1=="token:"{print $2; exit}' "$KUBECONFIG_FILE")
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    log "server did not become ready: ${cmd[*]}"
    cat "$TMP/server.err" >&2
    stop_server
    return 1
}

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null
        local i
        for i in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
        SERVER_PID=
    fi
}

# The command a bench runs right after its initial sync: about N changes
# (~25% creates, 50% updates, 25% deletes), faster than a client consumes.
# kcache-fakeapi churns at a rate on its event loop: RATE/s for N/RATE
# seconds, then 0.  The rates are what it sustains while still feeding a
# watch on this machine (higher ones starve its watch streams: the loop
# spends itself generating and the churn overshoots by several times).
CHURN_RATE_CONFIGMAPS=${KC_BENCH_CHURN_RATE_CONFIGMAPS:-50000}
CHURN_RATE_PODS=${KC_BENCH_CHURN_RATE_PODS:-10000}
churn_cmd() { # RESOURCE N
    local auth="-H 'Authorization: Bearer $TOKEN'" rate=$CHURN_RATE_CONFIGMAPS
    [ "$1" = pods ] && rate=$CHURN_RATE_PODS
    if [ $ONESHOT = 1 ]; then
        printf 'kill -USR1 %s' "$SERVER_PID"
    elif [ "$SERVER_KIND" = fakeapi ]; then
        local a="$URL/fakeapi/admin/churn?resource=$1&rate"
        printf "curl -sfk -m 10 -o /dev/null -X POST %s '%s=%s' && sleep %s; curl -sfk -m 30 -o /dev/null -X POST %s '%s=0'" \
            "$auth" "$a" "$rate" "$(awk -v n="$2" -v r="$rate" 'BEGIN{printf "%.3f", n / r}')" \
            "$auth" "$a"
    else
        printf "curl -sfk -m 10 -o /dev/null -X POST %s '%s/admin/churn?resource=%s&n=%s'" "$auth" "$URL" "$1" "$2"
    fi
}

record() { # BENCH IMPL WORKLOAD NAME VALUE UNIT RUN
    printf '{"bench":"%s","impl":"%s","workload":"%s","name":"%s","value":%s,"unit":"%s","run":%s}\n' \
        "$@" >> "$RECORDS"
}

# run_logged NAME CMD...: run with a log file, report failure without exiting.
run_logged() {
    local name=$1; shift
    if ! "$@" >> "$OUT/logs/$name.log" 2>&1; then
        log "$name failed (exit $?): see $OUT/logs/$name.log"
        tail -3 "$OUT/logs/$name.log" >&2
        return 1
    fi
}

# ---- standalone kcache benches (cache, decode, ...) ------------------------
for b in cache decode; do
    want "$b" || continue
    bin=$BUILD/bench/bench_$b
    if [ ! -x "$bin" ]; then
        log "skip $b: $bin not built yet"
        continue
    fi
    for run in $(seq 1 "$RUNS"); do
        log "$b run $run/$RUNS"
        # bench_cache: each run is the best of KC_BENCH_REPS (default 3)
        # 120 ms cells, the figure the median of the runs' bests: single
        # 120 ms cells on a shared 2-core machine are too noisy to rank locks
        KC_BUILD=$BUILD KC_BENCH_OUT=$RECORDS KC_BENCH_RUN=$run run_logged "bench_$b" "$bin"
    done
done

# ---- informer: kcache bench_informer vs the client-go peer -----------------
# kcache's informer lists in pages of 500 without a resourceVersion (a
# consistent read, one request per page); client-go's reflector first lists
# with resourceVersion=0, which the server answers from its watch cache in
# one response whatever the limit.  kcache is measured both ways: page
# size 500 (its default, impl kcache) and 0 (one unpaged consistent list,
# impl kcache-unpaged).  KC_BENCH_KCACHE_PAGES picks (default "500 0").
KCACHE_PAGES=${KC_BENCH_KCACHE_PAGES:-"500 0"}
informer_kcache() { # RESOURCE COUNT RUN PAGE
    local impl=kcache
    [ "$4" = 500 ] || impl=kcache-unpaged
    [ "$4" = 0 ] || [ "$4" = 500 ] || impl=kcache-page$4
    KC_BENCH_PAGE=$4 KC_BENCH_IMPL=$impl \
    KC_BENCH_KUBECONFIG=$KUBECONFIG_FILE KC_BENCH_RESOURCE=$1 KC_BENCH_EXPECT=$2 \
    KC_BENCH_WORKLOAD=$1-$2 KC_BENCH_CHURN_CMD=$(churn_cmd "$1" "$CHURN_EVENTS") \
    KC_BENCH_CHURN_EVENTS=$CHURN_EVENTS KC_BENCH_OUT=$RECORDS KC_BENCH_RUN=$3 KC_BUILD=$BUILD \
        run_logged bench_informer timeout 600 "$BUILD/bench/bench_informer"
}
informer_peer() { # RESOURCE COUNT RUN MODE
    local impl=client-go
    [ "$4" = off ] || impl=client-go-watchlist
    run_logged peer-client-go timeout 600 "$CG_PEER" --kubeconfig "$KUBECONFIG_FILE" \
        --resource "$1" --expect "$2" --workload "$1-$2" --watchlist "$4" --impl "$impl" \
        --churn-cmd "$(churn_cmd "$1" "$CHURN_EVENTS")" --churn-events "$CHURN_EVENTS" \
        --duration 60s --idle 5s --out "$RECORDS" --run "$3"
}
case $WATCHLIST in
    both) PEER_MODES="off on" ;;
    off) PEER_MODES=off ;;
    *) PEER_MODES=on ;;
esac
if want informer; then
    have_k=0; [ -x "$BUILD/bench/bench_informer" ] && have_k=1
    [ $have_k = 1 ] || log "skip informer (kcache side): $BUILD/bench/bench_informer not built yet"
    if [ $have_k = 1 ] && ! grep -qa KC_BENCH_KUBECONFIG "$BUILD/bench/bench_informer"; then
        # Not yet able to use run.sh's server: run it once standalone (its
        # own in-process server, its own sizes) and leave the pairing out.
        log "bench_informer has no external-server mode (KC_BENCH_KUBECONFIG) yet:"
        log "  running it once standalone; no kcache/client-go informer ratios this time"
        log "informer (kcache, standalone) run 1/1"
        KC_BENCH_OUT=$RECORDS KC_BENCH_RUN=1 KC_BUILD=$BUILD \
            run_logged bench_informer timeout 900 "$BUILD/bench/bench_informer"
        have_k=0
    fi
    [ -n "$CG_PEER" ] || log "skip informer (client-go side): peer not built"
    for wl in $WORKLOADS; do
        res=${wl%%:*} n=${wl##*:}
        for run in $(seq 1 "$RUNS"); do
            # Alternate who goes first, so drift (page cache, CPU clocks) hits both.
            peers= kcs=
            for m in $PEER_MODES; do peers="$peers peer:$m"; done
            for p in $KCACHE_PAGES; do kcs="$kcs kcache:$p"; done
            if [ $((run % 2)) = 1 ]; then order="$kcs $peers"; else order="$peers $kcs"; fi
            for who in $order; do
                if [ "${who%%:*}" = kcache ] && [ $have_k = 1 ]; then :;
                elif [ "${who%%:*}" = peer ] && [ -n "$CG_PEER" ]; then :;
                else continue; fi
                log "informer $res-$n run $run/$RUNS: $who"
                start_server "$res" "$n" || continue
                if [ "${who%%:*}" = kcache ]; then
                    informer_kcache "$res" "$n" "$run" "${who#kcache:}"
                else
                    informer_peer "$res" "$n" "$run" "${who#peer:}"
                fi
                stop_server
                # the server's own CPU per event while it streamed the burst
                # (bench_server prints it on exit): its share of the 2 cores
                srv_s=$(awk '/of the loop thread.s CPU per event/ {printf "%.9f", $2 / 1e6; exit}' "$TMP/server.err")
                case $who in
                    kcache:500) impl=kcache ;; kcache:0) impl=kcache-unpaged ;;
                    kcache:*) impl=kcache-page${who#kcache:} ;;
                    peer:off) impl=client-go ;; *) impl=client-go-watchlist ;;
                esac
                [ -n "$srv_s" ] && record informer "$impl" "$res-$n" server_cpu_per_event "$srv_s" s "$run"
            done
        done
    done
fi

# ---- controller: idle RSS, binary size --------------------------------------
# idle_rss_of PID: wait until the process's CPU time stops moving for SETTLE s.
proc_cpu() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null; }
status_bytes() { awk -v f="$2:" '$1==f{print $2 * 1024}' "/proc/$1/status" 2>/dev/null; }
wait_idle() { # PID TIMEOUT: idle = at most 2 clock ticks of CPU in SETTLE s
    local pid=$1 end=$(( $(date +%s) + $2 )) a b
    while [ "$(date +%s)" -lt "$end" ]; do
        a=$(proc_cpu "$pid"); [ -n "$a" ] || return 1
        sleep "$SETTLE"
        b=$(proc_cpu "$pid"); [ -n "$b" ] || return 1
        [ $((b - a)) -le 2 ] && return 0
    done
    return 1
}
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# kcache-controller: ready once /readyz answers 200 (caches synced), then
# idle once its CPU time stops moving for SETTLE s; RSS read from outside.
controller_kcache() { # RUN
    local wl=configmaps-$CTRL_OBJECTS probe metrics i ready=0
    probe=$(free_port) metrics=$(free_port)
    "$BUILD/kcache-controller" --kubeconfig "$KUBECONFIG_FILE" \
        --health-probe-bind-address "127.0.0.1:$probe" \
        --metrics-bind-address "127.0.0.1:$metrics" \
        >> "$OUT/logs/kcache-controller.log" 2>&1 &
    CTRL_PID=$!
    for i in $(seq 1 3000); do
        kill -0 "$CTRL_PID" 2>/dev/null || break
        if curl -sf -o /dev/null "http://127.0.0.1:$probe/readyz"; then ready=1; break; fi
        sleep 0.1
    done
    [ $ready = 1 ] || log "kcache-controller: /readyz never answered 200; measuring once idle"
    if wait_idle "$CTRL_PID" 300; then
        record controller kcache "$wl" idle_rss "$(status_bytes "$CTRL_PID" VmRSS)" bytes "$1"
        record controller kcache "$wl" peak_rss "$(status_bytes "$CTRL_PID" VmHWM)" bytes "$1"
        # RSS counts the resident pages of the program's code and of the
        # shared libraries (libc, cJSON: ~6 MB, libc shared with other
        # processes); RssAnon is the process's own memory, reported by the
        # Go peer too
        record controller kcache "$wl" idle_rss_anon "$(status_bytes "$CTRL_PID" RssAnon)" bytes "$1"
    else
        log "kcache-controller did not settle (or exited): see $OUT/logs/kcache-controller.log"
        tail -3 "$OUT/logs/kcache-controller.log" >&2
    fi
    kill "$CTRL_PID" 2>/dev/null; wait "$CTRL_PID" 2>/dev/null; CTRL_PID=
}
controller_peer() { # RUN
    run_logged peer-controller-runtime timeout 600 "$CR_PEER" --kubeconfig "$KUBECONFIG_FILE" \
        --expect "$CTRL_OBJECTS" --settle "${SETTLE}s" --out "$RECORDS" --run "$1"
}
if want controller; then
    have_k=0; [ -x "$BUILD/kcache-controller" ] && have_k=1
    [ $have_k = 1 ] || log "skip controller (kcache side): $BUILD/kcache-controller not built yet"
    [ -n "$CR_PEER" ] || log "skip controller (controller-runtime side): peer not built"
    wl=configmaps-$CTRL_OBJECTS
    if [ $have_k = 1 ]; then
        strip -o "$TMP/kcache-controller.stripped" "$BUILD/kcache-controller" &&
            record controller kcache "$wl" binary_size \
                "$(stat -c %s "$TMP/kcache-controller.stripped")" bytes 1
    fi
    [ -n "$CR_PEER" ] && record controller controller-runtime "$wl" binary_size \
        "$(stat -c %s "$CR_PEER")" bytes 1
    for run in $(seq 1 "$RUNS"); do
        if [ $((run % 2)) = 1 ]; then order="kcache peer"; else order="peer kcache"; fi
        for who in $order; do
            if [ "$who" = kcache ] && [ $have_k = 1 ]; then :;
            elif [ "$who" = peer ] && [ -n "$CR_PEER" ]; then :;
            else continue; fi
            log "controller run $run/$RUNS: $who"
            start_server configmaps "$CTRL_OBJECTS" || continue
            "controller_$who" "$run"
            stop_server
        done
    done
    # A reconcile-latency bench program, if one exists, runs standalone.
    if [ -x "$BUILD/bench/bench_controller" ]; then
        for run in $(seq 1 "$RUNS"); do
            KC_BUILD=$BUILD KC_BENCH_OUT=$RECORDS KC_BENCH_RUN=$run \
                run_logged bench_controller "$BUILD/bench/bench_controller"
        done
    fi
fi

# ---- any other bench program not covered above ------------------------------
for bin in "$BUILD"/bench/bench_*; do
    [ -x "$bin" ] || continue
    b=${bin##*/bench_}
    case " cache decode informer controller server " in *" $b "*) continue ;; esac
    for run in $(seq 1 "$RUNS"); do
        log "$b run $run/$RUNS"
        KC_BUILD=$BUILD KC_BENCH_OUT=$RECORDS KC_BENCH_RUN=$run run_logged "bench_$b" "$bin"
    done
done

log "measurements took $(( $(date +%s) - T_START )) s; server: $SERVER_KIND"

# ---- report ----------------------------------------------------------------
if ! command -v gnuplot >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing gnuplot-nox (Debian) for the charts"
        { apt-get install -y -q gnuplot-nox || { apt-get update -q && apt-get install -y -q gnuplot-nox; }; } \
            > "$OUT/logs/apt-gnuplot.log" 2>&1 || log "gnuplot install failed: no charts"
    else
        log "gnuplot missing and not root: no charts"
    fi
fi
python3 bench/report.py --records "$RECORDS" --out "$OUT" --server "$SERVER_KIND"
