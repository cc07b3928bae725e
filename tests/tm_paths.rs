//! Module tm end to end, the paths tests/tm_calls.rs does not cover: `t_relay_to_tcp` to a TCP
//! UAS, `t_replicate` (the copy goes out, its replies stay here), §16.7 step 7 (401/407 challenges
//! of all branches in one reply), step 6 (503 → 500) and 6xx cancelling the other branches, replies
//! that arrive on the shard that does not own the transaction (with `t_stats` through the FIFO),
//! the seed file onr.cfg itself, a TCP caller relayed over UDP, and Timer E/F of a non-INVITE to a
//! silent UAS. The peers are plain sockets driven by the test, so every message is checked.
#![allow(clippy::unwrap_used)]

#[path = "support/dns_server.rs"]
mod dns_server;
#[path = "support/net.rs"]
mod net;
#[path = "support/peer.rs"]
mod peer;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use net::*;
use peer::*;

const TM: &str = "loadmodule \"sl.so\"\nloadmodule \"tm.so\"\n";

// ------------------------------------------------------------------------------------ TCP framing

/// Reads SIP messages from a TCP stream (framed by Content-Length), keeping what is left over.
struct TcpPeer {
    s: TcpStream,
    buf: Vec<u8>,
}

impl TcpPeer {
    fn new(s: TcpStream) -> TcpPeer {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        TcpPeer { s, buf: Vec::new() }
    }

    fn send(&mut self, m: &str) {
        self.s.write_all(m.as_bytes()).unwrap();
    }

    /// One complete message from the buffer, if there is one.
    fn take(&mut self) -> Option<String> {
        // Keep-alive CRLFs between messages.
        while self.buf.starts_with(b"\r\n") {
            self.buf.drain(..2);
        }
        let end = self.buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        let cl: usize = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                let n = n.trim();
                (n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("l"))
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        if self.buf.len() < end + cl {
            return None;
        }
        let m = String::from_utf8_lossy(&self.buf[..end + cl]).into_owned();
        self.buf.drain(..end + cl);
        Some(m)
    }

    /// Every message that arrives within `wait`.
    fn recv_all(&mut self, wait: Duration) -> Vec<String> {
        let until = Instant::now() + wait;
        let mut out = Vec::new();
        let mut b = [0u8; 8192];
        loop {
            while let Some(m) = self.take() {
                out.push(m);
            }
            if Instant::now() >= until {
                return out;
            }
            match self.s.read(&mut b) {
                Ok(0) => return out,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
                Err(_) => {}
            }
        }
    }

    /// The first message whose start line starts with `start`, within `wait`.
    fn recv_until(&mut self, start: &str, wait: Duration) -> Option<String> {
        let until = Instant::now() + wait;
        let mut b = [0u8; 8192];
        while Instant::now() < until {
            while let Some(m) = self.take() {
                if m.starts_with(start) {
                    return Some(m);
                }
            }
            match self.s.read(&mut b) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
                Err(_) => {}
            }
        }
        None
    }
}

