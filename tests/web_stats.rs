//! The web UI's statistics and configuration pages end to end: the real `ser` on 127.0.0.1 with
//! `--http` and `--web-admins`, SIP over UDP for the traffic and for what a reload changes, a real
//! headless Chromium through `chromedriver` for the pages, and plain HTTP for what a browser would
//! not send (no session, no CSRF token). Screenshots go to `target/tmp/web_stats/`.
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use net::*;
use web::{admin_login as login, have_browser as chromium, post, shots_dir, Server, EVIL};
use webdriver::{form, http, Browser};

fn test_dir(name: &str) -> PathBuf {
    web::test_dir("webstats", name)
}

fn start(dir: &Path, cfg: &str) -> Server {
    Server::start(dir, cfg, None, &[], &["--web-stats-interval=1".into()])
}

/// Opens `page` (the login comes first: no session yet), logs in, and opens it again.
fn browser_login(b: &Browser, base: &str, page: &str) {
    b.goto(&format!("{base}{page}"));
    assert!(b.at("/ui/login"), "{}", b.url());
    web::browser_login(b, base);
    b.goto(&format!("{base}{page}"));
    assert!(b.at(page), "{}", b.url());
}

// ---------------------------------------------------------------- statistics

const STATS_CFG: &str = r#"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
modparam("usrloc", "db_mode", 0)
route {
	if (method == "REGISTER") {
		save("location");
		break;
	};
	if (method == "OPTIONS") {
		t_newtran();
		t_reply("200", "OK");
		break;
	};
	sl_send_reply("404", "Not Found");
}
"#;

fn register(to: SocketAddr) -> String {
    format!(
        "REGISTER sip:{to} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-stats-reg;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:alice@127.0.0.1>\r\n\
From: <sip:alice@127.0.0.1>;tag=r1\r\n\
Call-ID: stats-reg\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:alice@127.0.0.1:5999>;expires=600\r\n\
Content-Length: 0\r\n\r\n"
    )
}

/// The numbers of a polyline's `points` attribute in the page source: the y values.
fn ys(source: &str, id: &str) -> Vec<f64> {
    let Some(at) = source.find(&format!("id=\"{id}\"")) else {
        return Vec::new();
    };
    let rest = &source[at..];
    let Some(p) = rest.find("points=\"") else {
        return Vec::new();
    };
    let pts = &rest[p + 8..];
    let pts = &pts[..pts.find('"').unwrap_or(0)];
    pts.split_whitespace()
        .filter_map(|xy| xy.split_once(',')?.1.parse().ok())
        .collect()
}

