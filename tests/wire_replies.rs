//! The replies ser writes itself carry `received` and `rport` on the top Via (RFC 3261 §18.2.1,
//! RFC 3581 §4): a client behind NAT learns its public address from a REGISTER's 200, an OPTIONS
//! reply, a 400 or tm's 100 Trying. Bytes over a socket to a running ser, bytes asserted back.
#![allow(clippy::unwrap_used)]

#[path = "support/net.rs"]
mod net;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use net::*;

const SHIPPED: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/ser.cfg"));

static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

struct Server {
    _ser: Ser,
    addr: SocketAddr,
    dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The shipped ser.cfg (its FIFO moved to a temporary directory) on 127.0.0.1:PORT.
fn shipped() -> Server {
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("ser-replies-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = SHIPPED.replace(
        "fifo=\"/tmp/ser_fifo\"",
        &format!("fifo=\"{}\"", dir.join("fifo").display()),
    );
    let port = free_port("127.0.0.1");
    let db = format!("sqlite://{}/ser.db", dir.display());
    let ser = Ser::start_with_env(
        &cfg,
        &["-l", "127.0.0.1", "-p", &port.to_string()],
        &[("SER_DB_URL", &db)],
    );
    Server {
        _ser: ser,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        dir,
    }
}

fn recv(s: &UdpSocket) -> Option<String> {
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// A client whose Via names a sent-by that is not its source (as behind NAT): 192.0.2.10:5062.
const NATTED: &str = "192.0.2.10:5062";

fn register(server: SocketAddr, via_params: &str, call: &str) -> String {
    format!(
        "REGISTER sip:{server} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {NATTED};branch=z9hG4bK-{call}{via_params}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:bob@{server}>;tag=r1\r\n\
         To: <sip:bob@{server}>\r\n\
         Call-ID: {call}\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:bob@{NATTED}>\r\n\
         Expires: 600\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn register_200_tells_a_natted_client_its_address_and_port() {
    let s = shipped();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = c.local_addr().unwrap().port();
    c.send_to(register(s.addr, ";rport", "rep-reg-1").as_bytes(), s.addr)
        .unwrap();
    let r = recv(&c).expect("200 to the REGISTER");
    assert!(r.starts_with("SIP/2.0 200 "), "{r}");
    // The shipped ser.cfg says sip_warning=no: no diagnostics in the reply.
    assert!(header(&r, "Warning").is_none(), "{r}");
    assert_eq!(
        header(&r, "Via"),
        Some(
            format!(
                "SIP/2.0/UDP {NATTED};branch=z9hG4bK-rep-reg-1;rport={port};received=127.0.0.1"
            )
            .as_str()
        ),
        "{r}"
    );
    // Without rport: received only (the sent-by still differs from the source).
    c.send_to(register(s.addr, "", "rep-reg-2").as_bytes(), s.addr)
        .unwrap();
    let r = recv(&c).expect("200 to the REGISTER");
    assert_eq!(
        header(&r, "Via"),
        Some(format!("SIP/2.0/UDP {NATTED};branch=z9hG4bK-rep-reg-2;received=127.0.0.1").as_str()),
        "{r}"
    );
}

#[test]
fn a_client_that_names_its_source_gets_its_via_back_unchanged_but_rport_filled() {
    let s = shipped();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = c.local_addr().unwrap();
    let req = format!(
        "OPTIONS sip:nobody@{} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-rep-opt-1\r\nMax-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:nobody@example.com>\r\nCall-ID: rep-opt-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        s.addr
    );
    c.send_to(req.as_bytes(), s.addr).unwrap();
    let r = recv(&c).expect("404");
    assert!(r.starts_with("SIP/2.0 404 "), "{r}");
    assert_eq!(
        header(&r, "Via"),
        Some(format!("SIP/2.0/UDP {me};branch=z9hG4bK-rep-opt-1").as_str())
    );
    // With rport, the port is filled and `received` added (RFC 3581 §4), even from the sent-by.
    let req = req
        .replace("rep-opt-1\r\nMax", "rep-opt-1;rport\r\nMax")
        .replace("Call-ID: rep-opt-1", "Call-ID: rep-opt-2");
    c.send_to(req.as_bytes(), s.addr).unwrap();
    let r = recv(&c).expect("404");
    assert_eq!(
        header(&r, "Via"),
        Some(
            format!(
                "SIP/2.0/UDP {me};branch=z9hG4bK-rep-opt-1;rport={};received=127.0.0.1",
                me.port()
            )
            .as_str()
        ),
        "{r}"
    );
}

#[test]
fn a_refused_request_gets_received_and_rport_too() {
    let s = shipped();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = c.local_addr().unwrap().port();
    // Refused before the script: an unknown URI scheme (416), a bad Max-Forwards (400), and a
    // broken header line the parser salvages the reply headers around (400).
    let cases = [
        ("416", "OPTIONS nosuch:x SIP/2.0", "Max-Forwards: 70"),
        (
            "400",
            "OPTIONS sip:x@127.0.0.1 SIP/2.0",
            "Max-Forwards: many",
        ),
        ("400", "OPTIONS sip:x@127.0.0.1 SIP/2.0", "Max-Forwards 70"),
    ];
    for (i, (code, line, mf)) in cases.iter().enumerate() {
        let req = format!(
            "{line}\r\nVia: SIP/2.0/UDP {NATTED};branch=z9hG4bK-rep-bad-{i};rport\r\n{mf}\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:x@example.com>\r\nCall-ID: rep-bad-{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        c.send_to(req.as_bytes(), s.addr).unwrap();
        let r = recv(&c).unwrap_or_else(|| panic!("no answer to case {i}"));
        assert!(r.starts_with(&format!("SIP/2.0 {code} ")), "case {i}: {r}");
        assert_eq!(
            header(&r, "Via"),
            Some(
                format!(
                    "SIP/2.0/UDP {NATTED};branch=z9hG4bK-rep-bad-{i};rport={port};received=127.0.0.1"
                )
                .as_str()
            ),
            "case {i}: {r}"
        );
    }
}

#[test]
fn tm_100_trying_carries_received_and_rport() {
    let s = shipped();
    let callee = UdpSocket::bind("127.0.0.1:0").unwrap();
    let callee_addr = callee.local_addr().unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = c.local_addr().unwrap().port();
    let reg = format!(
        "REGISTER sip:{a} SIP/2.0\r\nVia: SIP/2.0/UDP {callee_addr};branch=z9hG4bK-rep-tr-r\r\nFrom: <sip:carol@{a}>;tag=r\r\nTo: <sip:carol@{a}>\r\nCall-ID: rep-tr-r\r\nCSeq: 1 REGISTER\r\nContact: <sip:carol@{callee_addr}>\r\nContent-Length: 0\r\n\r\n",
        a = s.addr
    );
    c.send_to(reg.as_bytes(), s.addr).unwrap();
    assert!(recv(&c).unwrap().starts_with("SIP/2.0 200 "));
    let inv = format!(
        "INVITE sip:carol@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {NATTED};branch=z9hG4bK-rep-tr-1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:carol@{a}>\r\nCall-ID: rep-tr-1\r\nCSeq: 1 INVITE\r\nContact: <sip:a@{NATTED}>\r\nContent-Length: 0\r\n\r\n",
        a = s.addr
    );
    c.send_to(inv.as_bytes(), s.addr).unwrap();
    let r = recv(&c).expect("100 Trying");
    assert!(r.starts_with("SIP/2.0 100 "), "{r}");
    assert_eq!(
        header(&r, "Via"),
        Some(
            format!("SIP/2.0/UDP {NATTED};branch=z9hG4bK-rep-tr-1;rport={port};received=127.0.0.1")
                .as_str()
        ),
        "{r}"
    );
    // The relayed INVITE carries the same marks below ser's own Via.
    let mut buf = vec![0u8; 65536];
    callee
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let (n, _) = callee.recv_from(&mut buf).unwrap();
    let fwd = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        fwd.contains(&format!(
            "\r\nVia: SIP/2.0/UDP {NATTED};branch=z9hG4bK-rep-tr-1;rport={port};received=127.0.0.1\r\n"
        )),
        "{fwd}"
    );
}
