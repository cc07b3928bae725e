//! What one transaction is made of (SER's `cell`): the server transaction of the request
//! (Figure 7 or 8, or a stand-in for `t_replicate` and `t_uac`), one client transaction per branch
//! (Figure 5 or 6) with the bytes sent on it, the request as routed and the last reply sent
//! upstream.
//!
//! Invariants: a cell is finished only when its server transaction and every client transaction
//! (CANCELs included) have terminated and no failure_route runs for it; its next deadline is the
//! earliest of its state machines' (plus a safety net for a transaction nobody relayed).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use smallvec::SmallVec;

use super::uac::UacDone;
use crate::script::ir::RouteId;
use crate::transport::Proto;
use crate::txn::client_invite::{self, ClientInvite};
use crate::txn::client_non_invite::{self, ClientNonInvite};
use crate::txn::server_invite::{self, ServerInvite};
use crate::txn::server_non_invite::{self, ServerNonInvite};
use crate::txn::timer::earliest;
use crate::wire::Method;

pub(super) enum Server {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
    /// `t_replicate`: nothing goes upstream.
    Replicate,
    /// `t_uac`: the final reply goes to this callback.
    Local(Option<UacDone>),
}

pub(super) enum Client {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
}

impl Client {
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self {
            Client::Invite(c) => c.deadline(),
            Client::NonInvite(c) => c.deadline(),
        }
    }
    pub(super) fn terminated(&self) -> bool {
        match self {
            Client::Invite(c) => c.state() == client_invite::State::Terminated,
            Client::NonInvite(c) => c.state() == client_non_invite::State::Terminated,
        }
    }
}

/// One branch (fork) of a transaction.
pub(super) struct Branch {
    pub(super) client: Client,
    /// The request as sent on this branch (retransmissions, ACK, CANCEL are made from it).
    pub(super) request: Bytes,
    pub(super) dest: SocketAddr,
    pub(super) proto: Proto,
    pub(super) local: SocketAddr,
    /// A provisional reply came (a CANCEL may be sent now).
    pub(super) provisional: bool,
    /// The final outcome: status, and the reply as received (`None`: our own timeout).
    pub(super) final_reply: Option<(u16, Option<Bytes>)>,
    /// CANCEL wanted but not sent yet (no provisional reply so far, §9.1).
    pub(super) cancel_wanted: bool,
    /// The CANCEL client transaction with its bytes.
    pub(super) cancel: Option<(ClientNonInvite, Bytes)>,
}

impl Branch {
    /// A branch whose request `request` was just sent to `dest`.
    pub(super) fn new(
        client: Client,
        request: Bytes,
        dest: SocketAddr,
        proto: Proto,
        local: SocketAddr,
    ) -> Branch {
        Branch {
            client,
            request,
            dest,
            proto,
            local,
            provisional: false,
            final_reply: None,
            cancel_wanted: false,
            cancel: None,
        }
    }
}

/// One transaction (SER's `cell`).
pub struct Cell {
    pub(super) gen: u32,
    /// The §17.2.3 key it is found by (none for `t_uac`).
    pub(super) key: Option<u64>,
    pub(super) method: Method,
    /// The request as routed (script edits applied, without our Via, Request-URI as received).
    pub(super) request: Bytes,
    pub(super) src: SocketAddr,
    pub(super) local: SocketAddr,
    pub(super) proto: Proto,
    /// Where replies go upstream.
    pub(super) reply_dest: SocketAddr,
    pub(super) server: Server,
    /// The last reply sent upstream (resent on request retransmissions and Timer G).
    pub(super) last_reply: Option<Bytes>,
    /// One branch inline (most requests are not forked); forks spill to the heap.
    pub(super) branches: SmallVec<[Branch; 1]>,
    pub(super) failure_route: Option<RouteId>,
    /// `t_on_reply`: the onreply_route replies from downstream run through.
    pub(super) reply_route: Option<RouteId>,
    /// Script flags when relayed (restored in failure_route).
    pub(super) flags: u32,
    /// Report the completion to the owner ([`super::Action::Completed`]).
    pub(super) notify: bool,
    /// An application outside ser will answer it (module vm, SER's blind UAC): when nobody has
    /// replied by `expires`, a 408 goes upstream instead of the transaction being forgotten.
    pub(super) blind: bool,
    /// A CANCEL came for it.
    pub(super) canceled: bool,
    /// A final reply went upstream.
    pub(super) replied: bool,
    /// A failure_route is running (suspended on a job) for it.
    pub(super) in_failure: bool,
    /// Safety net for a transaction that never gets a reply (t_newtran and no relay).
    pub(super) expires: Instant,
    /// The deadline a heap entry exists for.
    pub(super) scheduled: Option<Instant>,
    /// Queued on the table's list of lingering cells (see [`Cell::lingering`]).
    pub(super) lingering_queued: bool,
}

