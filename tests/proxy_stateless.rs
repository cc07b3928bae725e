//! ser as a stateless proxy, end to end over loopback: the script's `sl_send_reply`, stateless
//! forwarding to a UAS and the reply coming back, §16.11 branches, redirect.cfg's 3xx, the §16.3
//! answers (400/505/416/420/483/501), TCP↔UDP, IPv6, and config reload on SIGHUP.
#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "support/skip.rs"]
mod skip;
#[path = "support/net.rs"]
mod net;

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use net::*;

const PROXY_CFG: &str = r#"
loadmodule "sl.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		break;
	};
	if (method == "OPTIONS" && uri == myself) {
		append_to_reply("Accept-Language: en\r\n");
		sl_send_reply("200", "OK");
		break;
	};
	if (uri =~ "^sip:tcp@") {
		forward_tcp(127.0.0.1, UASPORT);
		break;
	};
	forward(127.0.0.1, UASPORT);
}
"#;

struct Setup {
    ser: Ser,
    addr: SocketAddr,
    uas: UdpSocket,
    client: UdpSocket,
}

fn setup_with(cfg: &str) -> Setup {
    let uas = UdpSocket::bind("127.0.0.1:0").unwrap();
    uas.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let uas_port = uas.local_addr().unwrap().port();
    let port = free_port("127.0.0.1");
    let cfg = cfg.replace("UASPORT", &uas_port.to_string());
    let p = port.to_string();
    let ser = Ser::start_with_cfg(&cfg, &["-l", "127.0.0.1", "-p", &p]);
    Setup {
        ser,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        uas,
        client: udp_client("127.0.0.1"),
    }
}

fn invite(s: &Setup, ruri: &str, call_id: &str) -> String {
    let me = s.client.local_addr().unwrap();
    request("INVITE", ruri, &me.to_string(), "UDP", call_id)
}

fn recv(sock: &UdpSocket) -> Option<(String, SocketAddr)> {
    let mut buf = vec![0u8; 65536];
    let (n, from) = sock.recv_from(&mut buf).ok()?;
    Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from))
}

fn vias(msg: &str) -> Vec<&str> {
    msg.lines()
        .filter_map(|l| l.strip_prefix("Via: "))
        .map(str::trim)
        .collect()
}

/// The UAS's reply to a request: its Vias copied, a To-tag.
fn uas_reply(req: &str, code: &str) -> String {
    let mut r = format!("SIP/2.0 {code}\r\n");
    for v in vias(req) {
        r.push_str(&format!("Via: {v}\r\n"));
    }
    for h in ["From", "Call-ID", "CSeq"] {
        r.push_str(&format!("{h}: {}\r\n", header(req, h).unwrap()));
    }
    r.push_str(&format!(
        "To: {};tag=uas1\r\nContent-Length: 0\r\n\r\n",
        header(req, "To").unwrap()
    ));
    r
}

#[test]
fn options_answered_by_the_script() {
    let s = setup_with(PROXY_CFG);
    let me = s.client.local_addr().unwrap();
    let req = request(
        "OPTIONS",
        &format!("sip:{}", s.addr),
        &me.to_string(),
        "UDP",
        "o1@t",
    );
    let r = udp_exchange(&s.client, s.addr, req.as_bytes()).unwrap();
    assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
    assert!(header(&r, "To").unwrap().contains(";tag="));
    // append_to_reply's lines reach the reply.
    assert_eq!(header(&r, "Accept-Language"), Some("en"), "{r}");
    assert!(header(&r, "Server")
        .unwrap()
        .starts_with("Sip EXpress router"));
    let w = header(&r, "Warning").unwrap();
    assert!(
        w.starts_with(&format!("392 {} \"Noisy feedback tells: pid=", s.addr)),
        "{w}"
    );
    assert!(w.contains(&format!("req_src_port={}", me.port())), "{w}");
    // A retransmission gets the same To-tag (the UAC sees one reply).
    let r2 = udp_exchange(&s.client, s.addr, req.as_bytes()).unwrap();
    assert_eq!(header(&r, "To"), header(&r2, "To"));
}

