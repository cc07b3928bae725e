//! ser listening on the wildcard address (the shipped ser.cfg, no `-l`): every address it writes —
//! the Via of a relayed request, its Record-Route, the sent-by of a stateless forward, the
//! `sip_warning` Warning — is a concrete one, never `0.0.0.0`, and a reply leaves from the address
//! the request was sent to (`IP_PKTINFO`). Driven over loopback: 127.0.0.2 is local but is not what
//! the kernel would pick by itself, so it shows the per-packet addresses are really used.
#![allow(clippy::unwrap_used)]

#[path = "support/net.rs"]
mod net;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use net::*;

const SHIPPED: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/ser.cfg"));

/// The shipped ser.cfg, with only its FIFO path moved out of the way of other servers.
fn shipped_cfg(fifo: &str) -> String {
    assert!(SHIPPED.contains("fifo=\"/tmp/ser_fifo\""));
    assert!(
        !SHIPPED
            .lines()
            .any(|l| l.trim_start().starts_with("listen")),
        "the shipped ser.cfg listens on every interface"
    );
    SHIPPED.replace("fifo=\"/tmp/ser_fifo\"", &format!("fifo=\"{fifo}\""))
}

struct Server {
    ser: Ser,
    port: u16,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// ser with `cfg(fifo path)` and `-p PORT`, no `-l`: it binds 0.0.0.0:PORT.
fn start(cfg: impl Fn(&str) -> String) -> Server {
    start_with(cfg, &[])
}

fn start_with(cfg: impl Fn(&str) -> String, extra: &[&str]) -> Server {
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("ser-wild-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port("0.0.0.0");
    let db = format!("sqlite://{}/ser.db", dir.display());
    let text = cfg(&dir.join("fifo").display().to_string());
    let port_s = port.to_string();
    let args: Vec<&str> = ["-p", port_s.as_str()]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    let ser = Ser::start_with_env(&text, &args, &[("SER_DB_URL", &db)]);
    Server {
        ser,
        port,
        _dir: TempDir(dir),
    }
}

fn recv(s: &UdpSocket, wait: Duration) -> Option<(String, SocketAddr)> {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, from) = s.recv_from(&mut buf).ok()?;
    Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from))
}

