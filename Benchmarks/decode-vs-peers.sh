#!/usr/bin/env bash
# Measures our decoder against its peers in one run, on one tmgen capture:
#   ours    `telematics decode --count` (the whole process)
#   loop    Benchmarks/DecodeLoop (`decode-loop`): the same decoder, capture
#           in memory, one timed loop (timed like the C peer)
#   python  Benchmarks/peers/python_decode.py (protobuf upb + python-zstandard)
#   c       Benchmarks/peers/zstd_ceiling.c   (zstd decompression only: the ceiling)
# and writes Benchmarks/report/decode.md and decode.json.
#
#   Benchmarks/decode-vs-peers.sh [--records N] [--vehicles V] [--runs R] [--data-dir DIR] [--tools LIST]
#   (or env RECORDS, VEHICLES, RUNS, DATA_DIR, TOOLS; defaults 1000000, 20000, 3,
#    Benchmarks/data, ours,loop,python,c; SCRATCH: the build folder, .build-bench)
#   --no-build (SKIP_BUILD=1): measure the binaries already in $SCRATCH/release
#   --tools loop,python,c: leave `telematics` out (the CI gate builds only decode-loop)
#   CEILING_REPEAT / LOOP_REPEAT (default 1): passes inside one C / decode-loop
#   process; their loop time is the best pass (the gate uses 5: a pass that
#   a neighbour slowed down does not count)
#
# Every tool is timed twice: the wall clock of its whole process, and its own
# loop time (decoding only: start-up and file reading left out). The ratios
# of the targets compare loop times, like for like: loop/python >= 8 and
# loop/c >= 0.6. A missed target is reported, not an error; a failing tool
# or a wrong record count is.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RECORDS="${RECORDS:-1000000}"
VEHICLES="${VEHICLES:-20000}"
RUNS="${RUNS:-3}"
DATA_DIR="${DATA_DIR:-$ROOT/Benchmarks/data}"
CEILING_REPEAT="${CEILING_REPEAT:-1}" # passes inside one C run (1: its wall clock is one pass, like the others)
LOOP_REPEAT="${LOOP_REPEAT:-$CEILING_REPEAT}" # passes inside one decode-loop run; best-of-N is what noise cannot inflate
SKIP_BUILD="${SKIP_BUILD:-0}"
TOOLS="${TOOLS:-ours,loop,python,c}"
SCRATCH="${SCRATCH:-.build-bench}"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --records) RECORDS="$2"; shift 2 ;;
    --vehicles) VEHICLES="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --data-dir) DATA_DIR="$2"; shift 2 ;;
    --no-build) SKIP_BUILD=1; shift ;;
    --tools) TOOLS="$2"; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done