#[test]
fn request_forwarded_and_reply_comes_back() {
    let s = setup_with(PROXY_CFG);
    let me = s.client.local_addr().unwrap();
    let req = invite(&s, "sip:bob@example.com", "f1@t");
    s.client.send_to(req.as_bytes(), s.addr).unwrap();
    let (fwd, from) = recv(&s.uas).expect("the UAS receives the INVITE");
    assert_eq!(from, s.addr, "sent from ser's listen socket");
    assert_eq!(status_line(&fwd), "INVITE sip:bob@example.com SIP/2.0");
    let v = vias(&fwd);
    assert_eq!(v.len(), 2, "{fwd}");
    assert!(
        v[0].starts_with(&format!("SIP/2.0/UDP {};branch=z9hG4bKsl", s.addr)),
        "{}",
        v[0]
    );
    assert_eq!(
        v[1],
        format!(
            "SIP/2.0/UDP {me};branch=z9hG4bK-f1.t;rport={};received=127.0.0.1",
            me.port()
        )
    );
    assert_eq!(header(&fwd, "Max-Forwards"), Some("69"));

    // §16.11: a retransmission is forwarded with the same branch.
    s.client.send_to(req.as_bytes(), s.addr).unwrap();
    let (again, _) = recv(&s.uas).unwrap();
    assert_eq!(vias(&again)[0], v[0]);

    // The UAS answers to ser; ser removes its Via and sends the reply to the caller (rport).
    s.uas
        .send_to(uas_reply(&fwd, "180 Ringing").as_bytes(), s.addr)
        .unwrap();
    let (reply, _) = recv(&s.client).expect("the caller receives the 180");
    assert_eq!(status_line(&reply), "SIP/2.0 180 Ringing");
    assert_eq!(vias(&reply), vec![v[1]]);
    assert_eq!(header(&reply, "To"), Some("<sip:bob@example.com>;tag=uas1"));
}

#[test]
fn rewritten_uri_is_forwarded() {
    let cfg = r#"
loadmodule "sl.so"
route {
	rewritehostport("127.0.0.1:UASPORT");
	prefix("00");
	forward(uri:host, uri:port);
}
"#;
    let s = setup_with(cfg);
    s.client
        .send_to(invite(&s, "sip:123@example.com", "rw@t").as_bytes(), s.addr)
        .unwrap();
    let (fwd, _) = recv(&s.uas).unwrap();
    let port = s.uas.local_addr().unwrap().port();
    assert_eq!(
        status_line(&fwd),
        format!("INVITE sip:00123@127.0.0.1:{port} SIP/2.0")
    );
}

#[test]
fn redirect_cfg_lists_the_destination_set() {
    let cfg = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/redirect.cfg"),
    )
    .unwrap();
    let s = setup_with(&cfg);
    let r = udp_exchange(
        &s.client,
        s.addr,
        invite(&s, "sip:x@example.com", "rd@t").as_bytes(),
    )
    .unwrap();
    assert_eq!(status_line(&r), "SIP/2.0 300 Redirect", "{r}");
    let contacts: Vec<&str> = r
        .lines()
        .filter_map(|l| l.strip_prefix("Contact: "))
        .collect();
    assert_eq!(
        contacts,
        vec!["<sip:parallel@iptel.org:9>", "<sip:redirect@iptel.org:9>"]
    );
    // REGISTER is okayed, as the script says.
    let me = s.client.local_addr().unwrap();
    let reg = request(
        "REGISTER",
        "sip:example.com",
        &me.to_string(),
        "UDP",
        "rg@t",
    );
    let r = udp_exchange(&s.client, s.addr, reg.as_bytes()).unwrap();
    assert_eq!(status_line(&r), "SIP/2.0 200 ok");
}

