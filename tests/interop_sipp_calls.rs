//! Interop with real peers over loopback, stateful: SIPp's built-in `uac` → ser (`record_route`,
//! `t_relay`, two shards so replies cross shards) → SIPp's built-in `uas`: INVITE/100/180/200/ACK/
//! BYE with 0 failed calls, and `t_stats`-visible transactions. Skips when sipp is missing.
#![allow(clippy::unwrap_used)]

#[path = "support/net.rs"]
mod net;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use net::*;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

const CFG: &str = "loadmodule \"sl.so\"\nloadmodule \"tm.so\"\nloadmodule \"rr.so\"\nloadmodule \"maxfwd.so\"\nroute {\n if (!mf_process_maxfwd_header(\"10\")) { sl_send_reply(\"483\", \"Too Many Hops\"); break; };\n if (loose_route()) { t_relay(); break; };\n record_route();\n rewritehostport(\"127.0.0.1:UASPORT\");\n if (!t_relay()) { sl_reply_error(); };\n}\n";

#[test]
fn sipp_calls_through_stateful_ser() {
    if !have("sipp") {
        eprintln!("SKIP sipp_calls_through_stateful_ser: sipp is not installed (apt-get install sip-tester)");
        return;
    }
    let uas_port = free_port("127.0.0.1");
    let uac_port = free_port("127.0.0.1");
    let ser_port = free_port("127.0.0.1");
    let cfg = CFG.replace("UASPORT", &uas_port.to_string());
    let sp = ser_port.to_string();
    let _ser = Ser::start_with_cfg(&cfg, &["-l", "127.0.0.1", "-p", &sp, "-n", "2"]);
    let _uas = KillOnDrop(
        Command::new("sipp")
            .args(["-sn", "uas", "-i", "127.0.0.1", "-p", &uas_port.to_string()])
            .args(["-nostdin", "-timeout", "60s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let out = Command::new("timeout")
        .args(["60", "sipp", "-sn", "uac", &format!("127.0.0.1:{ser_port}")])
        .args(["-i", "127.0.0.1", "-p", &uac_port.to_string()])
        .args(["-m", "200", "-r", "100", "-timeout", "40s", "-nostdin"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .map(|l| l.split('|').nth(2).unwrap_or("").trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(out.status.code(), Some(0), "sipp uac failed:\n{text}");
    assert_eq!(line("Successful call"), "200", "{text}");
    assert_eq!(line("Failed call"), "0", "{text}");
    assert!(started.elapsed() < Duration::from_secs(60));
}
