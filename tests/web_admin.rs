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
#[path = "support/web.rs"]
mod web;
#[path = "support/webdriver.rs"]
mod webdriver;

use std::path::Path;

use net::*;
use web::{admin_login as login, post, shots_dir, Server, ADMIN, ADMIN_PW, EVIL};
use webdriver::{http, Browser};

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

fn start(dir: &Path) -> Server {
    Server::start(dir, CFG, None, &[], &[])
}

#[test]
fn the_rpc_console_lists_the_commands_and_runs_one() {
    if !(have("chromium") && have("chromedriver")) {
        skip!("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)");
    }
    let dir = web::test_dir("webadmin", "rpc");
    let srv = start(&dir);
    let base = format!("http://127.0.0.1:{}", srv.http);
    let b = Browser::start(free_port("127.0.0.1"), &dir);
    let shots = shots_dir("web_admin");
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
    let dir = web::test_dir("webadmin", "rpc-sec");
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
