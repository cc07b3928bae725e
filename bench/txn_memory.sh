#!/usr/bin/env bash
# bench/txn_memory.sh — memory per active INVITE transaction, ser against Kamailio 5.6.
#
# Each server relays N INVITEs (the same 600-byte request, one Call-ID each) statefully to a UDP
# sink that never answers, so every transaction stays alive (fr_timer 60 s); after a pause, the
# growth of what the server holds is divided by the transactions it reports as current:
#   ser:      resident memory (VmRSS of the one process) and `t_stats` over its FIFO;
#   Kamailio: shared memory in use (`kamcmd core.shmmem`, where tm keeps its cells) and
#             `kamcmd tm.stats` (current).
# Usage: bench/txn_memory.sh [N]   (default 10000). Env: SER, KAMAILIO, KAMAILIO_MODULES.
set -euo pipefail
N=${1:-10000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SER=${SER:-$TARGET_DIR/release/ser}
KAMAILIO=${KAMAILIO:-$(command -v kamailio || true)}
KAMAILIO_MODULES=${KAMAILIO_MODULES:-/usr/lib/x86_64-linux-gnu/kamailio/modules}
WORK=$(mktemp -d /tmp/ser-txnmem.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT
[ -x "$SER" ] || (cd "$ROOT" && cargo build --release --bin ser)

# A sink on 127.0.0.1:5091 that reads and never answers.
python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 5091))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
while True: s.recv(65535)
' &
PIDS+=($!)

send_invites() { # port count prefix
    python3 - "$1" "$2" "$3" <<'PY'
import socket, sys, time
port, n, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.bind(("127.0.0.1", 0)); c.setblocking(False)
me = "127.0.0.1:%d" % c.getsockname()[1]
for i in range(n):
    cid = "%s-%d@bench" % (prefix, i)
    body = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    m = ("INVITE sip:uas@127.0.0.1:5091 SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-%s-%d;rport\r\n"
         "Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=%d\r\nTo: <sip:uas@127.0.0.1>\r\n"
         "Call-ID: %s\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@%s>\r\nContent-Type: application/sdp\r\n"
         "Content-Length: %d\r\n\r\n%s") % (me, prefix, i, i, cid, me, len(body), body)
    c.sendto(m.encode(), ("127.0.0.1", port))
    if i % 100 == 99:
        time.sleep(0.02)
        try:
            while True: c.recv(65535)
        except BlockingIOError: pass
PY
}

rss() { awk '/VmRSS/ {print $2 * 1024}' "/proc/$1/status"; }

# ---- ser
cat >"$WORK/ser.cfg" <<'CFG'
loadmodule "sl.so"
loadmodule "tm.so"
modparam("tm", "fr_timer", 60)
route { rewritehostport("127.0.0.1:5091"); t_relay(); }
CFG
"$SER" -f "$WORK/ser.cfg" -D -E -n 1 -l 127.0.0.1:5072 -i "$WORK/ser_fifo" 2>"$WORK/ser.log" &
SPID=$!; PIDS+=($SPID); sleep 1
ser_current() {
    local name=ser_txnmem_$$; mkfifo "/tmp/$name"
    printf ':t_stats:%s\n\n' "$name" >"$WORK/ser_fifo"
    timeout 5 cat "/tmp/$name" | sed -n 's/.*Current: \([0-9]*\).*/\1/p'; rm -f "/tmp/$name"
}
send_invites 5072 200 warm; sleep 1
c0=$(ser_current); r0=$(rss $SPID)
send_invites 5072 "$N" run; sleep 2
c1=$(ser_current); r1=$(rss $SPID)
ser_per=$(( (r1 - r0) / (c1 - c0) ))
echo "ser:      $((c1 - c0)) transactions, RSS $r0 -> $r1 B: $ser_per B per transaction"
kill $SPID

# ---- Kamailio
if [ -n "$KAMAILIO" ]; then
cat >"$WORK/kam.cfg" <<CFG
#!KAMAILIO
debug=0
log_stderror=yes
fork=yes
maxbuffer=4194304
children=1
disable_tcp=yes
auto_aliases=no
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "ctl.so"
loadmodule "kex.so"
loadmodule "pv.so"
modparam("tm", "fr_timer", 60000)
modparam("ctl", "binrpc", "unix:$WORK/kamctl.sock")
request_route { \$du = "sip:127.0.0.1:5091"; t_relay(); exit; }
CFG
"$KAMAILIO" -f "$WORK/kam.cfg" -L "$KAMAILIO_MODULES" -l udp:127.0.0.1:5073 -n 1 -DD -E -x tlsf -m 4096 -M 32 2>"$WORK/kam.log" &
KPID=$!; PIDS+=($KPID); sleep 2
kam() { kamcmd -s "unix:$WORK/kamctl.sock" "$@"; }
kam_used() { kam core.shmmem | awk '/used:/ {print $2; exit}'; }
kam_current() { kam tm.stats | awk '/current:/ {print $2; exit}'; }
send_invites 5073 200 warm; sleep 1
k0=$(kam_current); m0=$(kam_used)
send_invites 5073 "$N" run; sleep 2
k1=$(kam_current); m1=$(kam_used)
kam_per=$(( (m1 - m0) / (k1 - k0) ))
echo "kamailio: $((k1 - k0)) transactions, shm used $m0 -> $m1 B: $kam_per B per transaction"
echo "ratio kamailio/ser: $(python3 -c "print(round($kam_per/$ser_per, 2))")"
fi
