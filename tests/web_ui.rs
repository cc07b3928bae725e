//! The web UI end to end: the real `ser` on 127.0.0.1 with `--http` and `--web-admins` (a file
//! `serctl webpasswd` wrote), its SQLite database, a real headless Chromium (Debian's `chromium`
//! through `chromedriver`) for the administrator's pages, digest REGISTERs over UDP as a phone
//! sends them, and plain HTTP requests for what a browser would not send (no session, no CSRF
//! token, a foreign Origin, a login storm). Screenshots go to the test's temporary directory.
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
use std::process::Command;
use std::time::Duration;

use dataplane::auth::digest::{self, Algorithm, Qop, ResponseInput};
use net::*;
use web::{admin_login as login, have_browser, post, Server, ADMIN, ADMIN_PW, EVIL};
use webdriver::{form, http, input_value, Browser};

const REALM: &str = "test.example";

/// A registrar with digest authentication against the subscriber table (HA1 columns: the web UI
/// stores no plain password), usrloc in memory only (db_mode 0), and acc writing a row for every
/// MESSAGE (acc) and every INVITE (missed_calls, answered 404).
const CFG: &str = r#"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "acc.so"
modparam("auth", "secret", "web-ui-secret")
modparam("usrloc", "db_mode", 0)
route {
	if (method == "REGISTER") {
		if (!www_authorize("test.example", "subscriber")) {
			www_challenge("test.example", "1");
			break;
		};
		save("location");
		break;
	};
	if (method == "MESSAGE") {
		acc_db_request("200 OK", "acc");
		sl_send_reply("200", "OK");
		break;
	};
	if (method == "INVITE") {
		acc_db_request("404 Not Found", "missed_calls");
		sl_send_reply("404", "Not Found");
		break;
	};
	sl_send_reply("404", "Not Found");
}
"#;

fn test_dir(name: &str) -> PathBuf {
    web::test_dir("web", name)
}

fn start(dir: &Path) -> Server {
    start_cfg(dir, CFG)
}

fn start_cfg(dir: &Path, cfg: &str) -> Server {
    Server::start(dir, cfg, None, &[], &[])
}

// ---------------------------------------------------------------- SIP side

