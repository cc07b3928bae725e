//! Module tm end to end: the real `ser` binary between UDP peers on loopback. The peers are plain
//! sockets driven by the test (so every message on the wire is checked): stateful relay with 100
//! Trying, retransmission absorption, forking with CANCEL of the losing branch, serial forking in a
//! failure_route after a 486 and after a timeout (onr.cfg), CANCEL from the caller, 408 on an
//! unresponsive destination, stateful t_reply retransmitted.
#![allow(clippy::unwrap_used)]

#[path = "support/net.rs"]
mod net;
#[path = "support/peer.rs"]
mod peer;

use std::time::{Duration, Instant};

use net::*;
use peer::*;

const RELAY: &str = "loadmodule \"sl.so\"\nloadmodule \"tm.so\"\nmodparam(\"tm\", \"fr_timer\", 2)\nroute {\n if (!t_relay()) { sl_reply_error(); };\n}\n";

#[test]
fn invite_gets_100_and_final_and_retransmission_is_absorbed() {
    let (_ser, addr) = ser_with(RELAY, "2", &[]);
    let uas = sock();
    let client = sock();
    let ruri = format!("sip:bob@{}", uas.local_addr().unwrap());
    let inv = invite(&ruri, &client, "absorb1");
    client.send_to(inv.as_bytes(), addr).unwrap();
    let (t, _) = recv_until(&client, "SIP/2.0 100", Duration::from_secs(2)).expect("100 Trying");
    assert!(t.contains("CSeq: 1 INVITE"));
    let (fwd, from) =
        recv_until(&uas, "INVITE", Duration::from_secs(2)).expect("INVITE at the UAS");
    assert!(fwd.contains("branch=z9hG4bKt"), "stateful branch: {fwd}");
    assert!(fwd.contains("Max-Forwards: 69"));
    // The caller retransmits: ser answers with its last reply (100), the UAS does not see it.
    client.send_to(inv.as_bytes(), addr).unwrap();
    assert!(recv_until(&client, "SIP/2.0 100", Duration::from_secs(2)).is_some());
    uas.send_to(reply_to(&fwd, 180, "Ringing", "u1").as_bytes(), from)
        .unwrap();
    let (r, _) = recv_until(&client, "SIP/2.0 180", Duration::from_secs(2)).expect("180");
    assert_eq!(r.matches("Via:").count(), 1, "our Via removed: {r}");
    // A retransmitted INVITE now gets the 180.
    client.send_to(inv.as_bytes(), addr).unwrap();
    assert!(recv_until(&client, "SIP/2.0 180", Duration::from_secs(2)).is_some());
    uas.send_to(reply_to(&fwd, 200, "OK", "u1").as_bytes(), from)
        .unwrap();
    assert!(recv_until(&client, "SIP/2.0 200", Duration::from_secs(2)).is_some());
    // A 2xx retransmitted by the UAS is forwarded too (every 2xx goes up).
    uas.send_to(reply_to(&fwd, 200, "OK", "u1").as_bytes(), from)
        .unwrap();
    assert!(recv_until(&client, "SIP/2.0 200", Duration::from_secs(2)).is_some());
    let at_uas = recv_all(&uas, Duration::from_millis(700));
    assert!(
        !at_uas.iter().any(|(m, _)| m.starts_with("INVITE")),
        "retransmissions absorbed: {at_uas:?}"
    );
}

