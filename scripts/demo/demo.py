#!/usr/bin/env python3
"""Helpers of scripts/run-demo.sh (`make run`); standard library only.

  demo.py scenario                 print the initial objects (YAML, for kubectl create -f -)
  demo.py drive --duration S [--seed N] [--rate R]
                                   make a trickle of changes with kubectl for S seconds
                                   (or until SIGTERM); one line per notable change on stdout
  demo.py monitor --metrics URL [--events FILE] [--interval S] [--tty|--no-tty]
                                   show live progress until SIGTERM: objects cached,
                                   watch events/s, reconciles, queue depth, replicas in
                                   place; lines appended to FILE (drive's output) are
                                   printed above the progress line
  demo.py check [--verbose] [--metrics URL]
                                   compare every expected replica with the server; print
                                   the summary; exit 0 on PASS, 1 on FAIL
  demo.py wait-http URL [--timeout S] [--pid PID]
                                   wait until URL answers 200 (exit 1 on timeout or if PID exits)
  demo.py free-ports N             print N free TCP ports on 127.0.0.1

kubectl runs with the environment it is given (run-demo.sh sets KUBECONFIG
and a private HOME).  The scenario: sources in "platform" and "apps" are
annotated kcache.io/replicate-to with names and globs; the same name
(app-config) is a source in both, with disjoint targets; team-b holds a
db-settings ConfigMap that kcache did not make (a conflict it must leave
alone); bulk-1 and bulk-2 hold unannotated objects that only load the cache.
"""
import base64
import fnmatch
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request

ANN_TO = "kcache.io/replicate-to"
ANN_FROM = "kcache.io/replicated-from"
MANAGED = ("app.kubernetes.io/managed-by", "kcache")

NAMESPACES = ["platform", "apps", "team-a", "team-b", "staging-eu", "staging-us", "prod",
              "bulk-1", "bulk-2"]
LATE_NAMESPACE = "staging-ap"          # created midway; matches staging-*
FOREIGN = ("team-b", "db-settings")     # not made by kcache: must be left alone
FOREIGN_DATA = {"owner": "team-b", "note": "hand-made, not a copy"}
BULK_CONFIGMAPS = 20                    # per bulk namespace
BULK_SECRETS = 20


def b64(s):
    return base64.b64encode(s.encode()).decode()


def meta(name, ns, labels=None, replicate_to=None):
    m = {"name": name, "namespace": ns}
    if labels:
        m["labels"] = dict(labels)
    if replicate_to is not None:
        m["annotations"] = {ANN_TO: replicate_to}
    return m


def sources():
    """The annotated sources present at the start."""
    return [
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
         "metadata": meta("wildcard-tls", "platform", {"app": "ingress"}, "team-a,team-b,staging-*"),
         "data": {"tls.crt": b64("-----BEGIN CERTIFICATE-----\ndemo certificate\n-----END CERTIFICATE-----\n"),
                  "tls.key": b64("demo key material, not a real key\n")}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": meta("app-config", "platform", {"app": "shared"}, "team-*"),
         "data": {"log_level": "info", "region": "global", "rev": "0"}},
        # Same name as platform/app-config, different targets.
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": meta("app-config", "apps", {"app": "web"}, "staging-*"),
         "data": {"log_level": "debug", "feature_x": "on", "rev": "0"}},
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
         "metadata": meta("registry-creds", "platform", {"app": "registry"}, "prod,team-a"),
         "data": {"username": b64("robot"), "password": b64("demo-password")}},
        # team-b already has a db-settings that kcache did not make.
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": meta("db-settings", "platform", {"app": "db"}, "team-a,team-b"),
         "data": {"host": "db.platform.svc", "port": "5432"}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": meta("feature-flags", "apps", {"app": "web"}, "prod,staging-*"),
         "data": {"new_ui": "false", "rev": "0"}},
        # Not annotated: never copied.
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
         "metadata": meta("api-token", "apps", {"app": "web"}),
         "data": {"token": b64("demo-token")}},
    ]


def scenario():
    objs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in NAMESPACES]
    objs.append({"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": FOREIGN[1], "namespace": FOREIGN[0], "labels": {"owner": "team-b"}},
                 "data": dict(FOREIGN_DATA)})
    objs += sources()
    for ns in ("bulk-1", "bulk-2"):
        for i in range(BULK_CONFIGMAPS):
            objs.append({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "cm-%03d" % i, "namespace": ns, "labels": {"bulk": "yes"}},
                         "data": {"i": str(i), "payload": "x" * 200}})
        for i in range(BULK_SECRETS):
            objs.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                         "metadata": {"name": "secret-%03d" % i, "namespace": ns, "labels": {"bulk": "yes"}},
                         "data": {"i": b64(str(i))}})
    # JSON is YAML: one document per object.
    sys.stdout.write("".join("---\n" + json.dumps(o) + "\n" for o in objs))
    return 0


