#!/usr/bin/env bash
# Builds the decoder's libFuzzer target (Fuzz/DecoderFuzz + Sources/TelematicsWire,
# one module, `swiftc -sanitize=fuzzer,address`) and runs it for a fixed time,
# seeded from the conformance vectors (each record of valid, invalid and
# sample .tmcap as its own input).
#
#   Fuzz/run.sh [--seconds 120] [--vectors DIR] [--build-only] [-- libFuzzer options...]
#
# The corpus grows in Fuzz/corpus/ (git-ignored; kept between runs), findings
# go to Fuzz/findings/ (crash-*, leak-*, timeout-*). Exit status: 0 when the
# fuzzer found nothing in the time, else 1 with the finding's path printed.
# Re-run one finding: .build/fuzz/decoder-fuzz Fuzz/findings/crash-...
# CI runs `Fuzz/run.sh --seconds 100` (about 3 minutes with the build).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"

seconds=120 vectors=Tests/Fixtures/vectors build_only=0 extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        --vectors) vectors=$2; shift 2 ;;
        --build-only) build_only=1; shift ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "fuzz: unknown argument $1" >&2; exit 2 ;;
    esac
done

out=.build/fuzz
bin=$out/decoder-fuzz
mkdir -p "$out" Fuzz/corpus Fuzz/findings

# Rebuild when a source is newer than the binary. -O with the sanitizers: the
# decoder's checks are what is fuzzed, and they are the same in -O.
sources=(Sources/TelematicsWire/*.swift Fuzz/DecoderFuzz/*.swift)
if [[ ! -x $bin ]] || [[ -n $(find "${sources[@]}" Fuzz/run.sh -newer "$bin" 2>/dev/null) ]]; then
    echo "fuzz: building $bin" >&2
    t0=$(date +%s)
    swiftc -swift-version 6 -O -g -parse-as-library -sanitize=fuzzer,address \
        -module-name DecoderFuzz -I Sources/CZstd "${sources[@]}" -lzstd -o "$bin" 2>&1 |
        { grep -v "Cannot export local symbol '__asan" || true; } >&2
    [[ ${PIPESTATUS[0]} == 0 ]] || { echo "fuzz: build failed" >&2; exit 1; }
    echo "fuzz: built in $(( $(date +%s) - t0 )) s" >&2
fi
[[ $build_only == 1 ]] && exit 0

# Seeds: every record of the vectors as its own file (u32 little-endian length, then the record).
seeds=$out/seeds
rm -rf "$seeds"; mkdir -p "$seeds"
python3 - "$vectors" "$seeds" <<'PY'
import hashlib, os, struct, sys
vectors, seeds = sys.argv[1], sys.argv[2]
n = 0
for name in ("valid.tmcap", "invalid.tmcap", "sample.tmcap"):
    data = open(os.path.join(vectors, name), "rb").read()
    at = 0
    while at + 4 <= len(data):
        (length,) = struct.unpack_from("<I", data, at)
        record = data[at + 4: at + 4 + length]
        at += 4 + length
        path = os.path.join(seeds, hashlib.sha1(record).hexdigest())
        if not os.path.exists(path):
            open(path, "wb").write(record)
            n += 1
print(f"fuzz: {n} seed records from {vectors}", file=sys.stderr)
PY

echo "fuzz: running for $seconds s" >&2
status=0
# Leak checking is off: the target's one decoder lives for the whole run on purpose.
FUZZ_DICT_DIR="$vectors/dicts" ASAN_OPTIONS=detect_leaks=0 "$bin" \
    -max_total_time="$seconds" -max_len=70000 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix=Fuzz/findings/ \
    "${extra[@]}" Fuzz/corpus "$seeds" 2> "$out/fuzz.log" || status=$?
grep -E '^#[0-9]+ +(DONE|INITED)|stat::number_of_executed_units|stat::peak_rss_mb|cov:' "$out/fuzz.log" | tail -4 >&2 || true
if [[ $status != 0 ]]; then
    echo "fuzz: FINDING (status $status); log $out/fuzz.log:" >&2
    grep -E 'ERROR|Fatal error|SUMMARY|Test unit written|artifact' "$out/fuzz.log" >&2 || tail -30 "$out/fuzz.log" >&2
    exit 1
fi
echo "fuzz: nothing found in $seconds s" >&2