#[test]
fn the_statistics_page_charts_the_traffic() {
    if !chromium() {
        skip!("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)");
    }
    let dir = test_dir("stats");
    let srv = start(&dir, STATS_CFG);
    let base = format!("http://127.0.0.1:{}", srv.http);
    let sock = udp_client("127.0.0.1");
    let reply = udp_exchange(&sock, srv.sip, register(srv.sip).as_bytes()).unwrap();
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");

    // OPTIONS all along (≤ 40 s, ≤ 20 a second), so the last interval has requests in it.
    let stop = Arc::new(AtomicBool::new(false));
    let (stop2, to) = (Arc::clone(&stop), srv.sip);
    let traffic = std::thread::spawn(move || {
        let s = udp_client("127.0.0.1");
        let end = Instant::now() + Duration::from_secs(40);
        let mut n = 0u32;
        while !stop2.load(Ordering::Relaxed) && Instant::now() < end {
            let req = request(
                "OPTIONS",
                &format!("sip:{to}"),
                "127.0.0.1:5998",
                "UDP",
                &format!("st-{n}@x"),
            );
            let r = udp_exchange(&s, to, req.as_bytes());
            assert!(r.is_some_and(|r| r.starts_with("SIP/2.0 200")));
            n += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    });

    let b = Browser::start(free_port("127.0.0.1"), &dir);
    let shots = shots_dir("web_stats");
    browser_login(&b, &base, "/ui/stats");
    // Samples every second: within a few the rate and the contact show.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        b.goto(&format!("{base}/ui/stats"));
        let rate: f64 = b.text_of("#current-requests-rate").parse().unwrap();
        let contacts = b.text_of("#current-contacts");
        let tx: f64 = b.text_of("#current-transactions-rate").parse().unwrap();
        let req_ys = ys(&b.source(), "requests-0");
        if rate > 0.0 && tx > 0.0 && contacts == "1" && req_ys.len() >= 3 {
            break;
        }
        assert!(
            Instant::now() < end,
            "rate {rate}, transactions {tx}, contacts {contacts}, points {req_ys:?}:\n{}",
            b.source()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::Relaxed);
    let sent = traffic.join().unwrap();
    assert!(sent > 0);
    let src = b.source();
    // The request line rises above the zero line (y = top + height = 172).
    let req_ys = ys(&src, "requests-0");
    assert!(req_ys.iter().any(|y| *y < 171.0), "{req_ys:?}");
    // The contacts chart's line stands at 1, the top of its axis.
    // So do the transactions (the OPTIONS are answered statefully).
    let t_ys = ys(&src, "transactions-0");
    assert!(t_ys.iter().any(|y| *y < 171.0), "{t_ys:?}");
    let c_ys = ys(&src, "contacts-0");
    assert!(c_ys.last().is_some_and(|y| *y < 13.0), "{c_ys:?}");
    // The current values are text in the charts' legends, the axes are labelled.
    let now: f64 = b.text_of("#requests-0-now").parse().unwrap();
    assert!(now > 0.0);
    assert_eq!(b.text_of("#contacts-0-now"), "1");
    let total: u64 = b.text_of("#current-requests-total").parse().unwrap();
    assert!(total >= 2, "{total}");
    assert!(b.text_of("#current-replies-2xx").parse::<f64>().unwrap() > 0.0);
    assert!(!b.find_all("#chart-requests text.xtick").is_empty());
    assert!(src.contains(">now</text>"), "{src}");
    assert!(src.contains("per second"), "{src}");
    assert_eq!(b.find_all("#chart-replies polyline").len(), 6);
    assert_eq!(b.find_all("#chart-shards polyline").len(), 1);
    // No script at all (CSP forbids it anyway) and no external asset.
    assert!(b.find_all("script").is_empty());
    assert!(
        !src.contains("src=\"http") && !src.contains("href=\"http"),
        "{src}"
    );
    b.screenshot(&shots.join("stats-01-traffic.png"));
    b.goto(&format!("{base}/ui/stats#current"));
    b.screenshot(&shots.join("stats-02-now.png"));

    // It can reload itself, without a script.
    let (cookie, _) = login(srv.http);
    let r = http(
        srv.http,
        "GET",
        "/ui/stats?refresh=10",
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body
            .contains("<meta http-equiv=\"refresh\" content=\"10\">"),
        "{}",
        r.body
    );
    let r = http(srv.http, "GET", "/ui/stats", &[("Cookie", &cookie)], "");
    assert!(!r.body.contains("http-equiv"), "{}", r.body);

    // Without a session: the login page.
    let r = http(srv.http, "GET", "/ui/stats", &[], "");
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/ui/login"));
    eprintln!("web_stats screenshots in {}", shots.display());
    drop(srv);
}

// ---------------------------------------------------------------- configuration

/// A route whose answer says which version of the script runs (`extra`: lines before its end).
fn script(version: &str, extra: &str) -> String {
    [
        "loadmodule \"sl.so\"\n".to_string(),
        "route {\n".into(),
        "    if (method == \"OPTIONS\") {\n".into(),
        format!("        sl_send_reply(\"200\", \"Version {version}\");\n"),
        "        break;\n".into(),
        "    };\n".into(),
        extra.into(),
        "    sl_send_reply(\"404\", \"Not Here\");\n".into(),
        "}\n".into(),
    ]
    .concat()
}

fn options_reply(to: SocketAddr, n: u32) -> String {
    let sock = udp_client("127.0.0.1");
    let req = request(
        "OPTIONS",
        &format!("sip:{to}"),
        "127.0.0.1:5997",
        "UDP",
        &format!("cfg-{n}@x"),
    );
    let r = udp_exchange(&sock, to, req.as_bytes()).unwrap();
    status_line(&r).to_string()
}

fn cleanup(cfg: &Path) {
    let mut bak = cfg.as_os_str().to_owned();
    bak.push(".bak");
    let _ = std::fs::remove_file(PathBuf::from(bak));
}

#[test]
fn the_configuration_page_checks_saves_and_reloads() {
    if !chromium() {
        skip!("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)");
    }
    let dir = test_dir("config");
    let srv = start(&dir, &script("A", ""));
    let cfg = srv.ser.cfg.clone();
    let base = format!("http://127.0.0.1:{}", srv.http);
    assert_eq!(options_reply(srv.sip, 0), "SIP/2.0 200 Version A");
    let b = Browser::start(free_port("127.0.0.1"), &dir);
    let shots = shots_dir("web_stats");
    let shot = |name: &str| b.screenshot(&shots.join(format!("{name}.png")));

    // The page shows the running file.
    browser_login(&b, &base, "/ui/config");
    assert_eq!(b.text_of("#path"), cfg.display().to_string());
    let shown = b.source();
    assert!(shown.contains("Version A"), "{shown}");
    shot("config-01-running");

    // A good change: saved, reloaded, and SIP answers from the new route.
    b.type_into("#script", &script("B", ""));
    b.click_on("#save");
    let flash = b.text_of("#flash");
    assert!(flash.contains("reloaded"), "{flash}");
    assert_eq!(options_reply(srv.sip, 1), "SIP/2.0 200 Version B");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), script("B", ""));
    let mut bak = cfg.as_os_str().to_owned();
    bak.push(".bak");
    assert_eq!(
        std::fs::read_to_string(PathBuf::from(&bak)).unwrap(),
        script("A", "")
    );
    shot("config-02-saved");

    // A bad one, checked: the compiler's diagnostic, with the line and its caret, as text.
    let bad = script(
        "C",
        &format!("    sl_send_reply(\"200\", \"{EVIL}\");\n    no_such_function();\n"),
    );
    b.goto(&format!("{base}/ui/config"));
    b.type_into("#script", &bad);
    b.click_on("#check");
    let outcome = b.text_of("#outcome");
    assert!(outcome.contains("1 error"), "{outcome}");
    let errors = b.text_of("#errors");
    let at = format!("{}:8:5", cfg.display());
    assert!(errors.contains(&at), "{errors}");
    assert!(errors.contains("no_such_function"), "{errors}");
    assert!(errors.contains("8 |     no_such_function();"), "{errors}");
    assert!(errors.contains("|     ^"), "{errors}");
    // The edited text stays in the form; the markup in it is text, not a script.
    assert!(b.find_all("script").is_empty(), "{}", b.source());
    assert!(b.source().contains("&lt;script&gt;"));
    // Checking wrote nothing.
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), script("B", ""));
    shot("config-03-check-error");

    // Saved anyway: refused, nothing written, the old route still answers.
    b.goto(&format!("{base}/ui/config"));
    b.type_into("#script", &bad);
    b.click_on("#save");
    let outcome = b.text_of("#outcome");
    assert!(outcome.contains("nothing was saved"), "{outcome}");
    assert!(b.text_of("#errors").contains(&at));
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), script("B", ""));
    assert_eq!(options_reply(srv.sip, 2), "SIP/2.0 200 Version B");
    shot("config-04-save-refused");

    // An uploaded file: checked, then saved and reloaded like the text area's.
    let up = dir.join("upload.cfg");
    std::fs::write(&up, script("E", "")).unwrap();
    b.goto(&format!("{base}/ui/config"));
    b.type_into("#file", &up.display().to_string());
    b.click_on("#upload-save");
    let flash = b.text_of("#flash");
    assert!(flash.contains("reloaded"), "{flash}");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), script("E", ""));
    assert_eq!(options_reply(srv.sip, 3), "SIP/2.0 200 Version E");
    shot("config-05-uploaded");
    std::fs::write(&up, &bad).unwrap();
    b.goto(&format!("{base}/ui/config"));
    b.type_into("#file", &up.display().to_string());
    b.click_on("#upload-save");
    assert!(b.text_of("#outcome").contains("nothing was saved"));
    assert!(b.text_of("#errors").contains(&at));
    assert_eq!(options_reply(srv.sip, 4), "SIP/2.0 200 Version E");

    // A clean check says so.
    b.goto(&format!("{base}/ui/config"));
    b.type_into("#script", &script("D", ""));
    b.click_on("#check");
    assert!(b.text_of("#outcome").contains("no errors"));
    assert_eq!(options_reply(srv.sip, 5), "SIP/2.0 200 Version E");
    eprintln!("web_stats screenshots in {}", shots.display());
    cleanup(&cfg);
}

