//! The INVITE client transaction, RFC 3261 §17.1.1 Figure 5, with the Accepted state of RFC 6026
//! (so every 2xx retransmission still reaches the proxy core and is forwarded), and Timer C of
//! §16.8 in Proceeding.
//!
//! ```text
//!                     |INVITE from TU
//!   Timer A fires     |INVITE sent             Timer B fires
//!   Reset A,          V                        or Transport Err.
//!   INVITE sent +-----------+                  inform TU
//!     +---------|           |--------------------------+
//!     |         |  Calling  |                          |
//!     +-------->|           |-----------+              |
//!  300-699      +-----------+ 2xx       |              |
//!  ACK sent        |  |       2xx to TU |              |
//!  resp. to TU     |  |1xx              |              |
//!  +---------------+  |1xx to TU        |              |
//!  |                  V                 |              |
//!  |            +-----------+ 2xx to TU |   Timer C    |
//!  |            |Proceeding |-----------+-> inform TU--+
//!  |            +-----------+           |              |
//!  | 300-699 ACK sent, resp. to TU      V              |
//!  |  +-----------+          +-----------+  2xx to TU  |
//!  +->| Completed |          | Accepted  |<--+         |
//!     +-----------+          +-----------+---+         |
//!  300-699: ACK sent again     | Timer M               |
//!     | Timer D                V                       |
//!     +--------------->  Terminated  <-----------------+
//! ```
//!
//! Sans-IO: the owner sends the INVITE, calls [`ClientInvite::on_response`] for every response of
//! this branch and [`ClientInvite::on_timer`] when [`ClientInvite::deadline`] has passed; the
//! returned values say what to send and what to tell the proxy core. Timer A only runs over UDP.

use std::time::{Duration, Instant};

use super::timer::{earliest, TimerConfig};

/// States of Figure 5 (+ Accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Calling,
    Proceeding,
    Accepted,
    Completed,
    Terminated,
}

/// What a response does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnResponse {
    /// Hand the response to the proxy core (the response context).
    pub to_tu: bool,
    /// Send (or send again) the ACK for this non-2xx final response.
    pub send_ack: bool,
}

/// What a timer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTimer {
    /// Nothing due.
    Nothing,
    /// Timer A: send the INVITE again.
    Retransmit,
    /// Timer B (no reply at all) or Timer C (no final reply after a provisional one): the branch has
    /// failed with a timeout; `provisional` says whether a 1xx was seen (then the core CANCELs it).
    Timeout { provisional: bool },
    /// Timer D or M: the transaction is over.
    Terminated,
}

/// One INVITE client transaction.
#[derive(Debug, Clone)]
pub struct ClientInvite {
    state: State,
    reliable: bool,
    /// Current Timer A interval.
    a_interval: Duration,
    /// Timer A.
    retransmit_at: Option<Instant>,
    /// Timer B, C, D or M, depending on the state.
    end_at: Option<Instant>,
}

