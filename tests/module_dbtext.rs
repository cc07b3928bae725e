//! dbtext as the server's database: the shipped ser.cfg with `SER_DB_URL=dbtext://<dir>` keeps a
//! registration across a clean restart (db_mode 2) and across a SIGKILL (db_mode 1: every write is
//! already a complete file); `serctl add` on the same directory makes a subscriber a REGISTER
//! authenticates with; a broken table file is reported as `path:line`.
#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "support/skip.rs"]
mod skip;
#[path = "support/net.rs"]
mod net;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use net::*;

const REALM: &str = "test.example";

fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "ser_dbtext_{tag}_{}_{}",
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

fn scratch() -> Dir {
    let d = std::env::temp_dir().join(unique("dir"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Dir(d)
}

fn shipped_cfg() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ser.cfg")).unwrap()
}

fn start(cfg: &str, url: &str) -> (Ser, SocketAddr) {
    let port = free_port("127.0.0.1");
    let ser = Ser::start_with_env(
        cfg,
        &["-l", "127.0.0.1", "-p", &port.to_string()],
        &[("SER_DB_URL", url)],
    );
    (ser, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn register(ser: SocketAddr, user: &str, contact: &str) -> String {
    let c = udp_client("127.0.0.1");
    let req = format!(
        "REGISTER sip:127.0.0.1:{} SIP/2.0\r\n\
Via: SIP/2.0/UDP {};branch=z9hG4bK-{};rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:{user}@127.0.0.1>\r\n\
From: <sip:{user}@127.0.0.1>;tag=r1\r\n\
Call-ID: {}\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <{contact}>;expires=3600\r\n\
Content-Length: 0\r\n\r\n",
        ser.port(),
        c.local_addr().unwrap(),
        unique("b"),
        unique("reg")
    );
    let r = udp_exchange(&c, ser, req.as_bytes()).expect("a reply to REGISTER");
    status_line(&r).to_string()
}

/// An INVITE to `user` through ser reaches `phone`.
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
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        if let Ok((n, _)) = phone.recv_from(&mut buf) {
            if buf[..n].starts_with(b"INVITE ") {
                return true;
            }
        }
    }
    false
}

fn phone() -> (UdpSocket, String) {
    let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
    phone
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let contact = format!("sip:alice@{}", phone.local_addr().unwrap());
    (phone, contact)
}

/// The contact as SER's dbtext writes it in a row (`:` escaped).
fn escaped(s: &str) -> String {
    s.replace(':', "\\:")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn shipped_ser_cfg_on_dbtext_keeps_a_binding_across_a_restart() {
    let dir = scratch();
    let url = format!("dbtext://{}", dir.0.display());
    let (phone, contact) = phone();
    let (mut ser, addr) = start(&shipped_cfg(), &url);
    assert_eq!(register(addr, "alice", &contact), "SIP/2.0 200 OK");
    assert!(call_reaches(addr, "alice", &phone), "{}", ser.log_text());
    let st = ser.terminate(Duration::from_secs(15)).expect("ser stops");
    assert!(st.success(), "{}", ser.log_text());
    // The table files are SER's format: a typed header, then `:`-separated rows.
    let location = read(&dir.0.join("location"));
    let mut lines = location.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header
            .starts_with("username(str) domain(str) contact(str) received(str,null) expires(time)"),
        "{location}"
    );
    let row = lines
        .find(|l| l.starts_with("alice:"))
        .unwrap_or_else(|| panic!("no row for alice: {location}"));
    assert!(row.contains(&escaped(&contact)), "{row}");
    let version = read(&dir.0.join("version"));
    assert!(
        version.starts_with("table_name(str) table_version(int)\n")
            && version.contains("\nlocation:"),
        "{version}"
    );
    let leftovers: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A new ser on the same directory reaches the phone.
    let (ser2, addr2) = start(&shipped_cfg(), &url);
    assert!(
        ser2.wait_log(
            "binding(s) of table 'location' loaded",
            Duration::from_secs(5)
        ),
        "{}",
        ser2.log_text()
    );
    assert!(call_reaches(addr2, "alice", &phone), "{}", ser2.log_text());
}

#[test]
fn write_through_on_dbtext_survives_a_kill() {
    let dir = scratch();
    let url = format!("dbtext://{}", dir.0.display());
    let cfg = shipped_cfg().replace(
        "modparam(\"usrloc\", \"db_mode\", 2)",
        "modparam(\"usrloc\", \"db_mode\", 1)",
    );
    assert!(cfg.contains("\"db_mode\", 1)"));
    let (phone, contact) = phone();
    let (mut ser, addr) = start(&cfg, &url);
    assert_eq!(register(addr, "alice", &contact), "SIP/2.0 200 OK");
    let file = dir.0.join("location");
    let end = Instant::now() + Duration::from_secs(5);
    while !read(&file).contains(&escaped(&contact)) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        read(&file).contains(&escaped(&contact)),
        "db_mode 1 wrote the binding while ser runs: {}",
        read(&file)
    );
    // No clean stop: whatever is on disk now is all the next ser gets.
    ser.child.kill().unwrap();
    ser.child.wait().unwrap();
    let (ser2, addr2) = start(&cfg, &url);
    assert!(call_reaches(addr2, "alice", &phone), "{}", ser2.log_text());
}

