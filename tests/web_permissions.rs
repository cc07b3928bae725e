//! The web UI's permissions page end to end: the real `ser` on 127.0.0.1 with `--http` and
//! `--web-admins` running a script that asks `allow_routing()`, SIP OPTIONS over UDP for what a
//! saved rule file changes after the page's reload, plain HTTP for the forms (and for what a
//! browser would not send: no session, no CSRF token, a file the program does not read), and a
//! real headless Chromium for the page itself. Screenshots go to `target/tmp/web_permissions/`.
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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use net::*;
use web::{admin_login, get, have_browser, post, shots_dir, Server, EVIL};
use webdriver::{form, http, Browser};

const ALLOW_START: &str = "# nobody yet\n";
const DENY: &str = "ALL : ALL\n";

/// The script: OPTIONS allowed by the default pair (files in `dir`) get 200, the others 403.
fn script(dir: &Path) -> String {
    format!(
        r#"loadmodule "sl.so"
loadmodule "permissions.so"
modparam("permissions", "default_allow_file", "{allow}")
modparam("permissions", "default_deny_file", "{deny}")
route {{
	if (method == "ACK") {{
		break;
	}};
	if (!allow_routing()) {{
		sl_send_reply("403", "Forbidden");
		break;
	}};
	sl_send_reply("200", "OK");
}}
"#,
        allow = dir.join("permissions.allow").display(),
        deny = dir.join("permissions.deny").display(),
    )
}

/// The server, with permissions.allow (nothing allowed) and permissions.deny (all denied) in
/// the test's directory: (server, directory, allow file, deny file).
fn start(name: &str) -> (Server, PathBuf, PathBuf, PathBuf) {
    let dir = web::test_dir("webperm", name);
    let allow = dir.join("permissions.allow");
    let deny = dir.join("permissions.deny");
    std::fs::write(&allow, ALLOW_START).unwrap();
    std::fs::write(&deny, DENY).unwrap();
    let srv = Server::start(&dir, &script(&dir), None, &[], &[]);
    (srv, dir, allow, deny)
}

fn options_reply(to: SocketAddr, n: u32) -> String {
    let sock = udp_client("127.0.0.1");
    let req = request(
        "OPTIONS",
        &format!("sip:{to}"),
        "127.0.0.1:5997",
        "UDP",
        &format!("perm-{n}@x"),
    );
    let r = udp_exchange(&sock, to, req.as_bytes()).unwrap();
    status_line(&r).to_string()
}

/// `s` as the page's HTML has it (minijinja escapes `/` too).
fn esc(s: &str) -> String {
    s.replace('/', "&#x2f;")
}

fn bak(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".bak");
    PathBuf::from(s)
}