impl ClientInvite {
    /// The INVITE was just sent at `now` (over a reliable transport or not).
    pub fn start(now: Instant, reliable: bool, cfg: &TimerConfig) -> ClientInvite {
        ClientInvite {
            state: State::Calling,
            reliable,
            a_interval: cfg.t1,
            retransmit_at: (!reliable).then(|| now + cfg.t1),
            end_at: Some(now + cfg.fr),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// When [`ClientInvite::on_timer`] must be called next.
    pub fn deadline(&self) -> Option<Instant> {
        earliest(self.retransmit_at, self.end_at)
    }

    /// A response with status `code` arrived for this branch.
    pub fn on_response(&mut self, code: u16, now: Instant, cfg: &TimerConfig) -> OnResponse {
        let pass = OnResponse {
            to_tu: true,
            send_ack: false,
        };
        match (self.state, code) {
            (State::Calling | State::Proceeding, 100..=199) => {
                if self.state == State::Calling {
                    // Timer B gives way to Timer C (§16.8): the UAS is alive, give the user time.
                    self.end_at = Some(now + cfg.fr_inv);
                }
                self.state = State::Proceeding;
                self.retransmit_at = None;
                pass
            }
            (State::Calling | State::Proceeding, 200..=299) => {
                self.state = State::Accepted;
                self.retransmit_at = None;
                self.end_at = Some(now + cfg.t1x64());
                pass
            }
            (State::Calling | State::Proceeding, 300..=699) => {
                self.state = State::Completed;
                self.retransmit_at = None;
                self.end_at = Some(now + cfg.timer_d(self.reliable));
                OnResponse {
                    to_tu: true,
                    send_ack: true,
                }
            }
            (State::Accepted, 200..=299) => pass,
            (State::Completed, 300..=699) => OnResponse {
                to_tu: false,
                send_ack: true,
            },
            _ => OnResponse {
                to_tu: false,
                send_ack: false,
            },
        }
    }

    /// The core gave up on this branch (CANCEL answered, Timer C handled elsewhere): stop
    /// retransmitting and wait quietly for the final response (Timer D's length) before ending.
    pub fn abandon(&mut self, now: Instant, cfg: &TimerConfig) {
        if matches!(self.state, State::Calling | State::Proceeding) {
            self.state = State::Completed;
            self.retransmit_at = None;
            self.end_at = Some(now + cfg.timer_d(self.reliable));
        }
    }

    /// Runs the timers due at `now`.
    pub fn on_timer(&mut self, now: Instant, cfg: &TimerConfig) -> OnTimer {
        if self.end_at.is_some_and(|t| t <= now) {
            self.retransmit_at = None;
            return match self.state {
                State::Calling | State::Proceeding => {
                    let provisional = self.state == State::Proceeding;
                    // The branch failed; a late final reply is still ACKed (Completed) for a while.
                    self.state = State::Completed;
                    self.end_at = Some(now + cfg.timer_d(self.reliable));
                    OnTimer::Timeout { provisional }
                }
                _ => {
                    self.state = State::Terminated;
                    self.end_at = None;
                    OnTimer::Terminated
                }
            };
        }
        match self.retransmit_at {
            Some(t) if t <= now && self.state == State::Calling => {
                // Timer A doubles without a cap (§17.1.1.2).
                self.a_interval *= 2;
                self.retransmit_at = Some(now + self.a_interval);
                OnTimer::Retransmit
            }
            _ => OnTimer::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> TimerConfig {
        TimerConfig {
            fr: Duration::from_secs(32),
            ..TimerConfig::default()
        }
    }

    /// Drives the timers from `t0` to `until` in 10 ms virtual steps; returns (offset ms, event).
    fn run(c: &mut ClientInvite, t0: Instant, until: Duration) -> Vec<(u128, OnTimer)> {
        let mut out = Vec::new();
        let mut t = Duration::ZERO;
        while t <= until {
            let now = t0 + t;
            if c.deadline().is_some_and(|d| d <= now) {
                let e = c.on_timer(now, &cfg());
                if e != OnTimer::Nothing {
                    out.push((t.as_millis(), e));
                }
            }
            t += Duration::from_millis(10);
        }
        out
    }

    #[test]
    fn lost_invite_retransmits_on_timer_a_then_times_out_on_timer_b() {
        let t0 = Instant::now();
        let mut c = ClientInvite::start(t0, false, &cfg());
        let ev = run(&mut c, t0, Duration::from_secs(40));
        let retr: Vec<u128> = ev
            .iter()
            .filter(|e| e.1 == OnTimer::Retransmit)
            .map(|e| e.0)
            .collect();
        // 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s: six retransmissions before B at 32 s (RFC 17.1.1.2).
        assert_eq!(retr, vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert!(ev.contains(&(32000, OnTimer::Timeout { provisional: false })));
        // After the timeout a late final reply is still ACKed until Timer D ends the transaction.
        assert_eq!(c.state(), State::Completed);
        assert_eq!(
            c.on_timer(t0 + Duration::from_secs(64), &cfg()),
            OnTimer::Terminated
        );
    }

    #[test]
    fn reliable_transport_never_retransmits() {
        let t0 = Instant::now();
        let mut c = ClientInvite::start(t0, true, &cfg());
        let ev = run(&mut c, t0, Duration::from_secs(33));
        // Timer D is zero over TCP: the transaction ends right after the timeout.
        assert_eq!(
            ev,
            vec![
                (32000, OnTimer::Timeout { provisional: false }),
                (32010, OnTimer::Terminated)
            ]
        );
    }

    #[test]
    fn provisional_stops_timer_a_and_arms_timer_c() {
        let t0 = Instant::now();
        let cfg = TimerConfig {
            fr_inv: Duration::from_secs(60),
            ..cfg()
        };
        let mut c = ClientInvite::start(t0, false, &cfg);
        let r = c.on_response(180, t0 + Duration::from_millis(200), &cfg);
        assert!(r.to_tu && !r.send_ack);
        assert_eq!(c.deadline(), Some(t0 + Duration::from_millis(60_200)));
        assert_eq!(
            c.on_timer(t0 + Duration::from_secs(61), &cfg),
            OnTimer::Timeout { provisional: true }
        );
    }

    #[test]
    fn non_2xx_is_acked_and_its_retransmissions_acked_again_but_not_passed_up() {
        let t0 = Instant::now();
        let mut c = ClientInvite::start(t0, false, &cfg());
        let r = c.on_response(486, t0, &cfg());
        assert_eq!(
            r,
            OnResponse {
                to_tu: true,
                send_ack: true
            }
        );
        let r = c.on_response(486, t0 + Duration::from_millis(500), &cfg());
        assert_eq!(
            r,
            OnResponse {
                to_tu: false,
                send_ack: true
            }
        );
        // Timer D: 32 s over UDP.
        assert_eq!(c.deadline(), Some(t0 + Duration::from_secs(32)));
        assert_eq!(
            c.on_timer(t0 + Duration::from_secs(32), &cfg()),
            OnTimer::Terminated
        );
    }

    #[test]
    fn every_2xx_goes_to_the_core_until_timer_m() {
        let t0 = Instant::now();
        let mut c = ClientInvite::start(t0, false, &cfg());
        assert!(c.on_response(200, t0, &cfg()).to_tu);
        assert!(
            c.on_response(200, t0 + Duration::from_millis(500), &cfg())
                .to_tu
        );
        assert!(
            !c.on_response(180, t0 + Duration::from_millis(600), &cfg())
                .to_tu
        );
        assert_eq!(c.state(), State::Accepted);
        assert_eq!(
            c.on_timer(t0 + Duration::from_secs(32), &cfg()),
            OnTimer::Terminated
        );
    }
}
