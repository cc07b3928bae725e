//! Module `pa` end to end: the real `ser` with a registrar + presence script, a watcher and the
//! presentity's phone as UDP sockets over loopback. The watcher subscribes to alice's presence
//! (RFC 6665 / RFC 3856) and sees PIDF (RFC 3863) NOTIFYs follow her registration: closed, open
//! when she registers, closed when her binding expires; refresh, unsubscribe, subscription
//! expiry, 481 and 489 as RFC 6665 says; and her UA's own PUBLISHed state (RFC 3903) while
//! it lasts.
#![allow(clippy::unwrap_used)]

#[path = "support/net.rs"]
mod net;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use net::*;

const CFG: &str = r#"
debug=3
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "pa.so"
modparam("usrloc", "db_mode", 0)
modparam("registrar", "min_expires", 1)
modparam("pa", "timer_interval", 1)
route {
	if (method == "REGISTER") {
		save("location");
		break;
	};
	if (method == "SUBSCRIBE") {
		handle_subscription("registrar");
		break;
	};
	if (method == "PUBLISH") {
		handle_publish("registrar");
		break;
	};
	sl_send_reply("404", "Not Found");
}
"#;

fn sock() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s
}

fn hdr<'a>(m: &'a str, name: &str) -> Option<&'a str> {
    m.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn tag_of(v: &str) -> Option<&str> {
    v.split(';')
        .find_map(|p| p.trim().strip_prefix("tag="))
        .map(str::trim)
}

