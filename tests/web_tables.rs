//! The administrator's pages for SER's tables (aliases, domains, groups, pdt prefixes, stored
//! messages) end to end: the real `ser` on 127.0.0.1 with `--http` and `--web-admins`, a real
//! headless Chromium through chromedriver adding, finding and deleting rows, and SIP requests
//! over UDP proving each change is in effect in the running server at once (lookup("aliases"),
//! is_from_local, is_user_in, prefix2domain, m_dump). Plain HTTP for what a browser would not
//! send (no session, no CSRF token). SQLite; the domain page also on MariaDB and PostgreSQL.
//! Screenshots go to `target/tmp/web_tables/`.
//!
//! SER's `trusted` table has no page: 0.8.11's permissions module reads files only.
#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "support/skip.rs"]
mod skip;
#[path = "support/net.rs"]
mod net;
#[path = "support/web.rs"]
mod web;
#[path = "support/webdriver.rs"]
mod webdriver;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use net::*;
use web::{admin_login, browser_login, get, have_browser, post, shots_dir, Server, EVIL};
use webdriver::{http, Browser};

const REALM: &str = "test.example";

/// Each table's module, a route that shows each one's answer, and msilo storing MESSAGEs for
/// users who are not registered (delivered by m_dump on their REGISTER). domain caches its
/// table until `domain_reload` (db_mode 1) and group its answers for an hour: only the pages'
/// notices to the running server make a change visible.
const CFG: &str = r#"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "maxfwd.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "domain.so"
loadmodule "group.so"
loadmodule "pdt.so"
loadmodule "msilo.so"
modparam("auth", "secret", "tables-secret")
modparam("usrloc", "db_mode", 0)
modparam("domain", "db_mode", 1)
modparam("group", "cache_ttl", 3600)
route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		break;
	};
	if (method == "OPTIONS") {
		if (uri =~ "^sip:local@") {
			if (is_from_local()) {
				sl_send_reply("200", "From Local");
			} else {
				sl_send_reply("403", "From Foreign");
			};
			break;
		};
		if (uri =~ "^sip:vm@") {
			if (is_user_in("From", "voicemail")) {
				sl_send_reply("200", "In Group");
			} else {
				sl_send_reply("403", "Not In Group");
			};
			break;
		};
		if (uri =~ "^sip:[0-9]+@") {
			if (prefix2domain()) {
				forward(uri:host, uri:port);
				break;
			};
			sl_send_reply("404", "No Such Prefix");
			break;
		};
		if (lookup("aliases")) {
			forward(uri:host, uri:port);
			break;
		};
		sl_send_reply("404", "No Such Alias");
		break;
	};
	if (method == "REGISTER") {
		save("location");
		m_dump();
		break;
	};
	if (method == "MESSAGE") {
		if (lookup("location")) {
			t_relay();
			break;
		};
		if (!t_newtran()) {
			sl_reply_error();
			break;
		};
		if (m_store("0")) {
			t_reply("202", "Accepted");
		} else {
			t_reply("503", "Service Unavailable");
		};
		break;
	};
	sl_send_reply("404", "Not Found");
}
"#;

static N: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn test_dir(name: &str) -> PathBuf {
    web::test_dir("webtables", name)
}

fn start(dir: &Path) -> Server {
    start_on(dir, &[])
}

fn start_on(dir: &Path, env: &[(&str, &str)]) -> Server {
    let mut e = vec![("SIP_DOMAIN", REALM)];
    e.extend_from_slice(env);
    Server::start(dir, CFG, None, &e, &[])
}

// ---------------------------------------------------------------- SIP side

