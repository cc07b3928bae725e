//! Helpers for the runtime tests: free ports, a `ser` child process that is killed when the test
//! ends (only the child this helper started), SIP request text, bounded UDP/TCP exchanges.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A port free for both UDP and TCP on `ip` right now.
pub fn free_port(ip: &str) -> u16 {
    for _ in 0..50 {
        let u = UdpSocket::bind((ip, 0)).expect("bind udp");
        let port = u.local_addr().expect("local addr").port();
        if std::net::TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on {ip}");
}

static CFG_N: AtomicUsize = AtomicUsize::new(0);

/// Writes `text` to a fresh temporary config file.
pub fn temp_cfg(text: &str) -> PathBuf {
    let n = CFG_N.fetch_add(1, Ordering::SeqCst);
    let p = std::env::temp_dir().join(format!("ser-rt-{}-{n}.cfg", std::process::id()));
    std::fs::write(&p, text).expect("write cfg");
    p
}

/// A small stateless config: OPTIONS to myself → 200, ACK absorbed, anything else → 500.
pub const MIN_CFG: &str = r#"loadmodule "sl.so"
route {
	if (method == "OPTIONS" && uri == myself) {
		sl_send_reply("200", "OK");
		break;
	};
	if (method == "ACK") {
		break;
	};
	sl_send_reply("500", "Server Internal Error");
}
"#;

/// A running `ser`. Killed (and reaped) on drop if still running.
pub struct Ser {
    pub child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
    pub cfg: PathBuf,
    /// The SQLite file of SER_DB_URL, if any (its side files are cleaned up on drop).
    pub db: Option<PathBuf>,
}

/// The ser under test: this build's, or `SER_BIN` (bench/overload.sh runs tests against a
/// release build with it).
pub fn ser_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("SER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_ser").to_string())
    })
}

impl Ser {
    /// Starts `ser -f <MIN_CFG> -D -E -dd -n 1 <extra>` and waits (≤ 10 s) for its "started" line.
    pub fn start(extra: &[&str]) -> Ser {
        Ser::start_with_cfg(MIN_CFG, extra)
    }

    pub fn start_with_cfg(cfg_text: &str, extra: &[&str]) -> Ser {
        Ser::start_with_env(cfg_text, extra, &[])
    }

    /// As [`Ser::start_with_cfg`], with extra environment variables.
    pub fn start_with_env(cfg_text: &str, extra: &[&str], env: &[(&str, &str)]) -> Ser {
        let cfg = temp_cfg(cfg_text);
        let mut cmd = Command::new(ser_bin());
        // Never the machine's /var/lib/ser/ser.db: a script that stores anything gets a database
        // of its own next to its config (removed on drop) unless the test names one.
        if !env.iter().any(|(k, _)| *k == "SER_DB_URL") {
            cmd.env(
                "SER_DB_URL",
                format!("sqlite://{}", cfg.with_extension("db").display()),
            );
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.arg("-f")
            .arg(&cfg)
            .args(["-D", "-E", "-dd", "-n", "1"])
            .args(extra);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn ser");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let l2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                l2.lock().expect("log lock").push(line);
            }
        });
        let db = env.iter().find(|(k, _)| *k == "SER_DB_URL").map_or_else(
            || Some(cfg.with_extension("db")),
            |(_, v)| v.strip_prefix("sqlite://").map(PathBuf::from),
        );
        let s = Ser {
            child,
            log,
            cfg,
            db,
        };
        if !s.wait_log("started", Duration::from_secs(10)) {
            panic!("ser did not start; log:\n{}", s.log_text());
        }
        s
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.log_text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// Sends SIGTERM and waits (≤ timeout) for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Ser {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.cfg);
        let own = self.cfg.with_extension("db");
        match &self.db {
            // The database this helper chose goes with the server.
            Some(db) if *db == own => remove_sqlite(db),
            // A test's database the test already removed: what the server had open meanwhile
            // (SQLite's -wal/-shm) goes too.
            Some(db) if !db.exists() => remove_sqlite(db),
            _ => {}
        }
    }
}

/// Removes a SQLite database with its WAL side files (`-wal`, `-shm`).
pub fn remove_sqlite(db: &std::path::Path) {
    let _ = std::fs::remove_file(db);
    for side in ["-wal", "-shm", "-journal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(side);
        let _ = std::fs::remove_file(std::path::PathBuf::from(p));
    }
}