#[test]
fn rfc3261_16_3_answers() {
    let s = setup_with(PROXY_CFG);
    let me = s.client.local_addr().unwrap().to_string();
    let ask = |raw: String| {
        udp_exchange(&s.client, s.addr, raw.as_bytes()).map(|r| status_line(&r).to_string())
    };

    let base = request("INVITE", "sip:b@example.com", &me, "UDP", "c1@t");
    assert_eq!(
        ask(base.replace("SIP/2.0\r\n", "SIP/7.0\r\n")).unwrap(),
        "SIP/2.0 505 Version Not Supported"
    );
    assert_eq!(
        ask(base.replace(
            "sip:b@example.com",
            "nobodyKnowsThisScheme:totallyopaquecontent"
        ))
        .unwrap(),
        "SIP/2.0 416 Unsupported URI Scheme"
    );
    let with_pr = base.replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nProxy-Require: foo, bar\r\n",
    );
    let r = udp_exchange(&s.client, s.addr, with_pr.as_bytes()).unwrap();
    assert_eq!(status_line(&r), "SIP/2.0 420 Bad Extension");
    assert_eq!(header(&r, "Unsupported"), Some("foo, bar"));
    // Max-Forwards 0: the script's mf_process_maxfwd_header → 483.
    assert_eq!(
        ask(base.replace("Max-Forwards: 70", "Max-Forwards: 0")).unwrap(),
        "SIP/2.0 483 Too Many Hops"
    );
    assert_eq!(
        ask(base.replace("CSeq: 7 INVITE", "CSeq: 7 OPTIONS")).unwrap(),
        "SIP/2.0 400 Bad Request - CSeq Method Mismatch"
    );
    assert_eq!(
        ask(base.replace("INVITE sip", "NEWMETHOD sip")).unwrap(),
        "SIP/2.0 501 Not Implemented"
    );
    assert_eq!(
        ask(base.replace("Call-ID: c1@t\r\n", "")).unwrap(),
        "SIP/2.0 400 Bad Request - Missing Mandatory Header"
    );
}

#[test]
fn max_forwards_zero_without_maxfwd_module() {
    // RFC 3261 §16.3 item 3 holds even when the script does not check it.
    let s = setup_with("loadmodule \"sl.so\"\nroute { forward(127.0.0.1, UASPORT); }\n");
    let me = s.client.local_addr().unwrap().to_string();
    let req = request("INVITE", "sip:b@example.com", &me, "UDP", "mf@t")
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    let r = udp_exchange(&s.client, s.addr, req.as_bytes()).unwrap();
    assert_eq!(status_line(&r), "SIP/2.0 483 Too Many Hops");
}

#[test]
fn tcp_in_udp_out_and_back() {
    let s = setup_with(PROXY_CFG);
    let mut tcp = TcpStream::connect(s.addr).unwrap();
    let me = tcp.local_addr().unwrap();
    let req = request(
        "INVITE",
        "sip:bob@example.com",
        &me.to_string(),
        "TCP",
        "tu@t",
    );
    tcp.write_all(req.as_bytes()).unwrap();
    let (fwd, _) = recv(&s.uas).expect("forwarded over UDP");
    assert!(vias(&fwd)[0].starts_with("SIP/2.0/UDP "), "{fwd}");
    assert!(vias(&fwd)[1].starts_with("SIP/2.0/TCP "), "{fwd}");
    s.uas
        .send_to(uas_reply(&fwd, "200 OK").as_bytes(), s.addr)
        .unwrap();
    let replies = tcp_read_replies(&mut tcp, 1);
    assert_eq!(status_line(&replies[0]), "SIP/2.0 200 OK", "{replies:?}");
}

