//! The stateful proxy core (SER's `tm`, RFC 3261 §16 with §17 transactions): one [`Table`] of
//! transactions per shard, the §16.7 response context of each, CANCEL (§16.10), failure_route, the
//! final-response timers, and the internal UAC (`t_uac`).
//!
//! A [`Cell`] is what SER called a transaction: the server transaction of the request (Figure 7 or
//! 8), one client transaction per branch (Figure 5 or 6) with the bytes sent on it, the request as
//! routed (for local replies and failure_route) and the last reply sent upstream (what a
//! retransmitted request gets). Cells live in a slab owned by one shard; the slot and a generation
//! go into our branch parameter with the shard number ([`crate::txn::BranchId`]), so a reply is
//! found without hashing and a reply that arrived on another shard is handed to the owner
//! ([`ShardMsg::Reply`]). Requests are matched by a salted §17.2.3 key ([`crate::txn::server_key`]).
//! Timers: each cell says when it next needs attention; a binary heap of (deadline, slot, gen) is
//! drained from the shard's tick (stale entries are skipped), so timer resolution is the tick.
//!
//! Invariants: no lock, no I/O (sends go to the [`Outbox`]); a cell is removed only when its server
//! transaction and every client transaction have terminated (or by `t_release`); every final
//! response goes upstream once (2xx: every one, §16.7 step 9); nothing from the network panics.
//!
//! Where this follows RFC 3261 rather than SER 0.8.11: T1 is 500 ms (SER: 1 s); a branch with a
//! provisional reply that times out is CANCELed (SER, with `noisy_ctimer=0`, dropped it silently);
//! a 2xx puts the transaction in RFC 6026's Accepted state (further 2xx are forwarded, INVITE
//! retransmissions absorbed); an ACK that matches a transaction answered with a non-2xx is absorbed
//! before the script runs (SER absorbed it only when the script called t_relay); in a
//! failure_route, `t_relay` forwards the appended branches and, if the script rewrote it, the
//! request URI (SER only the appended branches); no new branch is started after a CANCEL.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use bytes::Bytes;
use smallvec::SmallVec;

use super::forward::{self, MaxForwards};
use super::server::{ShardEnv, ShardMsg, Shared};
use super::sl::{self, SlReply};
use crate::modules::tm::{Relay, Transactions};
use crate::offload::JobResult;
use crate::script::env::{ActionResult, Env, Target, TargetHost};
use crate::script::ir::{Program, RouteId, RouteKind};
use crate::script::Ctx;
use crate::ser_log;
use crate::shard::log::{L_DBG, L_ERR, L_WARN};
use crate::shard::{Inbox, Outbox};
use crate::transport::Proto;
use crate::txn::client_invite::{self, ClientInvite};
use crate::txn::client_non_invite::{self, ClientNonInvite};
use crate::txn::server_invite::{self, ServerInvite};
use crate::txn::server_non_invite::ServerNonInvite;
use crate::txn::timer::earliest;
use crate::txn::{
    better_final, build, server_key, upstream_code, BranchId, TimerConfig, TmStats, TmTotals,
    TxnHandle,
};
use crate::wire::{HeaderId, Message, Method};

/// Most branches of one transaction (the branch index is one byte in our branch parameter).
const MAX_TXN_BRANCHES: usize = 64;

// ------------------------------------------------------------------------------------ shared part

/// What the shards share about transactions: counters for `t_stats`, table sizes for `t_hash`, and
/// the shards' inboxes (replies handed to their owner, `t_uac` requests).
pub struct TmShared {
    stats: Box<[TmStats]>,
    sizes: Box<[AtomicU64]>,
    inboxes: OnceLock<Vec<Inbox<ShardMsg>>>,
    next_uac: AtomicUsize,
}

impl TmShared {
    /// Counters for `shards` shards.
    pub fn new(shards: usize) -> TmShared {
        let n = shards.max(1);
        TmShared {
            stats: (0..n).map(|_| TmStats::default()).collect(),
            sizes: (0..n).map(|_| AtomicU64::new(0)).collect(),
            inboxes: OnceLock::new(),
            next_uac: AtomicUsize::new(0),
        }
    }

    /// Gives the shards' inboxes (once, after the runtime started). Without them, replies that
    /// arrive on the wrong shard are forwarded statelessly and `t_uac` fails.
    pub fn set_inboxes(&self, inboxes: Vec<Inbox<ShardMsg>>) {
        let _ = self.inboxes.set(inboxes);
    }

    /// `t_stats`: the counters summed over the shards.
    pub fn totals(&self) -> TmTotals {
        TmTotals::sum(&self.stats)
    }

    /// The counters of one shard (`t_hash`'s per-table totals).
    pub fn shard_totals(&self, shard: usize) -> TmTotals {
        self.stats.get(shard).map_or_else(TmTotals::default, |s| {
            TmTotals::sum(std::slice::from_ref(s))
        })
    }

    /// `t_hash`: transactions in each shard's table.
    pub fn table_sizes(&self) -> Vec<u64> {
        self.sizes
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .collect()
    }

    fn stats(&self, shard: usize) -> Option<&TmStats> {
        self.stats.get(shard)
    }

    pub(super) fn inbox(&self, shard: usize) -> Option<&Inbox<ShardMsg>> {
        self.inboxes.get().and_then(|v| v.get(shard))
    }

    /// `t_uac`: starts a transaction for `req` on one of the shards (round robin). `Err(req)` when
    /// no shard can take it (not started, or stopped).
    pub fn uac(&self, req: UacRequest) -> Result<(), Box<UacRequest>> {
        let Some(all) = self.inboxes.get().filter(|v| !v.is_empty()) else {
            return Err(Box::new(req));
        };
        let i = self.next_uac.fetch_add(1, Ordering::Relaxed) % all.len();
        match all[i].send(ShardMsg::Uac(Box::new(req))) {
            Ok(()) => Ok(()),
            Err(ShardMsg::Uac(r)) => Err(r),
            Err(_) => Err(Box::new(UacRequest {
                // `send` hands back the message it was given: always a Uac; never reached.
                method: String::new(),
                ruri: String::new(),
                headers: String::new(),
                body: Vec::new(),
                next_hop: None,
                done: Box::new(|_| {}),
            })),
        }
    }
}

/// The final answer of a `t_uac` transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UacResult {
    /// The final status (408 on timeout, 478/500 when the request could not be sent).
    pub code: u16,
    /// Its reason phrase.
    pub reason: String,
    /// The whole final reply as received (`None` when generated here).
    pub reply: Option<Bytes>,
}

/// Called once with the final answer (on the shard's thread: keep it short, e.g. send on a channel).
pub type UacDone = Box<dyn FnOnce(UacResult) + Send>;

/// A request for ser to send statefully (management's `t_uac_dlg`).
pub struct UacRequest {
    /// Method, e.g. `NOTIFY`.
    pub method: String,
    /// Request-URI.
    pub ruri: String,
    /// Header lines, each ended by CRLF (From and To should be there; Call-ID, CSeq, From tag,
    /// Max-Forwards and Content-Length are added when missing).
    pub headers: String,
    /// Body (Content-Type must be among the headers when not empty).
    pub body: Vec<u8>,
    /// Send to this URI instead of the Request-URI's host (SER's "outbound URI").
    pub next_hop: Option<String>,
    /// Completion.
    pub done: UacDone,
}