#[test]
fn the_permissions_page_saves_a_rule_and_the_next_request_obeys_it() {
    let (srv, dir, allow, deny) = start("http");
    let hp = srv.http;
    assert_eq!(options_reply(srv.sip, 0), "SIP/2.0 403 Forbidden");

    // No session: sent to the login; a forged session or a missing token: refused.
    let r = http(hp, "GET", "/ui/permissions", &[], "");
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/ui/login"));
    let good = "ALL : ALL\n";
    let file = allow.display().to_string();
    let r = post(
        hp,
        "/ui/permissions",
        "ser_session=0123456789abcdef",
        &[
            ("csrf", "x"),
            ("op", "save"),
            ("file", &file),
            ("rules", good),
        ],
    );
    assert_eq!(r.status, 403, "{r:?}");
    let (cookie, csrf) = admin_login(hp);
    for fields in [
        vec![("op", "save"), ("file", file.as_str()), ("rules", good)],
        vec![
            ("csrf", "wrong"),
            ("op", "save"),
            ("file", file.as_str()),
            ("rules", good),
        ],
    ] {
        let r = post(hp, "/ui/permissions", &cookie, &fields);
        assert_eq!(r.status, 403, "{r:?}");
    }
    // A foreign origin, even with session and token.
    let r = http(
        hp,
        "POST",
        "/ui/permissions",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &cookie),
            ("Origin", "http://evil.example"),
        ],
        &form(&[
            ("csrf", &csrf),
            ("op", "save"),
            ("file", &file),
            ("rules", good),
        ]),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(std::fs::read_to_string(&allow).unwrap(), ALLOW_START);

    // The page lists the running program's two files with their rules.
    let page = get(hp, "/ui/permissions", &cookie);
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains(&esc(&file)), "{}", page.body);
    assert!(page.body.contains(&esc(&deny.display().to_string())));
    assert!(page.body.contains("ALL : ALL"), "{}", page.body);
    assert!(page.body.contains("0 rule(s)"), "{}", page.body);

    // A file the program does not read is not written.
    let other = dir.join("other.allow");
    let r = post(
        hp,
        "/ui/permissions",
        &cookie,
        &[
            ("csrf", &csrf),
            ("op", "save"),
            ("file", &other.display().to_string()),
            ("rules", good),
        ],
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(!other.exists());

    // A bad rule: refused with its file:line:col, escaped, nothing written, the rules stay.
    let bad = format!("# comment\nALL : {EVIL}\n");
    let r = post(
        hp,
        "/ui/permissions",
        &cookie,
        &[
            ("csrf", &csrf),
            ("op", "save"),
            ("file", &file),
            ("rules", &bad),
        ],
    );
    assert_eq!(r.status, 422, "{r:?}");
    assert!(r.body.contains(&esc(&format!("{file}:2:7"))), "{}", r.body);
    assert!(r.body.contains("nothing was saved"), "{}", r.body);
    assert!(r.body.contains("&lt;script&gt;"), "{}", r.body);
    assert!(!r.body.contains(EVIL), "{}", r.body);
    assert_eq!(std::fs::read_to_string(&allow).unwrap(), ALLOW_START);
    assert_eq!(options_reply(srv.sip, 1), "SIP/2.0 403 Forbidden");

    // A check writes nothing either.
    let r = post(
        hp,
        "/ui/permissions",
        &cookie,
        &[
            ("csrf", &csrf),
            ("op", "check"),
            ("file", &file),
            ("rules", good),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("no errors, 1 rule(s)"), "{}", r.body);
    assert_eq!(std::fs::read_to_string(&allow).unwrap(), ALLOW_START);

    // `ALL : ALL` added to the allow file (CRLF, as browsers send it): saved with LF, the old
    // file kept, the server reloaded, and the next OPTIONS is allowed.
    let added = format!("{ALLOW_START}ALL : ALL\n");
    let r = post(
        hp,
        "/ui/permissions",
        &cookie,
        &[
            ("csrf", &csrf),
            ("op", "save"),
            ("file", &file),
            ("rules", &added.replace('\n', "\r\n")),
        ],
    );
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/ui/permissions"));
    assert_eq!(std::fs::read_to_string(&allow).unwrap(), added);
    assert_eq!(std::fs::read_to_string(bak(&allow)).unwrap(), ALLOW_START);
    assert_eq!(options_reply(srv.sip, 2), "SIP/2.0 200 OK");
    let page = get(hp, "/ui/permissions", &cookie);
    assert!(page.body.contains("reloaded"), "{}", page.body);
    assert!(page.body.contains("1 rule(s)"), "{}", page.body);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_permissions_page_in_the_browser() {
    if !have_browser() {
        skip!("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)");
    }
    let (srv, dir, allow, _) = start("browser");
    let base = srv.base();
    assert_eq!(options_reply(srv.sip, 10), "SIP/2.0 403 Forbidden");
    let b = Browser::start(free_port("127.0.0.1"), &dir);
    let shots = shots_dir("web_permissions");
    let shot = |name: &str| b.screenshot(&shots.join(format!("{name}.png")));

    b.goto(&format!("{base}/ui/permissions"));
    assert!(b.at("/ui/login"), "{}", b.url());
    web::browser_login(&b, &base);
    b.goto(&format!("{base}/ui/permissions"));
    assert!(b.at("/ui/permissions"), "{}", b.url());
    let paths = b.find_all("code.path");
    assert_eq!(paths.len(), 2, "{}", b.source());
    assert_eq!(b.text(&paths[0]), allow.display().to_string());
    shot("permissions-01-files");

    // A bad rule: its line and column shown, nothing written.
    b.type_into("#rules-1", "ALL : \"(\"\n");
    b.click_on("#save-1");
    let outcome = b.text_of("#outcome");
    assert!(
        outcome.contains(&format!("{}:1:7", allow.display())),
        "{outcome}"
    );
    assert!(outcome.contains("nothing was saved"), "{outcome}");
    assert_eq!(std::fs::read_to_string(&allow).unwrap(), ALLOW_START);
    shot("permissions-02-refused");

    // The good one: saved, reloaded, the next OPTIONS allowed.
    b.goto(&format!("{base}/ui/permissions"));
    b.type_into("#rules-1", "ALL : ALL\n");
    b.click_on("#save-1");
    let flash = b.text_of("#flash");
    assert!(flash.contains("reloaded"), "{flash}");
    assert_eq!(std::fs::read_to_string(&allow).unwrap(), "ALL : ALL\n");
    assert_eq!(options_reply(srv.sip, 11), "SIP/2.0 200 OK");
    shot("permissions-03-saved");
    eprintln!("web_permissions screenshots in {}", shots.display());
    let _ = std::fs::remove_dir_all(&dir);
}
