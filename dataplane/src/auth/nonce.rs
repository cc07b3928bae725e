//! Stateless nonces and nonce-count (replay) tracking.
//!
//! A nonce is 48 lowercase hex characters: `expires` (8, unix seconds), `salt` (8) and the first
//! 16 bytes of HMAC-SHA256(secret, expires ‖ salt ‖ realm) (32). Nothing is stored when a nonce is
//! handed out: any server holding the same `secret` (a restarted one, or the backup of
//! replicate.cfg) recognises it, and an expired one is told apart from a forged one (`stale=true`).
//! The salt (a per-process random start plus a counter) makes two challenges in the same second
//! differ, so that the nonce-count of one client never collides with another's.
//!
//! [`NcTracker`] remembers, per nonce still valid, the highest `nc` accepted; a request whose `nc`
//! is not above it is a replay. It is lock-free and shared by all shards: nonces are grouped by
//! expiry into spans of [`SPAN`] seconds, each span a papaya map, and a span is dropped whole once
//! every nonce in it has expired (checked when the clock enters a new span: a walk over the few
//! spans, never over the nonces). It is bounded and fails closed: when it holds `cap` live nonces
//! a new nonce is refused (the request is not authorized, so the script challenges again with a
//! fresh nonce) rather than accepted untracked, since an untracked nonce-count may be a replay.
//! The tracking is per server: a request replayed to the other server of a pair sharing the
//! secret is not detected there.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Length of a nonce.
pub const NONCE_LEN: usize = 48;

/// The keyed HMAC state of a secret (cloned per use, so the key schedule is computed once).
#[derive(Clone)]
pub struct NonceKey {
    mac: Hmac<Sha256>,
}

/// What a received nonce turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    /// Ours, for this realm, not expired; `id` identifies it for nonce-count tracking.
    Fresh {
        /// Expiry (unix seconds).
        expires: u32,
        /// Identity of the nonce (its MAC).
        id: u128,
    },
    /// Ours but expired: challenge again with `stale=true`.
    Stale,
    /// Not one of ours (forged, another secret, another realm, malformed).
    Invalid,
}

fn hex_u32(b: &[u8]) -> Option<u32> {
    if b.len() != 8 {
        return None;
    }
    let s = std::str::from_utf8(b).ok()?;
    u32::from_str_radix(s, 16).ok()
}

fn write_hex(out: &mut [u8], raw: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (o, b) in out.chunks_exact_mut(2).zip(raw) {
        o[0] = DIGITS[(b >> 4) as usize];
        o[1] = DIGITS[(b & 15) as usize];
    }
}

impl NonceKey {
    /// The key for `secret` (any length).
    pub fn new(secret: &[u8]) -> NonceKey {
        // HMAC accepts keys of any length; the error branch cannot happen but must not panic.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
        NonceKey { mac }
    }

    fn tag(&self, head: &[u8], realm: &[u8]) -> [u8; 16] {
        let mut m = self.mac.clone();
        m.update(head);
        m.update(realm);
        let full = m.finalize().into_bytes();
        let mut t = [0u8; 16];
        t.copy_from_slice(full.get(..16).unwrap_or(&[0; 16]));
        t
    }

    /// A nonce for `realm` that expires at `expires` (unix seconds).
    pub fn make(&self, realm: &[u8], expires: u32, salt: u32) -> [u8; NONCE_LEN] {
        let mut n = [0u8; NONCE_LEN];
        write_hex(&mut n[..8], &expires.to_be_bytes());
        write_hex(&mut n[8..16], &salt.to_be_bytes());
        let tag = self.tag(&n[..16], realm);
        write_hex(&mut n[16..], &tag);
        n
    }

    /// Checks a received nonce for `realm` at time `now` (unix seconds).
    pub fn check(&self, nonce: &[u8], realm: &[u8], now: u64) -> NonceState {
        if nonce.len() != NONCE_LEN {
            return NonceState::Invalid;
        }
        let (head, mac) = nonce.split_at(16);
        let Some(expires) = head.get(..8).and_then(hex_u32) else {
            return NonceState::Invalid;
        };
        if head.get(8..).and_then(hex_u32).is_none() {
            return NonceState::Invalid;
        }
        let tag = self.tag(head, realm);
        let mut want = [0u8; 32];
        write_hex(&mut want, &tag);
        let mut got = [0u8; 32];
        for (d, s) in got.iter_mut().zip(mac) {
            *d = s.to_ascii_lowercase();
        }
        if !bool::from(want.ct_eq(&got)) {
            return NonceState::Invalid;
        }
        if u64::from(expires) <= now {
            return NonceState::Stale;
        }
        NonceState::Fresh {
            expires,
            id: u128::from_be_bytes(tag),
        }
    }
}

/// Width of an expiry span, seconds.
pub const SPAN: u32 = 16;

/// Highest nonce-count seen per live nonce.
pub struct NcTracker {
    /// Span (`expires / SPAN`) → nonce id → highest nc accepted.
    spans: papaya::HashMap<u32, papaya::HashMap<u128, AtomicU32>>,
    /// Nonces held (an upper bound: a lost race may count one twice until its span is dropped).
    len: AtomicUsize,
    /// The clock's span at the last drop of expired spans.
    swept: AtomicU64,
    cap: usize,
}

impl Default for NcTracker {
    fn default() -> Self {
        NcTracker::with_capacity(262_144)
    }
}

impl NcTracker {
    /// A tracker holding at most `cap` nonces.
    pub fn with_capacity(cap: usize) -> NcTracker {
        NcTracker {
            spans: papaya::HashMap::new(),
            len: AtomicUsize::new(0),
            swept: AtomicU64::new(0),
            cap,
        }
    }

