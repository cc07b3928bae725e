//! The non-INVITE client transaction, RFC 3261 §17.1.2 Figure 6.
//!
//! ```text
//!                        |Request from TU
//!                        |send request
//!    Timer E             V
//!    send request  +-----------+
//!        +---------|           |-------------------+
//!        |         |  Trying   |  Timer F          |
//!        +-------->|           |  or Transport Err.|
//!                  +-----------+  inform TU        |
//!     200-699         |  |                         |
//!     resp. to TU     |  |1xx                      |
//!     +---------------+  |resp. to TU              |
//!     |                  |                         |
//!     |   Timer E        V       Timer F           |
//!     |   send req +-----------+ or Transport Err. |
//!     |  +---------|           | inform TU         |
//!     |  |         |Proceeding |------------------>|
//!     |  +-------->|           |-----+             |
//!     |            +-----------+     |1xx          |
//!     |              |      ^        |resp to TU   |
//!     | 200-699      |      +--------+             |
//!     | resp. to TU  |                             |
//!     |              V                             |
//!     |            +-----------+                   |
//!     |            |           |                   |
//!     |            | Completed |                   |
//!     |            |           |                   |
//!     |            +-----------+                   |
//!     |              ^   |                         |
//!     |              |   | Timer K                 |
//!     +--------------+   | -                       |
//!                        |                         |
//!                        V                         |
//!  NOTE:           +-----------+                   |
//!                  |           |                   |
//!  transitions     | Terminated|<------------------+
//!  labeled with    |           |
//!  the event       +-----------+
//! ```
//!
//! Sans-IO, as [`super::client_invite`]. Timer E runs over UDP only; Timer F is `fr_timer`.

use std::time::{Duration, Instant};

use super::timer::{earliest, TimerConfig};

/// States of Figure 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// What a timer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTimer {
    Nothing,
    /// Timer E: send the request again.
    Retransmit,
    /// Timer F: the request failed (the core answers 408).
    Timeout,
    /// Timer K: over.
    Terminated,
}

/// One non-INVITE client transaction.
#[derive(Debug, Clone)]
pub struct ClientNonInvite {
    state: State,
    reliable: bool,
    e_interval: Duration,
    retransmit_at: Option<Instant>,
    /// Timer F, then K.
    end_at: Option<Instant>,
}

impl ClientNonInvite {
    /// The request was just sent at `now`.
    pub fn start(now: Instant, reliable: bool, cfg: &TimerConfig) -> ClientNonInvite {
        ClientNonInvite {
            state: State::Trying,
            reliable,
            e_interval: cfg.t1,
            retransmit_at: (!reliable).then(|| now + cfg.t1),
            end_at: Some(now + cfg.fr),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn deadline(&self) -> Option<Instant> {
        earliest(self.retransmit_at, self.end_at)
    }

    /// A response with status `code` arrived; `true` = hand it to the core.
    pub fn on_response(&mut self, code: u16, now: Instant, cfg: &TimerConfig) -> bool {
        match (self.state, code) {
            (State::Trying | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                true
            }
            (State::Trying | State::Proceeding, 200..=699) => {
                self.state = State::Completed;
                self.retransmit_at = None;
                self.end_at = Some(now + cfg.t4_unless_reliable(self.reliable));
                true
            }
            _ => false,
        }
    }

    pub fn on_timer(&mut self, now: Instant, cfg: &TimerConfig) -> OnTimer {
        if self.end_at.is_some_and(|t| t <= now) {
            self.retransmit_at = None;
            self.end_at = None;
            let was = self.state;
            self.state = State::Terminated;
            return if matches!(was, State::Trying | State::Proceeding) {
                OnTimer::Timeout
            } else {
                OnTimer::Terminated
            };
        }
        match self.retransmit_at {
            Some(t) if t <= now => {
                // Trying: doubling up to T2; Proceeding: every T2 (§17.1.2.2).
                self.e_interval = if self.state == State::Trying {
                    (self.e_interval * 2).min(cfg.t2)
                } else {
                    cfg.t2
                };
                self.retransmit_at = Some(now + self.e_interval);
                OnTimer::Retransmit
            }
            _ => OnTimer::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(c: &mut ClientNonInvite, t0: Instant, until_ms: u64) -> Vec<(u64, OnTimer)> {
        let cfg = TimerConfig {
            fr: Duration::from_secs(32),
            ..TimerConfig::default()
        };
        let mut out = Vec::new();
        for ms in (0..=until_ms).step_by(10) {
            let now = t0 + Duration::from_millis(ms);
            if c.deadline().is_some_and(|d| d <= now) {
                let e = c.on_timer(now, &cfg);
                if e != OnTimer::Nothing {
                    out.push((ms, e));
                }
            }
        }
        out
    }

    #[test]
    fn timer_e_doubles_to_t2_then_timer_f() {
        let t0 = Instant::now();
        let cfg = TimerConfig {
            fr: Duration::from_secs(32),
            ..TimerConfig::default()
        };
        let mut c = ClientNonInvite::start(t0, false, &cfg);
        let ev = events(&mut c, t0, 33_000);
        let retr: Vec<u64> = ev
            .iter()
            .filter(|e| e.1 == OnTimer::Retransmit)
            .map(|e| e.0)
            .collect();
        // 0.5, 1.5, 3.5, 7.5, then every 4 s (T2).
        assert_eq!(
            retr,
            vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert_eq!(ev.last(), Some(&(32_000, OnTimer::Timeout)));
    }

    #[test]
    fn provisional_makes_retransmissions_every_t2() {
        let t0 = Instant::now();
        let cfg = TimerConfig::default();
        let mut c = ClientNonInvite::start(t0, false, &cfg);
        assert!(c.on_response(100, t0 + Duration::from_millis(100), &cfg));
        let ev = events(&mut c, t0, 9_000);
        let retr: Vec<u64> = ev.iter().map(|e| e.0).collect();
        assert_eq!(retr, vec![500, 4500, 8500]);
    }

    #[test]
    fn final_response_then_timer_k_absorbs_retransmitted_finals() {
        let t0 = Instant::now();
        let cfg = TimerConfig::default();
        let mut c = ClientNonInvite::start(t0, false, &cfg);
        assert!(c.on_response(200, t0, &cfg));
        assert!(!c.on_response(200, t0 + Duration::from_secs(1), &cfg));
        assert_eq!(c.deadline(), Some(t0 + cfg.t4));
        assert_eq!(c.on_timer(t0 + cfg.t4, &cfg), OnTimer::Terminated);
        // Over TCP, Timer K is zero.
        let mut c = ClientNonInvite::start(t0, true, &cfg);
        assert!(c.on_response(404, t0, &cfg));
        assert_eq!(c.deadline(), Some(t0));
    }
}
