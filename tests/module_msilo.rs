//! Module `msilo` end to end: the real `ser` running tests/data/scripts/msilo.cfg (only the
//! database URL and the registrar address changed), a sender and a recipient as UDP sockets over
//! loopback, and the `silo` rows in ser's database (read back through the storage layer, so the
//! same checks run on SQLite, PostgreSQL and MariaDB): a MESSAGE for an off-line user is stored
//! before the 202, survives a restart, arrives exactly once when the user registers and is
//! deleted only after a 2xx; a refused delivery stays stored.
#![allow(clippy::unwrap_used)]

#[path = "support/net.rs"]
mod net;
#[macro_use]
#[path = "support/skip.rs"]
mod skip;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use net::*;

static N: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sqlite_db() -> (Dir, String) {
    let dir = Dir(std::env::temp_dir().join(unique("ser-msilo")));
    std::fs::create_dir_all(&dir.0).unwrap();
    let url = format!("sqlite://{}", dir.0.join("ser.db").display());
    (dir, url)
}

/// msilo.cfg with `url` as msilo's database, the registrar line replaced by `registrar` (a
/// whole modparam line, or nothing) and `extra` modparam lines.
fn cfg(url: &str, registrar: &str, extra: &str) -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scripts/msilo.cfg"),
    )
    .unwrap();
    let reg = "modparam(\"msilo\", \"registrar\", \"sip:registrar@iptel.org\")\n";
    let db = "modparam(\"msilo\", \"db_url\", \"mysql://ser:heslo@localhost/ser\")";
    assert!(text.contains(reg) && text.contains(db));
    text.replace(reg, registrar).replace(
        db,
        &format!("modparam(\"msilo\", \"db_url\", \"{url}\")\n{extra}"),
    )
}

fn start(cfg: &str, port: u16, url: &str) -> Ser {
    // The server's own default database is the same one (nothing else uses it). Two shards: a
    // delivery's transaction may live on another shard than the REGISTER that started it.
    Ser::start_with_env(
        cfg,
        &["-l", "127.0.0.1", "-p", &port.to_string(), "-n", "2"],
        &[("SER_DB_URL", url)],
    )
}

fn sock() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s
}

