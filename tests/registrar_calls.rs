//! The shipped-style default `ser.cfg` (Admin Guide example, from the seed configs) as a
//! registrar + stateful proxy, end to end: a phone (SIPp UAS) registers, SIPp UAC calls the AOR
//! through ser (lookup + record_route + t_relay, ACK/BYE loose-routed) with 0 failed calls; and an
//! AOR with two contacts forks in parallel: one phone answers, the other gets CANCEL.
#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "support/skip.rs"]
mod skip;
#[path = "support/net.rs"]
mod net;
#[path = "support/seed.rs"]
mod seed;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use net::*;

fn register(ser: SocketAddr, user: &str, call_id: &str, contact: &str) -> String {
    let port = ser.port();
    format!(
        "REGISTER sip:127.0.0.1:{port} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-{call_id};rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:{user}@127.0.0.1>\r\n\
From: <sip:{user}@127.0.0.1>;tag=r1\r\n\
Call-ID: {call_id}\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <{contact}>;expires=600\r\n\
Content-Length: 0\r\n\r\n"
    )
}

fn default_cfg() -> String {
    seed::example_text("registrar.cfg")
}

#[test]
fn sipp_calls_reach_the_registered_phone_through_the_default_config() {
    if !have("sipp") {
        skip!("sipp is not installed (apt-get install sip-tester)");
    }
    let uas_port = free_port("127.0.0.1");
    let uac_port = free_port("127.0.0.1");
    let ser_port = free_port("127.0.0.1");
    let ser_addr = SocketAddr::from(([127, 0, 0, 1], ser_port));
    let _ser = Ser::start_with_cfg(
        &default_cfg(),
        &["-l", "127.0.0.1", "-p", &ser_port.to_string(), "-n", "2"],
    );
    let c = udp_client("127.0.0.1");
    let r = udp_exchange(
        &c,
        ser_addr,
        register(
            ser_addr,
            "service",
            "reg-sipp",
            &format!("sip:service@127.0.0.1:{uas_port}"),
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
    let _uas = sipp_uas(uas_port);
    sipp_uac_all_succeed(&format!("127.0.0.1:{ser_port}"), uac_port, 100, 50);
}

fn recv(sock: &UdpSocket) -> Option<String> {
    let mut buf = vec![0u8; 65536];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// A reply from a phone to a request it received: the Vias copied, a To-tag.
fn reply_to(req: &str, code: &str, tag: &str) -> String {
    let mut r = format!("SIP/2.0 {code}\r\n");
    for l in req.lines() {
        if l.starts_with("Via:") || l.starts_with("Record-Route:") {
            r.push_str(l);
            r.push_str("\r\n");
        }
    }
    for h in ["From", "Call-ID", "CSeq"] {
        r.push_str(&format!("{h}: {}\r\n", header(req, h).unwrap()));
    }
    r.push_str(&format!(
        "To: {};tag={tag}\r\nContent-Length: 0\r\n\r\n",
        header(req, "To").unwrap()
    ));
    r
}

#[test]
fn two_contacts_fork_in_parallel_one_answers_the_other_is_canceled() {
    let ser_port = free_port("127.0.0.1");
    let ser_addr = SocketAddr::from(([127, 0, 0, 1], ser_port));
    let _ser = Ser::start_with_cfg(
        &default_cfg(),
        &["-l", "127.0.0.1", "-p", &ser_port.to_string()],
    );
    let desk = udp_client("127.0.0.1");
    let mobile = udp_client("127.0.0.1");
    let c = udp_client("127.0.0.1");
    for (i, phone) in [&desk, &mobile].iter().enumerate() {
        let contact = format!("sip:bob@{}", phone.local_addr().unwrap());
        let r = udp_exchange(
            &c,
            ser_addr,
            register(ser_addr, "bob", &format!("reg-{i}"), &contact).as_bytes(),
        )
        .unwrap();
        assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
    }
    let me = c.local_addr().unwrap().to_string();
    let inv = request(
        "INVITE",
        &format!("sip:bob@127.0.0.1:{ser_port}"),
        &me,
        "UDP",
        "fork1@x",
    );
    c.send_to(inv.as_bytes(), ser_addr).unwrap();
    let at_desk = recv(&desk).expect("the desk phone rings");
    let at_mobile = recv(&mobile).expect("the mobile rings");
    assert!(
        at_desk.starts_with("INVITE sip:bob@127.0.0.1:"),
        "{at_desk}"
    );
    assert!(
        at_mobile.starts_with("INVITE sip:bob@127.0.0.1:"),
        "{at_mobile}"
    );
    for m in [&at_desk, &at_mobile] {
        assert_eq!(
            header(m, "Record-Route"),
            Some(format!("<sip:127.0.0.1:{ser_port};lr=on>").as_str()),
            "{m}"
        );
    }
    mobile
        .send_to(
            reply_to(&at_mobile, "180 Ringing", "m1").as_bytes(),
            ser_addr,
        )
        .unwrap();
    desk.send_to(reply_to(&at_desk, "180 Ringing", "d1").as_bytes(), ser_addr)
        .unwrap();
    desk.send_to(reply_to(&at_desk, "200 OK", "d1").as_bytes(), ser_addr)
        .unwrap();
    // The caller sees 100, the 180s and the desk's 200.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut got_200 = false;
    while Instant::now() < deadline && !got_200 {
        if let Some(r) = recv(&c) {
            if r.starts_with("SIP/2.0 200") {
                assert!(header(&r, "To").unwrap().contains("tag=d1"), "{r}");
                got_200 = true;
            }
        }
    }
    assert!(got_200, "the caller got the 200");
    // The mobile's branch is canceled.
    let cancel = recv(&mobile).expect("a CANCEL for the mobile");
    assert!(cancel.starts_with("CANCEL sip:bob@127.0.0.1:"), "{cancel}");
    assert_eq!(
        header(&cancel, "Via").map(|v| v.split(';').nth(1).map(str::to_string)),
        header(&at_mobile, "Via").map(|v| v.split(';').nth(1).map(str::to_string)),
        "the CANCEL has the INVITE's branch"
    );
}
