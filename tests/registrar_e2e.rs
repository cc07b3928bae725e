//! The registrar end to end: the real `ser` binary over loopback, REGISTERs from hand-made
//! requests, sipsak (`-U`) and SIPp, then requests to the AOR checked where a user sees them: the
//! forwarded request arriving at a UDP socket standing for the phone, and the Contacts of a 302
//! (ser's 3xx lists the request URI and the destination set, i.e. the fork set in q order).
#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "support/skip.rs"]
mod skip;
#[path = "support/net.rs"]
mod net;
#[path = "support/seed.rs"]
mod seed;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use net::*;

/// A free port below 10000 (sipsak 0.9.8 mangles five-digit ports in its Request-URI).
fn free_port_4() -> u16 {
    let start = 6000 + (std::process::id() % 3000) as u16;
    for p in start..start + 400 {
        if UdpSocket::bind(("127.0.0.1", p)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
        {
            return p;
        }
    }
    panic!("no free 4-digit port");
}

fn register(port: u16, user: &str, call_id: &str, cseq: u32, extra: &str) -> String {
    format!(
        "REGISTER sip:127.0.0.1:{port} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-{call_id}-{cseq};rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:{user}@127.0.0.1>\r\n\
From: <sip:{user}@127.0.0.1>;tag=r1\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} REGISTER\r\n\
{extra}\
Content-Length: 0\r\n\r\n"
    )
}

fn contacts(reply: &str) -> Vec<String> {
    reply
        .lines()
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            (n.eq_ignore_ascii_case("contact") || n == "m").then(|| v.trim().to_string())
        })
        .collect()
}

/// Save for REGISTER; otherwise lookup, then either a 302 (INVITE to `moved-*`… no: Request-URI
/// user prefix decides) or a stateless forward to the contact.
const LOOKUP_CFG: &str = r#"
loadmodule "sl.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
modparam("registrar", "min_expires", 0)
route {
	if (method == "REGISTER") {
		save("location");
		break;
	};
	if (method == "OPTIONS") {
		if (!lookup("location")) {
			sl_send_reply("404", "Not Found");
			break;
		};
		sl_send_reply("302", "Moved Temporarily");
		break;
	};
	if (!lookup("location")) {
		sl_send_reply("404", "Not Found");
		break;
	};
	forward(uri:host, uri:port);
}
"#;

fn start(cfg: &str) -> (Ser, SocketAddr) {
    let port = free_port("127.0.0.1");
    let ser = Ser::start_with_cfg(cfg, &["-l", "127.0.0.1", "-p", &port.to_string()]);
    (ser, SocketAddr::from(([127, 0, 0, 1], port)))
}