/// An OPTIONS to `ruri` from `from` (a full URI): the reply's status line, or None.
fn options(srv: &Server, ruri: &str, from: &str, id: &str) -> Option<String> {
    let c = udp_client("127.0.0.1");
    let me = c.local_addr().unwrap();
    let req = format!(
        "OPTIONS {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-{id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <{from}>;tag=t-{id}\r\n\
         To: <{ruri}>\r\n\
         Call-ID: {id}@127.0.0.1\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    udp_exchange(&c, srv.sip, req.as_bytes()).map(|r| status_line(&r).to_string())
}

/// A UDP socket standing for a UA or gateway (short reads: callers loop to a deadline).
fn uas() -> (UdpSocket, u16) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let p = s.local_addr().unwrap().port();
    (s, p)
}

/// The request lines of the requests `s` gets within `wait`, answering each 200 (Via, From,
/// To, Call-ID, CSeq copied), with their bodies.
fn requests(s: &UdpSocket, wait: Duration) -> Vec<(String, String)> {
    let end = Instant::now() + wait;
    let mut buf = vec![0u8; 65536];
    let mut out = Vec::new();
    while Instant::now() < end {
        let Ok((n, from)) = s.recv_from(&mut buf) else {
            continue;
        };
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if m.starts_with("SIP/2.0 ") {
            continue;
        }
        let mut reply = "SIP/2.0 200 OK\r\n".to_string();
        for l in m.split("\r\n") {
            let lower = l.to_ascii_lowercase();
            if ["via:", "from:", "to:", "call-id:", "cseq:"]
                .iter()
                .any(|p| lower.starts_with(p))
            {
                reply.push_str(l);
                reply.push_str("\r\n");
            }
        }
        reply.push_str("Content-Length: 0\r\n\r\n");
        let _ = s.send_to(reply.as_bytes(), from);
        let line = m.lines().next().unwrap_or("").to_string();
        let body = m.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
        if !out.iter().any(|(l, b)| *l == line && *b == body) {
            out.push((line, body));
        }
    }
    out
}

/// The first request line `s` gets within 3 s.
fn forwarded(s: &UdpSocket) -> Option<String> {
    let end = Instant::now() + Duration::from_secs(3);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end {
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            return m.lines().next().map(str::to_string);
        }
    }
    None
}

