#!/usr/bin/env bash
# bench/overload.sh — tests/overload.rs against a release ser, figures printed: the flood
# (loadgen REGISTERs from 4 sockets far beyond one shard, junk, a steady OPTIONS client, a probe;
# every datagram accounted for in /metrics, service back within 1 s) and the hung database
# (4,000 authenticating REGISTERs/s for 5 s against a database that never answers; with
# OVERLOAD_STRICT=1 every OPTIONS probe must be answered within 100 ms and every REGISTER
# with 500/503).
#
# Environment: CARGO_TARGET_DIR (release ser and loadgen are built there, nice -n 19),
#              TEST_TARGET_DIR (where the debug test harness is built; default the same),
#              OVERLOAD_RATE (loadgen's new REGISTERs per second, default 200000),
#              OVERLOAD_LG_THREADS (loadgen threads, default 2), OVERLOAD_RCVBUF (ser -b, default
#              4 MiB, ser's default), RUNS (each test, default 1).
# Loopback only; every load is bounded (3 s flood, 5 s hung database). Ports: free ones.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
export CARGO_TARGET_DIR=$TARGET_DIR
RUNS=${RUNS:-1}
nice -n 19 cargo build --release --locked -p ser -p loadgen >&2
# The test harness itself is a debug build (it only sends, counts and asserts); TEST_TARGET_DIR
# may name another target directory for it (one that already holds a debug build).
TEST_BIN=$(CARGO_TARGET_DIR=${TEST_TARGET_DIR:-$TARGET_DIR} nice -n 19 cargo test --locked -p ser --test overload --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    try: m = json.loads(l)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "overload":
        print(m["executable"])' | tail -1)
[ -x "$TEST_BIN" ] || { echo "overload.sh: no test binary" >&2; exit 1; }
export SER_BIN=$TARGET_DIR/release/ser LOADGEN=$TARGET_DIR/release/loadgen
export OVERLOAD_RATE=${OVERLOAD_RATE:-200000} OVERLOAD_LG_THREADS=${OVERLOAD_LG_THREADS:-2}
export OVERLOAD_STRICT=1 OVERLOAD_RCVBUF=${OVERLOAD_RCVBUF:-4194304}
echo "ser $("$SER_BIN" -V 2>&1 | head -1) ($SER_BIN); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
rc=0
for test in a_flood_beyond_capacity_is_refused_or_counted_and_service_is_back_within_a_second \
    a_hung_database_under_4000_registers_a_second; do
    for run in $(seq 1 "$RUNS"); do
        out=$("$TEST_BIN" --exact "$test" --nocapture --test-threads 1 2>&1) || rc=1
        { echo "$out" | grep -E '^(flood|hung db):' || true; } | sed "s/^/run $run: /"
        { echo "$out" | grep -E "^test $test \.\.\. " || true; } | sed "s/^/run $run: /"
        { echo "$out" | grep -A3 'panicked' || true; } | head -4 | sed "s/^/run $run: /"
    done
done
exit $rc