fn body_of(m: &str) -> &str {
    m.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// A 200 to `req` (Via, From, To, Call-ID, CSeq copied).
fn ok_to(req: &str, code: u16) -> String {
    let mut out = format!("SIP/2.0 {code} OK\r\n");
    for l in req.split("\r\n") {
        let lower = l.to_ascii_lowercase();
        if ["via:", "from:", "to:", "call-id:", "cseq:"]
            .iter()
            .any(|p| lower.starts_with(p))
        {
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

struct Watcher {
    s: UdpSocket,
    ser: SocketAddr,
    call: String,
    to_tag: Option<String>,
    cseq: u32,
    /// What NOTIFYs are answered with.
    answer: u16,
}

impl Watcher {
    fn new(ser: SocketAddr, call: &str) -> Watcher {
        Watcher {
            s: sock(),
            ser,
            call: call.into(),
            to_tag: None,
            cseq: 0,
            answer: 200,
        }
    }

    fn subscribe(&mut self, event: &str, expires: u32) {
        self.cseq += 1;
        let me = self.s.local_addr().unwrap();
        let to_tag = self
            .to_tag
            .as_ref()
            .map_or(String::new(), |t| format!(";tag={t}"));
        let ruri = if self.to_tag.is_some() {
            format!("sip:{}", self.ser)
        } else {
            format!("sip:alice@{}", self.ser)
        };
        let req = format!(
            "SUBSCRIBE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{}-{}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:watcher@127.0.0.1>;tag=w-{}\r\n\
             To: <sip:alice@127.0.0.1>{to_tag}\r\nCall-ID: {}\r\nCSeq: {} SUBSCRIBE\r\n\
             Event: {event}\r\nAccept: application/pidf+xml\r\nExpires: {expires}\r\n\
             Contact: <sip:watcher@{me}>\r\nContent-Length: 0\r\n\r\n",
            self.call, self.cseq, self.call, self.call, self.cseq
        );
        self.s.send_to(req.as_bytes(), self.ser).unwrap();
    }

    /// Replies and NOTIFYs (each NOTIFY answered) within `wait`, stopping after `notifies`
    /// NOTIFYs and one final reply when `want_reply`.
    fn collect(
        &mut self,
        wait: Duration,
        want_reply: bool,
        notifies: usize,
    ) -> (Option<String>, Vec<String>) {
        let end = Instant::now() + wait;
        let mut buf = vec![0u8; 65536];
        let (mut rep, mut nots) = (None, Vec::new());
        let mut seen = Vec::new();
        while Instant::now() < end && !((rep.is_some() || !want_reply) && nots.len() >= notifies) {
            let Ok((n, from)) = self.s.recv_from(&mut buf) else {
                continue;
            };
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if m.starts_with("NOTIFY ") {
                self.s
                    .send_to(ok_to(&m, self.answer).as_bytes(), from)
                    .unwrap();
                let cseq = hdr(&m, "CSeq").unwrap_or("").to_string();
                if !seen.contains(&cseq) {
                    seen.push(cseq);
                    nots.push(m);
                }
            } else if m.starts_with("SIP/2.0 ") && !m.starts_with("SIP/2.0 1") {
                if self.to_tag.is_none() {
                    self.to_tag = hdr(&m, "To").and_then(tag_of).map(String::from);
                }
                rep = Some(m);
            }
        }
        (rep, nots)
    }
}

fn register(ser: SocketAddr, phone: &UdpSocket, expires: u32) -> String {
    let me = phone.local_addr().unwrap();
    let req = format!(
        "REGISTER sip:{ser} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-reg-{expires}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=ra\r\nTo: <sip:alice@127.0.0.1>\r\n\
         Call-ID: reg-alice\r\nCSeq: {} REGISTER\r\nContact: <sip:alice@{me}>\r\n\
         Expires: {expires}\r\nContent-Length: 0\r\n\r\n",
        expires + 1
    );
    phone.send_to(req.as_bytes(), ser).unwrap();
    let end = Instant::now() + Duration::from_secs(3);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end {
        if let Ok((n, _)) = phone.recv_from(&mut buf) {
            return String::from_utf8_lossy(&buf[..n]).into_owned();
        }
    }
    String::new()
}

fn basic(n: &str) -> &str {
    let b = body_of(n);
    let s = b.find("<basic>").map_or(0, |i| i + 7);
    let e = b.find("</basic>").unwrap_or(s);
    &b[s..e]
}

#[test]
fn a_watcher_sees_alice_come_online_and_go_offline_with_her_registration() {
    let port = free_port("127.0.0.1");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ser = Ser::start_with_cfg(CFG, &["-l", "127.0.0.1", "-p", &port.to_string()]);
    let mut w = Watcher::new(addr, "sub-1");

    // Subscribe: 202 with a To tag and the Expires granted, then a NOTIFY with her state.
    w.subscribe("presence", 60);
    let (rep, nots) = w.collect(Duration::from_secs(3), true, 1);
    let rep = rep.expect("a reply to SUBSCRIBE");
    assert!(rep.starts_with("SIP/2.0 202 "), "{rep}");
    assert_eq!(hdr(&rep, "Expires"), Some("60"));
    assert!(hdr(&rep, "Contact").is_some());
    let our_tag = w.to_tag.clone().expect("a To tag");
    assert_eq!(nots.len(), 1, "{}", ser.log_text());
    let n = &nots[0];
    assert!(n.starts_with(&format!(
        "NOTIFY sip:watcher@{} SIP/2.0",
        w.s.local_addr().unwrap()
    )));
    assert_eq!(hdr(n, "Event"), Some("presence"));
    assert_eq!(hdr(n, "Content-Type"), Some("application/pidf+xml"));
    assert_eq!(hdr(n, "Call-ID"), Some("sub-1"));
    assert_eq!(hdr(n, "From").and_then(tag_of), Some(our_tag.as_str()));
    assert_eq!(hdr(n, "To").and_then(tag_of), Some("w-sub-1"));
    let st = hdr(n, "Subscription-State").unwrap();
    assert!(st.starts_with("active;expires="), "{st}");
    assert!(body_of(n).contains("urn:ietf:params:xml:ns:pidf"));
    assert!(body_of(n).contains("entity=\"sip:alice@127.0.0.1\""));
    assert_eq!(basic(n), "closed");

    // Alice registers for 3 s: open within the timer interval; her binding expires: closed.
    let phone = sock();
    assert!(register(addr, &phone, 3).starts_with("SIP/2.0 200 "));
    let (_, nots) = w.collect(Duration::from_secs(4), false, 1);
    assert_eq!(nots.len(), 1, "{}", ser.log_text());
    assert_eq!(basic(&nots[0]), "open");
    let cseq1: u32 = hdr(&nots[0], "CSeq")
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (_, nots) = w.collect(Duration::from_secs(6), false, 1);
    assert_eq!(nots.len(), 1, "{}", ser.log_text());
    assert_eq!(basic(&nots[0]), "closed");
    let cseq2: u32 = hdr(&nots[0], "CSeq")
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(cseq2 > cseq1, "CSeq grows within the subscription");

    // Refresh: 200, and a NOTIFY with the current state.
    w.subscribe("presence", 60);
    let (rep, nots) = w.collect(Duration::from_secs(3), true, 1);
    assert!(rep.unwrap().starts_with("SIP/2.0 200 "));
    assert_eq!(nots.len(), 1);
    assert!(hdr(&nots[0], "Subscription-State")
        .unwrap()
        .starts_with("active"));

    // Unsubscribe: 200 and a terminated NOTIFY; then the subscription is gone (481).
    w.subscribe("presence", 0);
    let (rep, nots) = w.collect(Duration::from_secs(3), true, 1);
    assert!(rep.unwrap().starts_with("SIP/2.0 200 "));
    assert_eq!(nots.len(), 1);
    assert_eq!(hdr(&nots[0], "Subscription-State"), Some("terminated"));
    w.subscribe("presence", 60);
    let (rep, _) = w.collect(Duration::from_secs(3), true, 0);
    assert!(rep.unwrap().starts_with("SIP/2.0 481 "));

    // No NOTIFY after the subscription ended, even when alice registers again.
    assert!(register(addr, &phone, 30).starts_with("SIP/2.0 200 "));
    let (_, nots) = w.collect(Duration::from_millis(2500), false, 1);
    assert!(nots.is_empty(), "{nots:?}");
}

#[test]
fn unknown_events_and_expired_subscriptions() {
    let port = free_port("127.0.0.1");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // The release notes' name for the function works too.
    let cfg = CFG.replace("handle_subscription(", "handle_subscribe(");
    let ser = Ser::start_with_cfg(&cfg, &["-l", "127.0.0.1", "-p", &port.to_string()]);

    let mut w = Watcher::new(addr, "sub-2");
    w.subscribe("dialog", 60);
    let (rep, nots) = w.collect(Duration::from_secs(2), true, 0);
    let rep = rep.unwrap();
    assert!(rep.starts_with("SIP/2.0 489 "), "{rep}");
    assert_eq!(hdr(&rep, "Allow-Events"), Some("presence"));
    assert!(nots.is_empty());

    // A 2 s subscription ends with terminated;reason=timeout.
    let mut w = Watcher::new(addr, "sub-3");
    w.subscribe("presence", 2);
    let (rep, nots) = w.collect(Duration::from_secs(2), true, 1);
    assert!(rep.unwrap().starts_with("SIP/2.0 202 "));
    assert_eq!(nots.len(), 1);
    let (_, nots) = w.collect(Duration::from_secs(5), false, 1);
    assert_eq!(nots.len(), 1, "{}", ser.log_text());
    assert_eq!(
        hdr(&nots[0], "Subscription-State"),
        Some("terminated;reason=timeout")
    );

    // A watcher whose UA answers 481 loses its subscription: a refresh then gets 481.
    let mut w = Watcher::new(addr, "sub-4");
    w.answer = 481;
    w.subscribe("presence", 60);
    let (rep, nots) = w.collect(Duration::from_secs(2), true, 1);
    assert!(rep.unwrap().starts_with("SIP/2.0 202 "));
    assert_eq!(nots.len(), 1);
    std::thread::sleep(Duration::from_millis(300));
    w.subscribe("presence", 60);
    let (rep, _) = w.collect(Duration::from_secs(2), true, 0);
    assert!(rep.unwrap().starts_with("SIP/2.0 481 "));
}

/// A PUBLISH from alice's UA; its final reply.
fn publish(
    ser: SocketAddr,
    ua: &UdpSocket,
    n: u32,
    extra: &str,
    ctype: &str,
    body: &str,
) -> String {
    let me = ua.local_addr().unwrap();
    let req = format!(
        "PUBLISH sip:alice@{ser} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-pub-{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=pa\r\nTo: <sip:alice@127.0.0.1>\r\n\
         Call-ID: pub-alice-{n}\r\nCSeq: 1 PUBLISH\r\nEvent: presence\r\n{extra}\
         Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    ua.send_to(req.as_bytes(), ser).unwrap();
    let end = Instant::now() + Duration::from_secs(3);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end {
        if let Ok((n, _)) = ua.recv_from(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !m.starts_with("SIP/2.0 1") {
                return m;
            }
        }
    }
    String::new()
}

const AWAY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"pres:alice@127.0.0.1\">\n\
<tuple id=\"phone\"><status><basic>open</basic></status><note>in a meeting</note></tuple>\n\
</presence>\n";

#[test]
fn a_published_state_reaches_the_watchers_while_it_lasts() {
    let port = free_port("127.0.0.1");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ser = Ser::start_with_cfg(CFG, &["-l", "127.0.0.1", "-p", &port.to_string()]);
    let mut w = Watcher::new(addr, "sub-5");
    w.subscribe("presence", 60);
    let (rep, nots) = w.collect(Duration::from_secs(3), true, 1);
    assert!(rep.unwrap().starts_with("SIP/2.0 202 "));
    assert_eq!(basic(&nots[0]), "closed");

    // Bad input is refused, saying why; nothing reaches the watcher.
    let ua = sock();
    let r = publish(addr, &ua, 1, "", "text/plain", "busy");
    assert!(r.starts_with("SIP/2.0 415 "), "{r}");
    assert_eq!(hdr(&r, "Accept"), Some("application/pidf+xml"));
    let r = publish(
        addr,
        &ua,
        2,
        "",
        "application/pidf+xml",
        "<presence><tuple>",
    );
    assert!(r.starts_with("SIP/2.0 400 Bad PIDF: not XML"), "{r}");
    let r = publish(
        addr,
        &ua,
        3,
        "",
        "application/pidf+xml",
        "<x xmlns=\"urn:other\"/>",
    );
    assert!(
        r.starts_with("SIP/2.0 400 Bad PIDF: not a PIDF document"),
        "{r}"
    );
    let r = publish(
        addr,
        &ua,
        4,
        "SIP-If-Match: nosuchtag\r\nExpires: 60\r\n",
        "application/pidf+xml",
        "",
    );
    assert!(r.starts_with("SIP/2.0 412 "), "{r}");
    let (_, nots) = w.collect(Duration::from_millis(600), false, 1);
    assert!(nots.is_empty(), "{nots:?}");

    // A publication: 200 with an entity tag; the watcher gets the document as published.
    let r = publish(
        addr,
        &ua,
        5,
        "Expires: 60\r\n",
        "application/pidf+xml",
        AWAY,
    );
    assert!(r.starts_with("SIP/2.0 200 "), "{r}\n{}", ser.log_text());
    assert_eq!(hdr(&r, "Expires"), Some("60"));
    let etag = hdr(&r, "SIP-ETag").expect("SIP-ETag").to_string();
    let (_, nots) = w.collect(Duration::from_secs(2), false, 1);
    assert_eq!(nots.len(), 1, "{}", ser.log_text());
    assert_eq!(body_of(&nots[0]), AWAY);

    // A refresh without a body keeps the document under a new entity tag.
    let r = publish(
        addr,
        &ua,
        6,
        &format!("SIP-If-Match: {etag}\r\nExpires: 60\r\n"),
        "application/pidf+xml",
        "",
    );
    assert!(r.starts_with("SIP/2.0 200 "), "{r}");
    let etag2 = hdr(&r, "SIP-ETag").unwrap().to_string();
    assert_ne!(etag, etag2);
    let (_, nots) = w.collect(Duration::from_millis(600), false, 1);
    assert!(nots.is_empty(), "unchanged document, no NOTIFY: {nots:?}");

    // Removing it: the watcher is back to the registrar's view (closed: no binding).
    let r = publish(
        addr,
        &ua,
        7,
        &format!("SIP-If-Match: {etag2}\r\nExpires: 0\r\n"),
        "application/pidf+xml",
        "",
    );
    assert!(r.starts_with("SIP/2.0 200 "), "{r}");
    let (_, nots) = w.collect(Duration::from_secs(2), false, 1);
    assert_eq!(nots.len(), 1);
    assert_eq!(basic(&nots[0]), "closed");
    assert!(!body_of(&nots[0]).contains("meeting"));
}

/// The `pa_watchers` rows (callid, s_tag, cseq) of the SQLite database at `url`.
fn stored(url: &str) -> Vec<(String, String, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cols: Vec<String> = ["callid", "s_tag", "cseq"]
        .iter()
        .map(|c| c.to_string())
        .collect();
    rt.block_on(async {
        controlplane::db::Databases::new(url)
            .select("", "pa_watchers", &[], &cols)
            .await
            .unwrap()
    })
    .into_iter()
    .map(|r| {
        let c = |i: usize| r[i].clone().unwrap_or_default();
        (c(0), c(1), c(2))
    })
    .collect()
}

fn cseq_of(m: &str) -> u32 {
    hdr(m, "CSeq")
        .and_then(|c| c.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn subscriptions_in_the_database_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("ser-pa-db-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("ser.db").display());
    let cfg = CFG.replace(
        "modparam(\"pa\", \"timer_interval\", 1)",
        "modparam(\"pa\", \"timer_interval\", 1)\nmodparam(\"pa\", \"use_db\", 1)",
    );
    let port = free_port("127.0.0.1");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let args = ["-l", "127.0.0.1", "-p", &port.to_string()];
    let mut ser = Ser::start_with_env(&cfg, &args, &[("SER_DB_URL", &url)]);
    let mut w = Watcher::new(addr, "sub-db");
    w.subscribe("presence", 60);
    let (rep, nots) = w.collect(Duration::from_secs(3), true, 1);
    assert!(rep.unwrap().starts_with("SIP/2.0 202 "));
    assert_eq!(nots.len(), 1);
    assert_eq!(basic(&nots[0]), "closed");
    let our_tag = w.to_tag.clone().unwrap();
    let first = cseq_of(&nots[0]);
    assert!(ser.terminate(Duration::from_secs(5)).is_some());
    let rows = stored(&url);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str()),
        ("sub-db", our_tag.as_str())
    );

    // A new server: the watcher hears from the same dialog, CSeq going on.
    let _ser = Ser::start_with_env(&cfg, &args, &[("SER_DB_URL", &url)]);
    let (_, nots) = w.collect(Duration::from_secs(4), false, 1);
    assert_eq!(nots.len(), 1, "a NOTIFY after the restart");
    let n = &nots[0];
    assert_eq!(hdr(n, "Call-ID"), Some("sub-db"));
    assert_eq!(hdr(n, "From").and_then(tag_of), Some(our_tag.as_str()));
    assert_eq!(basic(n), "closed");
    let after = cseq_of(n);
    assert!(after > first, "{after} > {first}");
    let phone = sock();
    assert!(register(addr, &phone, 30).starts_with("SIP/2.0 200 "));
    let (_, nots) = w.collect(Duration::from_secs(4), false, 1);
    assert_eq!(nots.len(), 1);
    assert_eq!(basic(&nots[0]), "open");
    assert!(cseq_of(&nots[0]) > after);
    // The restored subscription is a known dialog: unsubscribing gets 200, not 481.
    w.subscribe("presence", 0);
    let (rep, _) = w.collect(Duration::from_secs(3), true, 1);
    assert!(rep.unwrap().starts_with("SIP/2.0 200 "));
    let end = Instant::now() + Duration::from_secs(5);
    while !stored(&url).is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        stored(&url).is_empty(),
        "the row goes with the subscription"
    );
    drop(_ser);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `pa_publications` rows (etag, doc) of the SQLite database at `url`.
fn published_rows(url: &str) -> Vec<(String, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cols: Vec<String> = ["etag", "doc"].iter().map(|c| c.to_string()).collect();
    rt.block_on(async {
        controlplane::db::Databases::new(url)
            .select("", "pa_publications", &[], &cols)
            .await
            .unwrap()
    })
    .into_iter()
    .map(|r| {
        let c = |i: usize| r[i].clone().unwrap_or_default();
        (c(0), c(1))
    })
    .collect()
}

/// Waits (≤ 5 s) until the publications table holds `n` rows, and returns them.
fn published_n(url: &str, n: usize) -> Vec<(String, String)> {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let rows = published_rows(url);
        if rows.len() == n || Instant::now() >= end {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_publication_in_the_database_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("ser-pa-pub-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("ser.db").display());
    let cfg = CFG.replace(
        "modparam(\"pa\", \"timer_interval\", 1)",
        "modparam(\"pa\", \"timer_interval\", 1)\nmodparam(\"pa\", \"use_db\", 1)",
    );
    let port = free_port("127.0.0.1");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let args = ["-l", "127.0.0.1", "-p", &port.to_string()];
    let mut ser = Ser::start_with_env(&cfg, &args, &[("SER_DB_URL", &url)]);
    let ua = sock();
    let r = publish(
        addr,
        &ua,
        1,
        "Expires: 120\r\n",
        "application/pidf+xml",
        AWAY,
    );
    assert!(r.starts_with("SIP/2.0 200 "), "{r}");
    let etag = hdr(&r, "SIP-ETag").unwrap().to_string();
    let rows = published_n(&url, 1);
    assert_eq!(rows, vec![(etag.clone(), AWAY.to_string())]);
    assert!(ser.terminate(Duration::from_secs(5)).is_some());
    // A row that is not PIDF (written by hand): refused at start-up, said why, and deleted.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let db = controlplane::db::Databases::new(url.as_str());
        let db = db.get("").await.unwrap();
        let row = |c: &str, v: &str| (c.to_string(), Some(v.to_string()));
        db.insert(
            "pa_publications",
            &[
                row("etag", "hand-made"),
                row("s_key", "bob"),
                row("expires", "99999999999"),
                row("doc", "<presence><tuple>"),
            ],
        )
        .await
        .unwrap();
    });
    assert_eq!(published_rows(&url).len(), 2);

    // A new server: a new watcher gets the published document, not the registrar's view.
    let ser = Ser::start_with_env(&cfg, &args, &[("SER_DB_URL", &url)]);
    assert!(
        ser.wait_log("1 publication(s)", Duration::from_secs(5)),
        "{}",
        ser.log_text()
    );
    assert!(
        ser.log_text()
            .contains("stored publication hand-made of bob is refused (not XML"),
        "{}",
        ser.log_text()
    );
    assert_eq!(published_n(&url, 1), vec![(etag.clone(), AWAY.to_string())]);
    let mut w = Watcher::new(addr, "sub-pub");
    w.subscribe("presence", 60);
    let (rep, nots) = w.collect(Duration::from_secs(3), true, 1);
    assert!(rep.unwrap().starts_with("SIP/2.0 202 "));
    assert_eq!(nots.len(), 1);
    assert_eq!(body_of(&nots[0]), AWAY);

    // The UA's entity tag is still good: a refresh moves the row to the new tag.
    let r = publish(
        addr,
        &ua,
        2,
        &format!("SIP-If-Match: {etag}\r\nExpires: 120\r\n"),
        "application/pidf+xml",
        "",
    );
    assert!(r.starts_with("SIP/2.0 200 "), "{r}");
    let etag2 = hdr(&r, "SIP-ETag").unwrap().to_string();
    let end = Instant::now() + Duration::from_secs(5);
    while published_rows(&url).first().map(|r| r.0.as_str()) != Some(etag2.as_str())
        && Instant::now() < end
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        published_rows(&url),
        vec![(etag2.clone(), AWAY.to_string())]
    );

    // Removed: the row goes, and the watcher is back to the registrar's view.
    let r = publish(
        addr,
        &ua,
        3,
        &format!("SIP-If-Match: {etag2}\r\nExpires: 0\r\n"),
        "application/pidf+xml",
        "",
    );
    assert!(r.starts_with("SIP/2.0 200 "), "{r}");
    assert!(published_n(&url, 0).is_empty());
    let (_, nots) = w.collect(Duration::from_secs(2), false, 1);
    assert_eq!(nots.len(), 1);
    assert_eq!(basic(&nots[0]), "closed");
    drop(ser);
    let _ = std::fs::remove_dir_all(&dir);
}
