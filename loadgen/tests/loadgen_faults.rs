//! Retransmission, digest authentication and unreachable targets.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;

use support::{closed_port, run_json, u, Uas};

#[test]
fn retransmits_what_the_uas_dropped() {
    let uas = Uas::start(&["--drop-first", "5"]);
    let (code, v, stderr) = run_json(&[
        "options", "--target", &uas.addr, "--rate", "200", "--max", "20", "--t1-ms", "40",
    ]);
    assert_eq!(code, 0, "{v} {stderr}");
    assert_eq!(u(&v, "succeeded"), 20, "{v}");
    // At least the 5 dropped requests were sent again (a slow box may add spurious ones: every
    // send reaches the uas over loopback, so its count is exactly originals + retransmissions).
    let retrans = u(&v, "retransmissions");
    assert!(retrans >= 5, "{v}");
    let s = uas.wait_stats(|s| u(s, "received.OPTIONS") == 20 + retrans);
    assert_eq!(u(&s, "dropped"), 5, "{s}");
    assert_eq!(u(&s, "replies.200"), 15 + retrans, "{s}");
}

#[test]
fn invite_retransmissions_too() {
    let uas = Uas::start(&["--drop-first", "3"]);
    let (code, v, stderr) = run_json(&[
        "call", "--target", &uas.addr, "--rate", "100", "--max", "10", "--t1-ms", "40",
    ]);
    assert_eq!(code, 0, "{v} {stderr}");
    assert_eq!(u(&v, "succeeded"), 10, "{v}");
    assert!(u(&v, "retransmissions") >= 3, "{v}");
}

#[test]
fn digest_auth_register_and_call() {
    let uas = Uas::start(&["--auth", "lgrealm:s3cret"]);
    let (code, v, stderr) = run_json(&[
        "register",
        "--target",
        &uas.addr,
        "--users",
        "a%d@example.com",
        "--range",
        "1-10",
        "--password",
        "s3cret",
        "--max",
        "10",
        "--rate",
        "200",
    ]);
    assert_eq!((code, u(&v, "succeeded")), (0, 10), "{v} {stderr}");
    let (code, v, stderr) = run_json(&[
        "call",
        "--target",
        &uas.addr,
        "--password",
        "s3cret",
        "--max",
        "5",
        "--rate",
        "200",
    ]);
    assert_eq!((code, u(&v, "succeeded")), (0, 5), "{v} {stderr}");
    let s = uas.wait_stats(|s| u(s, "received.BYE") == 5);
    assert_eq!(u(&s, "replies.401"), 15, "{s}");
    assert_eq!(u(&s, "received.REGISTER"), 20, "{s}");
    assert_eq!(
        u(&s, "received.ACK"),
        10,
        "the 401 and the 200 are both acknowledged: {s}"
    );

    let (code, v, _) = run_json(&[
        "register",
        "--target",
        &uas.addr,
        "--password",
        "wrong",
        "--max",
        "3",
        "--rate",
        "200",
    ]);
    assert_eq!(code, 1);
    assert_eq!(u(&v, "failures.status.403"), 3, "{v}");
}

#[test]
fn digest_passwords_from_csv() {
    let uas = Uas::start(&["--auth", "r:pw1"]);
    let csv = std::env::temp_dir().join(format!("loadgen-users-{}.csv", std::process::id()));
    let mut f = std::fs::File::create(&csv).unwrap();
    writeln!(
        f,
        "# user,password\nalice@example.com,pw1\nbob@example.com,nope"
    )
    .unwrap();
    drop(f);
    let (code, v, _) = run_json(&[
        "register",
        "--target",
        &uas.addr,
        "--users-csv",
        csv.to_str().unwrap(),
        "--max",
        "4",
        "--rate",
        "200",
    ]);
    let _ = std::fs::remove_file(&csv);
    assert_eq!(code, 1, "bob's password is wrong: {v}");
    assert_eq!(u(&v, "succeeded"), 2, "{v}");
    assert_eq!(u(&v, "failures.status.403"), 2, "{v}");
}

#[test]
fn unreachable_target_is_a_transport_error_with_a_clear_message() {
    let port = closed_port();
    let target = format!("127.0.0.1:{port}");
    let (code, v, stderr) = run_json(&[
        "options", "--target", &target, "--max", "3", "--t1-ms", "20",
    ]);
    assert_eq!(code, 1);
    assert_eq!(u(&v, "failures.transport"), 3, "{v}");
    assert!(
        stderr.contains(&format!("no response from {target}")),
        "{stderr}"
    );
    assert!(stderr.contains("connection refused"), "{stderr}");

    let out = support::run(&[
        "options",
        "--target",
        &target,
        "--transport",
        "tcp",
        "--max",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("connection refused by"), "{stderr}");
}

#[test]
fn silent_target_times_out_after_64_t1_with_retransmissions() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = silent.local_addr().unwrap().to_string();
    let started = std::time::Instant::now();
    let (code, v, stderr) = run_json(&[
        "options", "--target", &target, "--max", "2", "--t1-ms", "10", "--t2-ms", "40",
    ]);
    assert_eq!(code, 1);
    assert_eq!(u(&v, "failures.timeout"), 2, "{v}");
    // E: 10, 20, 40, 40, … until 640 ms: 1 + 1 + 1 + 14 retransmissions (16 sends per request).
    // (Fewer when the box is so busy that timers fire late.)
    let r = u(&v, "retransmissions");
    assert!((2 * 8..=2 * 17).contains(&r), "{v}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        stderr.contains(&format!("no response from {target}")),
        "{stderr}"
    );
}

#[test]
fn proxy_auth_407_is_answered_with_proxy_authorization() {
    let uas = Uas::start(&["--auth", "px:pw", "--proxy-auth"]);
    let (code, v, stderr) = run_json(&[
        "call",
        "--t1-ms",
        "2000",
        "--target",
        &uas.addr,
        "--password",
        "pw",
        "--max",
        "4",
        "--rate",
        "200",
    ]);
    assert_eq!((code, u(&v, "succeeded")), (0, 4), "{v} {stderr}");
    let s = uas.wait_stats(|s| u(s, "received.BYE") == 4);
    assert_eq!(u(&s, "replies.407"), 4, "{s}");
    assert_eq!(u(&s, "replies.403"), 0, "{s}");
}

#[test]
fn with_every_request_failed_the_latency_is_not_a_row_of_zeros() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = silent.local_addr().unwrap().to_string();
    let out = support::run(&[
        "options", "--target", &target, "--max", "1", "--t1-ms", "5", "--t2-ms", "20",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("latency"))
        .unwrap_or_else(|| panic!("no latency line in {stderr}"));
    assert_eq!(
        line,
        "latency (request->final) ms: n/a (no request succeeded)"
    );
    let (_, v, _) = run_json(&[
        "options", "--target", &target, "--max", "1", "--t1-ms", "5", "--t2-ms", "20",
    ]);
    assert_eq!(u(&v, "latency_ms.count"), 0, "{v}");
    assert!(v["latency_ms"]["p50"].is_null(), "{v}");
    assert!(v["latency_ms"]["max"].is_null(), "{v}");
}
