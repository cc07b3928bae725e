//! Module `jabber` (with pa's `handle_subscription("jabber")`) end to end: the real `ser`
//! running tests/data/scripts/jabber.cfg, a real XMPP server (Debian's prosody, configured by
//! the test in a temporary directory, c2s on loopback only, plaintext SASL PLAIN allowed since
//! prosody has no certificate there), a small XMPP client in the test acting as the Jabber user bob,
//! and a UDP socket registered as the SIP user alice's contact. Asserted: a SIP MESSAGE becomes
//! an XMPP message from alice's Jabber identity; bob's XMPP message reaches alice's contact as a
//! SIP MESSAGE; bob's XMPP presence reaches a SIP watcher as PIDF NOTIFYs; a SIP user without a
//! Jabber account, and a stopped Jabber server, get the script's error reply; after the server
//! comes back the gateway reconnects by itself. Also: IM transports (a prosody component as
//! the transport), STARTTLS to a prosody that requires it (a CA made by the test, a wrong CA
//! refused), and a server of the test's own that sends malformed XML.
#![allow(clippy::unwrap_used)]

#[path = "support/net.rs"]
mod net;
#[macro_use]
#[path = "support/skip.rs"]
mod skip;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use net::*;

/// Ports of this test (7100-7199; the later tests use 7701-7722).
const XMPP_PORT: u16 = 7101;
const SIP_PORT: u16 = 7102;
const XMPP_PORT2: u16 = 7103;
const SIP_PORT2: u16 = 7104;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A prosody of the test's own: config, data and pid in `dir`.
struct Prosody {
    cfg: PathBuf,
    child: Option<KillOnDrop>,
}

impl Prosody {
    /// `global` goes before the hosts, `hosts` after them.
    fn configure_with(dir: &Path, port: u16, global: &str, hosts: &str) -> Prosody {
        let d = dir.display();
        let cfg = dir.join("prosody.cfg.lua");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(
            &cfg,
            format!(
                "daemonize = false\nrun_as_root = true\npidfile = \"{d}/prosody.pid\"\n\
                 data_path = \"{d}/data\"\ncertificates = \"{d}\"\n\
                 log = {{ info = \"{d}/prosody.log\" }}\n\
                 interfaces = {{ \"127.0.0.1\" }}\nc2s_interfaces = {{ \"127.0.0.1\" }}\n\
                 c2s_ports = {{ {port} }}\ns2s_ports = {{ }}\nc2s_direct_tls_ports = {{ }}\n\
                 modules_enabled = {{ \"roster\"; \"saslauth\"; \"disco\"; \"ping\"; \"presence\" }}\n\
                 modules_disabled = {{ \"s2s\" }}\n\
                 -- loopback only, no certificate: plaintext (the TLS test overrides these)\n\
                 allow_unencrypted_plain_auth = true\nc2s_require_encryption = false\n\
                 authentication = \"internal_plain\"\n{global}\n\
                 VirtualHost \"xmpp.test\"\nComponent \"conf.xmpp.test\" \"muc\"\nmuc_room_locking = false\n{hosts}\n"
            ),
        )
        .unwrap();
        Prosody { cfg, child: None }
    }

    fn register(&self, user: &str, pass: &str) {
        let st = Command::new("prosodyctl")
            .arg("--config")
            .arg(&self.cfg)
            .args(["register", user, "xmpp.test", pass])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "prosodyctl register {user}");
    }

    fn start(&mut self, port: u16) {
        let child = Command::new("prosody")
            .arg("--config")
            .arg(&self.cfg)
            .arg("-F")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(KillOnDrop(child));
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "prosody did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.0.kill();
            let _ = c.0.wait();
        }
    }
}

/// The Jabber user of the test: a blocking XMPP client, enough for messages and presence.
struct Xmpp {
    s: TcpStream,
    seen: String,
}

