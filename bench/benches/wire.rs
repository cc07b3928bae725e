//! Hot functions of the wire layer, on the 900-byte INVITE of `ser_bench::INVITE`:
//! - `parse_index`: `Message::parse` (start line, header index, body framing);
//! - `proxy_access`: parse, then read every header a proxy touches — all Vias (branch, received,
//!   rport), To/From (tags), Call-ID, CSeq, Max-Forwards, Route, Contact — plus the Request-URI;
//! - `edit_write_stateless_forward`: what a stateless forward does after parsing — add our Via on
//!   top, decrement Max-Forwards — then write into a pooled buffer.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use dataplane::wire::{BufPool, HeaderId, Message};
use ser_bench::{touch_proxy_headers, INVITE};

fn parse_index(c: &mut Criterion) {
    let buf = Bytes::from_static(INVITE);
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_index", |b| {
        b.iter(|| Message::parse(black_box(buf.clone())).map(|m| m.header_count()))
    });
    g.finish();
}

fn proxy_access(c: &mut Criterion) {
    let buf = Bytes::from_static(INVITE);
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));
    g.bench_function("proxy_access", |b| {
        b.iter(|| {
            Message::parse(black_box(buf.clone()))
                .map(|m| touch_proxy_headers(&m))
                .unwrap_or(0)
        })
    });
    g.finish();
}

fn edit_write(c: &mut Criterion) {
    let buf = Bytes::from_static(INVITE);
    let mut pool = BufPool::default();
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));
    g.bench_function("edit_write_stateless_forward", |b| {
        let m = Message::parse(buf.clone()).expect("sample parses");
        b.iter(|| {
            let mut m = black_box(&m).clone();
            m.insert_header_top(
                b"Via",
                b"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKsl.8f2a1c.0",
            );
            if let Some(h) = m.header(HeaderId::MaxForwards) {
                let idx = h.index;
                let _ = m.replace_header_value(idx, b"68");
            }
            let out = pool.write(&m);
            let n = out.len();
            pool.give(out);
            n
        })
    });
    g.finish();
}

criterion_group!(benches, parse_index, proxy_access, edit_write);
criterion_main!(benches);
