//! The transaction layer (SER's `tm` core): RFC 3261 §17 state machines, transaction matching
//! (§17.1.3, §17.2.3), the branch format that names the owning shard, the §16.7 choice of the best
//! final response, and the statistics `t_stats`/`t_hash` report.
//!
//! Everything here is sans-IO: state machines take events and `now` and say what to send. The
//! [`table::Table`] of one shard holds its transactions (SER's cells) and turns requests, replies,
//! CANCELs and timer ticks into [`table::Action`]s; the shard's handler carries them out.
//!
//! | file | RFC 3261 |
//! |---|---|
//! | [`client_invite`] | Figure 5 (+ RFC 6026 Accepted, §16.8 Timer C) |
//! | [`client_non_invite`] | Figure 6 |
//! | [`server_invite`] | Figure 7 (+ RFC 6026 Accepted) |
//! | [`server_non_invite`] | Figure 8 |
//! | [`timer`] | Table 4, and SER's tm parameters |
//! | [`build`] | §17.1.1.3 ACK for a non-2xx, §9.1 CANCEL |
//! | [`table`] | §16 stateful proxy: the cells, §16.7 response context, §16.10 CANCEL, t_uac |
//!
//! Invariants: a transaction belongs to one shard and is never shared or locked; the branch of
//! every request we forward statefully starts with [`BRANCH_PREFIX`] and carries the owner's shard
//! number, so a reply that the kernel hands to another shard (SO_REUSEPORT) is passed to the owner.

pub mod build;
pub mod client_invite;
pub mod client_non_invite;
pub mod server_invite;
pub mod server_non_invite;
pub mod table;
pub mod timer;

use std::hash::{DefaultHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::wire::{Message, Method};

pub use timer::TimerConfig;

/// RFC 3261 magic cookie.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";
/// Start of the branch of every request ser forwards statefully: the cookie and `t`.
pub const BRANCH_PREFIX: &[u8] = b"z9hG4bKt";
/// Length of a stateful branch: prefix, shard (2 hex), slot (6), generation (8), '.', branch (2).
pub const BRANCH_LEN: usize = 8 + 2 + 6 + 8 + 1 + 2;

/// Where a client transaction lives: what our branch parameter encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BranchId {
    /// The shard that owns the transaction.
    pub shard: u8,
    /// Slot in that shard's table (< 2^24).
    pub slot: u32,
    /// Generation of the slot (a reused slot never matches an old branch).
    pub gen: u32,
    /// Index of the branch (fork) within the transaction.
    pub branch: u8,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn put_hex(out: &mut [u8], v: u64) {
    let n = out.len();
    for (i, o) in out.iter_mut().enumerate() {
        *o = HEX[((v >> (4 * (n - 1 - i))) & 0xf) as usize];
    }
}

fn get_hex(s: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | u64::from(d);
    }
    Some(v)
}

impl BranchId {
    /// The branch parameter value.
    pub fn encode(&self) -> [u8; BRANCH_LEN] {
        let mut b = [0u8; BRANCH_LEN];
        b[..8].copy_from_slice(BRANCH_PREFIX);
        put_hex(&mut b[8..10], u64::from(self.shard));
        put_hex(&mut b[10..16], u64::from(self.slot & 0xff_ffff));
        put_hex(&mut b[16..24], u64::from(self.gen));
        b[24] = b'.';
        put_hex(&mut b[25..27], u64::from(self.branch));
        b
    }

    /// Reads a branch parameter we wrote; `None` for anything else.
    pub fn decode(b: &[u8]) -> Option<BranchId> {
        if b.len() != BRANCH_LEN || !b.starts_with(BRANCH_PREFIX) || b[24] != b'.' {
            return None;
        }
        Some(BranchId {
            shard: get_hex(&b[8..10])? as u8,
            slot: get_hex(&b[10..16])? as u32,
            gen: get_hex(&b[16..24])? as u32,
            branch: get_hex(&b[25..27])? as u8,
        })
    }
}

/// A transaction of the current shard's table, as a script context holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnHandle {
    pub slot: u32,
    pub gen: u32,
}

/// The branch of the top Via of a response, decoded when it is one of ours.
pub fn response_branch(msg: &Message) -> Option<BranchId> {
    let via = msg.top_via().ok()?;
    BranchId::decode(via.branch()?)
}

/// Which transactions a request can match: INVITE and ACK share one (the ACK of a non-2xx belongs
/// to the INVITE's transaction), CANCEL has its own, every other method its own.
fn method_class(m: Method, raw: &[u8], h: &mut DefaultHasher) {
    match m {
        Method::Invite | Method::Ack => h.write_u8(1),
        Method::Cancel => h.write_u8(2),
        _ => {
            h.write_u8(3);
            h.write(raw);
        }
    }
}