impl Xmpp {
    fn login(port: u16, user: &str, pass: &str) -> Xmpp {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut x = Xmpp {
            s,
            seen: String::new(),
        };
        let header = "<?xml version='1.0'?><stream:stream to='xmpp.test' xmlns='jabber:client' \
                      xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
        x.send(header);
        x.wait("</stream:features>");
        let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
        x.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        ));
        x.wait("<success");
        x.send(header);
        x.wait("</stream:features>");
        x.send(
            "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>test</resource></bind></iq>",
        );
        x.wait("</iq>");
        x.send("<presence/>");
        x
    }

    /// An external component (XEP-0114) named `domain`: the test's IM transport.
    fn component(port: u16, domain: &str, secret: &str) -> Xmpp {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut x = Xmpp {
            s,
            seen: String::new(),
        };
        x.send(&format!(
            "<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:component:accept' \
             xmlns:stream='http://etherx.jabber.org/streams'>"
        ));
        let head = x.wait_tag(&["<stream:stream"]);
        let id = head
            .split(" id=")
            .nth(1)
            .and_then(|r| r.get(1..))
            .and_then(|r| r.split(['\'', '"']).next())
            .unwrap()
            .to_string();
        x.send(&format!(
            "<handshake>{}</handshake>",
            sha1_hex(&format!("{id}{secret}"))
        ));
        x.wait("<handshake");
        x
    }

    fn send(&mut self, xml: &str) {
        self.s.write_all(xml.as_bytes()).unwrap();
    }

    /// Reads until `needle` was received (≤ 10 s); returns what came up to the end of it and
    /// keeps the rest.
    fn wait(&mut self, needle: &str) -> String {
        self.wait_for(needle, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no {needle:?} from the XMPP server; got {:?}", self.seen))
    }

    /// Reads until an opening tag containing every one of `parts` was received (≤ 10 s);
    /// returns that tag.
    fn wait_tag(&mut self, parts: &[&str]) -> String {
        let end = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 8192];
        loop {
            let mut from = 0;
            while let Some(i) = self.seen[from..].find('<').map(|i| i + from) {
                let Some(j) = self.seen[i..].find('>').map(|j| j + i) else {
                    break;
                };
                let tag = &self.seen[i..=j];
                if parts.iter().all(|p| tag.contains(p)) {
                    let tag = tag.to_string();
                    self.seen.drain(..=j);
                    return tag;
                }
                from = j + 1;
            }
            assert!(
                Instant::now() < end,
                "no tag with {parts:?} from the XMPP server; got {:?}",
                self.seen
            );
            if let Ok(n) = self.s.read(&mut buf) {
                assert!(n > 0, "the XMPP server closed the stream");
                self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    }

    fn wait_for(&mut self, needle: &str, limit: Duration) -> Option<String> {
        let end = Instant::now() + limit;
        let mut buf = [0u8; 8192];
        loop {
            if let Some(i) = self.seen.find(needle) {
                let upto = i + needle.len();
                let got = self.seen[..upto].to_string();
                self.seen.drain(..upto);
                return Some(got);
            }
            if Instant::now() >= end {
                return None;
            }
            match self.s.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(_) => {}
            }
        }
    }
}

/// SHA-1 in hex (the component handshake), by coreutils' sha1sum.
fn sha1_hex(text: &str) -> String {
    let mut c = Command::new("sha1sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn sock() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s
}

fn register(ser: SocketAddr, phone: &UdpSocket, user: &str, expires: u32) -> String {
    let me = phone.local_addr().unwrap();
    format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-reg-{user}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=r-{user}\r\n\
         To: <sip:{user}@127.0.0.1>\r\nCall-ID: reg-{user}@{me}\r\nCSeq: {} REGISTER\r\n\
         Contact: <sip:{user}@{me}>\r\nExpires: {expires}\r\nContent-Length: 0\r\n\r\n",
        if expires == 0 { 2 } else { 1 }
    )
    .replace("sip:127.0.0.1 SIP", &format!("sip:{ser} SIP"))
}