impl std::fmt::Debug for UacRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UacRequest")
            .field("method", &self.method)
            .field("ruri", &self.ruri)
            .field("next_hop", &self.next_hop)
            .finish_non_exhaustive()
    }
}

// ------------------------------------------------------------------------------------ the cells

enum Server {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
    /// `t_replicate`: nothing goes upstream.
    Replicate,
    /// `t_uac`: the final reply goes to this callback.
    Local(Option<UacDone>),
}

enum Client {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
}

impl Client {
    fn deadline(&self) -> Option<Instant> {
        match self {
            Client::Invite(c) => c.deadline(),
            Client::NonInvite(c) => c.deadline(),
        }
    }
    fn terminated(&self) -> bool {
        match self {
            Client::Invite(c) => c.state() == client_invite::State::Terminated,
            Client::NonInvite(c) => c.state() == client_non_invite::State::Terminated,
        }
    }
}

/// One branch (fork) of a transaction.
struct Branch {
    client: Client,
    /// The request as sent on this branch (retransmissions, ACK, CANCEL are made from it).
    request: Bytes,
    dest: SocketAddr,
    proto: Proto,
    local: SocketAddr,
    /// A provisional reply came (a CANCEL may be sent now).
    provisional: bool,
    /// The final outcome: status, and the reply as received (`None`: our own timeout).
    final_reply: Option<(u16, Option<Bytes>)>,
    /// CANCEL wanted but not sent yet (no provisional reply so far, §9.1).
    cancel_wanted: bool,
    /// The CANCEL client transaction with its bytes.
    cancel: Option<(ClientNonInvite, Bytes)>,
}

/// One transaction (SER's `cell`).
pub struct Cell {
    gen: u32,
    /// The §17.2.3 key it is found by (none for `t_uac`).
    key: Option<u64>,
    method: Method,
    /// The request as routed (script edits applied, without our Via, Request-URI as received).
    request: Bytes,
    src: SocketAddr,
    local: SocketAddr,
    proto: Proto,
    /// Where replies go upstream.
    reply_dest: SocketAddr,
    server: Server,
    /// The last reply sent upstream (resent on request retransmissions and Timer G).
    last_reply: Option<Bytes>,
    /// One branch inline (most requests are not forked); forks spill to the heap.
    branches: SmallVec<[Branch; 1]>,
    failure_route: Option<RouteId>,
    /// Script flags when relayed (restored in failure_route).
    flags: u32,
    /// A CANCEL came for it.
    canceled: bool,
    /// A final reply went upstream.
    replied: bool,
    /// A failure_route is running (suspended on a job) for it.
    in_failure: bool,
    /// Safety net for a transaction that never gets a reply (t_newtran and no relay).
    expires: Instant,
    /// The deadline a heap entry exists for.
    scheduled: Option<Instant>,
}

impl Cell {
    fn deadline(&self) -> Option<Instant> {
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
            Server::NonInvite(s) => s.state() == crate::txn::server_non_invite::State::Terminated,
            Server::Replicate | Server::Local(_) => true,
        }
    }

    fn finished(&self) -> bool {
        self.server_done()
            && !self.in_failure
            && self.branches.iter().all(|b| {
                b.client.terminated()
                    && b.cancel
                        .as_ref()
                        .is_none_or(|(c, _)| c.state() == client_non_invite::State::Terminated)
            })
    }

    fn all_branches_final(&self) -> bool {
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

/// What the owner must do after the table handled an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Nothing,
    /// Run failure_route `route` for the transaction (then call [`Table::failure_done`]).
    Failure(TxnHandle, RouteId),
}

/// A reply matched to a transaction, or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMatch {
    /// Not ours (or the transaction is gone): route it statelessly by Via.
    NotFound,
    /// Handled.
    Done(Next),
}

/// Sending context: the shard's outbox and shared state.
pub struct Io<'a> {
    pub out: &'a mut Outbox,
    pub shared: &'a Shared,
    pub shard: usize,
}

impl Io<'_> {
    fn stats(&self) -> Option<&TmStats> {
        self.shared.tm.stats(self.shard)
    }
}

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
}

