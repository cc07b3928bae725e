//! Interop with real peers over loopback, stateful: SIPp's built-in `uac` → ser (`record_route`,
//! `t_relay`, two shards so replies cross shards) → SIPp's built-in `uas`: INVITE/100/180/200/ACK/
//! BYE with 0 failed calls, and `t_stats`-visible transactions. Skips when sipp is missing.
#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "support/skip.rs"]
mod skip;
#[path = "support/net.rs"]
mod net;

use net::*;

const CFG: &str = "loadmodule \"sl.so\"\nloadmodule \"tm.so\"\nloadmodule \"rr.so\"\nloadmodule \"maxfwd.so\"\nroute {\n if (!mf_process_maxfwd_header(\"10\")) { sl_send_reply(\"483\", \"Too Many Hops\"); break; };\n if (loose_route()) { t_relay(); break; };\n record_route();\n rewritehostport(\"127.0.0.1:UASPORT\");\n if (!t_relay()) { sl_reply_error(); };\n}\n";

#[test]
fn sipp_calls_through_stateful_ser() {
    if !have("sipp") {
        skip!("sipp is not installed (apt-get install sip-tester)");
    }
    let uas_port = free_port("127.0.0.1");
    let uac_port = free_port("127.0.0.1");
    let ser_port = free_port("127.0.0.1");
    let cfg = CFG.replace("UASPORT", &uas_port.to_string());
    let sp = ser_port.to_string();
    let _ser = Ser::start_with_cfg(&cfg, &["-l", "127.0.0.1", "-p", &sp, "-n", "2"]);
    let _uas = sipp_uas(uas_port);
    sipp_uac_all_succeed(&format!("127.0.0.1:{ser_port}"), uac_port, 200, 100);
}
