//! The server with its database down: SIP keeps flowing, start-up and a clean shutdown are not
//! delayed by the database.
#![allow(clippy::unwrap_used)]

#[path = "support/net.rs"]
mod net;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use dataplane::auth::digest::{self, Algorithm, Qop, ResponseInput};
use net::*;

#[test]
fn sip_flows_and_shutdown_is_prompt_while_the_database_is_down() {
    let port = free_port("127.0.0.1");
    let p = port.to_string();
    let started = Instant::now();
    let mut ser = Ser::start_with_env(
        MIN_CFG,
        &["-l", "127.0.0.1", "-p", p.as_str()],
        &[("SER_DB_URL", "postgres://postgres@127.0.0.1:1/ser")],
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let client = udp_client("127.0.0.1");
    let me = client.local_addr().unwrap().to_string();
    let req = request(
        "OPTIONS",
        &format!("sip:127.0.0.1:{port}"),
        &me,
        "UDP",
        "db-down-1@test",
    );
    let reply = udp_exchange(
        &client,
        format!("127.0.0.1:{port}").parse().unwrap(),
        req.as_bytes(),
    )
    .expect("a reply while the DB is down");
    assert_eq!(status_line(&reply), "SIP/2.0 200 OK", "{reply}");
    let stopping = Instant::now();
    let st = ser.terminate(Duration::from_secs(10)).expect("ser exits");
    assert!(st.success(), "{st:?}\n{}", ser.log_text());
    assert!(stopping.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_schema_version_mismatch_is_reported_at_start() {
    let dir = std::env::temp_dir().join(format!("ser-dbver-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ser.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE version (table_name varchar(64) NOT NULL, table_version smallint NOT NULL);
             INSERT INTO version VALUES ('location', '3');",
        )
        .unwrap();
    }
    let url = format!("sqlite://{}", path.display());
    let port = free_port("127.0.0.1");
    let p = port.to_string();
    let ser = Ser::start_with_env(
        MIN_CFG,
        &["-l", "127.0.0.1", "-p", p.as_str()],
        &[("SER_DB_URL", url.as_str())],
    );
    assert!(
        ser.wait_log(
            "table location is version 3 but this ser needs version 6",
            Duration::from_secs(10)
        ),
        "{}",
        ser.log_text()
    );
    drop(ser);
    let _ = std::fs::remove_dir_all(&dir);
}

const REGISTRAR: &str = r#"
loadmodule "sl.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
modparam("auth", "secret", "outage-secret")
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

fn register(cseq: u32, auth: Option<&str>) -> String {
    let mut s = format!(
        "REGISTER sip:test.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-out{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@test.example>;tag=r1\r\n\
         To: <sip:alice@test.example>\r\n\
         Call-ID: outage@127.0.0.1\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:alice@127.0.0.1:5999>\r\n"
    );
    if let Some(a) = auth {
        s.push_str(&format!("Authorization: {a}\r\n"));
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

fn answer(challenge: &str) -> String {
    let c = dataplane::wire::digest::Credentials::parse(challenge.as_bytes()).unwrap();
    let nonce = String::from_utf8_lossy(c.param(b"nonce").unwrap()).into_owned();
    let ha1 = digest::ha1(Algorithm::Md5, b"alice", b"test.example", b"wonderland");
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
        "Digest username=\"alice\", realm=\"test.example\", nonce=\"{nonce}\", uri=\"sip:test.example\", response=\"{}\"",
        String::from_utf8_lossy(r.as_bytes())
    )
}

/// A digest REGISTER whose subscriber lookup fails (DB refused) or never gets an answer (DB hung)
/// is answered 500, as SER's auth_db did, never 401 (which tells the phone its password is
/// wrong); the wait is bounded, and OPTIONS are answered meanwhile.
fn register_gets_500(url: &str) {
    let port = free_port("127.0.0.1");
    let ser = Ser::start_with_env(
        REGISTRAR,
        &["-l", "127.0.0.1", "-p", &port.to_string()],
        &[("SER_DB_URL", url)],
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let sock = udp_client("127.0.0.1");
    let r = udp_exchange(&sock, addr, register(1, None).as_bytes()).expect("a challenge");
    assert_eq!(status_line(&r), "SIP/2.0 401 Unauthorized", "{r}");
    let ch = header(&r, "WWW-Authenticate").unwrap().to_owned();
    let sent = Instant::now();
    sock.send_to(register(2, Some(&answer(&ch))).as_bytes(), addr)
        .unwrap();
    // OPTIONS from another socket while the REGISTER waits for the database.
    let probe = udp_client("127.0.0.1");
    let me = probe.local_addr().unwrap().to_string();
    let opt = request("OPTIONS", "sip:test.example", &me, "UDP", "probe@t");
    let t = Instant::now();
    let o = udp_exchange(&probe, addr, opt.as_bytes()).expect("OPTIONS answered");
    assert_eq!(status_line(&o), "SIP/2.0 200 OK");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "OPTIONS answered at once"
    );
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let r = recv_reply(&sock).unwrap_or_else(|| panic!("no reply; log:\n{}", ser.log_text()));
    assert_eq!(
        status_line(&r),
        "SIP/2.0 500 Server Internal Error",
        "{r}\n{}",
        ser.log_text()
    );
    // The default bound is 3 s (SER_DB_TIMEOUT_MS).
    let waited = sent.elapsed();
    assert!(waited < Duration::from_secs(5), "bounded wait: {waited:?}");
}

fn recv_reply(sock: &UdpSocket) -> Option<String> {
    let mut buf = vec![0u8; 65536];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn digest_register_gets_500_when_the_database_refuses() {
    register_gets_500("postgres://postgres@127.0.0.1:1/ser");
}

#[test]
fn digest_register_gets_500_when_the_database_hangs() {
    // A MySQL server that accepts connections and never says a word.
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("mysql://ser:ser@{}/ser", hung.local_addr().unwrap());
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = held.clone();
    std::thread::spawn(move || {
        for s in hung.incoming().flatten() {
            h.lock().unwrap().push(s);
        }
    });
    register_gets_500(&url);
    drop(held);
}

/// With `SER_MAX_PARKED=1`, while one REGISTER waits for a hung database, the next one that would
/// wait is refused at once with 503 and Retry-After instead of being kept.
#[test]
fn waiting_requests_are_bounded_and_refused_with_503() {
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("mysql://ser:ser@{}/ser", hung.local_addr().unwrap());
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = held.clone();
    std::thread::spawn(move || {
        for s in hung.incoming().flatten() {
            h.lock().unwrap().push(s);
        }
    });
    let port = free_port("127.0.0.1");
    let ser = Ser::start_with_env(
        REGISTRAR,
        &["-l", "127.0.0.1", "-p", &port.to_string(), "-n", "1"],
        &[("SER_DB_URL", &url), ("SER_MAX_PARKED", "1")],
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let sock = udp_client("127.0.0.1");
    let r = udp_exchange(&sock, addr, register(1, None).as_bytes()).expect("a challenge");
    let ch = header(&r, "WWW-Authenticate").unwrap().to_owned();
    sock.send_to(register(2, Some(&answer(&ch))).as_bytes(), addr)
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let r = udp_exchange(&sock, addr, register(3, Some(&answer(&ch))).as_bytes())
        .unwrap_or_else(|| panic!("no reply; log:\n{}", ser.log_text()));
    assert_eq!(status_line(&r), "SIP/2.0 503 Service Unavailable", "{r}");
    assert_eq!(header(&r, "Retry-After"), Some("5"), "{r}");
    assert!(t.elapsed() < Duration::from_secs(1), "refused at once");
    // The parked one still gets its answer (500: the database never answers).
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let r = recv_reply(&sock).expect("the waiting REGISTER is answered");
    assert_eq!(status_line(&r), "SIP/2.0 500 Server Internal Error", "{r}");
    drop(held);
}
