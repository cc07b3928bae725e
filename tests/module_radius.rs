//! RADIUS end to end: the real `ser` with auth_radius, group_radius, uri_radius and acc's RADIUS
//! accounting, against Debian's FreeRADIUS (`freeradius -X`) run from a config this test writes
//! into a temporary directory (a test client secret, a users file, the digest, files and
//! detail modules) on loopback ports. What a user sees: the SIP replies, and the records in
//! FreeRADIUS's detail file.
#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "support/skip.rs"]
mod skip;
#[path = "support/net.rs"]
mod net;
#[path = "support/peer.rs"]
mod peer;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dataplane::auth::digest::{self, Algorithm, Qop, ResponseInput};
use net::*;

const SECRET: &str = "radius-test-secret";
const FREERADIUS: &str = "/usr/sbin/freeradius";

/// A FreeRADIUS started for one test (killed on drop), with its directory.
struct Radiusd {
    _child: KillOnDrop,
    dir: PathBuf,
    auth: u16,
    acct: u16,
}

impl Drop for Radiusd {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The users file: alice's password (digest), her group, and bob as a known URI.
const USERS: &str = r#""alice@test.example" Cleartext-Password := "alicepw"

alice Sip-Group == "voip", Auth-Type := Accept

"bob@test.example" Service-Type == Call-Check, Auth-Type := Accept
"#;

fn radiusd_conf(dir: &Path, auth: u16, acct: u16) -> String {
    let d = dir.display();
    format!(
        r#"prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {d}/log
raddbdir = {d}
radacctdir = {d}/acct
name = freeradius
confdir = {d}
modconfdir = {d}
run_dir = {d}/run
db_dir = {d}
libdir = /usr/lib/freeradius
pidfile = {d}/run/radiusd.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 1024
hostname_lookups = no
log {{
  destination = stdout
}}
security {{
  allow_core_dumps = no
  allow_vulnerable_openssl = yes
}}
client ser {{
  ipaddr = 127.0.0.1
  secret = {SECRET}
}}
modules {{
  files {{
    filename = {d}/users
  }}
  digest {{
  }}
  detail {{
    filename = {d}/acct/detail
    permissions = 0600
    header = "%t"
  }}
}}
server default {{
  listen {{
    type = auth
    ipaddr = 127.0.0.1
    port = {auth}
  }}
  listen {{
    type = acct
    ipaddr = 127.0.0.1
    port = {acct}
  }}
  authorize {{
    digest
    files
  }}
  authenticate {{
    digest
  }}
  preacct {{
  }}
  accounting {{
    detail
  }}
}}
"#
    )
}

fn tmpdir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ser-radius-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// FreeRADIUS on two free loopback ports, ready; `None` (and a skip line) when not installed.
fn radiusd(test: &str) -> Option<Radiusd> {
    if !Path::new(FREERADIUS).exists() {
        skip::report(
            None,
            &format!("{test}: freeradius is not installed (apt-get install freeradius)"),
        );
        return None;
    }
    let dir = tmpdir(&format!("{test}-fr"));
    for sub in ["log", "acct", "run"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let (auth, acct) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    std::fs::write(dir.join("radiusd.conf"), radiusd_conf(&dir, auth, acct)).unwrap();
    std::fs::write(dir.join("users"), USERS).unwrap();
    // Sip-Group is not in FreeRADIUS's own dictionaries (dictionary.openser, which has it,
    // clashes with them).
    std::fs::write(dir.join("dictionary"), "ATTRIBUTE Sip-Group 211 string\n").unwrap();
    let log = std::fs::File::create(dir.join("radiusd.log")).unwrap();
    let child = Command::new(FREERADIUS)
        .args(["-X", "-d"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let child = KillOnDrop(child);
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(dir.join("radiusd.log")).unwrap_or_default();
        if text.contains("Ready to process requests") {
            break;
        }
        assert!(Instant::now() < end, "freeradius did not start:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Radiusd {
        _child: child,
        dir,
        auth,
        acct,
    })
}

/// A radiusclient.conf (with its servers file) naming `auth` and `acct` servers, SER's
/// dictionary from tests/data; its path.
fn client_conf(test: &str, auth: &[u16], acct: &[u16], timeout: u32, retries: u32) -> PathBuf {
    let dir = tmpdir(&format!("{test}-client"));
    let dict = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/radius/dictionary");
    let list = |ports: &[u16]| {
        ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    std::fs::write(dir.join("servers"), format!("127.0.0.1 {SECRET}\n")).unwrap();
    let conf = dir.join("radiusclient.conf");
    std::fs::write(
        &conf,
        format!(
            "# written by module_radius.rs\nauthserver {}\nacctserver {}\nservers servers\ndictionary {}\nradius_timeout {timeout}\nradius_retries {retries}\nnas_identifier ser-test\n",
            list(auth),
            list(acct),
            dict.display()
        ),
    )
    .unwrap();
    conf
}

const REGISTRAR: &str = r#"
loadmodule "sl.so"
loadmodule "auth.so"
loadmodule "auth_radius.so"
modparam("auth", "secret", "radius-e2e")
modparam("auth_radius", "radius_config", "CONF")
route {
	if (method == "REGISTER") {
		if (!radius_www_authorize("test.example")) {
			www_challenge("test.example", "QOP");
			break;
		};
		sl_send_reply("200", "OK");
		break;
	};
	if (method == "OPTIONS") {
		sl_send_reply("200", "Alive");
		break;
	};
	if (method == "MESSAGE") {
		if (!radius_proxy_authorize("test.example")) {
			proxy_challenge("test.example", "QOP");
			break;
		};
		sl_send_reply("200", "Authorized");
		break;
	};
	sl_send_reply("404", "Not Found");
}
"#;

fn start_registrar(conf: &Path, qop: &str) -> (Ser, SocketAddr) {
    let cfg = REGISTRAR
        .replace("CONF", &conf.display().to_string())
        .replace("QOP", qop);
    let (ser, addr) = peer::ser_with(&cfg, "1", &[]);
    (ser, addr)
}

fn register(user: &str, auth: Option<&str>, cseq: u32) -> String {
    let mut s = format!(
        "REGISTER sip:test.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-rad{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@test.example>;tag=r1\r\n\
         To: <sip:{user}@test.example>\r\n\
         Call-ID: reg-radius@127.0.0.1\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{user}@127.0.0.1:5999>\r\n"
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
    answer_to("REGISTER", "sip:test.example", user, pw, challenge, nc)
}

fn answer_to(
    method: &str,
    uri: &str,
    user: &str,
    pw: &str,
    challenge: &str,
    nc: Option<u32>,
) -> String {
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
        cnonce: b"radc",
        qop: if nc.is_some() { Qop::Auth } else { Qop::None },
        method: method.as_bytes(),
        uri: uri.as_bytes(),
        body: b"",
    });
    let mut v = format!(
        "Digest username=\"{user}\", realm=\"test.example\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{}\"",
        String::from_utf8_lossy(r.as_bytes())
    );
    if nc.is_some() {
        v.push_str(&format!(", qop=auth, nc={ncs}, cnonce=\"radc\""));
    }
    v
}

/// The challenge of a 401 reply.
fn challenge(sock: &UdpSocket, addr: SocketAddr, user: &str) -> String {
    let r = udp_exchange(sock, addr, register(user, None, 1).as_bytes()).expect("a reply");
    assert_eq!(status_line(&r), "SIP/2.0 401 Unauthorized", "{r}");
    header(&r, "WWW-Authenticate").unwrap().to_string()
}

#[test]
fn radius_www_authorize_accepts_the_right_password_and_challenges_a_wrong_one() {
    let Some(fr) = radiusd("www") else { return };
    let conf = client_conf("www", &[fr.auth], &[fr.acct], 2, 2);
    for (qop, nc) in [("0", None), ("1", Some(1))] {
        let (ser, addr) = start_registrar(&conf, qop);
        let sock = udp_client("127.0.0.1");
        let ch = challenge(&sock, addr, "alice");
        let good = answer("alice", "alicepw", &ch, nc);
        let r = udp_exchange(&sock, addr, register("alice", Some(&good), 2).as_bytes())
            .expect("a reply");
        assert_eq!(
            status_line(&r),
            "SIP/2.0 200 OK",
            "qop {qop}: {r}\nser log:\n{}",
            ser.log_text()
        );
        let ch = challenge(&sock, addr, "alice");
        let bad = answer("alice", "wrong", &ch, nc);
        let r = udp_exchange(&sock, addr, register("alice", Some(&bad), 3).as_bytes())
            .expect("a reply");
        assert_eq!(
            status_line(&r),
            "SIP/2.0 401 Unauthorized",
            "qop {qop}: {r}"
        );
        let ch = challenge(&sock, addr, "mallory");
        let unknown = answer("mallory", "alicepw", &ch, nc);
        let r = udp_exchange(
            &sock,
            addr,
            register("mallory", Some(&unknown), 4).as_bytes(),
        )
        .expect("a reply");
        assert_eq!(
            status_line(&r),
            "SIP/2.0 401 Unauthorized",
            "qop {qop}: {r}"
        );
    }
    let log = std::fs::read_to_string(fr.dir.join("radiusd.log")).unwrap();
    assert!(
        log.contains("Digest-Response") && log.contains("Digest-User-Name = \"alice\""),
        "FreeRADIUS saw the digest attributes:\n{log}"
    );
}

#[test]
fn a_dead_radius_server_answers_500_quickly_and_never_stalls_sip() {
    if !Path::new(FREERADIUS).exists() {
        skip!("freeradius is not installed (apt-get install freeradius)");
    }
    // Nothing listens on the first server (refused at once); the second never answers.
    let refused = free_port("127.0.0.1");
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let conf = client_conf("dead", &[refused, silent_port], &[refused], 1, 2);
    let (ser, addr) = start_registrar(&conf, "0");
    let sock = udp_client("127.0.0.1");
    let ch = challenge(&sock, addr, "alice");
    let good = answer("alice", "alicepw", &ch, None);
    let t0 = Instant::now();
    sock.send_to(register("alice", Some(&good), 2).as_bytes(), addr)
        .unwrap();
    // While the RADIUS request waits (2 tries of 1 s at the silent server), the one shard
    // answers other requests at once.
    std::thread::sleep(Duration::from_millis(200));
    let other = udp_client("127.0.0.1");
    let opt = request(
        "OPTIONS",
        "sip:test.example",
        &other.local_addr().unwrap().to_string(),
        "UDP",
        "rad-opt@h",
    );
    let t1 = Instant::now();
    let r = udp_exchange(&other, addr, opt.as_bytes()).expect("OPTIONS answered");
    assert_eq!(status_line(&r), "SIP/2.0 200 Alive");
    // The REGISTER waits 2 s for the silent server: an answer well within that is no stall.
    assert!(t1.elapsed() < Duration::from_secs(1), "not stalled");
    let mut buf = vec![0u8; 65536];
    let (n, _) = sock.recv_from(&mut buf).expect("a reply to the REGISTER");
    let r = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert_eq!(
        status_line(&r),
        "SIP/2.0 500 Server Internal Error",
        "{r}\n{}",
        ser.log_text()
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(5),
        "failed over after the silent server's tries: {took:?}"
    );
    // The silent server saw both tries of the same packet.
    silent.set_nonblocking(true).unwrap();
    let mut tries = Vec::new();
    while let Ok((n, _)) = silent.recv_from(&mut buf) {
        tries.push(buf[..n].to_vec());
    }
    assert_eq!(tries.len(), 2, "two transmissions");
    assert_eq!(tries[0], tries[1], "a retransmission is the same packet");
    assert_eq!(tries[0][0], 1, "an Access-Request");
}

#[test]
fn a_missing_radius_config_is_named_at_start_and_auth_answers_500() {
    let conf = std::env::temp_dir().join("ser-radius-no-such-dir/radiusclient.conf");
    let (ser, addr) = start_registrar(&conf, "0");
    assert!(
        ser.wait_log("radiusclient.conf: cannot read", Duration::from_secs(2)),
        "{}",
        ser.log_text()
    );
    let sock = udp_client("127.0.0.1");
    let ch = challenge(&sock, addr, "alice");
    let good = answer("alice", "alicepw", &ch, None);
    let r = udp_exchange(&sock, addr, register("alice", Some(&good), 2).as_bytes()).unwrap();
    assert_eq!(status_line(&r), "SIP/2.0 500 Server Internal Error");
}

/// A SIP request from `from_user`@example.com to `ruri`, sent from `sock`.
fn sip(
    method: &str,
    ruri: &str,
    from_user: &str,
    sock: &UdpSocket,
    call_id: &str,
    cseq: u32,
) -> String {
    let via = sock.local_addr().unwrap();
    format!(
        "{method} {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {via};branch=z9hG4bK-{call_id}-{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{from_user}@example.com>;tag=f1\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:{from_user}@{via}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn group_and_uri_checks_answer_from_the_servers_replies() {
    let Some(fr) = radiusd("grp") else { return };
    let conf = client_conf("grp", &[fr.auth], &[fr.acct], 2, 2);
    let cfg = r#"
loadmodule "sl.so"
loadmodule "group_radius.so"
loadmodule "uri_radius.so"
modparam("group_radius", "radius_config", "CONF")
modparam("uri_radius", "radius_config", "CONF")
route {
	if (method == "OPTIONS") {
		if (radius_is_user_in("From", "voip")) {
			sl_send_reply("200", "In Group");
			break;
		};
		sl_send_reply("403", "Not In Group");
		break;
	};
	if (radius_does_uri_exist()) {
		sl_send_reply("200", "Exists");
		break;
	};
	sl_send_reply("404", "No Such User");
}
"#
    .replace("CONF", &conf.display().to_string());
    let (ser, addr) = peer::ser_with(&cfg, "1", &[]);
    let s = udp_client("127.0.0.1");
    let ask = |m: &str, ruri: &str, from: &str, n: u32| {
        let r = udp_exchange(
            &s,
            addr,
            sip(m, ruri, from, &s, &format!("g{n}"), n).as_bytes(),
        )
        .expect("a reply");
        status_line(&r).to_string()
    };
    assert_eq!(
        ask("OPTIONS", "sip:test.example", "alice", 1),
        "SIP/2.0 200 In Group",
        "{}",
        ser.log_text()
    );
    assert_eq!(
        ask("OPTIONS", "sip:test.example", "carol", 2),
        "SIP/2.0 403 Not In Group"
    );
    assert_eq!(
        ask("MESSAGE", "sip:bob@test.example", "alice", 3),
        "SIP/2.0 200 Exists"
    );
    assert_eq!(
        ask("MESSAGE", "sip:nobody@test.example", "alice", 4),
        "SIP/2.0 404 No Such User"
    );
    let log = std::fs::read_to_string(fr.dir.join("radiusd.log")).unwrap();
    assert!(log.contains("Sip-Group = \"voip\""), "{log}");
    assert!(log.contains("User-Name = \"nobody@test.example\""), "{log}");
}

/// The records of FreeRADIUS's detail file (blank-line separated), waiting until `n` are there.
fn detail_records(fr: &Radiusd, n: usize) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(fr.dir.join("acct/detail")).unwrap_or_default();
        let recs: Vec<String> = text
            .split("\n\n")
            .filter(|r| !r.trim().is_empty())
            .map(str::to_string)
            .collect();
        if recs.len() >= n || Instant::now() > end {
            return recs;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_accounted_call_gives_start_and_stop_records_and_a_missed_one_failed() {
    let Some(fr) = radiusd("acc") else { return };
    let conf = client_conf("acc", &[fr.auth], &[fr.acct], 2, 2);
    let cfg = r#"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "acc.so"
modparam("acc", "radius_config", "CONF")
modparam("acc", "radius_flag", 1)
modparam("acc", "radius_missed_flag", 2)
route {
	if (method == "MESSAGE") {
		if (acc_rad_request("202 Accepted")) {
			sl_send_reply("202", "Accounted");
			break;
		};
		sl_send_reply("500", "Not Accounted");
		break;
	};
	setflag(1);
	setflag(2);
	if (!t_relay()) {
		sl_reply_error();
	};
}
"#
    .replace("CONF", &conf.display().to_string());
    let (ser, addr) = peer::ser_with(&cfg, "1", &[]);
    // The callee: 200 to the first INVITE, 486 to the second, 200 to BYE.
    let bob = peer::sock();
    let bob_addr = bob.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let mut invites = 0;
        let end = Instant::now() + Duration::from_secs(10);
        let mut buf = vec![0u8; 65536];
        let mut byes = 0;
        while Instant::now() < end && (invites < 2 || byes < 1) {
            let Ok((n, from)) = bob.recv_from(&mut buf) else {
                continue;
            };
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if m.starts_with("INVITE ") {
                invites += 1;
                let (code, reason) = if invites == 1 {
                    (200, "OK")
                } else {
                    (486, "Busy Here")
                };
                bob.send_to(peer::reply_to(&m, code, reason, "bob").as_bytes(), from)
                    .unwrap();
            } else if m.starts_with("BYE ") {
                byes += 1;
                bob.send_to(peer::reply_to(&m, 200, "OK", "bob").as_bytes(), from)
                    .unwrap();
            }
        }
    });
    let ruri = format!("sip:bob@{bob_addr}");
    let c = peer::sock();
    let final_of = |req: &str| {
        c.send_to(req.as_bytes(), addr).unwrap();
        peer::finals_acked(&c, addr, req, Duration::from_millis(1000))
            .first()
            .map_or(0, |m| peer::status(m))
    };
    assert_eq!(
        final_of(&sip("INVITE", &ruri, "alice", &c, "rad-call-1", 1)),
        200
    );
    assert_eq!(
        final_of(&sip("BYE", &ruri, "alice", &c, "rad-call-1", 2)),
        200
    );
    assert_eq!(
        final_of(&sip("INVITE", &ruri, "alice", &c, "rad-call-2", 1)),
        486
    );
    h.join().unwrap();
    let s = udp_client("127.0.0.1");
    let r = udp_exchange(
        &s,
        addr,
        sip("MESSAGE", "sip:bob@test.example", "alice", &s, "rad-msg", 1).as_bytes(),
    )
    .unwrap();
    assert_eq!(
        status_line(&r),
        "SIP/2.0 202 Accounted",
        "{}",
        ser.log_text()
    );
    let recs = detail_records(&fr, 4);
    assert_eq!(recs.len(), 4, "{recs:?}\nser log:\n{}", ser.log_text());
    let find = |call: &str, status: &str| {
        recs.iter()
            .find(|r| {
                r.contains(&format!("Acct-Session-Id = \"{call}\""))
                    && r.contains(&format!("Acct-Status-Type = {status}"))
            })
            .unwrap_or_else(|| panic!("no {status} record of {call}: {recs:?}"))
            .clone()
    };
    let start = find("rad-call-1", "Start");
    assert!(
        start.contains("User-Name = \"alice@example.com\""),
        "{start}"
    );
    assert!(
        start.contains("Calling-Station-Id = \"sip:alice@example.com\""),
        "{start}"
    );
    assert!(
        start.contains("Called-Station-Id = \"sip:bob@example.com\""),
        "{start}"
    );
    assert!(start.contains("Service-Type = "), "{start}");
    assert!(start.contains("NAS-Identifier = \"ser-test\""), "{start}");
    // FreeRADIUS's dictionaries give SER's numbers other names (102 EAP-Key-Name, 15
    // IAPP-Register) or none (104, 107): their values are checked as the bytes sent.
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    assert!(
        start.contains("= 0x000000c8"),
        "Sip-Response-Code 200: {start}"
    );
    assert!(
        start.contains(&format!("Attr-104 = 0x{}", hex("bob"))),
        "Sip-To-Tag: {start}"
    );
    assert!(
        start.contains(&format!("Attr-107 = 0x{}", hex(&ruri))),
        "Sip-Translated-Request-URI: {start}"
    );
    let stop = find("rad-call-1", "Stop");
    assert!(
        stop.contains("Called-Station-Id = \"sip:bob@example.com\""),
        "{stop}"
    );
    let failed = find("rad-call-2", "Failed");
    assert!(
        failed.contains("= 0x000001e6"),
        "Sip-Response-Code 486: {failed}"
    );
    find("rad-msg", "Start");
}

#[test]
fn radius_proxy_authorize_checks_proxy_authorization() {
    let Some(fr) = radiusd("proxy") else { return };
    let conf = client_conf("proxy", &[fr.auth], &[fr.acct], 2, 2);
    let (ser, addr) = start_registrar(&conf, "1");
    let s = udp_client("127.0.0.1");
    let ruri = "sip:bob@test.example";
    let msg = |auth: Option<&str>, n: u32| {
        let mut m = sip("MESSAGE", ruri, "alice", &s, "rad-proxy", n);
        if let Some(a) = auth {
            m = m.replace(
                "Content-Length: 0",
                &format!("Proxy-Authorization: {a}\r\nContent-Length: 0"),
            );
        }
        udp_exchange(&s, addr, m.as_bytes()).expect("a reply")
    };
    let r = msg(None, 1);
    assert_eq!(
        status_line(&r),
        "SIP/2.0 407 Proxy Authentication Required",
        "{r}"
    );
    let ch = header(&r, "Proxy-Authenticate").unwrap().to_string();
    let good = answer_to("MESSAGE", ruri, "alice", "alicepw", &ch, Some(1));
    let r = msg(Some(&good), 2);
    assert_eq!(
        status_line(&r),
        "SIP/2.0 200 Authorized",
        "{r}\n{}",
        ser.log_text()
    );
    // The same nonce-count again is a replay, even though the server would accept it.
    let r = msg(Some(&good), 3);
    assert_eq!(
        status_line(&r),
        "SIP/2.0 407 Proxy Authentication Required",
        "{r}"
    );
    let bad = answer_to("MESSAGE", ruri, "alice", "nope", &ch, Some(2));
    let r = msg(Some(&bad), 4);
    assert_eq!(
        status_line(&r),
        "SIP/2.0 407 Proxy Authentication Required",
        "{r}"
    );
}

#[test]
fn a_dictionary_without_the_needed_attributes_is_named_at_start() {
    let dir = tmpdir("baddict");
    std::fs::write(
        dir.join("dict"),
        "ATTRIBUTE User-Name 1 string\nATTRIBUTE Service-Type 6 integer\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("rc.conf"),
        "authserver 127.0.0.1:1812:s\ndictionary dict\n",
    )
    .unwrap();
    let bad_line = dir.join("rc2.conf");
    std::fs::write(&bad_line, "authserver 127.0.0.1:1812:s\ndictionary dict2\n").unwrap();
    std::fs::write(dir.join("dict2"), "ATTRIBUTE User-Name one string\n").unwrap();
    let cfg = format!(
        "loadmodule \"sl.so\"\nloadmodule \"group_radius.so\"\nloadmodule \"uri_radius.so\"\n\
         modparam(\"group_radius\", \"radius_config\", \"{}\")\n\
         modparam(\"uri_radius\", \"radius_config\", \"{}\")\n\
         route {{\n\tif (radius_is_user_in(\"From\", \"voip\")) {{ sl_send_reply(\"200\", \"In\"); break; }};\n\
         \tsl_send_reply(\"403\", \"Out\");\n}}\n",
        dir.join("rc.conf").display(),
        bad_line.display()
    );
    let (ser, addr) = peer::ser_with(&cfg, "1", &[]);
    assert!(
        ser.wait_log(
            "its dictionary lacks attribute Sip-Group",
            Duration::from_secs(2)
        ),
        "{}",
        ser.log_text()
    );
    assert!(
        ser.wait_log("dict2:1: 'one' is not a number", Duration::from_secs(2)),
        "{}",
        ser.log_text()
    );
    let s = udp_client("127.0.0.1");
    let r = udp_exchange(
        &s,
        addr,
        sip("OPTIONS", "sip:x@test.example", "alice", &s, "bd", 1).as_bytes(),
    )
    .unwrap();
    assert_eq!(status_line(&r), "SIP/2.0 403 Out");
    let _ = std::fs::remove_dir_all(&dir);
}
