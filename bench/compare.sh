#!/usr/bin/env bash
# bench/compare.sh SCENARIO — ser against Kamailio, per core, with the same loadgen commands.
#
# Scenarios: options (stateless OPTIONS reply), forward (stateless forward to a loadgen uas),
#            register (registrar, memory only), register-auth (registrar + digest auth from SQLite),
#            register-reauth (the same, loadgen --reuse-nonce: a user's later REGISTERs answer its last
#            challenge with the next nonce-count, as phones re-registering do: 2 messages, not 4),
#            call (stateful proxy, INVITE/ACK/BYE through to a loadgen uas).
#
# Both servers run as their operators run them: Kamailio with the tlsf allocator (`-x tlsf`; Debian's
# default qm allocator is built with memory debugging), 4 GB of shared memory (`-m 4096`; tm keeps
# finished transactions for seconds) and a 4 MB receive buffer (`maxbuffer=4194304` in its configs);
# ser with the same receive buffer (`-b 4194304`, also its default). Each runs alone on core
# $SERVER_CORE (taskset); loadgen (and the uas far end, when the scenario needs one) on $CLIENT_CORE.
#
# Two measurements per server, in one run:
# 1. fixed rate: loadgen offers $RATE/s for $FIXED_S s; the server's CPU (utime+stime of every thread
#    of every process of the server, from /proc) is divided by the units offered: µs per unit. With
#    the loadgen failures and p99.
# 2. ramp: the ceiling is the highest ramp rate with at most $MAX_FAIL % failures that was still
#    achieved (loadgen --ramp). A ceiling marked "≥" ended because loadgen itself could not start
#    calls faster: a lower bound.
# Prints both and appends a row to bench/RESULTS.md.
#
# Environment (all optional):
#   SER, LOADGEN, KAMAILIO   binaries (default: target/release/ser, target/release/loadgen, kamailio
#                            from PATH; the two ours are built when missing)
#   KAMAILIO_MODULES         Kamailio's module directory
#   PORT (5070)              where the server under test listens; the uas is on 5090 (the configs say so)
#   RATE                     the fixed offered rate (default per scenario: options 70000, forward 30000,
#                            register 60000, register-auth 8000, register-reauth 30000, call 3000)
#   FIXED_S (10)             seconds of the fixed-rate run (0: skip it)
#   RAMP                     loadgen --ramp START:STEP:INTERVAL_S (default per scenario: 2000:2000:2
#                            for options, forward, register; 500:500:2 register-auth; 250:250:2 call)
#   NO_RAMP=1                fixed rate only
#   MAX_FAIL (1)             loadgen --max-failure-pct
#   DURATION (180)           upper bound of one ramp, seconds
#   LG_EXTRA                 extra loadgen arguments for both servers (e.g. "--sockets 4")
#   NICE (0)                 nice value for every process started (e.g. -10 on a box shared with
#                            other work; the same for both servers, so the ratio stays fair)
#   SKIP_SER=1 / SKIP_KAMAILIO=1   measure one side only
#   NO_RESULTS=1             do not append to bench/RESULTS.md
# Exit codes: 0 done, 1 a server failed to start or the ramp found no good rate, 2 usage.
set -euo pipefail

usage() {
    echo "usage: bench/compare.sh options|forward|register|register-auth|register-reauth|call" >&2
    exit 2
}
[ $# -eq 1 ] || usage
SCENARIO=$1
case $SCENARIO in
    options | forward | register | register-auth | register-reauth | call) ;;
    *) usage ;;
esac

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SER=${SER:-$TARGET_DIR/release/ser}
LOADGEN=${LOADGEN:-$TARGET_DIR/release/loadgen}
[ -n "${NO_SETUP:-}" ] || source "$ROOT/bench/setup"
KAMAILIO=${KAMAILIO:-$(command -v kamailio || true)}
KAMAILIO_MODULES=${KAMAILIO_MODULES:-/usr/lib/x86_64-linux-gnu/kamailio/modules}
PORT=${PORT:-5070}
UAS_PORT=5090
case $SCENARIO in
    register-auth) DEFAULT_RAMP=500:500:2 ;;
    register-reauth) DEFAULT_RAMP=2000:2000:2 ;;
    call) DEFAULT_RAMP=250:250:2 ;;
    *) DEFAULT_RAMP=2000:2000:2 ;;
