#!/usr/bin/env python3
"""Verdict and plot of a soak CSV (Reliability/soak.sh).

Compares the first and the last third of the run: RSS, open fds and consumer
lag must not grow, and the last third must keep up with the simulated rate.
Writes a PNG next to the CSV (matplotlib) and prints a Markdown summary; exits
1 when a check fails.
"""
import argparse
import csv
import statistics
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--rate", type=float, required=True, help="simulated records/s")
    ap.add_argument("--run-status", type=int, default=0)
    ap.add_argument("--rss-growth", type=float, default=0.10, help="allowed RSS growth, last third over first")
    args = ap.parse_args()

    with open(args.csv) as f:
        rows = [r for r in csv.DictReader(f) if r["records_per_s"]]
    if len(rows) < 6:
        print(f"soak: only {len(rows)} samples in {args.csv}; nothing to judge", file=sys.stderr)
        return 1
    t = [float(r["elapsed_s"]) for r in rows]
    rate = [float(r["records_per_s"]) for r in rows]
    lag = [int(r["lag"]) for r in rows]
    rss = [int(r["rss_kib"]) / 1024 for r in rows]
    fds = [int(r["fds"]) for r in rows]
    # The broker's RSS (a separate process; it keeps every record, so it grows): context only.
    broker = [int(r.get("broker_rss_kib") or 0) / 1024 for r in rows]
    n = len(rows) // 3
    first, last = slice(0, n), slice(len(rows) - n, len(rows))

    def mean(xs, part):
        return statistics.fmean(xs[part])

    checks = []
    rss_first, rss_last = mean(rss, first), mean(rss, last)
    checks.append(("RSS (MiB, mean)", f"{rss_first:.1f}", f"{rss_last:.1f}",
                   rss_last <= rss_first * (1 + args.rss_growth), f"last <= first x {1 + args.rss_growth:.2f}"))
    fd_first, fd_last = max(fds[first]), max(fds[last])
    checks.append(("open fds (max)", str(fd_first), str(fd_last), fd_last <= fd_first + 4, "last <= first + 4"))
    # Lag by its mean: single samples spike whenever the shared machine is busy.
    lag_first, lag_last = mean(lag, first), mean(lag, last)
    lag_bound = max(2 * lag_first, 5 * args.rate)
    checks.append(("consumer lag (mean)", f"{lag_first:.0f}", f"{lag_last:.0f}", lag_last <= lag_bound,
                   f"last <= max(2 x first, 5 s of records = {int(5 * args.rate)})"))
    checks.append(("consumer lag (max, not judged)", str(max(lag[first])), str(max(lag[last])), None, "-"))
    rate_first, rate_last = mean(rate, first), mean(rate, last)
    checks.append(("records/s (mean)", f"{rate_first:.0f}", f"{rate_last:.0f}", rate_last >= 0.9 * args.rate,
                   f"last >= 0.9 x {args.rate:.0f}"))
    checks.append(("run exit status", "", str(args.run_status), args.run_status == 0, "0"))

    minutes = (t[-1] - t[0]) / 60
    total = int(rows[-1]["records"])
    print(f"Soak: {minutes:.1f} min sampled, {len(rows)} samples, {total:,} records committed, "
          f"simulated rate {args.rate:.0f}/s ({args.csv})\n")
    print("| measure | first third | last third | holds | rule |")
    print("| --- | ---: | ---: | --- | --- |")
    for name, a, b, ok, rule in checks:
        print(f"| {name} | {a} | {b} | {'-' if ok is None else 'yes' if ok else 'NO'} | {rule} |")
    verdict = all(ok is not False for *_, ok, _ in checks)
    print(f"\nverdict: {'no growth' if verdict else 'FAILED'}")
    if any(broker):
        print(f"(the broker process, not judged: RSS {broker[0]:.0f} -> {broker[-1]:.0f} MiB; it keeps every record)")

    png = args.csv.rsplit(".", 1)[0] + ".png"
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("soak: matplotlib is not installed (apt-get install python3-matplotlib); no plot", file=sys.stderr)
    else:
        m = [x / 60 for x in t]
        fig, axes = plt.subplots(4, 1, figsize=(10, 10), sharex=True)
        for ax, ys, label in zip(axes, (rate, lag, rss, fds),
                                 ("records/s committed", "consumer lag (records)", "RSS (MiB)", "open fds")):
            ax.plot(m, ys, linewidth=0.8, label="telematics run")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            for part in (first, last):
                ax.axvspan(m[part][0], m[part][-1], alpha=0.06, color="grey")
        axes[0].axhline(args.rate, color="red", linewidth=0.6, linestyle="--")
        if any(broker):
            axes[2].plot(m, broker, linewidth=0.8, color="grey", linestyle=":", label="broker (keeps every record)")
            axes[2].legend(loc="upper left", fontsize=8)
        axes[-1].set_xlabel("minutes")
        fig.suptitle(f"telematics soak: {args.rate:.0f} records/s simulated, PostgreSQL stores "
                     f"({'no growth' if verdict else 'FAILED'})")
        fig.tight_layout()
        fig.savefig(png, dpi=100)
        print(f"plot: {png}")
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
