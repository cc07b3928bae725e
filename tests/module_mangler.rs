//! Module `mangler` end to end: a script that mangles an INVITE's SDP and Contact and decodes an
//! encoded Request-URI and Contact, the real `ser` forwarding to a test UDP peer over loopback,
//! and the bytes the peer receives (rewritten SDP with a right Content-Length, encoded/decoded
//! URIs).
#![allow(clippy::unwrap_used)]

#[path = "support/net.rs"]
mod net;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use net::*;

fn script(peer: u16) -> String {
    format!(
        r#"
loadmodule "sl.so"
loadmodule "mangler.so"
modparam("mangler", "contact_flds_separator", "*")
route {{
	if (method == "INVITE") {{
		sdp_mangle_ip("10.0.0.0/255.0.0.0", "192.0.2.99");
		sdp_mangle_port("+1000");
		if (!encode_contact("enc", "203.0.113.5")) {{
			sl_send_reply("500", "No Encoding");
			break;
		}};
		forward("127.0.0.1", {peer});
		break;
	}};
	if (method == "MESSAGE") {{
		sdp_mangle_port("4000");
		forward("127.0.0.1", {peer});
		break;
	}};
	if (method == "OPTIONS") {{
		if (!decode_contact()) {{
			sl_send_reply("400", "Not Encoded");
			break;
		}};
		if (!decode_contact_header()) {{
			sl_send_reply("400", "Contact Not Encoded");
			break;
		}};
		forward("127.0.0.1", {peer});
		break;
	}};
}}
"#
    )
}

struct Setup {
    ser: Ser,
    addr: SocketAddr,
    peer: UdpSocket,
    client: UdpSocket,
}

fn setup() -> Setup {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = free_port("127.0.0.1");
    let ser = Ser::start_with_cfg(
        &script(peer.local_addr().unwrap().port()),
        &["-l", "127.0.0.1", "-p", &port.to_string()],
    );
    Setup {
        ser,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        peer,
        client: udp_client("127.0.0.1"),
    }
}

fn with_body(
    method: &str,
    ruri: &str,
    via: SocketAddr,
    contact: &str,
    call: &str,
    body: &str,
) -> String {
    format!(
        "{method} {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {via};branch=z9hG4bK-{call};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: {call}\r\n\
         CSeq: 1 {method}\r\n\
         Contact: {contact}\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The next request the peer receives (≤ 3 s).
fn received(peer: &UdpSocket) -> Option<String> {
    let mut buf = vec![0u8; 65536];
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        if let Ok((n, _)) = peer.recv_from(&mut buf) {
            return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    None
}

fn body_of(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

const SDP: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 10.0.0.7\r\n\
s=-\r\n\
c=IN IP4 10.0.0.7\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0\r\n\
m=video 51372 RTP/AVP 31\r\n\
c=IN IP4 172.16.0.1\r\n\
m=audio 65000 RTP/AVP 8\r\n";

#[test]
fn invite_reaches_the_peer_with_mangled_sdp_and_an_encoded_contact() {
    let s = setup();
    let me = s.client.local_addr().unwrap();
    let inv = with_body(
        "INVITE",
        "sip:bob@127.0.0.1",
        me,
        "\"Alice\" <sip:alice@10.0.0.7:5060;transport=udp>;expires=60",
        "mangle-1",
        SDP,
    );
    s.client.send_to(inv.as_bytes(), s.addr).unwrap();
    let got = received(&s.peer)
        .unwrap_or_else(|| panic!("the INVITE reaches the peer\n{}", s.ser.log_text()));
    assert!(
        got.starts_with("INVITE sip:bob@127.0.0.1 SIP/2.0\r\n"),
        "{got}"
    );
    let body = body_of(&got);
    assert_eq!(
        body,
        "v=0\r\n\
         o=alice 2890844526 2890844526 IN IP4 10.0.0.7\r\n\
         s=-\r\n\
         c=IN IP4 192.0.2.99\r\n\
         t=0 0\r\n\
         m=audio 50170 RTP/AVP 0\r\n\
         m=video 52372 RTP/AVP 31\r\n\
         c=IN IP4 172.16.0.1\r\n\
         m=audio 65000 RTP/AVP 8\r\n",
        "only addresses in 10/8 change; a port that would pass 65535 stays"
    );
    assert_eq!(
        header(&got, "Content-Length").map(str::trim),
        Some(body.len().to_string().as_str()),
        "{got}"
    );
    assert_eq!(
        header(&got, "Contact"),
        Some("\"Alice\" <sip:enc*alice**10.0.0.7*5060*udp@203.0.113.5>;expires=60"),
        "{got}"
    );
}

#[test]
fn a_fixed_port_replaces_every_media_port() {
    let s = setup();
    let me = s.client.local_addr().unwrap();
    let sdp = "v=0\nc=IN IP4 10.0.0.7\nm=audio 49170/2 RTP/AVP 0\n";
    let req = with_body(
        "MESSAGE",
        "sip:bob@127.0.0.1",
        me,
        "<sip:a@10.0.0.7>",
        "mangle-2",
        sdp,
    );
    s.client.send_to(req.as_bytes(), s.addr).unwrap();
    let got = received(&s.peer)
        .unwrap_or_else(|| panic!("the MESSAGE reaches the peer\n{}", s.ser.log_text()));
    let body = body_of(&got);
    assert_eq!(body, "v=0\nc=IN IP4 10.0.0.7\nm=audio 4000/2 RTP/AVP 0\n");
    assert_eq!(
        header(&got, "Content-Length").map(str::trim),
        Some(body.len().to_string().as_str())
    );
}

#[test]
fn encoded_request_uri_and_contact_are_decoded_before_forwarding() {
    let s = setup();
    let me = s.client.local_addr().unwrap();
    let req = with_body(
        "OPTIONS",
        "sip:enc*bob*secret*10.0.0.8*5062*tcp@203.0.113.5;lr",
        me,
        "<sip:enc*carol**10.0.0.9**@203.0.113.5>;q=0.5",
        "mangle-3",
        "",
    );
    s.client.send_to(req.as_bytes(), s.addr).unwrap();
    let got = received(&s.peer)
        .unwrap_or_else(|| panic!("the OPTIONS reaches the peer\n{}", s.ser.log_text()));
    assert!(
        got.starts_with("OPTIONS sip:bob:secret@10.0.0.8:5062;transport=tcp;lr SIP/2.0\r\n"),
        "{got}"
    );
    assert_eq!(header(&got, "Contact"), Some("<sip:carol@10.0.0.9>;q=0.5"));

    // A Request-URI that is not encoded: the script's 400, nothing forwarded.
    let req = with_body(
        "OPTIONS",
        "sip:bob@127.0.0.1",
        me,
        "<sip:a@10.0.0.7>",
        "mangle-4",
        "",
    );
    let reply = udp_exchange(&s.client, s.addr, req.as_bytes()).expect("a reply");
    assert_eq!(status_line(&reply), "SIP/2.0 400 Not Encoded");
    assert!(received(&s.peer).is_none());
}
