//! The client's timers: most are "this long from now" with a handful of distinct durations (T1,
//! its doublings, T2, the hold time, 64*T1), so each duration gets a FIFO queue — entries pushed
//! with a monotonic `now` are already sorted — and only odd deadlines go to a binary heap. Pushing
//! and popping are O(1) for the common case, with no sifting through tens of thousands of entries.
//!
//! Entries are never removed early: each carries the call's timer generation, and the caller
//! ignores an entry whose generation is stale.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

/// (when, call number, generation)
pub type Entry = (Instant, u64, u32);

const MAX_QUEUES: usize = 24;

#[derive(Default)]
pub struct Timers {
    queues: Vec<(Duration, VecDeque<Entry>)>,
    heap: BinaryHeap<Reverse<Entry>>,
}

impl Timers {
    /// Fires `d` after `now`.
    pub fn after(&mut self, now: Instant, d: Duration, seq: u64, gen: u32) {
        let e = (now + d, seq, gen);
        if let Some((_, q)) = self.queues.iter_mut().find(|(qd, _)| *qd == d) {
            q.push_back(e);
        } else if self.queues.len() < MAX_QUEUES {
            self.queues.push((d, VecDeque::from([e])));
        } else {
            self.heap.push(Reverse(e));
        }
    }

    /// Fires at `at`.
    pub fn at(&mut self, at: Instant, seq: u64, gen: u32) {
        self.heap.push(Reverse((at, seq, gen)));
    }

    /// The earliest pending deadline.
    pub fn next(&self) -> Option<Instant> {
        let q = self
            .queues
            .iter()
            .filter_map(|(_, q)| q.front().map(|e| e.0))
            .min();
        let h = self.heap.peek().map(|Reverse(e)| e.0);
        match (q, h) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Removes and returns one entry due at `now` (any order among due entries).
    pub fn pop_due(&mut self, now: Instant) -> Option<(u64, u32)> {
        for (_, q) in &mut self.queues {
            if q.front().is_some_and(|e| e.0 <= now) {
                return q.pop_front().map(|e| (e.1, e.2));
            }
        }
        if self.heap.peek().is_some_and(|Reverse(e)| e.0 <= now) {
            return self.heap.pop().map(|Reverse(e)| (e.1, e.2));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_time_order_per_queue_and_heap() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut t = Timers::default();
        t.after(t0, ms(500), 1, 0);
        t.after(t0 + ms(1), ms(500), 2, 0);
        t.after(t0, ms(100), 3, 0);
        t.at(t0 + ms(50), 4, 7);
        assert_eq!(t.next(), Some(t0 + ms(50)));
        assert_eq!(t.pop_due(t0 + ms(10)), None);
        assert_eq!(t.pop_due(t0 + ms(60)), Some((4, 7)));
        assert_eq!(t.pop_due(t0 + ms(200)), Some((3, 0)));
        assert_eq!(t.pop_due(t0 + ms(500)), Some((1, 0)));
        assert_eq!(t.pop_due(t0 + ms(500)), None);
        assert_eq!(t.pop_due(t0 + ms(501)), Some((2, 0)));
        assert_eq!(t.next(), None);
    }
}
