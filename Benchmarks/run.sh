#!/usr/bin/env bash
# The release benchmarks: runs the whole set, writes Benchmarks/report/REPORT.md
# (metric, ours, peer, ratio, target, met?) with PNG plots, and fails when a
# metric regressed past its threshold in Benchmarks/thresholds.json (and, for
# mallocs, Benchmarks/Thresholds/*.p90.json checked by package-benchmark).
#
#   Benchmarks/run.sh            full set, for a release manager on a quiet machine:
#                                wire benchmarks, instructions, decode vs peers on
#                                1,000,000 records, pipeline vs kcat (SQLite and
#                                PostgreSQL), HV alert latency idle and loaded;
#                                also checks the timing thresholds ("quiet" in
#                                thresholds.json)
#   Benchmarks/run.sh --gate     the CI gate: only what does not depend on machine
#                                load (mallocs per record, instructions per record
#                                under callgrind, decode ratios to the in-run peers
#                                on 100,000 records); builds only decode-loop and
#                                the WireDecode benchmark
#
# Options: --no-build (use the binaries already in $SCRATCH/release),
#   --skip LIST (any of wire,instructions,decode,pipeline,alerts),
#   --require-targets (also fail when one of the issue's targets is not met).
# Env: SCRATCH (build folder, default .build-bench; one release build serves
#   every step), RECORDS (decode capture size), RUNS (decode runs, default 3).
# Exit status: 0 all thresholds hold, 1 a threshold regressed (or with
#   --require-targets a target is missed), 2 bad usage or a step failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=full
SKIP_BUILD=0
SKIP=""
REQUIRE_TARGETS=0
export SCRATCH="${SCRATCH:-.build-bench}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --gate) MODE=gate; shift ;;
    --no-build) SKIP_BUILD=1; shift ;;
    --skip) SKIP="$2"; shift 2 ;;
    --require-targets) REQUIRE_TARGETS=1; shift ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

T0=$(date +%s)
log() { echo "== [$(( $(date +%s) - T0 )) s] $*" >&2; }
die() { echo "run.sh: error: $*" >&2; exit 2; }
skipped() { [[ ",$SKIP," == *",$1,"* ]]; }
export PATH="/opt/swift/usr/bin:$PATH"

