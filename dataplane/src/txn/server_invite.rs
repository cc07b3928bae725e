//! The INVITE server transaction, RFC 3261 §17.2.1 Figure 7, with the Accepted state of RFC 6026
//! (a 2xx ends in Accepted for 64·T1: retransmitted INVITEs are absorbed, the 2xx retransmissions
//! of the UAS keep flowing through the proxy core).
//!
//! ```text
//!                                |INVITE
//!                                |pass INV to TU
//!             INVITE             V send 100 if TU won't in 200ms
//!             send response+-----------+
//!                 +--------|           |--------+ 101-199 from TU
//!                 |        | Proceeding|        | send response
//!                 +------->|           |<-------+
//!                          |           |          Transport Err.
//!                          |           |          Inform TU
//!                          |           |--------------->+
//!                          +-----------+                |
//!             300-699 from TU |     |2xx from TU        |
//!             send response   |     |send response      |
//!                             |     +------------------>+ (Accepted, RFC 6026)
//!                             |                         |
//!             INVITE          V          Timer G fires  |
//!             send response+-----------+ send response  |
//!                 +--------|           |--------+       |
//!                 |        | Completed |        |       |
//!                 +------->|           |<-------+       |
//!                          +-----------+                |
//!                             |     |                   |
//!                         ACK |     |                   |
//!                         -   |     +------------------>+
//!                             |        Timer H fires    |
//!                             V        or Transport Err.|
//!                          +-----------+  Inform TU     |
//!                          |           |                |
//!                          | Confirmed |                |
//!                          |           |                |
//!                          +-----------+                |
//!                                |                      |
//!                                |Timer I fires         |
//!                                |-                     |
//!                                |                      |
//!                                V                      |
//!                          +-----------+                |
//!                          |           |                |
//!                          | Terminated|<---------------+
//!                          |           |
//!                          +-----------+
//! ```
//!
//! Sans-IO: the owner keeps the last response's bytes; [`ServerInvite::on_retransmission`] says
//! whether to send them again, [`ServerInvite::on_timer`] when Timer G asks for it.

use std::time::{Duration, Instant};

use super::timer::{earliest, TimerConfig};

/// States of Figure 7 (+ Accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Proceeding,
    Accepted,
    Completed,
    Confirmed,
    Terminated,
}

/// What a timer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTimer {
    Nothing,
    /// Timer G: send the final response again.
    Retransmit,
    /// Timer H: no ACK came (logged; the transaction ends).
    NoAck,
    /// Timer I or L: over.
    Terminated,
}

/// One INVITE server transaction.
#[derive(Debug, Clone)]
pub struct ServerInvite {
    state: State,
    reliable: bool,
    g_interval: Duration,
    retransmit_at: Option<Instant>,
    /// Timer H, I or L.
    end_at: Option<Instant>,
}