esac
RAMP=${RAMP:-$DEFAULT_RAMP}
case $SCENARIO in
    options) DEFAULT_RATE=70000 ;;
    forward) DEFAULT_RATE=30000 ;;
    register) DEFAULT_RATE=60000 ;;
    register-auth) DEFAULT_RATE=8000 ;;
    register-reauth) DEFAULT_RATE=30000 ;;
    call) DEFAULT_RATE=3000 ;;
esac
RATE=${RATE:-$DEFAULT_RATE}
FIXED_S=${FIXED_S:-10}
RCVBUF=4194304
read -r -a LG_EXTRA_ARR <<<"${LG_EXTRA:-}"
MAX_FAIL=${MAX_FAIL:-1}
DURATION=${DURATION:-180}
SERVER_CORE=${SERVER_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
NICE=${NICE:-0}
WORK=$(mktemp -d /tmp/ser-compare.XXXXXX)
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    sleep 0.3
    for p in "${PIDS[@]}"; do
        kill -9 "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT

die() {
    echo "compare.sh: $*" >&2
    exit 1
}

need_build() {
    local bin=$1 pkg=$2
    if [ ! -x "$bin" ]; then
        echo "compare.sh: building $pkg (release)" >&2
        (cd "$ROOT" && cargo build --release -p "$pkg" >&2)
        [ -x "$bin" ] || die "$bin still missing after the build"
    fi
}

need_build "$LOADGEN" loadgen
if [ -z "${SKIP_SER:-}" ]; then
    need_build "$SER" ser
fi
if [ -z "$KAMAILIO" ] && [ -z "${SKIP_KAMAILIO:-}" ]; then
    echo "compare.sh: kamailio is not installed; measuring ser only" >&2
    SKIP_KAMAILIO=1
fi

port_busy() {
    ss -Hlun "sport = :$1" 2>/dev/null | grep -q .
}

# Waits until something listens on UDP $1 while process $2 lives; fails clearly if it exits.
wait_listening() {
    local port=$1 pid=$2 name=$3 log=$4
    for _ in $(seq 1 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "compare.sh: $name exited early; the end of its log ($log):" >&2
            tail -n 20 "$log" >&2 || true
            exit 1
        fi
        if port_busy "$port"; then
            sleep 0.3
            kill -0 "$pid" 2>/dev/null && return 0
        fi
        sleep 0.1
    done
    echo "compare.sh: $name does not listen on UDP $port after 10 s; its log ($log):" >&2
    tail -n 20 "$log" >&2 || true
    exit 1
}

stop() {
    kill "$1" 2>/dev/null || true
    for _ in $(seq 1 30); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$1" 2>/dev/null || true
}

# The subscriber table both servers authenticate against (SER's and Kamailio's column names).
make_db() {
    mkdir -p /tmp/ser-bench
    rm -f /tmp/ser-bench/subscriber.db /tmp/ser-bench/ser-subscriber.db
    python3 - <<'EOF'
import hashlib, sqlite3
db = sqlite3.connect("/tmp/ser-bench/subscriber.db")
db.executescript("""
CREATE TABLE version (table_name VARCHAR(32) NOT NULL, table_version INTEGER DEFAULT 0 NOT NULL);
INSERT INTO version VALUES ('subscriber', 7);
CREATE TABLE subscriber (
  id INTEGER PRIMARY KEY NOT NULL,
  username VARCHAR(64) DEFAULT '' NOT NULL,
  domain VARCHAR(64) DEFAULT '' NOT NULL,
  password VARCHAR(64) DEFAULT '' NOT NULL,
  ha1 VARCHAR(128) DEFAULT '' NOT NULL,
  ha1b VARCHAR(128) DEFAULT '' NOT NULL);
CREATE UNIQUE INDEX account_idx ON subscriber (username, domain);
""")
rows = []
for i in range(1, 10001):
    u = f"bench{i}"
    ha1 = hashlib.md5(f"{u}:bench.test:bench".encode()).hexdigest()
    ha1b = hashlib.md5(f"{u}@bench.test:bench.test:bench".encode()).hexdigest()
    rows.append((u, "bench.test", "bench", ha1, ha1b))
db.executemany("INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES (?,?,?,?,?)", rows)
db.commit()
EOF
    # The same users for ser, with SER 0.8.11's subscriber version (5; Kamailio's is 7): each
    # server checks the version table against its own schema.
    cp /tmp/ser-bench/subscriber.db /tmp/ser-bench/ser-subscriber.db
    python3 -c "import sqlite3; d=sqlite3.connect('/tmp/ser-bench/ser-subscriber.db'); d.execute(\"UPDATE version SET table_version=5 WHERE table_name='subscriber'\"); d.commit()"
}

case $SCENARIO in
    options) LG_ARGS=(options --to "service@127.0.0.1:$PORT") ;;
    forward) LG_ARGS=(message --to "uas@127.0.0.1:$UAS_PORT") ;;
    register) LG_ARGS=(register --users 'bench%d@bench.test' --range 1-10000) ;;
    register-auth)
        LG_ARGS=(register --users 'bench%d@bench.test' --range 1-10000 --password bench)
        make_db
        ;;
    register-reauth)
        LG_ARGS=(register --users 'bench%d@bench.test' --range 1-10000 --password bench --reuse-nonce)
        make_db
        ;;
    call) LG_ARGS=(call --to "uas@127.0.0.1:$UAS_PORT") ;;