impl Cell {
    /// Over but for its retransmission timers (RFC 3261 Timers I, J, K, D; RFC 6026's L and M,
    /// 32 s each on UDP): the upstream side has its final answer (and, for a non-2xx to an
    /// INVITE, its ACK), and every branch has its final reply. Such a cell only absorbs
    /// retransmissions; when the table is full it is the one to forget first, instead of
    /// refusing a new request.
    pub(super) fn lingering(&self) -> bool {
        let server = match &self.server {
            Server::Invite(s) => matches!(
                s.state(),
                server_invite::State::Accepted | server_invite::State::Confirmed
            ),
            Server::NonInvite(s) => s.state() == server_non_invite::State::Completed,
            Server::Replicate | Server::Local(_) => false,
        };
        server
            && !self.in_failure
            && self.branches.iter().all(|b| {
                b.final_reply.is_some()
                    && b.cancel
                        .as_ref()
                        .is_none_or(|(c, _)| c.state() != client_non_invite::State::Trying)
            })
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        let mut d = match &self.server {
            Server::Invite(s) => s.deadline(),
            Server::NonInvite(s) => s.deadline(),
            _ => None,
        };
        for b in &self.branches {
            d = earliest(d, b.client.deadline());
            if let Some((c, _)) = &b.cancel {
                d = earliest(d, c.deadline());
            }
        }
        // The safety net is for a transaction nobody relayed (t_newtran alone): once branches
        // exist, their timers end it. (Counting it for every cell made a ringing branch that
        // outlived fr + fr_inv, e.g. one started in failure_route, an always-due deadline.)
        if !self.replied && self.branches.is_empty() && !self.in_failure {
            d = earliest(d, Some(self.expires));
        }
        d
    }

    fn server_done(&self) -> bool {
        match &self.server {
            Server::Invite(s) => s.state() == server_invite::State::Terminated,
            Server::NonInvite(s) => s.state() == server_non_invite::State::Terminated,
            Server::Replicate | Server::Local(_) => true,
        }
    }

    pub(super) fn finished(&self) -> bool {
        self.server_done()
            && !self.in_failure
            && self.branches.iter().all(|b| {
                b.client.terminated()
                    && b.cancel
                        .as_ref()
                        .is_none_or(|(c, _)| c.state() == client_non_invite::State::Terminated)
            })
    }

    pub(super) fn all_branches_final(&self) -> bool {
        !self.branches.is_empty() && self.branches.iter().all(|b| b.final_reply.is_some())
    }

    /// Approximate memory of this cell: its struct, the branch array when spilled, and the bytes
    /// it keeps (request, branch requests, last reply, kept final replies).
    pub fn memory(&self) -> usize {
        let mut n = std::mem::size_of::<Cell>() + self.request.len();
        if self.branches.spilled() {
            n += self.branches.capacity() * std::mem::size_of::<Branch>();
        }
        n += self.last_reply.as_ref().map_or(0, Bytes::len);
        for b in &self.branches {
            n += b.request.len();
            n += b
                .final_reply
                .as_ref()
                .and_then(|(_, r)| r.as_ref())
                .map_or(0, Bytes::len);
            n += b.cancel.as_ref().map_or(0, |(_, c)| c.len());
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory per transaction: the fixed part is measured here; the bytes kept per transaction are
    /// the request as routed, one copy per branch as sent, and the last reply (about 3 × the
    /// INVITE size for a one-branch call). Reported by `Table::memory` at run time.
    #[test]
    fn transaction_fixed_size_stays_small() {
        let cell = std::mem::size_of::<Cell>();
        let branch = std::mem::size_of::<Branch>();
        eprintln!("size_of Cell = {cell} B (one Branch inline), Branch = {branch} B");
        assert!(cell <= 1024, "{cell}");
    }
}
