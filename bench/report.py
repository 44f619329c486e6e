#!/usr/bin/env python3
"""bench/report.py: turn the JSON-lines bench records into results.

Reads the records written under the protocol of bench/README.md, takes for
every (bench, workload, name, impl) the median over runs with min and max,
pairs kcache's figures with the same figure of every other impl (the peers)
as ratio = kcache / peer, and writes:
  OUT/results.json  every figure, its runs and ratios, and the machine
  OUT/results.txt   the table also printed on stdout
  OUT/results.md    the same table in Markdown (for bench/RESULTS.md)
  OUT/*.png         one bar chart per compared figure, and ratios.png
Charts need gnuplot; without it they are skipped with a message.
Only the standard library is used.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys

KCACHE = "kcache"


def is_kc(impl):
    """kcache itself or a kcache variant (kcache-unpaged, kcache-framer ...):
    these are compared with the peers, never with each other."""
    return impl == KCACHE or impl.startswith(KCACHE + "-")

# Targets of issue 9, as "kcache/peer must be at most (lower-better) or at
# least (higher-better) this".
TARGETS = {
    ("informer", "events_per_s"): 3.0,
    ("informer", "sync_cpu"): 1 / 3,
    ("informer", "peak_rss"): 1 / 3,
    ("informer", "bytes_per_object"): 1 / 3,
    ("controller", "idle_rss"): 1 / 5,
    ("decode", "events_per_s"): 0.7,      # issue 3: whole path vs bare cJSON_Parse
}

# Figures in the ratio chart (besides those with a target).
RATIO_CHART = {("informer", n) for n in ("sync_time", "events_per_s", "cpu_total",
                                          "cpu_per_kevent")}


# Figures that get a chart even while only one side reported them.
CHARTED = {("informer", n) for n in ("sync_time", "sync_cpu", "events_per_s", "peak_rss",
                                      "bytes_per_object", "cpu_per_kevent")} | \
          {("controller", n) for n in ("idle_rss", "binary_size")}

# Sanity counts, not performance: left out of the ratio chart.
NO_RATIO_CHART = {"objects", "churn_events", "reconciles", "rss_synced", "heap_per_object",
                  "churn_coalesced", "cache_bytes_per_object", "cached_per_json",
                  "cached_per_minified", "ns_per_op", "cjson_parse_per_s", "events_vs_cjson",
                  "server_cpu_per_event"}

# kcache's bars are always this colour; peers take the next ones.
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]


def better_of(unit, explicit):
    if explicit in ("lower", "higher"):
        return explicit
    return "higher" if unit.endswith("/s") else "lower"


def scale_for(unit, values):
    """(divisor, label) so that numbers of this unit read well."""
    top = max((abs(v) for v in values), default=0)
    if unit == "bytes":
        for div, suf in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if top >= div:
                return div, suf
        return 1, "B"
    if unit == "s":
        if top < 1e-3:
            return 1e-6, "us"
        if top < 1:
            return 1e-3, "ms"
        return 1, "s"
    if unit.endswith("/s"):
        if top >= 1e6:
            return 1e6, "M" + unit
        if top >= 1e4:
            return 1e3, "k" + unit
    return 1, unit


def num(v):
    if v is None:
        return "-"
    if float(v).is_integer() and abs(v) < 1e7:
        return "%d" % v
    return "%.3g" % v


def fmt(value, unit):
    """A value in a readable unit."""
    if value is None:
        return "-"
    div, label = scale_for(unit, [value])
    return "%s %s" % (num(value / div), label)


def fmt_range(f, unit):
    """median [min..max] unit, all in the median's scale."""
    div, label = scale_for(unit, [f["median"]])
    s = num(f["median"] / div)
    if f["runs"] > 1 and f["min"] != f["max"]:
        s += " [%s..%s]" % (num(f["min"] / div), num(f["max"] / div))
    return "%s %s" % (s, label)


