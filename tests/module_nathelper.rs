//! Module nathelper end to end: the real `ser` between a caller and a callee on loopback, with a
//! real rtpengine (Debian's `rtpengine-daemon`, userspace only) started by the test as the media
//! relay. A call's SDP is rewritten to the relay in both directions (NG and rtpproxy protocols),
//! RTP sent to the relay reaches the other side, the relay's session is gone after the BYE, and
//! a relay that does not answer makes force_rtp_proxy() false within rtpproxy_tout while the
//! shard goes on answering other requests.
#![allow(clippy::unwrap_used)]

#[path = "support/net.rs"]
mod net;
#[path = "support/peer.rs"]
mod peer;
#[macro_use]
#[path = "support/skip.rs"]
mod skip;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use net::*;
use peer::*;

/// A running rtpengine: NG and rtpproxy control ports and its media port range.
struct Rtpengine {
    _child: KillOnDrop,
    ng: SocketAddr,
    udp: SocketAddr,
    ports: (u16, u16),
}

/// A free even port range of `n` ports for RTP (checked free now; rtpengine binds lazily).
fn port_range(n: u16) -> (u16, u16) {
    for _ in 0..50 {
        let base = free_port("127.0.0.1") & !1;
        if !(20000..=60000).contains(&base) {
            continue;
        }
        if (base..base + n).all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok()) {
            return (base, base + n - 1);
        }
    }
    panic!("no free port range");
}

/// Sends an NG command; the decoded-enough answer text.
fn ng(addr: SocketAddr, cmd: &str) -> Option<String> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // rtpengine answers a repeated cookie from its cache: every command gets its own.
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    s.send_to(
        format!("t{}_{n} {cmd}", std::process::id()).as_bytes(),
        addr,
    )
    .unwrap();
    let mut b = vec![0u8; 65536];
    let n = s.recv(&mut b).ok()?;
    Some(String::from_utf8_lossy(&b[..n]).into_owned())
}

impl Rtpengine {
    /// `None` (after a skip line) when rtpengine is not installed.
    fn start() -> Option<Rtpengine> {
        if !have("rtpengine") {
            return None;
        }
        // The ports are only known free when picked: a parallel test can take one before
        // rtpengine binds it, and then rtpengine exits. Such a start is retried with new ports.
        for _ in 0..3 {
            if let Some(r) = Rtpengine::try_start() {
                return Some(r);
            }
        }
        panic!("rtpengine did not answer an NG ping (three starts, 10 s each)");
    }

