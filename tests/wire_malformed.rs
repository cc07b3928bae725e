//! The malformed-input cases a robustness suite found, end to end: bytes sent to a running ser,
//! the bytes that come back asserted (or that nothing does, with the drop visible in `/metrics`).
//!
//! - a bare-LF request is forwarded with CRLF line ends throughout (its Via below ours too);
//! - a refusal that could carry no Via or CSeq is dropped and counted, not sent unmatched;
//! - a datagram cut inside its header section: 400 "Header Section Not Terminated" when the Via
//!   and CSeq lines arrived whole (never a truncated CSeq copied), else dropped and counted;
//! - over TCP, a message over the size limit is answered 513 before the connection is closed;
//! - CSeq numbers up to 2^32-1 are valid, a repeated `;tag=` is 400, a Request-URI over the limit
//!   is 414.
#![allow(clippy::unwrap_used)]

#[path = "support/net.rs"]
mod net;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use net::*;

/// Requests for `fwd@…` are forwarded to the sink; everything else is answered 200.
const CFG: &str = r#"
loadmodule "sl.so"
route {
	if (method == "ACK") { break; };
	if (uri =~ "^sip:fwd@") {
		forward(127.0.0.1, SINKPORT);
		break;
	};
	sl_send_reply("200", "OK");
}
"#;

struct Env {
    _ser: Ser,
    udp: SocketAddr,
    http: u16,
    client: UdpSocket,
    sink: UdpSocket,
}

fn start() -> Env {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = CFG.replace("SINKPORT", &sink.local_addr().unwrap().port().to_string());
    let port = free_port("127.0.0.1");
    let http = free_port("127.0.0.1");
    let ser = Ser::start_with_cfg(
        &cfg,
        &[
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            &format!("--http=127.0.0.1:{http}"),
        ],
    );
    Env {
        _ser: ser,
        udp: format!("127.0.0.1:{port}").parse().unwrap(),
        http,
        client: UdpSocket::bind("127.0.0.1:0").unwrap(),
        sink,
    }
}

impl Env {
    /// Sends `req` and returns the reply, or None when nothing came within `wait`.
    fn ask(&self, req: &[u8], wait: Duration) -> Option<String> {
        self.client.send_to(req, self.udp).unwrap();
        recv(&self.client, wait)
    }

