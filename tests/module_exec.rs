//! Module `exec` end to end: the real `ser` running the Admin Guide's exec.cfg and exec_s5.cfg
//! (copied to tests/data/scripts), SIP over loopback UDP (and sipsak), and what a user sees:
//! the file exec.cfg's program writes, the 300 with exec_dset's Contacts, the missed-call mail
//! exec_s5's script sends (to a recording `mail`), every environment variable the Admin Guide
//! names, and a hung program that is killed while OPTIONS keep being answered.
#![allow(clippy::unwrap_used)]

#[path = "support/net.rs"]
mod net;
#[macro_use]
#[path = "support/skip.rs"]
mod skip;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use net::*;

fn script(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/scripts")
            .join(name),
    )
    .unwrap()
}

/// A fresh directory for one test's files (removed by the guard).
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("ser-exec-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    /// An executable shell script `name` in this directory.
    fn program(&self, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let p = self.path(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port ≤ 9999 (sipsak's limit) free for UDP and TCP.
fn low_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let seed = (std::process::id() as u16).wrapping_mul(7);
    for _ in 0..2000u16 {
        // Each call tries ports no other call of this process tries (tests run in parallel).
        let i = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = 6000 + seed.wrapping_add(i.wrapping_mul(13)) % 4000;
        if UdpSocket::bind(("127.0.0.1", p)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
        {
            return p;
        }
    }
    panic!("no free port below 10000");
}

fn start(cfg: &str, env: &[(&str, &str)]) -> (Ser, SocketAddr) {
    let port = low_port();
    let p = port.to_string();
    let ser = Ser::start_with_env(cfg, &["-l", "127.0.0.1", "-p", &p], env);
    (ser, format!("127.0.0.1:{port}").parse().unwrap())
}

/// One request to ser; the first final reply (within `wait`).
fn ask(ser: SocketAddr, req: &str, wait: Duration) -> Option<String> {
    let s = udp_client("127.0.0.1");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s.send_to(req.as_bytes(), ser).unwrap();
    let end = Instant::now() + wait;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end {
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !m.starts_with("SIP/2.0 1") {
                return Some(m);
            }
        }
    }
    None
}

fn invite(ruri: &str, call_id: &str) -> String {
    let via = "127.0.0.1:5999";
    format!(
        "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK-{call_id}\r\nMax-Forwards: 10\r\n\
         From: \"alice\" <sip:alice@example.com>;tag=76ff7a07\r\nTo: <sip:bob@example.com>\r\n\
         i: {call_id}\r\nCSeq: 2 INVITE\r\nContact: <sip:alice@{via}>\r\nContent-Type: application/sdp\r\n\
         Content-Length: 4\r\n\r\nv=0\n"
    )
}

#[test]
fn exec_cfg_writes_the_request_and_redirects_to_both_contacts() {
    let dir = Dir::new("cfg");
    let out = dir.path("exectest.txt");
    let cfg = script("exec.cfg").replace("/tmp/exectest.txt", &out.display().to_string());
    let (_ser, addr) = start(&cfg, &[]);
    let reply = ask(
        addr,
        &invite("sip:jiri@iptel.org", "exec-cfg-1"),
        Duration::from_secs(5),
    )
    .expect("a reply");
    assert_eq!(status_line(&reply), "SIP/2.0 300 Redirect", "{reply}");
    let contacts: Vec<&str> = reply
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("contact:"))
        .collect();
    let all = contacts.join("\n");
    assert!(
        all.contains("sip:mra@iptel.org") && all.contains("sip:mrb@iptel.org"),
        "{reply}"
    );
    // exec_msg ran before: the source IP (printenv SRCIP) then the request itself.
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("127.0.0.1"), "{text}");
    assert_eq!(
        lines.next(),
        Some("INVITE sip:jiri@iptel.org SIP/2.0"),
        "{text}"
    );
    assert!(text.contains("i: exec-cfg-1"), "{text}");
    assert!(text.ends_with("v=0\n"), "{text}");
}

#[test]
fn every_environment_variable_the_admin_guide_names_is_set() {
    let dir = Dir::new("env");
    let out = dir.path("env.txt");
    let cfg = format!(
        "loadmodule \"sl.so\"\nloadmodule \"exec.so\"\nroute {{\n\
         rewriteuser(\"jiri2\");\n\
         if (exec_msg(\"env > {out}\")) {{ sl_send_reply(\"200\", \"ran\"); }} else {{ sl_send_reply(\"500\", \"failed\"); }};\n}}\n",
        out = out.display()
    );
    let (_ser, addr) = start(&cfg, &[]);
    let reply = ask(
        addr,
        &invite("sip:jiri@iptel.org", "exec-env-1"),
        Duration::from_secs(5),
    )
    .expect("a reply");
    assert_eq!(status_line(&reply), "SIP/2.0 200 ran");
    let text = std::fs::read_to_string(&out).unwrap();
    let var = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} not set:\n{text}"))
            .to_string()
    };
    assert_eq!(var("SIP_HF_MAX_FORWARDS"), "10");
    assert!(var("SIP_HF_VIA").starts_with("SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-exec-env-1"));
    assert_eq!(var("SIP_HF_CSEQ"), "2 INVITE");
    assert_eq!(
        var("SIP_HF_FROM"),
        "\"alice\" <sip:alice@example.com>;tag=76ff7a07"
    );
    assert_eq!(var("SIP_HF_CONTENT_LENGTH"), "4");
    assert_eq!(var("SIP_HF_TO"), "<sip:bob@example.com>");
    assert_eq!(
        var("SIP_HF_CALLID"),
        "exec-env-1",
        "compact i: under its full name"
    );
    assert_eq!(var("SIP_HF_CONTENT_TYPE"), "application/sdp");
    assert_eq!(var("SIP_HF_CONTACT"), "<sip:alice@127.0.0.1:5999>");
    let tid = var("SIP_TID");
    assert!(
        tid.len() == 32 && tid.bytes().all(|b| b.is_ascii_hexdigit()),
        "{tid}"
    );
    assert_eq!(var("SIP_DID"), "", "no To tag in a dialog-creating request");
    assert_eq!(var("SIP_SRCIP"), "127.0.0.1");
    assert_eq!(var("SRCIP"), "127.0.0.1");
    assert_eq!(var("SIP_RURI"), "sip:jiri2@iptel.org");
    assert_eq!(var("SIP_ORURI"), "sip:jiri@iptel.org");
    assert_eq!(var("SIP_ORUI"), "sip:jiri@iptel.org");
    assert_eq!(var("SIP_USER"), "jiri2");
    assert_eq!(var("URI_USER"), "jiri2");
    assert_eq!(var("SIP_OUSER"), "jiri");

    // setvars=0: none of them.
    let cfg = cfg.replace(
        "loadmodule \"exec.so\"\n",
        "loadmodule \"exec.so\"\nmodparam(\"exec\", \"setvars\", 0)\n",
    );
    let (_ser, addr) = start(&cfg, &[]);
    ask(
        addr,
        &invite("sip:jiri@iptel.org", "exec-env-2"),
        Duration::from_secs(5),
    )
    .unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.contains("SIP_"), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("SRCIP=")), "{text}");
}

