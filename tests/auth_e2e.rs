//! Digest authentication end to end: the real `ser` over loopback, with real peers (SIPp's
//! `[authentication]`, `sipsak -U -a`) and a subscriber table in an SQLite file (created with the
//! `sqlite3` command-line tool, handed to ser through `SER_DB_URL`).
#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "support/skip.rs"]
mod skip;
#[path = "support/net.rs"]
mod net;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use dataplane::auth::digest::{self, Algorithm, Qop, ResponseInput};
use net::*;

/// A fresh SQLite file with SER's subscriber and grp tables and `users` (user, password) in
/// domain `realm`; `None` (and a "skipped" line) without the sqlite3 tool.
fn subscriber_db(test: &str, realm: &str, users: &[(&str, &str)]) -> Option<PathBuf> {
    if !have("sqlite3") {
        skip::report(
            None,
            &format!("{test}: the sqlite3 tool is not installed (apt-get install sqlite3)"),
        );
        return None;
    }
    let p = std::env::temp_dir().join(format!("ser-auth-{}-{test}.db", std::process::id()));
    remove_sqlite(&p);
    let mut sql = String::from(
        "CREATE TABLE subscriber (username VARCHAR(64) NOT NULL DEFAULT '', domain VARCHAR(64) NOT NULL DEFAULT '', \
         password VARCHAR(64) NOT NULL DEFAULT '', ha1 VARCHAR(128) NOT NULL DEFAULT '', ha1b VARCHAR(128) NOT NULL DEFAULT '');\n\
         CREATE TABLE grp (username VARCHAR(64) NOT NULL DEFAULT '', domain VARCHAR(64) NOT NULL DEFAULT '', grp VARCHAR(64) NOT NULL DEFAULT '');\n",
    );
    for (u, pw) in users {
        let ha1 = digest::ha1(
            Algorithm::Md5,
            u.as_bytes(),
            realm.as_bytes(),
            pw.as_bytes(),
        );
        sql.push_str(&format!(
            "INSERT INTO subscriber (username, domain, password, ha1) VALUES ('{u}', '{realm}', '{pw}', '{}');\n",
            String::from_utf8_lossy(ha1.as_bytes())
        ));
    }
    let st = Command::new("sqlite3").arg(&p).arg(&sql).status().unwrap();
    assert!(st.success(), "sqlite3 failed");
    Some(p)
}

/// A registrar that checks credentials and identity, answering 200 itself (no usrloc needed).
const REGISTRAR: &str = r#"
loadmodule "sl.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
loadmodule "uri.so"
modparam("auth", "secret", "e2e-secret")
modparam("auth_db", "calculate_ha1", yes)
modparam("auth_db", "password_column", "password")
route {
	if (method == "REGISTER") {
		if (!www_authorize("test.example", "subscriber")) {
			www_challenge("test.example", "QOP");
			break;
		};
		if (!check_to()) {
			sl_send_reply("403", "Forbidden - not your identity");
			break;
		};
		sl_send_reply("200", "OK");
		break;
	};
	sl_send_reply("404", "Not Found");
}
"#;

fn start(qop: &str, db: Option<&PathBuf>) -> (Ser, SocketAddr) {
    let port = free_port("127.0.0.1");
    let url = db.map(|p| format!("sqlite://{}", p.display()));
    let env: Vec<(&str, &str)> = url.iter().map(|u| ("SER_DB_URL", u.as_str())).collect();
    let ser = Ser::start_with_env(
        &REGISTRAR.replace("QOP", qop),
        &["-l", "127.0.0.1", "-p", &port.to_string()],
        &env,
    );
    (ser, format!("127.0.0.1:{port}").parse().unwrap())
}

