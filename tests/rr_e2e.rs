//! rr end to end: the real `ser` binary record-routes an initial request (the far end sees our
//! Record-Route) and loose-routes the in-dialog request that comes back with it as Route (the far
//! end gets it without our Route value, at the Request-URI).
#![allow(clippy::unwrap_used)]

#[path = "support/net.rs"]
mod net;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use net::*;

const CFG: &str = r#"
loadmodule "sl.so"
loadmodule "rr.so"
modparam("rr", "enable_full_lr", 1)
route {
	if (loose_route()) {
		forward(uri:host, uri:port);
		break;
	};
	record_route();
	forward(127.0.0.1, PHONEPORT);
}
"#;

fn recv(sock: &UdpSocket) -> String {
    let mut buf = vec![0u8; 65536];
    let (n, _) = sock.recv_from(&mut buf).expect("a request arrives");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn record_route_then_loose_route_through_ser() {
    let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
    phone
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let pport = phone.local_addr().unwrap().port();
    let port = free_port("127.0.0.1");
    let _ser = Ser::start_with_cfg(
        &CFG.replace("PHONEPORT", &pport.to_string()),
        &["-l", "127.0.0.1", "-p", &port.to_string()],
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let c = udp_client("127.0.0.1");
    let inv = request(
        "INVITE",
        &format!("sip:bob@127.0.0.1:{pport}"),
        "127.0.0.1:5999",
        "UDP",
        "rr1@x",
    );
    c.send_to(inv.as_bytes(), addr).unwrap();
    let got = recv(&phone);
    assert_eq!(
        header(&got, "Record-Route"),
        Some(format!("<sip:127.0.0.1:{port};lr=on>").as_str()),
        "{got}"
    );
    // The in-dialog BYE from the caller's side: Route is our Record-Route, To has a tag.
    let bye = format!(
        "BYE sip:bob@127.0.0.1:{pport} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-rr-bye;rport\r\n\
Route: <sip:127.0.0.1:{port};lr=on>\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>;tag=b1\r\n\
Call-ID: rr1@x\r\n\
CSeq: 8 BYE\r\n\
Content-Length: 0\r\n\r\n"
    );
    c.send_to(bye.as_bytes(), addr).unwrap();
    let got = recv(&phone);
    assert!(
        got.starts_with(&format!("BYE sip:bob@127.0.0.1:{pport} SIP/2.0\r\n")),
        "{got}"
    );
    assert!(
        header(&got, "Route").is_none(),
        "our Route value removed: {got}"
    );
    assert!(
        header(&got, "Record-Route").is_none(),
        "not record-routed again: {got}"
    );
}

/// UDP in, TCP out: two Record-Route values, the outbound (TCP) one on top, so each side of the
/// dialog routes back through the interface it knows (RFC 3261 §16.6 step 4 "two Record-Route").
#[test]
fn transport_change_gets_two_record_routes() {
    let tcp_phone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let pport = tcp_phone.local_addr().unwrap().port();
    let port = free_port("127.0.0.1");
    let cfg = r#"
loadmodule "sl.so"
loadmodule "rr.so"
route {
	record_route();
	forward_tcp(127.0.0.1, PHONEPORT);
}
"#
    .replace("PHONEPORT", &pport.to_string());
    let _ser = Ser::start_with_cfg(&cfg, &["-l", "127.0.0.1", "-p", &port.to_string()]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let c = udp_client("127.0.0.1");
    let inv = request(
        "INVITE",
        &format!("sip:bob@127.0.0.1:{pport}"),
        "127.0.0.1:5999",
        "UDP",
        "rr2@x",
    );
    c.send_to(inv.as_bytes(), addr).unwrap();
    tcp_phone.set_nonblocking(false).unwrap();
    let (mut conn, _) = tcp_phone.accept().unwrap();
    let got = tcp_read_replies(&mut conn, 1).concat();
    let rrs: Vec<&str> = got
        .lines()
        .filter_map(|l| l.strip_prefix("Record-Route: "))
        .collect();
    assert_eq!(
        rrs,
        [
            format!("<sip:127.0.0.1:{port};transport=tcp;lr>"),
            format!("<sip:127.0.0.1:{port};lr>")
        ],
        "{got}"
    );
}

/// loose_route with a further Route: t_relay sends to that next hop (SER 0.9's dst_uri), leaving
/// the Request-URI as it is and removing only our own Route value.
#[test]
fn loose_route_relays_to_the_next_route() {
    let hop = UdpSocket::bind("127.0.0.1:0").unwrap();
    hop.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let hport = hop.local_addr().unwrap().port();
    let port = free_port("127.0.0.1");
    let cfg = r#"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
route {
	if (loose_route()) {
		t_relay();
		break;
	};
	sl_send_reply("404", "Not routed");
}
"#;
    let _ser = Ser::start_with_cfg(cfg, &["-l", "127.0.0.1", "-p", &port.to_string()]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let c = udp_client("127.0.0.1");
    let bye = request(
        "BYE",
        "sip:bob@192.0.2.99:5060",
        "127.0.0.1:5999",
        "UDP",
        "rr3@x",
    )
    .replacen(
        "Max-Forwards: 70\r\n",
        &format!(
            "Max-Forwards: 70\r\nRoute: <sip:127.0.0.1:{port};lr>, <sip:127.0.0.1:{hport};lr>\r\n"
        ),
        1,
    );
    c.send_to(bye.as_bytes(), addr).unwrap();
    let got = recv(&hop);
    assert!(
        got.starts_with("BYE sip:bob@192.0.2.99:5060 SIP/2.0"),
        "{got}"
    );
    assert_eq!(
        header(&got, "Route"),
        Some(format!("<sip:127.0.0.1:{hport};lr>").as_str()),
        "{got}"
    );
}
