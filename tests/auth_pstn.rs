//! The Admin Guide's PSTN gateway guard (pstn.cfg, Example 3-8) run by the real `ser` over
//! loopback, with a subscriber and a grp table in an SQLite file. The gateway address
//! 192.168.0.10:5060 is replaced by a socket of the test on 127.0.0.2, and auth_db's MySQL
//! `db_url` by the test's SQLite file (the only changes to the file).
#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "support/skip.rs"]
mod skip;
#[path = "support/net.rs"]
mod net;
#[path = "support/seed.rs"]
mod seed;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use dataplane::auth::digest::{self, Algorithm, Qop, ResponseInput};
use net::*;

/// pstn.cfg with the gateway moved to `gw` and auth_db's MySQL account replaced by `db_url`.
fn pstn_cfg(gw: SocketAddr, db_url: Option<&str>) -> String {
    let text = seed::example_text("pstn-gateway.cfg");
    assert!(text.contains("192.168.0.10:5060") && text.contains("src_ip==192.168.0.10"));
    let mysql = "sql://ser:secret@localhost/ser";
    assert!(text.contains(mysql));
    text.replace(mysql, db_url.unwrap_or(mysql))
        .replace("192.168.0.10:5060", &gw.to_string())
        .replace("src_ip==192.168.0.10", &format!("src_ip=={}", gw.ip()))
}

/// Users (name, group) with password "pw" in realm "gateway".
fn db(test: &str, users: &[(&str, &str)]) -> Option<PathBuf> {
    if !have("sqlite3") {
        skip::report(None, &format!("{test}: the sqlite3 tool is not installed"));
        return None;
    }
    let p = std::env::temp_dir().join(format!("ser-pstn-{}-{test}.db", std::process::id()));
    remove_sqlite(&p);
    let mut sql = String::from(
        "CREATE TABLE subscriber (username VARCHAR(64) NOT NULL DEFAULT '', domain VARCHAR(64) NOT NULL DEFAULT '', \
         password VARCHAR(64) NOT NULL DEFAULT '', ha1 VARCHAR(128) NOT NULL DEFAULT '', ha1b VARCHAR(128) NOT NULL DEFAULT '');\n\
         CREATE TABLE grp (username VARCHAR(64) NOT NULL DEFAULT '', domain VARCHAR(64) NOT NULL DEFAULT '', grp VARCHAR(64) NOT NULL DEFAULT '');\n",
    );
    for (u, g) in users {
        sql.push_str(&format!(
            "INSERT INTO subscriber (username, domain, password) VALUES ('{u}', 'gateway', 'pw');\n\
             INSERT INTO grp (username, grp) VALUES ('{u}', '{g}');\n"
        ));
    }
    assert!(Command::new("sqlite3")
        .arg(&p)
        .arg(&sql)
        .status()
        .unwrap()
        .success());
    Some(p)
}

struct Pstn {
    _ser: Ser,
    addr: SocketAddr,
    gw: UdpSocket,
    sock: UdpSocket,
}

fn start(db: Option<&PathBuf>) -> Pstn {
    // Another loopback address: the script trusts the gateway by source address.
    let gw = UdpSocket::bind("127.0.0.2:0").unwrap();
    gw.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let port = free_port("127.0.0.1");
    let url = db.map(|p| format!("sqlite://{}", p.display()));
    let env: Vec<(&str, &str)> = url.iter().map(|u| ("SER_DB_URL", u.as_str())).collect();
    let ser = Ser::start_with_env(
        &pstn_cfg(gw.local_addr().unwrap(), url.as_deref()),
        &["-l", "127.0.0.1", "-p", &port.to_string()],
        &env,
    );
    Pstn {
        _ser: ser,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        gw,
        sock: udp_client("127.0.0.1"),
    }
}

