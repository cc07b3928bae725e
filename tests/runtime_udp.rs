//! The `ser` binary over UDP (loopback): stateless replies (support's MIN_CFG script), IPv6, both
//! receive backends, overload.
#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "support/skip.rs"]
mod skip;
#[path = "support/net.rs"]
mod net;

use std::net::SocketAddr;

use net::*;

fn start_v4(extra: &[&str]) -> (Ser, SocketAddr) {
    let port = free_port("127.0.0.1");
    let p = port.to_string();
    let mut args = vec!["-l", "127.0.0.1", "-p", p.as_str()];
    args.extend_from_slice(extra);
    let ser = Ser::start(&args);
    (ser, format!("127.0.0.1:{port}").parse().unwrap())
}

fn options_roundtrip(server: SocketAddr, client: &std::net::UdpSocket) -> String {
    let me = client.local_addr().unwrap();
    let ruri = match server {
        SocketAddr::V4(_) => format!("sip:{server}"),
        SocketAddr::V6(a) => format!("sip:[{}]:{}", a.ip(), a.port()),
    };
    let via = match me {
        SocketAddr::V4(_) => me.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    };
    let req = request("OPTIONS", &ruri, &via, "UDP", "opt-1@test");
    udp_exchange(client, server, req.as_bytes()).expect("a reply to OPTIONS")
}

fn assert_ok_reply(reply: &str, via_host: &str) {
    assert_eq!(status_line(reply), "SIP/2.0 200 OK", "{reply}");
    let via = header(reply, "Via").unwrap();
    assert!(via.starts_with(&format!("SIP/2.0/UDP {via_host}")), "{via}");
    assert!(via.contains("branch=z9hG4bK-opt-1.test"), "{via}");
    assert_eq!(
        header(reply, "From"),
        Some("\"Alice\" <sip:alice@example.com>;tag=a1")
    );
    let to = header(reply, "To").unwrap();
    assert!(to.starts_with("<sip:bob@example.com>;tag="), "{to}");
    assert!(to.len() > "<sip:bob@example.com>;tag=".len());
    assert_eq!(header(reply, "Call-ID"), Some("opt-1@test"));
    assert_eq!(header(reply, "CSeq"), Some("7 OPTIONS"));
    assert_eq!(header(reply, "Content-Length"), Some("0"));
}

#[test]
fn options_to_myself_gets_200_with_copied_headers() {
    let (_ser, server) = start_v4(&[]);
    let c = udp_client("127.0.0.1");
    let reply = options_roundtrip(server, &c);
    assert_ok_reply(&reply, "127.0.0.1:");
}

#[test]
fn other_requests_get_the_scripts_500() {
    let (_ser, server) = start_v4(&[]);
    let c = udp_client("127.0.0.1");
    let me = c.local_addr().unwrap().to_string();
    let req = request("INVITE", "sip:bob@example.com", &me, "UDP", "inv-1");
    let reply = udp_exchange(&c, server, req.as_bytes()).unwrap();
    assert_eq!(status_line(&reply), "SIP/2.0 500 Server Internal Error");
    assert_eq!(header(&reply, "Call-ID"), Some("inv-1"));
}

#[test]
fn malformed_requests_get_400_with_the_reason_and_bad_version_505() {
    let (_ser, server) = start_v4(&[]);
    let c = udp_client("127.0.0.1");
    let me = c.local_addr().unwrap().to_string();
    let good = request("OPTIONS", &format!("sip:{server}"), &me, "UDP", "bad-1");
    let bad_cseq = good.replace("CSeq: 7 OPTIONS", "CSeq: seven OPTIONS");
    let reply = udp_exchange(&c, server, bad_cseq.as_bytes()).unwrap();
    assert_eq!(
        status_line(&reply),
        "SIP/2.0 400 Bad Request - Bad CSeq",
        "{reply}"
    );
    assert_eq!(header(&reply, "Call-ID"), Some("bad-1"));

    let v7 = good.replacen("SIP/2.0\r\n", "SIP/7.0\r\n", 1);
    let reply = udp_exchange(&c, server, v7.as_bytes()).unwrap();
    assert_eq!(
        status_line(&reply),
        "SIP/2.0 505 Version Not Supported",
        "{reply}"
    );
    assert_eq!(header(&reply, "CSeq"), Some("7 OPTIONS"));

    let bad_line = good.replace("Max-Forwards: 70\r\n", "Max-Forwards 70\r\n");
    let reply = udp_exchange(&c, server, bad_line.as_bytes()).unwrap();
    assert!(
        status_line(&reply).starts_with("SIP/2.0 400 Bad Request"),
        "{reply}"
    );

    // A malformed response is dropped silently; the server still answers afterwards.
    c.send_to(b"SIP/2.0 200 OK\r\nVia: garbage\r\n\r\n", server)
        .unwrap();
    c.send_to(b"\x00\x01garbage", server).unwrap();
    let reply = udp_exchange(&c, server, good.as_bytes()).unwrap();
    assert_eq!(status_line(&reply), "SIP/2.0 200 OK");
}

