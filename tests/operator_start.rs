//! ser started as an operator starts it: as a daemon with a relative `-f` (it says where it
//! listens and logs, reloads on SIGHUP and FIFO `reload`, `serctl stop` stops it through the pid
//! file), a start-up failure names its cause on stderr without `-E`, and SIGTERM stops it within
//! 5 s while its database is unreachable — also with a write queued for that database.
#![allow(clippy::unwrap_used)]

#[path = "support/net.rs"]
mod net;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use net::*;

/// A fresh directory of this test (removed by the test at its end).
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ser-op-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Kills (by its pid) the daemon this test started, should an assertion fail first.
struct Guard(u32);
impl Drop for Guard {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

fn options(port: u16) -> String {
    let c = udp_client("127.0.0.1");
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let req = format!(
        "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKop{port}\r\n\
Max-Forwards: 70\r\nFrom: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: op-{port}@t\r\n\
CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        c.local_addr().unwrap().port()
    );
    udp_exchange(&c, addr, req.as_bytes()).unwrap_or_default()
}

/// A script whose OPTIONS reply reason says which version of the file is loaded.
fn script(reason: &str, fifo: &Path) -> String {
    format!(
        "fifo=\"{}\"\nloadmodule \"sl.so\"\nroute {{\n\tif (method==\"OPTIONS\") {{ sl_send_reply(\"200\", \"{reason}\"); break; }};\n\tsl_send_reply(\"404\", \"Not Found\");\n}}\n",
        fifo.display()
    )
}

#[test]
fn daemon_with_a_relative_config_says_where_it_is_reloads_and_stops_with_serctl() {
    let d = dir("daemon");
    let fifo = d.join("fifo");
    std::fs::write(d.join("my.cfg"), script("first", &fifo)).unwrap();
    let port = free_port("127.0.0.1");
    // As an operator types it: relative config and pid file, daemon mode (fork=yes), no -E.
    // stderr to a file, not a pipe: without syslog the daemon keeps logging there.
    let log = d.join("stderr.txt");
    let status = Command::new(ser_bin())
        .current_dir(&d)
        .args(["-f", "my.cfg", "-P", "ser.pid", "-n", "1", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{err}");
    let pid: u32 = std::fs::read_to_string(d.join("ser.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _guard = Guard(pid);
    // The parent printed one summary: pid, sockets, log target, how to stop.
    let summary = err
        .lines()
        .find(|l| l.contains("listening on"))
        .unwrap_or("");
    assert!(
        summary.contains(&format!(
            "pid {pid} listening on udp:127.0.0.1:{port} tcp:127.0.0.1:{port}"
        )),
        "{err}"
    );
    let expect_log = if Path::new("/dev/log").exists() {
        "log: syslog"
    } else {
        "log: stderr"
    };
    assert!(summary.contains(expect_log), "{err}");
    assert!(summary.contains("serctl stop"), "{err}");
    if !Path::new("/dev/log").exists() {
        assert!(
            err.contains("no syslog daemon listens on /dev/log; logging to stderr"),
            "{err}"
        );
    }
    assert!(options(port).contains("200 first"));

    // SIGHUP rereads the relative -f although the daemon runs in `/`.
    std::fs::write(d.join("my.cfg"), script("second", &fifo)).unwrap();
    Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || options(port)
            .contains("200 second")),
        "SIGHUP did not reload"
    );
    // And so does the FIFO's reload (serctl fifo reload).
    std::fs::write(d.join("my.cfg"), script("third", &fifo)).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_serctl"))
        .args(["fifo", "reload"])
        .env("SER_FIFO", &fifo)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert!(options(port).contains("200 third"));

    // serctl stop finds it through the pid file.
    let o = Command::new(env!("CARGO_BIN_EXE_serctl"))
        .arg("stop")
        .env("PID_FILE", d.join("ser.pid"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert!(
        wait_until(Duration::from_secs(5), || !alive(pid)),
        "ser did not stop"
    );
    assert!(
        !d.join("ser.pid").exists(),
        "the pid file is removed at exit"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn start_up_failures_print_their_cause_without_e() {
    let d = dir("fail");
    std::fs::write(d.join("my.cfg"), script("x", &d.join("fifo"))).unwrap();
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    for foreground in [false, true] {
        let mut cmd = Command::new(ser_bin());
        cmd.current_dir(&d)
            .args(["-f", "my.cfg", "-n", "1", "-l"])
            .arg(format!("udp:127.0.0.1:{port}"));
        if foreground {
            cmd.arg("-D");
        }
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!(
                "cannot bind udp:127.0.0.1:{port}: Address already in use"
            )),
            "foreground {foreground}: {err}"
        );
        assert!(!err.contains("see the log"), "{err}");
    }
    // A pid file naming a live process (this test) is refused, with the reason.
    std::fs::write(d.join("ser.pid"), format!("{}\n", std::process::id())).unwrap();
    let port = free_port("127.0.0.1");
    let out = Command::new(ser_bin())
        .current_dir(&d)
        .args(["-f", "my.cfg", "-n", "1", "-P", "ser.pid", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("which is running (another ser?"), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn sigterm_stops_ser_within_5_s_with_the_database_unreachable() {
    let d = dir("dbdown");
    let fifo = d.join("fifo");
    // The shipped ser.cfg keeps bindings in the database (usrloc db_mode 2).
    let cfg = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ser.cfg"))
        .unwrap()
        .replace("/tmp/ser_fifo", fifo.to_str().unwrap());
    let port = free_port("127.0.0.1");
    let mut ser = Ser::start_with_env(
        &cfg,
        &["-l", "127.0.0.1", "-p", &port.to_string()],
        // Nothing listens on port 1: every connection is refused.
        &[("SER_DB_URL", "mysql://root@127.0.0.1:1/x")],
    );
    assert!(
        ser.wait_log("cannot load table 'location'", Duration::from_secs(10)),
        "{}",
        ser.log_text()
    );
    // A registration: a write for the database that cannot be written.
    let c = udp_client("127.0.0.1");
    let me = c.local_addr().unwrap().port();
    let reg = format!(
        "REGISTER sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKdbdown\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=1\r\nTo: <sip:alice@127.0.0.1>\r\nCall-ID: dbdown@t\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:alice@127.0.0.1:{me}>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
    );
    let r = udp_exchange(
        &c,
        format!("127.0.0.1:{port}").parse().unwrap(),
        reg.as_bytes(),
    )
    .unwrap();
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    let t = Instant::now();
    let status = ser.terminate(Duration::from_secs(5));
    assert!(
        status.is_some(),
        "still running 5 s after SIGTERM:\n{}",
        ser.log_text()
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(
        ser.log_text().contains("signal 15 received"),
        "{}",
        ser.log_text()
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// README's way (`./scripts/run` runs `ser -f ser.cfg -D -E -P <pid file>`): the summary line
/// names the pid, the sockets, the log on stderr, and both ways to stop.
#[test]
fn foreground_start_says_where_it_listens_logs_and_how_to_stop() {
    let d = dir("fg");
    let port = free_port("127.0.0.1");
    let pid_file = d.join("ser.pid");
    let ser = Ser::start_with_cfg(
        &script("fg", &d.join("fifo")),
        &[
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-P",
            pid_file.to_str().unwrap(),
        ],
    );
    assert!(
        ser.wait_log("listening on udp:", Duration::from_secs(5)),
        "{}",
        ser.log_text()
    );
    let pid = ser.child.id();
    let log = ser.log_text();
    let line = log
        .lines()
        .find(|l| l.starts_with("ser: pid"))
        .unwrap_or("");
    assert_eq!(
        line,
        format!(
            "ser: pid {pid} listening on udp:127.0.0.1:{port} tcp:127.0.0.1:{port}; log: stderr; stop: Ctrl-C, kill -TERM {pid}, or serctl stop (PID_FILE={})",
            pid_file.display()
        )
    );
    drop(ser);
    let _ = std::fs::remove_dir_all(&d);
}