esac
# register-reauth runs the register-auth configs.
CFG_NAME=$SCENARIO
[ "$SCENARIO" = register-reauth ] && CFG_NAME=register-auth
NEEDS_UAS=
case $SCENARIO in forward | call) NEEDS_UAS=1 ;; esac

start_uas() {
    port_busy $UAS_PORT && die "UDP $UAS_PORT is in use; the uas needs it"
    nice -n "$NICE" taskset -c "$CLIENT_CORE" "$LOADGEN" uas --bind "127.0.0.1:$UAS_PORT" -q >"$WORK/uas.log" 2>&1 &
    UAS_PID=$!
    PIDS+=("$UAS_PID")
    wait_listening $UAS_PORT "$UAS_PID" "loadgen uas" "$WORK/uas.log"
}

# Server CPU so far, in clock ticks: utime+stime of process $1 and of every descendant (each
# process's /proc/PID/stat counts all of its threads).
cpu_ticks() {
    python3 - "$1" <<'PY'
import os, sys
root = int(sys.argv[1])
children = {}
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        st = open(f"/proc/{d}/stat").read()
    except OSError:
        continue
    f = st[st.rindex(")") + 2:].split()
    children.setdefault(int(f[1]), []).append((int(d), int(f[11]) + int(f[12])))
total, todo = 0, [root]
try:
    st = open(f"/proc/{root}/stat").read()
    f = st[st.rindex(")") + 2:].split()
    total += int(f[11]) + int(f[12])
except OSError:
    pass
while todo:
    for pid, t in children.get(todo.pop(), []):
        total += t
        todo.append(pid)
print(total)
PY
}

# fixed NAME PID → runs loadgen at $RATE/s for $FIXED_S s against the server PID; prints
# "µs/unit failed p99_ms" (and keeps the JSON in $WORK/NAME-fixed.json).
fixed() {
    local name=$1 pid=$2 before after
    before=$(cpu_ticks "$pid")
    nice -n "$NICE" taskset -c "$CLIENT_CORE" "$LOADGEN" "${LG_ARGS[@]}" "${LG_EXTRA_ARR[@]}" \
        --target "127.0.0.1:$PORT" --rate "$RATE" --duration "$FIXED_S" --json -q \
        >"$WORK/$name-fixed.json" 2>"$WORK/$name-fixed.err" || true
    after=$(cpu_ticks "$pid")
    python3 -c 'import json,sys,os
hz = os.sysconf("SC_CLK_TCK")
try:
    v = json.load(open(sys.argv[1]))
    n = max(v["started"], 1)
    us = (int(sys.argv[3]) - int(sys.argv[2])) / hz * 1e6 / n
    print("%.2f %d %.2f" % (us, v["failed"] + v.get("abandoned", 0), v["latency_ms"]["p99"]))
    sys.stderr.write("  %s fixed %s/s: %d started, %d ok, %d failed, %.2f us/unit, p99 %.2f ms\n" % (
        sys.argv[4], sys.argv[5], v["started"], v["succeeded"], v["failed"], us, v["latency_ms"]["p99"]))
except Exception as e:
    print("- - -")
    sys.stderr.write("  %s: no fixed-rate result (%s)\n" % (sys.argv[4], e))
' "$WORK/$name-fixed.json" "$before" "$after" "$name" "$RATE"
}

