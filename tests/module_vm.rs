//! Module `vm` end to end: the real `ser` running the Admin Guide's vm-ser.cfg (copied to
//! tests/data/scripts; only the FIFO paths changed), a stand-in media server that reads the
//! voicemail FIFO and answers through ser's FIFO command `t_reply`, a caller over loopback UDP,
//! and the replies the caller sees. The user's email address comes from the subscriber table of
//! the dbtext directory vm-ser.cfg names as `db_url` (SER's flat-text format).
#![allow(clippy::unwrap_used)]

#[path = "support/net.rs"]
mod net;
#[macro_use]
#[path = "support/skip.rs"]
mod skip;

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use net::*;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mkfifo(p: &Path) {
    assert!(Command::new("mkfifo")
        .args(["-m", "600"])
        .arg(p)
        .status()
        .unwrap()
        .success());
}

/// Reads one request of the vm module from `fifo` (open read-write, so it never blocks on
/// open): at least 13 lines, within `wait`.
fn read_vm_request(fifo: &Path, wait: Duration) -> Option<Vec<String>> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(fifo)
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut f = f;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.iter().filter(|&&b| b == b'\n').count() < 13 {
            match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = tx.send(got);
    });
    let got = rx.recv_timeout(wait).ok()?;
    Some(
        String::from_utf8_lossy(&got)
            .split('\n')
            .map(String::from)
            .collect(),
    )
}

/// Replies to `req` from ser within `wait`, in order.
fn replies(s: &std::net::UdpSocket, wait: Duration, until_final: bool) -> Vec<String> {
    let end = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end {
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            let fin = !m.starts_with("SIP/2.0 1");
            out.push(m);
            if fin && until_final {
                break;
            }
        }
    }
    out
}

fn invite(ruri: &str, via: SocketAddr, call_id: &str) -> String {
    format!(
        "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK-{call_id}\r\nMax-Forwards: 10\r\n\
         From: <sip:alice@example.com>;tag=a7\r\nTo: <sip:bob@example.com>\r\nCall-ID: {call_id}\r\n\
         CSeq: 3 INVITE\r\nContact: <sip:alice@{via}>\r\nContent-Type: application/sdp\r\n\
         Content-Length: 4\r\n\r\nv=0\n"
    )
}

struct Setup {
    dir: Dir,
    am: PathBuf,
    ser_fifo: PathBuf,
    ser: Ser,
    addr: SocketAddr,
    caller: std::net::UdpSocket,
    via: SocketAddr,
}

