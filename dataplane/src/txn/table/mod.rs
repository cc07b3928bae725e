//! The transactions of one shard (SER's `tm` hash table), sans-IO: events in — a request the script
//! relays, a reply, a CANCEL, a timer tick, always with `now` — and [`Action`]s out, drained with
//! [`Table::poll_action`] as quinn-proto's `Connection` hands out its transmits. The table sends
//! nothing, reads no clock and knows no shard: the shard's handler carries out what it asks for.
//!
//! | file | what |
//! |---|---|
//! | this file | the slab of cells, matching (§17.2.3 keys, our branch ids), creating cells and branches, timers |
//! | `cell.rs` | one transaction: server transaction, branches, what it keeps |
//! | `response.rs` | replies from downstream and the §16.7 response context (best final, 6xx, merged 401/407, 503→500, failure_route) |
//! | `cancel.rs` | §16.10 CANCEL and the CANCELs of §16.7 step 10 |
//! | `uac.rs` | `t_uac`: transactions ser starts itself |
//!
//! Cells live in a slab; the slot and a generation go into our branch parameter with the shard
//! number ([`crate::txn::BranchId`]), so a reply is found without hashing and one that arrived on
//! another shard can be handed to the owner. Requests are matched by a salted §17.2.3 key
//! ([`crate::txn::server_key`]). Each cell says when it next needs attention; a binary heap of
//! (deadline, slot, gen) is drained by [`Table::on_tick`] (stale entries are skipped), so timer
//! resolution is the tick.
//!
//! Invariants: no lock, no I/O, no clock; a cell is removed only when its server transaction and
//! every client transaction have terminated (or by [`Table::remove`]); every final response goes
//! upstream once (2xx: every one, §16.7 step 9); nothing from the network panics. Every event
//! queues a bounded number of actions (at most a few per branch); the owner drains them after each
//! event, so the queue never grows past one event's worth.
//!
//! Where this follows RFC 3261 rather than SER 0.8.11: T1 is 500 ms (SER: 1 s); a branch with a
//! provisional reply that times out is CANCELed (SER, with `noisy_ctimer=0`, dropped it silently);
//! a 2xx puts the transaction in RFC 6026's Accepted state (further 2xx are forwarded, INVITE
//! retransmissions absorbed); an ACK that matches a transaction answered with a non-2xx is absorbed
//! before the script runs (SER absorbed it only when the script called t_relay); no new branch is
//! started after a CANCEL.

mod cancel;
mod cell;
mod response;
#[cfg(test)]
mod tests;
pub(crate) mod uac;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

pub use cell::Cell;
use cell::{Branch, Client, Server};
pub use uac::{UacDone, UacRequest, UacResult};

use crate::proxy::sl::SlTagger;
use crate::script::ir::RouteId;
use crate::ser_log;
use crate::shard::log::L_DBG;
use crate::transport::Proto;
use crate::txn::client_invite::{self, ClientInvite};
use crate::txn::client_non_invite::{self, ClientNonInvite};
use crate::txn::server_invite::{self, ServerInvite};
use crate::txn::server_non_invite::ServerNonInvite;
use crate::txn::{server_key, BranchId, TimerConfig, TmCounters, TmStats, TxnHandle};
use crate::wire::{Message, Method};

/// Most branches of one transaction (the branch index is one byte in our branch parameter).
pub const MAX_TXN_BRANCHES: usize = 64;

/// Bytes to send: to `dest` over `proto` from our listen address `local`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub data: Bytes,
    pub dest: SocketAddr,
    pub proto: Proto,
    pub local: SocketAddr,
}

