//! The web UI's subscriber side (`--web-selfcare`) end to end: the real `ser` on 127.0.0.1 with
//! its database (SQLite; MariaDB and PostgreSQL for login and password change), a real headless
//! Chromium through chromedriver for the subscriber's pages, sipsak REGISTERs with the old and
//! the new password, a SIPp UAC calling a SIPp UAS through the server's acc-using script, and
//! plain HTTP requests for what a browser would not send (no session, no CSRF token, another
//! subscriber's data, an administrator's session, a login storm). Screenshots go to the test's
//! temporary directory.
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

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dataplane::auth::digest::{self, Algorithm, Qop, ResponseInput};
use net::*;
use web::{admin_login, get, have_browser, post, MariaDb, PgSchema, Server, EVIL};
use webdriver::{form, http, input_value, Browser, Http};

const REALM: &str = "test.example";

/// Registrar with digest authentication (HA1 columns), usrloc in memory, the `aliases` table
/// named (so `ul_add aliases` works), and the Admin Guide's acc.cfg routing for everything else:
/// every transaction flagged, INVITEs record-routed, relayed statefully; acc writes `acc` rows
/// (db_flag) and `missed_calls` rows (db_missed_flag).
const CFG: &str = r#"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "acc.so"
modparam("auth", "secret", "selfcare-secret")
modparam("usrloc", "db_mode", 0)
modparam("acc", "db_flag", 1)
modparam("acc", "db_missed_flag", 1)
route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		break;
	};
	if (loose_route()) { t_relay(); break; };
	if (method == "REGISTER") {
		if (!www_authorize("test.example", "subscriber")) {
			www_challenge("test.example", "1");
			break;
		};
		save("location");
		break;
	};
	if (method == "OPTIONS") {
		lookup("aliases");
		sl_send_reply("200", "OK");
		break;
	};
	setflag(1);
	if (method == "INVITE") record_route();
	if (!t_relay()) {
		sl_reply_error();
		break;
	};
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
    web::test_dir("selfcare", name)
}

/// ser on SIP port `port` (from this file's range: sipsak wants ports ≤ 9999), with the web UI
/// and self-care; `db` is SER_DB_URL (None: a SQLite file of its own).
fn start(dir: &Path, port: u16, db: Option<&str>) -> Server {
    start_with(dir, port, db, &[])
}

fn start_with(dir: &Path, port: u16, db: Option<&str>, extra: &[String]) -> Server {
    start_cfg(CFG, dir, port, db, extra)
}

fn start_cfg(cfg: &str, dir: &Path, port: u16, db: Option<&str>, extra: &[String]) -> Server {
    let mut args = vec!["--web-selfcare".to_string()];
    args.extend(extra.iter().cloned());
    // SIP_DOMAIN: the domain of a login without one, and of signed-up subscribers.
    let mut env: Vec<(&str, &str)> = vec![("SIP_DOMAIN", REALM)];
    env.extend(db.iter().map(|u| ("SER_DB_URL", *u)));
    Server::start(dir, cfg, Some(port), &env, &args)
}

// ---------------------------------------------------------------- HTTP

