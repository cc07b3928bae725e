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

#[test]
fn a_schema_version_mismatch_is_reported_at_start() {
    let dir = std::env::temp_dir().join(format!("ser-dbver-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ser.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE version (table_name varchar(64) NOT NULL, table_version smallint NOT NULL);
             INSERT INTO version VALUES ('location', '3');",
        )
        .unwrap();
    }
    let url = format!("sqlite://{}", path.display());
    let port = free_port("127.0.0.1");
    let p = port.to_string();
    let ser = Ser::start_with_env(
        MIN_CFG,
        &["-l", "127.0.0.1", "-p", p.as_str()],
        &[("SER_DB_URL", url.as_str())],
    );
    assert!(
        ser.wait_log(
            "table location is version 3 but this ser needs version 6",
            Duration::from_secs(10)
        ),
        "{}",
        ser.log_text()
    );
    drop(ser);
    let _ = std::fs::remove_dir_all(&dir);
}