/// What the owner of the table must do after an event.
pub enum Action {
    /// Send these bytes: a request on a branch, a retransmission, an ACK or CANCEL downstream, or
    /// a reply upstream.
    Send(Transmit),
    /// Run failure_route `route` for transaction `txn` over [`Table::failure_request`], then call
    /// [`Table::failure_done`].
    Failure { txn: TxnHandle, route: RouteId },
    /// A `t_uac` transaction is done: call `done` with `result`.
    UacDone { done: UacDone, result: UacResult },
    /// A transaction created with [`NewServer::notify`] sent its first final reply upstream (its
    /// final outcome, after any failure_route), or a 183 before it: the owner tells the modules
    /// that asked
    /// ([`crate::script::Completion`]). Boxed: only transactions that asked pay for it, and
    /// every other action stays small.
    Completed(Box<Completed>),
}

/// What [`Action::Completed`] carries: shared bytes the cell keeps anyway (no copy).
#[derive(Debug, Clone)]
pub struct Completed {
    pub txn: TxnHandle,
    /// The request as routed.
    pub request: Bytes,
    /// The request as sent on the branch whose reply won (`None`: a reply of ours).
    pub branch: Option<Bytes>,
    pub code: u16,
    /// The reply as sent upstream.
    pub reply: Bytes,
    /// The script flags of the transaction.
    pub flags: u32,
    pub src: SocketAddr,
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Send(t) => f.debug_tuple("Send").field(t).finish(),
            Action::Failure { txn, route } => f
                .debug_struct("Failure")
                .field("txn", txn)
                .field("route", route)
                .finish(),
            Action::UacDone { result, .. } => {
                f.debug_struct("UacDone").field("result", result).finish()
            }
            Action::Completed(c) => f
                .debug_struct("Completed")
                .field("txn", &c.txn)
                .field("code", &c.code)
                .finish(),
        }
    }
}

/// How replies ser writes itself look: the To-tag source (the same as sl's, so a retransmitted
/// request gets the same tag) and the `Server:` header (`server_signature`).
#[derive(Debug, Clone)]
pub struct LocalReplies {
    pub tagger: SlTagger,
    pub server: Option<Bytes>,
}

/// A server transaction to create ([`Table::create`]).
#[derive(Debug, Clone)]
pub struct NewServer {
    /// Its §17.2.3 key ([`Table::key`]).
    pub key: u64,
    pub method: Method,
    /// The request as routed (what local replies and failure_route are made from).
    pub request: Bytes,
    pub src: SocketAddr,
    pub local: SocketAddr,
    pub proto: Proto,
    /// Where replies go upstream.
    pub reply_dest: SocketAddr,
    /// Script flags (restored in failure_route).
    pub flags: u32,
    /// `t_replicate`: replies stay here.
    pub replicate: bool,
    /// Report the completion ([`Action::Completed`]): set when a loaded module has a completion
    /// hook, so that without one the table does nothing extra.
    pub notify: bool,
}

/// Why no branch can be added to a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoBranch {
    /// The transaction is gone.
    Gone,
    /// A CANCEL came for it (no new branch after a CANCEL).
    Canceled,
    /// [`MAX_TXN_BRANCHES`] already.
    TooMany,
}

/// The most shards a server may run: the shard id is one byte of every branch this table issues
/// (replies are routed back by it), so a 257th shard would share an id with another.
pub const MAX_SHARDS: usize = 256;

/// The transactions of one shard.
pub struct Table {
    /// Boxed: a slot costs 8 bytes, and growing the slab never doubles the room of ~600-byte cells.
    cells: Vec<Option<Box<Cell>>>,
    gens: Vec<u32>,
    free: Vec<u32>,
    by_key: HashMap<u64, u32>,
    heap: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    cfg: TimerConfig,
    shard: u8,
    salt: u64,
    next_call: u64,
    replies: LocalReplies,
    counters: Arc<TmCounters>,
    actions: VecDeque<Action>,
    /// Where local replies, ACKs and CANCELs are written before being copied out at their size.
    scratch: BytesMut,
    /// Cells that became lingering ([`Cell::lingering`]), oldest first; entries of cells gone
    /// since are skipped (and pruned from the front as they go).
    lingering: VecDeque<TxnHandle>,
    /// Lingering cells forgotten early to make room ([`Table::evict_lingering`]).
    evicted: u64,
}

