#!/usr/bin/env bash
# Measures the pipeline end to end against kcat reading the same topics, in
# one run: a `telematics broker` on loopback is loaded with a capture, then
#   kcat      -C in a fresh group, every ingress topic to the end (the peer)
#   pipeline  `telematics run --brokers ... --sqlite` (and --postgres with --postgres)
# each in a fresh consumer group, then raw produce of the same records,
#   telematics produce --topic   against   kcat -P (lz4, linger 5 ms, idempotent)
# interleaved over --runs. Writes
# Benchmarks/report/pipeline.md and pipeline.json (git-ignored).
#
#   Benchmarks/pipeline-vs-kcat.sh [--records N] [--runs R] [--postgres] [--no-build] [--foundation]
#   (env RECORDS default 300000, RUNS default 1, DATA_DIR default Benchmarks/data,
#    SCRATCH: the build folder, default .build-bench)
# --foundation uses the foundation issue's capture instead of simulated
# records: `tmgen.py capture --records 1000000 --vehicles 20000` (made once,
# as decode-vs-peers.sh makes it), compressed partly with dictionary 4242.
# librdkafka's mock cluster keeps about 5 MiB per partition and drops older
# records, so the broker gets enough partitions per topic for the largest
# topic (RTTI, up to 80% of the bytes) to stay under 3.5 MiB each.
#
# Rates: kcat from its wall clock (a plain consumer per topic, start-up
# included); the pipeline
# from its own summary, first record polled to last commit (group join and
# the idle wait of --exit-when-idle excluded). Peak memory from /usr/bin/time.
# Targets (issue 4): pipeline >= 50% of kcat with SQLite, >= 30% with PostgreSQL.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RECORDS="${RECORDS:-300000}"
RUNS="${RUNS:-1}"
DATA_DIR="${DATA_DIR:-$ROOT/Benchmarks/data}"
POSTGRES=0
SKIP_BUILD=0
FOUNDATION=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --records) RECORDS="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --postgres) POSTGRES=1; shift ;;
    --no-build) SKIP_BUILD=1; shift ;;
    --foundation) FOUNDATION=1; RECORDS=1000000; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
