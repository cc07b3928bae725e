//! Shared helpers for loadgen's end-to-end tests: run the `loadgen` binary (Cargo builds it for
//! this package's integration tests and exports its path as `CARGO_BIN_EXE_loadgen`), start a
//! `loadgen uas` child on a free loopback port, and read JSON summaries.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_loadgen")
}

/// Runs loadgen with `args`, bounded by a generous wall-clock limit.
pub fn run(args: &[&str]) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("loadgen {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Runs a client scenario with `--json` and returns (exit code, summary, stderr).
pub fn run_json(args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut all = args.to_vec();
    all.extend(["--json", "-q"]);
    let out = run(&all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("no JSON summary ({e}); stdout {stdout:?} stderr {stderr:?}"));
    (out.status.code().unwrap_or(-1), v, stderr)
}

/// A `loadgen uas` child, killed when dropped.
pub struct Uas {
    pub child: Child,
    pub addr: String,
    pub stats: PathBuf,
}

impl Uas {
    pub fn start(extra: &[&str]) -> Uas {
        Uas::start_on("udp", extra)
    }

    pub fn start_on(transport: &str, extra: &[&str]) -> Uas {
        Uas::start_at("127.0.0.1:0", transport, extra)
    }

    pub fn start_at(bind: &str, transport: &str, extra: &[&str]) -> Uas {
        let stats = std::env::temp_dir().join(format!(
            "loadgen-uas-{}-{}.json",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&stats);
        let mut child = Command::new(bin())
            .args(["uas", "--bind", bind, "--transport", transport, "-q"])
            .arg("--stats-file")
            .arg(&stats)
            .args(["--duration", "60"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "loadgen uas listening on 127.0.0.1:PORT (UDP)"
        let addr = line
            .split_whitespace()
            .nth(4)
            .unwrap_or_else(|| panic!("unexpected uas banner {line:?}"))
            .to_string();
        Uas { child, addr, stats }
    }

    /// Waits until the stats file satisfies `pred` (the UAS rewrites it every 200 ms).
    pub fn wait_stats(&self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v = std::fs::read_to_string(&self.stats)
                .ok()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
            if let Some(v) = v {
                if pred(&v) {
                    return v;
                }
                if Instant::now() > deadline {
                    panic!("uas stats never matched: {v}");
                }
            } else if Instant::now() > deadline {
                panic!("uas stats file {} never appeared", self.stats.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Uas {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stats);
    }
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A loopback UDP port nobody listens on (bound, then released).
pub fn closed_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

pub fn u(v: &serde_json::Value, path: &str) -> u64 {
    let mut cur = v;
    for k in path.split('.') {
        cur = &cur[k];
    }
    cur.as_u64().unwrap_or(0)
}