# ---------------------------------------------------------------- kubectl

def kubectl(*args, stdin=None, timeout=20):
    """Runs kubectl; returns (ok, stdout, stderr)."""
    try:
        p = subprocess.run(["kubectl"] + list(args), input=stdin, capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "", "kubectl %s: timed out" % " ".join(args)
    return p.returncode == 0, p.stdout, p.stderr.strip()


def kind_arg(kind):
    return "secret" if kind == "Secret" else "configmap"


# ---------------------------------------------------------------- drive

def t0_offset():
    """Seconds since run-demo.sh's clock started (env DEMO_T0, Unix time), so
    that the driver's and the monitor's timestamps agree."""
    try:
        return max(0.0, time.time() - float(os.environ["DEMO_T0"]))
    except (KeyError, ValueError):
        return 0.0


class Stop(Exception):
    pass


def drive(argv):
    duration, seed, rate = 30.0, 1, 4.0
    i = 0
    while i < len(argv):
        if argv[i] == "--duration":
            duration = float(argv[i + 1]); i += 2
        elif argv[i] == "--seed":
            seed = int(argv[i + 1]); i += 2
        elif argv[i] == "--rate":
            rate = float(argv[i + 1]); i += 2
        else:
            sys.stderr.write("drive: unknown argument %r\n" % argv[i]); return 2

    def on_term(signum, frame):
        raise Stop()
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # run-demo.sh decides when to stop

    rnd = random.Random(seed)
    start = time.monotonic() - t0_offset()
    live = [(s["kind"], s["metadata"]["namespace"], s["metadata"]["name"])
            for s in sources() if ANN_TO in s["metadata"].get("annotations", {})]
    copies = {  # a few copies to tamper with: (kind, ns, name)
        ("Secret", "team-a", "wildcard-tls"), ("ConfigMap", "team-a", "app-config"),
        ("ConfigMap", "staging-eu", "app-config"), ("Secret", "team-b", "wildcard-tls"),
        ("ConfigMap", "team-a", "db-settings"),
    }
    timeline = [
        (0.30, "namespace"), (0.45, "new-source"), (0.60, "narrow"), (0.75, "delete-source"),
    ]
    changes = 0
    rev = 0

    def say(msg):
        print("%6.1fs  %s" % (time.monotonic() - start, msg), flush=True)

    def do(desc, *args, stdin=None, quiet=False):
        nonlocal changes
        ok, _, err = kubectl(*args, stdin=stdin)
        changes += 1
        if not ok:
            say("! %s failed: %s" % (desc, err.splitlines()[-1] if err else "?"))
        elif not quiet:
            say(desc)
        return ok

    try:
        tick = 0
        while True:
            now = time.monotonic() - start
            if now >= duration:
                break
            while timeline and now >= timeline[0][0] * duration:
                what = timeline.pop(0)[1]
                if what == "namespace":
                    do("namespace %s created (matches staging-*)" % LATE_NAMESPACE, "create", "--validate=false", "-f", "-",
                       stdin=json.dumps({"apiVersion": "v1", "kind": "Namespace",
                                         "metadata": {"name": LATE_NAMESPACE}}))
                elif what == "new-source":
                    obj = {"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": meta("ca-bundle", "platform", {"app": "pki"}, "team-*,prod"),
                           "data": {"ca.crt": "demo CA bundle\n"}}
                    if do("source platform/ca-bundle created (team-*,prod)", "create", "--validate=false", "-f", "-",
                          stdin=json.dumps(obj)):
                        live.append(("ConfigMap", "platform", "ca-bundle"))
                elif what == "narrow":
                    do("platform/registry-creds narrowed to team-a (prod copy must go)",
                       "annotate", "secret", "registry-creds", "-n", "platform", "--overwrite",
                       ANN_TO + "=team-a")
                elif what == "delete-source":
                    if do("source apps/feature-flags deleted (its copies must go)",
                          "delete", "configmap", "feature-flags", "-n", "apps", "--wait=false"):
                        live.remove(("ConfigMap", "apps", "feature-flags"))
                        copies.discard(("ConfigMap", "prod", "feature-flags"))
            tick += 1
            r = rnd.random()
            if r < 0.45:
                kind, ns, name = rnd.choice(live)
                rev += 1
                if kind == "Secret":
                    patch = {"data": {"rev": b64(str(rev))}}
                else:
                    patch = {"data": {"rev": str(rev)}}
                do("%s %s/%s updated (rev %d)" % (kind.lower(), ns, name, rev),
                   "patch", kind_arg(kind), name, "-n", ns, "--type", "merge", "-p", json.dumps(patch),
                   quiet=True)
            elif r < 0.55:
                kind, ns, name = rnd.choice(live)
                do("%s %s/%s relabelled" % (kind.lower(), ns, name),
                   "label", kind_arg(kind), name, "-n", ns, "--overwrite", "tier=t%d" % rnd.randint(1, 3),
                   quiet=True)
            elif r < 0.70:
                kind, ns, name = rnd.choice(sorted(copies))
                do("copy %s/%s edited by hand (must be restored)" % (ns, name),
                   "patch", kind_arg(kind), name, "-n", ns, "--type", "merge",
                   "-p", json.dumps({"data": {"rev": b64("tampered") if kind == "Secret" else "tampered"}}))
            elif r < 0.78:
                kind, ns, name = rnd.choice(sorted(copies))
                do("copy %s/%s deleted by hand (must come back)" % (ns, name),
                   "delete", kind_arg(kind), name, "-n", ns, "--wait=false", "--ignore-not-found")
            else:
                # Load: touch every bulk ConfigMap of one namespace in one kubectl run.
                ns = rnd.choice(["bulk-1", "bulk-2"])
                do("bulk %s relabelled" % ns, "label", "configmaps", "--all", "-n", ns,
                   "--overwrite", "tick=%d" % tick, quiet=True)
            left = duration - (time.monotonic() - start)
            if left > 0:
                time.sleep(min(left, rnd.uniform(0.5, 1.5) / rate))
    except Stop:
        pass
    say("changes stopped: %d kubectl changes" % changes)
    return 0


# ---------------------------------------------------------------- metrics

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')


def scrape(url, timeout=2.0):
    """Parses Prometheus text into {name: [(labels, value)]}; {} on error."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            text = r.read(8 << 20).decode("utf-8", "replace")
    except Exception:
        return {}
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            continue
        try:
            v = float(m.group(3))
        except ValueError:
            continue
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out.setdefault(m.group(1), []).append((labels, v))
    return out


def msum(metrics, name, **match):
    return sum(v for labels, v in metrics.get(name, [])
               if all(labels.get(k) == want for k, want in match.items()))


def first_family(metrics, patterns):
    """The first metric whose name matches one of the regexps, for kcache's own
    metric names that may differ between versions."""
    for p in patterns:
        for name in sorted(metrics):
            if re.fullmatch(p, name):
                return name
    return None


def figures(m):
    """The headline numbers from one scrape."""
    cached_name = first_family(m, [r"kcache_cache_objects", r"kcache_cached_objects",
                                   r"kcache_.*cache.*objects.*", r"kcache_.*objects_cached.*"])
    events_name = first_family(m, [r"kcache_watch_events_total", r"kcache_informer_events_total",
                                   r"kcache_.*events_total"])
    return {
        "cached": msum(m, cached_name) if cached_name else None,
        "events": msum(m, events_name) if events_name else None,
        "reconciles": msum(m, "controller_runtime_reconcile_total"),
        "errors": msum(m, "controller_runtime_reconcile_errors_total"),
        "depth": msum(m, "workqueue_depth"),
        "leader": msum(m, "leader_election_master_status") if "leader_election_master_status" in m else None,
        "copies": msum(m, "kcache_replicator_copies_total") if "kcache_replicator_copies_total" in m else None,
        "conflicts": (msum(m, "kcache_replicator_conflicts_total")
                      if "kcache_replicator_conflicts_total" in m else None),
    }


# ---------------------------------------------------------------- state check

def server_state():
    ok, out, err = kubectl("get", "namespaces,secrets,configmaps", "-A", "-o", "json", timeout=30)
    if not ok:
        raise RuntimeError("kubectl get: " + err)
    items = json.loads(out).get("items", [])
    namespaces = sorted(o["metadata"]["name"] for o in items if o.get("kind") == "Namespace"
                        and not o["metadata"].get("deletionTimestamp"))
    objs = {}
    for o in items:
        if o.get("kind") in ("Secret", "ConfigMap"):
            md = o["metadata"]
            objs[(o["kind"], md["namespace"], md["name"])] = o
    return namespaces, objs


def targets(patterns, namespaces, own_ns):
    pats = [p.strip() for p in patterns.split(",") if p.strip()]
    return [n for n in namespaces if n != own_ns and any(fnmatch.fnmatchcase(n, p) for p in pats)]


def evaluate(namespaces, objs):
    """Returns (results, stray): results is a list of (status, key, source_key,
    detail) for every expected replica; status "ok", "missing", "stale",
    "conflict-ok" (foreign object left alone) or "conflict-BAD"."""
    results, expected = [], set()
    srcs = [(k, o) for k, o in sorted(objs.items())
            if ANN_TO in (o["metadata"].get("annotations") or {})
            and ANN_FROM not in (o["metadata"].get("annotations") or {})]
    for skey, src in srcs:
        kind, sns, sname = skey
        for tns in targets(src["metadata"]["annotations"][ANN_TO], namespaces, sns):
            key = (kind, tns, sname)
            expected.add(key)
            copy = objs.get(key)
            if copy is None:
                results.append(("missing", key, skey, "not on the server"))
                continue
            ann = copy["metadata"].get("annotations") or {}
            labels = copy["metadata"].get("labels") or {}
            if ann.get(ANN_FROM) != "%s/%s" % (sns, sname):
                if (tns, sname) == FOREIGN and kind == "ConfigMap":
                    good = copy.get("data") == FOREIGN_DATA and labels.get(MANAGED[0]) != MANAGED[1]
                    results.append(("conflict-ok" if good else "conflict-BAD", key, skey,
                                    "foreign object left alone" if good else "foreign object was changed"))
                else:
                    results.append(("stale", key, skey, "replicated-from is %r" % ann.get(ANN_FROM)))
                continue
            why = []
            if (copy.get("data") or {}) != (src.get("data") or {}):
                why.append("data differs")
            if (copy.get("binaryData") or {}) != (src.get("binaryData") or {}):
                why.append("binaryData differs")
            if kind == "Secret" and copy.get("type", "Opaque") != src.get("type", "Opaque"):
                why.append("type differs")
            if labels.get(MANAGED[0]) != MANAGED[1]:
                why.append("no managed-by label")
            for k, v in (src["metadata"].get("labels") or {}).items():
                if labels.get(k) != v:
                    why.append("label %s differs" % k)
            results.append(("stale" if why else "ok", key, skey, ", ".join(why) or "up to date"))
    stray = [(k, (o["metadata"].get("annotations") or {}).get(ANN_FROM)) for k, o in sorted(objs.items())
             if ANN_FROM in (o["metadata"].get("annotations") or {}) and k not in expected]
    return results, stray


def conflict_event():
    """True when the controller reported the foreign object as a Kubernetes
    Event (reason ReplicationConflict) in its namespace."""
    ok, out, _ = kubectl("get", "events", "-n", FOREIGN[0], "-o", "json")
    if not ok:
        return False
    for e in json.loads(out).get("items", []):
        io = e.get("involvedObject") or {}
        if e.get("reason") == "ReplicationConflict" and io.get("name") == FOREIGN[1]:
            return True
    return False


def check(argv):
    verbose = "--verbose" in argv
    murl = argv[argv.index("--metrics") + 1] if "--metrics" in argv else None
    try:
        namespaces, objs = server_state()
    except Exception as e:
        print("FAIL: cannot read the server: %s" % e)
        return 1
    results, stray = evaluate(namespaces, objs)
    event = conflict_event()
    good = sum(1 for r in results if r[0] in ("ok", "conflict-ok"))
    bad = len(results) - good + len(stray) + (0 if event else 1)
    if not verbose:
        print("%d/%d replicas in place, %d stray, conflict event %s"
              % (good, len(results), len(stray), "seen" if event else "missing"))
        return 0 if bad == 0 else 1
    print("Replicas (every expected copy, read back with kubectl):")
    for status, (kind, ns, name), (_, sns, sname), detail in results:
        mark = "ok  " if status in ("ok", "conflict-ok") else "FAIL"
        print("  %s %-9s %-28s <- %-26s %s" % (mark, kind, ns + "/" + name, sns + "/" + sname, detail))
    for (kind, ns, name), frm in stray:
        print("  FAIL %-9s %-28s    stray copy of %s: its source no longer targets %s"
              % (kind, ns + "/" + name, frm, ns))
    print("  %s Event     %-28s    %s" % ("ok  " if event else "FAIL", "/".join(FOREIGN),
          "conflict reported (reason ReplicationConflict)" if event
          else "no ReplicationConflict Event for the foreign object"))
    sources_n = len({r[2] for r in results})
    conflicts = sum(1 for r in results if r[0].startswith("conflict"))
    print("  %d sources, %d expected copies (%d of them a foreign object to leave alone); %s"
          % (sources_n, len(results), conflicts,
             "no stray copies" if not stray else "%d stray copies" % len(stray)))
    m = scrape(murl) if murl else {}
    if murl and not m:
        print("Controller: /metrics did not answer")
    elif murl:
        f = figures(m)
        parts = ["%d reconciles" % f["reconciles"], "%d reconcile errors" % f["errors"]]
        if f["copies"] is not None:
            parts.append("%d copy writes" % f["copies"])
        if f["conflicts"] is not None:
            parts.append("%d conflicts" % f["conflicts"])
        if f["events"] is not None:
            parts.append("%d watch events" % f["events"])
        if f["cached"] is not None:
            parts.append("%d objects cached" % f["cached"])
        print("Controller: " + ", ".join(parts))
    print("Result: %d/%d replicas in place, %d stray" % (good, len(results), len(stray)))
    return 0 if bad == 0 else 1


# ---------------------------------------------------------------- monitor

def monitor(argv):
    url = argv[argv.index("--metrics") + 1]
    events = open(argv[argv.index("--events") + 1]) if "--events" in argv else None
    pending = ""
    interval = float(argv[argv.index("--interval") + 1]) if "--interval" in argv else 1.0
    tty = sys.stdout.isatty()
    if "--tty" in argv:
        tty = True
    if "--no-tty" in argv:
        tty = False
    stop = []
    signal.signal(signal.SIGTERM, lambda s, f: stop.append(1))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    start = time.monotonic() - t0_offset()
    prev = None
    replicas = "?"
    last_state = 0.0
    last_plain = -10.0
    line = ""
    while not stop:
        now = time.monotonic()
        f = figures(scrape(url))
        rate = None
        if prev and f["events"] is not None and prev[1]["events"] is not None and now > prev[0]:
            rate = (f["events"] - prev[1]["events"]) / (now - prev[0])
        prev = (now, f)
        if now - last_state >= 2.0:
            last_state = now
            try:
                results, stray = evaluate(*server_state())
                good = sum(1 for r in results if r[0] in ("ok", "conflict-ok"))
                replicas = "%d/%d" % (good, len(results)) + (" (+%d stray)" % len(stray) if stray else "")
            except Exception:
                replicas = "?"
        line = ("[%5.1fs] cached %s | events/s %s | reconciles %d (err %d) | queue %d | replicas in place %s"
                % (now - start,
                   "?" if f["cached"] is None else "%d" % f["cached"],
                   "?" if rate is None else "%.0f" % rate,
                   f["reconciles"], f["errors"], f["depth"], replicas))
        news = []
        if events is not None:
            pending += events.read()
            *news, pending = pending.split("\n")
        for n in news:
            print(("\r\033[K" if tty else "") + n)
        if tty:
            sys.stdout.write("\r\033[K" + line)
            sys.stdout.flush()
        elif now - last_plain >= 5.0:
            last_plain = now
            print(line, flush=True)
            line = ""
        slept = 0.0
        while slept < interval and not stop:
            time.sleep(0.1)
            slept += 0.1
    if events is not None:
        for n in (pending + events.read()).split("\n"):
            if n:
                print(("\r\033[K" if tty else "") + n)
    if tty:
        sys.stdout.write("\r\033[K" + line + "\n")
    elif line:
        print(line)
    sys.stdout.flush()
    return 0


def wait_http(argv):
    """wait-http URL [--timeout S] [--pid PID]: until URL answers 200; exit 1 on
    timeout or when process PID has gone."""
    url = argv[0]
    timeout = float(argv[argv.index("--timeout") + 1]) if "--timeout" in argv else 30.0
    pid = int(argv[argv.index("--pid") + 1]) if "--pid" in argv else None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as r:
                if r.status == 200:
                    return 0
        except Exception:
            pass
        if pid is not None:
            try:
                os.kill(pid, 0)
            except OSError:
                return 1
        time.sleep(0.1)
    return 1


def free_ports(argv):
    """free-ports N: N currently free TCP ports on 127.0.0.1, one per line."""
    import socket
    socks = []
    for _ in range(int(argv[0]) if argv else 1):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    for s in socks:
        print(s.getsockname()[1])
        s.close()
    return 0


def main(argv):
    cmds = {"scenario": lambda a: scenario(), "drive": drive, "monitor": monitor, "check": check,
            "wait-http": wait_http, "free-ports": free_ports}
    if len(argv) < 2 or argv[1] not in cmds:
        sys.stderr.write(__doc__)
        return 2
    return cmds[argv[1]](argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