fn register(user: &str, to_ip: &str, port: u16, contact: SocketAddr, call: &str) -> String {
    format!(
        "REGISTER sip:{to_ip}:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {contact};branch=z9hG4bK-{call}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@{to_ip}:{port}>;tag=r1\r\n\
         To: <sip:{user}@{to_ip}:{port}>\r\n\
         Call-ID: {call}\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:{user}@{contact}>\r\n\
         Expires: 600\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn invite(ruri: &str, from: SocketAddr, call: &str) -> String {
    format!(
        "INVITE {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK-{call}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=a1\r\n\
         To: <{ruri}>\r\n\
         Call-ID: {call}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{from}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The Record-Route lines of `msg`, in order.
fn record_routes(msg: &str) -> Vec<&str> {
    msg.lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("record-route:"))
        .collect()
}

/// `user` registers a UDP sink with ser at `ip`, then a caller INVITEs `user` there: checks both
/// answers come from `ip` and name no wildcard; returns the caller's socket and the INVITE as the
/// sink got it, with where it came from.
fn call_through(s: &Server, ip: &str, user: &str) -> (UdpSocket, String, SocketAddr) {
    let port = s.port;
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    let reg = register(
        user,
        ip,
        port,
        sink.local_addr().unwrap(),
        &format!("{user}-r"),
    );
    client.send_to(reg.as_bytes(), server).unwrap();
    let (ok, from) = recv(&client, Duration::from_secs(3)).expect("REGISTER answered");
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    assert_eq!(
        from, server,
        "the reply leaves from the address the request went to"
    );
    assert!(!ok.contains("0.0.0.0"), "{ok}");
    let ruri = format!("sip:{user}@{ip}:{port}");
    let inv = invite(&ruri, client.local_addr().unwrap(), &format!("{user}-i"));
    client.send_to(inv.as_bytes(), server).unwrap();
    let (fwd, fwd_from) = loop {
        let m = recv(&sink, Duration::from_secs(3)).expect("INVITE relayed to the sink");
        if m.0.starts_with("INVITE ") {
            break m;
        }
    };
    assert!(!fwd.contains("0.0.0.0"), "{fwd}");
    // The 100 Trying to the caller names no wildcard either, and comes from `ip`.
    let (trying, from) = recv(&client, Duration::from_secs(3)).expect("100 Trying");
    assert!(trying.starts_with("SIP/2.0 100 "), "{trying}");
    assert!(!trying.contains("0.0.0.0"), "{trying}");
    assert_eq!(from, server);
    (client, fwd, fwd_from)
}

#[test]
fn relayed_requests_name_a_concrete_address_in_via_and_record_route() {
    let s = start(shipped_cfg);
    let port = s.port;
    let (_, inv, from) = call_through(&s, "127.0.0.1", "bob");
    assert_eq!(from, format!("127.0.0.1:{port}").parse().unwrap());
    let top_via = header(&inv, "Via").unwrap();
    assert!(
        top_via.starts_with(&format!("SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK")),
        "{top_via}"
    );
    assert_eq!(
        record_routes(&inv),
        [format!("Record-Route: <sip:127.0.0.1:{port};lr=on>")],
        "{inv}"
    );
    assert!(
        !s.ser.log_text().contains("listening on a wildcard address"),
        "{}",
        s.ser.log_text()
    );
}

#[test]
fn a_request_to_a_second_local_address_is_answered_from_it_and_record_routed_on_both() {
    let s = start(shipped_cfg);
    let port = s.port;
    // 127.0.0.2: a local address the kernel would not choose as the source toward 127.0.0.1.
    let (_, inv, from) = call_through(&s, "127.0.0.2", "carol");
    // Toward the sink ser leaves from the route's source address, 127.0.0.1, and says so.
    assert_eq!(from, format!("127.0.0.1:{port}").parse().unwrap());
    assert!(
        header(&inv, "Via")
            .unwrap()
            .starts_with(&format!("SIP/2.0/UDP 127.0.0.1:{port};branch=")),
        "{inv}"
    );
    // Two interfaces: the outbound Record-Route (toward the callee) above the inbound one.
    assert_eq!(
        record_routes(&inv),
        [
            format!("Record-Route: <sip:127.0.0.1:{port};lr=on>"),
            format!("Record-Route: <sip:127.0.0.2:{port};lr=on>"),
        ],
        "{inv}"
    );
}

#[test]
fn warning_names_the_address_the_request_was_sent_to() {
    let s = start(|fifo| shipped_cfg(fifo).replace("sip_warning=no", "sip_warning=yes"));
    let port = s.port;
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    for ip in ["127.0.0.1", "127.0.0.2"] {
        let server: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        // Nobody registered as dave: the shipped script answers 404 itself.
        let req = invite(
            &format!("sip:dave@{ip}:{port}"),
            client.local_addr().unwrap(),
            &format!("wild-warn-{ip}"),
        );
        client.send_to(req.as_bytes(), server).unwrap();
        let (r, from) = recv(&client, Duration::from_secs(3)).expect("404");
        assert!(r.starts_with("SIP/2.0 404 "), "{r}");
        assert_eq!(from, server);
        let w = header(&r, "Warning").expect("sip_warning=yes adds a Warning");
        assert!(w.starts_with(&format!("392 {ip}:{port} ")), "{w}");
    }
}

#[test]
fn the_io_uring_backend_learns_the_destination_address_too() {
    let s = start_with(
        |fifo| shipped_cfg(fifo).replace("sip_warning=no", "sip_warning=yes"),
        &["--io=uring"],
    );
    if !s.ser.log_text().contains("io_uring-multishot") {
        eprintln!(
            "skipped: io_uring is not available here ({})",
            s.ser.log_text()
        );
        return;
    }
    let port = s.port;
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server: SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    let req = invite(
        &format!("sip:dave@127.0.0.2:{port}"),
        client.local_addr().unwrap(),
        "wild-uring-1",
    );
    client.send_to(req.as_bytes(), server).unwrap();
    let (r, from) = recv(&client, Duration::from_secs(3)).expect("404");
    assert!(r.starts_with("SIP/2.0 404 "), "{r}");
    assert_eq!(from, server);
    let w = header(&r, "Warning").unwrap();
    assert!(w.starts_with(&format!("392 127.0.0.2:{port} ")), "{w}");
}

#[test]
fn a_stateless_forward_names_the_route_source_in_its_via() {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sink_port = sink.local_addr().unwrap().port();
    let s = start(|fifo| {
        format!(
            "fifo=\"{fifo}\"\nloadmodule \"sl.so\"\nloadmodule \"rr.so\"\nroute {{\n\trecord_route();\n\tforward(127.0.0.1, {sink_port});\n}}\n"
        )
    });
    let port = s.port;
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server: SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    let req = request(
        "MESSAGE",
        "sip:eve@example.com",
        &client.local_addr().unwrap().to_string(),
        "UDP",
        "wild-fwd-1",
    );
    client.send_to(req.as_bytes(), server).unwrap();
    let (fwd, from) = recv(&sink, Duration::from_secs(3)).expect("forwarded");
    assert!(
        fwd.starts_with("MESSAGE sip:eve@example.com SIP/2.0\r\n"),
        "{fwd}"
    );
    assert!(!fwd.contains("0.0.0.0"), "{fwd}");
    assert_eq!(from, format!("127.0.0.1:{port}").parse().unwrap());
    assert!(
        header(&fwd, "Via")
            .unwrap()
            .starts_with(&format!("SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK")),
        "{fwd}"
    );
    assert_eq!(
        record_routes(&fwd),
        [
            format!("Record-Route: <sip:127.0.0.1:{port};lr>"),
            format!("Record-Route: <sip:127.0.0.2:{port};lr>"),
        ],
        "{fwd}"
    );
}

#[test]
fn a_tcp_connection_to_a_wildcard_listen_is_named_by_its_own_address() {
    let s = start(shipped_cfg);
    let port = s.port;
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let mut c = std::net::TcpStream::connect(("127.0.0.2", port)).unwrap();
    let me = c.local_addr().unwrap();
    let reg = register("frank", "127.0.0.2", port, sink_addr, "wild-tcp-r").replace(
        &format!("SIP/2.0/UDP {sink_addr}"),
        &format!("SIP/2.0/TCP {me}"),
    );
    tcp_write(&mut c, reg.as_bytes());
    let r = tcp_read_replies(&mut c, 1);
    assert!(
        r.first().is_some_and(|r| r.starts_with("SIP/2.0 200 ")),
        "{r:?}"
    );
    let inv = invite(&format!("sip:frank@127.0.0.2:{port}"), me, "wild-tcp-i")
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    tcp_write(&mut c, inv.as_bytes());
    let (fwd, _) = loop {
        let m = recv(&sink, Duration::from_secs(3)).expect("INVITE relayed to the sink");
        if m.0.starts_with("INVITE ") {
            break m;
        }
    };
    assert!(!fwd.contains("0.0.0.0"), "{fwd}");
    assert_eq!(
        record_routes(&fwd),
        [
            format!("Record-Route: <sip:127.0.0.1:{port};lr=on>"),
            format!("Record-Route: <sip:127.0.0.2:{port};transport=tcp;lr=on>"),
        ],
        "{fwd}"
    );
}

#[test]
fn an_ipv6_wildcard_listen_learns_and_answers_from_the_destination_too() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    }
    let port = free_port("::");
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("ser-wild6-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _dir = TempDir(dir.clone());
    let cfg = shipped_cfg(&dir.join("fifo").display().to_string())
        .replace("sip_warning=no", "sip_warning=yes");
    let db = format!("sqlite://{}/ser.db", dir.display());
    let _ser = Ser::start_with_env(
        &cfg,
        &["-l", "udp:[::]", "-p", &port.to_string()],
        &[("SER_DB_URL", &db)],
    );
    let client = UdpSocket::bind("[::1]:0").unwrap();
    let server: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let req = invite(
        &format!("sip:dave@[::1]:{port}"),
        client.local_addr().unwrap(),
        "wild6-1",
    );
    client.send_to(req.as_bytes(), server).unwrap();
    let (r, from) = recv(&client, Duration::from_secs(3)).expect("404");
    assert!(r.starts_with("SIP/2.0 404 "), "{r}");
    assert_eq!(from, server);
    let w = header(&r, "Warning").unwrap();
    assert!(w.starts_with(&format!("392 [::1]:{port} ")), "{w}");
}