fn register(to_user: &str, auth: Option<&str>, cseq: u32) -> String {
    let mut s = format!(
        "REGISTER sip:test.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-reg{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{to_user}@test.example>;tag=r1\r\n\
         To: <sip:{to_user}@test.example>\r\n\
         Call-ID: reg-e2e@127.0.0.1\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{to_user}@127.0.0.1:5999>\r\n"
    );
    if let Some(a) = auth {
        s.push_str(&format!("Authorization: {a}\r\n"));
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

fn param(challenge: &str, name: &str) -> String {
    let c = dataplane::wire::digest::Credentials::parse(challenge.as_bytes()).unwrap();
    String::from_utf8_lossy(c.param(name.as_bytes()).unwrap()).into_owned()
}

fn answer(user: &str, pw: &str, challenge: &str, nc: Option<u32>) -> String {
    let nonce = param(challenge, "nonce");
    let ha1 = digest::ha1(
        Algorithm::Md5,
        user.as_bytes(),
        b"test.example",
        pw.as_bytes(),
    );
    let ncs = nc.map(|n| format!("{n:08x}")).unwrap_or_default();
    let r = digest::response(&ResponseInput {
        alg: Algorithm::Md5,
        ha1: ha1.as_bytes(),
        nonce: nonce.as_bytes(),
        nc: ncs.as_bytes(),
        cnonce: b"e2ec",
        qop: if nc.is_some() { Qop::Auth } else { Qop::None },
        method: b"REGISTER",
        uri: b"sip:test.example",
        body: b"",
    });
    let mut v = format!(
        "Digest username=\"{user}\", realm=\"test.example\", nonce=\"{nonce}\", uri=\"sip:test.example\", response=\"{}\"",
        String::from_utf8_lossy(r.as_bytes())
    );
    if nc.is_some() {
        v.push_str(&format!(", qop=auth, nc={ncs}, cnonce=\"e2ec\""));
    }
    v
}

fn exchange(sock: &std::net::UdpSocket, to: SocketAddr, req: &str) -> String {
    udp_exchange(sock, to, req.as_bytes()).expect("a reply within 3 s")
}

#[test]
fn register_without_credentials_is_challenged_over_udp() {
    let (_ser, addr) = start("1", None);
    let sock = udp_client("127.0.0.1");
    let r = exchange(&sock, addr, &register("alice", None, 1));
    assert_eq!(status_line(&r), "SIP/2.0 401 Unauthorized", "{r}");
    let ch = header(&r, "WWW-Authenticate").unwrap();
    assert!(
        ch.starts_with("Digest realm=\"test.example\", nonce=\""),
        "{ch}"
    );
    assert!(ch.ends_with("qop=\"auth\""), "{ch}");
    assert_eq!(param(ch, "nonce").len(), 48);
    // a forged nonce is no better than none
    let forged = ch.replace(&param(ch, "nonce")[..8], "7fffffff");
    let r = exchange(
        &sock,
        addr,
        &register("alice", Some(&answer("alice", "pw", &forged, Some(1))), 2),
    );
    assert_eq!(status_line(&r), "SIP/2.0 401 Unauthorized", "{r}");
    assert!(!r.contains("stale"), "{r}");
}

#[test]
fn malformed_credentials_get_400_over_udp() {
    let (_ser, addr) = start("0", None);
    let sock = udp_client("127.0.0.1");
    let r = exchange(
        &sock,
        addr,
        &register(
            "alice",
            Some("Digest username=\"alice\", realm=\"test.example\", uri=\"sip:test.example\""),
            1,
        ),
    );
    assert!(status_line(&r).starts_with("SIP/2.0 400 "), "{r}");
}

#[test]
fn register_with_password_and_check_to_over_udp() {
    let Some(db) = subscriber_db(
        "checkto",
        "test.example",
        &[("alice", "wonderland"), ("bob", "builder")],
    ) else {
        return;
    };
    let (ser, addr) = start("1", Some(&db));
    let sock = udp_client("127.0.0.1");
    let r = exchange(&sock, addr, &register("alice", None, 1));
    let ch = header(&r, "WWW-Authenticate").unwrap().to_owned();
    let r = exchange(
        &sock,
        addr,
        &register(
            "alice",
            Some(&answer("alice", "wonderland", &ch, Some(1))),
            2,
        ),
    );
    assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}\n{}", ser.log_text());
    // wrong password and unknown user: the same 401
    let r1 = exchange(
        &sock,
        addr,
        &register("alice", Some(&answer("alice", "guess", &ch, Some(2))), 3),
    );
    let r2 = exchange(
        &sock,
        addr,
        &register(
            "mallory",
            Some(&answer("mallory", "guess", &ch, Some(3))),
            4,
        ),
    );
    assert_eq!(status_line(&r1), "SIP/2.0 401 Unauthorized");
    assert_eq!(status_line(&r2), status_line(&r1));
    // bob's own credentials do not register alice (check_to)
    let mut req = register("alice", Some(&answer("bob", "builder", &ch, Some(4))), 5);
    req = req.replacen("From: <sip:alice@", "From: <sip:bob@", 1);
    let r = exchange(&sock, addr, &req);
    assert_eq!(
        status_line(&r),
        "SIP/2.0 403 Forbidden - not your identity",
        "{r}"
    );
    // replayed nonce-count
    let r = exchange(
        &sock,
        addr,
        &register(
            "alice",
            Some(&answer("alice", "wonderland", &ch, Some(1))),
            6,
        ),
    );
    assert_eq!(status_line(&r), "SIP/2.0 401 Unauthorized", "{r}");
    remove_sqlite(&db);
}

/// SIPp REGISTER scenario: unauthenticated REGISTER, 401, REGISTER with `[authentication]`,
/// then the expected final status.
fn sipp_scenario(final_status: u16) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register with digest">
  <send retrans="500">
    <![CDATA[
REGISTER sip:test.example SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:alice@test.example>;tag=[call_number]
To: <sip:alice@test.example>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:alice@[local_ip]:[local_port]>
Max-Forwards: 70
Expires: 300
Content-Length: 0

    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[
REGISTER sip:test.example SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:alice@test.example>;tag=[call_number]
To: <sip:alice@test.example>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:alice@[local_ip]:[local_port]>
[authentication]
Max-Forwards: 70
Expires: 300
Content-Length: 0

    ]]>
  </send>
  <recv response="{final_status}"/>
</scenario>
"#
    )
}