#[test]
fn exec_s5_mails_the_missed_call_with_sip_ouser() {
    // The script's mysql and mail are stand-ins on PATH: mysql answers bob's address only,
    // mail records what it was asked to send.
    let dir = Dir::new("s5");
    let record = dir.path("mail.txt");
    dir.program(
        "mysql",
        "case \"$*\" in *'user=\"bob\"'*) echo bob@example.com ;; esac",
    );
    dir.program(
        "mail",
        &format!(
            "{{ echo \"args: $*\"; echo \"SIP_OUSER=$SIP_OUSER\"; cat; }} >> {}",
            record.display()
        ),
    );
    let path = format!(
        "{}:{}",
        dir.0.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (ser, addr) = start(&script("exec_s5.cfg"), &[("PATH", &path)]);
    let me = addr.to_string();
    let reply = ask(
        addr,
        &invite(&format!("sip:bob@{me}"), "exec-s5-1"),
        Duration::from_secs(5),
    )
    .expect("a reply");
    assert_eq!(
        status_line(&reply),
        "SIP/2.0 600 No messages for this user",
        "{}",
        ser.log_text()
    );
    let mail = std::fs::read_to_string(&record).unwrap();
    assert!(
        mail.contains("args: -s request for you bob@example.com"),
        "{mail}"
    );
    assert!(mail.contains("SIP_OUSER=bob"), "{mail}");
    assert!(
        mail.contains(
            "SIP request received from \"alice\" <sip:alice@example.com>;tag=76ff7a07 for bob"
        ),
        "{mail}"
    );
    // Nobody of that name: the program exits 1 and the script answers 404.
    let reply = ask(
        addr,
        &invite(&format!("sip:carol@{me}"), "exec-s5-2"),
        Duration::from_secs(5),
    )
    .expect("a reply");
    assert_eq!(status_line(&reply), "SIP/2.0 404 User does not exist");
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        mail,
        "no mail for carol"
    );
}