fn message(from: &UdpSocket, user: &str, to: &str, body: &str, call: &str) -> String {
    let me = from.local_addr().unwrap();
    format!(
        "MESSAGE sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=t-{call}\r\n\
         To: <sip:{to}>\r\nCall-ID: {call}\r\nCSeq: 1 MESSAGE\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A MESSAGE carrying the test script's `X-Jconf` command for the conference `to`.
fn jconf(from: &UdpSocket, user: &str, to: &str, cmd: &str, call: &str) -> String {
    message(from, user, to, "", call).replacen(
        "Content-Type:",
        &format!("X-Jconf: {cmd}\r\nContent-Type:"),
        1,
    )
}

fn subscribe(from: &UdpSocket, user: &str, to: &str, call: &str) -> String {
    let me = from.local_addr().unwrap();
    format!(
        "SUBSCRIBE sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=w-{call}\r\n\
         To: <sip:{to}>\r\nCall-ID: {call}\r\nCSeq: 1 SUBSCRIBE\r\nEvent: presence\r\n\
         Contact: <sip:{user}@{me}>\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A 200 to the request `req` (Via, From, To + tag, Call-ID, CSeq copied).
fn ok(req: &str) -> String {
    let mut out = "SIP/2.0 200 OK\r\n".to_string();
    for l in req.split("\r\n") {
        let lower = l.to_ascii_lowercase();
        if ["via:", "from:", "call-id:", "cseq:"]
            .iter()
            .any(|p| lower.starts_with(p))
        {
            out.push_str(l);
            out.push_str("\r\n");
        } else if lower.starts_with("to:") {
            out.push_str(l);
            if !lower.contains("tag=") {
                out.push_str(";tag=ua");
            }
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// What `s` receives within `wait`: the first final reply, or the first request of `method`
/// (answered 200); requests of other methods are answered too.
fn next(s: &UdpSocket, want: &str, wait: Duration) -> Option<String> {
    let end = Instant::now() + wait;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end {
        let Ok((n, from)) = s.recv_from(&mut buf) else {
            continue;
        };
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if m.starts_with("SIP/2.0 ") {
            if !m.starts_with("SIP/2.0 1") && want == "reply" {
                return Some(m);
            }
            continue;
        }
        s.send_to(ok(&m).as_bytes(), from).unwrap();
        if m.starts_with(&format!("{want} ")) {
            return Some(m);
        }
    }
    None
}

/// Whether `watcher` gets a NOTIFY whose PIDF says `basic` within 10 s.
fn notified(watcher: &UdpSocket, basic: &str) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if let Some(n) = next(watcher, "NOTIFY", Duration::from_millis(500)) {
            if body_of(&n).contains(&format!("<basic>{basic}</basic>")) {
                return true;
            }
        }
    }
    false
}

fn body_of(m: &str) -> &str {
    m.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Sends `req` and returns the final reply (≤ 10 s).
fn ask(s: &UdpSocket, ser: SocketAddr, req: &str) -> String {
    s.send_to(req.as_bytes(), ser).unwrap();
    next(s, "reply", Duration::from_secs(10)).expect("a final reply")
}

/// A prosody on `xmpp_port` with the Jabber accounts `users` (name = password prefix) and bob,
/// SER's jusers rows mapping `user@127.0.0.1` to `user@xmpp.test`, and ser on `sip_port`
/// running tests/data/scripts/jabber.cfg with `edits` applied.
fn setup(
    xmpp_port: u16,
    sip_port: u16,
    users: &[&str],
    edits: &[(&str, &str)],
) -> (Dir, Prosody, Ser, SocketAddr) {
    setup_with(xmpp_port, sip_port, users, edits, ("", ""), &[])
}

/// [`setup`] with prosody configuration (`global`, `hosts`: see [`Prosody::configure_with`])
/// and files `(name, contents)` written to the test's directory first (`@DIR@` in the
/// configuration and the script edits stands for it).
fn setup_with(
    xmpp_port: u16,
    sip_port: u16,
    users: &[&str],
    edits: &[(&str, &str)],
    prosody_cfg: (&str, &str),
    files: &[(&str, &[u8])],
) -> (Dir, Prosody, Ser, SocketAddr) {
    let dir =
        Dir(std::env::temp_dir().join(format!("ser-jabber-{}-{xmpp_port}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let d = dir.0.display().to_string();
    for (name, data) in files {
        std::fs::write(dir.0.join(name), data).unwrap();
    }
    let mut prosody = Prosody::configure_with(
        &dir.0,
        xmpp_port,
        &prosody_cfg.0.replace("@DIR@", &d),
        &prosody_cfg.1.replace("@DIR@", &d),
    );
    for u in users {
        prosody.register(u, &format!("{u}-pw"));
    }
    prosody.register("bob", "bob-pw");
    prosody.start(xmpp_port);
    let url = format!("sqlite://{}", dir.0.join("ser.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let db = controlplane::db::Databases::new(url.as_str());
        let db = db.get("").await.unwrap();
        let row = |c: &str, v: &str| (c.to_string(), Some(v.to_string()));
        for u in users {
            db.insert(
                "jusers",
                &[
                    row("jab_id", &format!("{u}@xmpp.test")),
                    row("jab_passwd", &format!("{u}-pw")),
                    row("sip_id", &format!("{u}@127.0.0.1")),
                    row("type", "0"),
                ],
            )
            .await
            .unwrap();
        }
    });
    let mut text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scripts/jabber.cfg"),
    )
    .unwrap()
    .replace("mysql://ser:heslo@localhost/sip_jab", &url)
    .replace("\"jport\", 5222)", &format!("\"jport\", {xmpp_port})"));
    for (from, to) in edits {
        assert!(text.contains(from), "{from}");
        text = text.replace(from, &to.replace("@DIR@", &d));
    }
    let ser_addr: SocketAddr = format!("127.0.0.1:{sip_port}").parse().unwrap();
    let ser = Ser::start_with_env(
        &text,
        &["-l", "127.0.0.1", "-p", &sip_port.to_string()],
        &[("SER_DB_URL", &url)],
    );
    (dir, prosody, ser, ser_addr)
}

#[test]
fn sip_and_xmpp_exchange_messages_presence_and_errors() {
    if !have("prosody") || !have("prosodyctl") {
        skip!("prosody is not installed (apt-get install prosody)");
    }
    let (_dir, mut prosody, ser, ser_addr) = setup(XMPP_PORT, SIP_PORT, &["alice"], &[]);

    let mut bob = Xmpp::login(XMPP_PORT, "bob", "bob-pw");
    let phone = sock();
    let r = ask(&phone, ser_addr, &register(ser_addr, &phone, "alice", 600));
    assert!(r.starts_with("SIP/2.0 200"), "{r}");

    // SIP → XMPP.
    let r = ask(
        &phone,
        ser_addr,
        &message(
            &phone,
            "alice",
            "bob*xmpp.test@jabber.sip.test",
            "hello <bob> & co",
            "m1",
        ),
    );
    assert!(r.starts_with("SIP/2.0 202"), "{r}");
    let got = bob.wait("</message>");
    assert!(
        got.contains("from='alice@xmpp.test/serXjab'")
            || got.contains("from=\"alice@xmpp.test/serXjab\""),
        "{got}"
    );
    assert!(
        got.contains("<body>hello &lt;bob&gt; &amp; co</body>"),
        "{got}"
    );

    // XMPP → SIP, at alice's registered contact.
    bob.send("<message to='alice@xmpp.test' type='chat'><body>hi alice &amp; all</body></message>");
    let m = next(&phone, "MESSAGE", Duration::from_secs(10)).expect("a MESSAGE from the gateway");
    assert!(m.starts_with("MESSAGE sip:alice@"), "{m}");
    assert!(
        m.contains("From: <sip:bob*xmpp.test@jabber.sip.test>"),
        "{m}"
    );
    assert_eq!(body_of(&m), "hi alice & all");

    // Presence → NOTIFY: alice watches bob.
    let watcher = sock();
    let r = ask(
        &watcher,
        ser_addr,
        &subscribe(&watcher, "alice", "bob*xmpp.test@jabber.sip.test", "s1"),
    );
    assert!(r.starts_with("SIP/2.0 202"), "{r}");
    let n = next(&watcher, "NOTIFY", Duration::from_secs(10)).expect("the first NOTIFY");
    assert!(n.contains("Content-Type: application/pidf+xml"), "{n}");
    assert!(
        n.contains("entity=\"sip:bob*xmpp.test@jabber.sip.test\""),
        "{n}"
    );
    // bob's server asks him; he accepts and his presence goes to alice's connection.
    bob.wait("type='subscribe'");
    bob.send("<presence to='alice@xmpp.test' type='subscribed'/>");
    let mut open = body_of(&n).contains("<basic>open</basic>");
    let end = Instant::now() + Duration::from_secs(10);
    while !open && Instant::now() < end {
        if let Some(n) = next(&watcher, "NOTIFY", Duration::from_millis(500)) {
            open = body_of(&n).contains("<basic>open</basic>");
        }
    }
    assert!(open, "bob's availability was notified");
    bob.send("<presence type='unavailable'/>");
    let n = next(&watcher, "NOTIFY", Duration::from_secs(10)).expect("a NOTIFY when bob leaves");
    assert!(body_of(&n).contains("<basic>closed</basic>"), "{n}");
    bob.send("<presence/>");
    let n = next(&watcher, "NOTIFY", Duration::from_secs(10)).expect("a NOTIFY when bob is back");
    assert!(body_of(&n).contains("<basic>open</basic>"), "{n}");

    // A conference (XMPP MUC): alice joins room@conf.xmpp.test as "alice", bob is there.
    bob.send("<presence to='room@conf.xmpp.test/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>");
    bob.wait("from='room@conf.xmpp.test/bob'");
    let room = "alice*room*conf.xmpp.test@jabber.sip.test";
    let r = ask(
        &phone,
        ser_addr,
        &message(&phone, "alice", room, "early", "c0"),
    );
    assert!(r.starts_with("SIP/2.0 503"), "not joined yet: {r}");
    let r = ask(
        &phone,
        ser_addr,
        &jconf(&phone, "alice", room, "join", "c1"),
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    bob.wait("from='room@conf.xmpp.test/alice'");
    let r = ask(
        &phone,
        ser_addr,
        &message(&phone, "alice", room, "hello room", "c2"),
    );
    assert!(r.starts_with("SIP/2.0 202"), "{r}");
    let got = bob.wait("<body>hello room</body>");
    assert!(
        got.contains("type='groupchat'") || got.contains("type=\"groupchat\""),
        "{got}"
    );
    bob.send(
        "<message to='room@conf.xmpp.test' type='groupchat'><body>hi from bob</body></message>",
    );
    let m = loop {
        let m = next(&phone, "MESSAGE", Duration::from_secs(10)).expect("the room's message");
        if body_of(&m) == "hi from bob" {
            break m;
        }
    };
    assert!(
        m.contains("From: <sip:bob*room*conf.xmpp.test@jabber.sip.test>"),
        "{m}"
    );
    let r = ask(
        &phone,
        ser_addr,
        &jconf(&phone, "alice", room, "exit", "c3"),
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    bob.wait_tag(&[
        "<presence",
        "type='unavailable'",
        "from='room@conf.xmpp.test/alice'",
    ]);

    // bob asks for alice's presence (the gateway accepts); her unregistering takes her off line.
    bob.send("<presence to='alice@xmpp.test' type='subscribe'/>");
    // (the gateway's `subscribed` makes prosody send bob alice's current presence)
    let tag = bob.wait_tag(&["<presence", "from='alice@xmpp.test/serXjab'"]);
    assert!(!tag.contains("type="), "{tag}");
    let r = ask(&phone, ser_addr, &register(ser_addr, &phone, "alice", 0));
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    bob.wait_tag(&[
        "<presence",
        "type='unavailable'",
        "from='alice@xmpp.test/serXjab'",
    ]);
    // Her connection gone, what it saw of bob is no longer vouched for: closed.
    assert!(
        notified(&watcher, "closed"),
        "bob closed when alice's connection ends"
    );
    let r = ask(&phone, ser_addr, &register(ser_addr, &phone, "alice", 600));
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    let tag = bob.wait_tag(&["<presence", "from='alice@xmpp.test/serXjab'"]);
    assert!(!tag.contains("type="), "alice is back on line: {tag}");
    assert!(
        notified(&watcher, "open"),
        "bob open again through her new connection"
    );

    // A SIP user without a Jabber account.
    let carol = sock();
    let r = ask(
        &carol,
        ser_addr,
        &message(&carol, "carol", "bob*xmpp.test@jabber.sip.test", "x", "m2"),
    );
    assert!(r.starts_with("SIP/2.0 503"), "{r}");
    assert!(ser.wait_log(
        "carol@127.0.0.1 has no Jabber account",
        Duration::from_secs(5)
    ));
    // Nor can she watch a Jabber user.
    let r = ask(
        &carol,
        ser_addr,
        &subscribe(&carol, "carol", "bob*xmpp.test@jabber.sip.test", "s2"),
    );
    assert!(r.starts_with("SIP/2.0 403"), "{r}");

    // The Jabber server stops: the gateway notices, the next MESSAGE gets the error reply.
    prosody.stop();
    assert!(
        ser.wait_log("connection lost", Duration::from_secs(10)),
        "{}",
        ser.log_text()
    );
    let r = ask(
        &phone,
        ser_addr,
        &message(
            &phone,
            "alice",
            "bob*xmpp.test@jabber.sip.test",
            "lost",
            "m3",
        ),
    );
    assert!(r.starts_with("SIP/2.0 503"), "{r}");

    // It comes back: alice is on line (she registered), so her connection is re-opened.
    prosody.start(XMPP_PORT);
    assert!(
        ser.wait_log("reconnected as alice@xmpp.test", Duration::from_secs(10)),
        "{}",
        ser.log_text()
    );
    let mut bob = Xmpp::login(XMPP_PORT, "bob", "bob-pw");
    let r = ask(
        &phone,
        ser_addr,
        &message(
            &phone,
            "alice",
            "bob*xmpp.test@jabber.sip.test",
            "back",
            "m4",
        ),
    );
    assert!(r.starts_with("SIP/2.0 202"), "{r}");
    let got = bob.wait("</message>");
    assert!(got.contains("<body>back</body>"), "{got}");
    bob.send("<message to='alice@xmpp.test' type='chat'><body>again</body></message>");
    let m =
        next(&phone, "MESSAGE", Duration::from_secs(10)).expect("a MESSAGE after the reconnect");
    assert_eq!(body_of(&m), "again");
    prosody.stop();
}

#[test]
fn idle_connections_close_and_the_pool_is_bounded() {
    if !have("prosody") || !have("prosodyctl") {
        skip!("prosody is not installed (apt-get install prosody)");
    }
    let (_dir, mut prosody, ser, ser_addr) = setup(
        XMPP_PORT2,
        SIP_PORT2,
        &["alice", "dave"],
        &[
            ("\"max_jobs\", 4)", "\"max_jobs\", 1)"),
            (
                "\"delay_time\", 5)",
                "\"delay_time\", 5)\nmodparam(\"jabber\", \"cache_time\", 2)",
            ),
        ],
    );
    let mut bob = Xmpp::login(XMPP_PORT2, "bob", "bob-pw");
    let (alice, dave) = (sock(), sock());
    let to = "bob*xmpp.test@jabber.sip.test";
    let r = ask(&alice, ser_addr, &message(&alice, "alice", to, "one", "p1"));
    assert!(r.starts_with("SIP/2.0 202"), "{r}");
    bob.wait("<body>one</body>");
    // One worker with one job: dave's connection does not fit while alice's is open.
    let r = ask(&dave, ser_addr, &message(&dave, "dave", to, "two", "p2"));
    assert!(r.starts_with("SIP/2.0 503"), "{r}");
    assert!(
        ser.wait_log("dave@127.0.0.1 refused", Duration::from_secs(5)),
        "{}",
        ser.log_text()
    );
    // bob watches alice; her connection, unused for cache_time, is closed.
    bob.send("<presence to='alice@xmpp.test' type='subscribe'/>");
    let tag = bob.wait_tag(&["<presence", "from='alice@xmpp.test/serXjab'"]);
    assert!(!tag.contains("type="), "{tag}");
    let t0 = Instant::now();
    bob.wait_tag(&[
        "<presence",
        "type='unavailable'",
        "from='alice@xmpp.test/serXjab'",
    ]);
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Now dave fits.
    let r = ask(&dave, ser_addr, &message(&dave, "dave", to, "three", "p3"));
    assert!(r.starts_with("SIP/2.0 202"), "{r}");
    let got = bob.wait("<body>three</body>");
    assert!(got.contains("dave@xmpp.test/serXjab"), "{got}");
    prosody.stop();
}

/// SER's IM transports: the `aliases` domain icq.xmpp.test is an external component on prosody
/// (as ICQ transports were), played by the test. A message to it is refused while the
/// transport is not on alice's roster, held while it is on the roster but not on line, sent
/// when it comes on line, and refused after `delay_time` when it goes away; its messages reach
/// alice's SIP contact from `sip:number@icq.xmpp.test`.
#[test]
fn im_transports_follow_the_roster_and_their_presence() {
    if !have("prosody") || !have("prosodyctl") || !have("sha1sum") {
        skip!("prosody (or sha1sum) is not installed (apt-get install prosody)");
    }
    const XMPP: u16 = 7701;
    const SIP: u16 = 7702;
    const COMPONENT: u16 = 7703;
    let (_dir, mut prosody, ser, ser_addr) = setup_with(
        XMPP,
        SIP,
        &["alice"],
        &[
            (
                "modparam(\"jabber\", \"workers\", 1)",
                "modparam(\"jabber\", \"workers\", 1)\nmodparam(\"jabber\", \"aliases\", \"1;icq.xmpp.test;\")",
            ),
            (
                "if (uri=~\"@jabber\\.sip\\.test\") {",
                "if (uri=~\"@jabber\\.sip\\.test\" || uri=~\"@icq\\.xmpp\\.test\") {",
            ),
        ],
        (
            &format!("component_ports = {{ {COMPONENT} }}\ncomponent_interfaces = {{ \"127.0.0.1\" }}"),
            "Component \"icq.xmpp.test\"\ncomponent_secret = \"transport-secret\"",
        ),
        &[],
    );
    let phone = sock();
    let r = ask(&phone, ser_addr, &register(ser_addr, &phone, "alice", 600));
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    let icq = "12345@icq.xmpp.test";

    // Not registered with the transport: refused.
    let r = ask(&phone, ser_addr, &message(&phone, "alice", icq, "no", "t1"));
    assert!(r.starts_with("SIP/2.0 503"), "{r}");
    assert!(
        ser.wait_log(
            "alice@127.0.0.1 is not registered with the IM gateway of 12345@icq.xmpp.test",
            Duration::from_secs(5)
        ),
        "{}",
        ser.log_text()
    );

    // The transport asks for alice's presence (how a registration with it ended); the
    // gateway accepts, and prosody puts the transport on alice's roster.
    let mut t = Xmpp::component(COMPONENT, "icq.xmpp.test", "transport-secret");
    t.send("<presence from='icq.xmpp.test' to='alice@xmpp.test' type='subscribe'/>");
    t.wait_tag(&["<presence", "type='subscribed'", "from='alice@xmpp.test'"]);
    std::thread::sleep(Duration::from_millis(300));

    // On the roster, not on line: the message waits for it.
    let held = message(&phone, "alice", icq, "held for icq", "t2");
    phone.send_to(held.as_bytes(), ser_addr).unwrap();
    assert!(
        next(&phone, "reply", Duration::from_millis(1500)).is_none(),
        "the message waits for the transport"
    );
    t.send("<presence from='icq.xmpp.test' to='alice@xmpp.test/serXjab'/>");
    let got = t.wait("</message>");
    assert!(got.contains("<body>held for icq</body>"), "{got}");
    assert!(
        got.contains("to='12345@icq.xmpp.test'") || got.contains("to=\"12345@icq.xmpp.test\""),
        "{got}"
    );
    let r = next(&phone, "reply", Duration::from_secs(5)).expect("the held message's reply");
    assert!(r.starts_with("SIP/2.0 202"), "{r}");

    // On line: at once.
    let r = ask(
        &phone,
        ser_addr,
        &message(&phone, "alice", icq, "now", "t3"),
    );
    assert!(r.starts_with("SIP/2.0 202"), "{r}");
    t.wait("<body>now</body>");

    // From the IM network to alice's SIP contact.
    t.send(
        "<message from='12345@icq.xmpp.test' to='alice@xmpp.test' type='chat'>\
         <body>hello from icq</body></message>",
    );
    let m = next(&phone, "MESSAGE", Duration::from_secs(10)).expect("a MESSAGE from the transport");
    assert!(m.contains("From: <sip:12345@icq.xmpp.test>"), "{m}");
    assert_eq!(body_of(&m), "hello from icq");

    // The transport goes away: a message waits delay_time (5 s), then is refused.
    t.send("<presence from='icq.xmpp.test' to='alice@xmpp.test/serXjab' type='unavailable'/>");
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let r = ask(
        &phone,
        ser_addr,
        &message(&phone, "alice", icq, "late", "t4"),
    );
    assert!(r.starts_with("SIP/2.0 503"), "{r}");
    assert!(t0.elapsed() >= Duration::from_secs(4), "{:?}", t0.elapsed());
    assert!(
        ser.wait_log("did not come on line in time", Duration::from_secs(2)),
        "{}",
        ser.log_text()
    );
    prosody.stop();
}

/// A CA and a certificate for xmpp.test signed by it, made by the openssl tool in `dir`
/// (`ca.crt`, `xmpp.test.crt`, `xmpp.test.key`; prosody finds the last two by the host name).
fn make_certs(dir: &Path, ca: &str) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca_key = format!("{ca}.key");
    let ca_crt = format!("{ca}.crt");
    let ca_subj = format!("/CN={ca}");
    let mut a = vec!["req", "-x509"];
    a.extend(ec);
    a.extend([
        "-keyout", &ca_key, "-out", &ca_crt, "-days", "2", "-subj", &ca_subj,
    ]);
    run(&a);
    if ca != "ca" {
        return;
    }
    let mut a = vec!["req"];
    a.extend(ec);
    a.extend([
        "-keyout",
        "xmpp.test.key",
        "-out",
        "xmpp.test.csr",
        "-subj",
        "/CN=xmpp.test",
    ]);
    run(&a);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:xmpp.test\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "xmpp.test.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "xmpp.test.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

/// Prosody requires encryption on c2s (its certificate from the test's own CA): the gateway
/// takes STARTTLS, checks the certificate against `tls_ca`, logs in and exchanges messages
/// (with an external component as the XMPP peer, which needs no c2s). A second ser whose
/// `tls_ca` is another CA refuses the server's certificate and answers the error reply.
#[test]
fn starttls_to_a_server_that_requires_it_with_the_certificate_checked() {
    if !have("prosody") || !have("prosodyctl") || !have("sha1sum") || !have("openssl") {
        skip!("prosody, sha1sum or openssl is not installed (apt-get install prosody openssl)");
    }
    const XMPP: u16 = 7711;
    const SIP: u16 = 7712;
    const COMPONENT: u16 = 7713;
    const SIP_BAD: u16 = 7714;
    let tls_ca = (
        "modparam(\"jabber\", \"workers\", 1)",
        "modparam(\"jabber\", \"workers\", 1)\nmodparam(\"jabber\", \"tls_ca\", \"@DIR@/ca.crt\")",
    );
    // The certificates must exist before prosody starts: made in a directory of their own.
    let certs = std::env::temp_dir().join(format!("ser-jabber-certs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&certs);
    std::fs::create_dir_all(&certs).unwrap();
    let _certs_dir = Dir(certs.clone());
    make_certs(&certs, "ca");
    make_certs(&certs, "other-ca");
    let read = |n: &str| std::fs::read(certs.join(n)).unwrap();
    let (ca, crt, key, other) = (
        read("ca.crt"),
        read("xmpp.test.crt"),
        read("xmpp.test.key"),
        read("other-ca.crt"),
    );
    let (dir, mut prosody, ser, ser_addr) = setup_with(
        XMPP,
        SIP,
        &["alice"],
        &[tls_ca],
        (
            &format!(
                "c2s_require_encryption = true\nallow_unencrypted_plain_auth = false\n\
                 modules_enabled = {{ \"roster\"; \"saslauth\"; \"tls\"; \"disco\"; \"ping\"; \"presence\" }}\n\
                 component_ports = {{ {COMPONENT} }}\ncomponent_interfaces = {{ \"127.0.0.1\" }}"
            ),
            "Component \"gw.xmpp.test\"\ncomponent_secret = \"gw-secret\"",
        ),
        &[
            ("ca.crt", &ca),
            ("xmpp.test.crt", &crt),
            ("xmpp.test.key", &key),
            ("other-ca.crt", &other),
        ],
    );
    let mut gw = Xmpp::component(COMPONENT, "gw.xmpp.test", "gw-secret");
    let phone = sock();
    let r = ask(&phone, ser_addr, &register(ser_addr, &phone, "alice", 600));
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    let to = "u*gw.xmpp.test@jabber.sip.test";
    let r = ask(
        &phone,
        ser_addr,
        &message(&phone, "alice", to, "over tls", "x1"),
    );
    assert!(
        r.starts_with("SIP/2.0 202"),
        "{r}\n{}\n{}",
        ser.log_text(),
        std::fs::read_to_string(dir.0.join("prosody.log")).unwrap_or_default()
    );
    let got = gw.wait("</message>");
    assert!(got.contains("<body>over tls</body>"), "{got}");
    assert!(got.contains("alice@xmpp.test/serXjab"), "{got}");
    gw.send(
        "<message from='u@gw.xmpp.test' to='alice@xmpp.test' type='chat'>\
         <body>back over tls</body></message>",
    );
    let m = next(&phone, "MESSAGE", Duration::from_secs(10)).expect("a MESSAGE over TLS");
    assert_eq!(body_of(&m), "back over tls");
    // (prosody offers SASL only over TLS here: the login itself proves the encryption)

    // Another ser that trusts only another CA: the certificate is refused.
    let url = format!("sqlite://{}", dir.0.join("ser.db").display());
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scripts/jabber.cfg"),
    )
    .unwrap()
    .replace("mysql://ser:heslo@localhost/sip_jab", &url)
    .replace("\"jport\", 5222)", &format!("\"jport\", {XMPP})"))
    .replace(
        tls_ca.0,
        &tls_ca
            .1
            .replace("@DIR@/ca.crt", &format!("{}/other-ca.crt", dir.0.display())),
    );
    let bad_addr: SocketAddr = format!("127.0.0.1:{SIP_BAD}").parse().unwrap();
    let bad = Ser::start_with_env(
        &text,
        &["-l", "127.0.0.1", "-p", &SIP_BAD.to_string()],
        &[("SER_DB_URL", &url)],
    );
    let phone2 = sock();
    let r = ask(
        &phone2,
        bad_addr,
        &message(&phone2, "alice", to, "refused", "x2"),
    );
    assert!(r.starts_with("SIP/2.0 503"), "{r}");
    assert!(
        bad.wait_log("TLS with xmpp.test failed", Duration::from_secs(5)),
        "{}",
        bad.log_text()
    );
    assert!(
        bad.log_text().contains("invalid peer certificate"),
        "{}",
        bad.log_text()
    );
    drop(bad);
    drop(ser);
    prosody.stop();
}

/// A Jabber server of the test's own making that logs its client in (SASL PLAIN, bind) and
/// then, on the first connection only, sends `garbage`; every later connection records what
/// the client sends in `heard`.
fn misbehaving_server(
    port: u16,
    garbage: &'static str,
) -> std::sync::Arc<std::sync::Mutex<String>> {
    let heard = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let h = std::sync::Arc::clone(&heard);
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        for (n, s) in l.incoming().enumerate() {
            let Ok(mut s) = s else { return };
            if Instant::now() > deadline {
                return;
            }
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut seen = String::new();
            let until = |s: &mut TcpStream, seen: &mut String, needle: &str| -> bool {
                let end = Instant::now() + Duration::from_secs(5);
                let mut buf = [0u8; 4096];
                while !seen.contains(needle) {
                    if Instant::now() > end {
                        return false;
                    }
                    match s.read(&mut buf) {
                        Ok(0) => return false,
                        Ok(k) => seen.push_str(&String::from_utf8_lossy(&buf[..k])),
                        Err(_) => {}
                    }
                }
                let at = seen.find(needle).unwrap() + needle.len();
                seen.drain(..at);
                true
            };
            let head = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
                        xmlns:stream='http://etherx.jabber.org/streams' id='x1' from='xmpp.test' version='1.0'>";
            let steps: [(&str, String); 4] = [
                ("<stream:stream", format!("{head}<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>")),
                ("</auth>", "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>".into()),
                ("<stream:stream", format!("{head}<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>")),
                ("</iq>", "<iq type='result' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@xmpp.test/serXjab</jid></bind></iq>".into()),
            ];
            let mut ok = true;
            for (want, answer) in &steps {
                ok = ok && until(&mut s, &mut seen, want) && s.write_all(answer.as_bytes()).is_ok();
            }
            if !ok || !until(&mut s, &mut seen, "jabber:iq:roster") {
                continue;
            }
            let _ = s.write_all(
                b"<iq type='result' id='roster1'><query xmlns='jabber:iq:roster'/></iq>",
            );
            if n == 0 {
                let _ = s.write_all(garbage.as_bytes());
                // Held open: the client must give up on it by itself.
                let end = Instant::now() + Duration::from_secs(5);
                let mut buf = [0u8; 4096];
                while Instant::now() < end && !matches!(s.read(&mut buf), Ok(0)) {}
                continue;
            }
            let end = Instant::now() + Duration::from_secs(10);
            let mut buf = [0u8; 4096];
            while Instant::now() < end {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => h
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..k])),
                    Err(_) => {}
                }
            }
        }
    });
    heard
}

/// A Jabber server that sends XML that is not well-formed: the gateway logs it, drops the
/// connection, logs in again by itself (alice is on line) and the next MESSAGE goes through.
#[test]
fn malformed_xml_from_the_jabber_server_is_logged_and_the_gateway_recovers() {
    const XMPP: u16 = 7721;
    const SIP: u16 = 7722;
    let heard = misbehaving_server(XMPP, "<message from='bob@xmpp.test'><body>x</message></iq>");
    let dir = Dir(std::env::temp_dir().join(format!("ser-jabber-bad-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let url = format!("sqlite://{}", dir.0.join("ser.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let db = controlplane::db::Databases::new(url.as_str());
        let db = db.get("").await.unwrap();
        let row = |c: &str, v: &str| (c.to_string(), Some(v.to_string()));
        db.insert(
            "jusers",
            &[
                row("jab_id", "alice@xmpp.test"),
                row("jab_passwd", "alice-pw"),
                row("sip_id", "alice@127.0.0.1"),
                row("type", "0"),
            ],
        )
        .await
        .unwrap();
    });
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scripts/jabber.cfg"),
    )
    .unwrap()
    .replace("mysql://ser:heslo@localhost/sip_jab", &url)
    .replace("\"jport\", 5222)", &format!("\"jport\", {XMPP})"));
    let ser_addr: SocketAddr = format!("127.0.0.1:{SIP}").parse().unwrap();
    let ser = Ser::start_with_env(
        &text,
        &["-l", "127.0.0.1", "-p", &SIP.to_string()],
        &[("SER_DB_URL", &url)],
    );
    let phone = sock();
    let r = ask(&phone, ser_addr, &register(ser_addr, &phone, "alice", 600));
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(
        ser.wait_log("malformed XML", Duration::from_secs(10)),
        "{}",
        ser.log_text()
    );
    assert!(
        ser.wait_log("reconnected as alice@xmpp.test", Duration::from_secs(10)),
        "{}",
        ser.log_text()
    );
    let r = ask(
        &phone,
        ser_addr,
        &message(
            &phone,
            "alice",
            "bob*xmpp.test@jabber.sip.test",
            "after garbage",
            "g1",
        ),
    );
    assert!(r.starts_with("SIP/2.0 202"), "{r}\n{}", ser.log_text());
    let end = Instant::now() + Duration::from_secs(5);
    while !heard.lock().unwrap().contains("<body>after garbage</body>") && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        heard.lock().unwrap().contains("<body>after garbage</body>"),
        "{}",
        heard.lock().unwrap()
    );
    // No MESSAGE came out of the broken stanza.
    assert!(next(&phone, "MESSAGE", Duration::from_millis(300)).is_none());
}
