//! Overload and resource bounds (issue #15): a hung database under a flood of authenticating
//! REGISTERs, a flood several times what a shard serves (loadgen, junk), and the transaction
//! table's bound. Loopback only; every loop is bounded in count and time. bench/overload.sh runs
//! the first two against a release build (`SER_BIN`, `LOADGEN`, `OVERLOAD_STRICT`).
#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "support/skip.rs"]
mod skip;
#[path = "support/net.rs"]
mod net;
#[path = "support/peer.rs"]
mod peer;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dataplane::auth::digest::{self, Algorithm, Qop, ResponseInput};
use net::*;

const REGISTRAR: &str = r#"
loadmodule "sl.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
modparam("auth", "secret", "overload-secret")
modparam("auth_db", "calculate_ha1", yes)
modparam("auth_db", "password_column", "password")
route {
	if (method == "OPTIONS") { sl_send_reply("200", "OK"); break; };
	if (!www_authorize("test.example", "subscriber")) {
		www_challenge("test.example", "0");
		break;
	};
	sl_send_reply("200", "OK");
}
"#;

fn register(user: &str, cseq: u32, auth: Option<&str>) -> String {
    let mut s = format!(
        "REGISTER sip:test.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-ov{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@test.example>;tag=r1\r\n\
         To: <sip:{user}@test.example>\r\n\
         Call-ID: overload-{user}@127.0.0.1\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{user}@127.0.0.1:5999>\r\n"
    );
    if let Some(a) = auth {
        s.push_str(&format!("Authorization: {a}\r\n"));
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

fn answer(user: &str, challenge: &str) -> String {
    let c = dataplane::wire::digest::Credentials::parse(challenge.as_bytes()).unwrap();
    let nonce = String::from_utf8_lossy(c.param(b"nonce").unwrap()).into_owned();
    let ha1 = digest::ha1(Algorithm::Md5, user.as_bytes(), b"test.example", b"pw");
    let r = digest::response(&ResponseInput {
        alg: Algorithm::Md5,
        ha1: ha1.as_bytes(),
        nonce: nonce.as_bytes(),
        nc: b"",
        cnonce: b"",
        qop: Qop::None,
        method: b"REGISTER",
        uri: b"sip:test.example",
        body: b"",
    });
    format!(
        "Digest username=\"{user}\", realm=\"test.example\", nonce=\"{nonce}\", uri=\"sip:test.example\", response=\"{}\"",
        String::from_utf8_lossy(r.as_bytes())
    )
}

/// Resident memory of a process, in KiB (VmRSS of /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A "database" that accepts connections and never says a word; the connections are held until
/// the returned guard is dropped.
fn hung_database() -> (String, Arc<Mutex<Vec<std::net::TcpStream>>>) {
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("mysql://ser:ser@{}/ser", hung.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    std::thread::spawn(move || {
        for s in hung.incoming().flatten() {
            let mut v = h.lock().unwrap();
            if v.len() < 1000 {
                v.push(s);
            }
        }
    });
    (url, held)
}

/// Sends OPTIONS every 50 ms until `stop`; the worst round trip and how many went unanswered.
fn probe(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(Duration, u32, u32)> {
    std::thread::spawn(move || {
        let sock = udp_client("127.0.0.1");
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let me = sock.local_addr().unwrap().to_string();
        let (mut worst, mut lost, mut sent) = (Duration::ZERO, 0u32, 0u32);
        let mut buf = vec![0u8; 65536];
        for i in 0..400 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let opt = request(
                "OPTIONS",
                "sip:test.example",
                &me,
                "UDP",
                &format!("probe{i}@t"),
            );
            let t = Instant::now();
            sock.send_to(opt.as_bytes(), addr).unwrap();
            sent += 1;
            // Read until this probe's own 200 (a late answer to an earlier one is skipped).
            let want = format!("probe{i}@t");
            loop {
                match sock.recv_from(&mut buf) {
                    Ok((n, _)) if String::from_utf8_lossy(&buf[..n]).contains(&want) => {
                        worst = worst.max(t.elapsed());
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        lost += 1;
                        break;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        (worst, lost, sent)
    })
}

/// Counts the replies arriving on `sock` by status code until `stop` (and 1 s of silence after).
fn count_replies(
    sock: UdpSocket,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<std::collections::BTreeMap<u16, u64>> {
    std::thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut by_code = std::collections::BTreeMap::new();
        let mut buf = vec![0u8; 65536];
        let mut quiet_since: Option<Instant> = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match sock.recv_from(&mut buf) {
                Ok((n, _)) => {
                    quiet_since = None;
                    let text = String::from_utf8_lossy(&buf[..n]);
                    let code = text.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0u16);
                    *by_code.entry(code).or_insert(0) += 1;
                }
                Err(_) => {
                    if stop.load(Ordering::Relaxed) {
                        let q = *quiet_since.get_or_insert_with(Instant::now);
                        if q.elapsed() > Duration::from_secs(1) {
                            break;
                        }
                    }
                }
            }
        }
        by_code
    })
}

/// The issue's first "Done when": a database that accepts and never answers, 4,000 authenticating
/// REGISTERs/s for 5 s. OPTIONS are answered quickly throughout, no REGISTER is told its password
/// is wrong (never 401), those that cannot be served get 500/503, and memory stays bounded.
#[test]
fn a_hung_database_under_4000_registers_a_second() {
    let (url, held) = hung_database();
    let port = free_port("127.0.0.1");
    let ser = Ser::start_with_env(
        REGISTRAR,
        &["-l", "127.0.0.1", "-p", &port.to_string()],
        &[("SER_DB_URL", &url), ("SER_DB_TIMEOUT_MS", "1000")],
    );
    let pid = ser.child.id();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // One challenge per user; the flood reuses each user's answer (no qop: no nonce-count).
    let users: Vec<String> = (0..50).map(|i| format!("u{i}")).collect();
    let setup = udp_client("127.0.0.1");
    let answers: Vec<(String, String)> = users
        .iter()
        .map(|u| {
            let r = udp_exchange(&setup, addr, register(u, 1, None).as_bytes()).expect("401");
            assert_eq!(status_line(&r), "SIP/2.0 401 Unauthorized", "{r}");
            let ch = header(&r, "WWW-Authenticate").unwrap().to_owned();
            (u.clone(), answer(u, &ch))
        })
        .collect();
    let rss0 = rss_kib(pid);

    // A timed-out lookup answers every REGISTER merged into it at once: thousands of 500s in a
    // burst, more than a default receive buffer holds (a release ser answers them all; the
    // kernel would drop them here, at the client). 8 MiB asked, what rmem_max allows given.
    let sender =
        dataplane::transport::bind_udp("127.0.0.1:0".parse().unwrap(), Some(8 << 20)).unwrap();
    sender.set_nonblocking(false).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let counts = count_replies(sender.try_clone().unwrap(), stop.clone());
    let probing = Arc::new(AtomicBool::new(false));
    let prober = probe(addr, probing.clone());
    let peak = Arc::new(AtomicU64::new(rss0));
    let (pk, st) = (peak.clone(), stop.clone());
    let sampler = std::thread::spawn(move || {
        for _ in 0..400 {
            if st.load(Ordering::Relaxed) {
                break;
            }
            pk.fetch_max(rss_kib(pid), Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(50));
        }
    });

    // 4,000/s for 5 s: 40 every 10 ms, 20,000 in all.
    let start = Instant::now();
    let mut sent = 0u64;
    for tick in 0..500u32 {
        for k in 0..40u32 {
            let (u, a) = &answers[(tick as usize * 40 + k as usize) % answers.len()];
            let msg = register(u, 2 + tick * 40 + k, Some(a));
            if sender.send_to(msg.as_bytes(), addr).is_ok() {
                sent += 1;
            }
        }
        let due = start + Duration::from_millis(10 * u64::from(tick + 1));
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    let flood = start.elapsed();
    // The last lookups time out (1 s) and are answered; then the counts are final.
    std::thread::sleep(Duration::from_millis(1500));
    probing.store(true, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let by_code = counts.join().unwrap();
    let (worst, lost, probes) = prober.join().unwrap();
    sampler.join().unwrap();
    let rss1 = peak.load(Ordering::Relaxed);
    let answered: u64 = by_code.values().sum();
    eprintln!(
        "hung db: sent {sent} in {flood:?}; replies {by_code:?}; probe worst {worst:?}, \
         {lost}/{probes} lost; RSS {rss0} -> peak {rss1} KiB"
    );
    assert_eq!(by_code.get(&401), None, "never 401 while the DB hangs");
    assert_eq!(by_code.get(&200), None, "nothing can be authorised");
    assert!(
        by_code.keys().all(|c| *c == 500 || *c == 503),
        "{by_code:?}"
    );
    // What the kernel drops before ser reads it (its receive buffer full: a debug build on a
    // shared 2-core box does not keep up with 4,000/s, and the probe shares that socket) is not
    // answered; what ser reads is. The issue's 100 ms for the probe holds only where ser keeps
    // up (a release build, asserted under OVERLOAD_STRICT below): a debug build's figures are
    // printed, and service must be back at once.
    assert!(answered > 0, "{answered} of {sent} answered");
    assert!(lost < probes, "{lost} of {probes} probes unanswered");
    // A release build (bench/overload.sh sets OVERLOAD_STRICT): the issue's figures exactly.
    if std::env::var_os("OVERLOAD_STRICT").is_some() {
        assert_eq!(lost, 0, "probes unanswered");
        assert!(worst < Duration::from_millis(100), "probe worst {worst:?}");
        assert_eq!(
            answered, sent,
            "every REGISTER answered 500/503: {by_code:?}"
        );
    }
    let after = udp_client("127.0.0.1");
    let me = after.local_addr().unwrap().to_string();
    let t = Instant::now();
    let opt = request("OPTIONS", "sip:test.example", &me, "UDP", "after@t");
    let r = udp_exchange(&after, addr, opt.as_bytes()).expect("OPTIONS after the flood");
    assert_eq!(status_line(&r), "SIP/2.0 200 OK");
    assert!(t.elapsed() < Duration::from_secs(1), "full service at once");
    assert!(
        rss1.saturating_sub(rss0) < 100 * 1024,
        "RSS grew {rss0} -> {rss1} KiB"
    );
    drop(ser);
    drop(held);
}

/// With `SER_MAX_TRANSACTIONS=2`, two INVITEs relayed to a peer that never answers hold the
/// table; a third new transaction is refused at once with 503 and Retry-After, and a
/// retransmission of a live one is still absorbed.
#[test]
fn the_transaction_table_is_bounded() {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (ser, addr) = relay_with_two_transactions(&sink);
    let sock = udp_client("127.0.0.1");
    let me = sock.local_addr().unwrap().to_string();
    let invite = |i: u32| {
        request(
            "INVITE",
            "sip:b@test.example",
            &me,
            "UDP",
            &format!("txn{i}@t"),
        )
    };
    let mut buf = vec![0u8; 65536];
    sink.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    for i in 0..2 {
        sock.send_to(invite(i).as_bytes(), addr).unwrap();
        let (n, _) = sink.recv_from(&mut buf).expect("relayed");
        assert!(buf[..n].starts_with(b"INVITE "));
    }
    let t = Instant::now();
    let r = udp_exchange(&sock, addr, invite(2).as_bytes())
        .unwrap_or_else(|| panic!("no reply; log:\n{}", ser.log_text()));
    // A 100 Trying of the first two may come first: read on to the third's answer.
    let mut r = r;
    for _ in 0..5 {
        if r.contains("txn2@t") {
            break;
        }
        let (n, _) = sock.recv_from(&mut buf).expect("a reply");
        r = String::from_utf8_lossy(&buf[..n]).into_owned();
    }
    assert_eq!(status_line(&r), "SIP/2.0 503 Service Unavailable", "{r}");
    assert_eq!(header(&r, "Retry-After"), Some("5"), "{r}");
    assert!(t.elapsed() < Duration::from_secs(1), "refused at once");
}

/// A full table whose transactions are all answered (lingering only for their retransmission
/// timers, 32 s on UDP) makes room: the oldest is forgotten and the new request is relayed, not
/// refused; sustained calls are then not capped at table size / 32 s.
#[test]
fn a_full_table_forgets_its_oldest_answered_transaction_first() {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (ser, addr) = relay_with_two_transactions(&sink);
    let sock = udp_client("127.0.0.1");
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let me = sock.local_addr().unwrap().to_string();
    let mut buf = vec![0u8; 65536];
    sink.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    for i in 0..5u32 {
        let m = request(
            "MESSAGE",
            "sip:b@test.example",
            &me,
            "UDP",
            &format!("msg{i}@t"),
        );
        sock.send_to(m.as_bytes(), addr).unwrap();
        let (n, from) = sink
            .recv_from(&mut buf)
            .unwrap_or_else(|_| panic!("MESSAGE {i} not relayed; log:\n{}", ser.log_text()));
        let relayed = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(relayed.starts_with("MESSAGE "), "{relayed}");
        // The far end answers 200: the transaction now only waits for Timer J.
        let ok = peer::reply_to(&relayed, 200, "OK", "far");
        sink.send_to(ok.as_bytes(), from).unwrap();
        let (n, _) = sock.recv_from(&mut buf).expect("the 200 relayed back");
        let r = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
    }
}

/// A ser that relays every request statefully to `sink` and keeps at most two transactions.
fn relay_with_two_transactions(sink: &UdpSocket) -> (Ser, SocketAddr) {
    let sport = sink.local_addr().unwrap().port();
    let cfg = format!(
        "loadmodule \"sl.so\"\nloadmodule \"tm.so\"\n\
         route {{\n if (!t_relay_to_udp(\"127.0.0.1\", \"{sport}\")) {{ sl_reply_error(); }};\n}}\n"
    );
    let port = free_port("127.0.0.1");
    let ser = Ser::start_with_env(
        &cfg,
        &["-l", "127.0.0.1", "-p", &port.to_string()],
        &[("SER_MAX_TRANSACTIONS", "2")],
    );
    (ser, format!("127.0.0.1:{port}").parse().unwrap())
}

/// OPTIONS answered by ser itself, REGISTERs saved in memory: the work of a registrar.
const FLOOD_CFG: &str = r#"
loadmodule "sl.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
route {
	if (method == "OPTIONS") { sl_send_reply("200", "OK"); break; };
	if (method == "REGISTER") { save("location"); break; };
	sl_send_reply("404", "Not Here");
}
"#;

/// loadgen: `LOADGEN`, else the one beside the ser binary under test.
fn loadgen_bin() -> Option<PathBuf> {
    let p = std::env::var("LOADGEN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_BIN_EXE_ser")).with_file_name("loadgen"));
    p.exists().then_some(p)
}

/// `/metrics` as name{labels} → value.
fn metrics(port: u16) -> std::collections::BTreeMap<String, f64> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines()
        .filter(|l| l.starts_with("ser_"))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// JSON-RPC `stats` over `POST /rpc`: its result.
fn rpc_stats(port: u16) -> serde_json::Value {
    let body = r#"{"jsonrpc":"2.0","method":"stats","id":1}"#;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let json = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str::<serde_json::Value>(json).unwrap_or_default()["result"].clone()
}

fn sum_of(m: &std::collections::BTreeMap<String, f64>, prefix: &str) -> u64 {
    m.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| *v as u64)
        .sum()
}

/// Sends OPTIONS with `call` and retransmits it every 50 ms until a reply names it or `within`
/// passes: the status code and how long it took.
fn ask_options(
    sock: &UdpSocket,
    addr: SocketAddr,
    call: &str,
    within: Duration,
) -> Option<(u16, Duration)> {
    let me = sock.local_addr().unwrap().to_string();
    let opt = request("OPTIONS", "sip:flood.test", &me, "UDP", call);
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let t = Instant::now();
    while t.elapsed() < within {
        sock.send_to(opt.as_bytes(), addr).unwrap();
        let resend = Instant::now() + Duration::from_millis(50);
        while Instant::now() < resend {
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                if text.contains(call) {
                    let code = text.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0);
                    return Some((code, t.elapsed()));
                }
            }
        }
    }
    None
}

/// The issue's flood: loadgen REGISTERs from several sockets far beyond what one shard serves,
/// raw junk datagrams and a steady OPTIONS sender beside it, for 3 s. Every datagram is
/// accounted for in /metrics (handled, refused with 503, or dropped by the kernel with its
/// receive buffer full, and counted), every 503 carries Retry-After, a probe's OPTIONS is
/// answered during the flood, memory stays bounded, and full service is back within 1 s of the
/// flood's end. loadgen offers `OVERLOAD_RATE` new REGISTERs/s (default 50,000) from
/// `OVERLOAD_LG_THREADS` threads (default 2), retransmissions on top: on a 2-core box its threads
/// take most of the CPU, so the flood is several times what the shard gets, idle box or busy.
#[test]
fn a_flood_beyond_capacity_is_refused_or_counted_and_service_is_back_within_a_second() {
    let Some(lg) = loadgen_bin() else {
        skip!("no loadgen binary beside ser (cargo build -p loadgen)");
    };
    let rate = std::env::var("OVERLOAD_RATE").unwrap_or_else(|_| "50000".into());
    let threads = std::env::var("OVERLOAD_LG_THREADS").unwrap_or_else(|_| "2".into());
    // ser's receive buffer (-b): 1 MiB by default, so that what waits in it when the flood ends
    // is worked off within the second even by a debug build on a busy box (bench/overload.sh
    // runs a release build with the default 4 MiB).
    let rcvbuf = std::env::var("OVERLOAD_RCVBUF").unwrap_or_else(|_| "1048576".into());
    let (port, hp) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let ser = Ser::start_with_env(
        FLOOD_CFG,
        &[
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            &format!("--http=127.0.0.1:{hp}"),
            "-b",
            &rcvbuf,
        ],
        &[],
    );
    let pid = ser.child.id();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let rss0 = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(rss0));

    let target = addr.to_string();
    let loadgen = Command::new("timeout")
        .args(["30"])
        .arg(&lg)
        .args(["register", "--target", &target, "--users", "f%d@flood.test"])
        .args(["--range", "1-5000", "--sockets", "4", "--threads", &threads])
        .args(["--rate", &rate, "--duration", "3", "--json", "-q"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let flood_for = Duration::from_secs(3);
    // Junk: not SIP, truncated SIP, binary, big; at most 60,000 in 3 s.
    let junk = std::thread::spawn(move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let shapes: [&[u8]; 4] = [
            b"hello there",
            b"INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4\r\nCall-",
            &[0xff, 0, 0x80, 13, 10, 13, 10, 7],
            &[b'x'; 1400],
        ];
        let mut sent = 0u64;
        for i in 0..60_000usize {
            if start.elapsed() >= flood_for {
                break;
            }
            if s.send_to(shapes[i % 4], addr).is_ok() {
                sent += 1;
            }
            if i % 20 == 19 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        sent
    });
    // A steady client beside the flood: OPTIONS at ~1,000/s; every 503 must say Retry-After.
    let steady = std::thread::spawn(move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_nonblocking(true).unwrap();
        let me = s.local_addr().unwrap().to_string();
        let mut buf = vec![0u8; 65536];
        let (mut sent, mut by_code) = (0u64, std::collections::BTreeMap::<u16, u64>::new());
        let mut without_retry_after = 0u64;
        let end = start + flood_for + Duration::from_secs(2);
        let mut i = 0u32;
        while Instant::now() < end {
            if start.elapsed() < flood_for && i < 3000 {
                let m = request("OPTIONS", "sip:flood.test", &me, "UDP", &format!("st{i}@t"));
                if s.send_to(m.as_bytes(), addr).is_ok() {
                    sent += 1;
                }
                i += 1;
            }
            while let Ok((n, _)) = s.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                let code = text.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0u16);
                if code == 503 && header(&text, "Retry-After").is_none() {
                    without_retry_after += 1;
                }
                *by_code.entry(code).or_insert(0) += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        (sent, by_code, without_retry_after)
    });
    // A probe: one OPTIONS every 250 ms during the flood, each retransmitted until answered.
    let probe = std::thread::spawn(move || {
        let s = udp_client("127.0.0.1");
        let mut rounds = Vec::new();
        for i in 0..12 {
            if start.elapsed() >= flood_for {
                break;
            }
            rounds.push(ask_options(
                &s,
                addr,
                &format!("probe{i}@t"),
                Duration::from_secs(2),
            ));
            std::thread::sleep(Duration::from_millis(250));
        }
        rounds
    });
    let (pk, st) = (peak.clone(), stop.clone());
    let sampler = std::thread::spawn(move || {
        for _ in 0..400 {
            if st.load(Ordering::Relaxed) {
                break;
            }
            pk.fetch_max(rss_kib(pid), Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(50));
        }
    });

    // The flood ends: loadgen stops sending (and retransmitting) when told to.
    std::thread::sleep(flood_for.saturating_sub(start.elapsed()) + Duration::from_millis(200));
    let _ = Command::new("kill")
        .args(["-TERM", &loadgen.id().to_string()])
        .status();
    let junk_sent = junk.join().unwrap();
    let ended = Instant::now();
    // Full service: a new client's OPTIONS is answered 200 within 1 s of the end (what waited in
    // the socket at the end may still be shed: a new OPTIONS every 100 ms until one gets 200).
    let after = udp_client("127.0.0.1");
    let mut back = None;
    for i in 0..50 {
        let call = format!("after{i}@t");
        if let Some((code, _)) = ask_options(&after, addr, &call, Duration::from_millis(100)) {
            back = Some((code, ended.elapsed()));
            if code == 200 {
                break;
            }
        }
    }
    let out = loadgen.wait_with_output().unwrap();
    let lgv: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "loadgen JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let (steady_sent, steady_codes, no_retry_after) = steady.join().unwrap();
    let rounds = probe.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    // Two ticks: the kernel's drop count is read every 100 ms.
    std::thread::sleep(Duration::from_millis(300));
    let m = metrics(hp);
    // The management RPC's `stats` says the same (the counters only grow; none moves now).
    let st = rpc_stats(hp);
    for (key, metric) in [
        ("overload_503", "ser_overload_503_total"),
        ("rcvbuf_drops", "ser_rcvbuf_drops_total"),
        ("overload_entered", "ser_overload_entered_total"),
    ] {
        assert_eq!(st[key].as_u64(), Some(sum_of(&m, metric)), "{key}: {st}");
    }
    assert!(
        st["queue_delay_us"].is_u64() && st["overloaded_shards"].is_u64(),
        "{st}"
    );
    let n = |k: &str| lgv[k].as_u64().unwrap_or(0);
    let lg_sent = n("started") + n("retransmissions") - n("send_drops");
    let offered = lg_sent + junk_sent + steady_sent;
    let handled = sum_of(&m, "ser_shard_messages_total");
    let refused = sum_of(&m, "ser_overload_503_total");
    let kernel = sum_of(&m, "ser_rcvbuf_drops_total");
    // Shed beyond what a turn can refuse, or junk (which a handler also counts as handled).
    let dropped = sum_of(&m, "ser_dropped_total");
    let rss1 = peak.load(Ordering::Relaxed);
    let answered: Vec<_> = rounds.iter().flatten().collect();
    eprintln!(
        "flood: loadgen {} sent ({} started at {:.0}/s, {} succeeded, failures {}), junk {junk_sent}, \
         steady {steady_sent} ({steady_codes:?}); ser handled {handled}, refused 503 {refused}, \
         kernel drops {kernel}, dropped {dropped}, overloaded {} time(s); probe rounds {}/{} answered, worst {:?}; \
         after the flood {back:?}; RSS {rss0} -> peak {rss1} KiB",
        lg_sent,
        n("started"),
        lgv["achieved_rate"].as_f64().unwrap_or(0.0),
        n("succeeded"),
        lgv["failures"],
        sum_of(&m, "ser_overload_entered_total"),
        answered.len(),
        rounds.len(),
        answered.iter().map(|(_, d)| *d).max(),
    );
    // The flood went well beyond capacity: more refused or dropped than served.
    assert!(
        refused + kernel + dropped > handled,
        "not overloaded: {m:?}"
    );
    assert!(sum_of(&m, "ser_overload_entered_total") >= 1, "{m:?}");
    // Every datagram sent is accounted for: served, refused with 503, or counted as dropped
    // (the probes' few are left out of `offered`, hence at least; junk the script saw is both
    // handled and dropped, hence the slack).
    let accounted = handled + refused + kernel + dropped;
    assert!(
        accounted >= offered && accounted <= offered + junk_sent + 1000,
        "offered {offered}, accounted {accounted} = {handled} + {refused} + {kernel} + {dropped}"
    );
    assert!(refused > 0, "no 503 at all: {m:?}");
    assert_eq!(
        no_retry_after, 0,
        "503s without Retry-After: {steady_codes:?}"
    );
    assert!(
        steady_codes.keys().all(|c| *c == 200 || *c == 503),
        "{steady_codes:?}"
    );
    assert!(
        answered.len() * 2 >= rounds.len(),
        "probes unanswered during the flood: {rounds:?}"
    );
    let (code, took) = back.expect("OPTIONS after the flood");
    assert_eq!(code, 200, "after the flood");
    assert!(took < Duration::from_secs(1), "service back after {took:?}");
    assert!(
        rss1.saturating_sub(rss0) < 100 * 1024,
        "RSS grew {rss0} -> {rss1} KiB"
    );
    drop(ser);
}
