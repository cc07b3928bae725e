//! SIP peers for the transaction tests: plain UDP sockets a test drives, INVITEs, replies and
//! ACKs as a UAC/UAS writes them, bounded receive loops, and `ser` started on a free port.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::net::{free_port, Ser};

pub fn sock() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s
}

/// Messages received within `wait`, as text, with when they came.
pub fn recv_timed(s: &UdpSocket, wait: Duration) -> Vec<(String, SocketAddr, Instant)> {
    let until = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while Instant::now() < until {
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            out.push((
                String::from_utf8_lossy(&buf[..n]).into_owned(),
                from,
                Instant::now(),
            ));
        }
    }
    out
}

/// Messages received within `wait`, as text.
pub fn recv_all(s: &UdpSocket, wait: Duration) -> Vec<(String, SocketAddr)> {
    recv_timed(s, wait)
        .into_iter()
        .map(|(m, a, _)| (m, a))
        .collect()
}

/// The first message whose start line starts with `start`, waiting at most `wait`.
pub fn recv_until(s: &UdpSocket, start: &str, wait: Duration) -> Option<(String, SocketAddr)> {
    let until = Instant::now() + wait;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < until {
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            let t = String::from_utf8_lossy(&buf[..n]).into_owned();
            if t.starts_with(start) {
                return Some((t, from));
            }
        }
    }
    None
}

pub fn invite(ruri: &str, client: &UdpSocket, call: &str) -> String {
    let via = client.local_addr().unwrap().to_string();
    invite_via(ruri, "UDP", &via, call)
}

pub fn invite_via(ruri: &str, proto: &str, via: &str, call: &str) -> String {
    format!(
        "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/{proto} {via};branch=z9hG4bK-{call}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{via}>\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A reply from a UAS to `req` (copies Via, From, To (+tag), Call-ID, CSeq), with `extra` header
/// lines (each ended by CRLF).
pub fn reply_with(req: &str, code: u16, reason: &str, tag: &str, extra: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for l in req.split("\r\n") {
        let lower = l.to_ascii_lowercase();
        if lower.starts_with("via:")
            || lower.starts_with("from:")
            || lower.starts_with("call-id:")
            || lower.starts_with("cseq:")
        {
            out.push_str(l);
            out.push_str("\r\n");
        } else if lower.starts_with("to:") {
            out.push_str(l);
            if !lower.contains("tag=") && code > 100 {
                out.push_str(";tag=");
                out.push_str(tag);
            }
            out.push_str("\r\n");
        }
    }
    out.push_str(extra);
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

pub fn reply_to(req: &str, code: u16, reason: &str, tag: &str) -> String {
    reply_with(req, code, reason, tag, "")
}

/// The caller's ACK for the non-2xx final reply `r` to `inv` (same branch as the INVITE, To from
/// the reply, §17.1.1.3): stops Timer G at ser.
pub fn ack_for(inv: &str, r: &str) -> String {
    let to = r
        .lines()
        .find(|l| l.starts_with("To:"))
        .unwrap_or("To: <sip:bob@example.com>");
    let ruri = inv.split(' ').nth(1).unwrap_or("sip:x");
    let mut out = format!("ACK {ruri} SIP/2.0\r\n");
    for l in inv.split("\r\n").skip(1) {
        let lower = l.to_ascii_lowercase();
        if lower.starts_with("via:")
            || lower.starts_with("from:")
            || lower.starts_with("call-id:")
            || lower.starts_with("max-forwards:")
        {
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    out.push_str(to);
    out.push_str("\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n");
    out
}

/// Final replies within `wait`, each ACKed (non-2xx) as it comes, as a real caller does.
pub fn finals_acked(client: &UdpSocket, to: SocketAddr, inv: &str, wait: Duration) -> Vec<String> {
    let mut out = Vec::new();
    let until = Instant::now() + wait;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < until {
        let Ok((n, _)) = client.recv_from(&mut buf) else {
            continue;
        };
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if status(&m) >= 200 {
            if status(&m) >= 300 {
                client.send_to(ack_for(inv, &m).as_bytes(), to).unwrap();
            }
            out.push(m);
        }
    }
    out
}

pub fn status(m: &str) -> u16 {
    m.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

pub fn codes(got: &[(String, SocketAddr)]) -> Vec<u16> {
    got.iter()
        .filter(|(m, _)| m.starts_with("SIP/2.0"))
        .map(|(m, _)| status(m))
        .collect()
}

pub fn ser_with(cfg: &str, shards: &str, extra: &[&str]) -> (Ser, SocketAddr) {
    let port = free_port("127.0.0.1");
    let p = port.to_string();
    let mut args = vec!["-l", "127.0.0.1", "-p", &p, "-n", shards];
    args.extend_from_slice(extra);
    let ser = Ser::start_with_cfg(cfg, &args);
    (ser, format!("127.0.0.1:{port}").parse().unwrap())
}
