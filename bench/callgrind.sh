#!/usr/bin/env bash
# bench/callgrind.sh SCENARIO [N] — user-space instructions per unit of a running ser, under
# valgrind's callgrind (stable to a fraction of a percent whatever else the machine does, unlike
# wall clock): ser runs a bench config under callgrind, loadgen warms it up, the counters are
# zeroed, loadgen sends N units at a low rate, the counters are dumped; total / N is printed.
#
# Scenarios as bench/compare.sh: options, forward, register, register-auth, register-reauth, call.
# The dump stays in $OUT (default /tmp/ser-callgrind) for callgrind_annotate.
# Environment: SER, LOADGEN (binaries; default target/release/*), PORT (5070), RATE (500/s),
#              OUT (dump directory), CONFIG (a script instead of the bench config), PEER=kamailio (count Kamailio 5.6 with the same bench config
#              instead: every process it forks, -x tlsf; -m 512 because valgrind cannot map 4 GB).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: bench/callgrind.sh SCENARIO [N]" >&2; exit 2; }
SCENARIO=$1
N=${2:-2000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SER=${SER:-$TARGET_DIR/release/ser}
LOADGEN=${LOADGEN:-$TARGET_DIR/release/loadgen}
PORT=${PORT:-5070}
UAS_PORT=5090
RATE=${RATE:-500}
OUT=${OUT:-/tmp/ser-callgrind}
[ -n "${NO_SETUP:-}" ] || source "$ROOT/bench/setup"
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed" >&2; exit 1; }
[ -x "$SER" ] && [ -x "$LOADGEN" ] || { echo "callgrind.sh: build ser and loadgen (release) first" >&2; exit 1; }

case $SCENARIO in
    options) LG=(options --to "service@127.0.0.1:$PORT") ;;
    forward) LG=(message --to "uas@127.0.0.1:$UAS_PORT") ;;
    register) LG=(register --users 'bench%d@bench.test' --range 1-100000) ;;
    register-auth | register-reauth) LG=(register --users 'bench%d@bench.test' --range 1-10000 --password bench) ;;
    call) LG=(call --to "uas@127.0.0.1:$UAS_PORT") ;;
    *) echo "callgrind.sh: unknown scenario $SCENARIO" >&2; exit 2 ;;
esac
[ "$SCENARIO" = register-reauth ] && LG+=(--reuse-nonce)
CFG=$SCENARIO
[ "$SCENARIO" = register-reauth ] && CFG=register-auth

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    # The next run binds the same ports: let these go first.
    wait 2>/dev/null || true
}
trap cleanup EXIT
rm -rf "$OUT"
mkdir -p "$OUT"

if [ "$CFG" = register-auth ]; then
    # The subscriber table compare.sh makes (10,000 users, password "bench").
    [ -e /tmp/ser-bench/ser-subscriber.db ] || {
        echo "callgrind.sh: run bench/compare.sh register-auth once first (it makes /tmp/ser-bench/ser-subscriber.db)" >&2
        exit 1
    }
fi
case $SCENARIO in forward | call)
    "$LOADGEN" uas --bind "127.0.0.1:$UAS_PORT" -q >"$OUT/uas.log" 2>&1 &
    PIDS+=($!)
    ;;
esac

if [ "${PEER:-ser}" = kamailio ]; then
    valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out.%p" --dump-instr=no \
        --trace-children=yes \
        kamailio -f "$ROOT/bench/configs/kamailio-$CFG.cfg" -L /usr/lib/x86_64-linux-gnu/kamailio/modules \
        -l "udp:127.0.0.1:$PORT" -n 1 -DD -E -x tlsf -m 512 -M 32 -Y "$OUT" \
        >"$OUT/ser.log" 2>&1 &
else
    valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out.%p" --dump-instr=no \
        "$SER" -f "${CONFIG:-$ROOT/bench/configs/$CFG.cfg}" -l 127.0.0.1 -p "$PORT" -n 1 -D -E \
        >"$OUT/ser.log" 2>&1 &
fi
VG=$!
PIDS+=("$VG")
for _ in $(seq 1 300); do
    ss -Hlun "sport = :$PORT" | grep -q . && break
    sleep 0.1
done
ss -Hlun "sport = :$PORT" | grep -q . || { tail "$OUT/ser.log" >&2; exit 1; }
# Warm up (caches, first registrations, lazily built tables), then count N units only.
"$LOADGEN" "${LG[@]}" --target "127.0.0.1:$PORT" --rate "$RATE" --max 200 --t1-ms 2000 -q >/dev/null 2>&1 || true
sleep 1
# Every process under valgrind (Kamailio forks several).
callgrind_control -z >/dev/null 2>&1
"$LOADGEN" "${LG[@]}" --target "127.0.0.1:$PORT" --rate "$RATE" --max "$N" --t1-ms 2000 --json -q \
    >"$OUT/loadgen.json" 2>/dev/null || true
callgrind_control -d >/dev/null 2>&1
sleep 1
kill "$VG" 2>/dev/null || true
pkill -P "$VG" 2>/dev/null || true
wait "$VG" 2>/dev/null || true
python3 - "$OUT" "$N" "$SCENARIO" <<'EOF'
import glob, json, sys
out, n, scenario = sys.argv[1], int(sys.argv[2]), sys.argv[3]
total = 0
# The dumps requested after the measured run (part 1 of every process), summed.
dumps = sorted(glob.glob(out + "/callgrind.out.*.1"))
if not dumps:
    sys.exit("callgrind.sh: no dump written")
for d in dumps:
    for line in open(d):
        if line.startswith("summary:") or line.startswith("totals:"):
            total += int(line.split()[1])
            break
lg = json.load(open(out + "/loadgen.json"))
ok = lg["succeeded"]
print(f"{scenario}: {total / max(ok, 1):,.0f} instructions per unit ({total:,} for {ok} of {n} units ok; {len(dumps)} process(es); dump {dumps[0]})")
EOF
