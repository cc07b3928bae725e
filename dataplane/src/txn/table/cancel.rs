//! CANCEL: the one that comes from upstream for a pending INVITE (§16.10), and the CANCELs ser
//! sends itself on the pending branches once the transaction is answered (§16.7 step 10, a 6xx,
//! Timer C of §16.8). A branch that has had no provisional reply yet gets its CANCEL when one
//! arrives (§9.1: a CANCEL before a provisional reply could overtake the INVITE).

use std::time::Instant;

use bytes::Bytes;

use super::Table;
use crate::transport::Proto;
use crate::txn::build;
use crate::txn::client_non_invite::ClientNonInvite;
use crate::txn::TxnHandle;
use crate::wire::{Message, Method};

impl Table {
    /// A CANCEL for INVITE transaction `invite`, whose own transaction is `cancel` (created by the
    /// caller like any request's): the CANCEL is answered 200, the INVITE marked canceled (no new
    /// branch), and every pending branch CANCELed. The INVITE's final answer (487 from downstream)
    /// goes up as usual.
    pub fn on_cancel(
        &mut self,
        invite: TxnHandle,
        cancel: TxnHandle,
        cancel_req: &Message,
        now: Instant,
    ) {
        self.reply(cancel, cancel_req, 200, b"canceling", &[], b"", now);
        if let Some(c) = self.get(invite) {
            c.canceled = true;
        }
        self.cancel_branches(invite, None, now);
        self.settle(invite);
    }

    /// Sends CANCEL on every pending branch of `h` except `except` (§16.7 step 10, §16.10).
    pub(super) fn cancel_branches(&mut self, h: TxnHandle, except: Option<usize>, now: Instant) {
        let Some(c) = self.get(h) else { return };
        if c.method != Method::Invite {
            return;
        }
        let mut due: smallvec::SmallVec<[usize; 4]> = smallvec::SmallVec::new();
        for (i, b) in c.branches.iter_mut().enumerate() {
            if Some(i) == except || b.final_reply.is_some() || b.cancel.is_some() {
                continue;
            }
            if b.provisional {
                due.push(i);
            } else {
                b.cancel_wanted = true;
            }
        }
        for i in due {
            self.send_cancel(h, i, now);
        }
    }

    /// Builds and sends the CANCEL of branch `i` of `h` and starts its client transaction.
    pub(super) fn send_cancel(&mut self, h: TxnHandle, i: usize, now: Instant) {
        let cfg = self.cfg;
        let mut buf = std::mem::take(&mut self.scratch);
        let sent = {
            let Some(b) = self.get(h).and_then(|c| c.branches.get_mut(i)) else {
                self.scratch = buf;
                return;
            };
            if b.cancel.is_some() {
                self.scratch = buf;
                return;
            }
            buf.clear();
            let built = Message::parse(b.request.clone())
                .ok()
                .is_some_and(|sent| build::cancel(&mut buf, &sent));
            if built {
                let bytes = Bytes::copy_from_slice(&buf);
                b.cancel = Some((
                    ClientNonInvite::start(now, b.proto != Proto::Udp, &cfg),
                    bytes.clone(),
                ));
                b.cancel_wanted = false;
                Some((bytes, b.dest, b.proto, b.local))
            } else {
                None
            }
        };
        self.scratch = buf;
        if let Some((bytes, dest, proto, local)) = sent {
            self.send(bytes, dest, proto, local);
        }
    }
}