def load(path):
    groups = {}
    bad = 0
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
                key = (r["bench"], r.get("workload", ""), r["name"], r.get("impl", KCACHE))
                value = float(r["value"])
                unit = str(r["unit"])
                run = r.get("run", 1)
            except (ValueError, KeyError, TypeError) as e:
                bad += 1
                print("report: %s:%d: bad record (%s): %s" % (path, lineno, e, line[:120]),
                      file=sys.stderr)
                continue
            g = groups.setdefault(key, {"unit": unit, "runs": [], "better": None})
            g["runs"].append({"run": run, "value": value})
            if r.get("better"):
                g["better"] = r["better"]
    return groups, bad


def summarize(groups):
    figs = {}
    for key, g in groups.items():
        vals = [x["value"] for x in g["runs"]]
        figs[key] = {
            "bench": key[0], "workload": key[1], "name": key[2], "impl": key[3],
            "unit": g["unit"], "better": better_of(g["unit"], g["better"]),
            "value": statistics.median(vals),  # the figure: the median of the runs
            "median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "runs": len(vals), "values": vals,
        }
    # Ratios: kcache / each other impl on the same (bench, workload, name).
    for key, f in figs.items():
        if not is_kc(f["impl"]):
            continue
        f["ratios"] = {}
        for okey, o in figs.items():
            if okey[:3] == key[:3] and not is_kc(o["impl"]) and o["median"]:
                ratio = f["median"] / o["median"]
                target = TARGETS.get((f["bench"], f["name"]))
                entry = {"peer_median": o["median"], "ratio": ratio}
                if target is not None:
                    entry["target"] = target
                    entry["met"] = ratio >= target if f["better"] == "higher" else ratio <= target
                f["ratios"][o["impl"]] = entry
    return figs