#[test]
fn ipv6_loopback() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        skip!(unavailable: "this machine has IPv6 switched off (no ::1)", "no IPv6 loopback");
    }
    let port = free_port("::1");
    let p = port.to_string();
    let _ser = Ser::start(&["-l", "::1", "-p", &p]);
    let server: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let c = udp_client("::1");
    let reply = options_roundtrip(server, &c);
    assert_ok_reply(&reply, "[::1]:");
}

#[test]
fn both_families_at_once() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        skip!(unavailable: "this machine has IPv6 switched off (no ::1)", "no IPv6 loopback");
    }
    let port = free_port("127.0.0.1");
    let p = port.to_string();
    // SER semantics: -p covers the last -l before it and every -l after it without a port.
    let _ser = Ser::start(&["-l", "127.0.0.1", "-p", &p, "-l", "::1"]);
    let c4 = udp_client("127.0.0.1");
    let r = options_roundtrip(format!("127.0.0.1:{port}").parse().unwrap(), &c4);
    assert_eq!(status_line(&r), "SIP/2.0 200 OK");
    let c6 = udp_client("::1");
    let r = options_roundtrip(format!("[::1]:{port}").parse().unwrap(), &c6);
    assert_eq!(status_line(&r), "SIP/2.0 200 OK");
}

#[test]
fn io_epoll_explicit() {
    let (ser, server) = start_v4(&["--io=epoll", "-d", "-d", "-d"]);
    let c = udp_client("127.0.0.1");
    assert_eq!(
        status_line(&options_roundtrip(server, &c)),
        "SIP/2.0 200 OK"
    );
    assert!(
        ser.log_text().contains("io epoll+recvmmsg"),
        "{}",
        ser.log_text()
    );
}

#[test]
fn io_uring_when_the_probe_passes() {
    let out = std::process::Command::new(ser_bin())
        .arg("-V")
        .output()
        .unwrap();
    let v = String::from_utf8_lossy(&out.stdout).into_owned();
    if !v.contains("io_uring available") {
        skip!(
            unavailable: "the kernel (or the container's seccomp policy) refuses io_uring",
            "io_uring probe failed: {}",
            v.trim()
        );
    }
    let (ser, server) = start_v4(&["--io=uring", "-ddd"]);
    assert!(
        ser.log_text().contains("io io_uring-multishot"),
        "{}",
        ser.log_text()
    );
    let c = udp_client("127.0.0.1");
    for i in 0..50 {
        let me = c.local_addr().unwrap().to_string();
        let req = request(
            "OPTIONS",
            &format!("sip:{server}"),
            &me,
            "UDP",
            &format!("u{i}"),
        );
        let r = udp_exchange(&c, server, req.as_bytes()).unwrap();
        assert_eq!(status_line(&r), "SIP/2.0 200 OK");
        assert_eq!(header(&r, "Call-ID"), Some(format!("u{i}").as_str()));
    }
}

#[test]
fn a_backlog_that_does_not_last_is_served_not_refused() {
    // Threshold 0 but the default persistence (200 ms): a lone request is a backlog of one
    // turn, answered as usual.
    let (_ser, server) = start_v4(&["--overload-backlog=0"]);
    let c = udp_client("127.0.0.1");
    let me = c.local_addr().unwrap().to_string();
    for i in 0..3 {
        let req = request(
            "OPTIONS",
            &format!("sip:{server}"),
            &me,
            "UDP",
            &format!("ovl-s{i}"),
        );
        let reply = udp_exchange(&c, server, req.as_bytes()).unwrap();
        assert_eq!(status_line(&reply), "SIP/2.0 200 OK", "{reply}");
        std::thread::sleep(std::time::Duration::from_millis(150));
    }
}

#[test]
fn overload_rejects_requests_with_503_retry_after() {
    // Threshold 0: every request is beyond the backlog limit.
    let (_ser, server) = start_v4(&["--overload-backlog=0", "--overload-after-ms=0"]);
    let c = udp_client("127.0.0.1");
    let me = c.local_addr().unwrap().to_string();
    let req = request("OPTIONS", &format!("sip:{server}"), &me, "UDP", "ovl-1");
    let reply = udp_exchange(&c, server, req.as_bytes()).unwrap();
    assert_eq!(
        status_line(&reply),
        "SIP/2.0 503 Service Unavailable",
        "{reply}"
    );
    assert_eq!(header(&reply, "Retry-After"), Some("5"));
    assert_eq!(header(&reply, "Call-ID"), Some("ovl-1"));
    assert!(header(&reply, "To").unwrap().contains(";tag="));
}