/// An OPTIONS (or other method) request to `ruri`, sent from `via` (host:port) over `proto`.
pub fn request(method: &str, ruri: &str, via: &str, proto: &str, call_id: &str) -> String {
    let branch = call_id.replace('@', ".");
    format!(
        "{method} {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/{proto} {via};branch=z9hG4bK-{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 7 {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// A UDP client socket on `ip` with a read timeout.
pub fn udp_client(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).expect("bind client");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    s
}

/// Sends `req` and returns the first reply (≤ 3 s), as text.
pub fn udp_exchange(sock: &UdpSocket, to: SocketAddr, req: &[u8]) -> Option<String> {
    sock.send_to(req, to).expect("send");
    let mut buf = vec![0u8; 65536];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Reads from a TCP stream until `count` complete SIP messages (by Content-Length: 0 / empty line)
/// arrived, the peer closes, or 3 s pass.
pub fn tcp_read_replies(s: &mut TcpStream, count: usize) -> Vec<String> {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let end = Instant::now() + Duration::from_secs(3);
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    while Instant::now() < end {
        let text = String::from_utf8_lossy(&data).into_owned();
        if text.matches("\r\n\r\n").count() >= count {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(_) => continue,
        }
    }
    let text = String::from_utf8_lossy(&data).into_owned();
    text.split_inclusive("\r\n\r\n")
        .map(str::to_string)
        .collect()
}

/// True when the server closes `s` within `timeout` (read returns 0 or an error other than a
/// timeout).
pub fn closed_within(s: &mut TcpStream, timeout: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let end = Instant::now() + timeout;
    let mut buf = [0u8; 1024];
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

/// Writes all of `data` (test helper; panics on error).
pub fn tcp_write(s: &mut TcpStream, data: &[u8]) {
    s.write_all(data).expect("tcp write");
}

/// The value of header `name` in a reply (first occurrence).
pub fn header<'a>(reply: &'a str, name: &str) -> Option<&'a str> {
    reply.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The status line of a reply.
pub fn status_line(reply: &str) -> &str {
    reply.lines().next().unwrap_or("")
}

/// A stateless proxy script: Max-Forwards checked, OPTIONS to myself answered, everything else
/// forwarded to 127.0.0.1:UASPORT (replace `UASPORT` with the far end's port).
pub const FORWARD_CFG: &str = r#"
loadmodule "sl.so"
loadmodule "maxfwd.so"
route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		break;
	};
	if (method == "OPTIONS" && uri == myself) {
		sl_send_reply("200", "OK");
		break;
	};
	forward(127.0.0.1, UASPORT);
}
"#;

/// A child process (a test peer: SIPp, loadgen uas…) killed and reaped on drop — only the one
/// the test started.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to `limit` for a child to exit by itself; its exit code, or `None` (killed on drop).
#[allow(dead_code)]
pub fn wait_child(mut c: KillOnDrop, limit: Duration) -> Option<i32> {
    let until = std::time::Instant::now() + limit;
    while std::time::Instant::now() < until {
        match c.0.try_wait() {
            Ok(Some(st)) => return st.code(),
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => return None,
        }
    }
    None
}

/// Whether `tool` is on the PATH (interop tests skip with a visible line when it is not).
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// SIPp's built-in `uas` scenario on 127.0.0.1:`port` (ends by itself after 60 s).
pub fn sipp_uas(port: u16) -> KillOnDrop {
    let child = Command::new("sipp")
        .args(["-sn", "uas", "-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-nostdin", "-timeout", "60s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sipp uas");
    std::thread::sleep(Duration::from_millis(300));
    KillOnDrop(child)
}

/// SIPp's built-in `uac` scenario: `calls` calls at `rate`/s to `target` from 127.0.0.1:`port`,
/// bounded to 60 s. Asserts exit code 0, every call successful and none failed.
pub fn sipp_uac_all_succeed(target: &str, port: u16, calls: u32, rate: u32) {
    let started = Instant::now();
    let out = Command::new("timeout")
        .args(["60", "sipp", "-sn", "uac", target])
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-m", &calls.to_string(), "-r", &rate.to_string()])
        .args(["-timeout", "40s", "-nostdin"])
        .stdin(Stdio::null())
        .output()
        .expect("run sipp uac");
    let text = String::from_utf8_lossy(&out.stdout);
    // SIPp's final statistics: "Successful call | <periodic> | <cumulative>".
    let stat = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .map(|l| l.split('|').nth(2).unwrap_or("").trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(out.status.code(), Some(0), "sipp uac failed:\n{text}");
    assert_eq!(stat("Successful call"), calls.to_string(), "{text}");
    assert_eq!(stat("Failed call"), "0", "{text}");
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// Sends `:cmd:reply\n` + `params` (one per line) + an empty line to the server FIFO `server`, as
/// serctl does, and returns the whole reply (≤ 5 s).
pub fn fifo_command(server: &std::path::Path, cmd: &str, params: &[&str]) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let reply = format!(
        "ser_test_reply_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let reply_path = PathBuf::from("/tmp").join(&reply);
    let _ = std::fs::remove_file(&reply_path);
    let made = Command::new("mkfifo")
        .args(["-m", "600"])
        .arg(&reply_path)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let mut req = format!(":{cmd}:{reply}\n");
    for p in params {
        req.push_str(p);
        req.push('\n');
    }
    req.push('\n');
    std::fs::OpenOptions::new()
        .write(true)
        .open(server)
        .expect("open the server FIFO")
        .write_all(req.as_bytes())
        .expect("write the request");
    let (tx, rx) = std::sync::mpsc::channel();
    let p = reply_path.clone();
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&p) {
            let _ = f.read_to_string(&mut s);
        }
        let _ = tx.send(s);
    });
    let out = rx.recv_timeout(Duration::from_secs(5));
    if out.is_err() {
        // Unblock the reader: open the write end ourselves.
        let _ = std::fs::OpenOptions::new().write(true).open(&reply_path);
    }
    let _ = std::fs::remove_file(&reply_path);
    out.expect("no FIFO reply within 5 s")
}
