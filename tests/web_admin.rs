//! The web UI's administrator tools end to end: the real `ser` on 127.0.0.1 with `--http` and
//! `--web-admins`, a real headless Chromium through `chromedriver` for the pages, and plain HTTP
//! for what a browser would not send (no session, no CSRF token). Screenshots go to
//! `target/web_admin/`.
#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "support/skip.rs"]
mod skip;
#[path = "support/net.rs"]
mod net;
#[path = "support/webdriver.rs"]
mod webdriver;

use std::path::{Path, PathBuf};
use std::process::Command;

use net::*;
use webdriver::{form, http, input_value, Browser, Http};

const ADMIN: &str = "admin";
const ADMIN_PW: &str = "correct horse battery";
const EVIL: &str = "<script>alert(1)</script>";

/// Loads usrloc and tm so module commands (`ul_*`, `t_*`) are in the console's list.
const CFG: &str = r#"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "usrloc.so"
modparam("usrloc", "db_mode", 0)
route {
	sl_send_reply("404", "Not Found");
}
"#;

fn test_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ser-webadmin-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Where screenshots are kept after the test (the temporary directory goes).
fn shots_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web_admin");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn admins_file(dir: &Path) -> PathBuf {
    let o = Command::new(env!("CARGO_BIN_EXE_serctl"))
        .args(["webpasswd", ADMIN, ADMIN_PW])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let path = dir.join("admins");
    std::fs::write(&path, o.stdout).unwrap();
    path
}

struct Server {
    _ser: Ser,
    http: u16,
}

fn start(dir: &Path) -> Server {
    let port = free_port("127.0.0.1");
    let hp = free_port("127.0.0.1");
    let admins = admins_file(dir);
    let ser = Ser::start_with_cfg(
        CFG,
        &[
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            &format!("--http=127.0.0.1:{hp}"),
            &format!("--web-admins={}", admins.display()),
        ],
    );
    Server {
        _ser: ser,
        http: hp,
    }
}

/// A logged-in administrator over plain HTTP: (session cookie header, CSRF token).
fn login(hp: u16) -> (String, String) {
    let page = http(hp, "GET", "/ui/login", &[], "");
    assert_eq!(page.status, 200);
    let token = input_value(&page.body, "csrf").unwrap();
    let r = http(
        hp,
        "POST",
        "/ui/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &format!("ser_login={token}")),
        ],
        &form(&[("csrf", &token), ("user", ADMIN), ("password", ADMIN_PW)]),
    );
    assert_eq!(r.status, 303, "{r:?}");
    let sc = r.set_cookie("ser_session").unwrap().to_string();
    let cookie = sc.split(';').next().unwrap().to_string();
    let page = http(hp, "GET", "/ui/rpc", &[("Cookie", &cookie)], "");
    assert_eq!(page.status, 200);
    let csrf = input_value(&page.body, "csrf").unwrap();
    (cookie, csrf)
}

fn post(hp: u16, path: &str, cookie: &str, fields: &[(&str, &str)]) -> Http {
    http(
        hp,
        "POST",
        path,
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", cookie),
        ],
        &form(fields),
    )
}

#[test]
fn the_rpc_console_lists_the_commands_and_runs_one() {
    if !(have("chromium") && have("chromedriver")) {
        skip!("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)");
    }
    let dir = test_dir("rpc");
    let srv = start(&dir);
    let base = format!("http://127.0.0.1:{}", srv.http);
    let b = Browser::start(free_port("127.0.0.1"), &dir);
    let shots = shots_dir();
    let shot = |name: &str| b.screenshot(&shots.join(format!("{name}.png")));

    b.goto(&format!("{base}/ui/rpc"));
    assert!(b.at("/ui/login"), "{}", b.url());
    b.type_into("#user", ADMIN);
    b.type_into("#password", ADMIN_PW);
    b.click_on("#login");
    b.click_on("a[href='/ui/rpc']");
    assert!(b.at("/ui/rpc"), "{}", b.url());
    // The list is the running program's: core commands and those of the loaded modules, with help.
    let list = b.text_of("#commands");
    for want in [
        "which",
        "version",
        "ul_dump",
        "t_stats",
        "list available commands",
    ] {
        assert!(list.contains(want), "{want} missing: {list}");
    }
    shot("rpc-01-commands");

    // A command with a parameter; its output (markup here) is shown as text.
    b.type_into("#cmd", "print");
    b.type_into("#params", EVIL);
    b.click_on("#execute");
    assert_eq!(b.text_of("#status"), "200 ok");
    assert_eq!(b.text_of("#output").trim(), EVIL);
    assert!(b.find_all("script").is_empty(), "{}", b.source());
    shot("rpc-02-print");

    // A module command, picked from the list.
    b.click_on("a[href='/ui/rpc?cmd=ul_stats']");
    b.click_on("#execute");
    assert!(b.text_of("#status").starts_with("200"), "{}", b.source());
    shot("rpc-03-ul_stats");

    // An unknown one: SER's refusal.
    b.goto(&format!("{base}/ui/rpc"));
    b.type_into("#cmd", "no_such_command");
    b.click_on("#execute");
    assert_eq!(
        b.text_of("#status"),
        "500 command 'no_such_command' not available"
    );
    eprintln!("web_admin screenshots in {}", shots.display());
}

#[test]
fn the_console_needs_a_session_and_the_csrf_token() {
    let dir = test_dir("rpc-sec");
    let srv = start(&dir);
    let hp = srv.http;
    let r = http(hp, "GET", "/ui/rpc", &[], "");
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/ui/login"));
    let r = post(
        hp,
        "/ui/rpc/run",
        "ser_session=0123456789abcdef",
        &[("csrf", "x"), ("cmd", "version")],
    );
    assert_eq!(r.status, 403, "{r:?}");
    let (cookie, csrf) = login(hp);
    for fields in [
        vec![("cmd", "version")],
        vec![("csrf", "wrong"), ("cmd", "version")],
    ] {
        let r = post(hp, "/ui/rpc/run", &cookie, &fields);
        assert_eq!(r.status, 403, "{r:?}");
        assert!(!r.body.contains("Server:"), "{r:?}");
    }
    let r = post(
        hp,
        "/ui/rpc/run",
        &cookie,
        &[("csrf", &csrf), ("cmd", "version")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("Server:"), "{}", r.body);
    // Output is escaped: a parameter echoed back is text.
    let r = post(
        hp,
        "/ui/rpc/run",
        &cookie,
        &[("csrf", &csrf), ("cmd", "print"), ("params", EVIL)],
    );
    assert!(r.body.contains("&lt;script&gt;"), "{}", r.body);
    assert!(!r.body.contains(EVIL), "{}", r.body);
}