log() { echo "== $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

mkdir -p "$DATA_DIR" "$ROOT/Benchmarks/report"
SCRATCH="${SCRATCH:-.build-bench}"
BIN="$ROOT/$SCRATCH/release/telematics"
if [[ "$SKIP_BUILD" == 0 ]]; then
  log "building telematics (release, $SCRATCH)"
  (cd "$ROOT" && swift build -c release --product telematics --scratch-path "$SCRATCH" >&2)
fi
[[ -x "$BIN" ]] || die "no $BIN"
command -v kcat >/dev/null || die "kcat is not installed (Deploy/setup.sh installs it)"

SHARED="$ROOT/../shared"
DICTS="$SHARED/vectors/dicts"
[[ -d "$DICTS" ]] || DICTS="$ROOT/Tests/Fixtures/vectors/dicts"
if [[ "$FOUNDATION" == 1 ]]; then
  CAPTURE="$DATA_DIR/big-$RECORDS.tmcap"
  TMGEN="${TMGEN:-$SHARED/tools/tmgen.py}"
  [[ -f "$TMGEN" ]] || TMGEN="$ROOT/Tests/Fixtures/tools/tmgen.py"
  if [[ ! -f "$CAPTURE" ]]; then
    log "generating $RECORDS records with tmgen.py into $CAPTURE"
    python3 "$TMGEN" capture --records "$RECORDS" --vehicles 20000 --dict-dir "$DICTS" --out "$CAPTURE.tmp" >&2
    mv "$CAPTURE.tmp" "$CAPTURE"
  fi
else
  CAPTURE="$DATA_DIR/pipeline-$RECORDS.tmcap"
fi
if [[ ! -f "$CAPTURE" ]]; then
  log "simulating $RECORDS records into $CAPTURE"
  "$BIN" simulate --vehicles 20000 --records "$RECORDS" --rate 100000000 --seed 7 --out "$CAPTURE.tmp" >&2
  mv "$CAPTURE.tmp" "$CAPTURE"
fi

CAPTURE_BYTES=$(stat -c %s "$CAPTURE")
PARTITIONS=$(( CAPTURE_BYTES * 8 / 10 / (3584 * 1024) + 1 ))
(( PARTITIONS < 12 )) && PARTITIONS=12

WORK="$(mktemp -d)"
cleanup() {
  [[ -n "${BROKER_PID:-}" ]] && kill "$BROKER_PID" 2>/dev/null || true
  [[ -n "${PG_DIR:-}" ]] && runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$PG_DIR" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log "starting telematics broker"
"$BIN" broker --brokers 1 --partitions "$PARTITIONS" > "$WORK/broker.out" 2>/dev/null &
BROKER_PID=$!
for _ in $(seq 50); do [[ -s "$WORK/broker.out" ]] && break; sleep 0.1; done
BOOTSTRAP="$(head -n 1 "$WORK/broker.out")"
[[ -n "$BOOTSTRAP" ]] || die "the broker printed no bootstrap servers"
log "loading $CAPTURE into $BOOTSTRAP"
"$BIN" produce --brokers "$BOOTSTRAP" "$CAPTURE" >&2
TOPICS=(telematics.teleservice telematics.hv-warn telematics.rtti telematics.charging telematics.consent)

PG_URL=""
if [[ "$POSTGRES" == 1 ]]; then
  PG_DIR="$WORK/pg"; mkdir -p "$PG_DIR"; chown postgres "$WORK" "$PG_DIR"
  PORT=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
  runuser -u postgres -- /usr/lib/postgresql/15/bin/initdb -D "$PG_DIR" -A trust -U telematics >/dev/null
  runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$PG_DIR" -o "-p $PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=on" -l "$PG_DIR/log" start >/dev/null
  PG_URL="postgres://telematics@127.0.0.1:$PORT/postgres"
fi

# kcat -P reads KEY<key delimiter>VALUE<delimiter>...: delimiters of 16 random
# bytes, checked to occur in no record, so every binary record arrives whole.
# kcat takes them as raw bytes (its \xNN escapes stand for one byte only), so
# they hold no NUL, newline or backslash.
PRODUCE_TOPIC=traffic.probes
python3 - "$CAPTURE" "$WORK/kcat-produce.in" "$WORK/kcat.key-delimiter" "$WORK/kcat.delimiter" <<'PY'
import random, struct, sys
data = open(sys.argv[1], "rb").read()
records, i = [], 0
while i < len(data):
    (n,) = struct.unpack_from("<I", data, i)
    records.append(data[i + 4:i + 4 + n])
    i += 4 + n
allowed = [b for b in range(1, 256) if b not in (0x0A, 0x5C)]
while True:
    key_delimiter, delimiter = (bytes(random.choice(allowed) for _ in range(16)) for _ in range(2))
    if not any(key_delimiter in r or delimiter in r for r in records):
        break
with open(sys.argv[2], "wb") as out:
    for r in records:
        out.write(r[24:41] + key_delimiter + r + delimiter)  # key: the envelope's VIN
open(sys.argv[3], "wb").write(key_delimiter)
open(sys.argv[4], "wb").write(delimiter)
PY
KCAT_KEY_DELIMITER="$(cat "$WORK/kcat.key-delimiter")"
KCAT_DELIMITER="$(cat "$WORK/kcat.delimiter")"
RAW="$DATA_DIR/pipeline-runs-$(basename "$CAPTURE" .tmcap).jsonl"; : > "$RAW"  # kept, so a failed summary loses no run
for ((run = 1; run <= RUNS; run++)); do
  log "kcat run $run"
  t0=$(date +%s.%N)
  # A plain consumer per topic, every partition, to its end (-e); its CPU
  # time (user + system, every kcat process) from /usr/bin/time.
  /usr/bin/time -f "%U %S" -o "$WORK/kcat.time" bash -c '
    for topic in "${@:2}"; do kcat -b "$1" -C -t "$topic" -o beginning -e -q -f "%o\n" 2>/dev/null; done' kcat "$BOOTSTRAP" "${TOPICS[@]}" \
    > "$WORK/kcat.offsets"
  t1=$(date +%s.%N)
  n=$(wc -l < "$WORK/kcat.offsets")
  cpu=$(awk '{print $1 + $2}' "$WORK/kcat.time")
  echo "{\"tool\":\"kcat\",\"run\":$run,\"records\":$n,\"seconds\":$(python3 -c "print($t1-$t0)"),\"peak_kb\":null,\"cpu_seconds\":$cpu}" >> "$RAW"
  stores=("sqlite")
  [[ "$POSTGRES" == 1 ]] && stores+=("postgres")
  for store in "${stores[@]}"; do
    log "pipeline ($store) run $run"
    args=(run --brokers "$BOOTSTRAP" --group "bench-$store-$run-$RANDOM" --secrets "$WORK/secrets" --exit-when-idle 3 --log-level error --console off --dict-dir "$DICTS")
    if [[ "$store" == sqlite ]]; then args+=(--sqlite "$WORK/sqlite-$run"); else args+=(--postgres "$PG_URL"); fi
    /usr/bin/time -f "%U %S %M" -o "$WORK/time" "$BIN" "${args[@]}" 2> "$WORK/run.err" || die "pipeline ($store) failed: $(tail -5 "$WORK/run.err")"
    python3 - "$WORK/run.err" "$WORK/time" "$store" "$run" >> "$RAW" <<'PY'
import json, re, sys
err, store, run = open(sys.argv[1]).read(), sys.argv[3], int(sys.argv[4])
user, system, peak = open(sys.argv[2]).read().split()[-3:]
m = re.search(r"run: ([\d,]+) records committed in \d+ batches, ([\d,]+) records/s", err)
if not m:
    sys.exit("no summary in the pipeline's output:\n" + err[-2000:])
records, rate = int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))
print(json.dumps({"tool": "pipeline-" + store, "run": run, "records": records, "seconds": records / rate, "peak_kb": int(peak),
                  "cpu_seconds": float(user) + float(system)}))