#[test]
fn exec_s5b_mails_from_failure_route_when_the_callee_is_busy() {
    let dir = Dir::new("s5b");
    let record = dir.path("mail.txt");
    dir.program(
        "mysql",
        "case \"$*\" in *'=\"bob\"'*) echo bob@example.com ;; esac",
    );
    dir.program(
        "mail",
        &format!(
            "{{ echo \"args: $*\"; echo \"SIP_OUSER=$SIP_OUSER\"; cat; }} >> {}",
            record.display()
        ),
    );
    let path = format!(
        "{}:{}",
        dir.0.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (ser, addr) = start(&script("exec_s5b.cfg"), &[("PATH", &path)]);
    // bob registers a phone that is busy.
    let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
    phone
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let ph = phone.local_addr().unwrap();
    let reg = format!(
        "REGISTER sip:{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {ph};branch=z9hG4bK-s5b-reg\r\nMax-Forwards: 10\r\n\
         From: <sip:bob@{addr}>;tag=r1\r\nTo: <sip:bob@{addr}>\r\nCall-ID: s5b-reg\r\nCSeq: 1 REGISTER\r\n\
         Contact: <sip:bob@{ph}>\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n"
    );
    let r = ask(addr, &reg, Duration::from_secs(5)).expect("REGISTER answered");
    assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
    let busy = std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(5);
        let mut buf = vec![0u8; 65536];
        while Instant::now() < end {
            if let Ok((n, from)) = phone.recv_from(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                if m.starts_with("INVITE ") {
                    let mut out = String::from("SIP/2.0 486 Busy Here\r\n");
                    for l in m.split("\r\n").skip(1) {
                        let lower = l.to_ascii_lowercase();
                        if ["via:", "from:", "call-id:", "cseq:", "i:"]
                            .iter()
                            .any(|p| lower.starts_with(p))
                        {
                            out.push_str(l);
                            out.push_str("\r\n");
                        } else if lower.starts_with("to:") {
                            out.push_str(l);
                            out.push_str(";tag=busy\r\n");
                        }
                    }
                    out.push_str("Content-Length: 0\r\n\r\n");
                    phone.send_to(out.as_bytes(), from).unwrap();
                    return;
                }
            }
        }
    });
    let reply = ask(
        addr,
        &invite(&format!("sip:bob@{addr}"), "exec-s5b-1"),
        Duration::from_secs(5),
    )
    .expect("a final reply");
    busy.join().unwrap();
    assert_eq!(
        status_line(&reply),
        "SIP/2.0 486 Busy Here",
        "{}",
        ser.log_text()
    );
    let mail = std::fs::read_to_string(&record).unwrap_or_default();
    assert!(
        mail.contains("args: -s request for you bob@example.com"),
        "{mail}\n{}",
        ser.log_text()
    );
    assert!(mail.contains("SIP_OUSER=bob"), "{mail}");
}

fn sipsak_options(addr: SocketAddr) -> (bool, Duration) {
    let t = Instant::now();
    let ok = Command::new("timeout")
        .args(["5", "sipsak", "-s", &format!("sip:ping@{addr}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (ok, t.elapsed())
}

#[test]
fn a_hung_program_is_killed_and_sip_goes_on_meanwhile() {
    if !have("sipsak") {
        skip!("sipsak is not installed (apt-get install sipsak)");
    }
    let cfg = "loadmodule \"sl.so\"\nloadmodule \"exec.so\"\nmodparam(\"exec\", \"time_to_kill\", 2)\n\
               route {\n if (method == \"OPTIONS\") { sl_send_reply(\"200\", \"alive\"); break; };\n\
               if (exec_msg(\"sleep 30\")) { sl_send_reply(\"200\", \"ran\"); } else { sl_send_reply(\"500\", \"exec failed\"); };\n}\n";
    let (ser, addr) = start(cfg, &[]);
    // Several hung programs at once (one shard): the shard does not wait for any of them.
    let callers: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                let t = Instant::now();
                let r = ask(
                    addr,
                    &invite("sip:x@example.com", &format!("exec-hung-{i}")),
                    Duration::from_secs(8),
                );
                (r, t.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        let (ok, took) = sipsak_options(addr);
        assert!(
            ok,
            "OPTIONS answered while programs hang: {}",
            ser.log_text()
        );
        assert!(took < Duration::from_secs(1), "{took:?}");
    }
    for c in callers {
        let (r, took) = c.join().unwrap();
        let r = r.expect("the hung call gets its answer");
        assert_eq!(status_line(&r), "SIP/2.0 500 exec failed");
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
            "{took:?}"
        );
    }
    assert!(
        ser.log_text().contains("time_to_kill"),
        "{}",
        ser.log_text()
    );
}

#[test]
fn a_missing_program_or_bad_dset_output_is_a_logged_false() {
    let cfg = "loadmodule \"sl.so\"\nloadmodule \"exec.so\"\n\
               route {\n if (uri =~ \"^sip:missing\") { if (exec_msg(\"/nonexistent/program\")) { sl_send_reply(\"200\", \"ran\"); } else { sl_send_reply(\"500\", \"no program\"); }; break; };\n\
               if (exec_dset(\"echo not-a-uri; true\")) { sl_send_reply(\"300\", \"Redirect\"); } else { sl_send_reply(\"500\", \"bad output\"); };\n}\n";
    let (_ser, addr) = start(cfg, &[]);
    let r = ask(
        addr,
        &invite("sip:missing@example.com", "exec-miss-1"),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(status_line(&r), "SIP/2.0 500 no program");
    let r = ask(
        addr,
        &invite("sip:x@example.com", "exec-bad-1"),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(status_line(&r), "SIP/2.0 500 bad output");
}