fn run_sipp(
    test: &str,
    addr: SocketAddr,
    password: &str,
    final_status: u16,
) -> (Option<i32>, String) {
    let sc = std::env::temp_dir().join(format!("ser-auth-{}-{test}.xml", std::process::id()));
    std::fs::write(&sc, sipp_scenario(final_status)).unwrap();
    let out = Command::new("timeout")
        .args(["30", "sipp", &addr.to_string(), "-sf"])
        .arg(&sc)
        .args(["-i", "127.0.0.1", "-p", &free_port("127.0.0.1").to_string()])
        .args([
            "-au", "alice", "-ap", password, "-m", "5", "-r", "5", "-timeout", "20s", "-nostdin",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(sc);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn sipp_register_with_authentication_and_with_a_wrong_password() {
    if !have("sipp") {
        skip!("sipp is not installed (apt-get install sip-tester)");
    }
    let Some(db) = subscriber_db("sipp", "test.example", &[("alice", "wonderland")]) else {
        return;
    };
    for qop in ["0", "1"] {
        let (_ser, addr) = start(qop, Some(&db));
        let (code, text) = run_sipp("good", addr, "wonderland", 200);
        assert_eq!(code, Some(0), "qop {qop}, right password:\n{text}");
        let (code, text) = run_sipp("bad", addr, "guess", 401);
        assert_eq!(
            code,
            Some(0),
            "qop {qop}, wrong password must get 401:\n{text}"
        );
    }
    remove_sqlite(&db);
}

#[test]
fn sipsak_usrloc_register_with_password() {
    if !have("sipsak") {
        skip!("sipsak is not installed (apt-get install sipsak)");
    }
    let Some(db) = subscriber_db("sipsak", "test.example", &[("alice", "wonderland")]) else {
        return;
    };
    let (ser, addr) = start("1", Some(&db));
    let sipsak = |pw: &str| {
        Command::new("timeout")
            .args([
                "20",
                "sipsak",
                "-U",
                "-C",
                "sip:alice@127.0.0.1:5999",
                "-x",
                "300",
            ])
            .args(["-a", pw, "-u", "alice"])
            .args(["-s", &format!("sip:alice@{addr}")])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let ok = sipsak("wonderland");
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}{}\n{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr),
        ser.log_text()
    );
    let bad = sipsak("guess");
    assert_ne!(bad.status.code(), Some(0));
    std::thread::sleep(Duration::from_millis(50));
    remove_sqlite(&db);
}
