#!/usr/bin/env bash
# loadgen/scripts/ceiling.sh — loadgen's own ceiling on this box, and SIPp's for comparison.
#
#   1. loadgen options  → loadgen uas   (ramp)   client on core 0, uas on core 1
#   2. loadgen call     → loadgen uas   (ramp)   same pinning
#   3. sipp -sn uac     → sipp -sn uas  (fixed-rate steps, calls), same pinning, if sipp is installed
#
# For 1 and 2 it also reads each process's CPU time (/proc/PID/stat) to give µs of CPU per call on
# each side, which says who limited the ramp. Prints Markdown lines to paste into bench/RESULTS.md.
# Environment: LOADGEN (default target/release/loadgen), RAMP_OPTIONS, RAMP_CALL, SIPP_RATES,
# NICE (e.g. -10 to out-weigh other work on a shared box; applied to both sides alike).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LOADGEN=${LOADGEN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/loadgen}
RAMP_OPTIONS=${RAMP_OPTIONS:-20000:5000:2}
RAMP_CALL=${RAMP_CALL:-5000:2500:2}
SIPP_RATES=${SIPP_RATES:-500 1000 1500 2000 2500 3000 4000 5000 6000 8000 10000}
NICE=${NICE:-0}
PORT=5099
[ -x "$LOADGEN" ] || { echo "ceiling.sh: build it first: cargo build --release -p loadgen" >&2; exit 2; }
# Processes are started directly (not through a shell function) so that $! is their own PID.
cpu_s() { awk '{ print ($14 + $15) / 100 }' "/proc/$1/stat"; }

ramp() {
    local name=$1 ramp=$2
    shift 2
    nice -n "$NICE" taskset -c 1 "$LOADGEN" uas --bind "127.0.0.1:$PORT" -q >/dev/null 2>&1 &
    local uas=$!
    sleep 0.3
    nice -n "$NICE" taskset -c 0 "$LOADGEN" "$@" --target "127.0.0.1:$PORT" --ramp "$ramp" --duration 120 --json -q \
        >"/tmp/ceiling-$name.json" 2>/dev/null &
    local cl=$!
    local c_cpu=0 u_cpu=0
    while kill -0 "$cl" 2>/dev/null; do
        c_cpu=$(cpu_s "$cl" 2>/dev/null || echo "$c_cpu")
        sleep 0.2
    done
    wait "$cl" || true
    u_cpu=$(cpu_s "$uas")
    kill "$uas"
    wait "$uas" 2>/dev/null || true
    python3 - "/tmp/ceiling-$name.json" "$name" "$c_cpu" "$u_cpu" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
name, c_cpu, u_cpu = sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
calls = max(v["succeeded"], 1)
print(f"| loadgen {name} → loadgen uas | {v['ramp']['highest_good_rate']:.0f}/s | "
      f"{v['ramp']['stopped_because']} | client {1e6 * c_cpu / calls:.1f} µs/call, "
      f"uas {1e6 * u_cpu / calls:.1f} µs/call (CPU time over the whole ramp) |")
PY
}

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD), load average $(cut -d' ' -f1-3 /proc/loadavg)"
ramp options "$RAMP_OPTIONS" options
ramp call "$RAMP_CALL" call

if command -v sipp >/dev/null; then
    nice -n "$NICE" taskset -c 1 sipp -sn uas -i 127.0.0.1 -p $PORT -nostdin >/dev/null 2>&1 &
    SUAS=$!
    sleep 0.5
    best=0
    why="all rates in SIPP_RATES passed"
    for r in $SIPP_RATES; do
        m=$((r * 5))
        t0=$(date +%s.%N)
        nice -n "$NICE" taskset -c 0 sipp -sn uac "127.0.0.1:$PORT" -i 127.0.0.1 -p 5098 -r "$r" -m "$m" -nostdin \
            -timeout 30 >/tmp/ceiling-sipp.log 2>&1 || true
        t1=$(date +%s.%N)
        ok=$(grep -E '^ +Successful call' /tmp/ceiling-sipp.log | tail -1 | awk -F'|' '{ gsub(/ /, "", $3); print $3 }')
        bad=$(grep -E '^ +Failed call' /tmp/ceiling-sipp.log | tail -1 | awk -F'|' '{ gsub(/ /, "", $3); print $3 }')
        ach=$(python3 -c "print('%.0f' % (${ok:-0} / ($t1 - $t0)))")
        echo "  sipp $r/s: $ok ok, $bad failed, $ach/s achieved" >&2
        if [ "${bad:-1}" -le $((m / 100)) ] && [ "$ach" -ge $((r * 90 / 100)) ]; then
            best=$r
        else
            why="at $r/s: $ok ok, $bad failed, $ach/s achieved"
            break
        fi
    done
    kill "$SUAS"
    wait "$SUAS" 2>/dev/null || true
    echo "| sipp -sn uac → sipp -sn uas | $best/s | $why | calls (INVITE/ACK/BYE), 5 s per rate step |"
fi
