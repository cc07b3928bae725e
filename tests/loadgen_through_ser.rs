//! loadgen against a running ser on loopback: every scenario through ser acting as a stateless
//! proxy to a `loadgen uas`, with loadgen's counts checked against what the UAS saw; and OPTIONS
//! answered by ser itself. Short and bounded.
//!
//! The `loadgen` binary belongs to another package, so it is found beside `ser` in the target
//! directory (`cargo test --workspace` builds it); run alone with `-p ser`, the test says so and
//! skips.
#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "support/skip.rs"]
mod skip;
#[path = "support/net.rs"]
mod net;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use net::*;

fn loadgen() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_BIN_EXE_ser")).with_file_name("loadgen");
    p.exists().then_some(p)
}

/// Runs loadgen with `args` (plus `--json -q`), returns its exit code and JSON summary.
fn run(bin: &PathBuf, args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new("timeout")
        .arg("60")
        .arg(bin)
        .args(args)
        .args(["--json", "-q"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "loadgen output is not JSON ({e}): {text} / {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

fn num(v: &serde_json::Value, path: &str) -> u64 {
    path.split('.')
        .fold(v, |v, k| &v[k])
        .as_u64()
        .unwrap_or_else(|| panic!("{path} missing in {v}"))
}

#[test]
fn every_scenario_through_ser() {
    let Some(bin) = loadgen() else {
        skip!("no loadgen binary beside ser (run cargo test --workspace)");
    };
    let uas_port = free_port("127.0.0.1");
    let stats = std::env::temp_dir().join(format!("ser-lg-uas-{}.json", std::process::id()));
    let _uas = KillOnDrop(
        Command::new(&bin)
            .args([
                "uas",
                "--bind",
                &format!("127.0.0.1:{uas_port}"),
                "-q",
                "--duration",
                "60",
            ])
            .arg("--stats-file")
            .arg(&stats)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let port = free_port("127.0.0.1");
    let p = port.to_string();
    let _ser = Ser::start_with_cfg(
        &FORWARD_CFG.replace("UASPORT", &uas_port.to_string()),
        &["-l", "127.0.0.1", "-p", &p],
    );
    let target = format!("127.0.0.1:{port}");

    // Answered by ser itself (the R-URI is ser's address).
    let (code, v) = run(
        &bin,
        &[
            "options", "--target", &target, "--rate", "500", "--max", "100",
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(num(&v, "succeeded"), 100, "{v}");

    // Through ser to the UAS (a R-URI that is not ser's).
    let via = ["--to", "bob@example.com"];
    for (scenario, n, extra) in [
        ("message", 60u64, vec![]),
        (
            "register",
            50,
            vec!["--users", "u%d@example.com", "--range", "1-10"],
        ),
        ("call", 30, vec!["--hold-ms", "10"]),
    ] {
        let max = n.to_string();
        let mut args = vec![
            scenario,
            "--target",
            target.as_str(),
            "--rate",
            "300",
            "--max",
            max.as_str(),
        ];
        if scenario != "register" {
            args.extend_from_slice(&via);
        }
        args.extend(extra.iter().copied());
        let (code, v) = run(&bin, &args);
        assert_eq!(code, 0, "{scenario}: {v}");
        assert_eq!(num(&v, "succeeded"), n, "{scenario}: {v}");
        assert_eq!(num(&v, "failed"), 0, "{scenario}: {v}");
    }

    // What loadgen counted as done, the UAS saw (and nothing else reached it).
    let end = Instant::now() + Duration::from_secs(5);
    let s = loop {
        let s: serde_json::Value = std::fs::read_to_string(&stats)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        if s["received"]["BYE"].as_u64() == Some(30) || Instant::now() > end {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = std::fs::remove_file(&stats);
    assert!(
        s["received"].get("OPTIONS").is_none(),
        "ser answered the OPTIONS itself: {s}"
    );
    assert_eq!(num(&s, "received.total"), 60 + 50 + 30 * 3, "{s}");
    assert_eq!(num(&s, "received.MESSAGE"), 60, "{s}");
    assert_eq!(num(&s, "received.REGISTER"), 50, "{s}");
    assert_eq!(num(&s, "received.INVITE"), 30, "{s}");
    assert_eq!(num(&s, "received.ACK"), 30, "{s}");
    assert_eq!(num(&s, "received.BYE"), 30, "{s}");
}

/// Authenticated registrations against ser's registrar with digest auth over SQLite: every
/// REGISTER challenged once (4 messages per registration), and with `--reuse-nonce` later
/// REGISTERs of a user answered at once with the next nonce-count, which ser accepts (2 messages).
#[test]
fn register_auth_with_and_without_nonce_reuse() {
    let Some(bin) = loadgen() else {
        skip!("no loadgen binary beside ser (run cargo test --workspace)");
    };
    let dir = std::env::temp_dir().join(format!("ser-lg-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("ser.db");
    let cfg = "loadmodule \"sl.so\"\nloadmodule \"usrloc.so\"\nloadmodule \"registrar.so\"\n\
         loadmodule \"auth.so\"\nloadmodule \"auth_db.so\"\n\
         modparam(\"auth_db\", \"calculate_ha1\", 1)\nmodparam(\"auth_db\", \"password_column\", \"password\")\n\
         route {\n if (!www_authorize(\"lg.test\", \"subscriber\")) { www_challenge(\"lg.test\", \"1\"); break; };\n save(\"location\");\n}\n";
    let port = free_port("127.0.0.1");
    let url = format!("sqlite://{}", db.display());
    let _ser = Ser::start_with_env(
        cfg,
        &["-l", "127.0.0.1", "-p", &port.to_string()],
        &[("SER_DB_URL", &url)],
    );
    // Ten subscribers, through serctl's table layout (ser creates the schema on first use).
    let serctl = PathBuf::from(env!("CARGO_BIN_EXE_serctl"));
    for i in 1..=10 {
        let out = Command::new(&serctl)
            .args(["add", &format!("u{i}"), "secret", "u@lg.test"])
            .env("SER_DB_URL", &url)
            .env("SIP_DOMAIN", "lg.test")
            .env("SER_FIFO", dir.join("no-fifo"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let target = format!("127.0.0.1:{port}");
    let base = [
        "register",
        "--target",
        target.as_str(),
        "--users",
        "u%d@lg.test",
        "--range",
        "1-10",
        "--password",
        "secret",
        "--rate",
        "200",
        "--max",
        "100",
    ];
    // Responses to retransmissions (a slow turn on a busy machine) are counted as stray: the
    // counts below leave them out, so they do not depend on timing.
    let answered = |v: &serde_json::Value| num(v, "responses") - num(v, "stray_responses");
    let (code, v) = run(&bin, &base);
    assert_eq!(code, 0, "{v}");
    assert_eq!(num(&v, "succeeded"), 100, "{v}");
    assert_eq!(answered(&v), 200, "a challenge and a 200 each: {v}");
    // One registration in flight at a time: a user's next REGISTER always starts after its
    // challenge was answered, so it can reuse that nonce (with the rate alone, two REGISTERs of
    // one user could overlap and both be challenged — 111 instead of 110 under load).
    let mut reuse = base.to_vec();
    reuse.extend(["--reuse-nonce", "--concurrency", "1"]);
    let (code, v) = run(&bin, &reuse);
    assert_eq!(code, 0, "{v}");
    assert_eq!(num(&v, "succeeded"), 100, "{v}");
    // One challenge per user, then straight 200s.
    assert_eq!(answered(&v), 110, "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// README's quick start: the shipped ser.cfg (registrations in SQLite), loadgen registering
/// users with it, and calls through it to a `loadgen uas` as the far end.
#[test]
fn readme_quick_start_loadgen_commands_succeed_against_the_shipped_config() {
    let Some(bin) = loadgen() else {
        skip!("no loadgen binary beside ser (run cargo test --workspace)");
    };
    let dir = std::env::temp_dir().join(format!("ser-lg-quick-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ser.cfg"))
        .unwrap()
        .replace("/tmp/ser_fifo", dir.join("fifo").to_str().unwrap());
    let url = format!("sqlite://{}", dir.join("ser.db").display());
    let port = free_port("127.0.0.1");
    let _ser = Ser::start_with_env(
        &cfg,
        &["-l", "127.0.0.1", "-p", &port.to_string()],
        &[("SER_DB_URL", &url)],
    );
    let target = format!("127.0.0.1:{port}");
    // loadgen register --target 127.0.0.1:5060 --users 'u%d@127.0.0.1:5060' --range 1-100 --rate 200 --max 1000
    let users = format!("u%d@{target}");
    let (code, v) = run(
        &bin,
        &[
            "register", "--target", &target, "--users", &users, "--range", "1-100", "--rate",
            "200", "--max", "200",
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(num(&v, "succeeded"), 200, "{v}");
    assert_eq!(num(&v, "failed"), 0, "{v}");
    // loadgen uas --bind 127.0.0.1:5070 & loadgen call --target 127.0.0.1:5060 --to bob@127.0.0.1:5070
    let uas_port = free_port("127.0.0.1");
    let _uas = KillOnDrop(
        Command::new(&bin)
            .args([
                "uas",
                "--bind",
                &format!("127.0.0.1:{uas_port}"),
                "-q",
                "--duration",
                "60",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let to = format!("bob@127.0.0.1:{uas_port}");
    let (code, v) = run(
        &bin,
        &[
            "call", "--target", &target, "--to", &to, "--rate", "50", "--max", "20",
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(num(&v, "succeeded"), 20, "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}