/// A MESSAGE from `from` (its Contact is the socket) to `sip:<user>@<ser>`.
fn message(ser: SocketAddr, from: &UdpSocket, user: &str, body: &str, call: &str) -> String {
    let me = from.local_addr().unwrap();
    format!(
        "MESSAGE sip:{user}@{ser} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call}\r\n\
         Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@127.0.0.1>;tag=al-{call}\r\n\
         To: <sip:{user}@127.0.0.1>\r\nCall-ID: {call}\r\nCSeq: 1 MESSAGE\r\n\
         Contact: <sip:alice@{me}>\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn register(ser: SocketAddr, phone: &UdpSocket, user: &str, expires: u32, cseq: u32) -> String {
    let me = phone.local_addr().unwrap();
    format!(
        "REGISTER sip:{ser} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-reg-{user}-{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=r-{user}\r\n\
         To: <sip:{user}@127.0.0.1>\r\nCall-ID: reg-{user}@{me}\r\nCSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{user}@{me}>\r\nExpires: {expires}\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A reply to `req` from the UA (Via, From, To + tag, Call-ID, CSeq copied).
fn answer(req: &str, code: u16, reason: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for l in req.split("\r\n") {
        let lower = l.to_ascii_lowercase();
        if ["via:", "from:", "call-id:", "cseq:"]
            .iter()
            .any(|p| lower.starts_with(p))
        {
            out.push_str(l);
            out.push_str("\r\n");
        } else if lower.starts_with("to:") {
            out.push_str(l);
            out.push_str(";tag=ua\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

fn body_of(m: &str) -> &str {
    m.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn hdr<'a>(m: &'a str, name: &str) -> Option<&'a str> {
    m.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The final reply (skipping 1xx) the socket gets within `wait`.
fn final_reply(s: &UdpSocket, wait: Duration) -> Option<String> {
    let end = Instant::now() + wait;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end {
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if m.starts_with("SIP/2.0 ") && !m.starts_with("SIP/2.0 1") {
                return Some(m);
            }
        }
    }
    None
}

/// A UA on `phone` for `wait`: every MESSAGE is answered with `code`; returns the MESSAGEs (one
/// per transaction: retransmissions are answered again but not counted) and the final replies.
fn ua(phone: &UdpSocket, code: u16, wait: Duration) -> (Vec<String>, Vec<String>) {
    let end = Instant::now() + wait;
    let mut buf = vec![0u8; 65536];
    let (mut msgs, mut replies) = (Vec::new(), Vec::<String>::new());
    let mut branches = Vec::new();
    while Instant::now() < end {
        let Ok((n, from)) = phone.recv_from(&mut buf) else {
            continue;
        };
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if m.starts_with("MESSAGE ") {
            let reason = if code == 200 { "OK" } else { "Server Error" };
            phone
                .send_to(answer(&m, code, reason).as_bytes(), from)
                .unwrap();
            let via = hdr(&m, "Via").unwrap_or("").to_string();
            if !branches.contains(&via) {
                branches.push(via);
                msgs.push(m);
            }
        } else if m.starts_with("SIP/2.0 ") && !m.starts_with("SIP/2.0 1") {
            replies.push(m);
        }
    }
    (msgs, replies)
}

type Row = Vec<Option<String>>;

/// The silo rows (src_addr, dst_addr, username, domain, body, inc_time, exp_time, ctype, r_uri).
fn rows(url: &str) -> Vec<Row> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cols: Vec<String> = [
        "src_addr", "dst_addr", "username", "domain", "body", "inc_time", "exp_time", "ctype",
        "r_uri",
    ]
    .iter()
    .map(|c| c.to_string())
    .collect();
    rt.block_on(async {
        controlplane::db::Databases::new(url)
            .select("", "silo", &[], &cols)
            .await
            .unwrap()
    })
}

fn c(r: &Row, i: usize) -> &str {
    r[i].as_deref().unwrap_or("")
}

/// Polls until the table has `n` rows (≤ 5 s); the rows then.
fn rows_become(url: &str, n: usize) -> Vec<Row> {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let r = rows(url);
        if r.len() == n || Instant::now() > end {
            return r;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn store_restart_deliver(url: &str) {
    let port = free_port("127.0.0.1");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let text = cfg(url, "", "");
    let mut ser = start(&text, port, url);
    let alice = sock();
    let body = "hello bob — sent while you were away";
    alice
        .send_to(message(addr, &alice, "bob", body, "m1").as_bytes(), addr)
        .unwrap();
    let r = final_reply(&alice, Duration::from_secs(8)).expect("a final reply");
    assert!(r.starts_with("SIP/2.0 202 "), "{r}\n{}", ser.log_text());
    // The 202 came after the row was written: it is there now, no waiting.
    let got = rows(url);
    assert_eq!(got.len(), 1, "{got:?}");
    let row = &got[0];
    assert_eq!(c(row, 0), "sip:alice@127.0.0.1");
    assert_eq!(c(row, 1), "sip:bob@127.0.0.1");
    assert_eq!((c(row, 2), c(row, 3)), ("bob", "127.0.0.1"));
    assert_eq!(c(row, 4), body);
    assert_eq!(c(row, 7), "text/plain");
    assert_eq!(c(row, 8), format!("sip:bob@{addr}"));
    let (inc, exp): (u64, u64) = (c(row, 5).parse().unwrap(), c(row, 6).parse().unwrap());
    assert_eq!(exp - inc, 259200, "expire_time's default");

    // Restart: the message is in the database, not in ser.
    assert!(ser.terminate(Duration::from_secs(15)).is_some());
    drop(ser);
    assert_eq!(rows(url).len(), 1);
    let ser = start(&text, port, url);

    // Bob registers: the REGISTER gets its 200 and the message arrives once, as sent.
    let bob = sock();
    bob.send_to(register(addr, &bob, "bob", 600, 1).as_bytes(), addr)
        .unwrap();
    let (msgs, replies) = ua(&bob, 200, Duration::from_secs(3));
    assert!(
        replies.iter().any(|r| r.starts_with("SIP/2.0 200 ")),
        "{replies:?}\n{}",
        ser.log_text()
    );
    assert_eq!(msgs.len(), 1, "{msgs:?}\n{}", ser.log_text());
    let m = &msgs[0];
    assert!(
        m.starts_with(&format!(
            "MESSAGE sip:bob@{} SIP/2.0",
            bob.local_addr().unwrap()
        )),
        "{m}"
    );
    assert!(
        hdr(m, "From").unwrap().starts_with("<sip:alice@127.0.0.1>"),
        "{m}"
    );
    assert!(
        hdr(m, "To").unwrap().starts_with("<sip:bob@127.0.0.1>"),
        "{m}"
    );
    assert_eq!(hdr(m, "Content-Type"), Some("text/plain"), "{m}");
    let date = hdr(m, "Date").expect("a Date header");
    assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
    assert_eq!(body_of(m), body);
    // Delivered with a 200: the row goes.
    assert!(rows_become(url, 0).is_empty(), "{}", ser.log_text());

    // A second REGISTER delivers nothing more.
    bob.send_to(register(addr, &bob, "bob", 600, 2).as_bytes(), addr)
        .unwrap();
    let (msgs, _) = ua(&bob, 200, Duration::from_millis(1500));
    assert!(msgs.is_empty(), "{msgs:?}");
}

#[test]
fn a_message_for_an_offline_user_survives_a_restart_and_is_delivered_once_on_register() {
    let (_dir, url) = sqlite_db();
    store_restart_deliver(&url);
}

/// kill -9 right after the last of 20 MESSAGEs got its 202: each was written before its 202,
/// so all 20 are in the database after the restart and bob gets each exactly once.
#[test]
fn every_accepted_message_survives_kill_9() {
    let (_dir, url) = sqlite_db();
    let port = free_port("127.0.0.1");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let text = cfg(&url, "", "");
    let mut ser = start(&text, port, &url);
    let alice = sock();
    for i in 0..20 {
        let body = format!("note {i} before the crash");
        alice
            .send_to(
                message(addr, &alice, "bob", &body, &format!("k9-{i}")).as_bytes(),
                addr,
            )
            .unwrap();
        let r = final_reply(&alice, Duration::from_secs(8)).expect("a final reply");
        assert!(r.starts_with("SIP/2.0 202 "), "{r}\n{}", ser.log_text());
    }
    ser.child.kill().unwrap(); // SIGKILL: no clean stop, nothing flushed
    let _ = ser.child.wait();
    drop(ser);
    assert_eq!(rows(&url).len(), 20, "every accepted MESSAGE stored");
    let ser = start(&text, port, &url);
    let bob = sock();
    bob.send_to(register(addr, &bob, "bob", 600, 1).as_bytes(), addr)
        .unwrap();
    let (msgs, _) = ua(&bob, 200, Duration::from_secs(4));
    let mut bodies: Vec<String> = msgs.iter().map(|m| body_of(m).to_string()).collect();
    bodies.sort();
    let mut want: Vec<String> = (0..20)
        .map(|i| format!("note {i} before the crash"))
        .collect();
    want.sort();
    assert_eq!(bodies, want, "{}", ser.log_text());
    assert!(rows_become(&url, 0).is_empty(), "{}", ser.log_text());
}

#[test]
fn a_delivery_the_ua_refuses_stays_stored_until_one_succeeds() {
    let (_dir, url) = sqlite_db();
    let port = free_port("127.0.0.1");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ser = start(&cfg(&url, "", ""), port, &url);
    let alice = sock();
    alice
        .send_to(
            message(addr, &alice, "carol", "kept", "m2").as_bytes(),
            addr,
        )
        .unwrap();
    let r = final_reply(&alice, Duration::from_secs(8)).unwrap();
    assert!(r.starts_with("SIP/2.0 202 "), "{r}");

    // Carol's UA answers 500: the failure_route does not store the delivery a second time, and
    // the message stays as it was.
    let carol = sock();
    carol
        .send_to(register(addr, &carol, "carol", 600, 1).as_bytes(), addr)
        .unwrap();
    let (msgs, _) = ua(&carol, 500, Duration::from_secs(2));
    assert_eq!(msgs.len(), 1, "{msgs:?}\n{}", ser.log_text());
    let kept = rows(&url);
    assert_eq!(kept.len(), 1, "{kept:?}\n{}", ser.log_text());
    assert_eq!(c(&kept[0], 4), "kept");
    assert!(
        ser.log_text().contains("not delivered (503"),
        "{}",
        ser.log_text()
    );

    // The next REGISTER tries again; a 200 this time deletes it.
    carol
        .send_to(register(addr, &carol, "carol", 600, 2).as_bytes(), addr)
        .unwrap();
    let (msgs, _) = ua(&carol, 200, Duration::from_secs(2));
    assert_eq!(msgs.len(), 1, "{msgs:?}\n{}", ser.log_text());
    assert_eq!(body_of(&msgs[0]), "kept");
    assert!(rows_become(&url, 0).is_empty());
}

#[test]
fn a_registered_ua_that_refuses_the_message_gets_it_stored_from_the_failure_route() {
    let (_dir, url) = sqlite_db();
    let port = free_port("127.0.0.1");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ser = start(&cfg(&url, "", ""), port, &url);
    let dave = sock();
    dave.send_to(register(addr, &dave, "dave", 600, 1).as_bytes(), addr)
        .unwrap();
    let (_, replies) = ua(&dave, 200, Duration::from_millis(500));
    assert!(replies.iter().any(|r| r.starts_with("SIP/2.0 200 ")));
    let alice = sock();
    alice
        .send_to(
            message(addr, &alice, "dave", "for later", "m3").as_bytes(),
            addr,
        )
        .unwrap();
    let (msgs, _) = ua(&dave, 500, Duration::from_secs(1));
    assert_eq!(msgs.len(), 1);
    let r = final_reply(&alice, Duration::from_secs(8)).unwrap();
    assert!(r.starts_with("SIP/2.0 202 "), "{r}\n{}", ser.log_text());
    let got = rows(&url);
    assert_eq!(got.len(), 1);
    // m_store("1"): the original request URI, not the contact lookup put there.
    assert_eq!(c(&got[0], 8), format!("sip:dave@{addr}"));
    assert_eq!(c(&got[0], 4), "for later");
}

#[test]
fn the_registrar_tells_the_sender_and_limits_and_expiry_apply() {
    let (_dir, url) = sqlite_db();
    let port = free_port("127.0.0.1");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let reg = "modparam(\"msilo\", \"registrar\", \"sip:registrar@127.0.0.1\")\n";
    let extra =
        "modparam(\"msilo\", \"max_messages\", 1)\nmodparam(\"msilo\", \"expire_time\", 2)\n\
                 modparam(\"msilo\", \"check_time\", 1)\nmodparam(\"msilo\", \"clean_period\", 1)";
    let ser = start(&cfg(&url, reg, extra), port, &url);
    let alice = sock();
    alice
        .send_to(
            message(addr, &alice, "erin", "first", "m4").as_bytes(),
            addr,
        )
        .unwrap();
    // Alice's socket gets the 202 and the registrar's notice (at her Contact: use_contact).
    let end = Instant::now() + Duration::from_secs(5);
    let (mut accepted, mut notice) = (None, None);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end && (accepted.is_none() || notice.is_none()) {
        if let Ok((n, from)) = alice.recv_from(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if m.starts_with("MESSAGE ") {
                alice
                    .send_to(answer(&m, 200, "OK").as_bytes(), from)
                    .unwrap();
                notice = Some(m);
            } else if m.starts_with("SIP/2.0 2") {
                accepted = Some(m);
            }
        }
    }
    assert!(
        accepted.is_some_and(|a| a.starts_with("SIP/2.0 202 ")),
        "{}",
        ser.log_text()
    );
    let notice = notice.expect("the registrar's notice");
    assert!(hdr(&notice, "From")
        .unwrap()
        .starts_with("<sip:registrar@127.0.0.1>"));
    assert_eq!(
        body_of(&notice),
        "User [sip:erin@127.0.0.1] is offline. The message will be delivered when user goes online."
    );
    // max_messages 1: a second message for erin is refused (503), nothing stored.
    alice
        .send_to(
            message(addr, &alice, "erin", "second", "m5").as_bytes(),
            addr,
        )
        .unwrap();
    let r = final_reply(&alice, Duration::from_secs(8)).unwrap();
    assert!(r.starts_with("SIP/2.0 503 "), "{r}");
    assert_eq!(rows(&url).len(), 1);
    // Gina gets one too (for the sweep below).
    alice
        .send_to(
            message(addr, &alice, "gina", "never read", "m7").as_bytes(),
            addr,
        )
        .unwrap();
    let r = final_reply(&alice, Duration::from_secs(8)).unwrap();
    assert!(r.starts_with("SIP/2.0 202 "), "{r}");
    assert_eq!(rows(&url).len(), 2);
    // expire_time 2: after it, erin's REGISTER gets no message and her row goes; the sweep
    // (check_time * clean_period = 1 s) takes gina's, who never registers.
    std::thread::sleep(Duration::from_millis(3100));
    let erin = sock();
    erin.send_to(register(addr, &erin, "erin", 600, 1).as_bytes(), addr)
        .unwrap();
    let (msgs, _) = ua(&erin, 200, Duration::from_millis(1500));
    assert!(msgs.is_empty(), "{msgs:?}");
    assert!(rows_become(&url, 0).is_empty());
}

#[test]
fn without_a_usable_database_the_message_is_refused_not_accepted() {
    let dir = Dir(std::env::temp_dir().join(unique("ser-msilo-down")));
    std::fs::create_dir_all(&dir.0).unwrap();
    // A file where the database's directory would have to be: nothing can be written there.
    std::fs::write(dir.0.join("not-a-dir"), b"x").unwrap();
    let url = format!("sqlite://{}", dir.0.join("not-a-dir/ser.db").display());
    let port = free_port("127.0.0.1");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let server_db = format!("sqlite://{}", dir.0.join("server.db").display());
    let ser = start(&cfg(&url, "", ""), port, &server_db);
    let alice = sock();
    alice
        .send_to(
            message(addr, &alice, "frank", "lost?", "m6").as_bytes(),
            addr,
        )
        .unwrap();
    let r = final_reply(&alice, Duration::from_secs(12)).unwrap();
    assert!(r.starts_with("SIP/2.0 503 "), "{r}\n{}", ser.log_text());
    // The log line may follow the reply by a moment (another thread writes it).
    assert!(
        ser.wait_log("m_store: not stored", Duration::from_secs(3)),
        "{}",
        ser.log_text()
    );
}

/// A scratch PostgreSQL schema (dropped at the end) and the URL that selects it, or None.
fn pg_scratch() -> Option<(String, String, String)> {
    let base = std::env::var("SER_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = unique("ser_msilo");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ok = rt.block_on(async {
        let c = tokio::time::timeout(
            Duration::from_secs(3),
            tokio_postgres::connect(&base, tokio_postgres::NoTls),
        )
        .await;
        let Ok(Ok((client, conn))) = c else {
            return false;
        };
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .is_ok()
    });
    if !ok {
        skip::report(
            None,
            &format!("PostgreSQL at {base} is unreachable; set SER_TEST_PG_URL"),
        );
        return None;
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    Some((base, schema, url))
}

fn pg_drop(base: &str, schema: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if let Ok((client, conn)) = tokio_postgres::connect(base, tokio_postgres::NoTls).await {
            tokio::spawn(conn);
            let _ = client
                .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                .await;
        }
    });
}

#[test]
fn on_postgresql_too() {
    let Some((base, schema, url)) = pg_scratch() else {
        return;
    };
    store_restart_deliver(&url);
    pg_drop(&base, &schema);
}

#[test]
fn on_mariadb_too() {
    use mysql_async::prelude::Queryable;
    let base = std::env::var("SER_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let name = unique("ser_msilo");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sql = |q: String| {
        rt.block_on(async {
            let pool = mysql_async::Pool::new(base.as_str());
            let r = tokio::time::timeout(Duration::from_secs(3), async {
                let mut c = pool.get_conn().await?;
                c.query_drop(q).await
            })
            .await;
            let _ = pool.disconnect().await;
            r
        })
    };
    match sql(format!("CREATE DATABASE {name}")) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => skip!("MariaDB at {base} is unreachable ({e}); set SER_TEST_MYSQL_URL"),
        Err(_) => skip!("MariaDB at {base} did not answer; set SER_TEST_MYSQL_URL"),
    }
    let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
    store_restart_deliver(&url);
    let _ = sql(format!("DROP DATABASE {name}"));
}
