//! Every scenario against a `loadgen uas` child over loopback, and the client's counts against
//! what the UAS saw.
#![allow(clippy::unwrap_used)]

mod support;

use support::{run_json, u, Uas};

fn ok_run(uas: &Uas, scenario: &str, extra: &[&str], n: u64) -> serde_json::Value {
    let max = n.to_string();
    let mut args = vec![
        scenario, "--target", &uas.addr, "--rate", "400", "--max", &max,
    ];
    args.extend_from_slice(extra);
    let (code, v, stderr) = run_json(&args);
    assert_eq!(code, 0, "{scenario}: {v} {stderr}");
    assert_eq!(u(&v, "started"), n, "{v}");
    assert_eq!(u(&v, "succeeded"), n, "{v}");
    assert_eq!(u(&v, "failed"), 0, "{v}");
    assert_eq!(u(&v, "latency_ms.count"), n, "{v}");
    assert_eq!(u(&v, "retransmissions"), 0, "{v}");
    v
}

#[test]
fn each_scenario_over_udp_and_counts_match_the_uas() {
    let uas = Uas::start(&[]);
    ok_run(&uas, "options", &[], 40);
    ok_run(&uas, "message", &[], 30);
    ok_run(
        &uas,
        "register",
        &["--users", "user%d@example.com", "--range", "1-7"],
        25,
    );
    let v = ok_run(&uas, "call", &["--hold-ms", "20"], 20);
    assert_eq!(v["latency_ms"]["what"], "INVITE->200");
    assert_eq!(
        u(&v, "responses"),
        20 * 4,
        "100, 180, 200 and the BYE's 200: {v}"
    );
    let s = uas.wait_stats(|s| u(s, "received.BYE") == 20);
    assert_eq!(u(&s, "received.OPTIONS"), 40, "{s}");
    assert_eq!(u(&s, "received.MESSAGE"), 30, "{s}");
    assert_eq!(u(&s, "received.REGISTER"), 25, "{s}");
    assert_eq!(u(&s, "received.INVITE"), 20, "{s}");
    assert_eq!(u(&s, "received.ACK"), 20, "{s}");
    assert_eq!(u(&s, "received.total"), 40 + 30 + 25 + 20 * 3, "{s}");
    assert_eq!(u(&s, "replies.200"), 40 + 30 + 25 + 20 * 2, "{s}");
    assert_eq!(u(&s, "replies.180"), 20, "{s}");
}

#[test]
fn each_scenario_over_tcp() {
    let uas = Uas::start_on("tcp", &[]);
    for (scenario, extra) in [
        ("options", vec![]),
        ("message", vec![]),
        ("register", vec!["--users", "t%d@example.com"]),
        ("call", vec![]),
    ] {
        let mut args = extra.clone();
        args.extend(["--transport", "tcp", "--sockets", "2"]);
        let v = ok_run(&uas, scenario, &args, 20);
        assert_eq!(u(&v, "retransmissions"), 0);
        assert_eq!(v["transport"], "TCP");
    }
    uas.wait_stats(|s| u(s, "received.BYE") == 20 && u(s, "received.OPTIONS") == 20);
}

#[test]
fn several_threads_and_sockets_ipv4() {
    let uas = Uas::start(&["--threads", "2"]);
    let v = ok_run(&uas, "options", &["--threads", "2", "--sockets", "4"], 100);
    assert_eq!(u(&v, "stray_responses"), 0);
}

#[test]
fn ramp_reports_a_highest_good_rate() {
    let uas = Uas::start(&[]);
    let (code, v, stderr) = run_json(&[
        "options",
        "--target",
        &uas.addr,
        "--ramp",
        "100:100:0.3",
        "--duration",
        "1.5",
    ]);
    assert_eq!(code, 0, "{v} {stderr}");
    let best = v["ramp"]["highest_good_rate"].as_f64().unwrap_or(0.0);
    assert!(best >= 100.0, "{v}");
    assert!(
        v["ramp"]["steps"].as_array().is_some_and(|s| !s.is_empty()),
        "{v}"
    );
}

#[test]
fn ipv6_loopback() {
    let uas = Uas::start_at("[::1]:0", "udp", &[]);
    assert!(uas.addr.starts_with("[::1]:"), "{}", uas.addr);
    ok_run(&uas, "options", &[], 10);
    ok_run(&uas, "call", &[], 5);
    let uas = Uas::start_at("[::1]:0", "tcp", &[]);
    ok_run(&uas, "register", &["--transport", "tcp"], 5);
}

#[test]
fn uas_reports_its_counts_on_sigterm() {
    let mut uas = Uas::start(&[]);
    ok_run(&uas, "options", &[], 7);
    uas.wait_stats(|s| support::u(s, "received.OPTIONS") == 7);
    let pid = uas.child.id().to_string();
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let code = loop {
        if let Some(st) = uas.child.try_wait().unwrap() {
            break st.code();
        }
        assert!(std::time::Instant::now() < deadline, "uas ignored SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&uas.stats).unwrap()).unwrap();
    assert_eq!(u(&s, "received.OPTIONS"), 7, "{s}");
    assert_eq!(u(&s, "replies.200"), 7, "{s}");
}
