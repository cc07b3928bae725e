//! `ser`'s command line: errors, `-c`, `-h`, `-V`, pid file, SIGTERM.
#![allow(clippy::unwrap_used)]

#[path = "support/net.rs"]
mod net;
#[path = "support/seed.rs"]
mod seed;

use std::process::Command;
use std::time::{Duration, Instant};

use net::*;

fn ser(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(ser_bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_or_malformed_flags_exit_2_with_one_line() {
    for args in [
        &["-x"][..],
        &["-p"][..],
        &["-p", "http"][..],
        &["-n", "0"][..],
        &["-n", "257"][..],
        &["-n", "100000"][..],
        &["--io=fast"][..],
        &["-l", "[::1"][..],
        &["stray"][..],
    ] {
        let (code, out, err) = ser(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("ser: "), "{err}");
    }
}

#[test]
fn check_broken_seed_config_exits_1_with_position() {
    let f = seed::data_dir().join("broken/unknown-function.cfg");
    let (code, out, err) = ser(&["-c", "-f", f.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(!out.contains("config file ok"));
    assert!(err.contains("unknown-function.cfg:7:3: error"), "{err}");
}

#[test]
fn check_shipped_config_is_ok() {
    let f = concat!(env!("CARGO_MANIFEST_DIR"), "/ser.cfg");
    let (code, out, err) = ser(&["-c", "-f", f]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("config file ok, exiting..."), "{out}");
}

#[test]
fn missing_config_exits_1() {
    let (code, _, err) = ser(&["-c", "-f", "/nonexistent/ser.cfg"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read the config file"), "{err}");
}

#[test]
fn help_and_version() {
    let (code, out, _) = ser(&["-h"]);
    assert_eq!(code, 0);
    for flag in [
        "-f", "-c", "-l", "-p", "-n", "-D", "-E", "-d", "-V", "-h", "-P", "-w", "-u", "-g", "-t",
        "-b", "-m", "-i", "-r", "-R", "-v",
    ] {
        assert!(
            out.contains(&format!("    {flag} ")),
            "{flag} missing in -h"
        );
    }
    assert!(out.contains("loop checks"));
    let (code, out, _) = ser(&["-V"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("ser "), "{out}");
    assert!(out.contains("io: default epoll+recvmmsg"), "{out}");
}

#[test]
fn sigterm_exits_0_quickly_and_removes_the_pid_file() {
    let port = free_port("127.0.0.1").to_string();
    let pidfile = std::env::temp_dir().join(format!("ser-rt-{}.pid", std::process::id()));
    let mut s = Ser::start(&[
        "-l",
        "127.0.0.1",
        "-p",
        &port,
        "-P",
        pidfile.to_str().unwrap(),
    ]);
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, s.child.id());
    let t = Instant::now();
    let st = s
        .terminate(Duration::from_secs(5))
        .expect("ser exits on SIGTERM");
    assert!(st.success(), "{st:?}\n{}", s.log_text());
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(!pidfile.exists());
}

#[test]
fn bind_failure_exits_1() {
    // A port held by a plain (non-SO_REUSEPORT) socket cannot be bound.
    let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let cfg = temp_cfg(MIN_CFG);
    let (code, _, err) = ser(&[
        "-f",
        cfg.to_str().unwrap(),
        "-D",
        "-E",
        "-l",
        "127.0.0.1",
        "-p",
        &port,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot bind"), "{err}");
    let _ = std::fs::remove_file(cfg);
}

#[test]
fn more_than_256_shards_are_refused() {
    // A shard's id is one byte of every branch: shard 256 would get shard 0's replies.
    let (code, _, err) = ser(&["-n", "257", "-c", "-f", "/nonexistent.cfg"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("at most 256 shards"), "{err}");
    // The same through the script's `children=` (refused at start, before binding).
    let cfg = temp_cfg(&format!("children=300\n{MIN_CFG}"));
    let port = free_port("127.0.0.1").to_string();
    let (code, _, err) = ser(&[
        "-f",
        cfg.to_str().unwrap(),
        "-D",
        "-E",
        "-l",
        "127.0.0.1",
        "-p",
        &port,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("bad value '300' for children: at most 256 shards"),
        "{err}"
    );
    let _ = std::fs::remove_file(cfg);
}

#[test]
fn fork_yes_daemonizes_and_the_daemon_serves() {
    let port = free_port("127.0.0.1");
    let p = port.to_string();
    let pidfile = std::env::temp_dir().join(format!("ser-rt-daemon-{}.pid", std::process::id()));
    let cfg = temp_cfg(MIN_CFG);
    // No -D: SER's default fork=yes. The command returns once the daemon is up.
    let t = Instant::now();
    let (code, _, err) = ser(&[
        "-f",
        cfg.to_str().unwrap(),
        "-l",
        "127.0.0.1",
        "-p",
        &p,
        "-n",
        "1",
        "-P",
        pidfile.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(t.elapsed() < Duration::from_secs(10));
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Make sure the daemon we started goes away whatever happens below.
    struct KillOnDrop(u32);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.to_string()])
                .status();
        }
    }
    let guard = KillOnDrop(pid);
    let c = udp_client("127.0.0.1");
    let me = c.local_addr().unwrap().to_string();
    let req = request(
        "OPTIONS",
        &format!("sip:127.0.0.1:{port}"),
        &me,
        "UDP",
        "daemon",
    );
    let server: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let reply = udp_exchange(&c, server, req.as_bytes()).unwrap();
    assert_eq!(status_line(&reply), "SIP/2.0 200 OK");
    drop(guard);
    let end = Instant::now() + Duration::from_secs(5);
    while pidfile.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pidfile.exists(), "daemon removes its pid file on SIGTERM");
    let _ = std::fs::remove_file(cfg);
}

#[test]
fn sighup_is_logged_and_ser_keeps_serving() {
    let port = free_port("127.0.0.1");
    let p = port.to_string();
    let mut s = Ser::start(&["-l", "udp:127.0.0.1", "-p", &p]);
    let _ = Command::new("kill")
        .args(["-HUP", &s.child.id().to_string()])
        .status();
    assert!(
        s.wait_log("SIGHUP received", Duration::from_secs(3)),
        "{}",
        s.log_text()
    );
    let c = udp_client("127.0.0.1");
    let me = c.local_addr().unwrap().to_string();
    let req = request(
        "OPTIONS",
        &format!("sip:127.0.0.1:{port}"),
        &me,
        "UDP",
        "hup",
    );
    let server: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let reply = udp_exchange(&c, server, req.as_bytes()).unwrap();
    assert_eq!(status_line(&reply), "SIP/2.0 200 OK");
    // udp: only, so the TCP port is free.
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
    let st = s.terminate(Duration::from_secs(5)).unwrap();
    assert!(st.success());
}
