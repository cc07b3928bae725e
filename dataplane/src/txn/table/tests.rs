//! The table on virtual time: no sockets, no sleeps. Each test plays the script side (create,
//! branches, replies) and the network (replies from downstream), advances `now` by hand, and
//! asserts the actions the table asks for — as quinn-proto tests its `Connection`.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::proxy::sl::SlTagger;
use crate::txn::{response_branch, TmCounters};

const CALLER: &str = "192.0.2.1:5060";
const US: &str = "127.0.0.1:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn table_of(shard: usize, counters: &Arc<TmCounters>) -> Table {
    let mut t = Table::new(
        shard,
        42,
        LocalReplies {
            tagger: SlTagger::new(7),
            server: None,
        },
        counters.clone(),
    );
    t.configure(TimerConfig {
        fr: Duration::from_secs(30),
        fr_inv: Duration::from_secs(120),
        ..TimerConfig::default()
    });
    t
}

fn table() -> Table {
    table_of(0, &Arc::new(TmCounters::new(2)))
}

fn request(method: &str, branch: &str) -> Message {
    let s = format!(
        "{method} sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch={branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n\
         Call-ID: call-1@192.0.2.1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(s)).unwrap()
}

/// What `t_relay` does: the server transaction, one branch per destination (our Via on top),
/// and for INVITE the 100.
fn relay(t: &mut Table, req: &Message, dests: &[&str], now: Instant) -> TxnHandle {
    relay_notify(t, req, dests, false, now)
}

fn relay_notify(
    t: &mut Table,
    req: &Message,
    dests: &[&str],
    notify: bool,
    now: Instant,
) -> TxnHandle {
    let key = t.key(req, None).unwrap();
    assert!(t.find(key).is_none());
    let h = t.create(
        NewServer {
            key,
            method: req.method(),
            request: exact(req),
            src: addr(CALLER),
            local: addr(US),
            proto: Proto::Udp,
            reply_dest: addr(CALLER),
            flags: 0,
            replicate: false,
            notify,
        },
        now,
    );
    for d in dests {
        add_branch(t, h, req, d, now);
    }
    if req.method() == Method::Invite {
        t.reply(h, req, 100, b"trying", &[], b"", now);
    }
    h
}

fn add_branch(t: &mut Table, h: TxnHandle, req: &Message, dest: &str, now: Instant) {
    let id = t.next_branch(h).unwrap().encode();
    let raw = String::from_utf8_lossy(&req.buffer()[..req.len()]).into_owned();
    let (line, rest) = raw.split_once("\r\n").unwrap();
    let sent = format!(
        "{line}\r\nVia: SIP/2.0/UDP {US};branch={}\r\n{rest}",
        String::from_utf8_lossy(&id)
    );
    assert!(t.add_branch(h, Bytes::from(sent), addr(dest), Proto::Udp, addr(US), now));
}

/// Everything the table asks for now.
fn actions(t: &mut Table) -> Vec<Action> {
    std::iter::from_fn(|| t.poll_action()).collect()
}

/// The sends among `a`, as (destination, first line).
fn sends(a: &[Action]) -> Vec<(SocketAddr, String)> {
    a.iter()
        .filter_map(|a| match a {
            Action::Send(x) => {
                let text = String::from_utf8_lossy(&x.data).into_owned();
                Some((x.dest, text.lines().next().unwrap_or("").to_string()))
            }
            _ => None,
        })
        .collect()
}

/// The request last sent to `dest`.
fn sent_to(a: &[Action], dest: &str) -> Message {
    a.iter()
        .rev()
        .find_map(|a| match a {
            Action::Send(x) if x.dest == addr(dest) => {
                Some(Message::parse(x.data.clone()).unwrap())
            }
            _ => None,
        })
        .unwrap()
}

/// A reply from downstream to `sent` (the request as it went out on the branch).
fn answer(sent: &Message, code: u16, reason: &str, extra: &str) -> Message {
    let raw = String::from_utf8_lossy(&sent.buffer()[..sent.len()]).into_owned();
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for l in raw.lines().skip(1) {
        let lower = l.to_ascii_lowercase();
        if lower.starts_with("via:")
            || lower.starts_with("from:")
            || lower.starts_with("call-id:")
            || lower.starts_with("cseq:")
        {
            s.push_str(l);
            s.push_str("\r\n");
        } else if lower.starts_with("to:") {
            s.push_str(l);
            s.push_str(";tag=d");
            s.push_str(&code.to_string());
            s.push_str("\r\n");
        }
    }
    s.push_str(extra);
    s.push_str("Content-Length: 0\r\n\r\n");
    Message::parse(Bytes::from(s)).unwrap()
}

/// Delivers `reply` to the table as the shard does: by the branch of its top Via.
fn deliver(t: &mut Table, reply: Message, now: Instant) -> bool {
    let id = response_branch(&reply).unwrap();
    t.on_reply(id, reply, now)
}

fn upstream(a: &[Action]) -> Vec<String> {
    sends(a)
        .into_iter()
        .filter(|(d, _)| *d == addr(CALLER))
        .map(|(_, l)| l)
        .collect()
}

#[test]
fn a_6xx_wins_cancels_the_other_branches_and_skips_failure_route() {
    let mut t = table();
    let now = Instant::now();
    let inv = request("INVITE", "z9hG4bKc1");
    let h = relay(
        &mut t,
        &inv,
        &["198.51.100.1:5060", "198.51.100.2:5060"],
        now,
    );
    t.set_failure_route(h, Some(crate::script::ir::RouteId(1)));
    let a = actions(&mut t);
    assert_eq!(upstream(&a), ["SIP/2.0 100 trying"]);
    let b1 = sent_to(&a, "198.51.100.1:5060");
    let b2 = sent_to(&a, "198.51.100.2:5060");
    // Branch 2 rings, then branch 1 declines everywhere.
    assert!(deliver(&mut t, answer(&b2, 180, "Ringing", ""), now));
    let a = actions(&mut t);
    assert_eq!(upstream(&a), ["SIP/2.0 180 Ringing"]);
    assert!(deliver(&mut t, answer(&b1, 603, "Decline", ""), now));
    let a = actions(&mut t);
    let s = sends(&a);
    assert!(
        s.contains(&(
            addr("198.51.100.1:5060"),
            "ACK sip:bob@example.com SIP/2.0".into()
        )),
        "{s:?}"
    );
    assert!(
        s.contains(&(
            addr("198.51.100.2:5060"),
            "CANCEL sip:bob@example.com SIP/2.0".into()
        )),
        "{s:?}"
    );
    // The ringing branch must still end before the 6xx goes up; no failure_route (§16.7 step 5).
    assert!(upstream(&a).is_empty());
    assert!(deliver(
        &mut t,
        answer(&b2, 487, "Request Terminated", ""),
        now
    ));
    let a = actions(&mut t);
    assert!(!a.iter().any(|a| matches!(a, Action::Failure { .. })));
    assert_eq!(upstream(&a), ["SIP/2.0 603 Decline"]);
}

#[test]
fn challenges_of_all_branches_go_up_in_one_reply() {
    let mut t = table();
    let now = Instant::now();
    let inv = request("INVITE", "z9hG4bKc2");
    relay(
        &mut t,
        &inv,
        &["198.51.100.1:5060", "198.51.100.2:5060"],
        now,
    );
    let a = actions(&mut t);
    let b1 = sent_to(&a, "198.51.100.1:5060");
    let b2 = sent_to(&a, "198.51.100.2:5060");
    deliver(
        &mut t,
        answer(
            &b1,
            401,
            "Unauthorized",
            "WWW-Authenticate: Digest realm=\"one\", nonce=\"1\"\r\n",
        ),
        now,
    );
    assert!(upstream(&actions(&mut t)).is_empty());
    deliver(
        &mut t,
        answer(
            &b2,
            407,
            "Proxy Authentication Required",
            "Proxy-Authenticate: Digest realm=\"two\", nonce=\"2\"\r\n",
        ),
        now,
    );
    let a = actions(&mut t);
    let up: Vec<&Transmit> = a
        .iter()
        .filter_map(|a| match a {
            Action::Send(x) if x.dest == addr(CALLER) => Some(x),
            _ => None,
        })
        .collect();
    assert_eq!(up.len(), 1);
    let m = Message::parse(up[0].data.clone()).unwrap();
    assert_eq!(m.status(), Some(401));
    let text = String::from_utf8_lossy(&up[0].data).into_owned();
    assert!(
        text.contains("WWW-Authenticate: Digest realm=\"one\""),
        "{text}"
    );
    assert!(
        text.contains("Proxy-Authenticate: Digest realm=\"two\""),
        "{text}"
    );
    assert_eq!(m.vias().count(), 1, "our Via is gone: {text}");
}

#[test]
fn a_503_goes_upstream_as_500() {
    let mut t = table();
    let now = Instant::now();
    let req = request("OPTIONS", "z9hG4bKc3");
    relay(&mut t, &req, &["198.51.100.1:5060"], now);
    let a = actions(&mut t);
    let b1 = sent_to(&a, "198.51.100.1:5060");
    deliver(&mut t, answer(&b1, 503, "Service Unavailable", ""), now);
    assert_eq!(
        upstream(&actions(&mut t)),
        ["SIP/2.0 500 Server Internal Error"]
    );
}

#[test]
fn cancel_is_answered_and_sent_on_ringing_branches_only_after_a_provisional() {
    let mut t = table();
    let now = Instant::now();
    let inv = request("INVITE", "z9hG4bKc4");
    let h = relay(
        &mut t,
        &inv,
        &["198.51.100.1:5060", "198.51.100.2:5060"],
        now,
    );
    let a = actions(&mut t);
    let b1 = sent_to(&a, "198.51.100.1:5060");
    let b2 = sent_to(&a, "198.51.100.2:5060");
    deliver(&mut t, answer(&b1, 180, "Ringing", ""), now);
    actions(&mut t);
    // The CANCEL from upstream: its own transaction, finding the INVITE's.
    let cancel = request("CANCEL", "z9hG4bKc4");
    let inv_h = t.key(&cancel, Some(Method::Invite)).and_then(|k| t.find(k));
    assert_eq!(inv_h, Some(h));
    let key = t.key(&cancel, None).unwrap();
    let c = t.create(
        NewServer {
            key,
            method: Method::Cancel,
            request: exact(&cancel),
            src: addr(CALLER),
            local: addr(US),
            proto: Proto::Udp,
            reply_dest: addr(CALLER),
            flags: 0,
            replicate: false,
            notify: false,
        },
        now,
    );
    t.on_cancel(h, c, &cancel, now);
    let a = actions(&mut t);
    let s = sends(&a);
    assert_eq!(upstream(&a), ["SIP/2.0 200 canceling"]);
    assert!(s.contains(&(
        addr("198.51.100.1:5060"),
        "CANCEL sip:bob@example.com SIP/2.0".into()
    )));
    // §9.1: no CANCEL before a provisional reply; it goes out when the branch rings.
    assert!(
        !s.iter().any(|(d, _)| *d == addr("198.51.100.2:5060")),
        "{s:?}"
    );
    assert_eq!(t.next_branch(h), Err(NoBranch::Canceled));
    deliver(&mut t, answer(&b2, 183, "Session Progress", ""), now);
    let s = sends(&actions(&mut t));
    assert!(s.contains(&(
        addr("198.51.100.2:5060"),
        "CANCEL sip:bob@example.com SIP/2.0".into()
    )));
    // Both answer 487: one 487 goes up.
    deliver(&mut t, answer(&b1, 487, "Request Terminated", ""), now);
    deliver(&mut t, answer(&b2, 487, "Request Terminated", ""), now);
    assert_eq!(
        upstream(&actions(&mut t)),
        ["SIP/2.0 487 Request Terminated"]
    );
}

#[test]
fn fr_timer_answers_408_and_fr_inv_timer_cancels_a_ringing_branch() {
    let mut t = table();
    t.configure(TimerConfig {
        fr: Duration::from_secs(2),
        fr_inv: Duration::from_secs(5),
        ..TimerConfig::default()
    });
    let t0 = Instant::now();
    // Non-INVITE, nobody answers: retransmissions (Timer E), then 408 at fr_timer (Timer F).
    let req = request("MESSAGE", "z9hG4bKc5");
    relay(&mut t, &req, &["198.51.100.1:5060"], t0);
    actions(&mut t);
    t.on_tick(t0 + Duration::from_millis(600));
    let a = actions(&mut t);
    assert_eq!(sends(&a).len(), 1, "Timer E retransmission");
    assert!(upstream(&a).is_empty());
    for ms in [1600, 1900] {
        t.on_tick(t0 + Duration::from_millis(ms));
        assert!(upstream(&actions(&mut t)).is_empty());
    }
    t.on_tick(t0 + Duration::from_millis(2100));
    assert_eq!(upstream(&actions(&mut t)), ["SIP/2.0 408 Request Timeout"]);

    // INVITE that rings: nothing at fr_timer, CANCEL and 408 at fr_inv_timer (Timer C).
    let inv = request("INVITE", "z9hG4bKc6");
    relay(&mut t, &inv, &["198.51.100.1:5060"], t0);
    let a = actions(&mut t);
    let b1 = sent_to(&a, "198.51.100.1:5060");
    deliver(&mut t, answer(&b1, 180, "Ringing", ""), t0);
    actions(&mut t);
    t.on_tick(t0 + Duration::from_millis(4000));
    assert!(
        upstream(&actions(&mut t)).is_empty(),
        "a ringing INVITE outlives fr_timer"
    );
    t.on_tick(t0 + Duration::from_millis(5100));
    let a = actions(&mut t);
    let s = sends(&a);
    assert!(s.contains(&(
        addr("198.51.100.1:5060"),
        "CANCEL sip:bob@example.com SIP/2.0".into()
    )));
    assert_eq!(upstream(&a), ["SIP/2.0 408 Request Timeout"]);
}

#[test]
fn failure_route_forks_serially_and_its_branch_answers() {
    let mut t = table();
    let now = Instant::now();
    let inv = request("INVITE", "z9hG4bKc7");
    let h = relay(&mut t, &inv, &["198.51.100.1:5060"], now);
    t.set_failure_route(h, Some(crate::script::ir::RouteId(2)));
    let a = actions(&mut t);
    let b1 = sent_to(&a, "198.51.100.1:5060");
    deliver(&mut t, answer(&b1, 486, "Busy Here", ""), now);
    let a = actions(&mut t);
    assert!(
        upstream(&a).is_empty(),
        "nothing goes up while failure_route may try more"
    );
    let Some(Action::Failure { txn, route }) =
        a.iter().find(|a| matches!(a, Action::Failure { .. }))
    else {
        panic!("no failure_route asked for: {a:?}")
    };
    assert_eq!((*txn, *route), (h, crate::script::ir::RouteId(2)));
    let (routed_bytes, src, ..) = t.failure_request(h).unwrap();
    assert_eq!(src, addr(CALLER));
    let routed = Message::parse(routed_bytes).unwrap();
    // The failure_route relays to the voicemail box: a second branch of the same transaction.
    add_branch(&mut t, h, &routed, "198.51.100.9:5060", now);
    t.failure_done(h, now);
    let a = actions(&mut t);
    assert!(upstream(&a).is_empty());
    let b2 = sent_to(&a, "198.51.100.9:5060");
    assert_eq!(
        response_branch(&answer(&b2, 200, "OK", "")).unwrap().branch,
        1
    );
    deliver(&mut t, answer(&b2, 200, "OK", ""), now);
    assert_eq!(upstream(&actions(&mut t)), ["SIP/2.0 200 OK"]);

    // A failure_route that does nothing: the best reply goes up when it ends.
    let inv = request("INVITE", "z9hG4bKc8");
    let h = relay(&mut t, &inv, &["198.51.100.1:5060"], now);
    t.set_failure_route(h, Some(crate::script::ir::RouteId(2)));
    let b1 = sent_to(&actions(&mut t), "198.51.100.1:5060");
    deliver(&mut t, answer(&b1, 486, "Busy Here", ""), now);
    actions(&mut t);
    t.failure_done(h, now);
    assert_eq!(upstream(&actions(&mut t)), ["SIP/2.0 486 Busy Here"]);
}

fn completions(a: &[Action]) -> Vec<(u16, u32, Option<String>)> {
    a.iter()
        .filter_map(|a| match a {
            Action::Completed(c) => Some((
                c.code,
                c.flags,
                c.branch.as_ref().map(|b| {
                    let m = Message::parse(b.clone()).unwrap();
                    String::from_utf8_lossy(m.request_uri_bytes().unwrap()).into_owned()
                }),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn completion_is_reported_once_with_the_final_outcome_of_serial_forking() {
    let mut t = table();
    let now = Instant::now();
    let inv = request("INVITE", "z9hG4bKd1");
    let h = relay_notify(&mut t, &inv, &["198.51.100.1:5060"], true, now);
    t.set_failure_route(h, Some(crate::script::ir::RouteId(2)));
    let a = actions(&mut t);
    assert!(completions(&a).is_empty(), "a 100 completes nothing");
    let b1 = sent_to(&a, "198.51.100.1:5060");
    deliver(&mut t, answer(&b1, 486, "Busy Here", ""), now);
    assert!(
        completions(&actions(&mut t)).is_empty(),
        "failure_route may try more"
    );
    let routed = Message::parse(t.failure_request(h).unwrap().0).unwrap();
    add_branch(&mut t, h, &routed, "198.51.100.9:5060", now);
    t.set_flags(h, 0b110);
    t.failure_done(h, now);
    let b2 = sent_to(&actions(&mut t), "198.51.100.9:5060");
    deliver(&mut t, answer(&b2, 200, "OK", ""), now);
    let done = completions(&actions(&mut t));
    assert_eq!(done, [(200, 0b110, Some("sip:bob@example.com".into()))]);
    // A second 2xx goes up too (§16.7 step 9) but completes nothing more.
    deliver(&mut t, answer(&b2, 200, "OK", ""), now);
    assert!(completions(&actions(&mut t)).is_empty());

    // A reply of ours completes it as well (no branch); without `notify` nothing is reported.
    let reg = request("REGISTER", "z9hG4bKd2");
    let h = relay_notify(&mut t, &reg, &[], true, now);
    t.reply(h, &reg, 404, b"Not Found", &[], b"", now);
    assert_eq!(completions(&actions(&mut t)), [(404, 0, None)]);
    let reg = request("REGISTER", "z9hG4bKd3");
    let h = relay(&mut t, &reg, &[], now);
    t.reply(h, &reg, 404, b"Not Found", &[], b"", now);
    assert!(completions(&actions(&mut t)).is_empty());
}

#[test]
fn a_blind_transaction_nobody_answers_gets_a_408_and_an_answered_one_does_not() {
    let mut t = table();
    let now = Instant::now();
    let inv = request("INVITE", "z9hG4bKe1");
    let h = relay(&mut t, &inv, &[], now);
    actions(&mut t);
    assert!(t.add_blind(h, now));
    t.on_tick(now + Duration::from_secs(29));
    assert!(upstream(&actions(&mut t)).is_empty());
    t.on_tick(now + Duration::from_secs(31));
    assert_eq!(upstream(&actions(&mut t)), ["SIP/2.0 408 Request Timeout"]);

    let inv = request("INVITE", "z9hG4bKe2");
    let h = relay(&mut t, &inv, &[], now);
    assert!(t.add_blind(h, now));
    assert!(t.reply_external(h, 200, b"OK", b"vm", b"", b"", now));
    let a = actions(&mut t);
    assert!(upstream(&a).iter().any(|l| l == "SIP/2.0 200 OK"), "{a:?}");
    t.on_tick(now + Duration::from_secs(31));
    assert!(!upstream(&actions(&mut t)).iter().any(|l| l.contains("408")));
}

#[test]
fn a_reply_is_owned_by_the_shard_its_branch_names() {
    let counters = Arc::new(TmCounters::new(2));
    let t0 = table_of(0, &counters);
    let mut t1 = table_of(1, &counters);
    let now = Instant::now();
    let req = request("OPTIONS", "z9hG4bKc9");
    relay(&mut t1, &req, &["198.51.100.1:5060"], now);
    let b1 = sent_to(&actions(&mut t1), "198.51.100.1:5060");
    let reply = answer(&b1, 200, "OK", "");
    let id = response_branch(&reply).unwrap();
    // The kernel handed the reply to shard 0: not its transaction, the branch names shard 1.
    assert_eq!(id.shard, 1);
    assert!(!t0.owns(id));
    assert!(t1.owns(id));
    // Handed over, shard 1 answers upstream.
    assert!(t1.on_reply(id, reply, now));
    assert_eq!(upstream(&actions(&mut t1)), ["SIP/2.0 200 OK"]);
    assert_eq!(counters.totals().completed[0], 1);
    assert_eq!(counters.table_sizes(), vec![0, 1]);
}

#[test]
fn retransmissions_get_the_last_reply_and_acks_of_a_non_2xx_are_absorbed() {
    let mut t = table();
    let now = Instant::now();
    let inv = request("INVITE", "z9hG4bKca");
    let h = relay(&mut t, &inv, &["198.51.100.1:5060"], now);
    let b1 = sent_to(&actions(&mut t), "198.51.100.1:5060");
    let key = t.key(&inv, None).unwrap();
    assert_eq!(t.find(key), Some(h));
    t.retransmission(h);
    assert_eq!(upstream(&actions(&mut t)), ["SIP/2.0 100 trying"]);
    deliver(&mut t, answer(&b1, 404, "Not Found", ""), now);
    assert_eq!(upstream(&actions(&mut t)), ["SIP/2.0 404 Not Found"]);
    let ack = request("ACK", "z9hG4bKca");
    assert!(t.absorb_ack(&ack, now));
    // Timer I ends it; the table is empty again.
    t.on_tick(now + Duration::from_secs(6));
    t.on_tick(now + Duration::from_secs(40));
    actions(&mut t);
    assert!(t.is_empty());
}

#[test]
fn a_uac_transaction_reports_its_final_answer() {
    let mut t = table();
    let now = Instant::now();
    let got: Arc<Mutex<Option<UacResult>>> = Arc::default();
    let g = got.clone();
    t.uac(
        UacRequest {
            method: "NOTIFY".into(),
            ruri: "sip:bob@198.51.100.1:5060".into(),
            headers: "From: <sip:ser@example.com>\r\nTo: <sip:bob@example.com>\r\nEvent: x\r\n"
                .into(),
            body: Vec::new(),
            next_hop: None,
            done: Box::new(move |r| *g.lock().unwrap() = Some(r)),
        },
        &[(addr(US), Proto::Udp)],
        now,
    );
    let a = actions(&mut t);
    let sent = sent_to(&a, "198.51.100.1:5060");
    assert_eq!(sent.method(), Method::Notify);
    deliver(&mut t, answer(&sent, 200, "OK", ""), now);
    for a in actions(&mut t) {
        if let Action::UacDone { done, result } = a {
            done(result);
        }
    }
    let r = got.lock().unwrap().take().unwrap();
    assert_eq!((r.code, r.reason.as_str()), (200, "OK"));
}
