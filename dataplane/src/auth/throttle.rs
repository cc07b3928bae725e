//! Failed-authentication throttling per source address.
//!
//! Each failed check (wrong password or unknown user: the two are not told apart) counts against
//! the sender's IP address in a fixed window. Once `limit` failures are counted within `window`
//! seconds, further authorization attempts from that address are refused outright until the
//! window ends (the auth module answers 503 with Retry-After, or 403, per its `fail_reply`).
//!
//! Invariants: lock-free and shared by all shards (papaya + atomics; a race between two shards
//! resetting the same window loses at most a count); bounded: when full, windows that ended are
//! dropped, and if it is still full new addresses are not tracked (fail open: an overload of
//! distinct attackers must not lock out legitimate users).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Failure counts per source address.
pub struct Throttle {
    map: papaya::HashMap<IpAddr, Window>,
    cap: usize,
}

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
            cap,
        }
    }

    /// Counts one failure from `ip` at `now` (unix seconds).
    pub fn failed(&self, ip: IpAddr, now: u64, window: u64) {
        let m = self.map.pin();
        if m.get(&ip).is_none() && m.len() >= self.cap {
            m.retain(|_, w| w.start.load(Ordering::Relaxed).saturating_add(window) > now);
            if m.len() >= self.cap {
                return;
            }
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
            t.failed(a, 100 + i, 60);
        }
        assert_eq!(t.blocked(a, 102, 3, 60), Some(58));
        assert_eq!(t.blocked(a, 102, 0, 60), None);
        assert_eq!(t.blocked(a, 160, 3, 60), None);
        // full: b is not tracked while a's window runs
        t.failed(b, 120, 60);
        assert_eq!(t.blocked(b, 120, 1, 60), None);
        // a's window over: a new one starts
        t.failed(a, 161, 60);
        assert_eq!(t.blocked(a, 161, 2, 60), None);
    }
}