/// Accepts one connection within `wait`.
fn accept(l: &TcpListener, wait: Duration) -> Option<TcpStream> {
    l.set_nonblocking(true).unwrap();
    let until = Instant::now() + wait;
    while Instant::now() < until {
        if let Ok((s, _)) = l.accept() {
            s.set_nonblocking(false).unwrap();
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

// ------------------------------------------------------------------------------------ 1. t_relay_to_tcp

#[test]
fn t_relay_to_tcp_reaches_a_tcp_uas_and_the_200_goes_back_over_udp() {
    let uas = TcpListener::bind("127.0.0.1:0").unwrap();
    let uport = uas.local_addr().unwrap().port();
    let cfg = format!(
        "{TM}modparam(\"tm\", \"fr_timer\", 3)\nroute {{\n if (!t_relay_to_tcp(\"127.0.0.1\", \"{uport}\")) {{ sl_reply_error(); }};\n}}\n"
    );
    let (_ser, addr) = ser_with(&cfg, "2", &[]);
    let client = sock();
    let inv = invite("sip:bob@example.com", &client, "rtcp1");
    client.send_to(inv.as_bytes(), addr).unwrap();
    let (t, _) = recv_until(&client, "SIP/2.0 100", Duration::from_secs(2)).expect("100 Trying");
    assert!(t.contains("CSeq: 1 INVITE"));
    let conn = accept(&uas, Duration::from_secs(2)).expect("ser connects to the TCP UAS");
    let mut peer = TcpPeer::new(conn);
    // Wait past Timer A's first two intervals (0.5 s, 1 s): nothing is retransmitted over TCP.
    let seen = peer.recv_all(Duration::from_millis(1700));
    let invites: Vec<&String> = seen.iter().filter(|m| m.starts_with("INVITE")).collect();
    assert_eq!(invites.len(), 1, "one INVITE, no retransmission: {seen:?}");
    let fwd = invites[0].clone();
    let top_via = header(&fwd, "Via").unwrap();
    assert!(
        top_via.starts_with("SIP/2.0/TCP 127.0.0.1:"),
        "our Via says TCP: {fwd}"
    );
    assert!(top_via.contains("branch=z9hG4bK"), "{fwd}");
    assert_eq!(fwd.matches("Via:").count(), 2, "{fwd}");
    assert!(fwd.contains(&format!("SIP/2.0/UDP {}", client.local_addr().unwrap())));
    peer.send(&reply_to(&fwd, 180, "Ringing", "t1"));
    let (r, _) = recv_until(&client, "SIP/2.0 180", Duration::from_secs(2)).expect("180");
    assert_eq!(r.matches("Via:").count(), 1, "our Via removed: {r}");
    peer.send(&reply_to(&fwd, 200, "OK", "t1"));
    let (r, _) = recv_until(&client, "SIP/2.0 200", Duration::from_secs(2)).expect("200");
    assert!(r.contains("CSeq: 1 INVITE") && r.contains("tag=t1"), "{r}");
    let rest = peer.recv_all(Duration::from_millis(600));
    assert!(
        !rest.iter().any(|m| m.starts_with("INVITE")),
        "no INVITE retransmission over TCP: {rest:?}"
    );
    let up = recv_all(&client, Duration::from_millis(300));
    assert!(!codes(&up).contains(&200), "one 200 only: {up:?}");
}

// ------------------------------------------------------------------------------------ 2. t_replicate

#[test]
fn t_replicate_copies_the_register_and_keeps_the_peer_replies() {
    let backup = sock();
    let bport = backup.local_addr().unwrap().port();
    // replicate.cfg's REGISTER branch without digest auth (that is module auth's test): saved
    // locally, answered by save, replicated to the backup server.
    let cfg = format!(
        "{TM}loadmodule \"usrloc.so\"\nloadmodule \"registrar.so\"\nmodparam(\"usrloc\", \"db_mode\", 0)\nmodparam(\"tm\", \"fr_timer\", 2)\nroute {{\n if (uri==myself) {{\n  if (method==\"REGISTER\") {{\n   save(\"location\");\n   if (!src_ip==10.9.9.9) {{\n    t_replicate(\"127.0.0.1\", \"{bport}\");\n   }};\n   break;\n  }};\n  log(\"non-REGISTER\\n\");\n }};\n}}\n"
    );
    let (_ser, addr) = ser_with(&cfg, "1", &[]);
    let client = sock();
    let me = client.local_addr().unwrap();
    let reg = format!(
        "REGISTER sip:{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-rep1\r\nMax-Forwards: 70\r\nFrom: <sip:alice@{addr}>;tag=r1\r\nTo: <sip:alice@{addr}>\r\nCall-ID: rep1\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@{me}>;expires=60\r\nContent-Length: 0\r\n\r\n"
    );
    client.send_to(reg.as_bytes(), addr).unwrap();
    let (ok, _) = recv_until(&client, "SIP/2.0 200", Duration::from_secs(2)).expect("saved");
    assert!(ok.contains("CSeq: 1 REGISTER"), "{ok}");
    let (copy, from) =
        recv_until(&backup, "REGISTER", Duration::from_secs(2)).expect("replica at the backup");
    assert!(
        copy.starts_with(&format!("REGISTER sip:{addr} SIP/2.0")),
        "{copy}"
    );
    assert_eq!(copy.matches("Via:").count(), 2, "{copy}");
    assert!(header(&copy, "Via").unwrap().contains("branch=z9hG4bK"));
    assert!(
        copy.contains(&format!("Contact: <sip:alice@{me}>")),
        "{copy}"
    );
    // The backup challenges the replica, then accepts it: neither reply reaches the caller.
    backup
        .send_to(
            reply_with(
                &copy,
                401,
                "Unauthorized",
                "b1",
                "WWW-Authenticate: Digest realm=\"foo.bar\", nonce=\"n1\"\r\n",
            )
            .as_bytes(),
            from,
        )
        .unwrap();
    let later = recv_all(&client, Duration::from_millis(700));
    assert!(
        later.is_empty(),
        "the backup's reply stays in ser: {later:?}"
    );
    // A second REGISTER (new CSeq): a new replica, its 200 stays too.
    let reg2 = reg
        .replace("branch=z9hG4bK-rep1", "branch=z9hG4bK-rep2")
        .replace("CSeq: 1 REGISTER", "CSeq: 2 REGISTER");
    client.send_to(reg2.as_bytes(), addr).unwrap();
    let (ok2, _) = recv_until(&client, "SIP/2.0 200", Duration::from_secs(2)).expect("saved");
    assert!(ok2.contains("CSeq: 2 REGISTER"));
    let (copy2, from2) = recv_until(&backup, "REGISTER", Duration::from_secs(2)).expect("replica");
    assert!(copy2.contains("CSeq: 2 REGISTER"));
    backup
        .send_to(reply_to(&copy2, 200, "OK", "b1").as_bytes(), from2)
        .unwrap();
    let later = recv_all(&client, Duration::from_millis(700));
    assert!(later.is_empty(), "the backup's 200 stays in ser: {later:?}");
}

#[test]
fn t_replicate_to_a_silent_peer_retransmits_and_tells_the_caller_nothing() {
    let backup = sock();
    let bport = backup.local_addr().unwrap().port();
    let cfg = format!(
        "{TM}modparam(\"tm\", \"fr_timer\", 1)\nroute {{\n sl_send_reply(\"200\", \"ok\");\n t_replicate(\"127.0.0.1\", \"{bport}\");\n}}\n"
    );
    let (_ser, addr) = ser_with(&cfg, "1", &[]);
    let client = sock();
    let msg = request(
        "REGISTER",
        &format!("sip:{addr}"),
        &client.local_addr().unwrap().to_string(),
        "UDP",
        "rep-silent",
    );
    client.send_to(msg.as_bytes(), addr).unwrap();
    let (ok, _) = recv_until(&client, "SIP/2.0 200", Duration::from_secs(2)).unwrap();
    assert!(ok.contains("CSeq: 7 REGISTER"));
    let seen = recv_all(&backup, Duration::from_millis(1500));
    let copies = seen
        .iter()
        .filter(|(m, _)| m.starts_with("REGISTER"))
        .count();
    assert!(copies >= 2, "Timer E retransmits the replica: {seen:?}");
    let later = recv_all(&client, Duration::from_millis(800));
    assert!(later.is_empty(), "no 408 to the caller: {later:?}");
}

// ------------------------------------------------------------------------------------ 3. §16.7 step 7

#[test]
fn two_challenges_are_merged_into_one_reply() {
    let uas1 = sock();
    let uas2 = sock();
    let cfg = format!(
        "{TM}route {{\n append_branch(\"sip:b2@{}\");\n t_relay();\n}}\n",
        uas2.local_addr().unwrap()
    );
    let (_ser, addr) = ser_with(&cfg, "1", &[]);
    let client = sock();
    let inv = invite(
        &format!("sip:b1@{}", uas1.local_addr().unwrap()),
        &client,
        "auth2",
    );
    client.send_to(inv.as_bytes(), addr).unwrap();
    let (f1, a1) = recv_until(&uas1, "INVITE", Duration::from_secs(2)).unwrap();
    let (f2, a2) = recv_until(&uas2, "INVITE", Duration::from_secs(2)).unwrap();
    uas1.send_to(
        reply_with(
            &f1,
            401,
            "Unauthorized",
            "u1",
            "WWW-Authenticate: Digest realm=\"one.example\", nonce=\"n-one\"\r\n",
        )
        .as_bytes(),
        a1,
    )
    .unwrap();
    assert!(recv_until(&uas1, "ACK", Duration::from_secs(2)).is_some());
    // Nothing goes up while the other branch is pending.
    let early = recv_all(&client, Duration::from_millis(300));
    assert!(
        !codes(&early).iter().any(|c| *c >= 200),
        "waits for the other branch: {early:?}"
    );
    uas2.send_to(
        reply_with(
            &f2,
            407,
            "Proxy Authentication Required",
            "u2",
            "Proxy-Authenticate: Digest realm=\"two.example\", nonce=\"n-two\"\r\n",
        )
        .as_bytes(),
        a2,
    )
    .unwrap();
    assert!(recv_until(&uas2, "ACK", Duration::from_secs(2)).is_some());
    let finals = finals_acked(&client, addr, &inv, Duration::from_millis(1200));
    assert_eq!(
        finals.len(),
        1,
        "one final reply (ACKed: no Timer G): {finals:?}"
    );
    let r = &finals[0];
    assert!(status(r) == 401 || status(r) == 407, "{r}");
    assert!(
        r.contains("WWW-Authenticate: Digest realm=\"one.example\", nonce=\"n-one\""),
        "{r}"
    );
    assert!(
        r.contains("Proxy-Authenticate: Digest realm=\"two.example\", nonce=\"n-two\""),
        "{r}"
    );
    assert_eq!(r.matches("Via:").count(), 1, "{r}");
    assert!(r.ends_with("\r\n\r\n"), "well-formed end: {r:?}");
    assert_eq!(header(r, "Content-Length"), Some("0"));
}

// ------------------------------------------------------------------------------------ 4. 503 / 6xx

#[test]
fn a_503_from_the_only_branch_becomes_500() {
    let uas = sock();
    let (_ser, addr) = ser_with(&format!("{TM}route {{\n t_relay();\n}}\n"), "1", &[]);
    let client = sock();
    let inv = invite(
        &format!("sip:bob@{}", uas.local_addr().unwrap()),
        &client,
        "r503",
    );
    client.send_to(inv.as_bytes(), addr).unwrap();
    let (f, a) = recv_until(&uas, "INVITE", Duration::from_secs(2)).unwrap();
    uas.send_to(
        reply_with(&f, 503, "Service Unavailable", "u1", "Retry-After: 30\r\n").as_bytes(),
        a,
    )
    .unwrap();
    assert!(recv_until(&uas, "ACK", Duration::from_secs(2)).is_some());
    let finals = finals_acked(&client, addr, &inv, Duration::from_millis(1200));
    assert_eq!(finals.len(), 1, "{finals:?}");
    assert!(
        finals[0].starts_with("SIP/2.0 500 "),
        "503 becomes 500 (§16.7 step 6): {}",
        finals[0]
    );
    assert!(finals[0].contains("CSeq: 1 INVITE"));
    assert_eq!(finals[0].matches("Via:").count(), 1, "{}", finals[0]);
}

#[test]
fn a_6xx_cancels_the_other_branch_and_goes_up() {
    let uas1 = sock();
    let uas2 = sock();
    let cfg = format!(
        "{TM}route {{\n append_branch(\"sip:b2@{}\");\n t_relay();\n}}\n",
        uas2.local_addr().unwrap()
    );
    let (_ser, addr) = ser_with(&cfg, "1", &[]);
    let client = sock();
    let inv = invite(
        &format!("sip:b1@{}", uas1.local_addr().unwrap()),
        &client,
        "r603",
    );
    client.send_to(inv.as_bytes(), addr).unwrap();
    let (f1, a1) = recv_until(&uas1, "INVITE", Duration::from_secs(2)).unwrap();
    let (f2, a2) = recv_until(&uas2, "INVITE", Duration::from_secs(2)).unwrap();
    uas2.send_to(reply_to(&f2, 180, "Ringing", "u2").as_bytes(), a2)
        .unwrap();
    assert!(recv_until(&client, "SIP/2.0 180", Duration::from_secs(2)).is_some());
    uas1.send_to(reply_to(&f1, 603, "Decline", "u1").as_bytes(), a1)
        .unwrap();
    assert!(recv_until(&uas1, "ACK", Duration::from_secs(2)).is_some());
    let (c, _) = recv_until(&uas2, "CANCEL", Duration::from_secs(2)).expect("CANCEL the other");
    assert!(c.contains("CSeq: 1 CANCEL"), "{c}");
    assert_eq!(
        header(&c, "Via"),
        header(&f2, "Via"),
        "the CANCEL has the INVITE's branch"
    );
    uas2.send_to(reply_to(&c, 200, "OK", "u2").as_bytes(), a2)
        .unwrap();
    uas2.send_to(
        reply_to(&f2, 487, "Request Terminated", "u2").as_bytes(),
        a2,
    )
    .unwrap();
    assert!(recv_until(&uas2, "ACK", Duration::from_secs(2)).is_some());
    let finals = finals_acked(&client, addr, &inv, Duration::from_millis(1200));
    let got: Vec<u16> = finals.iter().map(|m| status(m)).collect();
    assert_eq!(got, vec![603], "the 6xx, not the 487: {finals:?}");
}

#[test]
fn a_6xx_goes_up_even_if_the_canceled_branch_never_answers() {
    // The other branch ignores the CANCEL: the caller gets the 6xx after Timer C/B at the latest.
    let uas1 = sock();
    let uas2 = sock();
    let cfg = format!(
        "{TM}modparam(\"tm\", \"fr_timer\", 1)\nmodparam(\"tm\", \"fr_inv_timer\", 2)\nroute {{\n append_branch(\"sip:b2@{}\");\n t_relay();\n}}\n",
        uas2.local_addr().unwrap()
    );
    let (_ser, addr) = ser_with(&cfg, "1", &[]);
    let client = sock();
    let inv = invite(
        &format!("sip:b1@{}", uas1.local_addr().unwrap()),
        &client,
        "r603b",
    );
    client.send_to(inv.as_bytes(), addr).unwrap();
    let (f1, a1) = recv_until(&uas1, "INVITE", Duration::from_secs(2)).unwrap();
    let (f2, a2) = recv_until(&uas2, "INVITE", Duration::from_secs(2)).unwrap();
    uas2.send_to(reply_to(&f2, 180, "Ringing", "u2").as_bytes(), a2)
        .unwrap();
    uas1.send_to(reply_to(&f1, 600, "Busy Everywhere", "u1").as_bytes(), a1)
        .unwrap();
    assert!(recv_until(&uas2, "CANCEL", Duration::from_secs(2)).is_some());
    let (r, _) = recv_until(&client, "SIP/2.0 6", Duration::from_secs(4)).expect("6xx");
    assert!(r.starts_with("SIP/2.0 600 Busy Everywhere"), "{r}");
}

/// RFC 3261 §16.7 step 5: after a 6xx no new branch starts — an armed failure_route (which would
/// relay to a third destination) is not run, and the caller gets the 6xx.
#[test]
fn a_6xx_does_not_run_the_failure_route() {
    let uas1 = sock();
    let fallback = sock();
    let cfg = format!(
        "{TM}route {{\n t_on_failure(\"1\");\n t_relay();\n}}\nfailure_route[1] {{\n rewritehostport(\"{}\");\n t_relay();\n}}\n",
        fallback.local_addr().unwrap()
    );
    let (_ser, addr) = ser_with(&cfg, "1", &[]);
    let client = sock();
    let inv = invite(
        &format!("sip:b1@{}", uas1.local_addr().unwrap()),
        &client,
        "r603f",
    );
    client.send_to(inv.as_bytes(), addr).unwrap();
    let (f1, a1) = recv_until(&uas1, "INVITE", Duration::from_secs(2)).unwrap();
    uas1.send_to(reply_to(&f1, 603, "Decline", "u1").as_bytes(), a1)
        .unwrap();
    let finals = finals_acked(&client, addr, &inv, Duration::from_millis(1200));
    let got: Vec<u16> = finals.iter().map(|m| status(m)).collect();
    assert_eq!(got, vec![603], "{finals:?}");
    assert!(
        recv_until(&fallback, "INVITE", Duration::from_millis(300)).is_none(),
        "no new branch after a 6xx"
    );
}

// ------------------------------------------------------------------------------------ 5. cross-shard

/// A number after `label` in `text` (e.g. "Total: 40").
fn number_after(text: &str, label: &str) -> Option<u64> {
    let at = text.find(label)? + label.len();
    text[at..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[test]
fn replies_arriving_on_the_other_shard_are_matched() {
    const CALLS: usize = 40;
    let fifo = PathBuf::from("/tmp").join(format!(
        "ser_test_tmfifo_{}_{}",
        std::process::id(),
        line!()
    ));
    let uas = sock();
    // The UAS answers from other sockets than the one that received the INVITE: other 4-tuples,
    // so SO_REUSEPORT spreads the replies over both shards independently of the requests.
    let answer: Vec<UdpSocket> = (0..4).map(|_| sock()).collect();
    let (_ser, addr) = ser_with(
        &format!("{TM}modparam(\"tm\", \"fr_timer\", 5)\nroute {{\n t_relay();\n}}\n"),
        "2",
        &["-i", fifo.to_str().unwrap()],
    );
    let callers: Vec<UdpSocket> = (0..CALLS).map(|_| sock()).collect();
    let ruri = format!("sip:bob@{}", uas.local_addr().unwrap());
    for (i, c) in callers.iter().enumerate() {
        c.send_to(invite(&ruri, c, &format!("xs{i}")).as_bytes(), addr)
            .unwrap();
    }
    let mut fwd = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 65536];
    while fwd.len() < CALLS && Instant::now() < until {
        if let Ok((n, _)) = uas.recv_from(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if m.starts_with("INVITE") {
                fwd.push(m);
            }
        }
    }
    assert_eq!(fwd.len(), CALLS, "every INVITE reached the UAS");
    for (i, f) in fwd.iter().enumerate() {
        let a = &answer[i % answer.len()];
        a.send_to(reply_to(f, 180, "Ringing", "u").as_bytes(), addr)
            .unwrap();
        a.send_to(reply_to(f, 200, "OK", "u").as_bytes(), addr)
            .unwrap();
    }
    // Every caller: 100, 180, exactly one 200, nothing else.
    let until = Instant::now() + Duration::from_secs(3);
    let mut per_call: Vec<Vec<u16>> = vec![Vec::new(); CALLS];
    while Instant::now() < until && per_call.iter().any(|c| !c.contains(&200)) {
        for (i, c) in callers.iter().enumerate() {
            c.set_nonblocking(true).unwrap();
            while let Ok((n, _)) = c.recv_from(&mut buf) {
                per_call[i].push(status(&String::from_utf8_lossy(&buf[..n])));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(700));
    for (i, c) in callers.iter().enumerate() {
        while let Ok((n, _)) = c.recv_from(&mut buf) {
            per_call[i].push(status(&String::from_utf8_lossy(&buf[..n])));
        }
    }
    for (i, got) in per_call.iter().enumerate() {
        assert_eq!(
            got.iter().filter(|c| **c == 200).count(),
            1,
            "call {i}: one 200: {got:?}"
        );
        assert_eq!(
            got.iter().filter(|c| **c == 180).count(),
            1,
            "call {i}: one 180: {got:?}"
        );
        assert!(
            got.iter().all(|c| [100, 180, 200].contains(c)),
            "call {i}: {got:?}"
        );
    }
    // Matched statefully: the INVITEs were not retransmitted (the 180 stopped Timer A everywhere).
    let more = recv_all(&uas, Duration::from_millis(300));
    assert!(
        !more.iter().any(|(m, _)| m.starts_with("INVITE")),
        "no retransmission: {more:?}"
    );
    let stats = fifo_command(&fifo, "t_stats", &[]);
    assert_eq!(
        number_after(&stats, "Total:"),
        Some(CALLS as u64),
        "{stats}"
    );
    assert_eq!(number_after(&stats, "2xx:"), Some(CALLS as u64), "{stats}");
    assert_eq!(number_after(&stats, "4xx:"), Some(0), "{stats}");
    assert_eq!(number_after(&stats, "5xx:"), Some(0), "{stats}");
    assert_eq!(number_after(&stats, "6xx:"), Some(0), "{stats}");
    let _ = std::fs::remove_file(&fifo);
}

// ------------------------------------------------------------------------------------ 6. onr.cfg

/// examples/serial-forking.cfg, with its iptel.org destinations pointed at loopback sockets and
/// its timers shortened (fr_inv_timer 15 → 2, fr_timer 10 → 1). `parallel` keeps its sink port 9.
fn onr_cfg(nobody: u16, parallel: Option<u16>, nonsense: u16, foo_port: u16) -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/serial-forking.cfg"
    ))
    .unwrap();
    let parallel = match parallel {
        Some(p) => format!("sip:parallel@127.0.0.1:{p}"),
        None => "sip:parallel@127.0.0.1:9".to_string(),
    };
    let out = text
        .replace(
            "modparam(\"tm\", \"fr_inv_timer\", 15 )",
            "modparam(\"tm\", \"fr_inv_timer\", 2 )",
        )
        .replace(
            "modparam(\"tm\", \"fr_timer\", 10 )",
            "modparam(\"tm\", \"fr_timer\", 1 )",
        )
        .replace(
            "sip:nobody@iptel.org",
            &format!("sip:nobody@127.0.0.1:{nobody}"),
        )
        .replace("sip:parallel@iptel.org:9", &parallel)
        .replace(
            "sip:nonsense@iptel.org",
            &format!("sip:nonsense@127.0.0.1:{nonsense}"),
        )
        .replace(
            "sip:foo@iptel.org",
            &format!("sip:foo@127.0.0.1:{foo_port}"),
        );
    assert!(!out.contains("iptel.org"), "{out}");
    assert!(out.contains("fr_timer\", 1 )") && out.contains("fr_inv_timer\", 2 )"));
    out
}

fn port_of(s: &UdpSocket) -> u16 {
    s.local_addr().unwrap().port()
}

#[test]
fn onr_cfg_busy_then_timeout_then_the_last_resort_answers() {
    let nobody = sock();
    let nonsense = sock();
    let foo_uas = sock();
    let cfg = onr_cfg(
        port_of(&nobody),
        None,
        port_of(&nonsense),
        port_of(&foo_uas),
    );
    let (ser, addr) = ser_with(&cfg, "1", &[]);
    let client = sock();
    let inv = invite("sip:someone@example.com", &client, "onrseed1");
    let t0 = Instant::now();
    client.send_to(inv.as_bytes(), addr).unwrap();
    let (f1, a1) = recv_until(&nobody, "INVITE", Duration::from_secs(2)).unwrap();
    assert!(f1.starts_with("INVITE sip:nobody@127.0.0.1:"), "{f1}");
    nobody
        .send_to(reply_to(&f1, 486, "Busy Here", "n1").as_bytes(), a1)
        .unwrap();
    assert!(recv_until(&nobody, "ACK", Duration::from_secs(2)).is_some());
    // `parallel` (port 9, nobody there) never answers: after fr_timer the failure_route tries
    // `nonsense`.
    let (f2, a2) = recv_until(&nonsense, "INVITE", Duration::from_secs(3)).expect("nonsense");
    let t_nonsense = t0.elapsed();
    assert!(
        t_nonsense >= Duration::from_millis(900),
        "after fr_timer: {t_nonsense:?}"
    );
    assert!(f2.starts_with("INVITE sip:nonsense@127.0.0.1:"), "{f2}");
    assert!(ser.wait_log("first redirection", Duration::from_secs(1)));
    // nonsense rings, then goes silent: Timer C (fr_inv_timer = 2 s) cancels it and
    // failure_route[2] tries `foo`.
    nonsense
        .send_to(reply_to(&f2, 180, "Ringing", "s1").as_bytes(), a2)
        .unwrap();
    assert!(recv_until(&client, "SIP/2.0 180", Duration::from_secs(2)).is_some());
    let (c2, _) =
        recv_until(&nonsense, "CANCEL", Duration::from_secs(4)).expect("CANCEL on Timer C");
    nonsense
        .send_to(reply_to(&c2, 200, "OK", "s1").as_bytes(), a2)
        .unwrap();
    let (f3, a3) = recv_until(&foo_uas, "INVITE", Duration::from_secs(3)).expect("foo");
    assert!(f3.starts_with("INVITE sip:foo@127.0.0.1:"), "{f3}");
    assert!(ser.wait_log("second redirection", Duration::from_secs(1)));
    // A late 487 from nonsense is ACKed and stays here.
    nonsense
        .send_to(
            reply_to(&f2, 487, "Request Terminated", "s1").as_bytes(),
            a2,
        )
        .unwrap();
    foo_uas
        .send_to(reply_to(&f3, 200, "OK", "f1").as_bytes(), a3)
        .unwrap();
    let got = recv_all(&client, Duration::from_millis(800));
    let finals: Vec<u16> = codes(&got).into_iter().filter(|c| *c >= 200).collect();
    assert_eq!(finals, vec![200], "{got:?}");
}

#[test]
fn onr_cfg_all_busy_walks_every_destination_and_the_caller_gets_486() {
    let nobody = sock();
    let parallel = sock();
    let nonsense = sock();
    let foo_uas = sock();
    let cfg = onr_cfg(
        port_of(&nobody),
        Some(port_of(&parallel)),
        port_of(&nonsense),
        port_of(&foo_uas),
    );
    let (ser, addr) = ser_with(&cfg, "1", &[]);
    let client = sock();
    let inv = invite("sip:someone@example.com", &client, "onrseed2");
    let t0 = Instant::now();
    client.send_to(inv.as_bytes(), addr).unwrap();
    for (s, user) in [(&nobody, "nobody"), (&parallel, "parallel")] {
        let (f, a) = recv_until(s, "INVITE", Duration::from_secs(2)).unwrap();
        assert!(f.starts_with(&format!("INVITE sip:{user}@")), "{f}");
        s.send_to(reply_to(&f, 486, "Busy Here", user).as_bytes(), a)
            .unwrap();
    }
    // Both busy: failure_route[1] at once (no timer involved).
    let (f, a) = recv_until(&nonsense, "INVITE", Duration::from_secs(2)).expect("nonsense");
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    nonsense
        .send_to(reply_to(&f, 486, "Busy Here", "s").as_bytes(), a)
        .unwrap();
    let (f, a) = recv_until(&foo_uas, "INVITE", Duration::from_secs(2)).expect("foo");
    foo_uas
        .send_to(reply_to(&f, 486, "Busy Here", "f").as_bytes(), a)
        .unwrap();
    let finals = finals_acked(&client, addr, &inv, Duration::from_millis(1200));
    let got: Vec<u16> = finals.iter().map(|m| status(m)).collect();
    assert_eq!(got, vec![486], "{finals:?}");
    assert!(ser.wait_log("first redirection", Duration::from_secs(1)));
    assert!(ser.wait_log("second redirection", Duration::from_secs(1)));
    // REGISTER is simply okayed.
    let reg = request(
        "REGISTER",
        &format!("sip:{addr}"),
        &client.local_addr().unwrap().to_string(),
        "UDP",
        "onrreg",
    );
    client.send_to(reg.as_bytes(), addr).unwrap();
    let (r, _) = recv_until(&client, "SIP/2.0 200", Duration::from_secs(2)).expect("200 ok");
    assert!(r.starts_with("SIP/2.0 200 ok"), "{r}");
}

// ------------------------------------------------------------------------------------ 7. TCP caller

#[test]
fn tcp_caller_relayed_over_udp_gets_its_replies_on_the_connection() {
    let uas = sock();
    let (_ser, addr) = ser_with(
        &format!("{TM}modparam(\"tm\", \"fr_timer\", 3)\nroute {{\n t_relay();\n}}\n"),
        "2",
        &[],
    );
    let mut caller = TcpPeer::new(TcpStream::connect(addr).unwrap());
    let me = caller.s.local_addr().unwrap().to_string();
    let inv = invite_via(
        &format!("sip:bob@{}", uas.local_addr().unwrap()),
        "TCP",
        &me,
        "tcpcall1",
    );
    caller.send(&inv);
    let t = caller
        .recv_until("SIP/2.0 100", Duration::from_secs(2))
        .expect("100 on the connection");
    assert!(t.contains("CSeq: 1 INVITE"));
    let (f, a) = recv_until(&uas, "INVITE", Duration::from_secs(2)).expect("INVITE over UDP");
    assert!(
        header(&f, "Via")
            .unwrap()
            .starts_with("SIP/2.0/UDP 127.0.0.1:"),
        "{f}"
    );
    assert!(f.contains(&format!("Via: SIP/2.0/TCP {me}")), "{f}");
    uas.send_to(reply_to(&f, 180, "Ringing", "u1").as_bytes(), a)
        .unwrap();
    let r = caller
        .recv_until("SIP/2.0 180", Duration::from_secs(2))
        .expect("180 on the connection");
    assert_eq!(r.matches("Via:").count(), 1, "{r}");
    uas.send_to(reply_to(&f, 200, "OK", "u1").as_bytes(), a)
        .unwrap();
    let r = caller
        .recv_until("SIP/2.0 200", Duration::from_secs(2))
        .expect("200 on the connection");
    assert!(r.contains("tag=u1"), "{r}");
    // Over TCP nothing is retransmitted upstream.
    let rest = caller.recv_all(Duration::from_millis(1200));
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn tcp_caller_gets_a_408_on_the_connection() {
    let uas = sock();
    let (_ser, addr) = ser_with(
        &format!("{TM}modparam(\"tm\", \"fr_timer\", 1)\nroute {{\n t_relay();\n}}\n"),
        "1",
        &[],
    );
    let mut caller = TcpPeer::new(TcpStream::connect(addr).unwrap());
    let me = caller.s.local_addr().unwrap().to_string();
    let inv = invite_via(
        &format!("sip:bob@{}", uas.local_addr().unwrap()),
        "TCP",
        &me,
        "tcpcall2",
    );
    caller.send(&inv);
    let r = caller
        .recv_until("SIP/2.0 408", Duration::from_secs(3))
        .expect("408 on the connection");
    assert!(r.contains("CSeq: 1 INVITE"));
    // Over TCP the final reply is not retransmitted (Timer G is UDP only).
    let rest = caller.recv_all(Duration::from_millis(1200));
    assert!(rest.is_empty(), "{rest:?}");
}

// ------------------------------------------------------------------------------------ 8. Timer E / F

#[test]
fn non_invite_to_a_silent_uas_timer_e_then_408() {
    let uas = sock();
    let (_ser, addr) = ser_with(
        &format!("{TM}modparam(\"tm\", \"fr_timer\", 2)\nroute {{\n t_relay();\n}}\n"),
        "1",
        &[],
    );
    let client = sock();
    let msg = request(
        "MESSAGE",
        &format!("sip:bob@{}", uas.local_addr().unwrap()),
        &client.local_addr().unwrap().to_string(),
        "UDP",
        "timere",
    );
    let t0 = Instant::now();
    client.send_to(msg.as_bytes(), addr).unwrap();
    let seen = recv_timed(&uas, Duration::from_millis(2600));
    let sends: Vec<Duration> = seen
        .iter()
        .filter(|(m, _, _)| m.starts_with("MESSAGE"))
        .map(|(_, _, at)| at.duration_since(t0))
        .collect();
    // Timer E: at 0, T1 (0.5 s), +2·T1 (1.5 s); Timer F (2 s) ends it before the next (3.5 s).
    assert_eq!(sends.len(), 3, "{sends:?}");
    let gap1 = sends[1] - sends[0];
    let gap2 = sends[2] - sends[1];
    assert!(
        gap1 >= Duration::from_millis(400) && gap1 < Duration::from_millis(800),
        "{sends:?}"
    );
    assert!(
        gap2 >= Duration::from_millis(900) && gap2 < Duration::from_millis(1400),
        "{sends:?}"
    );
    let (r, _) = recv_until(&client, "SIP/2.0 408", Duration::from_secs(2)).expect("408");
    assert!(r.contains("CSeq: 7 MESSAGE"), "{r}");
    let at = t0.elapsed();
    assert!(at >= Duration::from_millis(1900), "{at:?}");
    // After Timer F nothing more goes downstream.
    let later = recv_all(&uas, Duration::from_millis(1200));
    assert!(later.is_empty(), "{later:?}");
}

// ------------------------------------------------------------------------------------ memory

/// VmRSS of process `pid`, bytes.
fn rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Memory per live INVITE transaction, measured on the real server: `TM_MEM_N` (10,000) INVITEs
/// relayed to a UAS that never answers (each transaction: the request as routed, one branch, the
/// 100 Trying), ser's resident set before and after, over the transactions `t_stats` counts.
/// Not a pass/fail test; run with
/// `cargo test --test tm_paths memory_per_transaction -- --ignored --nocapture`.
#[test]
#[ignore]
fn memory_per_transaction() {
    let n: usize = std::env::var("TM_MEM_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let fifo = PathBuf::from("/tmp").join(format!(
        "ser_test_tmfifo_{}_{}",
        std::process::id(),
        line!()
    ));
    let uas = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (ser, addr) = ser_with(
        &format!("{TM}modparam(\"tm\", \"fr_timer\", 120)\nroute {{\n t_relay();\n}}\n"),
        "1",
        &["-i", fifo.to_str().unwrap()],
    );
    let pid = ser.child.id();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_nonblocking(true).unwrap();
    let ruri = format!("sip:bob@{}", uas.local_addr().unwrap());
    let drain = |c: &UdpSocket| {
        let mut b = [0u8; 4096];
        let mut k = 0;
        while c.recv_from(&mut b).is_ok() {
            k += 1;
        }
        k
    };
    // Warm up (pools, tables) and settle, then the baseline.
    for i in 0..200 {
        client
            .send_to(invite(&ruri, &client, &format!("warm{i}")).as_bytes(), addr)
            .unwrap();
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(20));
            drain(&client);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    drain(&client);
    let stats = |label: &str| {
        let s = fifo_command(&fifo, "t_stats", &[]);
        number_after(&s, label).unwrap_or(0)
    };
    let cur0 = stats("Current:");
    let rss0 = rss(pid);
    let mut trying = 0;
    for i in 0..n {
        client
            .send_to(invite(&ruri, &client, &format!("mem{i}")).as_bytes(), addr)
            .unwrap();
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(10));
            trying += drain(&client);
        }
    }
    std::thread::sleep(Duration::from_millis(1000));
    trying += drain(&client);
    let cur1 = stats("Current:");
    let rss1 = rss(pid);
    let live = cur1.saturating_sub(cur0);
    let per = (rss1.saturating_sub(rss0)) as f64 / live.max(1) as f64;
    eprintln!(
        "transactions: {live} new ({cur1} live, {trying} replies seen); RSS {rss0} -> {rss1} B; {per:.0} B per transaction"
    );
    let _ = std::fs::remove_file(&fifo);
    assert!(live > 0);
}

// ------------------------------------------------------------------------------------ DNS

/// `t_relay` to a host name not yet in the DNS cache: the script waits for the controlplane's
/// answer (SER_NAMESERVER), the relay is redone, the UAS gets the INVITE and its 200 goes up.
#[test]
fn t_relay_to_a_name_waits_for_dns_then_relays() {
    let uas = sock();
    let uport = uas.local_addr().unwrap().port();
    let zone = dns_server::Zone::new().a("uas.test", std::net::Ipv4Addr::LOCALHOST, 60);
    let dns = dns_server::DnsServer::start(zone);
    let port = free_port("127.0.0.1");
    let cfg = format!(
        "{TM}route {{\n rewritehostport(\"uas.test:{uport}\");\n if (!t_relay()) {{ sl_reply_error(); }};\n}}\n"
    );
    let ns = dns.addr().to_string();
    let _ser = Ser::start_with_env(
        &cfg,
        &["-l", "127.0.0.1", "-p", &port.to_string()],
        &[("SER_NAMESERVER", &ns)],
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let client = sock();
    let inv = invite("sip:bob@example.com", &client, "rdns1");
    client.send_to(inv.as_bytes(), addr).unwrap();
    let (f, a) = recv_until(&uas, "INVITE", Duration::from_secs(3)).expect("the INVITE after DNS");
    assert!(
        f.starts_with(&format!("INVITE sip:bob@uas.test:{uport} SIP/2.0")),
        "{f}"
    );
    uas.send_to(reply_to(&f, 200, "OK", "u1").as_bytes(), a)
        .unwrap();
    let (r, _) = recv_until(&client, "SIP/2.0 200", Duration::from_secs(2)).expect("the 200");
    assert!(r.contains("CSeq: 1 INVITE"), "{r}");
}