    /// Records `nc` for nonce `id` (which expires at `expires`): true when it is above every nc
    /// accepted before; false for a replay, and for a new nonce while the tracker is full of live
    /// ones (fail closed).
    pub fn accept(&self, id: u128, expires: u32, nc: u32, now: u64) -> bool {
        self.drop_expired(now);
        let spans = self.spans.pin();
        let span = expires / SPAN;
        if let Some(m) = spans.get(&span) {
            if let Some(h) = m.pin().get(&id) {
                return h.fetch_max(nc, Ordering::AcqRel) < nc;
            }
        }
        if self.len.fetch_add(1, Ordering::AcqRel) >= self.cap {
            self.len_sub(1);
            return false;
        }
        let m = spans.get_or_insert_with(span, papaya::HashMap::new).pin();
        let h = match m.try_insert(id, AtomicU32::new(0)) {
            Ok(h) => h,
            // another shard inserted it first: it counted it
            Err(e) => {
                self.len_sub(1);
                e.current
            }
        };
        h.fetch_max(nc, Ordering::AcqRel) < nc
    }

    fn len_sub(&self, n: usize) {
        let _ = self
            .len
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| {
                Some(l.saturating_sub(n))
            });
    }

    /// Once per span of the clock: drops the spans whose nonces all expired at least a span ago
    /// (the margin keeps a shard whose `now` lags from inserting into a dropped span).
    fn drop_expired(&self, now: u64) {
        let cur = now / u64::from(SPAN);
        let last = self.swept.load(Ordering::Acquire);
        if last >= cur
            || self
                .swept
                .compare_exchange(last, cur, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        let spans = self.spans.pin();
        // the span map holds one entry per live span (nonce_expire / SPAN of them): small
        let over: smallvec::SmallVec<[u32; 32]> = spans
            .keys()
            .copied()
            .filter(|&s| u64::from(s) + 2 <= cur)
            .collect();
        for s in over {
            if let Some(m) = spans.remove(&s) {
                self.len_sub(m.len());
            }
        }
    }

    /// Nonces tracked.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// True when no nonce is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fresh_stale_forged() {
        let k = NonceKey::new(b"alsdkhglaksdhfkloiwr");
        let n = k.make(b"foo.bar", 1_000_300, 7);
        assert!(n.iter().all(|b| b.is_ascii_hexdigit()));
        assert!(matches!(
            k.check(&n, b"foo.bar", 1_000_000),
            NonceState::Fresh {
                expires: 1_000_300,
                ..
            }
        ));
        // a second server with the same secret (or a restart) accepts it
        let k2 = NonceKey::new(b"alsdkhglaksdhfkloiwr");
        assert!(matches!(
            k2.check(&n, b"foo.bar", 1_000_000),
            NonceState::Fresh { .. }
        ));
        assert_eq!(k.check(&n, b"foo.bar", 1_000_300), NonceState::Stale);
        assert_eq!(k.check(&n, b"other", 1_000_000), NonceState::Invalid);
        assert_eq!(
            NonceKey::new(b"x").check(&n, b"foo.bar", 1_000_000),
            NonceState::Invalid
        );
        // extending the expiry breaks the MAC
        let mut forged = n;
        forged[0..8].copy_from_slice(b"7fffffff");
        assert_eq!(k.check(&forged, b"foo.bar", 1_000_000), NonceState::Invalid);
        assert_eq!(k.check(b"abc", b"foo.bar", 0), NonceState::Invalid);
        assert_eq!(k.check(&[b'z'; 48], b"foo.bar", 0), NonceState::Invalid);
        // salts make nonces of the same second differ
        assert_ne!(k.make(b"foo.bar", 5, 1), k.make(b"foo.bar", 5, 2));
    }

    #[test]
    fn nc_replays() {
        let t = NcTracker::with_capacity(2);
        assert!(t.accept(1, 100, 1, 0));
        assert!(!t.accept(1, 100, 1, 0));
        assert!(t.accept(1, 100, 3, 0));
        assert!(!t.accept(1, 100, 2, 0));
        assert!(t.accept(2, 50, 1, 0));
        // full of live nonces: nonce 3 is refused (fail closed), every time
        assert!(!t.accept(3, 100, 1, 0));
        assert!(!t.accept(3, 100, 1, 0));
        // tracked nonces still work
        assert!(t.accept(2, 50, 2, 10));
        // nonce 2's span (48..64) is dropped once the clock is two spans past it: 3 gets a slot
        assert!(!t.accept(3, 100, 1, 63));
        assert!(t.accept(3, 100, 1, 80));
        assert!(!t.accept(3, 100, 1, 80));
        assert!(!t.accept(1, 100, 3, 80));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn full_tracker_fails_closed_and_recovers() {
        const CAP: usize = 1000;
        let t = NcTracker::with_capacity(CAP);
        // 2×CAP live nonces: the first CAP are tracked, the rest refused, the size stays bounded
        for id in 0..2 * CAP as u128 {
            assert_eq!(t.accept(id, 1_000 + id as u32, 1, 900), id < CAP as u128);
            assert!(t.len() <= CAP);
        }
        assert_eq!(t.len(), CAP);
        // a replay of a tracked nonce-count is refused; an untracked nonce is never accepted
        assert!(!t.accept(5, 1_005, 1, 900));
        assert!(!t.accept(1_500, 2_500, 1, 900));
        // all but the last spans expired: those nonces are dropped whole, new ones tracked
        let now = 2_000 + 2 * u64::from(SPAN);
        assert!(t.accept(1_500, 2_500, 1, now));
        assert!(t.len() < 10);
        assert!(!t.accept(1_500, 2_500, 1, now));
    }
}