#[test]
fn negative_reply_is_acked_hop_by_hop_and_the_callers_ack_absorbed() {
    let (_ser, addr) = ser_with(RELAY, "1", &[]);
    let uas = sock();
    let client = sock();
    let ruri = format!("sip:bob@{}", uas.local_addr().unwrap());
    let inv = invite(&ruri, &client, "neg1");
    client.send_to(inv.as_bytes(), addr).unwrap();
    let (fwd, from) = recv_until(&uas, "INVITE", Duration::from_secs(2)).unwrap();
    uas.send_to(reply_to(&fwd, 486, "Busy Here", "u1").as_bytes(), from)
        .unwrap();
    let (ack, _) = recv_until(&uas, "ACK", Duration::from_secs(2)).expect("ser ACKs the 486");
    assert!(
        ack.contains("tag=u1") && ack.contains("CSeq: 1 ACK"),
        "{ack}"
    );
    let (r, _) = recv_until(&client, "SIP/2.0 486", Duration::from_secs(2)).unwrap();
    // The caller's ACK (same branch as the INVITE) stops ser's retransmissions and goes nowhere.
    let to = r
        .lines()
        .find(|l| l.starts_with("To:"))
        .unwrap()
        .to_string();
    let cack = inv
        .replace("INVITE sip", "ACK sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace("To: <sip:bob@example.com>", &to);
    client.send_to(cack.as_bytes(), addr).unwrap();
    let later = recv_all(&uas, Duration::from_millis(800));
    assert!(later.is_empty(), "nothing more downstream: {later:?}");
    let again = recv_all(&client, Duration::from_millis(800));
    assert!(
        again.is_empty(),
        "no 486 retransmission after the ACK: {again:?}"
    );
}

#[test]
fn forking_two_branches_one_answers_the_other_is_canceled() {
    let uas1 = sock();
    let uas2 = sock();
    let cfg = format!(
        "loadmodule \"sl.so\"\nloadmodule \"tm.so\"\nroute {{\n append_branch(\"sip:b2@{}\");\n t_relay();\n}}\n",
        uas2.local_addr().unwrap()
    );
    let (_ser, addr) = ser_with(&cfg, "1", &[]);
    let client = sock();
    let inv = invite(
        &format!("sip:b1@{}", uas1.local_addr().unwrap()),
        &client,
        "fork1",
    );
    client.send_to(inv.as_bytes(), addr).unwrap();
    let (f1, a1) = recv_until(&uas1, "INVITE", Duration::from_secs(2)).unwrap();
    let (f2, a2) = recv_until(&uas2, "INVITE", Duration::from_secs(2)).unwrap();
    assert!(f2.starts_with(&format!("INVITE sip:b2@{}", uas2.local_addr().unwrap())));
    uas2.send_to(reply_to(&f2, 180, "Ringing", "u2").as_bytes(), a2)
        .unwrap();
    uas1.send_to(reply_to(&f1, 200, "OK", "u1").as_bytes(), a1)
        .unwrap();
    let (c, _) = recv_until(&uas2, "CANCEL", Duration::from_secs(2)).expect("CANCEL to the loser");
    assert!(c.contains("CSeq: 1 CANCEL"));
    uas2.send_to(reply_to(&c, 200, "OK", "u2").as_bytes(), a2)
        .unwrap();
    uas2.send_to(
        reply_to(&f2, 487, "Request Terminated", "u2").as_bytes(),
        a2,
    )
    .unwrap();
    assert!(
        recv_until(&uas2, "ACK", Duration::from_secs(2)).is_some(),
        "487 ACKed"
    );
    let got = recv_all(&client, Duration::from_millis(800));
    let codes: Vec<u16> = got.iter().map(|(m, _)| status(m)).collect();
    assert!(codes.contains(&200), "{codes:?}");
    assert!(
        !codes.contains(&487),
        "the 487 of the canceled branch stays here: {codes:?}"
    );
}

const ONR: &str = "debug=3\nloadmodule \"sl.so\"\nloadmodule \"tm.so\"\nmodparam(\"tm\", \"fr_timer\", 1)\nroute {\n t_on_failure(\"1\");\n t_relay();\n}\nfailure_route[1] {\n append_branch(\"sip:second@UAS2\");\n log(1, \"first redirection\\n\");\n t_relay();\n}\n";

#[test]
fn failure_route_serial_forking_after_486() {
    let uas1 = sock();
    let uas2 = sock();
    let cfg = ONR.replace("UAS2", &uas2.local_addr().unwrap().to_string());
    let (ser, addr) = ser_with(&cfg, "1", &[]);
    let client = sock();
    let inv = invite(
        &format!("sip:first@{}", uas1.local_addr().unwrap()),
        &client,
        "onr1",
    );
    client.send_to(inv.as_bytes(), addr).unwrap();
    let (f1, a1) = recv_until(&uas1, "INVITE", Duration::from_secs(2)).unwrap();
    uas1.send_to(reply_to(&f1, 486, "Busy Here", "u1").as_bytes(), a1)
        .unwrap();
    let (f2, a2) = recv_until(&uas2, "INVITE", Duration::from_secs(2)).expect("second branch");
    assert!(f2.starts_with("INVITE sip:second@"), "{f2}");
    uas2.send_to(reply_to(&f2, 200, "OK", "u2").as_bytes(), a2)
        .unwrap();
    let got = recv_all(&client, Duration::from_millis(800));
    let codes: Vec<u16> = got.iter().map(|(m, _)| status(m)).collect();
    assert!(codes.contains(&200) && !codes.contains(&486), "{codes:?}");
    assert!(ser.wait_log("first redirection", Duration::from_secs(1)));
}

#[test]
fn failure_route_serial_forking_after_timeout_then_408() {
    let uas1 = sock();
    let uas2 = sock();
    let cfg = ONR.replace("UAS2", &uas2.local_addr().unwrap().to_string());
    let (_ser, addr) = ser_with(&cfg, "1", &[]);
    let client = sock();
    let inv = invite(
        &format!("sip:first@{}", uas1.local_addr().unwrap()),
        &client,
        "onr2",
    );
    let t0 = Instant::now();
    client.send_to(inv.as_bytes(), addr).unwrap();
    // uas1 stays silent: it sees the INVITE and its Timer A retransmission (T1 = 500 ms).
    let seen1 = recv_all(&uas1, Duration::from_millis(900));
    assert!(
        seen1
            .iter()
            .filter(|(m, _)| m.starts_with("INVITE"))
            .count()
            >= 2,
        "{seen1:?}"
    );
    let (f2, _) =
        recv_until(&uas2, "INVITE", Duration::from_secs(3)).expect("second branch after fr_timer");
    assert!(t0.elapsed() >= Duration::from_millis(900));
    assert!(f2.starts_with("INVITE sip:second@"));
    // uas2 is silent too: after its fr_timer the caller gets 408.
    let (r, _) = recv_until(&client, "SIP/2.0 408", Duration::from_secs(4)).expect("408");
    assert!(r.contains("CSeq: 1 INVITE"));
}

#[test]
fn cancel_from_the_caller() {
    let (_ser, addr) = ser_with(RELAY, "1", &[]);
    let uas = sock();
    let client = sock();
    let inv = invite(
        &format!("sip:bob@{}", uas.local_addr().unwrap()),
        &client,
        "cancel1",
    );
    client.send_to(inv.as_bytes(), addr).unwrap();
    let (f, a) = recv_until(&uas, "INVITE", Duration::from_secs(2)).unwrap();
    uas.send_to(reply_to(&f, 180, "Ringing", "u1").as_bytes(), a)
        .unwrap();
    assert!(recv_until(&client, "SIP/2.0 180", Duration::from_secs(2)).is_some());
    let cancel = inv
        .replace("INVITE sip", "CANCEL sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    client.send_to(cancel.as_bytes(), addr).unwrap();
    let (r, _) =
        recv_until(&client, "SIP/2.0 200", Duration::from_secs(2)).expect("200 for CANCEL");
    assert!(r.contains("CSeq: 1 CANCEL"));
    let (c, _) = recv_until(&uas, "CANCEL", Duration::from_secs(2)).expect("CANCEL forwarded");
    uas.send_to(reply_to(&c, 200, "OK", "u1").as_bytes(), a)
        .unwrap();
    uas.send_to(reply_to(&f, 487, "Request Terminated", "u1").as_bytes(), a)
        .unwrap();
    let (r, _) = recv_until(&client, "SIP/2.0 487", Duration::from_secs(2)).expect("487");
    assert!(r.contains("CSeq: 1 INVITE"));
}

#[test]
fn cancel_for_unknown_transaction_is_forwarded_statelessly() {
    let (_ser, addr) = ser_with(RELAY, "1", &[]);
    let uas = sock();
    let client = sock();
    let inv = invite(
        &format!("sip:bob@{}", uas.local_addr().unwrap()),
        &client,
        "cancel2",
    );
    let cancel = inv
        .replace("INVITE sip", "CANCEL sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    client.send_to(cancel.as_bytes(), addr).unwrap();
    let (c, _) = recv_until(&uas, "CANCEL", Duration::from_secs(2)).expect("CANCEL passed on");
    assert!(c.contains("branch=z9hG4bKsl"), "stateless branch: {c}");
}

#[test]
fn unresponsive_destination_gets_408_after_fr_timer() {
    let cfg = RELAY.replace("\"fr_timer\", 2", "\"fr_timer\", 1");
    let (_ser, addr) = ser_with(&cfg, "1", &[]);
    let uas = sock();
    let client = sock();
    let msg = request(
        "OPTIONS",
        &format!("sip:bob@{}", uas.local_addr().unwrap()),
        &client.local_addr().unwrap().to_string(),
        "UDP",
        "to408",
    );
    let t0 = Instant::now();
    client.send_to(msg.as_bytes(), addr).unwrap();
    let (r, _) = recv_until(&client, "SIP/2.0 408", Duration::from_secs(4)).expect("408");
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    assert!(r.contains("CSeq: 7 OPTIONS"));
    let seen = recv_all(&uas, Duration::from_millis(100));
    // Timer E: the request was retransmitted (at 0.5 s) before Timer F ended it (1 s).
    let options = seen
        .iter()
        .filter(|(m, _)| m.starts_with("OPTIONS"))
        .count();
    assert!(options >= 2, "{seen:?}");
}

#[test]
fn t_reply_is_stateful_and_retransmitted() {
    let cfg = "loadmodule \"sl.so\"\nloadmodule \"tm.so\"\nroute {\n if (!t_newtran()) { sl_reply_error(); break; };\n t_reply(\"404\", \"Not Here\");\n}\n";
    let (_ser, addr) = ser_with(cfg, "1", &[]);
    let client = sock();
    let msg = request(
        "MESSAGE",
        "sip:bob@example.com",
        &client.local_addr().unwrap().to_string(),
        "UDP",
        "trep1",
    );
    client.send_to(msg.as_bytes(), addr).unwrap();
    let (a, _) = recv_until(&client, "SIP/2.0 404", Duration::from_secs(2)).unwrap();
    client.send_to(msg.as_bytes(), addr).unwrap();
    let (b, _) = recv_until(&client, "SIP/2.0 404", Duration::from_secs(2)).unwrap();
    assert_eq!(a, b, "the same reply, byte for byte");
    assert!(a.contains("SIP/2.0 404 Not Here"));
}

#[test]
fn t_relay_twice_is_transaction_already_in_process() {
    let uas = sock();
    let cfg = "debug=3\nloadmodule \"sl.so\"\nloadmodule \"tm.so\"\nroute {\n t_newtran();\n if (!t_relay()) { log(1, \"second failed\\n\"); };\n}\n";
    let (ser, addr) = ser_with(cfg, "1", &[]);
    let client = sock();
    let msg = request(
        "OPTIONS",
        &format!("sip:bob@{}", uas.local_addr().unwrap()),
        &client.local_addr().unwrap().to_string(),
        "UDP",
        "twice1",
    );
    client.send_to(msg.as_bytes(), addr).unwrap();
    assert!(
        ser.wait_log("transaction already in process", Duration::from_secs(2)),
        "{}",
        ser.log_text()
    );
    assert!(ser.wait_log("second failed", Duration::from_secs(1)));
}

/// An RFC 2543 caller (no magic cookie in its branch): its ACK for ser's 486 is matched by the
/// dialog fields and the To tag of the 486 (§17.2.3) and absorbed; an ACK with another To tag is
/// not ours, so the script routes it (t_relay forwards it statelessly).
#[test]
fn rfc2543_ack_is_matched_by_the_to_tag_of_our_reply() {
    let (_ser, addr) = ser_with(RELAY, "1", &[]);
    let uas = sock();
    let client = sock();
    let ruri = format!("sip:bob@{}", uas.local_addr().unwrap());
    let inv = invite(&ruri, &client, "old2543").replace("branch=z9hG4bK-old2543", "branch=1");
    client.send_to(inv.as_bytes(), addr).unwrap();
    let (fwd, from) = recv_until(&uas, "INVITE", Duration::from_secs(2)).unwrap();
    uas.send_to(reply_to(&fwd, 486, "Busy Here", "u1").as_bytes(), from)
        .unwrap();
    assert!(recv_until(&uas, "ACK", Duration::from_secs(2)).is_some());
    let (r, _) = recv_until(&client, "SIP/2.0 486", Duration::from_secs(2)).unwrap();
    let to = r
        .lines()
        .find(|l| l.starts_with("To:"))
        .unwrap()
        .to_string();
    let ack = |to_line: &str| {
        inv.replace("INVITE sip", "ACK sip")
            .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
            .replace("To: <sip:bob@example.com>", to_line)
    };
    // Another tag first: not an ACK of our 486, so it reaches the script and goes downstream.
    client
        .send_to(ack("To: <sip:bob@example.com>;tag=other").as_bytes(), addr)
        .unwrap();
    let (fwd_ack, _) =
        recv_until(&uas, "ACK", Duration::from_secs(2)).expect("the foreign ACK is relayed");
    assert!(fwd_ack.contains("tag=other"), "{fwd_ack}");
    // Ours: absorbed, nothing more downstream, and the 486 is no longer retransmitted.
    client.send_to(ack(&to).as_bytes(), addr).unwrap();
    let later = recv_all(&uas, Duration::from_millis(800));
    assert!(later.is_empty(), "nothing more downstream: {later:?}");
    let again = recv_all(&client, Duration::from_millis(1200));
    assert!(
        again.iter().all(|m| !m.0.starts_with("SIP/2.0 486")),
        "no 486 retransmission after our ACK: {again:?}"
    );
}
