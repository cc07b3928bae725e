//! Interop with real peers over loopback: SIPp's built-in `uac` → ser (stateless forward) → SIPp's
//! built-in `uas`, with 0 failed calls; and `sipsak -s` answered. `scripts/setup` installs both
//! (Debian packages `sip-tester` and `sipsak`); without them the tests say so and skip.
#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "support/skip.rs"]
mod skip;
#[path = "support/net.rs"]
mod net;

use std::process::{Command, Stdio};

use net::*;

#[test]
fn sipp_uac_through_ser_to_sipp_uas() {
    if !have("sipp") {
        skip!("sipp is not installed (apt-get install sip-tester)");
    }
    let uas_port = free_port("127.0.0.1");
    let uac_port = free_port("127.0.0.1");
    let ser_port = free_port("127.0.0.1");
    let cfg = FORWARD_CFG.replace("UASPORT", &uas_port.to_string());
    let sp = ser_port.to_string();
    let _ser = Ser::start_with_cfg(&cfg, &["-l", "127.0.0.1", "-p", &sp]);
    let _uas = sipp_uas(uas_port);
    sipp_uac_all_succeed(&format!("127.0.0.1:{ser_port}"), uac_port, 100, 50);
}

#[test]
fn sipsak_options_answered() {
    if !have("sipsak") {
        skip!("sipsak is not installed (apt-get install sipsak)");
    }
    let ser_port = free_port("127.0.0.1");
    let sp = ser_port.to_string();
    // sipsak 0.9.8 cuts the last digit of a five-digit port from the Request-URI it sends, so the
    // script answers every OPTIONS rather than only those for `myself`.
    let cfg = "loadmodule \"sl.so\"\nroute { if (method == \"OPTIONS\") { sl_send_reply(\"200\", \"OK\"); break; }; }\n";
    let _ser = Ser::start_with_cfg(cfg, &["-l", "127.0.0.1", "-p", &sp]);
    let out = Command::new("timeout")
        .args([
            "20",
            "sipsak",
            "-vv",
            "-s",
            &format!("sip:x@127.0.0.1:{ser_port}"),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("SIP/2.0 200 OK"), "{text}");
}