#[test]
fn default_ser_cfg_registers_and_lists_bindings() {
    let cfg = seed::example_text("registrar.cfg");
    let (_ser, addr) = start(&cfg);
    let c = udp_client("127.0.0.1");
    let r = udp_exchange(
        &c,
        addr,
        register(
            addr.port(),
            "alice",
            "d1",
            1,
            "Contact: <sip:alice@127.0.0.1:5999>;expires=600\r\n",
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
    let cs = contacts(&r);
    assert_eq!(cs.len(), 1, "{r}");
    assert!(
        cs[0].starts_with("<sip:alice@127.0.0.1:5999>;q=0;expires="),
        "{r}"
    );
    assert!(
        header(&r, "Date").is_some_and(|d| d.ends_with("GMT")),
        "{r}"
    );
    // Too brief for the default min_expires (60): 423 with Min-Expires.
    let r = udp_exchange(
        &c,
        addr,
        register(
            addr.port(),
            "alice",
            "d1",
            2,
            "Contact: <sip:alice@127.0.0.1:5998>;expires=15\r\n",
        )
        .as_bytes(),
    )
    .unwrap();
    assert!(status_line(&r).starts_with("SIP/2.0 423"), "{r}");
    assert_eq!(header(&r, "Min-Expires"), Some("60"), "{r}");
    // Not registered: 404 from the script.
    let inv = request(
        "INVITE",
        &format!("sip:nobody@127.0.0.1:{}", addr.port()),
        "127.0.0.1:5999",
        "UDP",
        "i1@x",
    );
    let r = udp_exchange(&c, addr, inv.as_bytes()).unwrap();
    assert!(status_line(&r).starts_with("SIP/2.0 404"), "{r}");
}

#[test]
fn lookup_forwards_to_the_registered_contact() {
    let (_ser, addr) = start(LOOKUP_CFG);
    let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
    phone
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let pport = phone.local_addr().unwrap().port();
    let c = udp_client("127.0.0.1");
    let r = udp_exchange(
        &c,
        addr,
        register(
            addr.port(),
            "bob",
            "b1",
            1,
            &format!("Contact: <sip:bob@127.0.0.1:{pport}>\r\n"),
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
    let inv = request(
        "INVITE",
        &format!("sip:bob@127.0.0.1:{}", addr.port()),
        "127.0.0.1:5999",
        "UDP",
        "i2@x",
    );
    c.send_to(inv.as_bytes(), addr).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = phone
        .recv_from(&mut buf)
        .expect("the INVITE reaches the phone");
    let got = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert_eq!(
        status_line(&got),
        format!("INVITE sip:bob@127.0.0.1:{pport} SIP/2.0"),
        "{got}"
    );
}

#[test]
fn two_contacts_fork_in_q_order_and_star_removes_all() {
    let (_ser, addr) = start(LOOKUP_CFG);
    let c = udp_client("127.0.0.1");
    let reg = register(
        addr.port(),
        "carol",
        "c1",
        1,
        "Contact: <sip:carol@127.0.0.1:7001>;q=0.2\r\nContact: <sip:carol@127.0.0.1:7002>;q=0.8\r\n",
    );
    let r = udp_exchange(&c, addr, reg.as_bytes()).unwrap();
    assert_eq!(contacts(&r).len(), 2, "{r}");
    let opt = request(
        "OPTIONS",
        &format!("sip:carol@127.0.0.1:{}", addr.port()),
        "127.0.0.1:5999",
        "UDP",
        "o1@x",
    );
    let r = udp_exchange(&c, addr, opt.as_bytes()).unwrap();
    assert!(status_line(&r).starts_with("SIP/2.0 302"), "{r}");
    let cs = contacts(&r).join(", ");
    let hi = cs.find("127.0.0.1:7002").unwrap();
    let lo = cs.find("127.0.0.1:7001").unwrap();
    assert!(hi < lo, "higher q first: {cs}");
    // Contact: * with Expires: 0 removes both.
    let star = register(
        addr.port(),
        "carol",
        "c2",
        1,
        "Contact: *\r\nExpires: 0\r\n",
    );
    let r = udp_exchange(&c, addr, star.as_bytes()).unwrap();
    assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
    assert!(contacts(&r).is_empty(), "{r}");
    let opt = request(
        "OPTIONS",
        &format!("sip:carol@127.0.0.1:{}", addr.port()),
        "127.0.0.1:5999",
        "UDP",
        "o2@x",
    );
    let r = udp_exchange(&c, addr, opt.as_bytes()).unwrap();
    assert!(status_line(&r).starts_with("SIP/2.0 404"), "{r}");
}

#[test]
fn expiry_removes_a_binding() {
    let (_ser, addr) = start(LOOKUP_CFG);
    let c = udp_client("127.0.0.1");
    let reg = register(
        addr.port(),
        "dave",
        "e1",
        1,
        // 2 s, not 1: expiry is kept in whole seconds, so a 1 s binding made late in a second
        // could already be gone by the first OPTIONS on a loaded machine.
        "Contact: <sip:dave@127.0.0.1:7003>;expires=2\r\n",
    );
    let r = udp_exchange(&c, addr, reg.as_bytes()).unwrap();
    assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
    let opt = |id: &str| {
        request(
            "OPTIONS",
            &format!("sip:dave@127.0.0.1:{}", addr.port()),
            "127.0.0.1:5999",
            "UDP",
            id,
        )
    };
    let r = udp_exchange(&c, addr, opt("x1@x").as_bytes()).unwrap();
    assert!(status_line(&r).starts_with("SIP/2.0 302"), "{r}");
    std::thread::sleep(Duration::from_millis(3100));
    let r = udp_exchange(&c, addr, opt("x2@x").as_bytes()).unwrap();
    assert!(status_line(&r).starts_with("SIP/2.0 404"), "expired: {r}");
}

#[test]
fn sipsak_usrloc_mode_against_the_default_config() {
    if !have("sipsak") {
        skip!("sipsak is not installed (apt-get install sipsak)");
    }
    let cfg = seed::example_text("registrar.cfg");
    let port = free_port_4();
    let _ser = Ser::start_with_cfg(&cfg, &["-l", "127.0.0.1", "-p", &port.to_string()]);
    // -U registers, checks the binding in the 200, then removes it; -x: an expiry above min_expires.
    let out = Command::new("timeout")
        .args(["30", "sipsak", "-U", "-x", "300", "-vv", "-s"])
        .arg(format!("sip:eve@127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const SIPP_REGISTER: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register">
  <send retrans="500">
    <![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:user[call_number]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
To: <sip:user[call_number]@[remote_ip]>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:user[call_number]@[local_ip]:[local_port]>
Expires: 300
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
  <recv response="200" />
  <send retrans="500">
    <![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:user[call_number]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
To: <sip:user[call_number]@[remote_ip]>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:user[call_number]@[local_ip]:[local_port]>;expires=0
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
  <recv response="200" />
</scenario>
"#;

#[test]
fn sipp_register_scenario_against_the_default_config() {
    if !have("sipp") {
        skip!("sipp is not installed (apt-get install sip-tester)");
    }
    let cfg = seed::example_text("registrar.cfg");
    let (_ser, addr) = start(&cfg);
    let scen = std::env::temp_dir().join(format!("ser-reg-{}.xml", std::process::id()));
    std::fs::write(&scen, SIPP_REGISTER).unwrap();
    let cport = free_port("127.0.0.1");
    let out = Command::new("timeout")
        .args(["60", "sipp"])
        .arg(addr.to_string())
        .arg("-sf")
        .arg(&scen)
        .args(["-i", "127.0.0.1", "-p", &cport.to_string()])
        .args(["-m", "200", "-r", "100", "-timeout", "40s", "-nostdin"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&scen);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .map(|l| l.split('|').nth(2).unwrap_or("").trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(out.status.code(), Some(0), "sipp failed:\n{text}");
    assert_eq!(line("Successful call"), "200", "{text}");
    assert_eq!(line("Failed call"), "0", "{text}");
}
