//! A small, bounded UDP load driver for `ser`'s runtime: keeps `window` OPTIONS requests in flight
//! against one server, for `secs` seconds, with batched `sendmmsg`/`recvmmsg`, and prints replies
//! per second. Not a SIP load generator (see `loadgen/` for that): no retransmissions, a lost
//! window is simply refilled after 100 ms.
//!
//!     cargo run --release --example udp_blast -- 127.0.0.1:5060 5 256
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use dataplane::transport::sys::{RecvBatch, SendBatch, BATCH};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let target: SocketAddr = args
        .first()
        .map(String::as_str)
        .unwrap_or("127.0.0.1:5060")
        .parse()
        .expect("target address");
    let secs: u64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .min(600);
    let window: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(256)
        .max(1);
    let bind = if target.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let sock = UdpSocket::bind(bind).unwrap();
    sock.set_nonblocking(true).unwrap();
    let me = sock.local_addr().unwrap();
    let reqs: Vec<Vec<u8>> = (0..1024)
        .map(|i| {
            format!(
                "OPTIONS sip:{target} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {me};branch=z9hG4bK-blast-{i};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:blast@{me}>;tag=b{i}\r\n\
                 To: <sip:{target}>\r\n\
                 Call-ID: blast-{i}@{me}\r\n\
                 CSeq: 1 OPTIONS\r\n\
                 User-Agent: udp_blast\r\n\
                 Content-Length: 0\r\n\r\n"
            )
            .into_bytes()
        })
        .collect();
    let fd = sock.as_raw_fd();
    let mut sb = SendBatch::new();
    let mut rb = RecvBatch::new();
    let (mut sent, mut ok, mut other, mut in_flight, mut next) = (0u64, 0u64, 0u64, 0usize, 0usize);
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut last_rx = Instant::now();
    while Instant::now() < end {
        while in_flight < window {
            let n = (window - in_flight).min(BATCH);
            let msgs: Vec<(&[u8], SocketAddr)> = (0..n)
                .map(|k| (reqs[(next + k) % reqs.len()].as_slice(), target))
                .collect();
            match sb.send(fd, &msgs, false) {
                Ok(k) => {
                    next += k;
                    in_flight += k;
                    sent += k as u64;
                }
                Err(_) => break,
            }
        }
        match rb.recv(fd, |d, _, _| {
            if d.starts_with(b"SIP/2.0 200") {
                ok += 1;
            } else {
                other += 1;
            }
        }) {
            Ok(n) if n > 0 => {
                in_flight = in_flight.saturating_sub(n);
                last_rx = Instant::now();
            }
            _ => {
                if last_rx.elapsed() > Duration::from_millis(100) {
                    in_flight = 0; // lost: refill the window
                    last_rx = Instant::now();
                }
            }
        }
    }
    let el = start.elapsed().as_secs_f64();
    println!(
        "udp_blast: {target} window {window}, {el:.1} s: sent {sent}, 200 OK {ok}, other {other}, {:.0} replies/s",
        ok as f64 / el
    );
}
