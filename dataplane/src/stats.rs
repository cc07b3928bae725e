//! Traffic counters kept per shard, without locks, summed on demand by the management interfaces
//! (`stats` over JSON-RPC, Prometheus `/metrics`).
//!
//! Invariants:
//! - each shard writes only its own [`ShardCounters`] (one cache line group each, padded so two
//!   shards never share a line); readers (the controlplane) only load, so nothing is ever locked
//!   and a shard never waits for a reader;
//! - counting a message looks at its first bytes only (method token or status class) — no parse,
//!   no allocation;
//! - sums are taken counter by counter with relaxed loads: a snapshot is not atomic across
//!   counters, which is fine for monitoring (every counter only grows).
//!
//! What is counted, and where (see `shard/mod.rs`): every message handed to the handler (requests
//! by method, responses by class, "handled" = the shard's load), every message the shard sends
//! (requests by method, replies by class), requests rejected with `503` under overload, and
//! messages dropped (unparseable and unanswerable, or lost to a handler panic).

use std::sync::atomic::{AtomicU64, Ordering};

/// Request methods counted one by one; anything else counts as `other` (the last slot).
pub const METHODS: [&str; 15] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "MESSAGE",
    "SUBSCRIBE",
    "NOTIFY",
    "INFO",
    "PRACK",
    "UPDATE",
    "REFER",
    "PUBLISH",
    "other",
];

/// Reply classes `1xx` … `6xx` (index 0 … 5).
pub const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"];

/// Shards the default [`Stats`] has room for (`src/server.rs` sizes it to the real count).
pub const DEFAULT_SHARDS: usize = 64;

/// The counters of one shard. Aligned to 128 bytes (two cache lines: adjacent-line prefetch) so
/// shards never contend.
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct ShardCounters {
    /// Requests received, by [`METHODS`] index.
    pub requests_in: [AtomicU64; 15],
    /// Responses received, by class.
    pub replies_in: [AtomicU64; 6],
    /// Requests sent (forwarded or generated), by method.
    pub requests_out: [AtomicU64; 15],
    /// Replies sent (stateless, stateful or relayed), by class.
    pub replies_out: [AtomicU64; 6],
    /// Messages handed to the handler: the shard's load.
    pub handled: AtomicU64,
    /// Messages dropped without an answer.
    pub dropped: AtomicU64,
    /// Requests rejected with `503` because the shard was overloaded or a bounded queue behind
    /// it (jobs, scripts waiting, transactions) was full.
    pub overload_503: AtomicU64,
    /// Datagrams the kernel dropped on the shard's sockets (receive buffer full), as of the
    /// shard's last tick.
    pub rcvbuf_drops: AtomicU64,
    /// Times the shard became overloaded (a tick window that shed, dropped or refused, after
    /// one that did not).
    pub overload_entered: AtomicU64,
    /// 1 while the shard's last tick window was overloaded (a gauge).
    pub overloaded: AtomicU64,
    /// The longest queueing delay of the shard's last tick window, microseconds (a gauge).
    pub queue_delay_us: AtomicU64,
}

/// A sum (or one shard's copy) of [`ShardCounters`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub requests_in: [u64; 15],
    pub replies_in: [u64; 6],
    pub requests_out: [u64; 15],
    pub replies_out: [u64; 6],
    pub handled: u64,
    pub dropped: u64,
    pub overload_503: u64,
    pub rcvbuf_drops: u64,
    pub overload_entered: u64,
    /// Shards overloaded now (the sum of the 0/1 gauges).
    pub overloaded: u64,
    /// The largest queueing delay over the shards, microseconds (not a sum).
    pub queue_delay_us: u64,
}

/// The counters of every shard.
#[derive(Debug)]
pub struct Stats {
    shards: Box<[ShardCounters]>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new(DEFAULT_SHARDS)
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What the first bytes of a message say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request; the index in [`METHODS`].
    Request(usize),
    /// A response; the class index (0 = 1xx).
    Reply(usize),
    /// Empty (keep-alive CRLFs) or not SIP.
    Other,
}

/// Classifies a message by its start line (leading CRLFs skipped). Never panics.
pub fn classify(data: &[u8]) -> Kind {
    let start = data
        .iter()
        .position(|&c| c != b'\r' && c != b'\n')
        .unwrap_or(data.len());
    let d = data.get(start..).unwrap_or(&[]);
    if d.starts_with(b"SIP/") {
        let sp = d.iter().position(|&c| c == b' ');
        return match sp.and_then(|p| d.get(p + 1)) {
            Some(c @ b'1'..=b'6') => Kind::Reply(usize::from(c - b'1')),
            _ => Kind::Other,
        };
    }
    let end = d.iter().take(32).position(|&c| c == b' ');
    let Some(end) = end else {
        return Kind::Other;
    };
    let token = d.get(..end).unwrap_or(&[]);
    if token.is_empty() {
        return Kind::Other;
    }
    // A match on the bytes (length first) instead of 14 slice compares, which showed in
    // profiles; the order is METHODS'.
    let i = match token {
        b"INVITE" => 0,
        b"ACK" => 1,
        b"BYE" => 2,
        b"CANCEL" => 3,
        b"REGISTER" => 4,
        b"OPTIONS" => 5,
        b"MESSAGE" => 6,
        b"SUBSCRIBE" => 7,
        b"NOTIFY" => 8,
        b"INFO" => 9,
        b"PRACK" => 10,
        b"UPDATE" => 11,
        b"REFER" => 12,
        b"PUBLISH" => 13,
        _ => 14,
    };
    Kind::Request(i)
}

