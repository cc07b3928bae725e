//! Failed-authentication throttling per source address.
//!
//! Each failed check (wrong password or unknown user: the two are not told apart) counts against
//! the sender's IP address in a fixed window. Once `limit` failures are counted within `window`
//! seconds, further authorization attempts from that address are refused outright until the
//! window ends (the auth module answers 503 with Retry-After, or 403, per its `fail_reply`).
//!
//! Invariants: lock-free and shared by all shards (papaya + atomics + a lock-free ring; a race
//! between two shards resetting the same window loses at most a count); bounded: addresses are
//! queued in a ring of `cap` in the order they were first seen, and when it is full the oldest is
//! evicted (O(1) per new address, no scan). An address that is blocked right now (`limit` failures
//! in a running window) is not evicted but requeued (a second chance), so a flood of single
//! failures from spoofed sources can push out only addresses that are not blocked; when the
//! oldest few are all blocked, the new address is not tracked (fail open for it: an overload of
//! distinct attackers must not lock out legitimate users, nor unblock the blocked ones).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;

/// Failure counts per source address.
pub struct Throttle {
    map: papaya::HashMap<IpAddr, Window>,
    /// Addresses in the order first seen (at most once each but for races).
    order: ArrayQueue<IpAddr>,
    evicted: AtomicU64,
}

/// Ring entries examined per new address before it is left untracked.
const EVICT_TRIES: usize = 4;

struct Window {
    start: AtomicU64,
    count: AtomicU32,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::with_capacity(65_536)
    }
}

impl Throttle {
    /// A throttle tracking at most `cap` addresses.
    pub fn with_capacity(cap: usize) -> Throttle {
        Throttle {
            map: papaya::HashMap::new(),
            order: ArrayQueue::new(cap.max(1)),
            evicted: AtomicU64::new(0),
        }
    }

    /// Counts one failure from `ip` at `now` (unix seconds); `limit` and `window` are the
    /// caller's settings (they say which tracked addresses are blocked and must be kept).
    pub fn failed(&self, ip: IpAddr, now: u64, limit: u32, window: u64) {
        let m = self.map.pin();
        if m.get(&ip).is_none() && !self.make_room(ip, now, limit, window) {
            return;
        }
        let w = m.get_or_insert_with(ip, || Window {
            start: AtomicU64::new(now),
            count: AtomicU32::new(0),
        });
        let start = w.start.load(Ordering::Relaxed);
        if start.saturating_add(window) <= now {
            w.start.store(now, Ordering::Relaxed);
            w.count.store(1, Ordering::Relaxed);
        } else {
            w.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues new address `ip`, evicting the oldest address that is not blocked if the ring is
    /// full; false when the oldest [`EVICT_TRIES`] are all blocked (`ip` is then not tracked).
    fn make_room(&self, ip: IpAddr, now: u64, limit: u32, window: u64) -> bool {
        let m = self.map.pin();
        for _ in 0..EVICT_TRIES {
            if self.order.push(ip).is_ok() {
                return true;
            }
            let Some(old) = self.order.pop() else {
                continue;
            };
            let blocked = limit > 0
                && m.get(&old).is_some_and(|w| {
                    w.start.load(Ordering::Relaxed).saturating_add(window) > now
                        && w.count.load(Ordering::Relaxed) >= limit
                });
            // A blocked address goes to the back; if another shard took its place meanwhile it
            // is forgotten rather than left in the map without a place in the ring.
            if !blocked || self.order.push(old).is_err() {
                m.remove(&old);
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.order.push(ip).is_ok()
    }

    /// Addresses evicted to make room so far.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Addresses tracked.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// `Some(seconds until the window ends)` when `ip` has reached `limit` failures in the current
    /// window; `None` when it may try (always `None` for `limit` 0).
    pub fn blocked(&self, ip: IpAddr, now: u64, limit: u32, window: u64) -> Option<u64> {
        if limit == 0 {
            return None;
        }
        let m = self.map.pin();
        let w = m.get(&ip)?;
        let end = w.start.load(Ordering::Relaxed).saturating_add(window);
        (end > now && w.count.load(Ordering::Relaxed) >= limit).then(|| end - now)
    }

    /// Forgets every address (management: "unblock all").
    pub fn clear(&self) {
        self.map.pin().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_limit_and_bound() {
        let t = Throttle::with_capacity(1);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for i in 0..3 {
            assert_eq!(t.blocked(a, 100 + i, 3, 60), None);
            t.failed(a, 100 + i, 3, 60);
        }
        assert_eq!(t.blocked(a, 102, 3, 60), Some(58));
        assert_eq!(t.blocked(a, 102, 0, 60), None);
        assert_eq!(t.blocked(a, 160, 3, 60), None);
        // full: b is not tracked while a is blocked (a is kept)
        t.failed(b, 120, 3, 60);
        assert_eq!(t.blocked(b, 120, 1, 60), None);
        assert_eq!(t.blocked(a, 120, 3, 60), Some(40));
        // a's window over: a new one starts
        t.failed(a, 161, 3, 60);
        assert_eq!(t.blocked(a, 161, 2, 60), None);
        // a is no longer blocked: b evicts it
        t.failed(b, 162, 3, 60);
        assert_eq!(t.blocked(b, 162, 1, 60), Some(60));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn spoofed_flood_is_bounded_and_keeps_the_blocked() {
        const CAP: usize = 1000;
        let t = Throttle::with_capacity(CAP);
        let attacker: IpAddr = [192, 0, 2, 1].into();
        for _ in 0..5 {
            t.failed(attacker, 100, 5, 60);
        }
        assert!(t.blocked(attacker, 100, 5, 60).is_some());
        // one failure each from 2×CAP spoofed sources
        for i in 0..2 * CAP as u32 {
            t.failed(IpAddr::from((10u32 << 24 | i).to_be_bytes()), 101, 5, 60);
            assert!(t.len() <= CAP);
        }
        assert_eq!(t.len(), CAP);
        // each address beyond the bound (2×CAP + 1 seen) evicted one unblocked address (no scan)
        assert_eq!(t.evicted(), CAP as u64 + 1);
        assert_eq!(t.blocked(attacker, 101, 5, 60), Some(59));
    }
}