PY
    if [[ "$store" == postgres ]]; then psql "$PG_URL" -q -c "DROP SCHEMA public CASCADE; CREATE SCHEMA public;" >/dev/null; fi
  done
  # Raw produce, the other kcat peer: the same records (key = VIN) into one
  # topic of the broker that no one reads, lz4 and linger 5 ms as our
  # producer, idempotent both; wall clock of each process, start-up included.
  log "produce runs $run: telematics produce, kcat -P"
  t0=$(date +%s.%N)
  "$BIN" produce --brokers "$BOOTSTRAP" --topic "$PRODUCE_TOPIC" --compression lz4 "$CAPTURE" >/dev/null 2>&1 || die "telematics produce failed"
  t1=$(date +%s.%N)
  echo "{\"tool\":\"produce-telematics\",\"run\":$run,\"records\":$RECORDS,\"seconds\":$(python3 -c "print($t1-$t0)"),\"peak_kb\":null}" >> "$RAW"
  t0=$(date +%s.%N)
  kcat -P -b "$BOOTSTRAP" -t "$PRODUCE_TOPIC" -K "$KCAT_KEY_DELIMITER" -D "$KCAT_DELIMITER" -z lz4 \
    -X linger.ms=5 -X enable.idempotence=true -l "$WORK/kcat-produce.in" 2>/dev/null || die "kcat -P failed"
  t1=$(date +%s.%N)
  echo "{\"tool\":\"produce-kcat\",\"run\":$run,\"records\":$RECORDS,\"seconds\":$(python3 -c "print($t1-$t0)"),\"peak_kb\":null}" >> "$RAW"
done

python3 - "$RAW" "$RECORDS" "$ROOT/Benchmarks/report" "$CAPTURE" "$PARTITIONS" <<'EOF2'
import datetime, json, os, sys
raw, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
runs = [json.loads(l) for l in open(raw)]
for r in runs:
    if r["records"] != n:
        sys.exit(f'error: {r["tool"]} run {r["run"]} saw {r["records"]} records, expected {n}')
    r["rps"] = r["records"] / r["seconds"]
tools = sorted({r["tool"] for r in runs}, key=lambda t: (t != "kcat", t))
best = {t: max(r["rps"] for r in runs if r["tool"] == t) for t in tools}
peak = {t: max((r["peak_kb"] or 0) for r in runs if r["tool"] == t) for t in tools}
# CPU time (user + system) per record, the lowest run: unlike the rate, it
# hardly moves with what else the shared machine runs.
cpu_us = {t: min(r["cpu_seconds"] for r in runs if r["tool"] == t) / n * 1e6 for t in tools
          if all(r.get("cpu_seconds") is not None for r in runs if r["tool"] == t)}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
md = ["# pipeline vs kcat", "", f"- date: {now}; machine: {os.cpu_count()} CPUs, {cpu}", f"- {n} records of {os.path.basename(sys.argv[4])} on a `telematics broker` (mock cluster, {sys.argv[5]} partitions per topic)", "",
      "| tool | records/s (best) | ratio to its kcat peer | peak memory | CPU us per record (user + system) |",
      "| --- | ---: | ---: | ---: | ---: |"]
peer = lambda t: "produce-kcat" if t.startswith("produce-") else "kcat"
for t in tools:
    ratio = best[t] / best[peer(t)] if peer(t) in best else float("nan")
    memory = f"{peak[t] / 1024:.0f} MiB" if peak[t] else "-"
    md.append(f"| {t} | {best[t]:,.0f} | {ratio:.2f} (to {peer(t)}) | {memory} | {cpu_us[t]:.1f} |" if t in cpu_us else
              f"| {t} | {best[t]:,.0f} | {ratio:.2f} (to {peer(t)}) | {memory} | - |")
md += ["", "CPU per record counts the measured process and its children only: not the broker's, nor the PostgreSQL server's.",
       "It includes the pipeline's start-up and its idle wait of --exit-when-idle; kcat's start-up too."]
targets = {"pipeline-sqlite": 0.5, "pipeline-postgres": 0.3}
md += ["", "| target | measured | wanted | result |", "| --- | ---: | ---: | --- |"]
for t, want in targets.items():
    if t in best:
        got = best[t] / best["kcat"]
        md.append(f"| {t} / kcat | {got:.2f} | >= {want} | {'PASS' if got >= want else 'FAIL'} |")
text = "\n".join(md) + "\n"
open(os.path.join(out, "pipeline.md"), "w").write(text)
json.dump({"date": now, "records": n, "runs": runs, "best_records_per_second": best, "cpu_us_per_record": cpu_us}, open(os.path.join(out, "pipeline.json"), "w"), indent=1)
print(text)
EOF2