    fn try_start() -> Option<Rtpengine> {
        let ng: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
            .parse()
            .unwrap();
        let udp: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
            .parse()
            .unwrap();
        let ports = port_range(40);
        let child = Command::new("rtpengine")
            .args([
                "--config-file=none",
                "--table=-1",
                "--interface=127.0.0.1",
                "--foreground",
                "--log-stderr",
                "--delete-delay=0",
                "--log-level=5",
            ])
            .arg(format!("--listen-ng={ng}"))
            .arg(format!("--listen-udp={udp}"))
            .arg(format!("--port-min={}", ports.0))
            .arg(format!("--port-max={}", ports.1))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rtpengine");
        let r = Rtpengine {
            _child: KillOnDrop(child),
            ng,
            udp,
            ports,
        };
        let mut r = r;
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if ng_ping(ng) {
                return Some(r);
            }
            if r._child.0.try_wait().ok().flatten().is_some() {
                // It exited: a port was taken after all.
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// The Call-IDs the relay has sessions for.
    fn calls(&self) -> String {
        ng(self.ng, "d7:command4:list5:limit3:100e").unwrap_or_default()
    }
}

fn ng_ping(addr: SocketAddr) -> bool {
    ng(addr, "d7:command4:pinge").is_some_and(|a| a.contains("pong"))
}

macro_rules! need_rtpengine {
    () => {
        match Rtpengine::start() {
            Some(r) => r,
            None => skip!("rtpengine is not installed (apt-get install rtpengine-daemon)"),
        }
    };
}

fn cfg(sock: &str, tout: u32) -> String {
    format!(
        r#"loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "textops.so"
loadmodule "usrloc.so"
loadmodule "nathelper.so"
modparam("nathelper", "rtpproxy_sock", "{sock}")
modparam("nathelper", "rtpproxy_tout", {tout})
route {{
	if (method == "OPTIONS") {{
		sl_send_reply("200", "still here");
		break;
	}};
	if (method == "INVITE") {{
		t_on_reply("1");
		t_on_failure("1");
		if (search("^Content-Type: application/sdp")) {{
			if (!force_rtp_proxy()) {{
				sl_send_reply("500", "No media relay");
				break;
			}};
		}};
	}};
	if (method == "ACK") {{
		force_rtp_proxy();
	}};
	if (method == "BYE" || method == "CANCEL") {{
		unforce_rtp_proxy();
	}};
	if (!t_relay()) {{
		sl_reply_error();
	}};
}}
onreply_route[1] {{
	force_rtp_proxy();
}}
failure_route[1] {{
	unforce_rtp_proxy();
}}
"#
    )
}

fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
}

fn with_body(msg: &str, body: &str) -> String {
    let head = msg
        .strip_suffix("Content-Length: 0\r\n\r\n")
        .expect("message ends with an empty body");
    format!(
        "{head}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The body, checked against Content-Length.
fn body_of(m: &str) -> &str {
    let (head, body) = m.split_once("\r\n\r\n").unwrap();
    let cl: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        cl,
        body.len(),
        "Content-Length matches the rewritten body: {m}"
    );
    body
}

/// (address, port) of the SDP's first media stream.
fn media_of(sdp: &str) -> (String, u16) {
    let addr = sdp
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .unwrap()
        .to_string();
    let port = sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    (addr, port)
}

fn rtp_packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend(std::iter::repeat_n(0xd5u8, 160));
    p
}

/// Sends RTP from `from` to `to` until `at` receives a packet (≤ 3 s); whether it did.
fn media_flows(from: &UdpSocket, to: SocketAddr, at: &UdpSocket) -> bool {
    at.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut b = [0u8; 2048];
    for seq in 0..30u16 {
        from.send_to(&rtp_packet(seq), to).unwrap();
        if let Ok((n, _)) = at.recv_from(&mut b) {
            if n >= 12 && b[0] == 0x80 {
                return true;
            }
        }
    }
    false
}

fn bye_for(inv: &str, ok: &str) -> String {
    let to = ok.lines().find(|l| l.starts_with("To:")).unwrap();
    let ruri = inv.split(' ').nth(1).unwrap();
    let via = inv.lines().find(|l| l.starts_with("Via:")).unwrap();
    let via = via.replace("branch=z9hG4bK-", "branch=z9hG4bK-bye-");
    let call = inv
        .lines()
        .find_map(|l| l.strip_prefix("Call-ID: "))
        .unwrap();
    format!(
        "BYE {ruri} SIP/2.0\r\n{via}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n{to}\r\nCall-ID: {call}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    )
}

fn ack_2xx(inv: &str, ok: &str, body: Option<&str>) -> String {
    let to = ok.lines().find(|l| l.starts_with("To:")).unwrap();
    let ruri = inv.split(' ').nth(1).unwrap();
    let via = inv.lines().find(|l| l.starts_with("Via:")).unwrap();
    let via = via.replace("branch=z9hG4bK-", "branch=z9hG4bK-ack-");
    let call = inv
        .lines()
        .find_map(|l| l.strip_prefix("Call-ID: "))
        .unwrap();
    let m = format!(
        "ACK {ruri} SIP/2.0\r\n{via}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n{to}\r\nCall-ID: {call}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    match body {
        Some(b) => with_body(&m, b),
        None => m,
    }
}

/// One whole call through ser and the relay; `sock` picks the protocol.
fn call_through_relay(r: &Rtpengine, relay: &str, call: &str) {
    let (ser, addr) = ser_with(&cfg(relay, 2), "1", &[]);
    let (caller, callee) = (sock(), sock());
    let caller_rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let callee_rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let caller_media = caller_rtp.local_addr().unwrap().port();
    let callee_media = callee_rtp.local_addr().unwrap().port();
    let ruri = format!("sip:bob@{}", callee.local_addr().unwrap());
    let inv = with_body(&invite(&ruri, &caller, call), &sdp(caller_media));
    caller.send_to(inv.as_bytes(), addr).unwrap();
    let (fwd, from) = recv_until(&callee, "INVITE", Duration::from_secs(3))
        .unwrap_or_else(|| panic!("INVITE at the callee; ser log:\n{}", ser.log_text()));
    let (a, offer_port) = media_of(body_of(&fwd));
    assert_eq!(a, "127.0.0.1");
    assert_ne!(offer_port, caller_media, "offer points at the relay: {fwd}");
    assert!(
        (r.ports.0..=r.ports.1).contains(&offer_port),
        "relay port {offer_port} in {:?}",
        r.ports
    );
    assert!(
        r.calls().contains(call),
        "relay has the call: {}",
        r.calls()
    );
    let ok = with_body(&reply_to(&fwd, 200, "OK", "b1"), &sdp(callee_media));
    callee.send_to(ok.as_bytes(), from).unwrap();
    let (ok_up, _) = recv_until(&caller, "SIP/2.0 200", Duration::from_secs(3))
        .unwrap_or_else(|| panic!("200 at the caller; ser log:\n{}", ser.log_text()));
    let (a, answer_port) = media_of(body_of(&ok_up));
    assert_eq!(a, "127.0.0.1");
    assert_ne!(
        answer_port, callee_media,
        "answer points at the relay: {ok_up}"
    );
    assert_ne!(answer_port, offer_port);
    assert!((r.ports.0..=r.ports.1).contains(&answer_port));
    caller
        .send_to(ack_2xx(&inv, &ok_up, None).as_bytes(), addr)
        .unwrap();
    // Media both ways, through the relay only.
    let relay_answer: SocketAddr = format!("127.0.0.1:{answer_port}").parse().unwrap();
    let relay_offer: SocketAddr = format!("127.0.0.1:{offer_port}").parse().unwrap();
    assert!(
        media_flows(&caller_rtp, relay_answer, &callee_rtp),
        "caller's RTP reaches the callee through the relay"
    );
    assert!(
        media_flows(&callee_rtp, relay_offer, &caller_rtp),
        "callee's RTP reaches the caller through the relay"
    );
    // BYE: the relay's session ends, the BYE goes on.
    let bye = bye_for(&inv, &ok_up);
    caller.send_to(bye.as_bytes(), addr).unwrap();
    let (b, bfrom) = recv_until(&callee, "BYE", Duration::from_secs(3)).expect("BYE at callee");
    callee
        .send_to(reply_to(&b, 200, "OK", "b1").as_bytes(), bfrom)
        .unwrap();
    assert!(recv_until(&caller, "SIP/2.0 200", Duration::from_secs(3)).is_some());
    let until = Instant::now() + Duration::from_secs(3);
    while r.calls().contains(call) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!r.calls().contains(call), "session gone: {}", r.calls());
}

#[test]
fn ng_call_media_goes_through_rtpengine_and_ends_with_bye() {
    let r = need_rtpengine!();
    call_through_relay(&r, &format!("ng:{}", r.ng), "ngcall1");
}

#[test]
fn rtpproxy_protocol_call_through_rtpengine() {
    let r = need_rtpengine!();
    call_through_relay(&r, &format!("udp:{}", r.udp), "rtppcall1");
}

#[test]
fn late_offer_2xx_is_the_offer_and_the_ack_the_answer() {
    let r = need_rtpengine!();
    let (ser, addr) = ser_with(&cfg(&format!("ng:{}", r.ng), 2), "1", &[]);
    let (caller, callee) = (sock(), sock());
    let caller_rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let callee_rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ruri = format!("sip:bob@{}", callee.local_addr().unwrap());
    let inv = invite(&ruri, &caller, "late1");
    caller.send_to(inv.as_bytes(), addr).unwrap();
    let (fwd, from) = recv_until(&callee, "INVITE", Duration::from_secs(3)).expect("INVITE");
    let ok = with_body(
        &reply_to(&fwd, 200, "OK", "b1"),
        &sdp(callee_rtp.local_addr().unwrap().port()),
    );
    callee.send_to(ok.as_bytes(), from).unwrap();
    let (ok_up, _) = recv_until(&caller, "SIP/2.0 200", Duration::from_secs(3))
        .unwrap_or_else(|| panic!("200; log:\n{}", ser.log_text()));
    let (_, offer_port) = media_of(body_of(&ok_up));
    assert!((r.ports.0..=r.ports.1).contains(&offer_port), "{ok_up}");
    let ack = ack_2xx(
        &inv,
        &ok_up,
        Some(&sdp(caller_rtp.local_addr().unwrap().port())),
    );
    caller.send_to(ack.as_bytes(), addr).unwrap();
    let (ack_fwd, _) = recv_until(&callee, "ACK", Duration::from_secs(3))
        .unwrap_or_else(|| panic!("ACK; log:\n{}", ser.log_text()));
    let (_, answer_port) = media_of(body_of(&ack_fwd));
    assert!((r.ports.0..=r.ports.1).contains(&answer_port), "{ack_fwd}");
    assert_ne!(answer_port, offer_port);
    assert!(media_flows(
        &caller_rtp,
        format!("127.0.0.1:{offer_port}").parse().unwrap(),
        &callee_rtp
    ));
}

/// A relay that never answers: the INVITE gets the script's 500 after rtpproxy_tout, and the
/// one shard answers an OPTIONS meanwhile.
#[test]
fn silent_relay_fails_the_call_and_the_shard_goes_on() {
    let hung = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sock_text = format!("ng:{}", hung.local_addr().unwrap());
    let (_ser, addr) = ser_with(&cfg(&sock_text, 1), "1", &[]);
    let (caller, callee) = (sock(), sock());
    let ruri = format!("sip:bob@{}", callee.local_addr().unwrap());
    let inv = with_body(&invite(&ruri, &caller, "dead1"), &sdp(4000));
    let started = Instant::now();
    caller.send_to(inv.as_bytes(), addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let prober = sock();
    let opt = request(
        "OPTIONS",
        "sip:ser@127.0.0.1",
        &prober.local_addr().unwrap().to_string(),
        "UDP",
        "probe1",
    );
    let sent = Instant::now();
    prober.send_to(opt.as_bytes(), addr).unwrap();
    let (o, _) =
        recv_until(&prober, "SIP/2.0 200", Duration::from_secs(1)).expect("OPTIONS answered");
    assert!(o.contains("still here"));
    assert!(
        sent.elapsed() < Duration::from_millis(500),
        "shard not stalled"
    );
    let (r, _) = recv_until(&caller, "SIP/2.0 500", Duration::from_secs(4)).expect("500");
    assert!(r.contains("No media relay"), "{r}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(
        recv_all(&callee, Duration::from_millis(200)).is_empty(),
        "nothing relayed"
    );
    // The relay got the offer (and one retransmission), with a cookie.
    let mut b = [0u8; 4096];
    hung.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let (n, _) = hung.recv_from(&mut b).unwrap();
    let text = String::from_utf8_lossy(&b[..n]);
    assert!(
        text.contains(" d7:call-id5:dead1") && text.contains("7:command5:offer"),
        "{text}"
    );
}

/// Nothing listens at all: refused at once, the call fails as quickly.
#[test]
fn refused_relay_fails_at_once() {
    let port = free_port("127.0.0.1");
    let (_ser, addr) = ser_with(&cfg(&format!("udp:127.0.0.1:{port}"), 2), "1", &[]);
    let (caller, callee) = (sock(), sock());
    let ruri = format!("sip:bob@{}", callee.local_addr().unwrap());
    let inv = with_body(&invite(&ruri, &caller, "dead2"), &sdp(4000));
    let started = Instant::now();
    caller.send_to(inv.as_bytes(), addr).unwrap();
    let (r, _) = recv_until(&caller, "SIP/2.0 500", Duration::from_secs(4)).expect("500");
    assert!(r.contains("No media relay"));
    assert!(started.elapsed() < Duration::from_secs(2));
}

const NAT_CFG: &str = r#"loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "textops.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "nathelper.so"
modparam("nathelper", "natping_interval", 1)
modparam("nathelper", "ping_nated_only", 1)
modparam("nathelper", "rtpproxy_disable", 1)
NATPING_METHOD
route {
	if (method == "REGISTER") {
		if (nat_uac_test("3")) {
			fix_nated_contact();
		};
		save("location");
		break;
	};
	if (method == "OPTIONS") {
		if (nat_uac_test("4")) {
			sl_send_reply("299", "Via names a private address");
			break;
		};
		if (nat_uac_test("2")) {
			sl_send_reply("298", "Via is not the source");
			break;
		};
		sl_send_reply("200", "not behind NAT");
		break;
	};
	if (method == "INVITE" && nat_uac_test("8")) {
		fix_nated_sdp("3");
	};
	if (!lookup("location")) {
		sl_send_reply("404", "Not Found");
		break;
	};
	if (!t_relay()) {
		sl_reply_error();
	};
}
"#;

fn register(user: &str, via: &str, contact: &str, call: &str) -> String {
    format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK-{call}\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=r1\r\nTo: <sip:{user}@127.0.0.1>\r\nCall-ID: {call}\r\nCSeq: 1 REGISTER\r\nContact: <{contact}>\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Datagrams within `wait` that are keep-alives (4 bytes or an OPTIONS), with their source.
fn keepalives(s: &UdpSocket, wait: Duration) -> Vec<(Vec<u8>, SocketAddr)> {
    let until = Instant::now() + wait;
    let mut out = Vec::new();
    let mut b = [0u8; 4096];
    while Instant::now() < until {
        if let Ok((n, from)) = s.recv_from(&mut b) {
            if n == 4 || b[..n].starts_with(b"OPTIONS ") {
                out.push((b[..n].to_vec(), from));
            }
        }
    }
    out
}

/// A UA behind a NAT (its Contact and Via name 192.168.1.50, its packets come from loopback)
/// registers: nat_uac_test sees it, fix_nated_contact marks it, the binding keeps the source
/// address; ser pings that address every natping_interval from its own socket — not the UA
/// that is not behind NAT (ping_nated_only) — and an INVITE for it goes to the source address.
#[test]
fn nated_registration_is_pinged_and_reached_at_its_source() {
    let (ser, addr) = ser_with(&NAT_CFG.replace("NATPING_METHOD", ""), "2", &[]);
    let nated = sock();
    let open = sock();
    let r = register(
        "alice",
        "192.168.1.50:5060",
        "sip:alice@192.168.1.50:5060",
        "reg-nat",
    );
    nated.send_to(r.as_bytes(), addr).unwrap();
    let (ok, _) = recv_until(&nated, "SIP/2.0 200", Duration::from_secs(2))
        .unwrap_or_else(|| panic!("200 to REGISTER; log:\n{}", ser.log_text()));
    assert!(ok.contains("sip:alice@192.168.1.50:5060"), "{ok}");
    let o = open.local_addr().unwrap().to_string();
    let r = register("bob", &o, &format!("sip:bob@{o}"), "reg-open");
    open.send_to(r.as_bytes(), addr).unwrap();
    assert!(recv_until(&open, "SIP/2.0 200", Duration::from_secs(2)).is_some());
    let pings = keepalives(&nated, Duration::from_millis(2500));
    assert!(pings.len() >= 2, "a keep-alive a second: {pings:?}");
    for (p, from) in &pings {
        assert_eq!(p, b"\r\n\r\n");
        assert_eq!(*from, addr, "sent from ser's own socket");
    }
    assert!(
        keepalives(&open, Duration::from_millis(1200)).is_empty(),
        "ping_nated_only: the UA with a public address is not pinged"
    );
    // A call for alice goes to where her REGISTER came from; the URI stays her contact.
    let caller = sock();
    let inv = invite("sip:alice@127.0.0.1", &caller, "call-nat");
    caller.send_to(inv.as_bytes(), addr).unwrap();
    let (fwd, _) = recv_until(&nated, "INVITE", Duration::from_secs(2))
        .unwrap_or_else(|| panic!("INVITE at the NATed UA; log:\n{}", ser.log_text()));
    assert!(
        fwd.starts_with("INVITE sip:alice@192.168.1.50:5060 SIP/2.0"),
        "{fwd}"
    );
}

#[test]
fn natping_method_options_sends_requests() {
    let cfg = NAT_CFG.replace(
        "NATPING_METHOD",
        "modparam(\"nathelper\", \"natping_method\", \"OPTIONS\")",
    );
    let (_ser, addr) = ser_with(&cfg, "1", &[]);
    let nated = sock();
    let r = register(
        "carol",
        "10.1.2.3:5060",
        "sip:carol@10.1.2.3:5060",
        "reg-opt",
    );
    nated.send_to(r.as_bytes(), addr).unwrap();
    assert!(recv_until(&nated, "SIP/2.0 200", Duration::from_secs(2)).is_some());
    let pings = keepalives(&nated, Duration::from_millis(1500));
    let (p, from) = pings.first().expect("an OPTIONS keep-alive");
    let text = String::from_utf8_lossy(p);
    assert!(
        text.starts_with("OPTIONS sip:carol@10.1.2.3:5060 SIP/2.0\r\n"),
        "{text}"
    );
    assert_eq!(*from, addr);
}

#[test]
fn nat_uac_test_and_fix_nated_sdp_in_the_script() {
    let (ser, addr) = ser_with(&NAT_CFG.replace("NATPING_METHOD", ""), "1", &[]);
    let ua = sock();
    let me = ua.local_addr().unwrap().to_string();
    let ask = |via: &str, call: &str| {
        let o = request("OPTIONS", "sip:x@127.0.0.1", via, "UDP", call);
        ua.send_to(o.as_bytes(), addr).unwrap();
        let (r, _) = recv_until(&ua, "SIP/2.0", Duration::from_secs(2)).expect("reply");
        status(&r)
    };
    assert_eq!(ask("192.168.0.7:5060", "o1"), 299);
    assert_eq!(ask("198.51.100.9:5060", "o2"), 298);
    assert_eq!(ask(&me, "o3"), 200);
    // fix_nated_sdp("3"): the c= lines name the source address, a=direction:active is added.
    let callee = sock();
    let c = callee.local_addr().unwrap().to_string();
    let r = register("dave", &c, &format!("sip:dave@{c}"), "reg-d");
    callee.send_to(r.as_bytes(), addr).unwrap();
    assert!(recv_until(&callee, "SIP/2.0 200", Duration::from_secs(2)).is_some());
    let private_sdp = "v=0\r\no=- 1 1 IN IP4 192.168.1.50\r\ns=-\r\nc=IN IP4 192.168.1.50\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let inv = with_body(&invite("sip:dave@127.0.0.1", &ua, "sdp1"), private_sdp);
    ua.send_to(inv.as_bytes(), addr).unwrap();
    let (fwd, _) = recv_until(&callee, "INVITE", Duration::from_secs(2))
        .unwrap_or_else(|| panic!("INVITE; log:\n{}", ser.log_text()));
    let body = body_of(&fwd);
    assert!(body.contains("c=IN IP4 127.0.0.1\r\n"), "{body}");
    assert!(!body.contains("c=IN IP4 192.168.1.50"), "{body}");
    assert!(body.contains("a=direction:active\r\n"), "{body}");
    assert!(body.contains("m=audio 4000 RTP/AVP 0"), "{body}");
}

/// tests/data/nathelper/nat-howto.cfg (SER's NAT set-up: test, fix, mark, relay) with a caller
/// behind NAT — its Via, Contact and SDP name 192.168.1.50, its packets come from loopback —
/// calling a registered public UA: the callee sees the fixed Contact and the relay in the SDP,
/// the 200 reaches the caller at its source port (rport), and media flows both ways once the
/// caller has sent first (the relay learns the NATed address from its packets).
#[test]
fn nat_howto_config_call_from_behind_nat() {
    let r = need_rtpengine!();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/nathelper/nat-howto.cfg"
    ))
    .unwrap()
    .replace("ng:127.0.0.1:2223", &format!("ng:{}", r.ng));
    let (ser, addr) = ser_with(&text, "1", &[]);
    let (caller, callee) = (sock(), sock());
    let caller_rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let callee_rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let c = callee.local_addr().unwrap().to_string();
    let reg = register("bob", &c, &format!("sip:bob@{c}"), "howto-reg");
    callee.send_to(reg.as_bytes(), addr).unwrap();
    assert!(recv_until(&callee, "SIP/2.0 200", Duration::from_secs(2)).is_some());
    let private_sdp = "v=0\r\no=- 1 1 IN IP4 192.168.1.50\r\ns=-\r\nc=IN IP4 192.168.1.50\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let inv = format!(
        "INVITE sip:bob@{addr} SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.50:5060;rport;branch=z9hG4bK-howto1\r\nMax-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: howto1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.168.1.50:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{private_sdp}",
        private_sdp.len()
    );
    caller.send_to(inv.as_bytes(), addr).unwrap();
    let (fwd, from) = recv_until(&callee, "INVITE", Duration::from_secs(3)).unwrap_or_else(|| {
        panic!(
            "INVITE at the callee; the caller got {:?}; log:\n{}",
            recv_all(&caller, Duration::from_millis(300)),
            ser.log_text()
        )
    });
    let me = caller.local_addr().unwrap();
    assert!(
        fwd.contains(&format!("Contact: <sip:alice@{me}>")),
        "Contact fixed to the source: {fwd}"
    );
    let (a, offer_port) = media_of(body_of(&fwd));
    assert_eq!(a, "127.0.0.1");
    assert!((r.ports.0..=r.ports.1).contains(&offer_port), "{fwd}");
    // The callee's phone names a private address in its Contact too: fixed in onreply_route.
    let ok = with_body(
        &reply_with(
            &fwd,
            200,
            "OK",
            "b1",
            "Contact: <sip:bob@10.0.0.9:5060>\r\n",
        ),
        &sdp(callee_rtp.local_addr().unwrap().port()),
    );
    callee.send_to(ok.as_bytes(), from).unwrap();
    let (ok_up, _) = recv_until(&caller, "SIP/2.0 200", Duration::from_secs(3))
        .unwrap_or_else(|| panic!("200 at the caller's source port; log:\n{}", ser.log_text()));
    assert!(
        ok_up.contains(&format!("Contact: <sip:bob@{c}>")),
        "reply's Contact fixed to the callee's source: {ok_up}"
    );
    let (_, answer_port) = media_of(body_of(&ok_up));
    assert!((r.ports.0..=r.ports.1).contains(&answer_port), "{ok_up}");
    assert!(media_flows(
        &caller_rtp,
        format!("127.0.0.1:{answer_port}").parse().unwrap(),
        &callee_rtp
    ));
    assert!(
        media_flows(
            &callee_rtp,
            format!("127.0.0.1:{offer_port}").parse().unwrap(),
            &caller_rtp
        ),
        "the callee's media reaches the NATed caller at its real address"
    );
}