# ramp NAME → prints the highest good rate (0 if none); the full JSON stays in $WORK/NAME.json.
ramp() {
    local name=$1
    nice -n "$NICE" taskset -c "$CLIENT_CORE" "$LOADGEN" "${LG_ARGS[@]}" "${LG_EXTRA_ARR[@]}" \
        --target "127.0.0.1:$PORT" \
        --ramp "$RAMP" --max-failure-pct "$MAX_FAIL" --duration "$DURATION" --json -q \
        >"$WORK/$name.json" 2>"$WORK/$name.err" || true
    python3 -c 'import json,sys
try:
    v = json.load(open(sys.argv[1]))
    why = v["ramp"]["stopped_because"]
    print("%.0f" % v["ramp"]["highest_good_rate"])
    sys.stderr.write("  %s: %s\n" % (sys.argv[2], why))
    if why.startswith("loadgen started only"):
        open(sys.argv[1] + ".bound", "w").close()
        sys.stderr.write("  %s: WARNING: loadgen, not the server, was the limit: the real ceiling is higher\n" % sys.argv[2])
except Exception as e:
    print(0)
    sys.stderr.write("  %s: no ramp result (%s); see %s\n" % (sys.argv[2], e, sys.argv[1].replace(".json", ".err")))
' "$WORK/$name.json" "$name"
}

# measure NAME PID → sets NAME_FIXED ("µs failed p99") and NAME_RATE.
measure() {
    local name=$1 pid=$2 f=("- - -") r=-
    if [ "$FIXED_S" != 0 ]; then
        f=$(fixed "$name" "$pid")
        kill -0 "$pid" 2>/dev/null || die "$name died during the fixed-rate run"
        sleep 2 # let retransmissions and timers of the fixed run end before the ramp
    fi
    if [ -z "${NO_RAMP:-}" ]; then
        r=$(ramp "$name")
        kill -0 "$pid" 2>/dev/null || die "$name died during the ramp"
    fi
    printf -v "${name^^}_FIXED" '%s' "$f"
    printf -v "${name^^}_RATE" '%s' "$r"
}

port_busy "$PORT" && die "UDP $PORT is in use (set PORT=)"

SER_RATE=- SER_FIXED="- - -"
if [ -z "${SKIP_SER:-}" ]; then
    [ -n "$NEEDS_UAS" ] && start_uas
    echo "compare.sh: ser $SCENARIO on core $SERVER_CORE, loadgen on core $CLIENT_CORE" >&2
    nice -n "$NICE" taskset -c "$SERVER_CORE" "$SER" -f "$ROOT/bench/configs/$CFG_NAME.cfg" -l 127.0.0.1 -p "$PORT" \
        -n 1 -b "$RCVBUF" -D -E >"$WORK/ser.log" 2>&1 &
    SER_PID=$!
    PIDS+=("$SER_PID")
    wait_listening "$PORT" "$SER_PID" ser "$WORK/ser.log"
    measure ser "$SER_PID"
    stop "$SER_PID"
    [ -n "$NEEDS_UAS" ] && stop "$UAS_PID"
fi

