//! The `ser` binary over TCP (loopback): framing of pipelined and split messages, replies over the
//! same connection, idle and incomplete-message timeouts, framing errors.
#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "support/skip.rs"]
mod skip;
#[path = "support/net.rs"]
mod net;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use net::*;

fn start(extra: &[&str]) -> (Ser, String) {
    let port = free_port("127.0.0.1");
    let p = port.to_string();
    let mut args = vec!["-l", "127.0.0.1", "-p", p.as_str()];
    args.extend_from_slice(extra);
    (Ser::start(&args), format!("127.0.0.1:{port}"))
}

#[test]
fn pipelined_and_split_messages() {
    let (_ser, addr) = start(&[]);
    let mut s = TcpStream::connect(&addr).unwrap();
    let me = s.local_addr().unwrap().to_string();
    let a = request("OPTIONS", &format!("sip:{addr}"), &me, "TCP", "tcp-a");
    let b = request("OPTIONS", &format!("sip:{addr}"), &me, "TCP", "tcp-b");
    // Two messages in one write, with a CRLF keep-alive in front.
    tcp_write(&mut s, format!("\r\n\r\n{a}{b}").as_bytes());
    let replies = tcp_read_replies(&mut s, 2);
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert_eq!(status_line(&replies[0]), "SIP/2.0 200 OK");
    assert_eq!(header(&replies[0], "Call-ID"), Some("tcp-a"));
    assert_eq!(header(&replies[1], "Call-ID"), Some("tcp-b"));
    assert!(header(&replies[0], "Via")
        .unwrap()
        .starts_with("SIP/2.0/TCP "));

    // One message split in three writes.
    let c = request("OPTIONS", &format!("sip:{addr}"), &me, "TCP", "tcp-c");
    let bytes = c.as_bytes();
    for part in [&bytes[..10], &bytes[10..60], &bytes[60..]] {
        tcp_write(&mut s, part);
        std::thread::sleep(Duration::from_millis(30));
    }
    let replies = tcp_read_replies(&mut s, 1);
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(header(&replies[0], "Call-ID"), Some("tcp-c"));
}

#[test]
fn message_with_body_gets_the_scripts_500() {
    let (_ser, addr) = start(&[]);
    let mut s = TcpStream::connect(&addr).unwrap();
    let me = s.local_addr().unwrap().to_string();
    let req = request("MESSAGE", "sip:bob@example.com", &me, "TCP", "tcp-m").replace(
        "Content-Length: 0\r\n\r\n",
        "Content-Length: 5\r\n\r\nhello",
    );
    tcp_write(&mut s, req.as_bytes());
    let replies = tcp_read_replies(&mut s, 1);
    assert_eq!(
        status_line(&replies[0]),
        "SIP/2.0 500 Server Internal Error"
    );
}

#[test]
fn idle_connections_are_closed() {
    let (_ser, addr) = start(&["--tcp-idle=1"]);
    let mut s = TcpStream::connect(&addr).unwrap();
    let t = Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(5)));
    assert!(t.elapsed() >= Duration::from_millis(900));
}

#[test]
fn stalled_incomplete_message_is_dropped_without_stalling_others() {
    let (_ser, addr) = start(&["--tcp-read-timeout=3"]);
    let mut slow = TcpStream::connect(&addr).unwrap();
    tcp_write(
        &mut slow,
        b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 1.2.3.4\r\n",
    );
    // Meanwhile another client is served at once.
    let mut s = TcpStream::connect(&addr).unwrap();
    let me = s.local_addr().unwrap().to_string();
    let a = request("OPTIONS", &format!("sip:{addr}"), &me, "TCP", "fast");
    let t = Instant::now();
    tcp_write(&mut s, a.as_bytes());
    let replies = tcp_read_replies(&mut s, 1);
    assert_eq!(header(&replies[0], "Call-ID"), Some("fast"));
    assert!(t.elapsed() < Duration::from_millis(2500));
    assert!(closed_within(&mut slow, Duration::from_secs(8)));
}

#[test]
fn framing_error_closes_the_connection() {
    let (_ser, addr) = start(&[]);
    let mut s = TcpStream::connect(&addr).unwrap();
    tcp_write(
        &mut s,
        b"OPTIONS sip:x SIP/2.0\r\nContent-Length: -5\r\n\r\n",
    );
    assert!(closed_within(&mut s, Duration::from_secs(3)));
}

#[test]
fn connection_cap_per_ip() {
    let (_ser, addr) = start(&["--tcp-max-conns-per-ip=1"]);
    let mut first = TcpStream::connect(&addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut second = TcpStream::connect(&addr).unwrap();
    assert!(closed_within(&mut second, Duration::from_secs(3)));
    // The first one still works.
    let me = first.local_addr().unwrap().to_string();
    let a = request("OPTIONS", &format!("sip:{addr}"), &me, "TCP", "cap");
    tcp_write(&mut first, a.as_bytes());
    let replies = tcp_read_replies(&mut first, 1);
    assert_eq!(header(&replies[0], "Call-ID"), Some("cap"));
}

#[test]
fn ipv6_tcp() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        skip!(unavailable: "this machine has IPv6 switched off (no ::1)", "no IPv6 loopback");
    }
    let port = free_port("::1");
    let p = port.to_string();
    let _ser = Ser::start(&["-l", "tcp:::1", "-p", &p]);
    let addr = format!("[::1]:{port}");
    let mut s = TcpStream::connect(&addr).unwrap();
    let me = s.local_addr().unwrap();
    let via = format!("[{}]:{}", me.ip(), me.port());
    let a = request("OPTIONS", &format!("sip:[::1]:{port}"), &via, "TCP", "v6");
    tcp_write(&mut s, a.as_bytes());
    let replies = tcp_read_replies(&mut s, 1);
    assert_eq!(status_line(&replies[0]), "SIP/2.0 200 OK");
    assert_eq!(header(&replies[0], "Call-ID"), Some("v6"));
    // tcp: only, so no UDP socket is bound on that port.
    assert!(std::net::UdpSocket::bind(("::1", port)).is_ok());
}
