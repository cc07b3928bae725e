//! Runs the wire hot path N times; for `valgrind --tool=callgrind` instruction counts, which are
//! stable on this shared machine where wall-clock benches are noisy.
//! Usage: parse_loop [parse|access|forward] [N]

use bytes::Bytes;
use dataplane::wire::{BufPool, HeaderId, Message};

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "parse".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let buf = Bytes::from_static(ser_bench::INVITE);
    let mut pool = BufPool::default();
    let mut total = 0usize;
    for _ in 0..n {
        let Ok(mut m) = Message::parse(std::hint::black_box(buf.clone())) else {
            std::process::exit(1);
        };
        total += m.header_count();
        if what == "access" {
            total += ser_bench::touch_proxy_headers(&m);
        }
        if what == "forward" {
            m.insert_header_top(
                b"Via",
                b"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKsl.8f2a1c.0",
            );
            if let Some(h) = m.header(HeaderId::MaxForwards) {
                let idx = h.index;
                let _ = m.replace_header_value(idx, b"68");
            }
            let out = pool.write(&m);
            total += out.len();
            pool.give(out);
        }
    }
    println!("{total}");
}
