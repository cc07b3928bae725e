#!/usr/bin/env bash
# bench/compare.sh SCENARIO — ser against Kamailio, per core, under the same loadgen ramp.
#
# Scenarios: options (stateless OPTIONS reply), forward (stateless forward to a loadgen uas),
#            register (registrar, memory only), register-auth (registrar + digest auth from SQLite),
#            register-reauth (the same, loadgen --reuse-nonce: a user's later REGISTERs answer its last
#            challenge with the next nonce-count, as phones re-registering do: 2 messages, not 4),
#            call (stateful proxy, INVITE/ACK/BYE through to a loadgen uas).
#
# Each server runs alone on core $SERVER_CORE (taskset); loadgen (and the uas far end, when the
# scenario needs one) run on core $CLIENT_CORE. The server's ceiling is the highest ramp rate with
# at most $MAX_FAIL % failures that was still achieved (loadgen --ramp). Prints both ceilings and
# the ratio, and appends a row to bench/RESULTS.md. A ceiling marked "≥" ended because loadgen
# itself could not start calls faster (about 65-75k OPTIONS/s on one core here): a lower bound.
#
# Environment (all optional):
#   SER, LOADGEN, KAMAILIO   binaries (default: target/release/ser, target/release/loadgen, kamailio
#                            from PATH; the two ours are built when missing)
#   KAMAILIO_MODULES         Kamailio's module directory
#   PORT (5070)              where the server under test listens; the uas is on 5090 (the configs say so)
#   RAMP                     loadgen --ramp START:STEP:INTERVAL_S (default per scenario: 2000:2000:2
#                            for options, forward, register; 500:500:2 register-auth; 250:250:2 call)
#   MAX_FAIL (1)             loadgen --max-failure-pct
#   DURATION (180)           upper bound of one ramp, seconds
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

# ramp NAME → prints the highest good rate (0 if none); the full JSON stays in $WORK/NAME.json.
ramp() {
    local name=$1
    nice -n "$NICE" taskset -c "$CLIENT_CORE" "$LOADGEN" "${LG_ARGS[@]}" --target "127.0.0.1:$PORT" \
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

port_busy "$PORT" && die "UDP $PORT is in use (set PORT=)"

SER_RATE=-
if [ -z "${SKIP_SER:-}" ]; then
    [ -n "$NEEDS_UAS" ] && start_uas
    echo "compare.sh: ser $SCENARIO on core $SERVER_CORE, loadgen on core $CLIENT_CORE" >&2
    nice -n "$NICE" taskset -c "$SERVER_CORE" "$SER" -f "$ROOT/bench/configs/$CFG_NAME.cfg" -l 127.0.0.1 -p "$PORT" \
        -n 1 -D -E >"$WORK/ser.log" 2>&1 &
    SER_PID=$!
    PIDS+=("$SER_PID")
    wait_listening "$PORT" "$SER_PID" ser "$WORK/ser.log"
    SER_RATE=$(ramp ser)
    kill -0 "$SER_PID" 2>/dev/null || die "ser died during the ramp; see $WORK/ser.log"
    stop "$SER_PID"
    [ -n "$NEEDS_UAS" ] && stop "$UAS_PID"
fi

KAM_RATE=-
if [ -z "${SKIP_KAMAILIO:-}" ]; then
    KCFG="$ROOT/bench/configs/kamailio-$CFG_NAME.cfg"
    "$KAMAILIO" -c -f "$KCFG" -L "$KAMAILIO_MODULES" >"$WORK/kamailio-check.log" 2>&1 ||
        { tail -n 20 "$WORK/kamailio-check.log" >&2; die "kamailio -c rejects $KCFG"; }
    [ -n "$NEEDS_UAS" ] && start_uas
    echo "compare.sh: kamailio $SCENARIO on core $SERVER_CORE, loadgen on core $CLIENT_CORE" >&2
    nice -n "$NICE" taskset -c "$SERVER_CORE" "$KAMAILIO" -f "$KCFG" -L "$KAMAILIO_MODULES" \
        -l "udp:127.0.0.1:$PORT" -n 1 -DD -E -m 256 -M 32 -Y "$WORK" >"$WORK/kamailio.log" 2>&1 &
    KAM_PID=$!
    PIDS+=("$KAM_PID")
    wait_listening "$PORT" "$KAM_PID" kamailio "$WORK/kamailio.log"
    KAM_RATE=$(ramp kamailio)
    kill -0 "$KAM_PID" 2>/dev/null || die "kamailio died during the ramp; see $WORK/kamailio.log"
    stop "$KAM_PID"
    [ -n "$NEEDS_UAS" ] && stop "$UAS_PID"
fi

# A ceiling loadgen could not exceed is a lower bound: mark it "≥".
mark() { if [ -e "$WORK/$1.json.bound" ]; then echo "≥$2"; else echo "$2"; fi; }
RATIO=-
if [ "$SER_RATE" != - ] && [ "$KAM_RATE" != - ] && [ "$KAM_RATE" != 0 ]; then
    RATIO=$(python3 -c "print('%.2f' % ($SER_RATE / $KAM_RATE))")
fi
echo "scenario $SCENARIO: ser $(mark ser "$SER_RATE")/s, kamailio $(mark kamailio "$KAM_RATE")/s, ratio ser/kamailio $RATIO"

if [ -z "${NO_RESULTS:-}" ]; then
    RESULTS="$ROOT/bench/RESULTS.md"
    if ! grep -q '^## compare.sh runs' "$RESULTS" 2>/dev/null; then
        {
            echo
            echo "## compare.sh runs"
            echo
            echo "One row per \`bench/compare.sh SCENARIO\`: highest good rate per server (1 core each), loadgen on the other core."
            echo
            echo "| date (UTC) | commit | scenario | ser /s | kamailio /s | ser/kamailio | ramp | max fail % |"
            echo "|---|---|---|---|---|---|---|---|"
        } >>"$RESULTS"
    fi
    COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    echo "| $(date -u '+%Y-%m-%d %H:%M') | $COMMIT | $SCENARIO | $(mark ser "$SER_RATE") | $(mark kamailio "$KAM_RATE") | $RATIO | $RAMP | $MAX_FAIL |" >>"$RESULTS"
fi
rm -rf "$WORK"
[ "$SER_RATE" != 0 ] && [ "$KAM_RATE" != 0 ]