/// The administrator provisions subscriber `user` with `pw` (as an operator would first).
fn provision(hp: u16, user: &str, pw: &str) {
    let (cookie, csrf) = admin_login(hp);
    let r = post(
        hp,
        "/ui/subscribers/create",
        &cookie,
        &[
            ("csrf", &csrf),
            ("username", user),
            ("domain", REALM),
            ("password", pw),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
}

/// One subscriber login attempt over plain HTTP.
fn self_login_attempt(hp: u16, user: &str, pw: &str) -> Http {
    let page = http(hp, "GET", "/ui/self/login", &[], "");
    assert_eq!(page.status, 200);
    let token = input_value(&page.body, "csrf").unwrap();
    post(
        hp,
        "/ui/self/login",
        &format!("ser_self_login={token}"),
        &[("csrf", &token), ("user", user), ("password", pw)],
    )
}

/// A subscriber's session: (cookie, CSRF token).
fn self_login(hp: u16, user: &str, pw: &str) -> (String, String) {
    let r = self_login_attempt(hp, user, pw);
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/ui/self/registrations"));
    let cookie = r
        .set_cookie("ser_self")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = get(hp, "/ui/self/registrations", &cookie);
    assert_eq!(page.status, 200, "{page:?}");
    (cookie, input_value(&page.body, "csrf").unwrap())
}

// ---------------------------------------------------------------- SIP

/// sipsak's REGISTER (`-U`: challenge, credentials): whether it was accepted.
fn sipsak_register(srv: &Server, user: &str, pw: &str, contact_port: u16) -> bool {
    let o = Command::new("timeout")
        .args(["20", "sipsak", "-U", "-C"])
        .arg(format!("sip:{user}@127.0.0.1:{contact_port}"))
        .args(["-x", "300", "-a", pw, "-u", user, "-s"])
        .arg(format!("sip:{user}@{}", srv.sip))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    o.status.code() == Some(0)
}

fn register_msg(sock: &UdpSocket, user: &str, auth: Option<&str>, cseq: u32, ua: &str) -> String {
    let me = sock.local_addr().unwrap();
    let mut s = format!(
        "REGISTER sip:{REALM} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-sc{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@{REALM}>;tag=s1\r\n\
         To: <sip:{user}@{REALM}>\r\n\
         Call-ID: selfcare-{user}-{}@127.0.0.1\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{user}@{me}>\r\n\
         Expires: 300\r\n\
         User-Agent: {ua}\r\n",
        me.port()
    );
    if let Some(a) = auth {
        s.push_str(&format!("Authorization: {a}\r\n"));
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

/// A phone's REGISTER (challenge, then credentials) with its User-Agent: the final status line.
fn register_ua(sock: &UdpSocket, to: SocketAddr, user: &str, pw: &str, ua: &str) -> String {
    let r = udp_exchange(sock, to, register_msg(sock, user, None, 1, ua).as_bytes()).unwrap();
    assert_eq!(status_line(&r), "SIP/2.0 401 Unauthorized", "{r}");
    let ch = header(&r, "WWW-Authenticate").unwrap();
    let c = dataplane::wire::digest::Credentials::parse(ch.as_bytes()).unwrap();
    let nonce = String::from_utf8_lossy(c.param(b"nonce").unwrap()).into_owned();
    let ha1 = digest::ha1(
        Algorithm::Md5,
        user.as_bytes(),
        REALM.as_bytes(),
        pw.as_bytes(),
    );
    let resp = digest::response(&ResponseInput {
        alg: Algorithm::Md5,
        ha1: ha1.as_bytes(),
        nonce: nonce.as_bytes(),
        nc: b"00000001",
        cnonce: b"scc",
        qop: Qop::Auth,
        method: b"REGISTER",
        uri: format!("sip:{REALM}").as_bytes(),
        body: b"",
    });
    let auth = format!(
        "Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"sip:{REALM}\", \
         response=\"{}\", qop=auth, nc=00000001, cnonce=\"scc\"",
        String::from_utf8_lossy(resp.as_bytes())
    );
    let r = udp_exchange(
        sock,
        to,
        register_msg(sock, user, Some(&auth), 2, ua).as_bytes(),
    )
    .unwrap();
    status_line(&r).to_string()
}

/// SIPp UAC scenario: alice (display name markup) calls bob at the UAS through ser, ACK, BYE.
fn uac_scenario(uas: u16) -> String {
    let from = format!("\"{EVIL}\" <sip:alice@{REALM}>;tag=[pid]SIPpTag00[call_number]");
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="selfcare placed call">
  <send retrans="500">
    <![CDATA[
      INVITE sip:bob@127.0.0.1:{uas} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: {from}
      To: <sip:bob@127.0.0.1:{uas}>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:alice@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: {from}
      To: <sip:bob@127.0.0.1:{uas}>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="200"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: {from}
      To: <sip:bob@127.0.0.1:{uas}>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"#
    )
}

// ---------------------------------------------------------------- tests

#[test]
fn subscriber_changes_password_sees_phones_and_calls() {
    if !have_browser() {
        skip!("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)");
    }
    if !have("sipsak") || !have("sipp") {
        skip!("sipsak and sipp are not installed (apt-get install sipsak sip-tester)");
    }
    let dir = test_dir("browser");
    let srv = start(&dir, 7401, None);
    provision(srv.http, "alice", "alice-pw-1");
    let base = format!("http://127.0.0.1:{}", srv.http);
    let b = Browser::start(free_port("127.0.0.1"), &dir);
    let shot = |name: &str| b.screenshot(&dir.join(format!("{name}.png")));

    // No page without a session; a wrong password is refused.
    b.goto(&format!("{base}/ui/self/calls"));
    assert!(b.at("/ui/self/login"), "{}", b.url());
    shot("01-login");
    b.type_into("#user", "alice@test.example");
    b.type_into("#password", "not-it");
    b.click_on("#login");
    assert!(b.text_of("#error").contains("Wrong name or password"));
    b.type_into("#user", "alice@test.example");
    b.type_into("#password", "alice-pw-1");
    b.click_on("#login");
    assert!(b.at("/ui/self/registrations"), "{}", b.url());
    assert_eq!(b.text_of("#me"), "alice@test.example");
    let c = b
        .cookies()
        .into_iter()
        .find(|c| c["name"] == "ser_self")
        .expect("a subscriber session cookie");
    assert_eq!(c["httpOnly"], true, "{c}");
    assert_eq!(c["sameSite"], "Strict", "{c}");

    // Change the password in the page.
    b.click_on("a[href='/ui/self/password']");
    b.type_into("#old", "alice-pw-1");
    b.type_into("#new", "alice-pw-2");
    b.type_into("#again", "alice-pw-2");
    shot("02-password");
    b.click_on("#save");
    assert!(
        b.text_of("#flash").contains("Password changed"),
        "{}",
        b.source()
    );
    // The old password is refused now (401), the new one registers.
    assert!(!sipsak_register(&srv, "alice", "alice-pw-1", 7402));
    assert!(sipsak_register(&srv, "alice", "alice-pw-2", 7402));
    // A second phone whose User-Agent is markup.
    let phone = udp_client("127.0.0.1");
    let ua = format!("{EVIL} Phone/1.0");
    assert_eq!(
        register_ua(&phone, srv.sip, "alice", "alice-pw-2", &ua),
        "SIP/2.0 200 OK"
    );
    b.click_on("a[href='/ui/self/registrations']");
    let phones = b.text_of("#bindings");
    assert!(phones.contains("sip:alice@127.0.0.1:7402"), "{phones}");
    assert!(phones.contains(&ua), "shown as text: {phones}");
    assert!(b.find_all("script").is_empty(), "{}", b.source());
    shot("03-registrations");

    // A call alice places (SIPp UAC → ser → SIPp UAS) shows in her placed calls.
    let uas_port = 7403;
    let _uas = sipp_uas(uas_port);
    let scen = dir.join("uac.xml");
    std::fs::write(&scen, uac_scenario(uas_port)).unwrap();
    let out = Command::new("timeout")
        .args(["30", "sipp", "-sf"])
        .arg(&scen)
        .arg(srv.sip.to_string())
        .args(["-i", "127.0.0.1", "-p", "7404", "-m", "1", "-nostdin"])
        .args(["-timeout", "20s"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        srv.ser.log_text()
    );
    let mut calls = String::new();
    for _ in 0..50 {
        b.click_on("a[href='/ui/self/calls']");
        calls = b.text_of("#calls");
        if calls.contains("200 OK") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(calls.contains("200 OK"), "{calls}");
    assert!(calls.contains("sip:bob@127.0.0.1"), "{calls}");
    assert!(calls.contains(EVIL), "display name as text: {calls}");
    assert!(b.find_all("script").is_empty(), "{}", b.source());
    shot("04-placed-calls");

    // Aliases: add one, refuse a taken name.
    b.click_on("a[href='/ui/self/aliases']");
    b.type_into("#alias", "ali");
    b.click_on("#add");
    assert_eq!(b.text_of("#flash"), "Alias ali added.");
    assert!(b.text_of("#aliases").contains("ali"));
    b.goto(&format!("{base}/ui/self/aliases"));
    b.type_into("#alias", "alice");
    b.click_on("#add");
    assert_eq!(b.text_of("#flash"), "alice is taken.");
    shot("05-aliases");
    b.click_on("a[href='/ui/self/messages']");
    assert!(b.text_of("#messages").contains("No stored message"));
    b.click_on("a[href='/ui/self/missed']");
    assert!(b.text_of("#calls").contains("No call"));

    // Log out: closed again.
    b.click_on("header form.logout button");
    assert!(b.at("/ui/self/login"), "{}", b.url());
    b.goto(&format!("{base}/ui/self/registrations"));
    assert!(b.at("/ui/self/login"), "{}", b.url());
    drop(b);
    eprintln!("web_selfcare screenshots in {}", dir.display());
}

#[test]
fn no_page_without_a_session_and_csrf_on_every_post() {
    let dir = test_dir("nosession");
    let srv = start(&dir, 7411, None);
    let hp = srv.http;
    provision(hp, "carol", "carol-pw");
    for path in [
        "/ui/self",
        "/ui/self/registrations",
        "/ui/self/password",
        "/ui/self/calls",
        "/ui/self/missed",
        "/ui/self/messages",
        "/ui/self/aliases",
    ] {
        let r = get(hp, path, "ser_self=0123456789abcdef");
        assert_eq!(r.status, 303, "{path}: {r:?}");
        assert_eq!(r.header("location"), Some("/ui/self/login"), "{path}");
    }
    for path in [
        "/ui/self/logout",
        "/ui/self/password",
        "/ui/self/aliases/add",
        "/ui/self/aliases/remove",
    ] {
        let r = post(hp, path, "ser_self=0123", &[("csrf", "x"), ("alias", "a")]);
        assert_eq!(r.status, 403, "{path}: {r:?}");
    }
    // With a session but without (or with a wrong) token nothing changes.
    let (cookie, csrf) = self_login(hp, "carol@test.example", "carol-pw");
    let change = [("old", "carol-pw"), ("new", "x-pw"), ("again", "x-pw")];
    let r = post(hp, "/ui/self/password", &cookie, &change);
    assert_eq!(r.status, 403);
    assert!(r.body.contains("CSRF"));
    let zeros = "0".repeat(64);
    let mut wrong = vec![("csrf", zeros.as_str())];
    wrong.extend(change);
    assert_eq!(post(hp, "/ui/self/password", &cookie, &wrong).status, 403);
    // A foreign Origin is refused even with the token.
    let mut ok = vec![("csrf", csrf.as_str())];
    ok.extend(change);
    let r = http(
        hp,
        "POST",
        "/ui/self/password",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &cookie),
            ("Origin", "http://evil.example"),
        ],
        &form(&ok),
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        self_login_attempt(hp, "carol@test.example", "x-pw").status,
        401
    );
    // The login form's own token.
    let r = post(
        hp,
        "/ui/self/login",
        "ser_self_login=abd",
        &[
            ("csrf", "abc"),
            ("user", "carol@test.example"),
            ("password", "carol-pw"),
        ],
    );
    assert_eq!(r.status, 403);
    // The right token changes it.
    assert_eq!(post(hp, "/ui/self/password", &cookie, &ok).status, 303);
    assert_eq!(
        self_login_attempt(hp, "carol@test.example", "x-pw").status,
        303
    );
}

#[test]
fn sessions_of_subscribers_and_administrators_are_apart() {
    let dir = test_dir("apart");
    let srv = start(&dir, 7421, None);
    let hp = srv.http;
    provision(hp, "dave", "dave-pw");
    let (self_cookie, _) = self_login(hp, "dave@test.example", "dave-pw");
    let self_id = self_cookie.trim_start_matches("ser_self=");
    // A subscriber session opens no administrator page, under either cookie name.
    for c in [format!("ser_session={self_id}"), self_cookie.clone()] {
        let r = get(hp, "/ui/subscribers", &c);
        assert_eq!(r.status, 303, "{r:?}");
        assert_eq!(r.header("location"), Some("/ui/login"));
    }
    // And an administrator's session is no subscriber session.
    let (admin_cookie, _) = admin_login(hp);
    let admin_id = admin_cookie.trim_start_matches("ser_session=");
    for c in [format!("ser_self={admin_id}"), admin_cookie.clone()] {
        let r = get(hp, "/ui/self/registrations", &c);
        assert_eq!(r.status, 303, "{r:?}");
        assert_eq!(r.header("location"), Some("/ui/self/login"));
    }
    // The administrators' login does not take SIP credentials.
    let page = http(hp, "GET", "/ui/login", &[], "");
    let token = input_value(&page.body, "csrf").unwrap();
    let r = post(
        hp,
        "/ui/login",
        &format!("ser_login={token}"),
        &[("csrf", &token), ("user", "dave"), ("password", "dave-pw")],
    );
    assert_eq!(r.status, 401);
}

#[test]
fn a_subscriber_sees_and_changes_only_their_own_data() {
    let dir = test_dir("own");
    let srv = start(&dir, 7431, None);
    let hp = srv.http;
    provision(hp, "alice", "alice-pw");
    provision(hp, "bob", "bob-pw");
    let phone = udp_client("127.0.0.1");
    assert_eq!(
        register_ua(&phone, srv.sip, "bob", "bob-pw", "BobPhone/1.0"),
        "SIP/2.0 200 OK"
    );
    let (bob, bob_csrf) = self_login(hp, "bob@test.example", "bob-pw");
    let r = post(
        hp,
        "/ui/self/aliases/add",
        &bob,
        &[("csrf", &bob_csrf), ("alias", "bobby")],
    );
    assert_eq!(r.status, 303);
    assert!(get(hp, "/ui/self/aliases", &bob).body.contains("bobby"));
    let page = get(hp, "/ui/self/registrations", &bob).body;
    assert!(page.contains("BobPhone"), "{page}");

    let (alice, csrf) = self_login(hp, "alice@test.example", "alice-pw");
    // Naming bob in the URL changes nothing: the session says who.
    for path in [
        "/ui/self/registrations?username=bob&domain=test.example",
        "/ui/self/aliases?username=bob",
        "/ui/self/calls?username=bob&domain=test.example",
    ] {
        let r = get(hp, path, &alice);
        assert_eq!(r.status, 200, "{path}");
        assert!(!r.body.contains("BobPhone"), "{path}: {}", r.body);
        assert!(!r.body.contains("bobby"), "{path}: {}", r.body);
        assert!(r.body.contains("alice@test.example"));
    }
    // bob's alias cannot be removed or taken by alice; bob's password cannot be changed by her.
    let r = post(
        hp,
        "/ui/self/aliases/remove",
        &alice,
        &[("csrf", &csrf), ("alias", "bobby")],
    );
    assert_eq!(r.status, 303);
    assert!(get(hp, "/ui/self/aliases", &bob).body.contains("bobby"));
    for taken in ["bobby", "bob"] {
        post(
            hp,
            "/ui/self/aliases/add",
            &alice,
            &[("csrf", &csrf), ("alias", taken)],
        );
        let page = get(hp, "/ui/self/aliases", &alice).body;
        assert!(page.contains(&format!("{taken} is taken.")), "{page}");
    }
    let r = post(
        hp,
        "/ui/self/password",
        &alice,
        &[
            ("csrf", &csrf),
            ("username", "bob"),
            ("old", "bob-pw"),
            ("new", "stolen"),
            ("again", "stolen"),
        ],
    );
    assert_eq!(r.status, 401, "bob's password is not alice's current one");
    assert_eq!(
        self_login_attempt(hp, "bob@test.example", "bob-pw").status,
        303
    );
    // bob's CSRF token is not alice's.
    let r = post(
        hp,
        "/ui/self/aliases/add",
        &alice,
        &[("csrf", &bob_csrf), ("alias", "al")],
    );
    assert_eq!(r.status, 403);
}

#[test]
fn subscriber_login_failures_are_throttled() {
    let dir = test_dir("throttle");
    let srv = start(&dir, 7441, None);
    let hp = srv.http;
    provision(hp, "erin", "erin-pw");
    for i in 0..5 {
        let r = self_login_attempt(hp, "erin@test.example", &format!("guess-{i}"));
        assert_eq!(r.status, 401, "attempt {i}");
        assert!(r.set_cookie("ser_self").is_none());
    }
    let r = self_login_attempt(hp, "erin@test.example", "erin-pw");
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r.body.contains("Too many failed logins"));
    assert!(r.set_cookie("ser_self").is_none());
    // The log line comes from the logging thread, maybe a moment later.
    assert!(srv
        .ser
        .wait_log("web: failed subscriber login", Duration::from_secs(3)));
}

/// Login, password change in the page's form, and the REGISTER that needs the new password,
/// on the database at `url`.
fn login_and_password_change(url: &str, port: u16) {
    let dir = test_dir(&unique("db"));
    let srv = start(&dir, port, Some(url));
    let hp = srv.http;
    provision(hp, "frank", "frank-pw-1");
    let (cookie, csrf) = self_login(hp, "frank@test.example", "frank-pw-1");
    let r = post(
        hp,
        "/ui/self/password",
        &cookie,
        &[
            ("csrf", &csrf),
            ("old", "frank-pw-1"),
            ("new", "frank-pw-2"),
            ("again", "frank-pw-2"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let phone = udp_client("127.0.0.1");
    assert_eq!(
        register_ua(&phone, srv.sip, "frank", "frank-pw-1", "P/1"),
        "SIP/2.0 401 Unauthorized"
    );
    assert_eq!(
        register_ua(&phone, srv.sip, "frank", "frank-pw-2", "P/1"),
        "SIP/2.0 200 OK"
    );
    assert_eq!(
        self_login_attempt(hp, "frank@test.example", "frank-pw-1").status,
        401
    );
    assert_eq!(
        self_login_attempt(hp, "frank@test.example", "frank-pw-2").status,
        303
    );
}

#[test]
fn login_and_password_change_on_mariadb() {
    let db = match MariaDb::create(&unique("ser_self")) {
        Ok(d) => d,
        Err(e) => skip!("{e}"),
    };
    login_and_password_change(&db.url, 7451);
}

#[test]
fn login_and_password_change_on_postgresql() {
    let db = match PgSchema::create(&unique("ser_self")) {
        Ok(d) => d,
        Err(e) => skip!("{e}"),
    };
    login_and_password_change(&db.url, 7461);
}

fn sqlite(db: &Path, sql: &str) -> String {
    let o = Command::new("sqlite3").arg(db).arg(sql).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn sign_up_with_mail_confirmation() {
    if !have_browser() {
        skip!("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)");
    }
    if !have("sqlite3") {
        skip!("sqlite3 is not installed (apt-get install sqlite3)");
    }
    let dir = test_dir("signup");
    // The mail command: a script of the test's that keeps the mail in a file.
    let mailbox = dir.join("mail.txt");
    let mailer = dir.join("mailer.sh");
    std::fs::write(
        &mailer,
        format!(
            "#!/bin/sh\n{{ echo \"to: $3\"; echo \"subject: $2\"; cat; }} > {}\n",
            mailbox.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&mailer)
        .status()
        .unwrap();
    let srv = start_with(
        &dir,
        7471,
        None,
        &[format!("--web-signup-mail={}", mailer.display())],
    );
    let hp = srv.http;
    let base = format!("http://127.0.0.1:{hp}");
    // The schema exists once the server has used the database.
    provision(hp, "existing", "pw");
    let db = srv.ser.db.clone().unwrap();
    let stale = "ab".repeat(32);
    sqlite(&db, "INSERT INTO reserved (username) VALUES ('postmaster')");
    sqlite(
        &db,
        &format!(
            "INSERT INTO pending (username, domain, datetime_created, confirmation) \
             VALUES ('stale', 'test.example', '2001-01-01 00:00:00', '{stale}')"
        ),
    );
    let b = Browser::start(free_port("127.0.0.1"), &dir);
    let shot = |name: &str| b.screenshot(&dir.join(format!("{name}.png")));
    b.goto(&format!("{base}/ui/self/login"));
    b.click_on("#to-signup");
    assert!(b.at("/ui/self/signup"), "{}", b.url());
    // Each try from a fresh form (a page still showing the last #error would be read too early).
    let fill = |user: &str| {
        b.goto(&format!("{base}/ui/self/signup"));
        b.type_into("#username", user);
        b.type_into("#password", "gina-pw-1");
        b.type_into("#again", "gina-pw-1");
        b.type_into("#email_address", "gina@mail.example");
        b.click_on("#signup");
    };
    // A reserved name, and a subscriber's, are refused.
    fill("postmaster");
    assert!(b.text_of("#error").contains("postmaster is not available"));
    fill("existing");
    assert!(b.text_of("#error").contains("existing is not available"));
    assert!(!mailbox.exists(), "no mail for a refused sign-up");
    fill("gina");
    assert!(b.text_of("#sent").contains("gina@mail.example"));
    shot("06-signup-sent");
    // Not a subscriber yet: waiting in pending; the stale sign-up has expired.
    assert_eq!(
        self_login_attempt(hp, "gina@test.example", "gina-pw-1").status,
        401
    );
    assert_eq!(
        sqlite(&db, "SELECT username FROM pending ORDER BY username"),
        "gina"
    );
    let mail = std::fs::read_to_string(&mailbox).unwrap();
    assert!(mail.starts_with("to: gina@mail.example\n"), "{mail}");
    let link = mail
        .lines()
        .find(|l| l.starts_with("http://"))
        .unwrap_or_else(|| panic!("no link in {mail}"))
        .to_string();
    assert!(
        link.starts_with(&format!("{base}/ui/self/confirm?c=")),
        "{link}"
    );
    b.goto(&link);
    assert_eq!(
        b.text_of("#confirmed"),
        "Your account gina@test.example is active: log in with it."
    );
    shot("07-signup-confirmed");
    assert_eq!(sqlite(&db, "SELECT count(*) FROM pending"), "0");
    let ha1 = controlplane::subscriber::ha1("gina", REALM, "gina-pw-1");
    assert_eq!(
        sqlite(
            &db,
            "SELECT ha1, password, email_address FROM subscriber WHERE username = 'gina'"
        ),
        format!("{ha1}||gina@mail.example")
    );
    // The link works once; the stale one not at all.
    b.goto(&link);
    assert!(b.text_of("#confirmed").contains("unknown or has expired"));
    b.goto(&format!("{base}/ui/self/confirm?c={stale}"));
    assert!(b.text_of("#confirmed").contains("unknown or has expired"));
    // The new subscriber logs in and registers.
    b.click_on("#to-login");
    b.type_into("#user", "gina@test.example");
    b.type_into("#password", "gina-pw-1");
    b.click_on("#login");
    assert!(b.at("/ui/self/registrations"), "{}", b.url());
    let phone = udp_client("127.0.0.1");
    assert_eq!(
        register_ua(&phone, srv.sip, "gina", "gina-pw-1", "P/1"),
        "SIP/2.0 200 OK"
    );
    // Without the option there is no sign-up at all.
    let plain = start(&test_dir("nosignup"), 7481, None);
    assert_eq!(
        http(plain.http, "GET", "/ui/self/signup", &[], "").status,
        404
    );
    drop(b);
}

#[test]
fn with_calculate_ha1_the_plain_column_is_checked_and_written() {
    if !have("sqlite3") {
        skip!("sqlite3 is not installed (apt-get install sqlite3)");
    }
    let cfg = CFG.replace(
        "modparam(\"usrloc\", \"db_mode\", 0)",
        "modparam(\"usrloc\", \"db_mode\", 0)\n\
         modparam(\"auth_db\", \"calculate_ha1\", 1)\n\
         modparam(\"auth_db\", \"password_column\", \"password\")",
    );
    assert!(cfg.contains("calculate_ha1"));
    let dir = test_dir("plain");
    let srv = start_cfg(&cfg, &dir, 7491, None, &[]);
    let hp = srv.http;
    provision(hp, "hank", "hank-pw-1");
    let db = srv.ser.db.clone().unwrap();
    // The server reads the plain column here: the login does too (a stale HA1 does not count).
    sqlite(
        &db,
        "UPDATE subscriber SET ha1 = '' WHERE username = 'hank'",
    );
    let (cookie, csrf) = self_login(hp, "hank@test.example", "hank-pw-1");
    let r = post(
        hp,
        "/ui/self/password",
        &cookie,
        &[
            ("csrf", &csrf),
            ("old", "hank-pw-1"),
            ("new", "hank-pw-2"),
            ("again", "hank-pw-2"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        sqlite(
            &db,
            "SELECT password FROM subscriber WHERE username = 'hank'"
        ),
        "hank-pw-2"
    );
    let phone = udp_client("127.0.0.1");
    assert_eq!(
        register_ua(&phone, srv.sip, "hank", "hank-pw-1", "P/1"),
        "SIP/2.0 401 Unauthorized"
    );
    assert_eq!(
        register_ua(&phone, srv.sip, "hank", "hank-pw-2", "P/1"),
        "SIP/2.0 200 OK"
    );
}

/// The calls and messages pages go back page by page (25 rows each), the newest first.
#[test]
fn calls_and_messages_are_paged() {
    let dir = test_dir("paging");
    let srv = start(&dir, free_port("127.0.0.1"), None);
    let hp = srv.http;
    provision(hp, "gina", "gina-pw");
    // 30 placed calls and 30 stored messages, as acc and msilo write them.
    let db = rusqlite::Connection::open(srv.ser.db.clone().unwrap()).unwrap();
    for i in 0..30 {
        db.execute(
            "INSERT INTO acc (sip_method, sip_status, username, domain, sip_callid, time) \
             VALUES ('INVITE', '200', 'gina', 'test.example', ?1, ?2)",
            [format!("call-{i:02}"), format!("2026-01-01 00:00:{i:02}")],
        )
        .unwrap();
        db.execute(
            "INSERT INTO silo (src_addr, dst_addr, username, domain, inc_time, exp_time, body) \
             VALUES ('sip:a@x', 'sip:gina@test.example', 'gina', 'test.example', ?1, 4000000000, ?2)",
            [format!("{}", 1_700_000_000 + i), format!("msg-{i:02}")],
        )
        .unwrap();
    }
    let (cookie, _) = self_login(hp, "gina@test.example", "gina-pw");
    for (path, newest, oldest) in [
        ("/ui/self/calls", "call-29", "call-00"),
        ("/ui/self/messages", "msg-29", "msg-00"),
    ] {
        let p1 = get(hp, path, &cookie);
        assert_eq!(p1.status, 200, "{p1:?}");
        assert!(
            p1.body.contains(newest) && !p1.body.contains(oldest),
            "{path}"
        );
        assert!(p1.body.contains("id=\"next\"") && !p1.body.contains("id=\"prev\""));
        let p2 = get(hp, &format!("{path}?page=2"), &cookie);
        assert!(
            p2.body.contains(oldest) && !p2.body.contains(newest),
            "{path}"
        );
        assert!(p2.body.contains("id=\"prev\"") && !p2.body.contains("id=\"next\""));
        let rows = |b: &str| b.matches("<tr>").count() - 1;
        assert_eq!((rows(&p1.body), rows(&p2.body)), (25, 5), "{path}");
    }
}

/// `--web-selfcare` without `--web-admins`: the subscribers' pages work, and nobody can log in to
/// the administrators' pages.
#[test]
fn self_care_runs_without_administrators() {
    let port = free_port("127.0.0.1");
    let hp = free_port("127.0.0.1");
    let ser = Ser::start_with_env(
        CFG,
        &[
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            &format!("--http=127.0.0.1:{hp}"),
            "--web-selfcare",
        ],
        &[("SIP_DOMAIN", REALM)],
    );
    let db = ser.db.clone().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_serctl"))
        .args(["add", "ivy", "ivy-pw-1", "ivy@test.example"])
        .env("SER_DB_URL", format!("sqlite://{}", db.display()))
        .env("SIP_DOMAIN", REALM)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (cookie, _) = self_login(hp, "ivy@test.example", "ivy-pw-1");
    let page = get(hp, "/ui/self/registrations", &cookie);
    assert_eq!(page.status, 200, "{page:?}");
    // The admin login page is there, but no name and password opens it.
    let login = http(hp, "GET", "/ui/login", &[], "");
    assert_eq!(login.status, 200, "{login:?}");
    let token = input_value(&login.body, "csrf").unwrap();
    let r = post(
        hp,
        "/ui/login",
        &format!("ser_login={token}"),
        &[
            ("csrf", &token),
            ("user", web::ADMIN),
            ("password", web::ADMIN_PW),
        ],
    );
    assert_ne!(r.status, 303, "{r:?}");
    assert!(r.set_cookie("ser_session").is_none(), "{r:?}");
    let r = get(hp, "/ui/subscribers", "");
    assert_eq!(r.status, 303, "{r:?}");
}
