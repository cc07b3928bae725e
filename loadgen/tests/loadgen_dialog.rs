//! Dialog routing of the `call` scenario through a record-routing proxy: the ACK and the BYE go
//! to the target with the Route set taken from the 200's Record-Route and the UAS's Contact as
//! Request-URI (RFC 3261 §12.1.2, §12.2.1.1).
#![allow(clippy::unwrap_used)]

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{run_json, u, Uas};

/// A minimal stateless proxy: requests get a Record-Route (INVITE) and our Via and go to the
/// uas; responses lose the top Via and go back to the client. Every request is recorded.
fn proxy(uas: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let me = sock.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut client: Option<SocketAddr> = None;
        let mut buf = vec![0u8; 65536];
        let mut idle = 0;
        while idle < 100 {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                idle += 1;
                continue;
            };
            idle = 0;
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let (first, rest) = msg.split_once("\r\n").unwrap();
            if first.starts_with("SIP/2.0") {
                // Response: drop our Via (the first one).
                let at = rest.find("Via: ").unwrap();
                let end = at + rest[at..].find("\r\n").unwrap() + 2;
                let out = format!("{first}\r\n{}{}", &rest[..at], &rest[end..]);
                let _ = sock.send_to(out.as_bytes(), client.unwrap());
            } else {
                client = Some(from);
                log.lock().unwrap().push(msg.clone());
                let rr = if first.starts_with("INVITE") {
                    format!("Record-Route: <sip:{me};lr>\r\n")
                } else {
                    String::new()
                };
                let via = format!("Via: SIP/2.0/UDP {me};branch=z9hG4bKpx{}\r\n", rest.len());
                let out = format!("{first}\r\n{via}{rr}{rest}");
                let _ = sock.send_to(out.as_bytes(), uas);
            }
        }
    });
    (me, seen)
}

#[test]
fn ack_and_bye_follow_the_record_route() {
    let uas = Uas::start(&[]);
    let (px, seen) = proxy(uas.addr.parse().unwrap());
    let (code, v, stderr) = run_json(&[
        "call",
        "--target",
        &px.to_string(),
        "--max",
        "3",
        "--rate",
        "50",
        "--t1-ms",
        "2000",
    ]);
    assert_eq!((code, u(&v, "succeeded")), (0, 3), "{v} {stderr}");
    let seen = seen.lock().unwrap();
    let route = format!("\r\nRoute: <sip:{px};lr>\r\n");
    let contact_ruri = format!("sip:uas@{};transport=udp SIP/2.0", uas.addr);
    let mut acks = 0;
    let mut byes = 0;
    for m in seen.iter() {
        if m.starts_with("INVITE ") {
            assert!(
                !m.contains("\r\nRoute:"),
                "initial INVITE has no Route: {m}"
            );
            continue;
        }
        assert!(
            m.contains(&route),
            "in-dialog request without our Route: {m}"
        );
        assert!(m.lines().next().unwrap().ends_with(&contact_ruri), "{m}");
        assert!(m.contains(";tag=lguas"), "To-tag of the dialog: {m}");
        if m.starts_with("ACK ") {
            acks += 1;
            assert!(m.contains("CSeq: 1 ACK"), "{m}");
        } else if m.starts_with("BYE ") {
            byes += 1;
            assert!(m.contains("CSeq: 2 BYE"), "{m}");
        }
    }
    assert_eq!((acks, byes), (3, 3));
}