impl Table {
    /// The table of shard `shard`, counting into `counters`.
    pub fn new(shard: usize, salt: u64, replies: LocalReplies, counters: Arc<TmCounters>) -> Table {
        Table {
            cells: Vec::new(),
            gens: Vec::new(),
            free: Vec::new(),
            by_key: HashMap::new(),
            heap: BinaryHeap::new(),
            cfg: TimerConfig::default(),
            shard: shard.min(255) as u8,
            salt: salt ^ (shard as u64).rotate_left(32),
            next_call: salt.rotate_left(shard as u32 + 7),
            replies,
            counters,
            actions: VecDeque::with_capacity(16),
            scratch: BytesMut::with_capacity(4096),
            lingering: VecDeque::new(),
            evicted: 0,
        }
    }

    /// The timer values of the running program (tm's parameters, resolved once per load).
    pub fn configure(&mut self, timers: TimerConfig) {
        self.cfg = timers;
    }

    /// The timer values in use.
    pub fn timers(&self) -> TimerConfig {
        self.cfg
    }

    /// The next thing to do, in the order the events asked for them.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Takes the queued sends, leaving every other action queued in order (what the script side
    /// does after each tm call, so sends keep their order with the script's own).
    pub fn drain_sends(&mut self, mut f: impl FnMut(Transmit)) {
        if self.actions.iter().all(|a| matches!(a, Action::Send(_))) {
            for a in self.actions.drain(..) {
                if let Action::Send(t) = a {
                    f(t);
                }
            }
            return;
        }
        let mut kept = VecDeque::new();
        for a in self.actions.drain(..) {
            match a {
                Action::Send(t) => f(t),
                other => kept.push_back(other),
            }
        }
        self.actions = kept;
    }