def machine():
    info = {"hostname": platform.node(), "kernel": platform.release(),
            "cores": os.cpu_count(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["memory_kb"] = int(f.readline().split()[1])
    except OSError:
        pass
    for tool, args in (("go", ["go", "version"]), ("cc", ["cc", "--version"])):
        try:
            out = subprocess.run(args, capture_output=True, text=True, timeout=10).stdout
            info[tool] = out.splitlines()[0] if out else None
        except (OSError, subprocess.SubprocessError):
            info[tool] = None
    return info


def rows_of(figs):
    """One row per (bench, workload, name): kcache and each peer side by side."""
    keys = sorted({k[:3] for k in figs})
    rows = []
    for k in keys:
        same = [f for f in figs.values() if (f["bench"], f["workload"], f["name"]) == k]
        kcs = sorted((f for f in same if is_kc(f["impl"])),
                     key=lambda f: (f["impl"] != KCACHE, f["impl"]))
        others = sorted((f for f in same if not is_kc(f["impl"])), key=lambda f: f["impl"])
        for kc, o in [(a, b) for a in (kcs or [None]) for b in (others or [None])]:
            if kc is None and o is None:
                continue
            ratio = None
            mark = ""
            if kc is not None and o is not None and kc.get("ratios", {}).get(o["impl"]):
                e = kc["ratios"][o["impl"]]
                ratio = e["ratio"]
                if "met" in e:
                    mark = " ok" if e["met"] else " MISS"
            unit = (kc or o)["unit"]

            def cell(f):
                return "-" if f is None else fmt_range(f, unit)
            rows.append([k[0], k[1], k[2], kc["impl"] if kc else "", cell(kc),
                         o["impl"] if o else "",
                         cell(o), ("%.3g%s" % (ratio, mark)) if ratio is not None else "-"])
    return rows


HEAD = ["bench", "workload", "figure", "kcache", "kcache median [min..max]", "peer",
        "peer median [min..max]", "kcache/peer"]


def table_text(rows):
    widths = [max(len(str(r[i])) for r in rows + [HEAD]) for i in range(len(HEAD))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([line(HEAD), line(["-" * w for w in widths])] + [line(r) for r in rows])


def table_md(rows):
    out = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def gp_quote(s):
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def charts(figs, out, server):
    if not shutil.which("gnuplot"):
        print("report: gnuplot not found: no charts", file=sys.stderr)
        return []
    made = []
    chart_dir = os.path.join(out, "charts-data")
    os.makedirs(chart_dir, exist_ok=True)
    by_fig = {}
    for f in figs.values():
        by_fig.setdefault((f["bench"], f["name"]), []).append(f)
    for (bench, name), fs in sorted(by_fig.items()):
        impls = sorted({f["impl"] for f in fs}, key=lambda i: (not is_kc(i), i != KCACHE, i))
        if (bench, name) not in CHARTED and (name in NO_RATIO_CHART or not (
                any(is_kc(i) for i in impls) and any(not is_kc(i) for i in impls))):
            continue  # compared figures, and the headline ones, get a chart
        workloads = sorted({f["workload"] for f in fs})
        unit = fs[0]["unit"]
        div, label = scale_for(unit, [f["max"] for f in fs])
        dat = os.path.join(chart_dir, "%s_%s.dat" % (bench, name))
        with open(dat, "w") as d:
            for w in workloads:
                cols = [gp_quote(w or bench)]
                for i in impls:
                    f = next((x for x in fs if x["workload"] == w and x["impl"] == i), None)
                    if f is None:
                        cols += ["NaN", "NaN", "NaN"]
                    else:
                        cols += ["%g" % (f["median"] / div), "%g" % (f["min"] / div),
                                 "%g" % (f["max"] / div)]
                d.write(" ".join(cols) + "\n")
        png = os.path.join(out, "%s_%s.png" % (bench, name))
        better = fs[0]["better"]
        plots = ", ".join(
            "%s using %d:%d:%d:xtic(1) title %s lc rgb '%s'" % (
                "'" + dat + "'" if n == 0 else "''", 2 + 3 * n, 3 + 3 * n, 4 + 3 * n, gp_quote(i),
                COLOURS[(n + (0 if KCACHE in impls else 1)) % len(COLOURS)])
            for n, i in enumerate(impls))
        script = "\n".join([
            "set terminal pngcairo size 800,480 noenhanced font ',10'" if has_cairo()
            else "set terminal png size 800,480 noenhanced",
            "set output %s" % gp_quote(png),
            "set title %s" % gp_quote("%s: %s (%s is better; median, bars min..max; server %s)"
                                      % (bench, name, better, server)),
            "set ylabel %s" % gp_quote(label),
            "set yrange [0:*]",
            "set style data histogram",
            "set style histogram errorbars gap 1 lw 1",
            "set style fill solid 0.8 border -1",
            "set boxwidth 0.9",
            "set key top right",
            # many workloads (the cache table): slanted labels that do not overlap
            "set xtics rotate by -35 font ',8'\nset bmargin 7" if len(workloads) > 6 else "",
            "set grid ytics",
            "plot " + plots,
        ])
        if run_gnuplot(script):
            made.append(png)
    # Ratio chart: for kcache at its defaults, each headline figure against
    # the less favourable peer (what RESULTS.md quotes); log scale, targets.
    ratios = []
    for f in sorted(figs.values(), key=lambda f: (f["bench"], f["name"], f["workload"]),
                    reverse=True):
        if f["name"] in NO_RATIO_CHART or f["impl"] != KCACHE:
            continue
        if (f["bench"], f["name"]) not in TARGETS and (f["bench"], f["name"]) not in RATIO_CHART:
            continue
        rs = [(impl, e) for impl, e in f.get("ratios", {}).items() if e["ratio"] > 0]
        if not rs:
            continue
        worst = (min if f["better"] == "higher" else max)(rs, key=lambda x: x[1]["ratio"])
        ratios.append(("%s %s %s (vs %s)" % (f["bench"], f["name"], f["workload"], worst[0]),
                       worst[1]["ratio"], worst[1].get("target")))
    if ratios:
        dat = os.path.join(chart_dir, "ratios.dat")
        with open(dat, "w") as d:
            for i, (lab, r, t) in enumerate(ratios):
                d.write("%d %s %g %s\n" % (i, gp_quote(lab), r, "%g" % t if t else "NaN"))
        png = os.path.join(out, "ratios.png")
        script = "\n".join([
            "set terminal pngcairo size 900,%d noenhanced font ',9'" % (160 + 22 * len(ratios))
            if has_cairo() else "set terminal png size 900,%d noenhanced" % (160 + 22 * len(ratios)),
            "set output %s" % gp_quote(png),
            "set title 'kcache / less favourable peer (log; x = target)'",
            "set logscale x", "set grid xtics",
            "set xrange [%g:%g]" % (
                min([1] + [r for _, r, _ in ratios] + [t for _, _, t in ratios if t]) / 2,
                max([1] + [r for _, r, _ in ratios] + [t for _, _, t in ratios if t]) * 3),
            "set arrow from 1, graph 0 to 1, graph 1 nohead lc rgb 'black'",
            "set yrange [-1:%d]" % len(ratios), "set ytics font ',8'",
            "set style fill solid 0.7",
            # A bar from 1 to the ratio for each figure (boxxyerrorbars:
            # x, y, xlow, xhigh, ylow, yhigh), the target as a red cross.
            "plot '%s' using (sqrt($3)):1:($3<1?$3:1):($3<1?1:$3):($1-0.35):($1+0.35):ytic(2)"
            " with boxxyerrorbars lc rgb '#1f77b4' notitle,"
            " '' using 3:1:(sprintf('%%.3g', $3)) with labels left offset 1,0 notitle,"
            " '' using 4:1 with points pt 2 ps 1.5 lc rgb 'red' title 'target'" % dat,
        ])
        if run_gnuplot(script):
            made.append(png)
    return made


_cairo = None


def has_cairo():
    global _cairo
    if _cairo is None:
        try:
            out = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True,
                                 text=True, timeout=20)
            _cairo = "pngcairo" in (out.stdout + out.stderr)
        except (OSError, subprocess.SubprocessError):
            _cairo = False
    return _cairo


def run_gnuplot(script):
    try:
        p = subprocess.run(["gnuplot"], input=script, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        print("report: gnuplot: %s" % e, file=sys.stderr)
        return False
    if p.returncode != 0:
        print("report: gnuplot failed: %s" % p.stderr.strip()[:400], file=sys.stderr)
        return False
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", default="build/bench/records.jsonl")
    ap.add_argument("--out", default="build/bench")
    ap.add_argument("--server", default="fakeapi", help="which API server was used")
    ap.add_argument("--no-charts", action="store_true")
    a = ap.parse_args()
    if not os.path.exists(a.records):
        print("report: no records at %s" % a.records, file=sys.stderr)
        return 1
    groups, bad = load(a.records)
    figs = summarize(groups)
    rows = rows_of(figs)
    text = table_text(rows) if rows else "(no figures recorded)"
    os.makedirs(a.out, exist_ok=True)
    result = {
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "make bench",
        "server": a.server,
        "machine": machine(),
        "bad_records": bad,
        "figures": sorted(figs.values(), key=lambda f: (f["bench"], f["workload"], f["name"],
                                                        not is_kc(f["impl"]), f["impl"])),
    }
    for old in os.listdir(a.out):  # charts of an earlier run must not linger
        if old.endswith(".png"):
            os.remove(os.path.join(a.out, old))
    pngs = [] if a.no_charts else charts(figs, a.out, a.server)
    result["charts"] = [os.path.basename(p) for p in pngs]
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    with open(os.path.join(a.out, "results.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(table_md(rows) + "\n" if rows else "(no figures recorded)\n")
    print(text)
    print("\nresults: %s/results.json, results.md; charts: %s" %
          (a.out, ", ".join(os.path.basename(p) for p in pngs) or "none"))
    if a.server != "fakeapi":
        print("NOTE: measured against the %s server, not build/kcache-fakeapi: not for RESULTS.md"
              % a.server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