#[test]
fn udp_in_tcp_out_and_back() {
    let uas = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uas_port = uas.local_addr().unwrap().port();
    let port = free_port("127.0.0.1");
    let cfg = PROXY_CFG.replace("UASPORT", &uas_port.to_string());
    let p = port.to_string();
    let _ser = Ser::start_with_cfg(&cfg, &["-l", "127.0.0.1", "-p", &p]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let client = udp_client("127.0.0.1");
    let me = client.local_addr().unwrap();
    let req = request(
        "INVITE",
        "sip:tcp@example.com",
        &me.to_string(),
        "UDP",
        "ut@t",
    );
    client.send_to(req.as_bytes(), addr).unwrap();
    uas.set_nonblocking(false).unwrap();
    let (mut conn, _) = uas.accept().unwrap();
    let got = tcp_read_replies(&mut conn, 1);
    let fwd = got.first().expect("INVITE over TCP");
    assert!(
        vias(fwd)[0].starts_with(&format!("SIP/2.0/TCP 127.0.0.1:{port};branch=")),
        "{fwd}"
    );
    // The reply goes back over the same connection, then out over UDP.
    conn.write_all(uas_reply(fwd, "486 Busy Here").as_bytes())
        .unwrap();
    let (reply, _) = recv(&client).expect("reply over UDP");
    assert_eq!(status_line(&reply), "SIP/2.0 486 Busy Here");
}

#[test]
fn ipv6_forwarding() {
    let Ok(uas) = UdpSocket::bind("[::1]:0") else {
        skip!(unavailable: "this machine has IPv6 switched off (no ::1)", "no IPv6 loopback");
    };
    uas.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let uas_port = uas.local_addr().unwrap().port();
    let port = free_port("::1");
    let cfg = "loadmodule \"sl.so\"\nroute { forward([::1], UASPORT); }\n"
        .replace("UASPORT", &uas_port.to_string());
    let p = port.to_string();
    let _ser = Ser::start_with_cfg(&cfg, &["-l", "[::1]", "-p", &p]);
    let addr: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let client = udp_client("::1");
    let me = client.local_addr().unwrap();
    let req = request(
        "OPTIONS",
        "sip:bob@[2001:db8::1]",
        &format!("[::1]:{}", me.port()),
        "UDP",
        "v6@t",
    );
    client.send_to(req.as_bytes(), addr).unwrap();
    let (fwd, _) = recv(&uas).expect("forwarded over IPv6");
    assert!(
        vias(&fwd)[0].starts_with(&format!("SIP/2.0/UDP [::1]:{port};branch=")),
        "{fwd}"
    );
    uas.send_to(uas_reply(&fwd, "200 OK").as_bytes(), addr)
        .unwrap();
    let (reply, _) = recv(&client).unwrap();
    assert_eq!(status_line(&reply), "SIP/2.0 200 OK");
}

#[test]
fn reload_on_sighup() {
    let cfg1 = "loadmodule \"sl.so\"\nroute { sl_send_reply(\"200\", \"first\"); }\n";
    let mut s = setup_with(cfg1);
    let me = s.client.local_addr().unwrap().to_string();
    let ask = |call: &str| {
        let req = request("OPTIONS", "sip:x@example.com", &me, "UDP", call);
        status_line(&udp_exchange(&s.client, s.addr, req.as_bytes()).unwrap()).to_string()
    };
    assert_eq!(ask("r1@t"), "SIP/2.0 200 first");

    // A broken config: the error is logged, the old program keeps running.
    std::fs::write(&s.ser.cfg, "route { sl_send_reply(\"200\", \"broken\" }\n").unwrap();
    let pid = s.ser.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(
        s.ser.wait_log("reload of", Duration::from_secs(5)),
        "{}",
        s.ser.log_text()
    );
    assert_eq!(ask("r2@t"), "SIP/2.0 200 first");

    // A good one: new messages use it. Its `debug=1` is raised by the command line's `-dd` (the
    // test harness's) after the reload too, so log(3, …) still prints.
    std::fs::write(
        &s.ser.cfg,
        "debug=1\nloadmodule \"sl.so\"\nroute { log(3, \"reloaded-script-logs\\n\"); sl_send_reply(\"200\", \"second\"); }\n",
    )
    .unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(
        s.ser
            .wait_log("configuration reloaded", Duration::from_secs(5)),
        "{}",
        s.ser.log_text()
    );
    assert_eq!(ask("r3@t"), "SIP/2.0 200 second");
    assert!(
        s.ser
            .wait_log("reloaded-script-logs", Duration::from_secs(2)),
        "{}",
        s.ser.log_text()
    );
    assert!(s
        .ser
        .terminate(Duration::from_secs(5))
        .is_some_and(|st| st.success()));
}

#[path = "support/dns_server.rs"]
mod dns_server;

#[test]
fn forward_by_rfc3263_through_the_controlplane_resolver() {
    use std::net::Ipv4Addr;
    let uas = UdpSocket::bind("127.0.0.1:0").unwrap();
    uas.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let uas_port = uas.local_addr().unwrap().port();
    // NAPTR → SRV → A, as a carrier's domain is set up.
    let zone = dns_server::Zone::new()
        .naptr(
            "biloxi.test",
            10,
            10,
            "s",
            "SIP+D2U",
            "_sip._udp.biloxi.test",
            60,
        )
        .srv(
            "_sip._udp.biloxi.test",
            10,
            10,
            uas_port,
            "pxy.biloxi.test",
            60,
        )
        .a("pxy.biloxi.test", Ipv4Addr::LOCALHOST, 60);
    let dns = dns_server::DnsServer::start(zone);
    let port = free_port("127.0.0.1");
    let p = port.to_string();
    let ns = dns.addr().to_string();
    let cfg = "loadmodule \"sl.so\"\nroute { if (!forward(uri:host, uri:port)) { sl_reply_error(); }; }\n";
    let _ser = Ser::start_with_env(
        cfg,
        &["-l", "127.0.0.1", "-p", &p],
        &[("SER_NAMESERVER", &ns)],
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let client = udp_client("127.0.0.1");
    let me = client.local_addr().unwrap();

    let req = request(
        "INVITE",
        "sip:bob@biloxi.test",
        &me.to_string(),
        "UDP",
        "dns1@t",
    );
    client.send_to(req.as_bytes(), addr).unwrap();
    let (fwd, _) = recv(&uas)
        .unwrap_or_else(|| panic!("not forwarded to the SRV target; log:\n{}", _ser.log_text()));
    assert_eq!(status_line(&fwd), "INVITE sip:bob@biloxi.test SIP/2.0");
    let queries = dns.queries();
    // The second request is served from the cache: no new query.
    let req = request(
        "INVITE",
        "sip:bob@biloxi.test",
        &me.to_string(),
        "UDP",
        "dns2@t",
    );
    client.send_to(req.as_bytes(), addr).unwrap();
    assert!(recv(&uas).is_some());
    assert_eq!(dns.queries(), queries, "answer taken from the DNS cache");

    // A name that does not exist: the forward fails (false), sl_reply_error answers with the
    // error's status, nothing stalls.
    let req = request(
        "INVITE",
        "sip:bob@nowhere.test",
        &me.to_string(),
        "UDP",
        "dns3@t",
    );
    let r = udp_exchange(&client, addr, req.as_bytes()).unwrap();
    assert_eq!(status_line(&r), "SIP/2.0 478 Unresolvable destination");
}

/// `dns=yes` / `rev_dns=yes` (and `-r` / `-R`): a Via whose sent-by name stands for the source
/// address gets no `received` — once the background lookup has filled the cache.
#[test]
fn dns_and_rev_dns_decide_received() {
    use std::net::Ipv4Addr;
    for (option, via_name) in [
        ("dns=yes", "client.biloxi.test"),
        ("rev_dns=yes", "localhost"),
    ] {
        let uas = UdpSocket::bind("127.0.0.1:0").unwrap();
        uas.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let zone = dns_server::Zone::new().a("client.biloxi.test", Ipv4Addr::LOCALHOST, 60);
        // (The resolver answers 127.0.0.1's PTR itself: "localhost".)
        let dns = dns_server::DnsServer::start(zone);
        let port = free_port("127.0.0.1");
        let p = port.to_string();
        let ns = dns.addr().to_string();
        let cfg = format!(
            "{option}\nloadmodule \"sl.so\"\nroute {{ forward(127.0.0.1, {}); }}\n",
            uas.local_addr().unwrap().port()
        );
        let _ser = Ser::start_with_env(
            &cfg,
            &["-l", "127.0.0.1", "-p", &p],
            &[("SER_NAMESERVER", &ns)],
        );
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let client = udp_client("127.0.0.1");
        let via = format!("{via_name}:{}", client.local_addr().unwrap().port());
        let send = |call: &str| {
            let req =
                request("OPTIONS", "sip:bob@example.com", &via, "UDP", call).replace(";rport", "");
            client.send_to(req.as_bytes(), addr).unwrap();
            recv(&uas).expect("forwarded").0
        };
        let first = send("d1@t");
        assert!(
            vias(&first)[1].ends_with(";received=127.0.0.1"),
            "{option}: {first}"
        );
        // The background lookup answers within a moment; then the name counts as the source.
        let end = std::time::Instant::now() + Duration::from_secs(5);
        let mut n = 0;
        loop {
            n += 1;
            let fwd = send(&format!("d2-{n}@t"));
            if !vias(&fwd)[1].contains("received=") {
                break;
            }
            assert!(
                std::time::Instant::now() < end,
                "{option}: received still added: {fwd}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `src_ip == name` and `src_ip == "name"` are answered from the shared DNS / reverse-DNS caches:
/// the first message may wait for a lookup, later ones are answered without a DNS query each.
#[test]
fn src_ip_name_tests_answered_from_the_dns_cache() {
    use std::net::Ipv4Addr;
    let zone = dns_server::Zone::new()
        .a("client.biloxi.test", Ipv4Addr::LOCALHOST, 60)
        .a("other.biloxi.test", Ipv4Addr::new(192, 0, 2, 7), 60);
    let dns = dns_server::DnsServer::start(zone);
    let port = free_port("127.0.0.1");
    let p = port.to_string();
    let ns = dns.addr().to_string();
    // debug=4: the shard logs each suspension ("script suspended on job").
    let cfg = "debug=4\nloadmodule \"sl.so\"\nroute {\n\
        if (src_ip==other.biloxi.test) { sl_send_reply(\"403\", \"Other\"); break; };\n\
        if (!(src_ip==\"localhost\")) { sl_send_reply(\"403\", \"Not localhost\"); break; };\n\
        if (src_ip==client.biloxi.test) { sl_send_reply(\"200\", \"Client\"); break; };\n\
        sl_send_reply(\"404\", \"No\");\n}\n";
    let ser = Ser::start_with_env(
        cfg,
        &["-l", "127.0.0.1", "-p", &p],
        &[("SER_NAMESERVER", &ns)],
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let client = udp_client("127.0.0.1");
    let via = client.local_addr().unwrap().to_string();
    let send = |call: &str| {
        let req = request("OPTIONS", "sip:bob@example.com", &via, "UDP", call);
        client.send_to(req.as_bytes(), addr).unwrap();
        let (r, _) = recv(&client)
            .unwrap_or_else(|| panic!("no answer to {call}; log:\n{}", ser.log_text()));
        status_line(&r).to_string()
    };
    assert_eq!(send("src1@t"), "SIP/2.0 200 Client");
    let queries = dns.queries();
    assert!(queries > 0, "the first message looked the names up");
    let parked = || ser.log_text().matches("script suspended on job").count();
    let first = parked();
    assert!(first > 0, "the first message waited for DNS");
    for n in 0..20 {
        assert_eq!(send(&format!("src2-{n}@t")), "SIP/2.0 200 Client");
    }
    assert_eq!(
        dns.queries(),
        queries,
        "later messages answered from the cache, without a DNS query"
    );
    assert_eq!(
        parked(),
        first,
        "later messages answered from the cache, without a DNS job"
    );
}
