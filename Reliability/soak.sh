#!/usr/bin/env bash
# Soak: `telematics run` consuming a simulated fleet at a steady rate, the
# stores on a throwaway PostgreSQL server, for a long time (default 30
# minutes). Three processes: `telematics broker` (the embedded Kafka-protocol
# cluster), `telematics simulate` (the fleet) and `telematics run --brokers`
# (the pipeline), so that the pipeline's memory is measured alone: the
# embedded cluster keeps every record produced in memory (it has no
# retention), which inside `run` would read as a leak of the pipeline.
# Every few seconds it samples, from the pipeline's /metrics and /proc/PID:
# records committed, throughput, consumer lag, RSS and open file descriptors
# (and the broker's RSS), into Reliability/report/soak-<stamp>.csv; at the end
# it plots them (soak-<stamp>.png, matplotlib) and gives a verdict: no growth
# of RSS, fds or lag between the first and the last third, and throughput in
# the last third at the simulated rate.
#
#   Reliability/soak.sh [--minutes 30] [--rate 2000] [--vehicles 1000]
#                       [--interval 5] [--config release|debug] [--binary PATH]
#
# Long run: not part of CI. See RELIABILITY.md "## Load".
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"

minutes=30 rate=2000 vehicles=1000 interval=5 config=release binary=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --minutes) minutes=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --vehicles) vehicles=$2; shift 2 ;;
        --interval) interval=$2; shift 2 ;;
        --config) config=$2; shift 2 ;;
        --binary) binary=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "soak: unknown argument $1" >&2; exit 2 ;;
    esac
done

if [[ -z "$binary" ]]; then
    echo "soak: building telematics ($config)" >&2
    swift build -c "$config" --product telematics 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\] ' || true
    binary="$(swift build -c "$config" --show-bin-path)/telematics"
fi
[[ -x "$binary" ]] || { echo "soak: no binary at $binary" >&2; exit 1; }

report=Reliability/report
mkdir -p "$report"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
csv="$report/soak-$stamp.csv"
work=$(mktemp -d /tmp/telematics-soak.XXXXXX)
chmod 755 "$work"

# A throwaway PostgreSQL server (as the postgres user when running as root,
# which initdb requires), on a free loopback port.
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -x "$pgbin/initdb" ]] || { echo "soak: no initdb under /usr/lib/postgresql/*/bin (Deploy/setup.sh installs postgresql)" >&2; exit 1; }
as_owner=()
if [[ $(id -u) == 0 ]]; then chown postgres:postgres "$work"; as_owner=(runuser -u postgres --); fi
pgport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
consoleport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${as_owner[@]}" "$pgbin/initdb" -D "$work/pg" -U postgres -A trust -E UTF8 --no-sync > "$work/initdb.log" 2>&1
"${as_owner[@]}" "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w -t 60 \
    -o "-p $pgport -k $work -c listen_addresses=127.0.0.1 -c fsync=off" start > /dev/null
pid="" broker="" simulator=""
cleanup() {
    for p in $simulator $pid $broker; do
        if kill -0 "$p" 2>/dev/null; then kill -TERM "$p"; wait "$p" || true; fi
    done
    "${as_owner[@]}" "$pgbin/pg_ctl" -D "$work/pg" -m fast stop > /dev/null 2>&1 || true
}
trap cleanup EXIT
"${as_owner[@]}" "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U postgres telematics_soak
url="postgres://postgres@127.0.0.1:$pgport/telematics_soak"

seconds=$(( minutes * 60 ))
"$binary" broker --brokers 1 --partitions 12 > "$work/broker.log" 2>&1 &
broker=$!
for _ in $(seq 100); do [[ -s "$work/broker.log" ]] && break; sleep 0.1; done
bootstrap=$(head -1 "$work/broker.log")
[[ $bootstrap == *:* ]] || { echo "soak: the broker did not start: $(cat "$work/broker.log")" >&2; exit 1; }
echo "soak: broker $bootstrap; $binary run --postgres $url, fleet of $vehicles at $rate records/s, for $minutes min; CSV $csv" >&2
mkdir -p "$work/secrets"
"$binary" run --brokers "$bootstrap" --postgres "$url" --secrets "$work/secrets" \
    --console "127.0.0.1:$consoleport" --duration "$seconds" --log-level warning > "$work/run.log" 2>&1 &
pid=$!
"$binary" simulate --brokers "$bootstrap" --vehicles "$vehicles" --rate "$rate" --duration "$seconds" > "$work/simulate.log" 2>&1 &
simulator=$!

# Samples: committed records (sum of telematics_records_total) and lag from
# /metrics, RSS and fds from /proc.
metric_sum() { awk -v name="$1" '$1 == name || index($1, name "{") == 1 { s += $NF } END { printf "%d", s }'; }
echo "elapsed_s,records,records_per_s,lag,rss_kib,fds,cpu_ticks,broker_rss_kib" > "$csv"
start=$(date +%s.%N); last_records=""; last_t=""
while kill -0 "$pid" 2>/dev/null; do
    sleep "$interval"
    kill -0 "$pid" 2>/dev/null || break
    metrics=$(curl -s --max-time 3 "http://127.0.0.1:$consoleport/metrics" || true)
    [[ -n "$metrics" ]] || continue
    now=$(date +%s.%N)
    records=$(metric_sum telematics_records_total <<< "$metrics")
    lag=$(metric_sum telematics_consumer_lag <<< "$metrics")
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
    cpu=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
    broker_rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$broker/status" 2>/dev/null || echo 0)
    rate_now=""
    if [[ -n "$last_records" ]]; then
        rate_now=$(python3 -c "print(round(($records - $last_records) / ($now - $last_t), 1))")
    fi
    elapsed=$(python3 -c "print(round($now - $start, 1))")
    echo "$elapsed,$records,$rate_now,$lag,$rss,$fds,$cpu,$broker_rss" >> "$csv"
    printf '\rsoak: %6.0f s  records %d  %s/s  lag %d  RSS %d MiB  fds %d   ' \
        "$elapsed" "$records" "${rate_now:-?}" "$lag" $(( rss / 1024 )) "$fds" >&2
    last_records=$records; last_t=$now
done
echo >&2
status=0; wait "$pid" || status=$?
pid=""
echo "soak: telematics run exited with status $status (log: $work/run.log)" >&2
tail -5 "$work/run.log" >&2 || true
# The simulator counts simulated seconds: when it fell behind it is still
# sending; the soak is over.
kill -TERM "$simulator" 2>/dev/null || true; wait "$simulator" || true; simulator=""

python3 Reliability/soak_report.py "$csv" --rate "$rate" --run-status "$status"