impl Stats {
    /// Counters for `shards` shards (at least one).
    pub fn new(shards: usize) -> Stats {
        Stats {
            shards: (0..shards.max(1))
                .map(|_| ShardCounters::default())
                .collect(),
        }
    }

    /// Shard `i`'s counters (wrapping if more shards run than were allowed for).
    pub fn shard(&self, i: usize) -> &ShardCounters {
        // `shards` is never empty (see `new`), so the index is always in range.
        &self.shards[i % self.shards.len()]
    }

    /// Shards counted separately.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// A message received by `shard` and handed to its handler.
    pub fn received(&self, shard: usize, data: &[u8]) {
        let s = self.shard(shard);
        bump(&s.handled);
        match classify(data) {
            Kind::Request(i) => bump(&s.requests_in[i]),
            Kind::Reply(c) => bump(&s.replies_in[c]),
            Kind::Other => {}
        }
    }

    /// A message sent by `shard`.
    pub fn sent(&self, shard: usize, data: &[u8]) {
        let s = self.shard(shard);
        match classify(data) {
            Kind::Request(i) => bump(&s.requests_out[i]),
            Kind::Reply(c) => bump(&s.replies_out[c]),
            Kind::Other => {}
        }
    }

    /// A message `shard` dropped without answering.
    pub fn dropped(&self, shard: usize) {
        bump(&self.shard(shard).dropped);
    }

    /// A request `shard` rejected with 503 under overload.
    pub fn overloaded(&self, shard: usize) {
        bump(&self.shard(shard).overload_503);
    }

    /// One shard's counters, copied.
    pub fn shard_totals(&self, shard: usize) -> Totals {
        let mut t = Totals::default();
        add(&mut t, self.shard(shard));
        t
    }

    /// Every shard's counters, summed.
    pub fn sum(&self) -> Totals {
        let mut t = Totals::default();
        for s in self.shards.iter() {
            add(&mut t, s);
        }
        t
    }
}

fn add(t: &mut Totals, s: &ShardCounters) {
    let ld = |c: &AtomicU64| c.load(Ordering::Relaxed);
    for (a, c) in t.requests_in.iter_mut().zip(&s.requests_in) {
        *a += ld(c);
    }
    for (a, c) in t.replies_in.iter_mut().zip(&s.replies_in) {
        *a += ld(c);
    }
    for (a, c) in t.requests_out.iter_mut().zip(&s.requests_out) {
        *a += ld(c);
    }
    for (a, c) in t.replies_out.iter_mut().zip(&s.replies_out) {
        *a += ld(c);
    }
    t.handled += ld(&s.handled);
    t.dropped += ld(&s.dropped);
    t.overload_503 += ld(&s.overload_503);
    t.rcvbuf_drops += ld(&s.rcvbuf_drops);
    t.overload_entered += ld(&s.overload_entered);
    t.overloaded += ld(&s.overloaded);
    t.queue_delay_us = t.queue_delay_us.max(ld(&s.queue_delay_us));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_start_lines() {
        assert_eq!(classify(b"INVITE sip:a@b SIP/2.0\r\n"), Kind::Request(0));
        assert_eq!(
            classify(b"\r\nREGISTER sip:b SIP/2.0\r\n"),
            Kind::Request(4)
        );
        assert_eq!(classify(b"FOO sip:b SIP/2.0\r\n"), Kind::Request(14));
        assert_eq!(classify(b"SIP/2.0 180 Ringing\r\n"), Kind::Reply(0));
        assert_eq!(classify(b"SIP/2.0 603 Decline\r\n"), Kind::Reply(5));
        assert_eq!(classify(b"SIP/2.0 999 x\r\n"), Kind::Other);
        assert_eq!(classify(b"\r\n\r\n"), Kind::Other);
        assert_eq!(classify(b""), Kind::Other);
        assert_eq!(classify(b"SIP/2.0"), Kind::Other);
        for (i, m) in METHODS[..14].iter().enumerate() {
            let line = format!("{m} sip:b SIP/2.0\r\n");
            assert_eq!(classify(line.as_bytes()), Kind::Request(i), "{m}");
        }
        assert_eq!(classify(b"invite sip:b SIP/2.0\r\n"), Kind::Request(14));
    }

    #[test]
    fn shards_count_apart_and_sum() {
        let s = Stats::new(2);
        s.received(0, b"INVITE sip:x SIP/2.0\r\n");
        s.received(1, b"INVITE sip:x SIP/2.0\r\n");
        s.received(1, b"SIP/2.0 200 OK\r\n");
        s.sent(1, b"SIP/2.0 404 Not Found\r\n");
        s.sent(0, b"BYE sip:x SIP/2.0\r\n");
        s.dropped(0);
        s.overloaded(1);
        let t = s.sum();
        assert_eq!(t.requests_in[0], 2);
        assert_eq!(t.replies_in[1], 1);
        assert_eq!(t.replies_out[3], 1);
        assert_eq!(t.requests_out[2], 1);
        assert_eq!((t.handled, t.dropped, t.overload_503), (3, 1, 1));
        assert_eq!(s.shard_totals(1).handled, 2);
        // More shards than counted: wraps instead of panicking.
        s.received(5, b"ACK sip:x SIP/2.0\r\n");
        assert_eq!(s.shard_totals(1).requests_in[1], 1);
    }

    #[test]
    fn counters_do_not_share_cache_lines() {
        assert!(std::mem::align_of::<ShardCounters>() >= 128);
        assert_eq!(std::mem::size_of::<ShardCounters>() % 128, 0);
    }
}
