#!/usr/bin/env bash
# Installs what telematics needs to build, run and test on Debian 12
# (the Swift toolchain itself is expected at /opt/swift or on PATH):
#   - C libraries: librdkafka-dev (Kafka client + mock cluster), libzstd-dev
#   - kcat: a Kafka command-line peer for tests and benchmarks
#   - Python packages of the reference decoder tmgen.py (protobuf, zstandard, grpcio-tools)
# Safe to run again: it only installs what is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

# postgresql: server binaries (initdb, pg_ctl) for the PostgreSQL store tests,
# which start a throwaway server of their own; sqlite3: the tests read the
# SQLite files as an outsider would; chromium: the call-centre console test
# drives the page in a headless browser; valgrind: the benchmark gate counts
# instructions per record with callgrind (Benchmarks/run.sh --gate).
APT_PACKAGES=(librdkafka-dev libzstd-dev kcat pkg-config python3-pip postgresql sqlite3 chromium valgrind)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python tools, installed only when pip finds one missing (a dry run is
# cheap; installs are not):
#   - Tests/Fixtures/tools/requirements.txt: the reference decoder tmgen.py
#     (a copy of ../shared's, which a test compares);
#   - Deploy/tools-requirements.txt: kubernetes-validate and hadolint for the
#     deployment checks of the tests, matplotlib for the benchmark report.
for REQS in "$ROOT/Tests/Fixtures/tools/requirements.txt" "$ROOT/Deploy/tools-requirements.txt"; do
  if python3 -m pip install --dry-run --disable-pip-version-check -r "$REQS" 2>/dev/null | grep -q "Would install"; then
    echo "setup: installing the Python tools of ${REQS#$ROOT/}" >&2
    python3 -m pip install -q --disable-pip-version-check -r "$REQS" \
      || python3 -m pip install -q --disable-pip-version-check --break-system-packages -r "$REQS"
  fi
done

if ! command -v swift >/dev/null; then
  if [[ -x /opt/swift/usr/bin/swift ]]; then
    echo "setup: add /opt/swift/usr/bin to PATH" >&2
  else
    echo "setup: no Swift toolchain found (Swift 6.1 or later is needed)" >&2
    exit 1
  fi
fi
echo "setup: ready" >&2