/// The server transaction key of a request (§17.2.3), keyed by `salt` so that peers cannot aim
/// collisions. `as_method` overrides the method (a CANCEL looks up its INVITE with
/// `Some(Method::Invite)`). RFC 3261 branches: branch + sent-by + method class. RFC 2543 requests
/// (no magic cookie): Request-URI, From tag, Call-ID, CSeq number, the whole top Via, method class —
/// the To tag is left out so that the ACK (which carries our tag) finds its INVITE.
pub fn server_key(msg: &Message, as_method: Option<Method>, salt: u64) -> Option<u64> {
    let via = msg.top_via().ok()?;
    let mut h = DefaultHasher::new();
    h.write_u64(salt);
    match via.branch() {
        Some(b) if b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE) => {
            h.write_u8(b'3');
            h.write(b);
            h.write_u8(0);
            h.write(via.host_raw);
            h.write_u16(via.port.unwrap_or(0));
        }
        _ => {
            h.write_u8(b'2');
            h.write(msg.request_uri_bytes().unwrap_or_default());
            h.write_u8(0);
            h.write(msg.from_tag().unwrap_or_default());
            h.write_u8(0);
            h.write(msg.call_id().ok()?);
            h.write_u32(msg.cseq().ok()?.num);
            h.write(via.raw);
        }
    }
    match as_method {
        Some(m) => method_class(m, m.as_str().as_bytes(), &mut h),
        None => method_class(msg.method(), msg.method_bytes(), &mut h),
    }
    Some(h.finish())
}

/// §16.7 step 6: is final response `a` a better choice than `b` to send upstream? 6xx first, then
/// the lowest class (3xx before 4xx before 5xx); within a class, a received response before a
/// timeout we generated ourselves, then the lower code.
pub fn better_final(a: (u16, bool), b: (u16, bool)) -> bool {
    fn rank((code, local): (u16, bool)) -> (u16, bool, u16) {
        let class = if code >= 600 { 0 } else { code / 100 };
        (class, local, code)
    }
    rank(a) < rank(b)
}

/// What a final status becomes when sent upstream: a 503 from downstream is a 500 (§16.7 step 6:
/// the 503 was about the next hop, not us).
pub fn upstream_code(code: u16) -> u16 {
    if code == 503 {
        500
    } else {
        code
    }
}

/// Transaction counters of one shard (written by that shard only, read by management).
#[derive(Debug, Default)]
pub struct TmStats {
    /// Transactions in memory now.
    pub current: AtomicU64,
    /// Of which already answered, waiting for their timers to end them.
    pub waiting: AtomicU64,
    /// Transactions created since start.
    pub total: AtomicU64,
    /// Of which started by ser itself (t_uac).
    pub total_local: AtomicU64,
    /// Final replies ser generated itself (t_reply, 408, 500…).
    pub replied_locally: AtomicU64,
    /// Final replies sent upstream, by class: 2xx … 6xx (index 0 = 2xx).
    pub completed: [AtomicU64; 5],
}

impl TmStats {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn dec(c: &AtomicU64) {
        // Single writer: never below zero.
        let v = c.load(Ordering::Relaxed);
        c.store(v.saturating_sub(1), Ordering::Relaxed);
    }
    /// Counts a final reply sent upstream.
    pub(crate) fn completed(&self, code: u16) {
        if let Some(c) = self.completed.get(usize::from(code / 100).wrapping_sub(2)) {
            Self::inc(c);
        }
    }
}

/// The counters of every shard and the size of each shard's table: what the shards write and
/// management reads (`t_stats`, `t_hash`). Each shard writes only its own entries.
#[derive(Debug)]
pub struct TmCounters {
    stats: Box<[TmStats]>,
    sizes: Box<[AtomicU64]>,
}