REPORT="$ROOT/Benchmarks/report"
export DATA_DIR="${DATA_DIR:-$ROOT/Benchmarks/data}"
mkdir -p "$REPORT" "$DATA_DIR"
SHARED="$ROOT/../shared"
DICTS="$SHARED/vectors/dicts"
[[ -d "$DICTS" ]] || DICTS="$ROOT/Tests/Fixtures/vectors/dicts"
SAMPLE="$ROOT/Tests/Fixtures/vectors/sample.tmcap"
# Results of an earlier run must not be mistaken for this run's.
rm -f "$REPORT"/{wire,instructions,decode,pipeline,alert-latency}.json "$REPORT"/*.png "$REPORT/REPORT.md"
echo "{\"mode\":\"$MODE\",\"skipped\":\"$SKIP\",\"started_unix\":$T0}" > "$REPORT/run.json"

# ---- one release build for every step
products=(decode-loop)
[[ "$MODE" == full ]] && ! { skipped decode && skipped pipeline && skipped alerts; } && products+=(telematics)
if [[ "$SKIP_BUILD" == 0 ]]; then
  for product in "${products[@]}"; do
    log "building $product (release, $SCRATCH)"
    (cd "$ROOT" && swift build -c release --product "$product" --scratch-path "$SCRATCH" 2>&1 \
      | grep -vE '^\[[0-9]+/[0-9]+\] (Compiling|Emitting|Linking|Write|Generating)' >&2) || die "building $product failed"
  done
fi
for product in "${products[@]}"; do
  [[ -x "$ROOT/$SCRATCH/release/$product" ]] || die "no $ROOT/$SCRATCH/release/$product"
done
log "build done"

# ---- 1. wire benchmarks (package-benchmark): throughput and mallocs per record
# The plugin builds WireDecode in release in the same scratch path (the
# TelematicsWire objects are shared with decode-loop), runs it once into a
# baseline, checks the baseline's mallocs against Benchmarks/Thresholds, and
# the report reads the baseline's numbers.
BENCH=(swift package --scratch-path "$SCRATCH" --allow-writing-to-package-directory benchmark)
if ! skipped wire; then
  log "wire: package-benchmark WireDecode (decode per kind, zstd with and without dictionary)"
  (cd "$ROOT" && "${BENCH[@]}" baseline update runsh --target WireDecode --no-progress >&2) || die "the WireDecode benchmarks failed"
  log "wire: mallocs per record against Benchmarks/Thresholds (package-benchmark thresholds check)"
  set +e
  (cd "$ROOT" && "${BENCH[@]}" thresholds check runsh --target WireDecode --path Benchmarks/Thresholds --no-progress) > "$DATA_DIR/thresholds-check.txt" 2>&1
  check_status=$?
  set -e
  cat "$DATA_DIR/thresholds-check.txt" >&2
  # the baseline's p90 of every metric, one JSON file per benchmark, for the report
  rm -rf "$DATA_DIR/wire-p90"
  (cd "$ROOT" && "${BENCH[@]}" thresholds update runsh --target WireDecode --path "$DATA_DIR/wire-p90" --no-progress >&2) \
    || die "could not export the WireDecode results"
  python3 "$ROOT/Benchmarks/report.py" wire "$DATA_DIR/wire-p90" "$check_status" > "$REPORT/wire.json" \
    || die "could not read the WireDecode results"
fi

# ---- 2. instructions per record (callgrind: exact, whatever the load)
if ! skipped instructions; then
  command -v valgrind >/dev/null || die "valgrind is not installed (Deploy/setup.sh installs it)"
  log "instructions: callgrind on decode-loop over $(basename "$SAMPLE"), all records and per kind"
  : > "$DATA_DIR/instructions.jsonl"
  for kind in all teleservice_call hv_warn_call rtti_probe charge_session consent_state; do
    args=("$SAMPLE" --dict-dir "$ROOT/Tests/Fixtures/vectors/dicts")
    [[ "$kind" != all ]] && args+=(--kind "$kind")
    out="$DATA_DIR/callgrind-$kind.out"
    SWIFT_DETERMINISTIC_HASHING=1 valgrind --tool=callgrind --toggle-collect='*timedPass*' \
      --callgrind-out-file="$out" "$ROOT/$SCRATCH/release/decode-loop" "${args[@]}" > "$DATA_DIR/callgrind-$kind.json" 2> "$DATA_DIR/callgrind-$kind.err" \
      || die "callgrind ($kind) failed: $(tail -3 "$DATA_DIR/callgrind-$kind.err")"
    ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$out")
    [[ -n "$ir" && "$ir" != 0 ]] || die "callgrind counted no instructions in timedPass ($out): was it renamed or inlined?"
    echo "{\"kind\":\"$kind\",\"instructions\":$ir,\"run\":$(cat "$DATA_DIR/callgrind-$kind.json")}" >> "$DATA_DIR/instructions.jsonl"
    log "instructions: $kind: $ir in the decode loop"
  done
  python3 "$ROOT/Benchmarks/report.py" instructions "$DATA_DIR/instructions.jsonl" > "$REPORT/instructions.json"
fi

# ---- 3. decode vs the Python peer and the zstd-only ceiling
if ! skipped decode; then
  if [[ "$MODE" == gate ]]; then
    log "decode: decode-loop vs python and the C ceiling, ${RECORDS:-100000} records"
    RECORDS="${RECORDS:-100000}" TOOLS=loop,python,c CEILING_REPEAT=5 LOOP_REPEAT=5 "$ROOT/Benchmarks/decode-vs-peers.sh" --no-build >&2 \
      || die "decode-vs-peers.sh failed"
  else
    log "decode: telematics decode and decode-loop vs python and the C ceiling, ${RECORDS:-1000000} records"
    RECORDS="${RECORDS:-1000000}" "$ROOT/Benchmarks/decode-vs-peers.sh" --no-build >&2 || die "decode-vs-peers.sh failed"
  fi
fi

# ---- 4. pipeline vs kcat, 5. alert latency: timing on the whole system (full mode only)
if [[ "$MODE" == full ]] && ! skipped pipeline; then
  log "pipeline: telematics run (SQLite, PostgreSQL) vs kcat"
  "$ROOT/Benchmarks/pipeline-vs-kcat.sh" --postgres --no-build >&2 || die "pipeline-vs-kcat.sh failed"
fi
if [[ "$MODE" == full ]] && ! skipped alerts; then
  log "alerts: HV alert latency, idle and under a bulk backlog"
  "$ROOT/Benchmarks/alert-latency.sh" --no-build >&2 || die "alert-latency.sh failed"
fi

# ---- the report, the thresholds and the targets
log "report"
set +e
python3 "$ROOT/Benchmarks/report.py" report "$REPORT" "$ROOT/Benchmarks/thresholds.json" "$MODE" "$REQUIRE_TARGETS" "$(( $(date +%s) - T0 ))"
status=$?
set -e
log "done: $REPORT/REPORT.md (exit $status)"
exit "$status"