/// vm-ser.cfg with its FIFOs in a fresh directory, `extra` after the voicemail modparam, and
/// bob's email address in the dbtext directory its db_url names.
fn setup(extra: &str) -> Option<Setup> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = Dir(std::env::temp_dir().join(format!("ser-vm-{}-{n}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let am = dir.0.join("am_fifo");
    let ser_fifo = dir.0.join("ser_fifo");
    mkfifo(&am);
    // vm-ser.cfg's db_url is a dbtext directory: bob's row in SER's flat-text format.
    let vm_db = dir.0.join("vm-db");
    std::fs::create_dir_all(&vm_db).unwrap();
    std::fs::write(
        vm_db.join("subscriber"),
        "username(str) domain(str) email_address(str)\nbob:127.0.0.1:bob@example.com\n",
    )
    .unwrap();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scripts/vm-ser.cfg"),
    )
    .unwrap();
    let cfg = text
        .replace("/tmp/am_fifo", &am.display().to_string())
        .replace("/tmp/ser_fifo", &ser_fifo.display().to_string())
        .replace(
            "modparam(\"voicemail\", \"db_url\",\"vm/db\")",
            &format!(
                "modparam(\"voicemail\", \"db_url\",\"{}\")\n{extra}",
                vm_db.display()
            ),
        );
    let port = free_port("127.0.0.1");
    let ser = Ser::start_with_cfg(&cfg, &["-l", "127.0.0.1", "-p", &port.to_string()]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let caller = udp_client("127.0.0.1");
    caller
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let via = caller.local_addr().unwrap();
    Some(Setup {
        dir,
        am,
        ser_fifo,
        ser,
        addr,
        caller,
        via,
    })
}

#[test]
fn vm_ser_cfg_hands_the_invite_to_the_media_server_which_answers_through_t_reply() {
    let Some(Setup {
        dir: _dir,
        am,
        ser_fifo,
        ser,
        addr,
        caller,
        via,
    }) = setup("")
    else {
        return;
    };

    // The media server listens; the caller's INVITE for bob reaches it.
    let media = {
        let am = am.clone();
        std::thread::spawn(move || read_vm_request(&am, Duration::from_secs(5)))
    };
    std::thread::sleep(Duration::from_millis(200));
    let inv = invite(&format!("sip:bob@{addr}"), via, "vm-call-1");
    caller.send_to(inv.as_bytes(), addr).unwrap();
    let lines = media
        .join()
        .unwrap()
        .expect("the media server got the request");
    assert_eq!(lines[0], "voicemail", "{lines:?}\n{}", ser.log_text());
    assert_eq!(lines[1], "bob");
    assert_eq!(
        lines[2], "bob@example.com",
        "email from the subscriber table"
    );
    assert_eq!(lines[3], "127.0.0.1");
    assert_eq!(lines[4], format!("sip:alice@{via}"));
    assert_eq!(lines[5], "<sip:alice@example.com>;tag=a7");
    assert_eq!(lines[7], "vm-call-1");
    assert_eq!(lines[8], "a7");
    assert_eq!(lines[10], "3");
    let id = lines[11].clone();
    assert!(id.contains(':'), "hash:label: {lines:?}");
    assert_eq!(lines[13], "v=0", "the body follows");
    // Meanwhile the caller has the script's 100.
    let early = replies(&caller, Duration::from_millis(300), false);
    assert!(
        early
            .iter()
            .any(|r| status_line(r).starts_with("SIP/2.0 100")),
        "{early:?}"
    );

    // The media server answers through ser's FIFO.
    let out = fifo_command(
        &ser_fifo,
        "t_reply",
        &[
            "200",
            "OK",
            &id,
            "vmtag",
            "Contact: <sip:vm@127.0.0.1:9>",
            "Content-Type: application/sdp",
            ".",
            "v=0",
            ".",
        ],
    );
    assert!(out.starts_with("200"), "{out}\n{}", ser.log_text());
    let got = replies(&caller, Duration::from_secs(3), true);
    let ok = got
        .iter()
        .find(|r| status_line(r) == "SIP/2.0 200 OK")
        .unwrap_or_else(|| panic!("no 200: {got:?}"));
    assert!(header(ok, "To").unwrap().contains("tag=vmtag"), "{ok}");
    assert_eq!(header(ok, "Contact"), Some("<sip:vm@127.0.0.1:9>"));
    assert!(ok.ends_with("\r\n\r\nv=0\r\n"), "{ok}");
    // A second t_reply for the same transaction is refused; a made-up id too.
    let again = fifo_command(&ser_fifo, "t_reply", &["486", "Busy", &id, ".", ".", "."]);
    assert!(!again.starts_with("200"), "{again}");
    let bogus = fifo_command(&ser_fifo, "vm_reply", &["200", "OK", "x", ".", ".", "."]);
    assert!(bogus.starts_with("400"), "{bogus}");

    // Nobody reads the voicemail FIFO now: the script's 500.
    let inv = invite(&format!("sip:echo@{addr}"), via, "vm-call-2");
    caller.send_to(inv.as_bytes(), addr).unwrap();
    let got = replies(&caller, Duration::from_secs(3), true);
    assert!(
        got.iter()
            .any(|r| status_line(r) == "SIP/2.0 500 could not contact echo"),
        "{got:?}\n{}",
        ser.log_text()
    );
}

#[test]
fn a_media_server_that_never_answers_leaves_the_caller_a_408() {
    let Some(Setup {
        dir: _dir,
        am,
        ser,
        addr,
        caller,
        via,
        ..
    }) = setup("modparam(\"tm\", \"fr_timer\", 1)")
    else {
        return;
    };
    // It reads the request and says nothing.
    let media = std::thread::spawn(move || read_vm_request(&am, Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(200));
    let inv = invite(&format!("sip:bob@{addr}"), via, "vm-silent-1");
    caller.send_to(inv.as_bytes(), addr).unwrap();
    assert!(media.join().unwrap().is_some());
    let got = replies(&caller, Duration::from_secs(4), true);
    assert!(
        got.iter()
            .any(|r| status_line(r) == "SIP/2.0 408 Request Timeout"),
        "{got:?}\n{}",
        ser.log_text()
    );
}
