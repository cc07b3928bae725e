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