fn invite(number: &str, auth: Option<&str>, n: u32) -> String {
    let mut s = format!(
        "INVITE sip:{number}@gw.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5998;branch=z9hG4bK-pstn{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:caller@example.com>;tag=p{n}\r\n\
         To: <sip:{number}@gw.example.com>\r\n\
         Call-ID: pstn{n}@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:caller@127.0.0.1:5998>\r\n"
    );
    if let Some(a) = auth {
        s.push_str(&format!("Proxy-Authorization: {a}\r\n"));
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

fn nonce(challenge: &str) -> String {
    let c = dataplane::wire::digest::Credentials::parse(challenge.as_bytes()).unwrap();
    String::from_utf8_lossy(c.nonce().unwrap()).into_owned()
}

/// Calls `number` as `user` (challenge, then credentials); the final reply's status line.
fn call(p: &Pstn, user: &str, number: &str, n: u32) -> String {
    let r = udp_exchange(&p.sock, p.addr, invite(number, None, n).as_bytes()).unwrap();
    assert_eq!(
        status_line(&r),
        "SIP/2.0 407 Proxy Authentication Required",
        "{r}"
    );
    let ch = header(&r, "Proxy-Authenticate").unwrap();
    let nonce = nonce(ch);
    let uri = format!("sip:{number}@gw.example.com");
    let ha1 = digest::ha1(Algorithm::Md5, user.as_bytes(), b"gateway", b"pw");
    let resp = digest::response(&ResponseInput {
        alg: Algorithm::Md5,
        ha1: ha1.as_bytes(),
        nonce: nonce.as_bytes(),
        nc: b"",
        cnonce: b"",
        qop: Qop::None,
        method: b"INVITE",
        uri: uri.as_bytes(),
        body: b"",
    });
    let a = format!(
        "Digest username=\"{user}\", realm=\"gateway\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{}\"",
        String::from_utf8_lossy(resp.as_bytes())
    );
    let r = udp_exchange(
        &p.sock,
        p.addr,
        invite(number, Some(&a), n + 1000).as_bytes(),
    )
    .unwrap();
    status_line(&r).to_owned()
}

#[test]
fn pstn_cfg_refuses_non_numbers_and_challenges_pstn_calls() {
    let p = start(None);
    let r = udp_exchange(&p.sock, p.addr, invite("alice", None, 1).as_bytes()).unwrap();
    assert_eq!(
        status_line(&r),
        "SIP/2.0 403 Call cannot be served here",
        "{r}"
    );
    let r = udp_exchange(&p.sock, p.addr, invite("0123456", None, 2).as_bytes()).unwrap();
    assert_eq!(
        status_line(&r),
        "SIP/2.0 407 Proxy Authentication Required",
        "{r}"
    );
    let ch = header(&r, "Proxy-Authenticate").unwrap();
    assert!(ch.starts_with("Digest realm=\"gateway\", nonce=\""), "{ch}");
    assert!(!ch.contains("qop"), "qop \"0\": {ch}");
}

#[test]
fn pstn_cfg_refuses_calls_outside_the_callers_groups() {
    let Some(db) = db(
        "groups",
        &[("loc", "local"), ("dist", "ld"), ("intl", "int")],
    ) else {
        return;
    };
    let p = start(Some(&db));
    assert_eq!(
        call(&p, "loc", "00123456", 1),
        "SIP/2.0 403  no permission for LD "
    );
    assert_eq!(
        call(&p, "dist", "000123456", 2),
        "SIP/2.0 403 International permissions needed"
    );
    assert_eq!(
        call(&p, "intl", "0123456", 3),
        "SIP/2.0 403 No permission for local calls"
    );
    assert_eq!(call(&p, "dist", "123", 4), "SIP/2.0 403 Forbidden");
    remove_sqlite(&db);
}

#[test]
fn pstn_cfg_relays_permitted_calls_to_the_gateway() {
    let Some(db) = db(
        "relay",
        &[("loc", "local"), ("dist", "ld"), ("intl", "int")],
    ) else {
        return;
    };
    let p = start(Some(&db));
    let mut buf = [0u8; 4096];
    for (i, (user, number)) in [
        ("loc", "0123456"),
        ("dist", "00123456"),
        ("intl", "000123456"),
    ]
    .into_iter()
    .enumerate()
    {
        let n = 10 + i as u32;
        let _ = call(&p, user, number, n);
        let (len, _) =
            p.gw.recv_from(&mut buf)
                .expect("the INVITE reaches the gateway");
        let got = String::from_utf8_lossy(&buf[..len]).into_owned();
        let gw = p.gw.local_addr().unwrap();
        assert!(
            got.starts_with(&format!("INVITE sip:{number}@{gw} ")),
            "{got}"
        );
    }
    remove_sqlite(&db);
}