KAMAILIO_RATE=- KAMAILIO_FIXED="- - -"
if [ -z "${SKIP_KAMAILIO:-}" ]; then
    KCFG="$ROOT/bench/configs/kamailio-$CFG_NAME.cfg"
    "$KAMAILIO" -c -f "$KCFG" -L "$KAMAILIO_MODULES" >"$WORK/kamailio-check.log" 2>&1 ||
        { tail -n 20 "$WORK/kamailio-check.log" >&2; die "kamailio -c rejects $KCFG"; }
    [ -n "$NEEDS_UAS" ] && start_uas
    echo "compare.sh: kamailio $SCENARIO on core $SERVER_CORE, loadgen on core $CLIENT_CORE" >&2
    nice -n "$NICE" taskset -c "$SERVER_CORE" "$KAMAILIO" -f "$KCFG" -L "$KAMAILIO_MODULES" \
        -l "udp:127.0.0.1:$PORT" -n 1 -DD -E -x tlsf -m 4096 -M 32 -Y "$WORK" >"$WORK/kamailio.log" 2>&1 &
    KAM_PID=$!
    PIDS+=("$KAM_PID")
    wait_listening "$PORT" "$KAM_PID" kamailio "$WORK/kamailio.log"
    measure kamailio "$KAM_PID"
    stop "$KAM_PID"
    [ -n "$NEEDS_UAS" ] && stop "$UAS_PID"
fi

# A ceiling loadgen could not exceed is a lower bound: mark it "≥".
mark() { if [ -e "$WORK/$1.json.bound" ]; then echo "≥$2"; else echo "$2"; fi; }
ratio() { python3 -c "import sys
try: print('%.2f' % (float(sys.argv[1]) / float(sys.argv[2])))
except Exception: print('-')" "$1" "$2"; }
read -r SER_US SER_FAILED SER_P99 <<<"$SER_FIXED"
read -r KAM_US KAM_FAILED KAM_P99 <<<"$KAMAILIO_FIXED"
RATIO=$(ratio "$SER_RATE" "$KAMAILIO_RATE")
CPU_RATIO=$(ratio "$SER_US" "$KAM_US")
echo "scenario $SCENARIO: ceiling ser $(mark ser "$SER_RATE")/s, kamailio $(mark kamailio "$KAMAILIO_RATE")/s, ratio $RATIO"
echo "scenario $SCENARIO @ $RATE/s for ${FIXED_S}s: ser $SER_US µs/unit ($SER_FAILED failed, p99 $SER_P99 ms), kamailio $KAM_US µs/unit ($KAM_FAILED failed, p99 $KAM_P99 ms), CPU ratio ser/kamailio $CPU_RATIO"

if [ -z "${NO_RESULTS:-}" ]; then
    RESULTS="$ROOT/bench/RESULTS.md"
    if ! grep -q '^## compare.sh runs (tuned Kamailio)' "$RESULTS" 2>/dev/null; then
        {
            echo
            echo "## compare.sh runs (tuned Kamailio)"
            echo
            echo "One row per \`bench/compare.sh SCENARIO\` (Kamailio \`-x tlsf -m 4096\`, \`maxbuffer=4194304\`; ser \`-b 4194304\`), each server on 1 core, loadgen on the other. Ceiling: highest good ramp rate. Fixed: server CPU µs per unit offered at RATE for FIXED_S s (utime+stime of all threads/processes), loadgen failures and p99 ms."
            echo
            echo "| date (UTC) | commit | scenario | ser ceiling /s | kamailio ceiling /s | ratio | fixed rate | ser µs/unit | kamailio µs/unit | CPU ratio | failed ser/kam | p99 ms ser/kam | ramp | loadgen extra |"
            echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        } >>"$RESULTS"
    fi
    COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    echo "| $(date -u '+%Y-%m-%d %H:%M') | $COMMIT | $SCENARIO | $(mark ser "$SER_RATE") | $(mark kamailio "$KAMAILIO_RATE") | $RATIO | $RATE×${FIXED_S}s | $SER_US | $KAM_US | $CPU_RATIO | $SER_FAILED/$KAM_FAILED | $SER_P99/$KAM_P99 | $RAMP | ${LG_EXTRA:-} |" >>"$RESULTS"
fi
rm -rf "$WORK"
[ "$SER_RATE" != 0 ] && [ "$KAMAILIO_RATE" != 0 ]