#[test]
fn the_configuration_page_needs_a_session_and_the_csrf_token() {
    let dir = test_dir("config-sec");
    let srv = start(&dir, &script("A", ""));
    let cfg = srv.ser.cfg.clone();
    let hp = srv.http;
    let r = http(hp, "GET", "/ui/config", &[], "");
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/ui/login"));
    let good = script("B", "");
    let r = post(
        hp,
        "/ui/config",
        "ser_session=0123456789abcdef",
        &[("csrf", "x"), ("op", "save"), ("script", &good)],
    );
    assert_eq!(r.status, 403, "{r:?}");
    let (cookie, csrf) = login(hp);
    for fields in [
        vec![("op", "save"), ("script", good.as_str())],
        vec![("csrf", "wrong"), ("op", "save"), ("script", good.as_str())],
    ] {
        let r = post(hp, "/ui/config", &cookie, &fields);
        assert_eq!(r.status, 403, "{r:?}");
    }
    // A foreign origin, even with session and token.
    let r = http(
        hp,
        "POST",
        "/ui/config",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &cookie),
            ("Origin", "http://evil.example"),
        ],
        &form(&[("csrf", &csrf), ("op", "save"), ("script", &good)]),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), script("A", ""));
    assert_eq!(options_reply(srv.sip, 0), "SIP/2.0 200 Version A");

    // A bad save over HTTP: 422 with the diagnostics escaped, nothing written.
    let bad = format!("route {{\n    {EVIL}\n}}\n");
    let r = post(
        hp,
        "/ui/config",
        &cookie,
        &[("csrf", &csrf), ("op", "save"), ("script", &bad)],
    );
    assert_eq!(r.status, 422, "{r:?}");
    assert!(r.body.contains("&lt;script&gt;"), "{}", r.body);
    assert!(!r.body.contains(EVIL), "{}", r.body);
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), script("A", ""));

    // With session and token (and CRLF lines, as browsers send them) it is saved with LF.
    let r = post(
        hp,
        "/ui/config",
        &cookie,
        &[
            ("csrf", &csrf),
            ("op", "save"),
            ("script", &good.replace('\n', "\r\n")),
        ],
    );
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), good);
    assert_eq!(options_reply(srv.sip, 1), "SIP/2.0 200 Version B");

    // A script longer than the other pages' 64 KiB form limit is taken here.
    let long = format!(
        "{}{}",
        "# a long comment line to make the file large\n".repeat(3000),
        script("F", "")
    );
    assert!(long.len() > 128 * 1024);
    let r = post(
        hp,
        "/ui/config",
        &cookie,
        &[("csrf", &csrf), ("op", "save"), ("script", &long)],
    );
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), long);
    assert_eq!(options_reply(srv.sip, 2), "SIP/2.0 200 Version F");
    cleanup(&cfg);
}
