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
//! is not above it is a replay. It is a lock-free map shared by all shards, bounded: expired nonces
//! are pruned when it fills, and when it is full of live nonces new ones are not tracked (replay
//! protection degrades, service does not). The tracking is per server: a request replayed to the
//! other server of a pair sharing the secret is not detected there.

use std::sync::atomic::{AtomicU32, Ordering};

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

/// Highest nonce-count seen per live nonce.
pub struct NcTracker {
    map: papaya::HashMap<u128, NcSlot>,
    cap: usize,
}

struct NcSlot {
    expires: u32,
    highest: AtomicU32,
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
            map: papaya::HashMap::new(),
            cap,
        }
    }

    /// Records `nc` for nonce `id`: true when it is above every nc accepted before (or when the
    /// tracker is full and cannot remember the nonce), false for a replay.
    pub fn accept(&self, id: u128, expires: u32, nc: u32, now: u64) -> bool {
        let m = self.map.pin();
        if let Some(slot) = m.get(&id) {
            return slot.highest.fetch_max(nc, Ordering::AcqRel) < nc;
        }
        if m.len() >= self.cap {
            m.retain(|_, s| u64::from(s.expires) > now);
            if m.len() >= self.cap {
                return true;
            }
        }
        let slot = m.get_or_insert(
            id,
            NcSlot {
                expires,
                highest: AtomicU32::new(0),
            },
        );
        slot.highest.fetch_max(nc, Ordering::AcqRel) < nc
    }

    /// Nonces tracked.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no nonce is tracked.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
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
        // full: nonce 3 is not tracked (accepted)
        assert!(t.accept(3, 100, 1, 0));
        assert!(t.accept(3, 100, 1, 0));
        // after nonce 2 expired it is pruned and 3 gets a slot
        assert!(t.accept(3, 100, 1, 60));
        assert!(!t.accept(3, 100, 1, 60));
        assert_eq!(t.len(), 2);
    }
}