log() { echo "== $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

mkdir -p "$DATA_DIR" "$ROOT/Benchmarks/report"
DATA_DIR="$(cd "$DATA_DIR" && pwd)"
REPORT_DIR="$ROOT/Benchmarks/report"
# The shared checkout beside the project is what CI has; the fixtures are a fallback.
SHARED="$ROOT/../shared"
DICTS="$SHARED/vectors/dicts"
[[ -d "$DICTS" ]] || DICTS="$ROOT/Tests/Fixtures/vectors/dicts"
TMGEN="${TMGEN:-$SHARED/tools/tmgen.py}"
[[ -f "$TMGEN" ]] || TMGEN="$ROOT/Tests/Fixtures/tools/tmgen.py"  # a clean clone (CI) has the fixtures' copy
CAPTURE="$DATA_DIR/big-$RECORDS.tmcap"
BIN="$ROOT/$SCRATCH/release/telematics"
LOOP="$ROOT/$SCRATCH/release/decode-loop"
CEILING="$DATA_DIR/zstd_ceiling"
has_tool() { [[ ",$TOOLS," == *",$1,"* ]]; }
has_tool python && has_tool c && { has_tool ours || has_tool loop; } || die "--tools needs python, c and ours or loop"

# A separate scratch path keeps this build from fighting with the developer's .build.
products=()
has_tool ours && products+=(telematics)
has_tool loop && products+=(decode-loop)
for product in "${products[@]}"; do
  if [[ "$SKIP_BUILD" == 1 ]]; then
    [[ -x "$ROOT/$SCRATCH/release/$product" ]] || die "--no-build but no $ROOT/$SCRATCH/release/$product"
  else
    log "building $product (release, $SCRATCH)"
    (cd "$ROOT" && swift build -c release --product "$product" --scratch-path "$SCRATCH" >&2)
  fi
done
log "building zstd ceiling"
cc -O2 -o "$CEILING" "$ROOT/Benchmarks/peers/zstd_ceiling.c" -lzstd

if [[ ! -f "$CAPTURE" ]]; then
  [[ -f "$TMGEN" ]] || die "no capture $CAPTURE and no generator $TMGEN"
  log "generating $CAPTURE ($RECORDS records, $VEHICLES vehicles)"
  t0=$(date +%s.%N)
  # write to a temporary name so an interrupted run never leaves a short capture behind
  python3 "$TMGEN" capture --records "$RECORDS" --vehicles "$VEHICLES" \
    --dict-dir "$DICTS" --out "$CAPTURE.tmp"
  mv "$CAPTURE.tmp" "$CAPTURE"
  log "generated in $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s"
fi

# One JSON line per run: {"tool","run","wall_s","out":<the tool's own line>}.
RAW="$DATA_DIR/runs-$RECORDS.jsonl"
: > "$RAW"

run_tool() { # tool run command...
  local tool="$1" run="$2" t0 t1 out
  shift 2
  t0=$(date +%s.%N)
  out=$("$@") || die "$tool failed (run $run): $*"
  t1=$(date +%s.%N)
  out=$(tail -n 1 <<<"$out")
  echo "{\"tool\":\"$tool\",\"run\":$run,\"wall_s\":$(python3 -c "print($t1 - $t0)"),\"out\":$out}" >> "$RAW"
  log "$tool run $run: $out"
}

# Interleaved, so a noisy neighbour hits every tool alike.
for ((run = 1; run <= RUNS; run++)); do
  has_tool ours && run_tool ours "$run" "$BIN" decode --count --dict-dir "$DICTS" "$CAPTURE"
  has_tool loop && run_tool loop "$run" "$LOOP" "$CAPTURE" --dict-dir "$DICTS" --repeat "$LOOP_REPEAT"
  run_tool python "$run" python3 "$ROOT/Benchmarks/peers/python_decode.py" "$CAPTURE" --dict-dir "$DICTS"
  run_tool c "$run" "$CEILING" "$CAPTURE" --dict-dir "$DICTS" --repeat "$CEILING_REPEAT"
done

# Checks, best-of, ratios and the report. Every tool is timed two ways: the
# wall clock of the whole process (start-up and file reading included, the
# capture in the page cache), and its own loop time (decoding only). The
# targets compare loop times: that is what the C ceiling measures.
python3 - "$RAW" "$RECORDS" "$REPORT_DIR" "$CAPTURE" "$ROOT" <<'EOF'
import datetime, json, os, subprocess, sys
raw, n, report_dir, capture, root = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
runs = [json.loads(l) for l in open(raw)]
bad = []
for r in runs:
    o = r["out"]
    if o.get("records") != n:
        bad.append(f'{r["tool"]} run {r["run"]}: records {o.get("records")} != {n}')
    if r["tool"] != "c" and o["valid"] + o["rejected"] != n:
        bad.append(f'{r["tool"]} run {r["run"]}: valid+rejected != {n}')
    r["rps"] = n * o.get("repeat", 1) / r["wall_s"]  # whole process: every pass it made
    r["loop_rps"] = o.get("records_per_second")  # None for `telematics decode` (no loop time of its own)
if bad:
    sys.exit("error: " + "; ".join(bad))

labels = {"ours": "telematics decode --count", "loop": "decode-loop (our decoder, capture in memory)",
          "python": "Python: protobuf upb + python-zstandard", "c": "C: zstd decompression only, the ceiling"}
tools = [t for t in labels if any(r["tool"] == t for r in runs)]
best = {t: max(r["rps"] for r in runs if r["tool"] == t) for t in tools}
loop = {t: max(r["loop_rps"] for r in runs if r["tool"] == t) for t in tools if all(r["loop_rps"] for r in runs if r["tool"] == t)}
# The spread of each tool's loop rate over the runs: (best - worst) / best.
spread = {t: (max(v) - min(v)) / max(v) for t in loop for v in [[r["loop_rps"] for r in runs if r["tool"] == t]]}
valid = {t: sorted({r["out"]["valid"] for r in runs if r["tool"] == t}) for t in tools if t != "c"}
mine = "loop" if "loop" in loop else "ours"
mine_rate = loop.get(mine, best[mine])
ratios = {"vs_python_loop": mine_rate / loop["python"], "vs_ceiling_loop": mine_rate / loop["c"]}
if "ours" in best:
    ratios["process_vs_python_process"] = best["ours"] / best["python"]
    ratios["process_vs_ceiling_process"] = best["ours"] / best["c"]
    ratios["process_vs_ceiling_loop"] = best["ours"] / loop["c"]
targets = [("decode / python (loop times)", ratios["vs_python_loop"], 8.0),
           ("decode / zstd-only ceiling (loop times)", ratios["vs_ceiling_loop"], 0.6)]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                        capture_output=True, text=True).stdout.strip() or "unknown"
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
nruns = max(r["run"] for r in runs)

