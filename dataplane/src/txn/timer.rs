//! Timer values of the transaction layer (RFC 3261 §17, Table 4) and how SER's `tm` parameters map
//! onto them.
//!
//! | RFC timer | here | default |
//! |---|---|---|
//! | T1 | `t1` (`retr_timer1p1`, seconds, when set) | 500 ms |
//! | T2 | `t2` (`retr_timer2`, seconds, when set) | 4 s |
//! | T4 | `t4` (`wt_timer`, seconds: SER's wait timer, 5 s like T4) | 5 s |
//! | A, E, G | start at T1, double (E, G capped at T2) | UDP only |
//! | B, F | `fr` (`fr_timer`; RFC: 64·T1 = 32 s, SER: 30 s) | 30 s |
//! | C (§16.8) | `fr_inv` (`fr_inv_timer`) after a provisional reply | 120 s |
//! | D | 32 s over UDP, 0 over TCP | |
//! | H, J, L, M | 64·T1 | |
//! | I, K | T4 over UDP, 0 over TCP | |

use std::time::Duration;

/// The timer values one transaction table uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate (T1).
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE responses (T2).
    pub t2: Duration,
    /// Longest time a message stays in the network (T4).
    pub t4: Duration,
    /// Final-response timer: Timer B (INVITE without any reply) and Timer F (non-INVITE).
    pub fr: Duration,
    /// Timer C: an INVITE branch that had a provisional reply gets this long for a final one.
    pub fr_inv: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            fr: Duration::from_secs(30),
            fr_inv: Duration::from_secs(120),
        }
    }
}

impl TimerConfig {
    /// 64·T1: Timers H, J, L, M.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }
    /// Timer D: 32 s over UDP (at least 64·T1 when T1 was raised), 0 over a reliable transport.
    pub fn timer_d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            Duration::from_secs(32).max(self.t1x64())
        }
    }
    /// Timers I and K: T4 over UDP, 0 over a reliable transport.
    pub fn t4_unless_reliable(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t4
        }
    }
}

/// The earlier of two optional deadlines.
pub(crate) fn earliest<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}
