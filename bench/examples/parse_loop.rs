//! Runs the wire hot path N times; for `valgrind --tool=callgrind` instruction counts, which are
//! stable on this shared machine where wall-clock benches are noisy.
//! Usage: parse_loop [parse|access|forward|uri|check] [N]

use bytes::Bytes;
use dataplane::wire::{BufPool, HeaderId, Message};

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "parse".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let buf = Bytes::from_static(ser_bench::INVITE);
    let mut pool = BufPool::default();
    let mut total = 0usize;
    if what == "uri" {
        // The URIs an OPTIONS / REGISTER load carries (R-URI, From, To, Contact), IPv4 and names.
        const URIS: [&[u8]; 4] = [
            b"sip:service@127.0.0.1:5070",
            b"sip:loadgen@127.0.0.1:5061",
            b"sip:alice@atlanta.example.com",
            b"sip:bench17@client.bench.test:5062;transport=udp",
        ];
        for _ in 0..n {
            for u in URIS {
                if let Ok(u) = dataplane::wire::uri::Uri::parse(std::hint::black_box(u)) {
                    total += u.raw.len() + usize::from(u.port.unwrap_or(0) > 0);
                }
            }
        }
        println!("{total}");
        return;
    }
    if what == "check" {
        for _ in 0..n {
            let Ok(m) = Message::parse(std::hint::black_box(buf.clone())) else {
                std::process::exit(1);
            };
            total += usize::from(m.check().is_ok());
        }
        println!("{total}");
        return;
    }
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
