#!/usr/bin/env python3
"""Benchmarks/run.sh's reader: turns each step's raw results into JSON, then
writes Benchmarks/report/REPORT.md with the plots and checks the thresholds.

  report.py wire P90_DIR CHECK_STATUS    package-benchmark's p90 export -> JSON (stdout)
  report.py instructions FILE.jsonl      callgrind totals -> JSON (stdout)
  report.py report DIR THRESHOLDS.json MODE REQUIRE_TARGETS SECONDS
                                         REPORT.md, plots; exit 1 on a regression

Two different things are checked, and kept apart in the report:
- thresholds (Benchmarks/thresholds.json): regression limits set from
  measured baselines with a tolerance. Those marked "gate" do not depend on
  machine load and CI enforces them; the others are timings, enforced by the
  full run a release manager makes on a quiet machine.
- targets: the figures issue #7 asks for. Reported as met or not met; they
  fail the run only with --require-targets.
"""
import datetime
import glob
import json
import math
import os
import re
import subprocess
import sys

KINDS = ["teleservice_call", "hv_warn_call", "rtti_probe", "charge_session", "consent_state"]


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


# ---------------------------------------------------------------- steps

def wire(p90_dir, check_status):
    """package-benchmark's `metricP90AbsoluteThresholds` export: one file per
    benchmark, every metric's p90 in raw units (one sample = 1,000 records)."""
    out = {"thresholds_check_status": int(check_status), "benchmarks": {}}
    for path in sorted(glob.glob(os.path.join(p90_dir, "WireDecode.*.p90.json"))):
        name = os.path.basename(path)[len("WireDecode."):-len(".p90.json")]
        raw = read_json(path)
        per_sample = 1000  # scalingFactor .kilo
        b = {"mallocs_per_record_p90": raw.get("mallocCountTotal", 0) / per_sample}
        if raw.get("wallClock"):
            # wallClock p90 is the slow end of the samples: a conservative rate
            b["ns_per_record_p90"] = raw["wallClock"] / per_sample
            b["records_per_second_p90"] = 1e9 / b["ns_per_record_p90"]
        if raw.get("peakMemoryResident"):
            b["peak_memory_resident_bytes_p90"] = raw["peakMemoryResident"]
        out["benchmarks"][name] = b
    if not out["benchmarks"]:
        sys.exit(f"no WireDecode results in {p90_dir}")
    json.dump(out, sys.stdout, indent=1)


def instructions(path):
    """callgrind totals of decode-loop's decodePass, per kind -> per record."""
    out = {}
    for line in open(path):
        r = json.loads(line)
        decoded = r["run"]["decoded"]
        out[r["kind"]] = {"instructions": r["instructions"], "records": decoded,
                          "valid": r["run"]["valid"], "per_record": r["instructions"] / max(decoded, 1)}
    json.dump(out, sys.stdout, indent=1)


# ---------------------------------------------------------------- report

def metrics_of(d):
    """Every figure of this run, flat: name -> value."""
    m = {}
    wire = read_json(os.path.join(d, "wire.json"))
    if wire:
        bs = wire["benchmarks"]
        m["mallocs_per_record"] = max(b["mallocs_per_record_p90"] for b in bs.values())
        m["wire_thresholds_check_status"] = wire["thresholds_check_status"]
        for name, b in bs.items():
            if "records_per_second_p90" in b:
                m[f"wire.{name}.records_per_second"] = b["records_per_second_p90"]
            m[f"wire.{name}.mallocs_per_record"] = b["mallocs_per_record_p90"]
    ins = read_json(os.path.join(d, "instructions.json"))
    if ins:
        for kind, v in ins.items():
            m[f"instructions_per_record.{kind}"] = v["per_record"]
    dec = read_json(os.path.join(d, "decode.json"))
    if dec:
        m["decode.records"] = dec["records"]
        for t, v in dec["loop_records_per_second"].items():
            m[f"decode.{t}.loop_records_per_second"] = v
        for t, v in dec["best_records_per_second"].items():
            m[f"decode.{t}.process_records_per_second"] = v
        for t, v in dec.get("loop_spread", {}).items():
            m[f"decode.{t}.loop_spread"] = v
        for k, v in dec["ratios"].items():
            m[f"decode.{k}"] = v
    pipe = read_json(os.path.join(d, "pipeline.json"))
    if pipe:
        best = pipe["best_records_per_second"]
        m["pipeline.records"] = pipe["records"]
        for t, v in best.items():
            m[f"pipeline.{t}.records_per_second"] = v
            peaks = [r["peak_kb"] for r in pipe["runs"] if r["tool"] == t and r.get("peak_kb")]
            if peaks:
                m[f"pipeline.{t}.peak_memory_mib"] = max(peaks) / 1024
            # Consumers against kcat -C, producers against kcat -P.
            peer = "produce-kcat" if t.startswith("produce-") else "kcat"
            if t != peer and peer in best:
                m[f"pipeline.{t}.vs_kcat"] = v / best[peer]
    lat = read_json(os.path.join(d, "alert-latency.json"))
    if lat:
        m["alerts.valid"] = 1 if lat["valid"] else 0
        for phase, p in lat["phases"].items():
            for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):
                if p.get(k) is not None:
                    m[f"alerts.{phase}.{k}"] = p[k]
        if lat["valid"] and m.get("alerts.idle.p99_ms"):
            m["alerts.loaded_vs_idle_p99"] = m["alerts.loaded.p99_ms"] / m["alerts.idle.p99_ms"]
    return m


