//! Registrations that survive: usrloc db_mode 1 (write-through) and 2 (write-back, flushed at a
//! clean stop) over the embedded SQLite database, checked as rows in the file and as calls that
//! still reach the phone after a restart; db_mode 3 with two ser processes sharing one PostgreSQL
//! database (a phone registered through one is reached through the other). PostgreSQL's URL comes
//! from `SER_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`); that test prints
//! "skipped: …" when the server is unreachable.
#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "support/skip.rs"]
mod skip;
#[path = "support/net.rs"]
mod net;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use net::*;

const CFG: &str = r#"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
modparam("usrloc", "db_mode", DBMODE)
modparam("usrloc", "timer_interval", 600)
route {
	if (method == "REGISTER") { save("location"); break; };
	if (!lookup("location")) { sl_send_reply("404", "Not Found"); break; };
	t_relay();
}
"#;

fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{tag}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn start(db_mode: u8, db_url: &str) -> (Ser, SocketAddr) {
    start_with(db_mode, db_url, &[])
}

fn start_with(db_mode: u8, db_url: &str, extra: &[&str]) -> (Ser, SocketAddr) {
    let port = free_port("127.0.0.1");
    let p = port.to_string();
    let mut args = vec!["-l", "127.0.0.1", "-p", &p];
    args.extend_from_slice(extra);
    let ser = Ser::start_with_env(
        &CFG.replace("DBMODE", &db_mode.to_string()),
        &args,
        &[("SER_DB_URL", db_url)],
    );
    (ser, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn register(ser: SocketAddr, user: &str, contact: &str) -> String {
    register_for(ser, user, contact, 3600)
}

fn register_for(ser: SocketAddr, user: &str, contact: &str, expires: u32) -> String {
    let c = udp_client("127.0.0.1");
    let req = format!(
        "REGISTER sip:127.0.0.1:{} SIP/2.0\r\n\
Via: SIP/2.0/UDP {};branch=z9hG4bK-{};rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:{user}@127.0.0.1>\r\n\
From: <sip:{user}@127.0.0.1>;tag=r1\r\n\
Call-ID: {}\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <{contact}>;expires={expires}\r\n\
Content-Length: 0\r\n\r\n",
        ser.port(),
        c.local_addr().unwrap(),
        unique("b"),
        unique("reg")
    );
    let r = udp_exchange(&c, ser, req.as_bytes()).expect("a reply to REGISTER");
    status_line(&r).to_string()
}

/// An INVITE to `user` through ser reaches `phone` (the request URI is the registered contact).
fn call_reaches(ser: SocketAddr, user: &str, phone: &UdpSocket) -> bool {
    let c = udp_client("127.0.0.1");
    let me = c.local_addr().unwrap().to_string();
    let inv = request(
        "INVITE",
        &format!("sip:{user}@127.0.0.1:{}", ser.port()),
        &me,
        "UDP",
        &unique("call"),
    );
    c.send_to(inv.as_bytes(), ser).unwrap();
    let mut buf = vec![0u8; 65536];
    let end = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < end {
        if let Ok((n, _)) = phone.recv_from(&mut buf) {
            let got = String::from_utf8_lossy(&buf[..n]);
            if got.starts_with("INVITE ") {
                return true;
            }
        }
    }
    false
}

fn sqlite_rows(path: &std::path::Path, sql: &str) -> String {
    let out = Command::new("sqlite3").arg(path).arg(sql).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn restart_keeps_bindings(db_mode: u8) {
    if Command::new("sqlite3").arg("-version").output().is_err() {
        skip!("the sqlite3 tool is not installed (apt-get install sqlite3)");
    }
    let dir = std::env::temp_dir().join(unique("ser-persist"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ser.db");
    let url = format!("sqlite://{}", path.display());
    let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
    phone
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let contact = format!("sip:alice@{}", phone.local_addr().unwrap());
    let (mut ser, addr) = start(db_mode, &url);
    assert_eq!(register(addr, "alice", &contact), "SIP/2.0 200 OK");
    assert!(call_reaches(addr, "alice", &phone));
    if db_mode == 1 {
        // Write-through: the row is there while ser runs (the queue is written within moments).
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while !sqlite_rows(&path, "SELECT contact FROM location").contains(&contact)
            && std::time::Instant::now() < end
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            sqlite_rows(&path, "SELECT contact FROM location").contains(&contact),
            "db_mode 1 wrote the binding while ser runs"
        );
    } else {
        // Write-back with a 600 s timer: nothing is written yet.
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !sqlite_rows(&path, "SELECT contact FROM location").contains(&contact),
            "db_mode 2 wrote before its timer"
        );
    }
    let st = ser.terminate(Duration::from_secs(15)).expect("ser stops");
    assert!(st.success(), "{}", ser.log_text());
    let rows = sqlite_rows(&path, "SELECT username, contact, q FROM location");
    assert!(rows.contains(&format!("alice|{contact}|")), "rows: {rows}");
    // A new ser on the same file still reaches the phone.
    let (ser2, addr2) = start(db_mode, &url);
    assert!(
        ser2.wait_log(
            "binding(s) of table 'location' loaded",
            Duration::from_secs(5)
        ),
        "{}",
        ser2.log_text()
    );
    assert!(call_reaches(addr2, "alice", &phone), "{}", ser2.log_text());
    drop(ser2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn db_mode_1_write_through_survives_a_restart() {
    restart_keeps_bindings(1);
}

#[test]
fn db_mode_2_write_back_is_flushed_at_a_clean_stop_and_survives_a_restart() {
    restart_keeps_bindings(2);
}

/// A scratch PostgreSQL schema (dropped at the end) and the URL that selects it, or None.
fn pg_scratch() -> Option<(String, String, String)> {
    let base = std::env::var("SER_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = unique("ser_dm3");
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
fn db_mode_3_two_servers_share_one_postgresql() {
    let Some((base, schema, url)) = pg_scratch() else {
        return;
    };
    let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
    phone
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let contact = format!("sip:carol@{}", phone.local_addr().unwrap());
    let fifo = std::path::PathBuf::from("/tmp").join(unique("dm3fifo"));
    let (a, addr_a) = start_with(3, &url, &["-i", fifo.to_str().unwrap()]);
    let (b, addr_b) = start(3, &url);
    assert_eq!(
        register(addr_a, "carol", &contact),
        "SIP/2.0 200 OK",
        "{}",
        a.log_text()
    );
    assert!(
        call_reaches(addr_b, "carol", &phone),
        "the second server did not find carol: {}",
        b.log_text()
    );
    // Management on A works on the shared database too.
    let shown = fifo_command(&fifo, "ul_show_contact", &["location", "carol"]);
    assert!(shown.starts_with("200"), "{shown}");
    assert!(shown.contains(&format!("<{contact}>;q=")), "{shown}");
    let stats = fifo_command(&fifo, "ul_stats", &[]);
    assert!(stats.contains("'location' 1 0"), "{stats}");
    let phone2 = UdpSocket::bind("127.0.0.1:0").unwrap();
    phone2
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let contact2 = format!("sip:erin@{}", phone2.local_addr().unwrap());
    let added = fifo_command(
        &fifo,
        "ul_add",
        &["location", "erin", &contact2, "600", "0.5"],
    );
    assert!(added.starts_with("200"), "{added}");
    assert!(
        call_reaches(addr_b, "erin", &phone2),
        "B finds what A's ul_add wrote"
    );
    let dump = fifo_command(&fifo, "ul_dump", &[]);
    assert!(dump.contains("aor   : 'erin'"), "{dump}");
    let rm = fifo_command(&fifo, "ul_rm", &["location", "erin"]);
    assert!(rm.starts_with("200"), "{rm}");
    let gone = fifo_command(&fifo, "ul_show_contact", &["location", "erin"]);
    assert!(gone.starts_with("404"), "{gone}");
    // Unregistering through B is seen by A: a call through A gets 404.
    assert_eq!(register_for(addr_b, "carol", &contact, 0), "SIP/2.0 200 OK");
    let c = udp_client("127.0.0.1");
    let me = c.local_addr().unwrap().to_string();
    let inv = request(
        "INVITE",
        &format!("sip:carol@127.0.0.1:{}", addr_a.port()),
        &me,
        "UDP",
        &unique("call"),
    );
    let r = udp_exchange(&c, addr_a, inv.as_bytes()).unwrap();
    assert!(r.starts_with("SIP/2.0 404"), "{r}");
    drop(a);
    drop(b);
    pg_drop(&base, &schema);
}

/// A TCP relay from `listen` to `to`, started when the test says the database "comes back".
fn tcp_relay(listen: std::net::TcpListener, to: SocketAddr) {
    std::thread::spawn(move || {
        for conn in listen.incoming() {
            let Ok(a) = conn else { continue };
            let Ok(b) = std::net::TcpStream::connect(to) else {
                continue;
            };
            let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
            std::thread::spawn(move || {
                let (mut r, mut w) = (a, b);
                let _ = std::io::copy(&mut r, &mut w);
                let _ = w.shutdown(std::net::Shutdown::Both);
            });
            std::thread::spawn(move || {
                let (mut r, mut w) = (b2, a2);
                let _ = std::io::copy(&mut r, &mut w);
                let _ = w.shutdown(std::net::Shutdown::Both);
            });
        }
    });
}

fn pg_location_contacts(base: &str, schema: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let Ok((client, conn)) = tokio_postgres::connect(base, tokio_postgres::NoTls).await else {
            return Vec::new();
        };
        tokio::spawn(conn);
        client
            .query(&format!("SELECT contact FROM {schema}.location"), &[])
            .await
            .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect())
            .unwrap_or_default()
    })
}

/// The database is down when ser starts and while a phone registers: SIP is not held up (the
/// REGISTER is answered, the call reaches the phone), the write waits in the queue, and when the
/// database comes back the row is written; a restart then loads it.
#[test]
fn db_mode_1_with_the_database_down_then_back() {
    let Some((base, schema, _)) = pg_scratch() else {
        return;
    };
    // The URL points at a port where nothing listens yet; later a relay to PostgreSQL opens there.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hole_port = hole.local_addr().unwrap().port();
    drop(hole);
    let pg: url_parts::PgAddr = url_parts::pg_addr(&base);
    let url = format!(
        "postgres://{}@127.0.0.1:{hole_port}/{}?options=-c%20search_path%3D{schema}",
        pg.user, pg.db
    );
    let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
    phone
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let contact = format!("sip:dave@{}", phone.local_addr().unwrap());
    let started = std::time::Instant::now();
    let (mut ser, addr) = start(1, &url);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "start-up waited"
    );
    assert_eq!(register(addr, "dave", &contact), "SIP/2.0 200 OK");
    assert!(call_reaches(addr, "dave", &phone));
    // The database comes back.
    let listen = std::net::TcpListener::bind(("127.0.0.1", hole_port)).unwrap();
    tcp_relay(listen, pg.addr);
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while !pg_location_contacts(&base, &schema).contains(&contact)
        && std::time::Instant::now() < end
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        pg_location_contacts(&base, &schema).contains(&contact),
        "the queued write reached the database: {}",
        ser.log_text()
    );
    assert!(ser.terminate(Duration::from_secs(15)).is_some());
    let (ser2, addr2) = start(1, &url);
    assert!(
        ser2.wait_log(
            "binding(s) of table 'location' loaded",
            Duration::from_secs(5)
        ),
        "{}",
        ser2.log_text()
    );
    assert!(call_reaches(addr2, "dave", &phone), "{}", ser2.log_text());
    drop(ser2);
    pg_drop(&base, &schema);
}

/// Host, port, user and database of a `postgres://user@host:port/db` URL (tests only).
mod url_parts {
    use std::net::{SocketAddr, ToSocketAddrs};

    pub struct PgAddr {
        pub addr: SocketAddr,
        pub user: String,
        pub db: String,
    }

    pub fn pg_addr(url: &str) -> PgAddr {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let rest = rest.split('?').next().unwrap_or(rest);
        let (auth, hostpart) = rest.split_once('@').unwrap_or(("postgres", rest));
        let user = auth.split(':').next().unwrap_or("postgres").to_string();
        let (hostport, db) = hostpart.split_once('/').unwrap_or((hostpart, "test"));
        let hostport = if hostport.contains(':') {
            hostport.to_string()
        } else {
            format!("{hostport}:5432")
        };
        PgAddr {
            addr: hostport.to_socket_addrs().unwrap().next().unwrap(),
            user,
            db: db.to_string(),
        }
    }
}

/// db_mode 1 promises write-through: every REGISTER answered 200 is in the database even when ser
/// is killed with SIGKILL right after answering (no clean stop, nothing flushed), and a restart
/// loads all of them.
#[test]
fn db_mode_1_loses_no_acknowledged_registration_to_kill_9() {
    if Command::new("sqlite3").arg("-version").output().is_err() {
        skip!("the sqlite3 tool is not installed (apt-get install sqlite3)");
    }
    let dir = std::env::temp_dir().join(unique("ser-kill9"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ser.db");
    let url = format!("sqlite://{}", path.display());
    let (mut ser, addr) = start(1, &url);
    let mut acked = Vec::new();
    // 120 REGISTERs back to back; the kill comes right after the last 200.
    for k in 0..120 {
        let user = format!("k9u{k}");
        let status = register(addr, &user, &format!("sip:{user}@127.0.0.1:9"));
        assert_eq!(status, "SIP/2.0 200 OK");
        acked.push(user);
    }
    // SIGKILL at once after the last 200 (Child::kill sends SIGKILL).
    ser.child.kill().unwrap();
    let _ = ser.child.wait();
    let rows = sqlite_rows(&path, "select username from location;");
    let stored: std::collections::HashSet<&str> = rows.lines().map(str::trim).collect();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|u| !stored.contains(u.as_str()))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    let (ser2, _) = start(1, &url);
    assert!(
        ser2.wait_log(
            "120 binding(s) of table 'location' loaded",
            Duration::from_secs(5)
        ),
        "{}",
        ser2.log_text()
    );
    drop(ser2);
    let _ = std::fs::remove_dir_all(&dir);
}