#[test]
fn a_broken_table_file_is_reported_with_its_line() {
    let dir = scratch();
    let url = format!("dbtext://{}", dir.0.display());
    std::fs::write(
        dir.0.join("location"),
        "username(str) domain(str) contact(str) expires(time)\n\
         bob::sip\\:bob@192.0.2.1:2000000000\n\
         carol::sip\\:carol@192.0.2.2:tomorrow\n",
    )
    .unwrap();
    let (ser, _addr) = start(&shipped_cfg(), &url);
    let want = format!("{}:3: column expires", dir.0.join("location").display());
    assert!(
        ser.wait_log(&want, Duration::from_secs(5)),
        "{}",
        ser.log_text()
    );
    drop(ser);
    // The file is left as it was for the admin to fix.
    assert!(read(&dir.0.join("location")).contains("tomorrow"));
}

/// The shipped ser.cfg with its digest-authentication lines switched on.
fn auth_cfg() -> String {
    let mut out = String::new();
    for line in shipped_cfg().lines() {
        let t = line.trim_start();
        let uncomment = t.starts_with("#loadmodule \"/usr/local/lib/ser/modules/auth")
            || t.starts_with("#modparam(\"auth_db\", \"calculate_ha1\"")
            || t.starts_with("#modparam(\"auth_db\", \"password_column\"")
            || t.starts_with("#\t\t\tif (!www_authorize")
            || t.starts_with("#\t\t\t\twww_challenge")
            || t.starts_with("#\t\t\t\tbreak;")
            || t.starts_with("#\t\t\t};");
        let l = if uncomment {
            line.replacen('#', "", 1)
        } else {
            line.to_string()
        };
        out.push_str(&l.replace("iptel.org", REALM));
        out.push('\n');
    }
    out
}

fn serctl(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_serctl"))
        .args(args)
        .env("SER_DB_URL", url)
        .env("SIP_DOMAIN", REALM)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn sipp_register(dir: &Path, ser: SocketAddr, password: &str, expect: u16) -> (bool, String) {
    let sc = dir.join(format!("reg-{expect}.xml"));
    std::fs::write(&sc, scenario(ser.port(), expect)).unwrap();
    let out = Command::new("timeout")
        .args(["30", "sipp", &ser.to_string(), "-sf"])
        .arg(&sc)
        .args(["-i", "127.0.0.1", "-p", &free_port("127.0.0.1").to_string()])
        .args([
            "-au", "alice", "-ap", password, "-m", "1", "-timeout", "20s",
        ])
        .arg("-nostdin")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&sc);
    (
        out.status.code() == Some(0),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn scenario(port: u16, final_status: u16) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register with auth">
  <send retrans="500">
    <![CDATA[
REGISTER sip:127.0.0.1:{port} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:alice@{REALM}>;tag=[call_number]
To: <sip:alice@{REALM}>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:alice@[local_ip]:[local_port]>
Max-Forwards: 70
Expires: 300
Content-Length: 0

    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[
REGISTER sip:127.0.0.1:{port} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:alice@{REALM}>;tag=[call_number]
To: <sip:alice@{REALM}>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:alice@[local_ip]:[local_port]>
[authentication]
Max-Forwards: 70
Expires: 300
Content-Length: 0

    ]]>
  </send>
  <recv response="{final_status}"/>
</scenario>
"#
    )
}

#[test]
fn serctl_add_on_dbtext_then_register_with_that_password() {
    if !have("sipp") {
        skip!("sipp is not installed (apt-get install sip-tester)");
    }
    let dir = scratch();
    let db = dir.0.join("db");
    let url = format!("dbtext://{}", db.display());
    // Reading a directory that is not there is an error, not an empty database.
    let o = serctl(&url, &["showdb"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("does not exist"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (ser, addr) = start(&auth_cfg(), &url);
    let o = serctl(&url, &["add", "alice", "wonderland", "alice@example.com"]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let subscriber = read(&db.join("subscriber"));
    assert!(
        subscriber
            .lines()
            .any(|l| l.contains(":alice:") && l.contains("alice@example.com")),
        "{subscriber}"
    );
    let (ok, text) = sipp_register(&dir.0, addr, "wonderland", 200);
    assert!(
        ok,
        "REGISTER with serctl's password:\n{text}\n{}",
        ser.log_text()
    );
    let (ok, text) = sipp_register(&dir.0, addr, "guess", 401);
    assert!(ok, "a wrong password gets 401:\n{text}");
    // A second add of the same user is refused (the key stays unique in the file).
    let o = serctl(&url, &["add", "alice", "other", "a@example.com"]);
    assert!(
        !o.status.success(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}
