//! The server with its database down: SIP keeps flowing, start-up and a clean shutdown are not
//! delayed by the database.
#![allow(clippy::unwrap_used)]

#[path = "support/net.rs"]
mod net;

use std::time::{Duration, Instant};

use net::*;

#[test]
fn sip_flows_and_shutdown_is_prompt_while_the_database_is_down() {
    let port = free_port("127.0.0.1");
    let p = port.to_string();
    let started = Instant::now();
    let mut ser = Ser::start_with_env(
        MIN_CFG,
        &["-l", "127.0.0.1", "-p", p.as_str()],
        &[("SER_DB_URL", "postgres://postgres@127.0.0.1:1/ser")],
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let client = udp_client("127.0.0.1");
    let me = client.local_addr().unwrap().to_string();
    let req = request(
        "OPTIONS",
        &format!("sip:127.0.0.1:{port}"),
        &me,
        "UDP",
        "db-down-1@test",
    );
    let reply = udp_exchange(
        &client,
        format!("127.0.0.1:{port}").parse().unwrap(),
        req.as_bytes(),
    )
    .expect("a reply while the DB is down");
    assert_eq!(status_line(&reply), "SIP/2.0 200 OK", "{reply}");
    let stopping = Instant::now();
    let st = ser.terminate(Duration::from_secs(10)).expect("ser exits");
    assert!(st.success(), "{st:?}\n{}", ser.log_text());
    assert!(stopping.elapsed() < Duration::from_secs(5));
}