fn register(sock: &UdpSocket, user: &str, auth: Option<&str>, cseq: u32, ua: &str) -> String {
    let me = sock.local_addr().unwrap();
    let mut s = format!(
        "REGISTER sip:{REALM} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-web{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@{REALM}>;tag=w1\r\n\
         To: <sip:{user}@{REALM}>\r\n\
         Call-ID: web-ui-{user}@127.0.0.1\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{user}@{me}>\r\n\
         Expires: 300\r\n\
         User-Agent: {ua}\r\n"
    );
    if let Some(a) = auth {
        s.push_str(&format!("Authorization: {a}\r\n"));
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

fn param(challenge: &str, name: &str) -> String {
    let c = dataplane::wire::digest::Credentials::parse(challenge.as_bytes()).unwrap();
    String::from_utf8_lossy(c.param(name.as_bytes()).unwrap()).into_owned()
}

fn answer(user: &str, pw: &str, challenge: &str) -> String {
    let nonce = param(challenge, "nonce");
    let ha1 = digest::ha1(
        Algorithm::Md5,
        user.as_bytes(),
        REALM.as_bytes(),
        pw.as_bytes(),
    );
    let r = digest::response(&ResponseInput {
        alg: Algorithm::Md5,
        ha1: ha1.as_bytes(),
        nonce: nonce.as_bytes(),
        nc: b"00000001",
        cnonce: b"webc",
        qop: Qop::Auth,
        method: b"REGISTER",
        uri: format!("sip:{REALM}").as_bytes(),
        body: b"",
    });
    format!(
        "Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"sip:{REALM}\", \
         response=\"{}\", qop=auth, nc=00000001, cnonce=\"webc\"",
        String::from_utf8_lossy(r.as_bytes())
    )
}

/// REGISTERs `user` with `pw` as a phone does (challenge, then credentials): the final status.
fn register_with(sock: &UdpSocket, to: SocketAddr, user: &str, pw: &str, ua: &str) -> String {
    let r = udp_exchange(sock, to, register(sock, user, None, 1, ua).as_bytes()).unwrap();
    assert_eq!(status_line(&r), "SIP/2.0 401 Unauthorized", "{r}");
    let ch = header(&r, "WWW-Authenticate").unwrap().to_string();
    let auth = answer(user, pw, &ch);
    let r = udp_exchange(
        sock,
        to,
        register(sock, user, Some(&auth), 2, ua).as_bytes(),
    )
    .unwrap();
    status_line(&r).to_string()
}

/// A MESSAGE (accounted in `acc`) or INVITE (in `missed_calls`) from a caller whose display name
/// is `display`.
fn call(sock: &UdpSocket, to: SocketAddr, method: &str, display: &str, id: &str) -> String {
    let me = sock.local_addr().unwrap();
    let req = format!(
        "{method} sip:carol@{REALM} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-{id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: \"{display}\" <sip:mallory@{REALM}>;tag=m1\r\n\
         To: <sip:carol@{REALM}>\r\n\
         Call-ID: {id}@127.0.0.1\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:mallory@{me}>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let r = udp_exchange(sock, to, req.as_bytes()).unwrap();
    status_line(&r).to_string()
}

// ---------------------------------------------------------------- tests

#[test]
fn admin_creates_a_subscriber_who_registers_and_shows_on_location() {
    if !have_browser() {
        skip!("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)");
    }
    let dir = test_dir("browser");
    let srv = start(&dir);
    let base = format!("http://127.0.0.1:{}", srv.http);
    let b = Browser::start(free_port("127.0.0.1"), &dir);
    let shot = |name: &str| b.screenshot(&dir.join(format!("{name}.png")));

    // No page without a session: the browser lands on the login page.
    b.goto(&format!("{base}/ui/location"));
    assert!(b.at("/ui/login"), "{}", b.url());
    shot("01-login");
    b.type_into("#user", ADMIN);
    b.type_into("#password", "not the password");
    b.click_on("#login");
    assert!(b.text_of("#error").contains("Wrong name or password"));
    b.type_into("#user", ADMIN);
    b.type_into("#password", ADMIN_PW);
    b.click_on("#login");
    assert!(b.at("/ui/subscribers"), "{}", b.url());
    let session = b
        .cookies()
        .into_iter()
        .find(|c| c["name"] == "ser_session")
        .expect("a session cookie");
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["sameSite"], "Strict", "{session}");

    // Create a subscriber whose name is markup.
    b.click_on("#new");
    b.type_into("#username", "carol");
    b.type_into("#domain", REALM);
    b.type_into("#password", "carol-pw-1");
    b.type_into("#first_name", EVIL);
    b.type_into("#email_address", "carol@test.example");
    shot("02-new-subscriber");
    b.click_on("#save");
    assert!(b.at("/ui/subscribers"), "{}", b.url());
    assert_eq!(
        b.text_of("#flash"),
        "Subscriber carol@test.example created."
    );
    let table = b.text_of("#subscribers");
    assert!(table.contains("carol"), "{table}");
    assert!(table.contains(EVIL), "the name is shown as text: {table}");
    assert!(b.find_all("script").is_empty(), "{}", b.source());
    shot("03-subscribers");

    // The phone registers with that password; the binding shows, its User-Agent as text.
    let phone = udp_client("127.0.0.1");
    let ua = "<script>alert('ua')</script> Phone/1.0";
    assert_eq!(
        register_with(&phone, srv.sip, "carol", "carol-pw-1", ua),
        "SIP/2.0 200 OK"
    );
    b.click_on("a[href='/ui/location']");
    let bindings = b.text_of("#bindings");
    let contact = format!("sip:carol@{}", phone.local_addr().unwrap());
    assert!(bindings.contains(&contact), "{bindings}");
    assert!(bindings.contains(ua), "{bindings}");
    assert!(b.find_all("script").is_empty(), "{}", b.source());
    shot("04-location");

    // A password changed in the page is the one the next REGISTER needs (auth_flush).
    b.goto(&format!(
        "{base}/ui/subscribers/edit?username=carol&domain={REALM}"
    ));
    b.type_into("#password", "carol-pw-2");
    shot("05-edit-subscriber");
    b.click_on("#save");
    assert!(b.text_of("#flash").contains("new password in effect"));
    assert_eq!(
        register_with(&phone, srv.sip, "carol", "carol-pw-1", "Phone/1.0"),
        "SIP/2.0 401 Unauthorized",
        "the old password is refused"
    );
    assert_eq!(
        register_with(&phone, srv.sip, "carol", "carol-pw-2", "Phone/1.0"),
        "SIP/2.0 200 OK"
    );

    // Calls from a caller whose display name is markup show in Accounting and Missed calls.
    assert_eq!(
        call(&phone, srv.sip, "MESSAGE", EVIL, "acc-1"),
        "SIP/2.0 200 OK"
    );
    assert_eq!(
        call(&phone, srv.sip, "INVITE", EVIL, "missed-1"),
        "SIP/2.0 404 Not Found"
    );
    // acc writes through ser's queue of database writes: give it a moment.
    let mut calls = String::new();
    for _ in 0..50 {
        b.click_on("a[href='/ui/acc']");
        calls = b.text_of("#calls");
        if calls.contains("acc-1@127.0.0.1") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(calls.contains("acc-1@127.0.0.1"), "{calls}");
    assert!(calls.contains(EVIL), "{calls}");
    assert!(calls.contains("MESSAGE"), "{calls}");
    assert!(b.find_all("script").is_empty(), "{}", b.source());
    shot("06-acc");
    let mut missed = String::new();
    for _ in 0..50 {
        b.click_on("a[href='/ui/missed']");
        missed = b.text_of("#calls");
        if missed.contains("missed-1@127.0.0.1") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(missed.contains("404 Not Found"), "{missed}");
    shot("07-missed");

    // Remove the binding from the Location page.
    b.click_on("a[href='/ui/location']");
    b.click_on("#bindings button");
    assert!(b.text_of("#flash").starts_with("200 "), "{}", b.source());
    assert!(b.text_of("#bindings").contains("No registered contact"));

    // Delete the subscriber: the next REGISTER is refused.
    b.click_on("a[href='/ui/subscribers']");
    b.click_on("#subscribers button.danger");
    assert_eq!(
        b.text_of("#flash"),
        "Subscriber carol@test.example deleted."
    );
    assert_eq!(
        register_with(&phone, srv.sip, "carol", "carol-pw-2", "Phone/1.0"),
        "SIP/2.0 401 Unauthorized"
    );

    // Log out: the pages are closed again.
    b.click_on("header form.logout button");
    assert!(b.at("/ui/login"), "{}", b.url());
    b.goto(&format!("{base}/ui/subscribers"));
    assert!(b.at("/ui/login"), "{}", b.url());
    drop(b);
    drop(srv);
    eprintln!("web_ui screenshots in {}", dir.display());
}

#[test]
fn no_page_or_action_without_a_session() {
    let dir = test_dir("nosession");
    let srv = start(&dir);
    let hp = srv.http;
    for path in [
        "/ui",
        "/ui/",
        "/ui/subscribers",
        "/ui/subscribers/new",
        "/ui/subscribers/edit?username=a&domain=b",
        "/ui/location",
        "/ui/acc",
        "/ui/missed",
    ] {
        for cookie in [None, Some("ser_session=0123456789abcdef")] {
            let h: Vec<(&str, &str)> = cookie.iter().map(|c| ("Cookie", *c)).collect();
            let r = http(hp, "GET", path, &h, "");
            assert_eq!(r.status, 303, "{path}: {r:?}");
            assert_eq!(r.header("location"), Some("/ui/login"), "{path}");
            assert!(!r.body.contains("<table"), "{path}");
        }
    }
    for path in [
        "/ui/logout",
        "/ui/subscribers/create",
        "/ui/subscribers/update",
        "/ui/subscribers/delete",
        "/ui/location/remove",
    ] {
        let r = post(
            hp,
            path,
            "ser_session=0123456789abcdef",
            &[("csrf", "x"), ("username", "a"), ("domain", "b")],
        );
        assert_eq!(r.status, 403, "{path}: {r:?}");
    }
    // The login page itself is open, and says nothing of the data.
    let r = http(hp, "GET", "/ui/login", &[], "");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Log in"));
    assert!(r
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'none'"));
    // A session works, and a logged-out one does not.
    let (cookie, csrf) = login(hp);
    assert_eq!(
        http(hp, "GET", "/ui/location", &[("Cookie", &cookie)], "").status,
        200
    );
    assert_eq!(
        post(hp, "/ui/logout", &cookie, &[("csrf", &csrf)]).status,
        303
    );
    assert_eq!(
        http(hp, "GET", "/ui/location", &[("Cookie", &cookie)], "").status,
        303
    );
}

#[test]
fn every_post_needs_the_csrf_token() {
    let dir = test_dir("csrf");
    let srv = start(&dir);
    let hp = srv.http;
    let (cookie, csrf) = login(hp);
    let new = [
        ("username", "dave"),
        ("domain", REALM),
        ("password", "dave-pw"),
    ];
    // Whether the list shows user `q` (its edit link; the search box holds `q` anyway).
    let listed = |q: &str| {
        http(
            hp,
            "GET",
            &format!("/ui/subscribers?q={q}"),
            &[("Cookie", &cookie)],
            "",
        )
        .body
        .contains(&format!("edit?username={q}&amp;"))
    };
    let r = post(hp, "/ui/subscribers/create", &cookie, &new);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("CSRF"));
    let zeros = "0".repeat(64);
    let mut wrong: Vec<(&str, &str)> = vec![("csrf", &zeros)];
    wrong.extend(new);
    assert_eq!(
        post(hp, "/ui/subscribers/create", &cookie, &wrong).status,
        403
    );
    assert!(!listed("dave"), "nothing was created");
    // A foreign Origin is refused even with the token.
    let mut ok: Vec<(&str, &str)> = vec![("csrf", &csrf)];
    ok.extend(new);
    let r = http(
        hp,
        "POST",
        "/ui/subscribers/create",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &cookie),
            ("Origin", "http://evil.example"),
        ],
        &form(&ok),
    );
    assert_eq!(r.status, 403);
    assert!(!listed("dave"));
    // With it, the subscriber is created; deleting needs it too.
    let r = post(hp, "/ui/subscribers/create", &cookie, &ok);
    assert_eq!(r.status, 303, "{r:?}");
    assert!(listed("dave"));
    let del = [("username", "dave"), ("domain", REALM)];
    assert_eq!(
        post(hp, "/ui/subscribers/delete", &cookie, &del).status,
        403
    );
    assert!(listed("dave"));
    // The login form has its own token, bound to the browser by a cookie.
    let r = post(
        hp,
        "/ui/login",
        "",
        &[("csrf", "abc"), ("user", ADMIN), ("password", ADMIN_PW)],
    );
    assert_eq!(r.status, 403);
    let r = post(
        hp,
        "/ui/login",
        "ser_login=abd",
        &[("csrf", "abc"), ("user", ADMIN), ("password", ADMIN_PW)],
    );
    assert_eq!(r.status, 403);
}

#[test]
fn login_failures_are_throttled() {
    let dir = test_dir("throttle");
    let srv = start(&dir);
    let hp = srv.http;
    let attempt = |pw: &str| {
        let page = http(hp, "GET", "/ui/login", &[], "");
        let token = input_value(&page.body, "csrf").unwrap();
        post(
            hp,
            "/ui/login",
            &format!("ser_login={token}"),
            &[("csrf", &token), ("user", ADMIN), ("password", pw)],
        )
    };
    for i in 0..5 {
        let r = attempt(&format!("guess-{i}"));
        assert_eq!(r.status, 401, "attempt {i}");
        assert!(r.set_cookie("ser_session").is_none());
    }
    // Locked out now: even the right password is refused, without a session.
    let r = attempt(ADMIN_PW);
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r.body.contains("Too many failed logins"), "{}", r.body);
    assert!(r.set_cookie("ser_session").is_none());
    assert!(srv.ser.log_text().contains("web: failed login"));
}

#[test]
fn subscribers_are_searched_and_paged_and_validated() {
    let dir = test_dir("pages");
    let srv = start(&dir);
    let hp = srv.http;
    let (cookie, csrf) = login(hp);
    for i in 0..30 {
        let user = format!("user{i:02}");
        let r = post(
            hp,
            "/ui/subscribers/create",
            &cookie,
            &[
                ("csrf", &csrf),
                ("username", &user),
                ("domain", REALM),
                ("password", "pw"),
                ("email_address", &format!("{user}@mail.example")),
            ],
        );
        assert_eq!(r.status, 303, "{user}: {}", r.body);
    }
    let get = |q: &str| http(hp, "GET", q, &[("Cookie", &cookie)], "").body;
    let rows = |html: &str| html.matches("/ui/subscribers/edit?").count();
    let p1 = get("/ui/subscribers");
    assert_eq!(rows(&p1), 25);
    assert!(p1.contains("user00") && p1.contains("user24") && !p1.contains("user25"));
    assert!(p1.contains("id=\"next\""));
    let p2 = get("/ui/subscribers?page=2");
    assert_eq!(rows(&p2), 5);
    assert!(p2.contains("user29") && !p2.contains("id=\"next\""));
    let found = get("/ui/subscribers?q=USER07");
    assert_eq!(rows(&found), 1, "{found}");
    // LIKE's own characters are searched for literally.
    assert_eq!(rows(&get("/ui/subscribers?q=user_7")), 0);
    assert_eq!(rows(&get("/ui/subscribers?q=%25")), 0);
    // The same user twice, and a bad user name, are refused with the form shown again.
    let again = post(
        hp,
        "/ui/subscribers/create",
        &cookie,
        &[
            ("csrf", &csrf),
            ("username", "user07"),
            ("domain", REALM),
            ("password", "pw"),
        ],
    );
    assert_eq!(again.status, 422);
    assert!(again.body.contains("exists already"));
    let bad = post(
        hp,
        "/ui/subscribers/create",
        &cookie,
        &[
            ("csrf", &csrf),
            ("username", "a b"),
            ("domain", REALM),
            ("password", "pw"),
        ],
    );
    assert_eq!(bad.status, 422);
    // HA1 and HA1b were computed by the server; no plain password is stored (no calculate_ha1).
    let db = srv.ser.db.clone().unwrap();
    let out = Command::new("sqlite3")
        .arg(&db)
        .arg("SELECT ha1, ha1b, password FROM subscriber WHERE username = 'user07'")
        .output();
    if let Some(o) = out.ok().filter(|o| o.status.success()) {
        let row = String::from_utf8_lossy(&o.stdout).trim().to_string();
        let ha1 = controlplane::subscriber::ha1("user07", REALM, "pw");
        let ha1b = controlplane::subscriber::ha1(&format!("user07@{REALM}"), REALM, "pw");
        assert_eq!(row, format!("{ha1}|{ha1b}|"));
    } else if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("sqlite3 is not installed");
    }
}

