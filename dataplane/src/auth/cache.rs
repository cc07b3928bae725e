//! Read-mostly caches of database answers shared by all shards: credentials (auth_db), group
//! membership (group), local domains (domain), subscriber existence (uri).
//!
//! Invariants: lookups never block and never allocate (keys are built on the stack, values read
//! in place under a papaya guard); every entry carries its expiry, and an expired entry is a miss
//! (the caller then asks the database through an offloaded job and inserts the answer). Each cache
//! is bounded: every insert queues its key in a lock-free ring of `cap` keys, and when the ring is
//! full the oldest key is evicted (FIFO: with one TTL per cache the oldest insert is also the first
//! to expire). An insert at capacity thus costs one eviction, never a scan of the map.
//!
//! Freshness: entries live for the module's `cache_ttl` (negative answers, e.g. "no such user", at
//! most [`NEGATIVE_TTL`] seconds so that a new subscriber can register at once). The management
//! side invalidates entries as soon as it changes the tables: see
//! [`super::AuthState::credentials_changed`] and friends.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;
use smallvec::SmallVec;

/// Default lifetime of a cached answer, seconds (modules' `cache_ttl`).
pub const DEFAULT_TTL: u64 = 60;

/// Longest lifetime of a negative answer (no such user, not in the group), seconds.
pub const NEGATIVE_TTL: u64 = 5;

/// Entries per cache before the oldest are evicted.
pub const DEFAULT_CAP: usize = 100_000;

/// A cache key: the parts joined with NUL (no part of a SIP identity contains NUL).
pub type Key = SmallVec<[u8; 128]>;

/// Joins `parts` into a [`Key`].
pub fn key(parts: &[&[u8]]) -> Key {
    let mut k = Key::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p);
    }
    k
}

/// The parts of a key built by [`key`].
pub fn key_parts(k: &[u8]) -> impl Iterator<Item = &[u8]> {
    k.split(|&b| b == 0)
}

struct Timed<V> {
    value: V,
    expires: u64,
}

/// A bounded map from a key to a value with an expiry (unix seconds).
pub struct TtlCache<V> {
    map: papaya::HashMap<Box<[u8]>, Timed<V>>,
    /// Keys in insertion order (a key inserted twice is queued twice: evicting its first copy
    /// early costs one miss). Every map entry's key is queued, so the map holds at most `cap`
    /// entries (plus, for a moment, one per shard inserting concurrently).
    order: ArrayQueue<Box<[u8]>>,
    evicted: AtomicU64,
}

/// Evictions tried per insert before giving up (only concurrent inserters can refill the ring).
const EVICT_TRIES: usize = 4;

impl<V> Default for TtlCache<V> {
    fn default() -> Self {
        TtlCache::with_capacity(DEFAULT_CAP)
    }
}

impl<V> TtlCache<V> {
    /// A cache of at most `cap` entries.
    pub fn with_capacity(cap: usize) -> TtlCache<V> {
        TtlCache {
            map: papaya::HashMap::new(),
            order: ArrayQueue::new(cap.max(1)),
            evicted: AtomicU64::new(0),
        }
    }

    /// Runs `f` on the value cached for `key` if it has not expired at `now`.
    pub fn get_with<R>(&self, key: &[u8], now: u64, f: impl FnOnce(&V) -> R) -> Option<R> {
        let m = self.map.pin();
        match m.get(key) {
            Some(t) if t.expires > now => Some(f(&t.value)),
            _ => None,
        }
    }

    /// Caches `value` for `key` until `now + ttl`; `false` when it was not cached (ttl 0, or full).
    pub fn insert(&self, key: &[u8], value: V, now: u64, ttl: u64) -> bool
    where
        V: Send + Sync,
    {
        if ttl == 0 {
            return false;
        }
        let m = self.map.pin();
        let mut queued: Box<[u8]> = Box::from(key);
        for _ in 0..EVICT_TRIES {
            match self.order.push(queued) {
                Ok(()) => {
                    m.insert(
                        Box::from(key),
                        Timed {
                            value,
                            expires: now.saturating_add(ttl),
                        },
                    );
                    return true;
                }
                Err(back) => {
                    queued = back;
                    if let Some(old) = self.order.pop() {
                        m.remove(&old[..]);
                        self.evicted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        false
    }

    /// Entries evicted to make room so far (each insert at capacity evicts one).
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Forgets `key`.
    pub fn invalidate(&self, key: &[u8]) {
        self.map.pin().remove(key);
    }

    /// Forgets every entry whose key satisfies `f`.
    pub fn invalidate_where(&self, f: impl Fn(&[u8]) -> bool) {
        self.map.pin().retain(|k, _| !f(k));
    }

    /// Forgets everything.
    pub fn clear(&self) {
        self.map.pin().clear();
    }

    /// Entries held (expired ones included until pruned).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// What a subscriber row says about a user's password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// The plain-text password (`calculate_ha1 = yes`, `password_column`).
    Plain(Box<[u8]>),
    /// Stored HA1 values: `ha1` = H(user:realm:password), `ha1b` = H(user@domain:realm:password)
    /// (`password_column`, `password_column_2`). A 32-character value is an MD5 HA1, a
    /// 64-character one a SHA-256 HA1.
    Ha1 {
        /// `password_column`.
        ha1: Option<Box<[u8]>>,
        /// `password_column_2`.
        ha1b: Option<Box<[u8]>>,
    },
}

/// Cached credentials: key `table NUL user NUL domain`, value `None` = no such subscriber.
pub type CredentialCache = TtlCache<Option<Secret>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_bound_and_invalidation() {
        let c: TtlCache<u32> = TtlCache::with_capacity(2);
        let k1 = key(&[b"subscriber", b"alice", b"a.com"]);
        assert_eq!(key_parts(&k1).nth(1), Some(&b"alice"[..]));
        assert!(c.insert(&k1, 1, 100, 60));
        assert_eq!(c.get_with(&k1, 159, |v| *v), Some(1));
        assert_eq!(c.get_with(&k1, 160, |v| *v), None);
        assert!(!c.insert(b"x", 1, 100, 0));
        assert!(c.insert(b"k2", 2, 100, 10));
        // full: k3 evicts the oldest insert (k1)
        assert!(c.insert(b"k3", 3, 105, 10));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get_with(&k1, 106, |v| *v), None);
        assert_eq!(c.get_with(b"k2", 106, |v| *v), Some(2));
        assert_eq!(c.get_with(b"k2", 111, |v| *v), None);
        assert!(c.insert(&k1, 1, 120, 60));
        c.invalidate_where(|k| key_parts(k).nth(1) == Some(b"alice"));
        assert_eq!(c.get_with(&k1, 120, |v| *v), None);
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn inserts_at_capacity_evict_one_each() {
        const CAP: usize = 1000;
        let c: TtlCache<usize> = TtlCache::with_capacity(CAP);
        for i in 0..2 * CAP {
            assert!(c.insert(format!("k{i}").as_bytes(), i, 100, 60));
            assert!(c.len() <= CAP);
        }
        assert_eq!(c.len(), CAP);
        // exactly one eviction per insert beyond the bound: no scan, no refusal
        assert_eq!(c.evicted(), CAP as u64);
        // the newest CAP answers are the ones kept
        assert_eq!(c.get_with(b"k0", 101, |v| *v), None);
        assert_eq!(c.get_with(b"k999", 101, |v| *v), None);
        assert_eq!(c.get_with(b"k1000", 101, |v| *v), Some(1000));
        assert_eq!(c.get_with(b"k1999", 101, |v| *v), Some(1999));
    }
}