# The targets: (label, metric, comparison, wanted).
TARGETS = [
    ("decode / Python peer (loop times)", "decode.vs_python_loop", ">=", 8.0),
    ("decode / zstd-only ceiling (loop times)", "decode.vs_ceiling_loop", ">=", 0.6),
    ("mallocs per record, decode path (max over the wire benchmarks)", "mallocs_per_record", "<=", 0),
    ("pipeline SQLite / kcat consume", "pipeline.pipeline-sqlite.vs_kcat", ">=", 0.5),
    ("pipeline PostgreSQL / kcat consume", "pipeline.pipeline-postgres.vs_kcat", ">=", 0.3),
    ("HV alert p99 loaded / idle", "alerts.loaded_vs_idle_p99", "<=", 2.0),
    ("HV alert p99 loaded, ms", "alerts.loaded.p99_ms", "<", 50.0),
]


def holds(got, op, want):
    return {">=": got >= want, "<=": got <= want, "<": got < want, ">": got > want}[op]


def check_thresholds(m, thresholds, mode):
    """-> rows (name, metric, measured, limit text, status, gate?)."""
    rows = []
    for c in thresholds["checks"]:
        metric, gate = c["metric"], c.get("gate", False)
        if not gate and mode == "gate":
            continue
        got = m.get(metric)
        if "baseline" in c:  # at most baseline * (1 + tolerance)
            limit, op = c["baseline"] * (1 + c["tolerance"]), "<="
            text = f"<= {limit:,.1f} (baseline {c['baseline']:,.1f} + {c['tolerance']:.0%})"
        elif "min" in c:
            limit, op, text = c["min"], ">=", f">= {c['min']:,}"
        else:
            limit, op, text = c["max"], "<=", f"<= {c['max']:,}"
        if got is None:
            status = "not measured"
        else:
            status = "ok" if holds(got, op, limit) else "REGRESSED"
            if "baseline" in c and got < c["baseline"] * (1 - c["tolerance"]):
                status = "ok (much better than the baseline: update it)"
        rows.append((c.get("label", metric), metric, got, text, status, gate))
    return rows


def fmt(v, metric=""):
    if v is None:
        return "-"
    if "ms" in metric.split(".")[-1]:
        return f"{v:,.1f} ms"
    if "mib" in metric:
        return f"{v:,.0f} MiB"
    if "spread" in metric:
        return f"{v:.1%}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}"