md = [f"# decode vs peers", "",
      f"- date: {now}, commit {commit} (working tree may differ)",
      f"- machine: {os.cpu_count()} CPUs (nproc), {cpu}",
      f"- capture: {os.path.basename(capture)}, {n} records, {os.path.getsize(capture) / 1e6:.1f} MB",
      f"- runs per tool: {nruns}, interleaved; best (highest) records/s counts", "",
      "| tool | whole process, records/s (best) | all runs | loop time, records/s (best) | loop spread over runs | ours (loop) / tool (loop) |",
      "| --- | ---: | --- | ---: | ---: | ---: |"]
for t in tools:
    all_runs = ", ".join(f'{r["rps"]:,.0f}' for r in runs if r["tool"] == t)
    lp = f"{loop[t]:,.0f}" if t in loop else "-"
    sp = f"{spread[t]:.1%}" if t in spread else "-"
    rt = f"{mine_rate / loop[t]:.2f}" if t in loop else "-"
    md.append(f"| {labels[t]} | {best[t]:,.0f} | {all_runs} | {lp} | {sp} | {rt} |")
md += ["", "| target | measured | wanted | result |", "| --- | ---: | ---: | --- |"]
for name, got, want in targets:
    md.append(f"| {name} | {got:.2f} | >= {want} | {'PASS' if got >= want else 'FAIL'} |")
if "ours" in best:
    md += ["", f"Whole processes: telematics decode / python {ratios['process_vs_python_process']:.2f}, "
           f"/ C {ratios['process_vs_ceiling_process']:.2f}; telematics decode (whole process) / C loop {ratios['process_vs_ceiling_loop']:.2f}."]
vs = {tuple(v) for v in valid.values()}
md += ["", "valid records: " + ", ".join(f"{t} {v}" for t, v in valid.items())
       + ("" if len(vs) == 1 else " (they differ: check the validators)")]
text = "\n".join(md) + "\n"
open(os.path.join(report_dir, "decode.md"), "w").write(text)
json.dump({"date": now, "commit": commit, "nproc": os.cpu_count(), "cpu": cpu, "records": n,
           "capture": capture, "best_records_per_second": best, "loop_records_per_second": loop,
           "loop_spread": spread, "ratios": ratios,
           "targets": {k: {"measured": g, "wanted": w, "pass": g >= w} for k, g, w in targets},
           "runs": runs}, open(os.path.join(report_dir, "decode.json"), "w"), indent=1)
print(text)
for name, got, want in targets:
    if got < want:
        print(f"TARGET MISSED: {name} = {got:.2f}, wanted >= {want}")
EOF
