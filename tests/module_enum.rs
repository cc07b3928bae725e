//! Module `enum` end to end: the real `ser` with SER_NAMESERVER pointing at the test DNS server
//! (tests/support/dns_server.rs) holding ENUM NAPTR records; INVITEs for E.164 numbers are
//! rewritten by the first matching `E2U+sip` record (order, then preference) and forwarded to a
//! test UDP peer, whose received request line shows the new Request-URI; numbers without records
//! get the script's 404; `is_from_user_e164` answers for the From user; a name server that never
//! answers holds only its own request (an OPTIONS meanwhile is answered).
#![allow(clippy::unwrap_used)]

#[path = "support/dns_server.rs"]
mod dns_server;
#[path = "support/net.rs"]
mod net;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use dns_server::{DnsServer, Zone};
use net::*;

fn script(peer: u16) -> String {
    format!(
        r#"
loadmodule "sl.so"
loadmodule "enum.so"
modparam("enum", "domain_suffix", "e164.test.")
route {{
	if (method == "OPTIONS") {{
		sl_send_reply("200", "Alive");
		break;
	}};
	if (method == "MESSAGE") {{
		if (is_from_user_e164()) {{
			sl_send_reply("200", "From E164");
		}} else {{
			sl_send_reply("403", "From Not E164");
		}};
		break;
	}};
	if (uri =~ "^sip:\+12@") {{
		if (!enum_query("other.test")) {{
			sl_send_reply("404", "No ENUM");
			break;
		}};
	}} else {{
		if (!enum_query()) {{
			sl_send_reply("404", "No ENUM");
			break;
		}};
	}};
	forward("127.0.0.1", {peer});
}}
"#
    )
}

fn zone() -> Zone {
    Zone::new()
        // +4412345: the lowest order has no matching regexp, the mailto record is another
        // service; the E2U+sip record of order 10 wins.
        .naptr_regexp(
            "5.4.3.2.1.4.4.e164.test",
            5,
            10,
            "u",
            "E2U+sip",
            "!^\\+9(.*)$!sip:wrong@nowhere.example!",
            60,
        )
        .naptr_regexp(
            "5.4.3.2.1.4.4.e164.test",
            10,
            5,
            "u",
            "E2U+mailto",
            "!^.*$!mailto:info@uk.example!",
            60,
        )
        .naptr_regexp(
            "5.4.3.2.1.4.4.e164.test",
            10,
            20,
            "u",
            "E2U+sip",
            "!^.*$!sip:fallback@uk.example!",
            60,
        )
        .naptr_regexp(
            "5.4.3.2.1.4.4.e164.test",
            10,
            10,
            "u",
            "E2U+sip",
            "!^\\+44(.*)$!sip:\\1@uk.example!",
            60,
        )
        .naptr_regexp(
            "2.1.other.test",
            10,
            10,
            "u",
            "E2U+sip",
            "!^.*$!sip:one@other.example!",
            60,
        )
        // A record whose result is not a SIP URI.
        .naptr_regexp(
            "7.7.7.e164.test",
            10,
            10,
            "u",
            "E2U+sip",
            "!^.*$!mailto:x@y!",
            60,
        )
        .silent("9.9.9.e164.test")
}

struct Setup {
    ser: Ser,
    _dns: DnsServer,
    addr: SocketAddr,
    peer: UdpSocket,
    client: UdpSocket,
}

fn setup() -> Setup {
    let dns = DnsServer::start(zone());
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = free_port("127.0.0.1");
    let ns = dns.addr().to_string();
    let ser = Ser::start_with_env(
        &script(peer.local_addr().unwrap().port()),
        &["-l", "127.0.0.1", "-p", &port.to_string()],
        &[("SER_NAMESERVER", &ns)],
    );
    Setup {
        ser,
        _dns: dns,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        peer,
        client: udp_client("127.0.0.1"),
    }
}

fn received(peer: &UdpSocket, wait: Duration) -> Option<String> {
    let mut buf = vec![0u8; 65536];
    let end = Instant::now() + wait;
    while Instant::now() < end {
        if let Ok((n, _)) = peer.recv_from(&mut buf) {
            return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    None
}

fn invite(s: &Setup, user: &str, call: &str) -> String {
    let me = s.client.local_addr().unwrap().to_string();
    request("INVITE", &format!("sip:{user}@127.0.0.1"), &me, "UDP", call)
}

#[test]
fn an_e164_number_is_routed_by_its_best_naptr_record() {
    let s = setup();
    s.client
        .send_to(invite(&s, "+4412345", "enum-1").as_bytes(), s.addr)
        .unwrap();
    let got = received(&s.peer, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the INVITE reaches the peer\n{}", s.ser.log_text()));
    assert!(
        got.starts_with("INVITE sip:12345@uk.example SIP/2.0\r\n"),
        "{got}"
    );
    // The suffix given to enum_query replaces domain_suffix.
    s.client
        .send_to(invite(&s, "+12", "enum-2").as_bytes(), s.addr)
        .unwrap();
    let got = received(&s.peer, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the INVITE reaches the peer\n{}", s.ser.log_text()));
    assert!(
        got.starts_with("INVITE sip:one@other.example SIP/2.0\r\n"),
        "{got}"
    );
}

#[test]
fn numbers_without_a_usable_record_are_not_rewritten() {
    let s = setup();
    for (user, call) in [
        ("+4900", "enum-3"),   // NXDOMAIN
        ("+777", "enum-4"),    // a record, but not a SIP URI
        ("alice", "enum-5"),   // not E.164
        ("4412345", "enum-6"), // no '+'
    ] {
        let r = udp_exchange(&s.client, s.addr, invite(&s, user, call).as_bytes())
            .unwrap_or_else(|| panic!("a reply for {user}\n{}", s.ser.log_text()));
        let r = if status_line(&r).starts_with("SIP/2.0 100") {
            let mut buf = vec![0u8; 65536];
            let (n, _) = s.client.recv_from(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        } else {
            r
        };
        assert_eq!(status_line(&r), "SIP/2.0 404 No ENUM", "{user}");
    }
    assert!(received(&s.peer, Duration::from_millis(300)).is_none());
}

#[test]
fn is_from_user_e164_looks_at_the_from_user() {
    let s = setup();
    let me = s.client.local_addr().unwrap();
    for (from, want) in [
        ("+4412345", "SIP/2.0 200 From E164"),
        ("alice", "SIP/2.0 403 From Not E164"),
        ("+1", "SIP/2.0 403 From Not E164"),
    ] {
        let req = format!(
            "MESSAGE sip:bob@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK-e164{from};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{from}@example.com>;tag=f1\r\n\
             To: <sip:bob@example.com>\r\n\
             Call-ID: e164-{from}\r\n\
             CSeq: 1 MESSAGE\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let r = udp_exchange(&s.client, s.addr, req.as_bytes()).expect("a reply");
        assert_eq!(status_line(&r), want, "{from}");
    }
}

#[test]
fn a_silent_name_server_holds_only_its_own_request() {
    let s = setup();
    s.client
        .send_to(invite(&s, "+999", "enum-7").as_bytes(), s.addr)
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let me = s.client.local_addr().unwrap().to_string();
    let started = Instant::now();
    let r = udp_exchange(
        &s.client,
        s.addr,
        request("OPTIONS", "sip:127.0.0.1", &me, "UDP", "enum-8").as_bytes(),
    )
    .expect("OPTIONS answered while the ENUM lookup waits");
    assert_eq!(status_line(&r), "SIP/2.0 200 Alive");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(received(&s.peer, Duration::from_millis(300)).is_none());
}