/// The callee refuses: failure_route's unforce_rtp_proxy() ends the relay's session, and the
/// caller gets the 486.
#[test]
fn failed_call_ends_the_relay_session() {
    let r = need_rtpengine!();
    let (ser, addr) = ser_with(&cfg(&format!("ng:{}", r.ng), 2), "1", &[]);
    let (caller, callee) = (sock(), sock());
    let ruri = format!("sip:bob@{}", callee.local_addr().unwrap());
    let inv = with_body(&invite(&ruri, &caller, "busy1"), &sdp(4000));
    caller.send_to(inv.as_bytes(), addr).unwrap();
    let (fwd, from) = recv_until(&callee, "INVITE", Duration::from_secs(3))
        .unwrap_or_else(|| panic!("INVITE; log:\n{}", ser.log_text()));
    assert!(r.calls().contains("busy1"), "{}", r.calls());
    callee
        .send_to(reply_to(&fwd, 486, "Busy Here", "b1").as_bytes(), from)
        .unwrap();
    let finals = finals_acked(&caller, addr, &inv, Duration::from_secs(2));
    assert_eq!(finals.iter().map(|m| status(m)).collect::<Vec<_>>(), [486]);
    let until = Instant::now() + Duration::from_secs(3);
    while r.calls().contains("busy1") && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!r.calls().contains("busy1"), "session gone: {}", r.calls());
}

/// t_on_reply names a block that must exist, as t_on_failure does.
#[test]
fn t_on_reply_of_a_missing_block_is_a_config_error() {
    let cfg = temp_cfg(
        "loadmodule \"sl.so\"\nloadmodule \"tm.so\"\nroute { t_on_reply(\"7\"); t_relay(); }\n",
    );
    let out = Command::new(ser_bin())
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("t_on_reply(7) arms onreply_route[7], which is not defined"),
        "{err}"
    );
    let _ = std::fs::remove_file(cfg);
}