    /// `ser_dropped_total` from `/metrics`.
    fn dropped(&self) -> u64 {
        let mut s = TcpStream::connect(("127.0.0.1", self.http)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.lines()
            .find_map(|l| l.strip_prefix("ser_dropped_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no ser_dropped_total in /metrics:\n{out}"))
    }
}

fn recv(s: &UdpSocket, wait: Duration) -> Option<String> {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn options(ruri: &str, call: &str, extra: &str) -> String {
    format!(
        "OPTIONS {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-{call}\r\nMax-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: {call}\r\nCSeq: 1 OPTIONS\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

/// Waits until `/metrics` shows more drops than `before` (the counter is updated by the shard).
fn wait_dropped(e: &Env, before: u64) -> u64 {
    for _ in 0..50 {
        let now = e.dropped();
        if now > before {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    e.dropped()
}

#[test]
fn a_bare_lf_request_is_forwarded_with_crlf_everywhere() {
    let e = start();
    let me = e.client.local_addr().unwrap();
    let req = format!(
        "MESSAGE sip:fwd@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-lf1;rport\nMax-Forwards: 70\nFrom: <sip:a@example.com>;tag=1\nTo: <sip:fwd@127.0.0.1>\nCall-ID: lf1\nCSeq: 1 MESSAGE\nContent-Length: 3\n\nhi\n"
    );
    e.client.send_to(req.as_bytes(), e.udp).unwrap();
    let fwd = recv(&e.sink, Duration::from_secs(3)).expect("forwarded");
    let (head, body) = fwd.split_once("\r\n\r\n").expect("CRLF empty line");
    assert_eq!(body, "hi\n", "the body is left as it came");
    assert!(
        !head.replace("\r\n", "").contains('\n'),
        "a bare LF left: {fwd:?}"
    );
    let lines: Vec<&str> = head.split("\r\n").collect();
    assert_eq!(lines[0], "MESSAGE sip:fwd@127.0.0.1 SIP/2.0");
    assert!(
        lines[1].starts_with("Via: SIP/2.0/UDP 127.0.0.1:"),
        "{fwd:?}"
    );
    assert_eq!(
        lines[2],
        format!(
            "Via: SIP/2.0/UDP {me};branch=z9hG4bK-lf1;rport={};received=127.0.0.1",
            me.port()
        ),
        "{fwd:?}"
    );
    assert_eq!(lines[3], "Max-Forwards: 69");
    assert_eq!(lines.last(), Some(&"Content-Length: 3"));
}

#[test]
fn a_refusal_that_no_client_could_match_is_dropped_and_counted() {
    let e = start();
    let before = e.dropped();
    // LF-only framing, no Via at all: a 400 would carry nothing to match it by.
    let no_via = b"OPTIONS sip:x@127.0.0.1 SIP/2.0\nFrom: <sip:a@b>;tag=1\nTo: <sip:x@b>\nCall-ID: nv1\nCSeq: 1 OPTIONS\n\n";
    assert_eq!(e.ask(no_via, Duration::from_millis(500)), None);
    let after = wait_dropped(&e, before);
    assert_eq!(after, before + 1);
    // No CSeq: the same.
    let no_cseq = b"OPTIONS sip:x@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-nc1\nFrom: <sip:a@b>;tag=1\nTo: <sip:x@b>\nCall-ID: nc1\n\n";
    assert_eq!(e.ask(no_cseq, Duration::from_millis(500)), None);
    assert_eq!(wait_dropped(&e, after), after + 1);
    // With a Via and CSeq, the same defect class is answered (RFC 4475 insuf: no From/To/Call-ID).
    let insuf = b"OPTIONS sip:x@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-in1\nCSeq: 1 OPTIONS\n\n";
    let r = e.ask(insuf, Duration::from_secs(3)).expect("400");
    assert!(r.starts_with("SIP/2.0 400 "), "{r}");
    assert!(r.contains("\r\nCSeq: 1 OPTIONS\r\n"), "{r}");
}

#[test]
fn a_datagram_cut_inside_its_headers_gets_one_behaviour() {
    let e = start();
    let full = options("sip:x@127.0.0.1", "cut1", "X-Padding: 0123456789\r\n");
    let cseq_at = full.find("CSeq:").unwrap();
    let after_cseq = full[cseq_at..].find("\r\n").unwrap() + cseq_at + 2;
    // Cut after every header a reply needs, at a line end and in the middle of a later line:
    // the same 400, with the CSeq intact.
    for cut in [after_cseq, after_cseq + 7, full.len() - 4] {
        let r = e
            .ask(&full.as_bytes()[..cut], Duration::from_secs(3))
            .unwrap_or_else(|| panic!("no answer, cut at {cut}"));
        assert!(
            r.starts_with("SIP/2.0 400 Bad Request - Header Section Not Terminated\r\n"),
            "cut at {cut}: {r}"
        );
        assert!(r.contains("\r\nCSeq: 1 OPTIONS\r\n"), "cut at {cut}: {r}");
        assert!(r.contains("\r\nCall-ID: cut1\r\n"), "cut at {cut}: {r}");
    }
    // Cut inside the CSeq (or before it): nothing a reply could match by arrived whole.
    let mut dropped = e.dropped();
    for cut in [cseq_at + 9, cseq_at, full.find("Via:").unwrap() + 20] {
        assert_eq!(
            e.ask(&full.as_bytes()[..cut], Duration::from_millis(400)),
            None,
            "cut at {cut}"
        );
        let now = wait_dropped(&e, dropped);
        assert_eq!(now, dropped + 1, "cut at {cut} is counted");
        dropped = now;
    }
}

#[test]
fn cseq_tags_and_request_uri_limits() {
    let e = start();
    // Any 32-bit unsigned sequence number is valid (only the initial one must be < 2^31).
    for n in ["2147483648", "4294967295"] {
        let req = options("sip:x@127.0.0.1", &format!("cs{n}"), "")
            .replace("CSeq: 1 OPTIONS", &format!("CSeq: {n} OPTIONS"));
        let r = e.ask(req.as_bytes(), Duration::from_secs(3)).unwrap();
        assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{n}: {r}");
        assert!(r.contains(&format!("\r\nCSeq: {n} OPTIONS\r\n")), "{r}");
    }
    let req = options("sip:x@127.0.0.1", "cs-big", "")
        .replace("CSeq: 1 OPTIONS", "CSeq: 4294967296 OPTIONS");
    let r = e.ask(req.as_bytes(), Duration::from_secs(3)).unwrap();
    assert!(
        r.starts_with("SIP/2.0 400 Bad Request - Bad CSeq\r\n"),
        "{r}"
    );

    // A repeated tag parameter in From or To (RFC 3261 §7.3.1).
    let req = options("sip:x@127.0.0.1", "tag2f", "").replace(
        "From: <sip:a@example.com>;tag=1",
        "From: <sip:a@example.com>;tag=1;tag=2",
    );
    let r = e.ask(req.as_bytes(), Duration::from_secs(3)).unwrap();
    assert!(
        r.starts_with("SIP/2.0 400 Bad Request - Repeated Parameter\r\n"),
        "{r}"
    );
    let req = options("sip:x@127.0.0.1", "tag2t", "").replace(
        "To: <sip:b@example.com>",
        "To: <sip:b@example.com>;tag=x; TAG=y",
    );
    let r = e.ask(req.as_bytes(), Duration::from_secs(3)).unwrap();
    assert!(
        r.starts_with("SIP/2.0 400 Bad Request - Repeated Parameter\r\n"),
        "{r}"
    );

    // A Request-URI over the limit (1024 bytes): 414, with the headers to match it.
    let long = format!("sip:{}@127.0.0.1", "a".repeat(1100));
    let r = e
        .ask(
            options(&long, "ruri-long", "").as_bytes(),
            Duration::from_secs(3),
        )
        .unwrap();
    assert!(r.starts_with("SIP/2.0 414 Request-URI Too Long\r\n"), "{r}");
    assert!(r.contains("\r\nCall-ID: ruri-long\r\n"), "{r}");
    // Just under it: fine.
    let ok = format!("sip:{}@127.0.0.1", "a".repeat(1000));
    let r = e
        .ask(
            options(&ok, "ruri-ok", "").as_bytes(),
            Duration::from_secs(3),
        )
        .unwrap();
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
}

#[test]
fn tcp_message_over_the_limit_is_answered_513_then_closed() {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = CFG.replace("SINKPORT", &sink.local_addr().unwrap().port().to_string());
    let port = free_port("127.0.0.1");
    let _ser = Ser::start_with_cfg(&cfg, &["-l", "tcp:127.0.0.1", "-p", &port.to_string()]);
    // A body larger than the 64 KB limit, announced by Content-Length.
    let body = "x".repeat(70_000);
    let req = options("sip:x@127.0.0.1", "big1", "Content-Type: text/plain\r\n")
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
        .replace(
            "Content-Length: 0\r\n\r\n",
            &format!("Content-Length: {}\r\n\r\n", body.len()),
        );
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    // The peer may go on writing the body; ser discards it and still answers first.
    let _ = s.write_all(body.as_bytes());
    let replies = tcp_read_replies(&mut s, 1);
    let r = replies.first().expect("a reply before the close");
    assert!(r.starts_with("SIP/2.0 513 Message Too Large\r\n"), "{r}");
    assert!(r.contains("\r\nCall-ID: big1\r\n"), "{r}");
    assert!(r.contains("\r\nCSeq: 1 OPTIONS\r\n"), "{r}");
    assert!(closed_within(&mut s, Duration::from_secs(3)), "then closed");

    // An endless header section: answered too once the Via and CSeq arrived, then closed.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = options("sip:x@127.0.0.1", "big2", "")
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
        .replace("Content-Length: 0\r\n\r\n", "");
    s.write_all(head.as_bytes()).unwrap();
    for i in 0..1000 {
        if s.write_all(format!("X-Filler-{i}: {}\r\n", "y".repeat(90)).as_bytes())
            .is_err()
        {
            break;
        }
    }
    let replies = tcp_read_replies(&mut s, 1);
    let r = replies.first().expect("a reply before the close");
    assert!(r.starts_with("SIP/2.0 513 Message Too Large\r\n"), "{r}");
    assert!(r.contains("\r\nCall-ID: big2\r\n"), "{r}");
    assert!(closed_within(&mut s, Duration::from_secs(3)), "then closed");
}