impl ServerInvite {
    /// An INVITE arrived (the owner sends 100 Trying at once: a proxy always does, §16.2).
    pub fn new(reliable: bool) -> ServerInvite {
        ServerInvite {
            state: State::Proceeding,
            reliable,
            g_interval: Duration::ZERO,
            retransmit_at: None,
            end_at: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn deadline(&self) -> Option<Instant> {
        earliest(self.retransmit_at, self.end_at)
    }

    /// True once a final response was sent.
    pub fn is_final(&self) -> bool {
        self.state != State::Proceeding
    }

    /// The INVITE came again: `true` = send the last response again (Proceeding, Completed); in
    /// Accepted and Confirmed it is absorbed.
    pub fn on_retransmission(&self) -> bool {
        matches!(self.state, State::Proceeding | State::Completed)
    }

    /// The core sends a response with status `code`. `false` when the state does not allow it (a
    /// final response was already sent), except 2xx in Accepted (retransmissions from the UAS).
    pub fn on_send(&mut self, code: u16, now: Instant, cfg: &TimerConfig) -> bool {
        match (self.state, code) {
            (State::Proceeding, 100..=199) => true,
            (State::Proceeding, 200..=299) => {
                self.state = State::Accepted;
                self.end_at = Some(now + cfg.t1x64());
                true
            }
            (State::Accepted, 200..=299) => true,
            (State::Proceeding, 300..=699) => {
                self.state = State::Completed;
                self.g_interval = cfg.t1;
                self.retransmit_at = (!self.reliable).then(|| now + cfg.t1);
                self.end_at = Some(now + cfg.t1x64());
                true
            }
            _ => false,
        }
    }

    /// An ACK matched this transaction: `true` = it was for our non-2xx response (absorb it).
    pub fn on_ack(&mut self, now: Instant, cfg: &TimerConfig) -> bool {
        match self.state {
            State::Completed => {
                self.state = State::Confirmed;
                self.retransmit_at = None;
                self.end_at = Some(now + cfg.t4_unless_reliable(self.reliable));
                true
            }
            State::Confirmed => true,
            _ => false,
        }
    }

    pub fn on_timer(&mut self, now: Instant, cfg: &TimerConfig) -> OnTimer {
        if self.end_at.is_some_and(|t| t <= now) {
            let was = self.state;
            self.state = State::Terminated;
            self.retransmit_at = None;
            self.end_at = None;
            return if was == State::Completed {
                OnTimer::NoAck
            } else {
                OnTimer::Terminated
            };
        }
        match self.retransmit_at {
            Some(t) if t <= now && self.state == State::Completed => {
                self.g_interval = (self.g_interval * 2).min(cfg.t2);
                self.retransmit_at = Some(now + self.g_interval);
                OnTimer::Retransmit
            }
            _ => OnTimer::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_final_retransmits_on_timer_g_until_ack() {
        let t0 = Instant::now();
        let cfg = TimerConfig::default();
        let mut s = ServerInvite::new(false);
        assert!(s.on_retransmission());
        assert!(s.on_send(486, t0, &cfg));
        assert!(!s.on_send(200, t0, &cfg), "no second final response");
        let mut retr = Vec::new();
        for ms in (0..=8_000u64).step_by(10) {
            let now = t0 + Duration::from_millis(ms);
            if s.deadline().is_some_and(|d| d <= now)
                && s.on_timer(now, &cfg) == OnTimer::Retransmit
            {
                retr.push(ms);
            }
        }
        // G: T1, 2T1, 4T1, then T2 (4 s).
        assert_eq!(retr, vec![500, 1500, 3500, 7500]);
        assert!(s.on_ack(t0 + Duration::from_secs(8), &cfg));
        assert_eq!(s.state(), State::Confirmed);
        assert!(!s.on_retransmission(), "Confirmed absorbs the INVITE");
        assert_eq!(
            s.on_timer(t0 + Duration::from_secs(13), &cfg),
            OnTimer::Terminated
        );
    }

    #[test]
    fn timer_h_ends_a_transaction_whose_ack_never_comes() {
        let t0 = Instant::now();
        let cfg = TimerConfig::default();
        let mut s = ServerInvite::new(true);
        assert!(s.on_send(404, t0, &cfg));
        assert_eq!(s.deadline(), Some(t0 + cfg.t1x64()), "no Timer G over TCP");
        assert_eq!(s.on_timer(t0 + cfg.t1x64(), &cfg), OnTimer::NoAck);
    }

    #[test]
    fn two_xx_goes_to_accepted_and_absorbs_retransmissions() {
        let t0 = Instant::now();
        let cfg = TimerConfig::default();
        let mut s = ServerInvite::new(false);
        assert!(s.on_send(180, t0, &cfg));
        assert!(s.on_send(200, t0, &cfg));
        assert!(s.on_send(200, t0, &cfg), "2xx retransmissions still pass");
        assert!(!s.on_retransmission());
        assert!(!s.on_ack(t0, &cfg), "an ACK for a 2xx is not ours");
        assert_eq!(s.on_timer(t0 + cfg.t1x64(), &cfg), OnTimer::Terminated);
    }
}
