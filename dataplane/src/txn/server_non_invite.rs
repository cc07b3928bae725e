//! The non-INVITE server transaction, RFC 3261 §17.2.2 Figure 8.
//!
//! ```text
//!                         |Request received
//!                         |pass to TU
//!                         V
//!                   +-----------+
//!                   |           |
//!                   | Trying    |-------------+
//!                   |           |             |
//!                   +-----------+             |200-699 from TU
//!                         |                   |send response
//!                         |1xx from TU        |
//!                         |send response      |
//!                         |                   |
//!      Request            V      1xx from TU  |
//!      send response+-----------+send response|
//!          +--------|           |--------+    |
//!          |        | Proceeding|        |    |
//!          +------->|           |<-------+    |
//!   +<--------------|           |             |
//!   |Trnsprt Err    +-----------+             |
//!   |Inform TU            |                   |
//!   |                     |                   |
//!   |                     |200-699 from TU    |
//!   |                     |send response      |
//!   |  Request            V                   |
//!   |  send response+-----------+             |
//!   |      +--------|           |             |
//!   |      |        | Completed |<------------+
//!   |      +------->|           |
//!   +<--------------|           |
//!   |Trnsprt Err    +-----------+
//!   |Inform TU            |
//!   |                     |Timer J fires
//!   |                     |-
//!   |                     |
//!   |                     V
//!   |               +-----------+
//!   |               |           |
//!   +-------------->| Terminated|
//!                   |           |
//!                   +-----------+
//! ```

use std::time::Instant;

use super::timer::TimerConfig;

/// States of Figure 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// One non-INVITE server transaction.
#[derive(Debug, Clone)]
pub struct ServerNonInvite {
    state: State,
    reliable: bool,
    /// Timer J.
    end_at: Option<Instant>,
}

impl ServerNonInvite {
    pub fn new(reliable: bool) -> ServerNonInvite {
        ServerNonInvite {
            state: State::Trying,
            reliable,
            end_at: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.end_at
    }

    pub fn is_final(&self) -> bool {
        matches!(self.state, State::Completed | State::Terminated)
    }

    /// The request came again: `true` = send the last response again (none yet in Trying).
    pub fn on_retransmission(&self) -> bool {
        matches!(self.state, State::Proceeding | State::Completed)
    }

    /// The core sends a response; `false` when a final one was already sent.
    pub fn on_send(&mut self, code: u16, now: Instant, cfg: &TimerConfig) -> bool {
        match (self.state, code) {
            (State::Trying | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                true
            }
            (State::Trying | State::Proceeding, 200..=699) => {
                self.state = State::Completed;
                self.end_at = Some(
                    now + if self.reliable {
                        std::time::Duration::ZERO
                    } else {
                        cfg.t1x64()
                    },
                );
                true
            }
            _ => false,
        }
    }

    /// Timer J: `true` when the transaction has just ended.
    pub fn on_timer(&mut self, now: Instant) -> bool {
        if self.end_at.is_some_and(|t| t <= now) {
            self.state = State::Terminated;
            self.end_at = None;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absorbs_in_trying_resends_later_and_ends_on_timer_j() {
        let t0 = Instant::now();
        let cfg = TimerConfig::default();
        let mut s = ServerNonInvite::new(false);
        assert!(!s.on_retransmission(), "nothing to resend in Trying");
        assert!(s.on_send(200, t0, &cfg));
        assert!(s.on_retransmission());
        assert!(!s.on_send(500, t0, &cfg));
        assert!(!s.on_timer(t0 + cfg.t1x64() - std::time::Duration::from_millis(1)));
        assert!(s.on_timer(t0 + cfg.t1x64()));
        assert_eq!(s.state(), State::Terminated);
    }
}