impl TmCounters {
    /// Counters for `shards` shards (at least one).
    pub fn new(shards: usize) -> TmCounters {
        let n = shards.max(1);
        TmCounters {
            stats: (0..n).map(|_| TmStats::default()).collect(),
            sizes: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The counters of shard `shard`.
    pub fn stats(&self, shard: usize) -> Option<&TmStats> {
        self.stats.get(shard)
    }

    /// `t_stats`: the counters summed over the shards.
    pub fn totals(&self) -> TmTotals {
        TmTotals::sum(&self.stats)
    }

    /// The counters of one shard (`t_hash`'s per-table totals).
    pub fn shard_totals(&self, shard: usize) -> TmTotals {
        self.stats.get(shard).map_or_else(TmTotals::default, |s| {
            TmTotals::sum(std::slice::from_ref(s))
        })
    }

    /// `t_hash`: transactions in each shard's table.
    pub fn table_sizes(&self) -> Vec<u64> {
        self.sizes
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .collect()
    }

    pub(crate) fn set_size(&self, shard: usize, n: usize) {
        if let Some(s) = self.sizes.get(shard) {
            s.store(n as u64, Ordering::Relaxed);
        }
    }
}

/// [`TmStats`] summed over the shards: what SER's `t_stats` printed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TmTotals {
    pub current: u64,
    pub waiting: u64,
    pub total: u64,
    pub total_local: u64,
    pub replied_locally: u64,
    /// 2xx, 3xx, 4xx, 5xx, 6xx.
    pub completed: [u64; 5],
}

impl TmTotals {
    /// Sums per-shard counters (no lock: each is an atomic read).
    pub fn sum(all: &[TmStats]) -> TmTotals {
        let mut t = TmTotals::default();
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        for s in all {
            t.current += r(&s.current);
            t.waiting += r(&s.waiting);
            t.total += r(&s.total);
            t.total_local += r(&s.total_local);
            t.replied_locally += r(&s.replied_locally);
            for (a, b) in t.completed.iter_mut().zip(&s.completed) {
                *a += r(b);
            }
        }
        t
    }
}

impl std::fmt::Display for TmTotals {
    /// SER 0.8.11's `t_stats` FIFO answer.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.completed;
        writeln!(
            f,
            "Current: {} ({} waiting) Total: {} ({} local) Replied localy: {}",
            self.current, self.waiting, self.total, self.total_local, self.replied_locally
        )?;
        writeln!(
            f,
            "Completion status 6xx: {}, 5xx: {}, 4xx: {}, 3xx: {},2xx: {}",
            c[4], c[3], c[2], c[1], c[0]
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(s: &str) -> Message {
        Message::parse(Bytes::from(s.replace('\n', "\r\n"))).unwrap()
    }

    #[test]
    fn branch_round_trips_and_rejects_foreign_values() {
        let id = BranchId {
            shard: 3,
            slot: 0xabcdef,
            gen: 0xdead_beef,
            branch: 11,
        };
        let b = id.encode();
        assert_eq!(&b[..], b"z9hG4bKt03abcdefdeadbeef.0b");
        assert_eq!(BranchId::decode(&b), Some(id));
        assert_eq!(BranchId::decode(b"z9hG4bKsl0123456789abcdef"), None);
        assert_eq!(BranchId::decode(b"z9hG4bKt03abcdefdeadbeefx0b"), None);
        assert_eq!(BranchId::decode(b"z9hG4bKt03abcdefdeadbeEF.0b"), None);
    }

    const INV: &str = "INVITE sip:b@h SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK77\nFrom: <sip:a@h>;tag=1\nTo: <sip:b@h>\nCall-ID: c1\nCSeq: 1 INVITE\nContent-Length: 0\n\n";

    #[test]
    fn rfc3261_matching_by_branch_sent_by_and_method() {
        let inv = msg(INV);
        let ack = msg(&INV
            .replace("INVITE sip", "ACK sip")
            .replace("1 INVITE", "1 ACK")
            .replace("<sip:b@h>\n", "<sip:b@h>;tag=x\n"));
        let cancel = msg(&INV
            .replace("INVITE sip", "CANCEL sip")
            .replace("1 INVITE", "1 CANCEL"));
        let other_host = msg(&INV.replace("10.0.0.1", "10.0.0.2"));
        let k = server_key(&inv, None, 7).unwrap();
        assert_eq!(
            server_key(&ack, None, 7),
            Some(k),
            "ACK of a non-2xx matches its INVITE"
        );
        assert_ne!(
            server_key(&cancel, None, 7),
            Some(k),
            "CANCEL is its own transaction"
        );
        assert_eq!(
            server_key(&cancel, Some(Method::Invite), 7),
            Some(k),
            "and finds the INVITE"
        );
        assert_ne!(server_key(&other_host, None, 7), Some(k));
        assert_ne!(server_key(&inv, None, 8), Some(k), "salted");
    }

    #[test]
    fn rfc2543_matching_falls_back_to_dialog_fields() {
        let old = INV.replace(";branch=z9hG4bK77", "");
        let inv = msg(&old);
        let ack = msg(&old
            .replace("INVITE sip", "ACK sip")
            .replace("1 INVITE", "1 ACK")
            .replace("<sip:b@h>\n", "<sip:b@h>;tag=ours\n"));
        let next = msg(&old.replace("CSeq: 1", "CSeq: 2"));
        let k = server_key(&inv, None, 1).unwrap();
        assert_eq!(server_key(&ack, None, 1), Some(k));
        assert_ne!(server_key(&next, None, 1), Some(k));
    }

    #[test]
    fn best_final_prefers_6xx_then_lowest_class_then_received() {
        assert!(better_final((603, false), (302, false)));
        assert!(better_final((302, false), (404, false)));
        assert!(better_final((486, false), (408, true)));
        assert!(better_final((404, false), (503, false)));
        assert!(!better_final((500, false), (486, false)));
        assert_eq!(upstream_code(503), 500);
    }

    #[test]
    fn t_stats_prints_as_ser() {
        let s = [TmStats::default(), TmStats::default()];
        TmStats::inc(&s[0].current);
        TmStats::inc(&s[1].total);
        s[1].completed(486);
        s[0].completed(200);
        let t = TmTotals::sum(&s);
        assert_eq!(
            t.to_string(),
            "Current: 1 (0 waiting) Total: 1 (0 local) Replied localy: 0\nCompletion status 6xx: 0, 5xx: 0, 4xx: 1, 3xx: 0,2xx: 1\n"
        );
    }
}
