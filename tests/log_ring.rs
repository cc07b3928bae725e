//! Log lines triggered by network input never stall a shard (#15 item 6): a shard queues its lines
//! on its own bounded ring, a logger thread writes them; repeated lines are counted, lines that
//! find the ring full are dropped and counted, and each shard's lines keep their order.
#![allow(clippy::unwrap_used)]

#[path = "support/net.rs"]
mod net;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use net::*;

/// ser at debug level 4 (every malformed datagram logs `dropping unanswerable request from
/// <source>`), one shard, stderr read by a thread that stops reading after the start line until
/// `gate` is opened.
struct Logged {
    ser: KillOnDrop,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
    gate: mpsc::Sender<()>,
}

fn start() -> Logged {
    let port = free_port("127.0.0.1");
    let cfg = temp_cfg(MIN_CFG);
    let mut child = Command::new(ser_bin())
        .args(["-f", cfg.to_str().unwrap(), "-D", "-E", "-dddd", "-n", "1"])
        .args(["-l", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    let (gate, gate_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stderr);
        let mut line = String::new();
        let mut open = false;
        while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            let started = line.contains(" started: ");
            if tx.send(std::mem::take(&mut line)).is_err() {
                return;
            }
            if started && !open {
                // Hold the pipe full until the test says so.
                if gate_rx.recv().is_err() {
                    return;
                }
                open = true;
            }
        }
    });
    let l = Logged {
        ser: KillOnDrop(child),
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        lines,
        gate,
    };
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if let Ok(line) = l.lines.recv_timeout(Duration::from_millis(100)) {
            if line.contains(" started: ") {
                return l;
            }
        }
    }
    panic!("ser did not start");
}

/// Lines until one contains `needle` (≤ `limit`).
fn until(l: &Logged, needle: &str, limit: Duration) -> Vec<String> {
    let end = Instant::now() + limit;
    let mut got = Vec::new();
    while Instant::now() < end {
        if let Ok(line) = l.lines.recv_timeout(Duration::from_millis(50)) {
            let done = line.contains(needle);
            got.push(line);
            if done {
                return got;
            }
        }
    }
    panic!("no line with {needle:?} within {limit:?}; got {got:#?}");
}

fn options_answered(probe: &UdpSocket, to: SocketAddr, n: usize) -> Duration {
    let req = request(
        "OPTIONS",
        &format!("sip:{to}"),
        &probe.local_addr().unwrap().to_string(),
        "UDP",
        &format!("probe-{n}@t"),
    );
    let t = Instant::now();
    let reply = udp_exchange(probe, to, req.as_bytes());
    assert!(
        reply.is_some_and(|r| r.starts_with("SIP/2.0 200")),
        "probe {n} unanswered"
    );
    t.elapsed()
}

#[test]
fn a_log_flood_on_a_stalled_stderr_does_not_stall_the_shard_and_drops_are_counted() {
    let mut l = start();
    let probe = udp_client("127.0.0.1");
    let senders: Vec<UdpSocket> = (0..32).map(|_| udp_client("127.0.0.1")).collect();
    // Nobody reads stderr: its pipe (64 KiB) fills after some hundred lines, then the ring.
    let mut worst = Duration::ZERO;
    for round in 0..100 {
        for (k, s) in senders.iter().enumerate() {
            s.send_to(format!("junk {round} {k}\r\n\r\n").as_bytes(), l.addr)
                .unwrap();
        }
        if round % 10 == 9 {
            worst = worst.max(options_answered(&probe, l.addr, round));
        }
    }
    // 3,200 distinct log lines later the shard still answers at once.
    assert!(
        worst < Duration::from_millis(500),
        "slowest probe {worst:?}"
    );
    l.gate.send(()).unwrap();
    let got = until(&l, "log ring full: ", Duration::from_secs(5));
    let last = got.last().unwrap();
    assert!(last.contains("shard 0: WARNING: log ring full: "), "{last}");
    let n: u64 = last
        .split("full: ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(n > 0 && n < 3300, "{last}");
    let _ = l.ser.0.kill();
}

#[test]
fn repeated_lines_are_counted_and_each_shards_lines_keep_their_order() {
    let l = start();
    l.gate.send(()).unwrap();
    let same = udp_client("127.0.0.1");
    let from = same.local_addr().unwrap();
    for _ in 0..500 {
        same.send_to(b"junk\r\n\r\n", l.addr).unwrap();
    }
    // Then one line from each of 20 sockets, in order.
    let others: Vec<UdpSocket> = (0..20).map(|_| udp_client("127.0.0.1")).collect();
    for s in &others {
        std::thread::sleep(Duration::from_millis(2));
        s.send_to(b"junk\r\n\r\n", l.addr).unwrap();
    }
    let last = others.last().unwrap().local_addr().unwrap();
    let got = until(
        &l,
        &format!("unanswerable request from {last}:"),
        Duration::from_secs(5),
    );
    let first = got
        .iter()
        .position(|g| g.contains(&format!("unanswerable request from {from}:")))
        .expect("the repeated line");
    // The line once, then its repetitions counted (all 499 of them, maybe in several reports).
    let mut repeated = 0u64;
    for g in &got[first + 1..] {
        match g.split("last message repeated ").nth(1) {
            Some(rest) => repeated += rest.split(' ').next().unwrap().parse::<u64>().unwrap(),
            None if g.contains(&format!("from {from}:")) => {
                panic!("repeated line printed again: {g}")
            }
            None if g.contains("unanswerable request from") => break,
            None => {}
        }
    }
    assert_eq!(repeated, 499, "{got:#?}");
    // The 20 distinct lines in the order sent.
    let order: Vec<String> = got
        .iter()
        .filter_map(|g| g.split("unanswerable request from ").nth(1))
        .filter_map(|r| r.split(": ").next())
        .map(str::to_string)
        .filter(|a| *a != from.to_string())
        .collect();
    let sent: Vec<String> = others
        .iter()
        .map(|s| s.local_addr().unwrap().to_string())
        .collect();
    assert_eq!(order, sent);
}