    /// Transactions in the table.
    pub fn len(&self) -> usize {
        self.cells.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory held by the live transactions (see [`Cell::memory`]), and how many there are.
    pub fn memory(&self) -> (usize, usize) {
        let live = self.cells.iter().flatten();
        live.fold((0, 0), |(m, n), c| (m + c.memory(), n + 1))
    }

    /// Whether branch `id` names a live transaction of this table.
    pub fn owns(&self, id: BranchId) -> bool {
        self.cells
            .get(id.slot as usize)
            .and_then(Option::as_ref)
            .is_some_and(|c| c.gen == id.gen && usize::from(id.branch) < c.branches.len())
    }

    /// The §17.2.3 key of `msg` in this table (`as_method`: a CANCEL looks for its INVITE).
    pub fn key(&self, msg: &Message, as_method: Option<Method>) -> Option<u64> {
        server_key(msg, as_method, self.salt)
    }

    /// The transaction with key `key`.
    pub fn find(&self, key: u64) -> Option<TxnHandle> {
        let slot = *self.by_key.get(&key)?;
        let c = self.cells.get(slot as usize)?.as_ref()?;
        Some(TxnHandle { slot, gen: c.gen })
    }

    /// The failure_route context of `h`: the request as routed, where it came from, the script
    /// flags it had.
    pub fn failure_request(
        &self,
        h: TxnHandle,
    ) -> Option<(Bytes, SocketAddr, SocketAddr, Proto, u32)> {
        let c = self.cell(h)?;
        Some((c.request.clone(), c.src, c.local, c.proto, c.flags))
    }

    fn cell(&self, h: TxnHandle) -> Option<&Cell> {
        self.cells
            .get(h.slot as usize)?
            .as_deref()
            .filter(|c| c.gen == h.gen)
    }

    fn get(&mut self, h: TxnHandle) -> Option<&mut Cell> {
        self.cells
            .get_mut(h.slot as usize)
            .and_then(Option::as_deref_mut)
            .filter(|c| c.gen == h.gen)
    }

    fn stats(&self) -> Option<&TmStats> {
        self.counters.stats(usize::from(self.shard))
    }

    fn send(&mut self, data: Bytes, dest: SocketAddr, proto: Proto, local: SocketAddr) {
        self.actions.push_back(Action::Send(Transmit {
            data,
            dest,
            proto,
            local,
        }));
    }

    fn insert(&mut self, mut cell: Cell) -> TxnHandle {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.cells.push(None);
                self.gens.push(self.salt as u32);
                (self.cells.len() - 1) as u32
            }
        };
        let gen = self.gens[slot as usize].wrapping_add(1);
        self.gens[slot as usize] = gen;
        cell.gen = gen;
        if let Some(k) = cell.key {
            self.by_key.insert(k, slot);
        }
        if let Some(st) = self.stats() {
            TmStats::inc(&st.current);
            TmStats::inc(&st.total);
            if matches!(cell.server, Server::Local(_)) {
                TmStats::inc(&st.total_local);
            }
        }
        self.cells[slot as usize] = Some(Box::new(cell));
        self.publish_size();
        TxnHandle { slot, gen }
    }

    /// Forgets transaction `h` (`t_release`, or a relay that sent nothing).
    pub fn remove(&mut self, h: TxnHandle) {
        let Some(c) = self
            .cells
            .get_mut(h.slot as usize)
            .filter(|c| c.as_ref().is_some_and(|c| c.gen == h.gen))
            .and_then(Option::take)
        else {
            return;
        };
        if let Some(k) = c.key {
            if self.by_key.get(&k) == Some(&h.slot) {
                self.by_key.remove(&k);
            }
        }
        if let Some(st) = self.stats() {
            TmStats::dec(&st.current);
            if c.replied {
                TmStats::dec(&st.waiting);
            }
        }
        if let Server::Local(Some(done)) = c.server {
            // A local transaction removed before its answer: say so to its caller.
            self.actions.push_back(Action::UacDone {
                done,
                result: UacResult {
                    code: 500,
                    reason: "Transaction released".into(),
                    reply: None,
                },
            });
        }
        self.free.push(h.slot);
        self.publish_size();
    }

    fn publish_size(&self) {
        self.counters.set_size(usize::from(self.shard), self.len());
    }

    /// Puts the cell's next deadline on the heap when it is earlier than the one there.
    fn schedule(&mut self, h: TxnHandle) {
        let Some(c) = self.get(h) else { return };
        let Some(d) = c.deadline() else { return };
        if c.scheduled.is_some_and(|s| s <= d) {
            return;
        }
        c.scheduled = Some(d);
        self.heap.push(Reverse((d, h.slot, h.gen)));
    }

    /// Removes the cell when it is over, else reschedules it (and notes it when it has become
    /// lingering).
    fn settle(&mut self, h: TxnHandle) {
        match self.get(h) {
            Some(c) if c.finished() => self.remove(h),
            Some(c) => {
                if !c.lingering_queued && c.lingering() {
                    c.lingering_queued = true;
                    self.lingering.push_back(h);
                    self.prune_lingering();
                }
                self.schedule(h)
            }
            None => {}
        }
    }

    fn is_lingering(&self, h: TxnHandle) -> bool {
        self.cell(h).is_some_and(Cell::lingering)
    }

    /// Drops entries of cells that are gone from the front of the lingering list, and keeps the
    /// list no longer than twice the table (a full sweep, rarely: cells end in about the order
    /// they began to linger).
    fn prune_lingering(&mut self) {
        while let Some(&h) = self.lingering.front() {
            if self.is_lingering(h) {
                break;
            }
            self.lingering.pop_front();
        }
        if self.lingering.len() > 2 * self.len() + 64 {
            let mut list = std::mem::take(&mut self.lingering);
            list.retain(|&h| self.is_lingering(h));
            self.lingering = list;
        }
    }

    /// Forgets the oldest lingering cell, if any, to make room for a new transaction: a late
    /// retransmission it would have absorbed is then routed as a new request (or statelessly, a
    /// response), as after its timer. True if one was forgotten.
    pub fn evict_lingering(&mut self) -> bool {
        while let Some(h) = self.lingering.pop_front() {
            if self.is_lingering(h) {
                self.remove(h);
                self.evicted += 1;
                return true;
            }
        }
        false
    }

    /// How many lingering cells [`Table::evict_lingering`] has forgotten.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    // ------------------------------------------------------------------------------ requests

    /// Creates the server transaction of a request (`t_newtran`, `t_relay`). The caller has
    /// checked with [`Table::find`] that it is not a retransmission.
    pub fn create(&mut self, s: NewServer, now: Instant) -> TxnHandle {
        let reliable = s.proto != Proto::Udp;
        let server = if s.replicate {
            Server::Replicate
        } else if s.method == Method::Invite {
            Server::Invite(ServerInvite::new(reliable))
        } else {
            Server::NonInvite(ServerNonInvite::new(reliable))
        };
        let cell = Cell {
            gen: 0,
            key: Some(s.key),
            method: s.method,
            request: s.request,
            src: s.src,
            local: s.local,
            proto: s.proto,
            reply_dest: s.reply_dest,
            server,
            last_reply: None,
            branches: SmallVec::new(),
            failure_route: None,
            reply_route: None,
            flags: s.flags,
            notify: s.notify,
            blind: false,
            canceled: false,
            replied: false,
            in_failure: false,
            lingering_queued: false,
            expires: now + self.cfg.fr + self.cfg.fr_inv,
            scheduled: None,
        };
        let h = self.insert(cell);
        self.schedule(h);
        h
    }

    /// A retransmission of the request of `h`: the last reply is sent again when the server
    /// transaction says so (§17.2.1, §17.2.2).
    pub fn retransmission(&mut self, h: TxnHandle) {
        let Some(c) = self.cell(h) else { return };
        let resend = match &c.server {
            Server::Invite(s) => s.on_retransmission(),
            Server::NonInvite(s) => s.on_retransmission(),
            _ => false,
        };
        if resend {
            if let Some(r) = c.last_reply.clone() {
                let (dest, proto, local) = (c.reply_dest, c.proto, c.local);
                self.send(r, dest, proto, local);
            }
        }
    }

    /// `t_retransmit_reply`: sends the last reply again; `false` when there is none.
    pub fn retransmit_reply(&mut self, h: TxnHandle) -> bool {
        let Some(c) = self.cell(h) else { return false };
        let Some(r) = c.last_reply.clone() else {
            return false;
        };
        let (dest, proto, local) = (c.reply_dest, c.proto, c.local);
        self.send(r, dest, proto, local);
        true
    }

    /// The branch id the next branch of `h` gets (what goes into its Via), or why there is none.
    pub fn next_branch(&self, h: TxnHandle) -> Result<BranchId, NoBranch> {
        let c = self.cell(h).ok_or(NoBranch::Gone)?;
        if c.canceled {
            return Err(NoBranch::Canceled);
        }
        if c.branches.len() >= MAX_TXN_BRANCHES {
            return Err(NoBranch::TooMany);
        }
        Ok(BranchId {
            shard: self.shard,
            slot: h.slot,
            gen: h.gen,
            branch: c.branches.len() as u8,
        })
    }

    /// Sends `request` (with the Via of [`Table::next_branch`]) as a new branch of `h` and starts
    /// its client transaction. `false` when the transaction is gone.
    pub fn add_branch(
        &mut self,
        h: TxnHandle,
        request: Bytes,
        dest: SocketAddr,
        proto: Proto,
        local: SocketAddr,
        now: Instant,
    ) -> bool {
        let cfg = self.cfg;
        let Some(c) = self.get(h) else { return false };
        let reliable = proto != Proto::Udp;
        let client = if c.method == Method::Invite {
            Client::Invite(ClientInvite::start(now, reliable, &cfg))
        } else {
            Client::NonInvite(ClientNonInvite::start(now, reliable, &cfg))
        };
        c.branches
            .push(Branch::new(client, request.clone(), dest, proto, local));
        self.send(request, dest, proto, local);
        self.schedule(h);
        true
    }

    /// SER's `t_addblind`: an application outside the script answers `h` (module vm); if nobody
    /// has within `fr_timer`, it gets a 408. `false` when the transaction is gone.
    pub fn add_blind(&mut self, h: TxnHandle, now: Instant) -> bool {
        let fr = self.cfg.fr;
        let Some(c) = self.get(h) else { return false };
        c.blind = true;
        if !c.replied {
            c.expires = now + fr;
        }
        self.schedule(h);
        true
    }

    /// The script flags of `h` as a failure_route left them (what its completion reports).
    pub fn set_flags(&mut self, h: TxnHandle, flags: u32) {
        if let Some(c) = self.get(h) {
            c.flags = flags;
        }
    }

    /// Arms (or disarms) the failure_route of `h` (`t_on_failure` as it stood at `t_relay`).
    pub fn set_failure_route(&mut self, h: TxnHandle, route: Option<RouteId>) {
        if let Some(c) = self.get(h) {
            c.failure_route = route;
        }
    }

    /// Arms the onreply_route of `h` (`t_on_reply` as it stood at `t_relay`).
    pub fn set_reply_route(&mut self, h: TxnHandle, route: Option<RouteId>) {
        if let Some(c) = self.get(h) {
            c.reply_route = route;
        }
    }

    /// The onreply_route a reply for branch `id` runs through, if one is armed.
    pub fn reply_route(&mut self, id: crate::txn::BranchId) -> Option<RouteId> {
        let h = TxnHandle {
            slot: id.slot,
            gen: id.gen,
        };
        self.get(h).and_then(|c| c.reply_route)
    }

    /// An ACK before the script runs: absorbed (`true`) when it acknowledges a non-2xx final
    /// reply of ours (§17.2.1), else the script routes it (2xx ACKs are end to end).
    pub fn absorb_ack(&mut self, msg: &Message, now: Instant) -> bool {
        let cfg = self.cfg;
        let Some(h) = self.key(msg, None).and_then(|k| self.find(k)) else {
            return false;
        };
        let Some(c) = self.get(h) else {
            return false;
        };
        // §17.2.3: an RFC 2543 ACK (no magic cookie) matches only if its To tag is the one of the
        // reply we sent (the key leaves the tag out so that the ACK finds its INVITE at all).
        let rfc2543 = msg
            .top_via()
            .ok()
            .and_then(|v| v.branch())
            .is_none_or(|b| !b.starts_with(crate::txn::MAGIC_COOKIE));
        if rfc2543 {
            let ours = c
                .last_reply
                .as_ref()
                .and_then(|r| Message::parse(r.clone()).ok())
                .and_then(|r| r.to().ok().and_then(|t| t.tag().map(<[u8]>::to_vec)));
            let theirs = msg.to().ok().and_then(|t| t.tag().map(<[u8]>::to_vec));
            if ours.is_none() || ours != theirs {
                return false;
            }
        }
        match &mut c.server {
            Server::Invite(s) => s.on_ack(now, &cfg),
            _ => false,
        }
    }

    // ------------------------------------------------------------------------------ timers

    /// Runs the timers due at `now` (retransmissions, Timer B/C/F 408s, the end of completed
    /// transactions); failure_routes to run come out as [`Action::Failure`].
    pub fn on_tick(&mut self, now: Instant) {
        // At most the entries present now: a cell that reschedules itself at a time already due
        // waits for the next tick instead of spinning this one.
        let mut budget = self.heap.len();
        while let Some(Reverse((d, slot, gen))) = self.heap.peek().copied() {
            if d > now || budget == 0 {
                break;
            }
            budget -= 1;
            self.heap.pop();
            let h = TxnHandle { slot, gen };
            match self.get(h) {
                Some(c) if c.scheduled == Some(d) => c.scheduled = None,
                _ => continue, // stale entry
            }
            self.cell_timers(h, now);
            self.settle(h);
        }
    }

    fn cell_timers(&mut self, h: TxnHandle, now: Instant) {
        let cfg = self.cfg;
        let mut sends: SmallVec<[Transmit; 2]> = SmallVec::new();
        let mut cancels: SmallVec<[usize; 2]> = SmallVec::new();
        let mut timed_out = false;
        {
            let Some(c) = self.get(h) else { return };
            if !c.replied && c.expires <= now && c.branches.is_empty() && !c.in_failure && c.blind {
                // Nobody answered for the application that was to: 408, as SER's blind UAC.
                self.local_reply(h, 408, b"Request Timeout", now);
                return;
            }
            if !c.replied && c.expires <= now && c.branches.is_empty() && !c.in_failure {
                // t_newtran and nothing else: forget it.
                ser_log!(L_DBG, "tm: transaction without branches or reply expired");
                if let Server::NonInvite(s) = &mut c.server {
                    let _ = s.on_send(500, now, &cfg);
                }
                c.server = Server::Replicate;
                return;
            }
            match &mut c.server {
                Server::Invite(s) if s.deadline().is_some_and(|d| d <= now) => {
                    match s.on_timer(now, &cfg) {
                        server_invite::OnTimer::Retransmit => {
                            if let Some(r) = &c.last_reply {
                                sends.push(Transmit {
                                    data: r.clone(),
                                    dest: c.reply_dest,
                                    proto: c.proto,
                                    local: c.local,
                                });
                            }
                        }
                        server_invite::OnTimer::NoAck => {
                            ser_log!(L_DBG, "tm: no ACK for our final reply (Timer H)")
                        }
                        _ => {}
                    }
                }
                Server::NonInvite(s) => {
                    s.on_timer(now);
                }
                _ => {}
            }
            for (i, b) in c.branches.iter_mut().enumerate() {
                if let Some((ct, bytes)) = &mut b.cancel {
                    if ct.deadline().is_some_and(|d| d <= now)
                        && ct.on_timer(now, &cfg) == client_non_invite::OnTimer::Retransmit
                    {
                        sends.push(Transmit {
                            data: bytes.clone(),
                            dest: b.dest,
                            proto: b.proto,
                            local: b.local,
                        });
                    }
                }
                if b.client.deadline().is_none_or(|d| d > now) {
                    continue;
                }
                let resend = |b: &Branch| Transmit {
                    data: b.request.clone(),
                    dest: b.dest,
                    proto: b.proto,
                    local: b.local,
                };
                match &mut b.client {
                    Client::Invite(ci) => match ci.on_timer(now, &cfg) {
                        client_invite::OnTimer::Retransmit => sends.push(resend(b)),
                        client_invite::OnTimer::Timeout { provisional } => {
                            // Timer B or C: a CANCEL for a branch that answered provisionally
                            // (§16.8).
                            if provisional && b.cancel.is_none() {
                                cancels.push(i);
                            }
                            b.cancel_wanted = false;
                            if b.final_reply.is_none() {
                                b.final_reply = Some((408, None));
                                timed_out = true;
                            }
                        }
                        _ => {}
                    },
                    Client::NonInvite(cn) => match cn.on_timer(now, &cfg) {
                        client_non_invite::OnTimer::Retransmit => sends.push(resend(b)),
                        client_non_invite::OnTimer::Timeout if b.final_reply.is_none() => {
                            b.final_reply = Some((408, None));
                            timed_out = true;
                        }
                        _ => {}
                    },
                }
            }
        }
        for t in sends {
            self.actions.push_back(Action::Send(t));
        }
        for i in cancels {
            self.send_cancel(h, i, now);
        }
        if timed_out {
            self.branches_done(h, now);
        }
    }
}

/// `m` written into a buffer of its size: bytes a cell keeps for the transaction's life (request,
/// branches, last reply) are not written into pooled send buffers (they would never go back to
/// the pool anyway).
pub fn exact(m: &Message) -> Bytes {
    let mut buf = BytesMut::with_capacity(m.written_len());
    m.write_to(&mut buf);
    buf.freeze()
}