impl Table {
    pub fn new(shard: usize, salt: u64) -> Table {
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
        }
    }

    /// The timer values of the running program (see [`super::server::Loaded::timers`]).
    pub fn configure(&mut self, timers: TimerConfig) {
        self.cfg = timers;
    }

    /// The timer values in use.
    pub fn timers(&self) -> TimerConfig {
        self.cfg
    }

    /// Transactions in the table.
    pub fn len(&self) -> usize {
        self.cells.len() - self.free.len()
    }

    /// Whether branch `id` names a live transaction of this table.
    pub fn owns(&self, id: BranchId) -> bool {
        self.cells
            .get(id.slot as usize)
            .and_then(Option::as_ref)
            .is_some_and(|c| c.gen == id.gen && usize::from(id.branch) < c.branches.len())
    }

    /// The failure_route context of `h`: the request as routed, where it came from, the script
    /// flags it had.
    pub fn failure_request(
        &self,
        h: TxnHandle,
    ) -> Option<(Bytes, SocketAddr, SocketAddr, Proto, u32)> {
        let c = self
            .cells
            .get(h.slot as usize)?
            .as_ref()
            .filter(|c| c.gen == h.gen)?;
        Some((c.request.clone(), c.src, c.local, c.proto, c.flags))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory held by the live transactions (see [`Cell::memory`]), and how many there are.
    pub fn memory(&self) -> (usize, usize) {
        let live = self.cells.iter().flatten();
        live.fold((0, 0), |(m, n), c| (m + c.memory(), n + 1))
    }

    fn get(&mut self, h: TxnHandle) -> Option<&mut Cell> {
        self.cells
            .get_mut(h.slot as usize)
            .and_then(Option::as_deref_mut)
            .filter(|c| c.gen == h.gen)
    }

    fn lookup(&self, key: u64) -> Option<TxnHandle> {
        let slot = *self.by_key.get(&key)?;
        let c = self.cells.get(slot as usize)?.as_ref()?;
        Some(TxnHandle { slot, gen: c.gen })
    }

    fn insert(&mut self, mut cell: Cell, io: &Io<'_>) -> TxnHandle {
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
        if let Some(st) = io.stats() {
            TmStats::inc(&st.current);
            TmStats::inc(&st.total);
            if matches!(cell.server, Server::Local(_)) {
                TmStats::inc(&st.total_local);
            }
        }
        self.cells[slot as usize] = Some(Box::new(cell));
        self.publish_size(io);
        TxnHandle { slot, gen }
    }

    fn remove(&mut self, h: TxnHandle, io: &Io<'_>) {
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
        if let Some(st) = io.stats() {
            TmStats::dec(&st.current);
            if c.replied {
                TmStats::dec(&st.waiting);
            }
        }
        if let Server::Local(Some(done)) = c.server {
            // Released before an answer (t_release of a local transaction cannot happen; kept
            // for completeness): say so.
            done(UacResult {
                code: 500,
                reason: "Transaction released".into(),
                reply: None,
            });
        }
        self.free.push(h.slot);
        self.publish_size(io);
    }

    fn publish_size(&self, io: &Io<'_>) {
        if let Some(s) = io.shared.tm.sizes.get(io.shard) {
            s.store(
                (self.cells.len() - self.free.len()) as u64,
                Ordering::Relaxed,
            );
        }
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

    /// Removes the cell when it is over, else reschedules it.
    fn settle(&mut self, h: TxnHandle, io: &Io<'_>) {
        match self.get(h) {
            Some(c) if c.finished() => self.remove(h, io),
            Some(_) => self.schedule(h),
            None => {}
        }
    }

    // ------------------------------------------------------------------------------ upstream

    /// Sends `bytes` upstream as the reply with status `code` (the server transaction allowing).
    fn send_upstream(
        &mut self,
        h: TxnHandle,
        code: u16,
        bytes: Bytes,
        local: bool,
        io: &mut Io<'_>,
    ) {
        let cfg = self.cfg;
        let now = Instant::now();
        let Some(c) = self.get(h) else { return };
        if matches!(c.server, Server::Local(_)) {
            // A t_uac transaction: its "upstream" is the caller's callback, told once.
            if code >= 200 {
                let reason = Message::parse(bytes.clone())
                    .ok()
                    .and_then(|m| m.reason().map(|r| String::from_utf8_lossy(r).into_owned()))
                    .unwrap_or_default();
                finish_local(c, code, reason, Some(bytes), io);
            }
            return;
        }
        let ok = match &mut c.server {
            Server::Invite(s) => s.on_send(code, now, &cfg),
            Server::NonInvite(s) => s.on_send(code, now, &cfg),
            Server::Replicate | Server::Local(_) => false,
        };
        if !ok {
            return;
        }
        io.out
            .send(bytes.clone(), c.reply_dest, c.proto, Some(c.local));
        c.last_reply = Some(bytes);
        if code >= 200 {
            let first = !c.replied;
            c.replied = true;
            if let Some(st) = io.shared.tm.stats(io.shard) {
                if first {
                    TmStats::inc(&st.waiting);
                    st.completed(code);
                }
                if local {
                    TmStats::inc(&st.replied_locally);
                }
            }
        }
    }

    /// A reply we generate for the request of cell `h` (408, 487, 500, t_reply from failure_route).
    fn local_reply(&mut self, h: TxnHandle, code: u16, reason: &[u8], raw: &[u8], io: &mut Io<'_>) {
        let Some(c) = self.get(h) else { return };
        if matches!(c.server, Server::Local(_)) {
            let reason = String::from_utf8_lossy(reason).into_owned();
            finish_local(c, code, reason, None, io);
            return;
        }
        let Ok(req) = Message::parse(c.request.clone()) else {
            return;
        };
        let bytes = build_local_reply(io, &req, code, reason, &[], raw);
        self.send_upstream(h, code, bytes, true, io);
    }

    /// §16.7 step 6-8: all branches have a final reply — pick the best and send it (or run the
    /// failure_route armed for the transaction).
    fn branches_done(&mut self, h: TxnHandle, io: &mut Io<'_>) -> Next {
        let Some(c) = self.get(h) else {
            return Next::Nothing;
        };
        if c.replied || c.in_failure || !c.all_branches_final() {
            return Next::Nothing;
        }
        // §16.7 step 5: after a 6xx no new branch may start, so no failure_route runs (SER ran it).
        let global_failure = c
            .branches
            .iter()
            .any(|b| matches!(b.final_reply, Some((code, _)) if code >= 600));
        if let Some(route) = c.failure_route.take() {
            if !global_failure && !matches!(c.server, Server::Replicate | Server::Local(_)) {
                c.in_failure = true;
                return Next::Failure(h, route);
            }
        }
        self.send_best(h, io);
        Next::Nothing
    }

    fn send_best(&mut self, h: TxnHandle, io: &mut Io<'_>) {
        let Some(c) = self.get(h) else { return };
        let mut best: Option<(usize, u16, bool)> = None;
        for (i, b) in c.branches.iter().enumerate() {
            if let Some((code, r)) = &b.final_reply {
                let cand = (*code, r.is_none());
                if best.is_none_or(|(_, bc, bl)| better_final(cand, (bc, bl))) {
                    best = Some((i, *code, r.is_none()));
                }
            }
        }
        let Some((i, code, local)) = best else {
            // No branch at all (every one failed to start): nothing was relayed.
            self.local_reply(h, 500, b"Server Internal Error", b"", io);
            return;
        };
        if local {
            self.local_reply(h, 408, b"Request Timeout", b"", io);
            return;
        }
        let Some(Some(bytes)) = c
            .branches
            .get(i)
            .and_then(|b| b.final_reply.clone().map(|f| f.1))
        else {
            return;
        };
        // 401/407 from several branches: every challenge goes up in one reply (§16.7 step 7).
        let mut extra: SmallVec<[u8; 512]> = SmallVec::new();
        if code == 401 || code == 407 {
            for (j, b) in c.branches.iter().enumerate() {
                let Some((401 | 407, Some(r))) = &b.final_reply else {
                    continue;
                };
                if j == i {
                    continue;
                }
                if let Ok(m) = Message::parse(r.clone()) {
                    for f in m.headers() {
                        if matches!(
                            f.id,
                            HeaderId::WwwAuthenticate | HeaderId::ProxyAuthenticate
                        ) {
                            extra.extend_from_slice(f.id.name().as_bytes());
                            extra.extend_from_slice(b": ");
                            extra.extend_from_slice(f.value);
                            extra.extend_from_slice(b"\r\n");
                        }
                    }
                }
            }
        }
        if matches!(c.server, Server::Local(_)) {
            let reason = Message::parse(bytes.clone())
                .ok()
                .and_then(|m| m.reason().map(|r| String::from_utf8_lossy(r).into_owned()))
                .unwrap_or_default();
            finish_local(c, code, reason, Some(bytes), io);
            return;
        }
        let Ok(mut m) = Message::parse(bytes) else {
            return;
        };
        let up = upstream_code(code);
        if up != code {
            if let Some(span) = m.span_of(m.start_line_bytes()) {
                m.replace_span(span, b"SIP/2.0 500 Server Internal Error");
            }
        }
        if !extra.is_empty() {
            m.insert_raw(m.headers_end(), &extra);
        }
        if let Some(b) = strip_top_via(&mut m) {
            self.send_upstream(h, up, b, false, io);
        }
    }

    /// Sends CANCEL on every pending branch of `h` except `except` (§16.7 step 10, §16.10).
    fn cancel_branches(&mut self, h: TxnHandle, except: Option<usize>, io: &mut Io<'_>) {
        let cfg = self.cfg;
        let now = Instant::now();
        let Some(c) = self.get(h) else { return };
        if c.method != Method::Invite {
            return;
        }
        for (i, b) in c.branches.iter_mut().enumerate() {
            if Some(i) == except || b.final_reply.is_some() || b.cancel.is_some() {
                continue;
            }
            if b.provisional {
                send_cancel(b, now, &cfg, io.out);
            } else {
                b.cancel_wanted = true;
            }
        }
    }

    // ------------------------------------------------------------------------------ replies

    /// A reply from downstream whose top Via carries branch `id` of this shard.
    pub fn on_reply(&mut self, id: BranchId, msg: Message, io: &mut Io<'_>) -> ReplyMatch {
        let h = TxnHandle {
            slot: id.slot,
            gen: id.gen,
        };
        let cfg = self.cfg;
        let now = Instant::now();
        let Some(code) = msg.status() else {
            return ReplyMatch::NotFound;
        };
        let cseq_cancel = msg.cseq().is_ok_and(|c| c.method == b"CANCEL");
        let Some(c) = self.get(h) else {
            return ReplyMatch::NotFound;
        };
        let bi = usize::from(id.branch);
        let Some(b) = c.branches.get_mut(bi) else {
            return ReplyMatch::NotFound;
        };
        if cseq_cancel {
            // The answer to our CANCEL: absorbed here (§16.7: responses to CANCEL go nowhere).
            if let Some((ct, _)) = &mut b.cancel {
                ct.on_response(code, now, &cfg);
            }
            self.settle(h, io);
            return ReplyMatch::Done(Next::Nothing);
        }
        let (to_tu, ack) = match &mut b.client {
            Client::Invite(ci) => {
                let r = ci.on_response(code, now, &cfg);
                (r.to_tu, r.send_ack)
            }
            Client::NonInvite(cn) => (cn.on_response(code, now, &cfg), false),
        };
        if ack {
            if let Ok(sent) = Message::parse(b.request.clone()) {
                let mut buf = io.out.buffer(b.request.len());
                if build::ack(&mut buf, &sent, &msg) {
                    io.out.send(buf.freeze(), b.dest, b.proto, Some(b.local));
                }
            }
        }
        let mut next = Next::Nothing;
        if to_tu {
            match code {
                100 => {}
                101..=199 => {
                    b.provisional = true;
                    if b.cancel_wanted {
                        b.cancel_wanted = false;
                        send_cancel(b, now, &cfg, io.out);
                    }
                    let mut m = msg;
                    if let Some(bytes) = strip_top_via(&mut m) {
                        self.send_upstream(h, code, bytes, false, io);
                    }
                }
                200..=299 => {
                    b.final_reply = Some((code, None));
                    let mut m = msg;
                    if let Some(bytes) = strip_top_via(&mut m) {
                        // Every 2xx goes up (§16.7 step 9); the server transaction lets them pass.
                        self.send_upstream(h, code, bytes, false, io);
                    }
                    self.cancel_branches(h, Some(bi), io);
                }
                _ => {
                    // A copy: a slice would pin the whole receive chunk (128 KB) until the
                    // transaction ends.
                    let kept = Bytes::copy_from_slice(&msg.buffer()[..msg.len()]);
                    b.final_reply = Some((code, Some(kept)));
                    if code >= 600 {
                        self.cancel_branches(h, Some(bi), io);
                    }
                    next = self.branches_done(h, io);
                }
            }
        }
        self.settle(h, io);
        ReplyMatch::Done(next)
    }

    // ------------------------------------------------------------------------------ timers

    /// Runs the timers due at `now`; returns the failure_routes to run.
    pub fn on_tick(&mut self, now: Instant, io: &mut Io<'_>) -> SmallVec<[Next; 4]> {
        let mut todo: SmallVec<[Next; 4]> = SmallVec::new();
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
            let next = self.cell_timers(h, now, io);
            if next != Next::Nothing {
                todo.push(next);
            }
            self.settle(h, io);
        }
        todo
    }

    fn cell_timers(&mut self, h: TxnHandle, now: Instant, io: &mut Io<'_>) -> Next {
        let cfg = self.cfg;
        let Some(c) = self.get(h) else {
            return Next::Nothing;
        };
        if !c.replied && c.expires <= now && c.branches.is_empty() && !c.in_failure {
            // t_newtran and nothing else: forget it.
            ser_log!(L_DBG, "tm: transaction without branches or reply expired");
            if let Server::NonInvite(s) = &mut c.server {
                let _ = s.on_send(500, now, &cfg);
            }
            c.server = Server::Replicate;
            return Next::Nothing;
        }
        match &mut c.server {
            Server::Invite(s) if s.deadline().is_some_and(|d| d <= now) => {
                match s.on_timer(now, &cfg) {
                    server_invite::OnTimer::Retransmit => {
                        if let Some(r) = &c.last_reply {
                            io.out.send(r.clone(), c.reply_dest, c.proto, Some(c.local));
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
        let mut timed_out: SmallVec<[usize; 2]> = SmallVec::new();
        for (i, b) in c.branches.iter_mut().enumerate() {
            if let Some((ct, bytes)) = &mut b.cancel {
                if ct.deadline().is_some_and(|d| d <= now)
                    && ct.on_timer(now, &cfg) == client_non_invite::OnTimer::Retransmit
                {
                    io.out.send(bytes.clone(), b.dest, b.proto, Some(b.local));
                }
            }
            if b.client.deadline().is_none_or(|d| d > now) {
                continue;
            }
            match &mut b.client {
                Client::Invite(ci) => match ci.on_timer(now, &cfg) {
                    client_invite::OnTimer::Retransmit => {
                        io.out
                            .send(b.request.clone(), b.dest, b.proto, Some(b.local));
                    }
                    client_invite::OnTimer::Timeout { provisional } => {
                        // Timer B or C: a CANCEL for a branch that answered provisionally (§16.8).
                        if provisional && b.cancel.is_none() {
                            send_cancel(b, now, &cfg, io.out);
                        }
                        b.cancel_wanted = false;
                        if b.final_reply.is_none() {
                            b.final_reply = Some((408, None));
                            timed_out.push(i);
                        }
                    }
                    _ => {}
                },
                Client::NonInvite(cn) => match cn.on_timer(now, &cfg) {
                    client_non_invite::OnTimer::Retransmit => {
                        io.out
                            .send(b.request.clone(), b.dest, b.proto, Some(b.local));
                    }
                    client_non_invite::OnTimer::Timeout if b.final_reply.is_none() => {
                        b.final_reply = Some((408, None));
                        timed_out.push(i);
                    }
                    _ => {}
                },
            }
        }
        if timed_out.is_empty() {
            Next::Nothing
        } else {
            self.branches_done(h, io)
        }
    }

    /// A failure_route for `h` has ended: if it neither replied nor started new branches, the best
    /// reply goes upstream now.
    pub fn failure_done(&mut self, h: TxnHandle, io: &mut Io<'_>) -> Next {
        let Some(c) = self.get(h) else {
            return Next::Nothing;
        };
        c.in_failure = false;
        let next = if c.replied {
            Next::Nothing
        } else if c.all_branches_final() {
            // Nothing new: the route may have armed another failure_route, but there is nothing
            // it could fail with; send the best reply.
            c.failure_route = None;
            self.send_best(h, io);
            Next::Nothing
        } else {
            Next::Nothing
        };
        self.settle(h, io);
        next
    }

    /// An ACK before the script runs: absorbed (`true`) when it acknowledges a non-2xx final
    /// reply of ours (§17.2.1), else the script routes it (2xx ACKs are end to end).
    pub fn absorb_ack(&mut self, msg: &Message) -> bool {
        let cfg = self.cfg;
        let Some(key) = server_key(msg, None, self.salt) else {
            return false;
        };
        let Some(h) = self.lookup(key) else {
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
            Server::Invite(s) => s.on_ack(Instant::now(), &cfg),
            _ => false,
        }
    }

    /// The request's retransmission handling: resends the last reply when the server transaction
    /// says so.
    fn retransmission(&mut self, h: TxnHandle, io: &mut Io<'_>) {
        let Some(c) = self.get(h) else { return };
        let resend = match &c.server {
            Server::Invite(s) => s.on_retransmission(),
            Server::NonInvite(s) => s.on_retransmission(),
            _ => false,
        };
        if resend {
            if let Some(r) = &c.last_reply {
                io.out.send(r.clone(), c.reply_dest, c.proto, Some(c.local));
            }
        }
    }

    // ------------------------------------------------------------------------------ t_uac

    /// Starts a `t_uac` transaction; the callback gets the final answer.
    pub fn uac(&mut self, req: UacRequest, io: &mut Io<'_>) {
        let fail = |req: UacRequest, code: u16, why: &str| {
            (req.done)(UacResult {
                code,
                reason: why.to_string(),
                reply: None,
            })
        };
        let hop = req.next_hop.as_deref().unwrap_or(&req.ruri);
        let Some(dest) = literal_dest(hop.as_bytes()) else {
            return fail(
                req,
                478,
                "Unresolvable destination (t_uac needs an address)",
            );
        };
        let local = io
            .shared
            .local
            .iter()
            .find(|(a, p)| a.is_ipv4() == dest.0.is_ipv4() && *p == dest.1)
            .map(|(a, _)| *a);
        let Some(local) = local else {
            return fail(req, 500, "No socket for the destination's transport");
        };
        let local = io.out.local_for(local, dest.1, dest.0);
        let now = Instant::now();
        let method = Method::from_bytes(req.method.as_bytes());
        self.next_call = self
            .next_call
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1);
        let call = self.next_call;
        let cell = Cell {
            gen: 0,
            key: None,
            method,
            request: Bytes::new(),
            src: dest.0,
            local,
            proto: dest.1,
            reply_dest: dest.0,
            server: Server::Local(None),
            last_reply: None,
            branches: SmallVec::new(),
            failure_route: None,
            flags: 0,
            canceled: false,
            replied: false,
            in_failure: false,
            expires: now + self.cfg.fr + self.cfg.fr_inv,
            scheduled: None,
        };
        let h = self.insert(cell, io);
        let branch = BranchId {
            shard: self.shard,
            slot: h.slot,
            gen: h.gen,
            branch: 0,
        }
        .encode();
        let bytes = build_uac(&req, local, dest.1, &branch, call);
        let cfg = self.cfg;
        let reliable = dest.1 != Proto::Udp;
        let client = if method == Method::Invite {
            Client::Invite(ClientInvite::start(now, reliable, &cfg))
        } else {
            Client::NonInvite(ClientNonInvite::start(now, reliable, &cfg))
        };
        io.out.send(bytes.clone(), dest.0, dest.1, Some(local));
        if let Some(c) = self.get(h) {
            c.server = Server::Local(Some(req.done));
            c.request = bytes.clone();
            c.branches.push(Branch {
                client,
                request: bytes,
                dest: dest.0,
                proto: dest.1,
                local,
                provisional: false,
                final_reply: None,
                cancel_wanted: false,
                cancel: None,
            });
        }
        self.schedule(h);
    }
}

/// Ends a `t_uac` transaction for its caller: the completion callback (once) and the counters.
fn finish_local(c: &mut Cell, code: u16, reason: String, reply: Option<Bytes>, io: &Io<'_>) {
    let Server::Local(done) = &mut c.server else {
        return;
    };
    let Some(done) = done.take() else { return };
    let first = !c.replied;
    c.replied = true;
    if let Some(st) = io.shared.tm.stats(io.shard) {
        if first {
            TmStats::inc(&st.waiting);
            st.completed(code);
        }
    }
    done(UacResult {
        code,
        reason,
        reply,
    });
}

fn send_cancel(b: &mut Branch, now: Instant, cfg: &TimerConfig, out: &mut Outbox) {
    let Ok(sent) = Message::parse(b.request.clone()) else {
        return;
    };
    let mut buf = out.buffer(512);
    if !build::cancel(&mut buf, &sent) {
        return;
    }
    let bytes = compact(buf);
    out.send(bytes.clone(), b.dest, b.proto, Some(b.local));
    b.cancel = Some((
        ClientNonInvite::start(now, b.proto != Proto::Udp, cfg),
        bytes,
    ));
    b.cancel_wanted = false;
}

/// The reply with our Via removed, written (`None` when the top Via cannot be removed).
fn strip_top_via(m: &mut Message) -> Option<Bytes> {
    let top = m.vias().next()?.ok()?;
    let (index, span) = (top.index, top.span);
    m.delete_header_value(index, span).ok()?;
    Some(exact(m))
}

/// `m` written into a buffer of its size: bytes a cell keeps for the transaction's life (request,
/// branches, last reply) are not written into the shard's pooled send buffers (2 KB and more
/// each; they would never go back to the pool anyway).
fn exact(m: &Message) -> Bytes {
    let mut buf = bytes::BytesMut::with_capacity(m.written_len());
    m.write_to(&mut buf);
    buf.freeze()
}

/// Bytes a cell keeps, built in a pooled buffer of a guessed size: an exact copy when the buffer is
/// much larger than what was written.
fn compact(buf: bytes::BytesMut) -> Bytes {
    if buf.capacity() > buf.len() + buf.len() / 4 + 64 {
        Bytes::copy_from_slice(&buf)
    } else {
        buf.freeze()
    }
}

/// A reply ser writes itself for `req`, as sl does (same To-tag for all of one request).
fn build_local_reply(
    io: &mut Io<'_>,
    req: &Message,
    code: u16,
    reason: &[u8],
    contacts: &[&[u8]],
    raw: &[u8],
) -> Bytes {
    let s = &io.shared.settings;
    let tag = io.shared.sl.tag_for(req);
    let mut buf = io.out.buffer(512 + req.len().min(4096));
    sl::write_reply(
        &mut buf,
        req,
        &SlReply {
            code,
            reason,
            contacts,
            headers: &[],
            raw,
            server: s.server_signature.then_some(s.server_header.as_bytes()),
            warning: None,
        },
        &tag,
    );
    compact(buf)
}

/// A `sip:` URI with a literal address: where it goes (no DNS on the shard).
fn literal_dest(uri: &[u8]) -> Option<(SocketAddr, Proto)> {
    let u = crate::wire::uri::Uri::parse(uri).ok()?;
    let t = crate::dns::host_port_of_uri(&u)?;
    let ip = match t.host {
        crate::dns::TargetHost::Ip(ip) => ip,
        crate::dns::TargetHost::Name(n) if n.eq_ignore_ascii_case("localhost") => {
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        crate::dns::TargetHost::Name(_) => return None,
    };
    let lt = crate::dns::literal_target(ip, t.port, t.transport, t.secure);
    let proto = match lt.transport {
        crate::wire::via::Transport::Udp => Proto::Udp,
        _ => Proto::Tcp,
    };
    Some((lt.addr, proto))
}

fn has_header(lines: &str, name: &str, compact: Option<char>) -> bool {
    lines.lines().any(|l| {
        let n = l.split(':').next().unwrap_or("").trim();
        n.eq_ignore_ascii_case(name)
            || compact.is_some_and(|c| n.len() == 1 && n.eq_ignore_ascii_case(&c.to_string()))
    })
}

/// The request of a `t_uac`: our Via, the caller's headers, and what is missing (From tag, To,
/// Call-ID, CSeq, Max-Forwards, Content-Length).
fn build_uac(req: &UacRequest, local: SocketAddr, proto: Proto, branch: &[u8], call: u64) -> Bytes {
    use bytes::BufMut;
    use std::fmt::Write as _;
    let mut s = String::with_capacity(512 + req.headers.len());
    let _ = write!(
        s,
        "{} {} SIP/2.0\r\nVia: SIP/2.0/{} {};branch={}\r\n",
        req.method,
        req.ruri,
        if proto == Proto::Udp { "UDP" } else { "TCP" },
        local,
        String::from_utf8_lossy(branch)
    );
    if !has_header(&req.headers, "Max-Forwards", None) {
        s.push_str("Max-Forwards: 70\r\n");
    }
    let headers = req.headers.trim_end_matches(['\r', '\n']);
    for l in headers.split("\r\n").flat_map(|l| l.split('\n')) {
        let l = l.trim_end_matches('\r');
        if l.is_empty() || l.to_ascii_lowercase().starts_with("content-length") {
            continue;
        }
        s.push_str(l);
        // RFC 3261 §8.1.1.3: a request outside a dialog carries a From tag; management scripts
        // (the Admin Guide's send-IM example) give none.
        if has_header(l, "From", Some('f')) && !l.to_ascii_lowercase().contains(";tag=") {
            let _ = write!(s, ";tag={call:016x}");
        }
        s.push_str("\r\n");
    }
    if !has_header(&req.headers, "From", Some('f')) {
        let _ = write!(s, "From: <sip:ser@{}>;tag={:016x}\r\n", local.ip(), call);
    }
    if !has_header(&req.headers, "To", Some('t')) {
        let _ = write!(s, "To: <{}>\r\n", req.ruri);
    }
    if !has_header(&req.headers, "Call-ID", Some('i')) {
        let _ = write!(s, "Call-ID: {:016x}@{}\r\n", call, local.ip());
    }
    if !has_header(&req.headers, "CSeq", None) {
        let _ = write!(s, "CSeq: 1 {}\r\n", req.method);
    }
    let _ = write!(s, "Content-Length: {}\r\n\r\n", req.body.len());
    let mut buf = bytes::BytesMut::with_capacity(s.len() + req.body.len());
    buf.put_slice(s.as_bytes());
    buf.put_slice(&req.body);
    buf.freeze()
}

/// Timer values from tm's parameters (seconds, SER's units; see [`crate::txn::timer`]).
pub fn timer_config(program: &Program) -> TimerConfig {
    use crate::script::program_param;
    let m = &crate::modules::tm::MODULE;
    let secs = |name: &str| {
        program_param(Some(program), m, name)
            .and_then(|p| p.int())
            .filter(|v| *v > 0)
            .map(|v| std::time::Duration::from_secs(v as u64))
    };
    let d = TimerConfig::default();
    TimerConfig {
        t1: secs("retr_timer1p1").unwrap_or(d.t1),
        t2: secs("retr_timer2").unwrap_or(d.t2),
        t4: secs("wt_timer").unwrap_or(d.t4),
        fr: secs("fr_timer").unwrap_or(d.fr),
        fr_inv: secs("fr_inv_timer").unwrap_or(d.fr_inv),
    }
}

// ------------------------------------------------------------------------------ the script side

/// Resumes a stateful forward that waited for DNS: the same call again (the cache is filled now).
fn relay_after_dns(ctx: &mut Ctx, env: &mut dyn Env, _result: JobResult) -> ActionResult {
    let Some(mut how) = ctx.tm.pending_relay.take() else {
        return ActionResult::Ret(-1);
    };
    how.after_dns = true;
    match env.tm() {
        Some(t) => t.t_relay(ctx, &how),
        None => ActionResult::Ret(-1),
    }
}

/// A destination of one branch.
struct BranchDest {
    addr: SocketAddr,
    proto: Proto,
}

impl ShardEnv<'_> {
    fn table(&mut self) -> Option<(&mut Table, Io<'_>)> {
        let table = self.table.as_deref_mut()?;
        table.configure(self.timers);
        Some((
            table,
            Io {
                out: &mut *self.out,
                shared: self.shared,
                shard: self.shard,
            },
        ))
    }

    /// Stateless forward of ACK / CANCEL that belong to no transaction of ours.
    fn relay_stateless(&mut self, ctx: &mut Ctx, how: &Relay) -> ActionResult {
        match &how.to {
            Some((host, port)) => {
                let h = host_target(host);
                let target = Target::Host {
                    host: h.as_target(host),
                    port: Some(*port),
                };
                Env::forward(self, ctx, &target, how.proto)
            }
            None => Env::forward(self, ctx, &Target::Uri, how.proto),
        }
    }

    /// Creates the transaction of the request in `ctx` (or finds it: a retransmission).
    fn newtran(&mut self, ctx: &mut Ctx, replicate: bool) -> Result<TxnHandle, ActionResult> {
        if ctx.tm.txn.is_some() {
            ser_log!(L_ERR, "ERROR: t_newtran: transaction already in process");
            return Err(ActionResult::Ret(-1));
        }
        let Some(salt) = self.table.as_ref().map(|t| t.salt) else {
            return Err(ActionResult::Ret(-1));
        };
        let Some(key) = server_key(&ctx.msg, None, salt) else {
            ser_log!(
                L_ERR,
                "ERROR: t_newtran: cannot build a transaction key (bad Via/CSeq)"
            );
            ctx.last_error = Some((400, "Bad Request"));
            return Err(ActionResult::Ret(-1));
        };
        let reply_dest = super::server::reply_destination(
            &ctx.msg,
            ctx.src,
            self.proto,
            self.shared.settings.reply_to_via,
        );
        let request = exact(&ctx.msg);
        let proto = self.proto;
        let local = self.local;
        let method = ctx.msg.method();
        let flags = ctx.flags();
        let Some((table, mut io)) = self.table() else {
            return Err(ActionResult::Ret(-1));
        };
        if let Some(h) = table.lookup(key) {
            // A retransmission: answer it as the server transaction says, and end the script.
            table.retransmission(h, &mut io);
            ser_log!(L_DBG, "tm: retransmission absorbed");
            return Err(ActionResult::Ret(0));
        }
        let reliable = proto != Proto::Udp;
        let server = if replicate {
            Server::Replicate
        } else if method == Method::Invite {
            Server::Invite(ServerInvite::new(reliable))
        } else {
            Server::NonInvite(ServerNonInvite::new(reliable))
        };
        let cfg = table.cfg;
        let cell = Cell {
            gen: 0,
            key: Some(key),
            method,
            request,
            src: ctx.src,
            local,
            proto,
            reply_dest,
            server,
            last_reply: None,
            branches: SmallVec::new(),
            failure_route: None,
            flags,
            canceled: false,
            replied: false,
            in_failure: false,
            expires: Instant::now() + cfg.fr + cfg.fr_inv,
            scheduled: None,
        };
        let h = table.insert(cell, &io);
        table.schedule(h);
        ctx.tm.txn = Some(h);
        Ok(h)
    }

    /// Where each URI of this relay goes; `Err` = suspend (DNS) or fail.
    fn branch_dests(
        &mut self,
        ctx: &mut Ctx,
        how: &Relay,
        failure: bool,
    ) -> Result<SmallVec<[(crate::script::ctx::UriBuf, BranchDest); 2]>, ActionResult> {
        let mut uris: SmallVec<[crate::script::ctx::UriBuf; 2]> = SmallVec::new();
        let ruri_first = !failure || ctx.uri_rewritten() || how.to.is_some();
        if ruri_first {
            uris.push(SmallVec::from_slice(ctx.uri()));
        }
        if how.to.is_none() {
            for u in ctx.dset().iter() {
                uris.push(SmallVec::from_slice(u));
            }
        }
        uris.truncate(MAX_TXN_BRANCHES);
        let mut out = SmallVec::new();
        for (i, uri) in uris.into_iter().enumerate() {
            // The request URI's branch goes to dst_uri when loose_route set one (the next Route).
            let next_hop: &[u8] = match &ctx.dst_uri {
                Some(d) if i == 0 && ruri_first && how.to.is_none() => d,
                _ => &uri,
            };
            let r = match &how.to {
                Some((host, port)) => {
                    let h = host_target(host);
                    let target = Target::Host {
                        host: h.as_target(host),
                        port: Some(*port),
                    };
                    self.resolve(&uri, &target, how.proto)
                }
                None => self.resolve(next_hop, &Target::Uri, how.proto),
            };
            match r {
                Ok(Ok(d)) => out.push((
                    uri,
                    BranchDest {
                        addr: d.addr,
                        proto: d.proto,
                    },
                )),
                Ok(Err(why)) => {
                    ser_log!(L_ERR, "t_relay: {why}");
                    ctx.last_error = Some(super::server::error_status(why));
                }
                Err((job, _)) if !how.after_dns => {
                    ctx.tm.pending_relay = Some(how.clone());
                    return Err(ctx.suspend_with(job, relay_after_dns));
                }
                Err(_) => {
                    ser_log!(L_ERR, "t_relay: destination did not resolve");
                    ctx.last_error = Some((478, "Unresolvable destination"));
                }
            }
        }
        Ok(out)
    }
}

/// A host argument: an address or a name.
enum HostKind {
    Ip(IpAddr),
    Name,
}

impl HostKind {
    fn as_target<'a>(&self, host: &'a [u8]) -> TargetHost<'a> {
        match self {
            HostKind::Ip(ip) => TargetHost::Ip(*ip),
            HostKind::Name => TargetHost::Name(host),
        }
    }
}

fn host_target(host: &[u8]) -> HostKind {
    let s = std::str::from_utf8(host).unwrap_or("");
    let s = s.trim_start_matches('[').trim_end_matches(']');
    match s.parse::<IpAddr>() {
        Ok(ip) => HostKind::Ip(ip),
        Err(_) => HostKind::Name,
    }
}

impl Transactions for ShardEnv<'_> {
    fn t_newtran(&mut self, ctx: &mut Ctx) -> ActionResult {
        if ctx.msg.method() == Method::Ack {
            // ACK never creates a transaction; one for a non-2xx of ours was absorbed already.
            return ActionResult::Ret(1);
        }
        match self.newtran(ctx, false) {
            Ok(_) => ActionResult::Ret(1),
            Err(r) => r,
        }
    }

    fn t_relay(&mut self, ctx: &mut Ctx, how: &Relay) -> ActionResult {
        let method = ctx.msg.method();
        let failure = ctx.route_kind() == RouteKind::Failure;
        if method == Method::Ack {
            if how.non_ack {
                ser_log!(
                    L_ERR,
                    "ERROR: t_forward_nonack: ACK cannot be forwarded statefully"
                );
                return ActionResult::Ret(-1);
            }
            // An ACK for a non-2xx of ours was absorbed before the script; any other ACK (for a
            // 2xx, end to end) is forwarded statelessly (§16.7: the proxy keeps no state for it).
            return self.relay_stateless(ctx, how);
        }
        if method == Method::Cancel && !failure {
            return self.relay_cancel(ctx, how);
        }
        // Resolve first: a DNS miss suspends before anything is created, and the call is redone.
        let dests = match self.branch_dests(ctx, how, failure) {
            Ok(d) => d,
            Err(r) => return r,
        };
        let h = if failure {
            match ctx.tm.txn {
                Some(h) => h,
                None => return ActionResult::Ret(-1),
            }
        } else {
            match self.newtran(ctx, how.replicate) {
                Ok(h) => h,
                Err(r) => return r,
            }
        };
        if dests.is_empty() {
            if !failure {
                if let Some((table, io)) = self.table() {
                    table.remove(h, &io);
                }
                ctx.tm.txn = None;
            }
            ctx.last_error.get_or_insert((500, "No destination"));
            return ActionResult::Ret(-1);
        }
        match forward::process_max_forwards(&mut ctx.msg, 70) {
            Ok(MaxForwards::Exhausted) => {
                ctx.last_error = Some((483, "Too Many Hops"));
                if !failure {
                    if let Some((table, io)) = self.table() {
                        table.remove(h, &io);
                    }
                    ctx.tm.txn = None;
                }
                return ActionResult::Ret(-1);
            }
            Ok(_) => {}
            Err(e) => {
                ser_log!(L_DBG, "t_relay: bad Max-Forwards: {e}");
                ctx.last_error = Some((400, "Bad Max-Forwards"));
                return ActionResult::Ret(-1);
            }
        }
        let now = Instant::now();
        let original_uri: SmallVec<[u8; 128]> = SmallVec::from_slice(ctx.original_uri());
        let failure_route = ctx.tm.failure_route.take();
        let shard = self.out.shard();
        // Our Via per destination family/transport; the message clone per branch shares the bytes.
        let mut sent = 0usize;
        for (uri, d) in dests {
            let local = self.via_local_for(d.addr, d.proto);
            let (index, canceled, cfg) = {
                let Some((table, _)) = self.table() else {
                    return ActionResult::Ret(-1);
                };
                let cfg = table.cfg;
                let Some(c) = table.get(h) else {
                    return ActionResult::Ret(-1);
                };
                (c.branches.len(), c.canceled, cfg)
            };
            if canceled {
                ser_log!(
                    L_WARN,
                    "t_relay: the transaction was canceled: no new branch"
                );
                break;
            }
            if index >= MAX_TXN_BRANCHES {
                ser_log!(L_ERR, "t_relay: too many branches");
                break;
            }
            let branch = BranchId {
                shard: shard.min(255) as u8,
                slot: h.slot,
                gen: h.gen,
                branch: index as u8,
            }
            .encode();
            let mut m = ctx.msg.clone();
            if uri[..] != original_uri[..] && m.set_request_uri(&uri).is_err() {
                continue;
            }
            if let Some(rr) = &ctx.record_route {
                crate::modules::rr::outbound_record_route(
                    &mut m,
                    rr,
                    local,
                    super::server::to_ir_proto(d.proto),
                );
            }
            let mut sent_by: SmallVec<[u8; 64]> = SmallVec::new();
            {
                use std::io::Write;
                let _ = match local.ip() {
                    IpAddr::V4(a) => write!(sent_by, "{a}:{}", local.port()),
                    IpAddr::V6(a) => write!(sent_by, "[{a}]:{}", local.port()),
                };
            }
            forward::add_via(
                &mut m,
                super::server::proto_name(d.proto),
                &sent_by,
                &branch,
            );
            let bytes = exact(&m);
            self.out.send(bytes.clone(), d.addr, d.proto, Some(local));
            let reliable = d.proto != Proto::Udp;
            let client = if method == Method::Invite {
                Client::Invite(ClientInvite::start(now, reliable, &cfg))
            } else {
                Client::NonInvite(ClientNonInvite::start(now, reliable, &cfg))
            };
            if let Some((table, _)) = self.table() {
                if let Some(c) = table.get(h) {
                    c.branches.push(Branch {
                        client,
                        request: bytes,
                        dest: d.addr,
                        proto: d.proto,
                        local,
                        provisional: false,
                        final_reply: None,
                        cancel_wanted: false,
                        cancel: None,
                    });
                }
            }
            sent += 1;
        }
        ctx.clear_branches();
        let Some((table, mut io)) = self.table() else {
            return ActionResult::Ret(-1);
        };
        if let Some(c) = table.get(h) {
            c.failure_route = failure_route;
        }
        if sent == 0 {
            if !failure {
                table.remove(h, &io);
                ctx.tm.txn = None;
            }
            ctx.last_error.get_or_insert((500, "No destination"));
            return ActionResult::Ret(-1);
        }
        // A proxy answers INVITE with 100 at once (§16.2), so the caller stops retransmitting.
        if method == Method::Invite && !failure && !how.replicate {
            let b = build_local_reply(
                &mut io,
                &ctx.msg,
                100,
                b"trying -- your call is important to us",
                &[],
                b"",
            );
            table.send_upstream(h, 100, b, false, &mut io);
        }
        table.schedule(h);
        ActionResult::Ret(1)
    }

    fn t_reply(&mut self, ctx: &mut Ctx, code: u16, reason: &[u8]) -> ActionResult {
        if ctx.msg.method() == Method::Ack {
            return ActionResult::Ret(1);
        }
        let Some(h) = ctx.tm.txn else {
            ser_log!(
                L_ERR,
                "ERROR: t_reply: cannot send a t_reply to a message for which no T-state has been established"
            );
            return ActionResult::Ret(-1);
        };
        let contacts: SmallVec<[&[u8]; 8]> = if (300..400).contains(&code) {
            std::iter::once(ctx.uri())
                .chain(ctx.dset().iter())
                .collect()
        } else {
            SmallVec::new()
        };
        let Some((table, mut io)) = self.table() else {
            return ActionResult::Ret(-1);
        };
        let bytes = build_local_reply(
            &mut io,
            &ctx.msg,
            code,
            reason,
            &contacts,
            &ctx.reply_headers,
        );
        let before = table.get(h).map(|c| c.replied);
        table.send_upstream(h, code, bytes, code >= 200, &mut io);
        let after = table.get(h).map(|c| (c.replied, c.last_reply.is_some()));
        if code >= 200 && before == Some(false) && after.is_some_and(|a| a.0) {
            table.cancel_branches(h, None, &mut io);
        }
        table.schedule(h);
        ActionResult::from_bool(after.is_some_and(|a| a.1))
    }

    fn t_lookup_request(&mut self, ctx: &mut Ctx) -> ActionResult {
        let Some((table, _)) = self.table() else {
            return ActionResult::Ret(-1);
        };
        let found = server_key(&ctx.msg, None, table.salt).and_then(|k| table.lookup(k));
        if let Some(h) = found {
            ctx.tm.txn = Some(h);
        }
        ActionResult::from_bool(found.is_some())
    }

    fn t_retransmit_reply(&mut self, ctx: &mut Ctx) -> ActionResult {
        let Some(h) = ctx.tm.txn else {
            return ActionResult::Ret(-1);
        };
        let Some((table, io)) = self.table() else {
            return ActionResult::Ret(-1);
        };
        match table.get(h) {
            Some(c) => match &c.last_reply {
                Some(r) => {
                    io.out.send(r.clone(), c.reply_dest, c.proto, Some(c.local));
                    ActionResult::Ret(1)
                }
                None => ActionResult::Ret(-1),
            },
            None => ActionResult::Ret(-1),
        }
    }

    fn t_release(&mut self, ctx: &mut Ctx) -> ActionResult {
        let Some(h) = ctx.tm.txn.take() else {
            return ActionResult::Ret(-1);
        };
        let Some((table, io)) = self.table() else {
            return ActionResult::Ret(-1);
        };
        table.remove(h, &io);
        ActionResult::Ret(1)
    }
}

impl ShardEnv<'_> {
    /// CANCEL (§16.10): answered 200 in its own transaction and sent on every pending branch of
    /// the INVITE; a CANCEL for no transaction of ours is forwarded statelessly.
    fn relay_cancel(&mut self, ctx: &mut Ctx, how: &Relay) -> ActionResult {
        let Some(salt) = self.table.as_ref().map(|t| t.salt) else {
            return ActionResult::Ret(-1);
        };
        let invite = server_key(&ctx.msg, Some(Method::Invite), salt)
            .and_then(|k| self.table.as_ref().and_then(|t| t.lookup(k)));
        let Some(inv) = invite else {
            return self.relay_stateless(ctx, how);
        };
        let h = match self.newtran(ctx, false) {
            Ok(h) => h,
            Err(r) => return r,
        };
        let Some((table, mut io)) = self.table() else {
            return ActionResult::Ret(-1);
        };
        let b = build_local_reply(&mut io, &ctx.msg, 200, b"canceling", &[], b"");
        table.send_upstream(h, 200, b, true, &mut io);
        table.schedule(h);
        if let Some(c) = table.get(inv) {
            c.canceled = true;
        }
        table.cancel_branches(inv, None, &mut io);
        table.settle(inv, &io);
        ActionResult::Ret(1)
    }

    fn via_local_for(&mut self, addr: SocketAddr, proto: Proto) -> SocketAddr {
        let fits = |a: &SocketAddr| a.is_ipv4() == addr.is_ipv4();
        let l = if fits(&self.local) && self.proto == proto {
            self.local
        } else {
            self.shared
                .local
                .iter()
                .find(|(a, p)| fits(a) && *p == proto)
                .map_or(self.local, |(a, _)| *a)
        };
        // A wildcard listen: the address the route toward `addr` leaves from.
        self.out.local_for(l, proto, addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory per transaction: the fixed part is measured here; the bytes kept per transaction are
    /// the request as routed, one copy per branch as sent, and the last reply (about 3 × the
    /// INVITE size for a one-branch call). Reported by [`Table::memory`] at run time.
    #[test]
    fn transaction_fixed_size_stays_small() {
        let cell = std::mem::size_of::<Cell>();
        let branch = std::mem::size_of::<Branch>();
        eprintln!("size_of Cell = {cell} B (one Branch inline), Branch = {branch} B");
        assert!(cell <= 1024, "{cell}");
    }
}