#[test]
fn web_ui_configuration_errors_stop_the_start() {
    let dir = test_dir("config");
    let bad = dir.join("admins");
    std::fs::write(&bad, "admin:$1$md5$notargon\n").unwrap();
    let cfg = temp_cfg(MIN_CFG);
    let run = |args: &[String]| {
        Command::new(ser_bin())
            .arg("-f")
            .arg(&cfg)
            .args(["-D", "-E", "-n", "1", "-l", "127.0.0.1"])
            .arg("-p")
            .arg(free_port("127.0.0.1").to_string())
            .args(args)
            .env(
                "SER_DB_URL",
                format!("sqlite://{}", dir.join("x.db").display()),
            )
            .output()
            .unwrap()
    };
    let hp = free_port("127.0.0.1");
    let o = run(&[
        format!("--http=127.0.0.1:{hp}"),
        format!("--web-admins={}", bad.display()),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("admins:1"), "{err}");
    let o = run(&[format!("--web-admins={}", bad.display())]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--web-admins and --web-selfcare need --http")
    );
}

#[test]
fn with_calculate_ha1_the_plain_password_is_stored_and_checked() {
    let dir = test_dir("plain");
    let cfg = CFG.replace(
        "modparam(\"usrloc\", \"db_mode\", 0)",
        "modparam(\"usrloc\", \"db_mode\", 0)\n\
         modparam(\"auth_db\", \"calculate_ha1\", 1)\n\
         modparam(\"auth_db\", \"password_column\", \"password\")",
    );
    assert!(cfg.contains("calculate_ha1"));
    let srv = start_cfg(&dir, &cfg);
    let hp = srv.http;
    let (cookie, csrf) = login(hp);
    let r = post(
        hp,
        "/ui/subscribers/create",
        &cookie,
        &[
            ("csrf", &csrf),
            ("username", "erin"),
            ("domain", REALM),
            ("password", "erin-pw-1"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let phone = udp_client("127.0.0.1");
    assert_eq!(
        register_with(&phone, srv.sip, "erin", "erin-pw-1", "Phone/1.0"),
        "SIP/2.0 200 OK"
    );
    // The plain password column holds 25 characters: a longer one is refused with the form.
    let long = "p".repeat(26);
    let r = post(
        hp,
        "/ui/subscribers/update",
        &cookie,
        &[
            ("csrf", &csrf),
            ("username", "erin"),
            ("domain", REALM),
            ("password", &long),
        ],
    );
    assert_eq!(r.status, 422);
    assert!(r.body.contains("1 to 25 characters"), "{}", r.body);
    let r = post(
        hp,
        "/ui/subscribers/update",
        &cookie,
        &[
            ("csrf", &csrf),
            ("username", "erin"),
            ("domain", REALM),
            ("password", "erin-pw-2"),
        ],
    );
    assert_eq!(r.status, 303);
    assert_eq!(
        register_with(&phone, srv.sip, "erin", "erin-pw-1", "Phone/1.0"),
        "SIP/2.0 401 Unauthorized"
    );
    assert_eq!(
        register_with(&phone, srv.sip, "erin", "erin-pw-2", "Phone/1.0"),
        "SIP/2.0 200 OK"
    );
    if have("sqlite3") {
        let db = srv.ser.db.clone().unwrap();
        let o = Command::new("sqlite3")
            .arg(&db)
            .arg("SELECT password FROM subscriber WHERE username = 'erin'")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "erin-pw-2");
    }
}

#[test]
fn parallel_guesses_are_throttled_too() {
    let dir = test_dir("burst");
    let srv = start(&dir);
    let hp = srv.http;
    // Each guess gets its form (and login token) first, then all are sent at once.
    let tokens: Vec<String> = (0..12)
        .map(|_| input_value(&http(hp, "GET", "/ui/login", &[], "").body, "csrf").unwrap())
        .collect();
    let codes: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                s.spawn(move || {
                    let pw = format!("guess-{i}");
                    post(
                        hp,
                        "/ui/login",
                        &format!("ser_login={t}"),
                        &[("csrf", t), ("user", ADMIN), ("password", &pw)],
                    )
                    .status
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let checked = codes.iter().filter(|c| **c == 401).count();
    let refused = codes.iter().filter(|c| **c == 429).count();
    assert_eq!(checked + refused, codes.len(), "{codes:?}");
    assert!(checked <= 5, "at most 5 guesses are checked: {codes:?}");
}