fn send_message(srv: &Server, user: &str, body: &str, id: &str) -> String {
    let c = udp_client("127.0.0.1");
    let me = c.local_addr().unwrap();
    let ser = srv.sip;
    let req = format!(
        "MESSAGE sip:{user}@{ser} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{id}\r\n\
         Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@{REALM}>;tag=al-{id}\r\n\
         To: <sip:{user}@{REALM}>\r\nCall-ID: {id}\r\nCSeq: 1 MESSAGE\r\n\
         Contact: <sip:alice@{me}>\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // The 202 comes after the row is written (a 100 Trying may come first).
    c.send_to(req.as_bytes(), ser).unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end {
        if let Ok((n, _)) = c.recv_from(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !m.starts_with("SIP/2.0 1") {
                return status_line(&m).to_string();
            }
        }
    }
    "no reply".into()
}

/// A REGISTER of `user` at 127.0.0.1 (the host the MESSAGEs named), Contact the phone.
fn register(srv: &Server, phone: &UdpSocket, user: &str) -> String {
    let me = phone.local_addr().unwrap();
    let ser = srv.sip;
    let req = format!(
        "REGISTER sip:{ser} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-reg-{user}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=r-{user}\r\n\
         To: <sip:{user}@127.0.0.1>\r\nCall-ID: reg-{user}@{me}\r\nCSeq: 1 REGISTER\r\n\
         Contact: <sip:{user}@{me}>\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n"
    );
    phone.send_to(req.as_bytes(), ser).unwrap();
    let end = Instant::now() + Duration::from_secs(3);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end {
        if let Ok((n, _)) = phone.recv_from(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if m.starts_with("SIP/2.0 ") {
                return status_line(&m).to_string();
            }
        }
    }
    "no reply".into()
}

// ---------------------------------------------------------------- HTTP side

/// Runs a management command in the RPC console (as an operator would from serctl's FIFO).
fn console(hp: u16, cmd: &str, params: &[&str]) -> String {
    let (cookie, csrf) = admin_login(hp);
    let r = post(
        hp,
        "/ui/rpc/run",
        &cookie,
        &[
            ("csrf", &csrf),
            ("cmd", cmd),
            ("params", &params.join("\n")),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    r.body
}

/// Data rows in a table page's HTML.
fn rows_in(html: &str) -> usize {
    html.matches("class=\"danger\">Delete").count()
}

struct Ui {
    b: Browser,
    base: String,
    shots: PathBuf,
    name: &'static str,
}

impl Ui {
    fn open(srv: &Server, dir: &Path, name: &'static str) -> Ui {
        let b = Browser::start(free_port("127.0.0.1"), dir);
        let base = srv.base();
        browser_login(&b, &base);
        Ui {
            b,
            base,
            shots: shots_dir("web_tables"),
            name,
        }
    }

    fn shot(&self, step: &str) {
        self.b
            .screenshot(&self.shots.join(format!("{}-{step}.png", self.name)));
    }

    fn goto(&self, path: &str) {
        self.b.goto(&format!("{}{path}", self.base));
    }

    /// Fills the add form of the page at `path` and sends it: the flash message. (The page
    /// is loaded first, so that the flash found is the answer's, not an earlier one.)
    fn add(&self, path: &str, fields: &[(&str, &str)]) -> String {
        self.goto(path);
        for (k, v) in fields {
            self.b.type_into(&format!("#f-{k}"), v);
        }
        self.b.click_on("#add-button");
        self.b.text_of("#flash")
    }

    /// Types `q` into the page's search box and sends it; returns once the answer is shown
    /// (its address has the query), so nothing after acts on the page before.
    fn search(&self, path: &str, q: &str) {
        self.goto(path);
        self.b.type_into("#q", q);
        self.b.click_on("#search");
        let end = Instant::now() + Duration::from_secs(10);
        while !self.b.url().contains("?q=") {
            assert!(Instant::now() < end, "no search answer: {}", self.b.url());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Searches for `q` and deletes the first row found: the flash message.
    fn delete_found(&self, path: &str, q: &str) -> String {
        self.search(path, q);
        self.b.click_on("#rows button.danger");
        self.b.text_of("#flash")
    }

    /// Without the session (cookies gone) the page sends the browser to the login.
    fn without_session_goes_to_login(&self, path: &str) {
        self.b.delete_cookies();
        self.goto(path);
        assert!(self.b.at("/ui/login"), "{}", self.b.url());
    }

    /// Markup in the search box is shown as text (in the input and in no element).
    fn markup_is_text(&self, path: &str) {
        self.search(path, EVIL);
        assert!(self.b.find_all("script").is_empty(), "{}", self.b.source());
        assert!(self.b.source().contains("&lt;script&gt;"));
    }
}

// ---------------------------------------------------------------- tests

macro_rules! need_browser {
    () => {
        if !have_browser() {
            skip!("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)");
        }
    };
}

#[test]
fn aliases_added_in_the_page_route_the_next_request() {
    need_browser!();
    let dir = test_dir("aliases");
    let srv = start(&dir);
    let (gw, gport) = uas();
    assert_eq!(
        options(&srv, "sip:helpdesk@127.0.0.1", "sip:x@y.example", "a1").as_deref(),
        Some("SIP/2.0 404 No Such Alias")
    );
    // An alias made elsewhere whose name is markup.
    let out = console(
        srv.http,
        "ul_add",
        &["aliases", EVIL, "sip:m@h.example", "0", "1"],
    );
    assert!(out.contains("200"), "{out}");

    let ui = Ui::open(&srv, &dir, "aliases");
    ui.b.click_on("a[href='/ui/aliases']");
    assert!(ui.b.text_of("#rows").contains(EVIL), "{}", ui.b.source());
    assert!(ui.b.find_all("script").is_empty());
    let target = format!("sip:carol@127.0.0.1:{gport}");
    let flash = ui.add("/ui/aliases", &[("alias", "helpdesk"), ("uri", &target)]);
    assert_eq!(flash, format!("Alias helpdesk → {target} added."));
    let table = ui.b.text_of("#rows");
    assert!(
        table.contains("helpdesk") && table.contains(&target),
        "{table}"
    );
    ui.shot("01-added");
    // A bad target is refused with a reason.
    let flash = ui.add(
        "/ui/aliases",
        &[("alias", "x"), ("uri", "http://example.com")],
    );
    assert!(flash.contains("is not a valid URI"), "{flash}");

    // In effect at once: the alias's request goes to its target.
    assert_eq!(
        options(&srv, "sip:helpdesk@127.0.0.1", "sip:x@y.example", "a2"),
        None
    );
    assert_eq!(
        forwarded(&gw).as_deref(),
        Some(format!("OPTIONS {target} SIP/2.0").as_str())
    );

    ui.markup_is_text("/ui/aliases");
    let flash = ui.delete_found("/ui/aliases", "helpdesk");
    assert_eq!(flash, format!("Alias helpdesk → {target} deleted."));
    ui.shot("02-deleted");
    assert_eq!(
        options(&srv, "sip:helpdesk@127.0.0.1", "sip:x@y.example", "a3").as_deref(),
        Some("SIP/2.0 404 No Such Alias")
    );
    ui.without_session_goes_to_login("/ui/aliases");
}

#[test]
fn domains_added_in_the_page_are_local_for_the_next_request() {
    need_browser!();
    let dir = test_dir("domains");
    let srv = start(&dir);
    let from = "sip:someone@hosted.example";
    let ask = |id: &str| options(&srv, "sip:local@127.0.0.1", from, id);
    // The table is read (and kept: db_mode 1) before the change.
    assert_eq!(ask("d1").as_deref(), Some("SIP/2.0 403 From Foreign"));
    // A row another tool wrote, whose value is markup.
    let db = srv.ser.db.clone().unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO domain (domain, last_modified) VALUES (?1, '2026-01-01 00:00:00')",
            [EVIL],
        )
        .unwrap();

    let ui = Ui::open(&srv, &dir, "domains");
    ui.b.click_on("a[href='/ui/domains']");
    assert!(ui.b.text_of("#rows").contains(EVIL), "{}", ui.b.source());
    assert!(ui.b.find_all("script").is_empty());
    assert_eq!(
        ui.add("/ui/domains", &[("domain", "hosted.example")]),
        "Domain hosted.example added."
    );
    assert!(ui.b.text_of("#rows").contains("hosted.example"));
    ui.shot("01-added");
    assert_eq!(
        ui.add("/ui/domains", &[("domain", "hosted.example")]),
        "Domain hosted.example is there already."
    );
    assert!(ui
        .add("/ui/domains", &[("domain", EVIL)])
        .starts_with("A domain is 1 to 128"));
    // domain_reload told the running module: the next request's From is local.
    assert_eq!(ask("d2").as_deref(), Some("SIP/2.0 200 From Local"));

    ui.markup_is_text("/ui/domains");
    assert_eq!(
        ui.delete_found("/ui/domains", "hosted"),
        "Domain hosted.example deleted."
    );
    ui.shot("02-deleted");
    assert_eq!(ask("d3").as_deref(), Some("SIP/2.0 403 From Foreign"));
    ui.without_session_goes_to_login("/ui/domains");
}

#[test]
fn groups_granted_in_the_page_count_for_the_next_request() {
    need_browser!();
    let dir = test_dir("groups");
    let srv = start(&dir);
    let hp = srv.http;
    let (cookie, csrf) = admin_login(hp);
    let r = post(
        hp,
        "/ui/subscribers/create",
        &cookie,
        &[
            ("csrf", &csrf),
            ("username", "bob"),
            ("domain", REALM),
            ("password", "bob-pw"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let from = format!("sip:bob@{REALM}");
    let ask = |id: &str| options(&srv, "sip:vm@127.0.0.1", &from, id);
    // The "no" is cached for an hour (cache_ttl): only the page's flush makes the grant count.
    assert_eq!(ask("g1").as_deref(), Some("SIP/2.0 403 Not In Group"));
    let db = srv.ser.db.clone().unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO grp (username, domain, grp, last_modified) \
             VALUES (?1, 'test.example', 'ld', '2026-01-01 00:00:00')",
            [EVIL],
        )
        .unwrap();

    let ui = Ui::open(&srv, &dir, "groups");
    ui.b.click_on("a[href='/ui/groups']");
    assert!(ui.b.text_of("#rows").contains(EVIL), "{}", ui.b.source());
    assert!(ui.b.find_all("script").is_empty());
    // The domain field comes filled with SIP_DOMAIN.
    assert_eq!(
        ui.add("/ui/groups", &[("username", "bob"), ("grp", "voicemail")]),
        "bob@test.example is in group voicemail now."
    );
    assert!(ui.b.text_of("#rows").contains("voicemail"));
    ui.shot("01-added");
    assert_eq!(
        ui.add(
            "/ui/groups",
            &[("username", "nobody"), ("grp", "voicemail")]
        ),
        "No subscriber nobody@test.example."
    );
    assert_eq!(ask("g2").as_deref(), Some("SIP/2.0 200 In Group"));

    ui.markup_is_text("/ui/groups");
    assert_eq!(
        ui.delete_found("/ui/groups", "voicemail"),
        "bob@test.example is no longer in group voicemail."
    );
    ui.shot("02-deleted");
    assert_eq!(ask("g3").as_deref(), Some("SIP/2.0 403 Not In Group"));
    ui.without_session_goes_to_login("/ui/groups");
}

#[test]
fn prefixes_added_in_the_page_route_the_next_number() {
    need_browser!();
    let dir = test_dir("pdt");
    let srv = start(&dir);
    let (gw, gport) = uas();
    let gw_domain = format!("127.0.0.1:{gport}");
    assert_eq!(
        options(&srv, "sip:4930123@127.0.0.1", "sip:x@y.example", "p1").as_deref(),
        Some("SIP/2.0 404 No Such Prefix")
    );
    // A pair made elsewhere whose domain is markup.
    let out = console(srv.http, "pdt_add", &["77", EVIL]);
    assert!(out.contains("200"), "{out}");

    let ui = Ui::open(&srv, &dir, "pdt");
    ui.b.click_on("a[href='/ui/pdt']");
    assert!(ui.b.text_of("#rows").contains(EVIL), "{}", ui.b.source());
    assert!(ui.b.find_all("script").is_empty());
    assert_eq!(
        ui.add("/ui/pdt", &[("prefix", "49"), ("domain", &gw_domain)]),
        format!("Prefix 49 → {gw_domain} added.")
    );
    assert!(ui.b.text_of("#rows").contains(&gw_domain));
    ui.shot("01-added");
    assert_eq!(
        ui.add("/ui/pdt", &[("prefix", "4x"), ("domain", "other.example")]),
        "Not added: 400 Bad Prefix"
    );
    // pdt_add changed the running table: the number goes to the gateway, prefix stripped.
    assert_eq!(
        options(&srv, "sip:4930123@127.0.0.1", "sip:x@y.example", "p2"),
        None
    );
    assert_eq!(
        forwarded(&gw).as_deref(),
        Some(format!("OPTIONS sip:30123@{gw_domain} SIP/2.0").as_str())
    );

    ui.markup_is_text("/ui/pdt");
    assert_eq!(
        ui.delete_found("/ui/pdt", &gw_domain),
        format!("Domain {gw_domain} and its prefix deleted.")
    );
    ui.shot("02-deleted");
    assert_eq!(
        options(&srv, "sip:4930123@127.0.0.1", "sip:x@y.example", "p3").as_deref(),
        Some("SIP/2.0 404 No Such Prefix")
    );
    ui.without_session_goes_to_login("/ui/pdt");
}

#[test]
fn a_stored_message_deleted_in_the_page_is_not_delivered() {
    need_browser!();
    let dir = test_dir("messages");
    let srv = start(&dir);
    assert_eq!(
        send_message(&srv, "dave", "keep me", "m1"),
        "SIP/2.0 202 Accepted"
    );
    assert_eq!(
        send_message(&srv, "dave", EVIL, "m2"),
        "SIP/2.0 202 Accepted"
    );

    let ui = Ui::open(&srv, &dir, "messages");
    ui.b.click_on("a[href='/ui/messages']");
    let table = ui.b.text_of("#rows");
    assert!(table.contains("keep me") && table.contains(EVIL), "{table}");
    // Stored for the Request-URI's user and host (m_store(0)).
    assert!(table.contains("dave@127.0.0.1"), "{table}");
    assert!(ui.b.find_all("script").is_empty(), "{}", ui.b.source());
    assert!(ui.b.find_all("#add").is_empty(), "no add form for messages");
    ui.shot("01-listed");
    ui.markup_is_text("/ui/messages");
    let flash = ui.delete_found("/ui/messages", "script");
    assert!(
        flash.starts_with("Message ") && flash.ends_with(" deleted."),
        "{flash}"
    );
    let table = ui.b.text_of("#rows");
    assert!(
        table.contains("keep me") && !table.contains(EVIL),
        "{table}"
    );
    ui.shot("02-deleted");

    // dave registers: m_dump delivers what is left, and only that.
    let (phone, _) = uas();
    assert_eq!(register(&srv, &phone, "dave"), "SIP/2.0 200 OK");
    let got = requests(&phone, Duration::from_secs(3));
    let bodies: Vec<&str> = got
        .iter()
        .filter(|(l, _)| l.starts_with("MESSAGE "))
        .map(|(_, b)| b.as_str())
        .collect();
    assert_eq!(bodies, ["keep me"], "{got:?}\n{}", srv.ser.log_text());
    ui.without_session_goes_to_login("/ui/messages");
}

/// Every page and every action of the tables needs a session, and every action the session's
/// CSRF token; refused actions change nothing.
#[test]
fn table_pages_need_a_session_and_the_csrf_token() {
    let dir = test_dir("security");
    let srv = start(&dir);
    let hp = srv.http;
    for page in [
        "/ui/aliases",
        "/ui/domains",
        "/ui/groups",
        "/ui/pdt",
        "/ui/messages",
    ] {
        let r = http(hp, "GET", page, &[], "");
        assert_eq!(r.status, 303, "{page}: {r:?}");
        assert_eq!(r.header("location"), Some("/ui/login"), "{page}");
        let r = get(hp, page, "ser_session=0123456789abcdef");
        assert_eq!(r.status, 303, "{page}: {r:?}");
    }
    let actions: &[(&str, &[(&str, &str)])] = &[
        (
            "/ui/aliases/add",
            &[("alias", "sec"), ("uri", "sip:a@b.example")],
        ),
        (
            "/ui/aliases/delete",
            &[("aor", "sec"), ("contact", "sip:a@b.example")],
        ),
        ("/ui/domains/add", &[("domain", "sec.example")]),
        ("/ui/domains/delete", &[("domain", "sec.example")]),
        (
            "/ui/groups/add",
            &[("username", "sec"), ("domain", REALM), ("grp", "g")],
        ),
        (
            "/ui/groups/delete",
            &[("username", "sec"), ("domain", REALM), ("grp", "g")],
        ),
        (
            "/ui/pdt/add",
            &[("prefix", "55"), ("domain", "sec.example")],
        ),
        ("/ui/pdt/delete", &[("domain", "sec.example")]),
        ("/ui/messages/delete", &[("mid", "1")]),
    ];
    let (cookie, csrf) = admin_login(hp);
    for (path, fields) in actions {
        // No session.
        let mut with: Vec<(&str, &str)> = vec![("csrf", &csrf)];
        with.extend_from_slice(fields);
        let r = post(hp, path, "ser_session=0123456789abcdef", &with);
        assert_eq!(r.status, 403, "{path}: {r:?}");
        // A session, no token; a wrong token; a foreign origin.
        let r = post(hp, path, &cookie, fields);
        assert_eq!(r.status, 403, "{path}: {r:?}");
        assert!(r.body.contains("CSRF"), "{path}: {}", r.body);
        let mut wrong: Vec<(&str, &str)> = vec![("csrf", "wrong")];
        wrong.extend_from_slice(fields);
        assert_eq!(post(hp, path, &cookie, &wrong).status, 403, "{path}");
        let r = http(
            hp,
            "POST",
            path,
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Cookie", &cookie),
                ("Origin", "http://evil.example"),
            ],
            &webdriver::form(&with),
        );
        assert_eq!(r.status, 403, "{path}: {r:?}");
    }
    // Nothing was added.
    for page in ["/ui/aliases", "/ui/domains", "/ui/groups", "/ui/pdt"] {
        let r = get(hp, page, &cookie);
        assert_eq!(r.status, 200, "{page}: {r:?}");
        assert_eq!(rows_in(&r.body), 0, "{page}: {}", r.body);
    }
    // With the token the same add goes through.
    let r = post(
        hp,
        "/ui/domains/add",
        &cookie,
        &[("csrf", &csrf), ("domain", "sec.example")],
    );
    assert_eq!(r.status, 303, "{r:?}");
    let r = get(hp, "/ui/domains", &cookie);
    assert_eq!(rows_in(&r.body), 1, "{}", r.body);
    assert!(r.body.contains("Domain sec.example added."), "{}", r.body);
}

/// The tables page through: 60 domains are 3 pages, searched on the server.
#[test]
fn table_pages_are_paged_and_searched() {
    let dir = test_dir("paging");
    let srv = start(&dir);
    let hp = srv.http;
    let (cookie, csrf) = admin_login(hp);
    for i in 0..60 {
        let d = format!("d{i:02}.example");
        let r = post(
            hp,
            "/ui/domains/add",
            &cookie,
            &[("csrf", &csrf), ("domain", &d)],
        );
        assert_eq!(r.status, 303, "{r:?}");
        let r = post(
            hp,
            "/ui/pdt/add",
            &cookie,
            &[
                ("csrf", &csrf),
                ("prefix", &format!("9{i:02}")),
                ("domain", &d),
            ],
        );
        assert_eq!(r.status, 303, "{r:?}");
    }
    for page in ["/ui/domains", "/ui/pdt"] {
        let p1 = get(hp, page, &cookie);
        assert_eq!(rows_in(&p1.body), 25, "{page}");
        assert!(p1.body.contains("id=\"next\""), "{page}");
        assert!(!p1.body.contains("id=\"prev\""), "{page}");
        let p3 = get(hp, &format!("{page}?page=3"), &cookie);
        assert_eq!(rows_in(&p3.body), 10, "{page}");
        assert!(!p3.body.contains("id=\"next\""), "{page}");
        let found = get(hp, &format!("{page}?q=D4"), &cookie);
        assert_eq!(rows_in(&found.body), 10, "{page}: case-insensitive search");
        let none = get(hp, &format!("{page}?q=%25"), &cookie);
        assert_eq!(
            rows_in(&none.body),
            0,
            "{page}: % is a character, not a wildcard"
        );
    }
}

/// The domain page on another database: add, the SIP check, delete.
fn domains_on(url: &str) {
    let dir = test_dir(&unique("db"));
    let srv = start_on(&dir, &[("SER_DB_URL", url)]);
    let hp = srv.http;
    let from = "sip:someone@backend.example";
    let ask = |id: &str| options(&srv, "sip:local@127.0.0.1", from, id);
    assert_eq!(ask("b1").as_deref(), Some("SIP/2.0 403 From Foreign"));
    let (cookie, csrf) = admin_login(hp);
    let r = post(
        hp,
        "/ui/domains/add",
        &cookie,
        &[("csrf", &csrf), ("domain", "backend.example")],
    );
    assert_eq!(r.status, 303, "{r:?}");
    let list = get(hp, "/ui/domains?q=backend", &cookie);
    assert_eq!(rows_in(&list.body), 1, "{}", list.body);
    assert_eq!(ask("b2").as_deref(), Some("SIP/2.0 200 From Local"));
    let r = post(
        hp,
        "/ui/domains/delete",
        &cookie,
        &[("csrf", &csrf), ("domain", "backend.example")],
    );
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(ask("b3").as_deref(), Some("SIP/2.0 403 From Foreign"));
    assert_eq!(rows_in(&get(hp, "/ui/domains", &cookie).body), 0);
}

#[test]
fn domains_page_on_mariadb() {
    let db = match web::MariaDb::create(&unique("ser_tables")) {
        Ok(d) => d,
        Err(e) => skip!("{e}"),
    };
    domains_on(&db.url);
}

#[test]
fn domains_page_on_postgresql() {
    let db = match web::PgSchema::create(&unique("ser_tables")) {
        Ok(d) => d,
        Err(e) => skip!("{e}"),
    };
    domains_on(&db.url);
}

/// With usrloc's `use_domain`, an alias is `user@domain` (the form has the domain, filled with
/// SIP_DOMAIN), and lookup("aliases") finds it by the Request-URI's user and host.
#[test]
fn aliases_with_use_domain_are_user_at_domain() {
    let dir = test_dir("aliases-domain");
    let cfg = CFG.replace(
        "modparam(\"usrloc\", \"db_mode\", 0)",
        "modparam(\"usrloc\", \"db_mode\", 0)\nmodparam(\"usrloc\", \"use_domain\", 1)",
    );
    assert!(cfg.contains("use_domain"));
    let srv = Server::start(&dir, &cfg, None, &[("SIP_DOMAIN", REALM)], &[]);
    let hp = srv.http;
    let (gw, gport) = uas();
    let (cookie, csrf) = admin_login(hp);
    let page = get(hp, "/ui/aliases", &cookie);
    assert!(
        page.body.contains(r#"id="f-domain" value="test.example""#),
        "{}",
        page.body
    );
    let target = format!("sip:erin@127.0.0.1:{gport}");
    let r = post(
        hp,
        "/ui/aliases/add",
        &cookie,
        &[
            ("csrf", &csrf),
            ("alias", "sales"),
            ("domain", REALM),
            ("uri", &target),
        ],
    );
    assert_eq!(r.status, 303, "{r:?}");
    let page = get(hp, "/ui/aliases", &cookie);
    assert!(
        page.body
            .contains(&format!("Alias sales@{REALM} → {target} added.")),
        "{}",
        page.body
    );
    assert_eq!(rows_in(&page.body), 1);
    // Another domain's "sales" is not this alias.
    assert_eq!(
        options(&srv, "sip:sales@other.example", "sip:x@y.example", "u1").as_deref(),
        Some("SIP/2.0 404 No Such Alias")
    );
    assert_eq!(
        options(&srv, &format!("sip:sales@{REALM}"), "sip:x@y.example", "u2"),
        None
    );
    assert_eq!(
        forwarded(&gw).as_deref(),
        Some(format!("OPTIONS {target} SIP/2.0").as_str())
    );
}