def plots(d, m):
    """throughput per kind; latency idle vs loaded (histogram and CDF)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["(no plots: matplotlib is not installed; Deploy/setup.sh installs it)"]
    made = []
    names = [n for n in ["mixed"] + KINDS + ["plain", "zstd", "zstd-dictionary"] if f"wire.decode.{n}.records_per_second" in m]
    zstd = [n for n in ["no-dictionary", "dictionary"] if f"wire.zstd.{n}.records_per_second" in m]
    peers = [(label, m[k]) for label, k in [("decode-loop (ours)", "decode.loop.loop_records_per_second"),
                                            ("telematics decode (process)", "decode.ours.process_records_per_second"),
                                            ("Python peer", "decode.python.loop_records_per_second"),
                                            ("zstd-only C ceiling", "decode.c.loop_records_per_second")] if k in m]
    if names or peers:
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 2]})
        a = axes[0]
        labels = [f"decode\n{n}" for n in names] + [f"zstd only\n{n}" for n in zstd]
        values = [m[f"wire.decode.{n}.records_per_second"] for n in names] + [m[f"wire.zstd.{n}.records_per_second"] for n in zstd]
        colors = ["#1f77b4"] * len(names) + ["#ff7f0e"] * len(zstd)
        a.bar(range(len(values)), [v / 1e6 for v in values], color=colors)
        a.set_xticks(range(len(values)), labels, fontsize=7, rotation=45, ha="right")
        a.set_yscale("log")  # consent states decode 100x faster than probes
        a.set_ylabel("million records/s (p90 of samples, log)")
        a.set_title("WireDecode (package-benchmark, sample.tmcap): per kind and compression")
        b = axes[1]
        if peers:
            tone = {"decode-loop (ours)": "#1f77b4", "telematics decode (process)": "#6baed6", "Python peer": "#2ca02c", "zstd-only C ceiling": "#7f7f7f"}
            b.barh([p[0] for p in peers], [p[1] / 1e6 for p in peers], color=[tone[p[0]] for p in peers])
            b.set_xlabel("million records/s (best run)")
            b.set_title(f"decode vs peers, {int(m.get('decode.records', 0)):,} tmgen records")
        fig.tight_layout()
        fig.savefig(os.path.join(d, "throughput.png"), dpi=110)
        plt.close(fig)
        made.append(("throughput per kind and vs the peers", "throughput.png"))
    lat = read_json(os.path.join(d, "alert-latency.json"))
    if lat:
        series = {n: sorted(s["latency_ms"] for s in p["samples"] if s.get("latency_ms") is not None) for n, p in lat["phases"].items()}
        series = {n: v for n, v in series.items() if v}
        if series:
            colors = {"idle": "#1f77b4", "loaded": "#d62728"}
            fig, (h, c) = plt.subplots(1, 2, figsize=(13, 4.8))
            lo = max(min(min(v) for v in series.values()), 0.1)
            hi = max(max(max(v) for v in series.values()), 51)
            bins = [lo * (hi / lo) ** (i / 60) for i in range(61)]
            for n, v in series.items():
                h.hist(v, bins=bins, alpha=0.55, color=colors.get(n), label=f"{n} ({len(v)} alerts)")
                c.step(v, [(i + 1) / len(v) for i in range(len(v))], where="post", color=colors.get(n),
                       label=f"{n}: p50 {v[len(v) // 2]:.1f}, p99 {v[min(len(v) - 1, math.ceil(0.99 * len(v)) - 1)]:.1f}, max {v[-1]:.1f} ms")
            for ax in (h, c):
                ax.set_xscale("log")
                ax.axvline(50, color="gray", ls="--", lw=1)
                ax.set_xlabel("HV warn call -> alert, ms (log)")
                ax.legend(loc="upper right" if ax is h else "lower right", fontsize=8)
            h.set_ylabel("alerts")
            h.set_title("latency histogram, idle vs loaded")
            c.axhline(0.99, color="gray", ls=":", lw=1)
            c.set_ylabel("fraction of alerts")
            c.set_title("latency CDF (dashed: 50 ms target)")
            fig.tight_layout()
            fig.savefig(os.path.join(d, "alert-latency-distributions.png"), dpi=110)
            plt.close(fig)
            made.append(("HV alert latency, idle vs loaded", "alert-latency-distributions.png"))
    return made


def report(d, thresholds_path, mode, require_targets, seconds):
    m = metrics_of(d)
    thresholds = read_json(thresholds_path)
    rows = check_thresholds(m, thresholds, mode)
    regressed = [r for r in rows if r[4] == "REGRESSED"]
    wire_check_failed = m.get("wire_thresholds_check_status", 0) != 0
    targets = []
    for label, metric, op, want in TARGETS:
        got = m.get(metric)
        targets.append((label, metric, got, op, want, None if got is None else holds(got, op, want)))

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0) / 1024 / 1024
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "?"
    dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
    load = open("/proc/loadavg").read().split()[:3]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    md = [f"# Benchmark report ({'CI gate' if mode == 'gate' else 'full set'})", "",
          f"- {now}, commit {commit}{' + local changes' if dirty else ''}; `Benchmarks/run.sh{' --gate' if mode == 'gate' else ''}` took {seconds} s",
          f"- machine: {os.cpu_count()} vCPU ({cpu}), {mem:.0f} GiB; load average at the end {' '.join(load)}",
          "- every speed is also a ratio to a peer measured in the same run; on a shared machine trust the ratios more than the rates", ""]

    # the main table: metric, ours, peer, ratio, target, met?
    def row(metric_label, ours, peer_label, peer, ratio, target, met):
        md.append(f"| {metric_label} | {ours} | {peer_label}{': ' + peer if peer != '-' else ''} | {ratio} | {target} | {met} |")
    md += ["| metric | ours | peer | ratio | target | met? |", "| --- | ---: | --- | ---: | --- | --- |"]
    tmap = {t[1]: t for t in targets}

    def met(metric):
        t = tmap.get(metric)
        if not t or t[5] is None:
            return "-", "not measured"
        return f"{t[3]} {t[4]:g}", "**yes**" if t[5] else "**NO**"

    if "decode.vs_python_loop" in m:
        mine = "decode.loop.loop_records_per_second" if "decode.loop.loop_records_per_second" in m else "decode.ours.process_records_per_second"
        n = int(m["decode.records"])
        row(f"decode, {n:,} tmgen records, records/s (loop time)", fmt(m[mine]), "Python protobuf+zstandard", fmt(m["decode.python.loop_records_per_second"]),
            f"{m['decode.vs_python_loop']:.2f}x", *met("decode.vs_python_loop"))
        row("decode vs zstd alone (the ceiling), records/s (loop time)", fmt(m[mine]), "C zstd loop", fmt(m["decode.c.loop_records_per_second"]),
            f"{m['decode.vs_ceiling_loop']:.2f}", *met("decode.vs_ceiling_loop"))
        if "decode.process_vs_python_process" in m:
            row("`telematics decode --count`, whole process, records/s", fmt(m["decode.ours.process_records_per_second"]), "Python, whole process",
                fmt(m["decode.python.process_records_per_second"]), f"{m['decode.process_vs_python_process']:.2f}x", "-", "(information)")
    if "mallocs_per_record" in m:
        row("mallocs per record, decode path (every wire benchmark)", fmt(m["mallocs_per_record"]), "-", "-", "-", *met("mallocs_per_record"))
    for kind in ["all"] + KINDS:
        k = f"instructions_per_record.{kind}"
        if k in m:
            row(f"instructions per record, {kind} (callgrind, sample.tmcap)", fmt(m[k]), "-", "-", "-", "-", "(regression threshold below)")
    for name in ["mixed"] + KINDS + ["plain", "zstd", "zstd-dictionary"]:
        k = f"wire.decode.{name}.records_per_second"
        if k in m:
            row(f"decode {name}, records/s (package-benchmark p90)", fmt(m[k]), "-", "-", "-", "-", "-")
    for name in ["no-dictionary", "dictionary"]:
        k = f"wire.zstd.{name}.records_per_second"
        if k in m:
            row(f"zstd alone, {name}, records/s (package-benchmark p90)", fmt(m[k]), "-", "-", "-", "-", "-")
    for store, label in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        k = f"pipeline.pipeline-{store}"
        if f"{k}.records_per_second" in m:
            row(f"pipeline to {label}, {int(m['pipeline.records']):,} simulated records, records/s", fmt(m[f"{k}.records_per_second"]),
                "kcat -C (consume)", fmt(m.get("pipeline.kcat.records_per_second")), f"{m[f'{k}.vs_kcat']:.2f}", *met(f"{k}.vs_kcat"))
            row(f"pipeline to {label}, peak memory", fmt(m.get(f"{k}.peak_memory_mib"), "mib"), "-", "-", "-", "-", "-")
    if "pipeline.produce-telematics.vs_kcat" in m:
        row(f"telematics produce (raw produce, {int(m['pipeline.records']):,} records, one topic), records/s",
            fmt(m["pipeline.produce-telematics.records_per_second"]), "kcat -P",
            fmt(m.get("pipeline.produce-kcat.records_per_second")), f"{m['pipeline.produce-telematics.vs_kcat']:.2f}", "-", "(information)")
    for phase in ("idle", "loaded"):
        if f"alerts.{phase}.p99_ms" in m:
            row(f"HV alert latency {phase}, p50 / p99 / max", " / ".join(fmt(m.get(f"alerts.{phase}.{p}"), "ms") for p in ("p50_ms", "p99_ms", "max_ms")),
                "-", "-", "-", *(met("alerts.loaded.p99_ms") if phase == "loaded" else ("-", "-")))
    if "alerts.loaded_vs_idle_p99" in m:
        row("HV alert p99, loaded / idle", "-", "-", "-", f"{m['alerts.loaded_vs_idle_p99']:.2f}", *met("alerts.loaded_vs_idle_p99"))
    elif "alerts.valid" in m:
        md.append("| HV alert p99, loaded / idle | - | - | - | <= 2 | run not valid (see alert-latency.md) |")

    md += ["", "## Regression thresholds (Benchmarks/thresholds.json)", "",
           "Gate thresholds do not depend on machine load; CI (`.ci/run`) enforces them with `Benchmarks/run.sh --gate`. "
           "The others are timings, enforced only by the full run on a quiet machine.", "",
           "| threshold | metric | measured | limit | gate (CI)? | status |", "| --- | --- | ---: | --- | --- | --- |"]
    for label, metric, got, text, status, gate in rows:
        md.append(f"| {label} | `{metric}` | {fmt(got, metric)} | {text} | {'yes' if gate else 'no (quiet machine)'} | {status} |")
    md.append(f"| mallocs per record, every wire benchmark | package-benchmark `thresholds check` against Benchmarks/Thresholds | - | p90 = 0 | yes | "
              + ("not run" if "wire_thresholds_check_status" not in m else ("REGRESSED" if wire_check_failed else "ok")) + " |")

    missed = [t for t in targets if t[5] is False]
    md += ["", "## Targets of issue #7", "",
           f"{sum(1 for t in targets if t[5])} met, {len(missed)} not met, {sum(1 for t in targets if t[5] is None)} not measured in this run."
           + ("" if not missed else " Not met: " + "; ".join(f"{t[0]} = {fmt(t[2], t[1])} (wanted {t[3]} {t[4]:g})" for t in missed) + ".")]
    if "decode.loop.loop_spread" in m:
        md += ["", "Spread of the loop rates over the decode runs (best vs worst): "
               + ", ".join(f"{t} {m[f'decode.{t}.loop_spread']:.1%}" for t in ("loop", "python", "c") if f"decode.{t}.loop_spread" in m) + "."]
    for plot in plots(d, m):
        md += ["", f"![{plot[0]}]({plot[1]})" if isinstance(plot, tuple) else plot]
    details = [f for f in ("decode.md", "pipeline.md", "alert-latency.md") if os.path.exists(os.path.join(d, f))]
    if details:
        md += ["", "Details of each step: " + ", ".join(f"[{f}]({f})" for f in details) + "."]
    text = "\n".join(md) + "\n"
    open(os.path.join(d, "REPORT.md"), "w").write(text)
    json.dump({"date": now, "commit": commit, "mode": mode, "metrics": m,
               "thresholds": [dict(zip(("label", "metric", "measured", "limit", "status", "gate"), r)) for r in rows],
               "targets": [dict(zip(("label", "metric", "measured", "op", "wanted", "met"), t)) for t in targets]},
              open(os.path.join(d, "report.json"), "w"), indent=1)
    print(text)
    failed = bool(regressed) or wire_check_failed
    for r in regressed:
        print(f"REGRESSED: {r[0]} = {fmt(r[2], r[1])}, limit {r[3]}", file=sys.stderr)
    if wire_check_failed:
        print("REGRESSED: package-benchmark thresholds check failed (mallocs per record); see Benchmarks/data/thresholds-check.txt", file=sys.stderr)
    if require_targets and missed:
        print(f"TARGETS NOT MET: {len(missed)}", file=sys.stderr)
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "wire" and len(sys.argv) == 4:
        wire(sys.argv[2], sys.argv[3])
    elif cmd == "instructions" and len(sys.argv) == 3:
        instructions(sys.argv[2])
    elif cmd == "report" and len(sys.argv) == 7:
        sys.exit(report(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "1", sys.argv[6]))
    else:
        sys.exit(__doc__)
