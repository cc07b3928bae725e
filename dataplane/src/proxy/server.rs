//! The proxy handler: what a shard runs for every packet when ser routes with a script.
//!
//! Per request: parse (leniently, so a bad request line can still be answered) → the §16.3 checks
//! ([`super::precheck`]) → absorb ACKs of our own stateless replies → `received`/`rport` on the
//! sender's Via → run `route[0]` of the current [`crate::script::ir::Program`] over a [`Ctx`] with a [`ShardEnv`] that
//! forwards, sends and replies through the shard's [`Outbox`]. A script that suspends (DNS, exec, DB)
//! is parked under a job id; the job goes to the controlplane and the script resumes when
//! [`ShardMsg::JobDone`] comes back to this shard. Per response: a reply whose branch is one of our
//! stateful ones goes to the transaction table of the shard that owns it ([`crate::txn::table`]);
//! any other is routed statelessly ([`super::forward::route_response`]). The shard's tick drives
//! the transaction timers. The table sends nothing itself: after every event the handler carries
//! out its [`Action`]s (`run_actions`) — sends into the outbox, failure_routes
//! run here, `t_uac` completions called.
//!
//! The program is read from an `ArcSwap` once per message: a reload (SIGHUP) makes new messages
//! use the new program, while a parked script finishes on the program it started with.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use smallvec::SmallVec;

use super::env::{send_reply, to_ir_proto, transport_to_proto, write, ShardEnv};
use super::forward::{self, HopHost, ResponseRoute};
use super::precheck::{self, CheckOptions, Verdict};
pub use super::shared::{
    parse_trans_id, trans_id, ExternalReply, JobRequest, Loaded, ProxySettings, ShardMsg, Shared,
    TmShared,
};
use crate::dns::{DnsKeyRef, Lookup};
use crate::offload::{Job, JobResult};
use crate::script::exec::{self, Outcome};
use crate::script::Ctx;
use crate::ser_log;
use crate::shard::log::{L_DBG, L_ERR, L_WARN};
use crate::shard::{Handler, Outbox};
use crate::transport::{Packet, Proto};
use crate::txn::table::{Action, Table};
use crate::txn::TxnHandle;
use crate::wire::uri::Host;
use crate::wire::{Limits, Message, Method};

/// How long a reverse-DNS answer is used for `rev_dns`.
const REV_DNS_TTL: std::time::Duration = std::time::Duration::from_secs(300);
/// Most addresses kept in the reverse-DNS cache.
const REV_DNS_MAX: usize = 65_536;

struct Parked {
    ctx: Box<Ctx>,
    program: Arc<Loaded>,
    local: SocketAddr,
    proto: Proto,
    /// A failure_route of this transaction is what waits.
    failure: Option<TxnHandle>,
    /// An onreply_route over a reply for this branch is what waits (the reply is `ctx.msg`).
    reply: Option<crate::txn::BranchId>,
    /// The address a reverse-DNS job is for (`src_ip == "name"`): its answer is kept in the
    /// shared `rev_dns` map for later messages.
    rev: Option<IpAddr>,
}

/// Scripts one shard lets wait for jobs at once unless `SER_MAX_PARKED` says otherwise.
pub const MAX_PARKED: usize = 10_000;

/// `Retry-After` of the 503 sent when [`max_parked`] scripts already wait.
const PARKED_RETRY_AFTER: &[u8] = b"5";

/// The bound of parked scripts per shard: `SER_MAX_PARKED` (read once; unparsable: the default).
pub fn max_parked() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("SER_MAX_PARKED")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(MAX_PARKED)
    })
}

/// The address of a reverse-DNS job.
fn rev_ip(job: &Job) -> Option<IpAddr> {
    match job {
        Job::Dns {
            query: crate::offload::DnsQuery::Reverse(ip),
            ..
        } => Some(*ip),
        _ => None,
    }
}

/// What makes two database selects the same (so one answer serves both); `None` for every other
/// job (writes, DNS, exec… are never merged).
fn select_key(job: &Job) -> Option<String> {
    match job {
        Job::Db {
            url,
            table,
            keys,
            columns,
        } => Some(format!("{url}\0{table}\0{keys:?}\0{columns:?}")),
        _ => None,
    }
}

/// The per-shard handler.
pub struct ProxyHandler {
    shared: Arc<Shared>,
    shard: usize,
    parked: HashMap<u64, Parked>,
    /// Background lookups in flight (no script waits for them): job id → the source address a
    /// reverse lookup is for.
    background: HashMap<u64, IpAddr>,
    /// Database selects in flight, by query: a script that asks the same (auth credentials of one
    /// user@realm while the first lookup waits) joins it instead of costing another DB job.
    selects: HashMap<String, u64>,
    /// Per select in flight (its job id): its query, and the scripts that joined it (their ids in
    /// `parked`), resumed with the same answer.
    joined: HashMap<u64, (String, Vec<u64>)>,
    next_job: u64,
    pid: u32,
    /// This shard's transactions.
    table: Table,
    /// The program this shard ran last: kept so that a request costs no reference-count write on
    /// the `Arc` every shard shares (it is cloned only for a parked script); replaced when a
    /// reload swapped in another one.
    program: Option<Arc<Loaded>>,
    /// The context the next request is parsed into (boxed: parking a script moves a pointer,
    /// not 3 KB), kept between requests.
    spare: Option<Box<Ctx>>,
}

impl ProxyHandler {
    pub fn new(shared: Arc<Shared>, shard: usize) -> ProxyHandler {
        let table = Table::new(
            shard,
            shared.salt,
            shared.local_replies(),
            shared.tm.counters().clone(),
        );
        ProxyHandler {
            table,
            shared,
            shard,
            parked: HashMap::new(),
            background: HashMap::new(),
            selects: HashMap::new(),
            joined: HashMap::new(),
            next_job: 0,
            pid: std::process::id(),
            program: None,
            spare: None,
        }
    }

    /// The current program, moved out of the shard's cache (put it back with `self.program =
    /// Some(..)`); a reload is seen by the next request.
    fn take_program(&mut self) -> Arc<Loaded> {
        let current = self.shared.program.load();
        match self.program.take() {
            Some(p) if Arc::ptr_eq(&p, &current) => p,
            _ => arc_swap::Guard::into_inner(current),
        }
    }

    /// Starts a lookup whose answer only fills a cache (`dns`/`rev_dns`); at most one per address
    /// and a bounded number at once, so a flood of new senders cannot flood the job runner.
    fn background(&mut self, job: Job, ip: IpAddr) {
        if self.background.len() >= 256 || self.background.values().any(|&a| a == ip) {
            return;
        }
        self.next_job += 1;
        let id = self.next_job;
        if self
            .shared
            .jobs
            .try_send(JobRequest {
                shard: self.shard,
                id,
                job,
            })
            .is_ok()
        {
            self.background.insert(id, ip);
        }
    }

    /// Keeps a reverse-DNS answer in the shared map (negative answers too, so they are not asked
    /// again at once); the map is bounded.
    fn keep_rev_dns(&self, ip: IpAddr, result: &JobResult, now: Instant) {
        let names = match result {
            JobResult::Names(n) => n.clone(),
            JobResult::Failed(_) => Vec::new(),
            _ => return,
        };
        let until = now + REV_DNS_TTL;
        let map = self.shared.rev_dns.pin();
        if map.len() < REV_DNS_MAX || map.contains_key(&ip) {
            map.insert(ip, (Arc::from(names), until));
        }
    }

    /// Scripts waiting for a job.
    pub fn parked(&self) -> usize {
        self.parked.len()
    }

    fn limits(proto: Proto) -> Limits {
        Limits {
            stream: proto != Proto::Udp,
            ..Limits::default()
        }
    }

    /// Keeps `ctx` for the next request, without the bytes of this one.
    fn recycle(&mut self, mut ctx: Box<Ctx>) {
        ctx.msg.release();
        // What modules kept ends with the request, as when the context was dropped.
        ctx.module_state.clear();
        self.spare = Some(ctx);
    }

    fn on_request(&mut self, pkt: &Packet, mut ctx: Box<Ctx>, out: &mut Outbox) {
        let msg = &mut ctx.msg;
        let opts = CheckOptions {
            supported: precheck::SUPPORTED,
            enforce_max_forwards: self.shared.settings.enforce_max_forwards,
        };
        let refused = match precheck::check(msg, &opts) {
            Verdict::Pass => None,
            Verdict::Drop(why) => {
                ser_log!(L_DBG, "dropping request from {}: {why}", pkt.src);
                return;
            }
            Verdict::Reply {
                code,
                reason,
                unsupported,
            } => {
                let mut list: SmallVec<[u8; 128]> = SmallVec::new();
                for (i, t) in unsupported.iter().enumerate() {
                    if i > 0 {
                        list.extend_from_slice(b", ");
                    }
                    list.extend_from_slice(t);
                }
                Some((code, reason, list))
            }
        };
        if let Some((code, reason, list)) = refused {
            if !precheck::answerable(msg) {
                // No Via or CSeq to copy: a reply would match no client transaction.
                ser_log!(
                    L_DBG,
                    "dropping unanswerable request from {}: {reason}",
                    pkt.src
                );
                self.shared.services.stats.dropped(self.shard); // mgmt: dropped counter
                self.recycle(ctx);
                return;
            }
            // The refusal tells a client behind NAT its address too (RFC 3261 §18.2.1).
            let _ = forward::mark_received(msg, pkt.src);
            let headers: SmallVec<[(&[u8], &[u8]); 1]> = if list.is_empty() {
                SmallVec::new()
            } else {
                SmallVec::from_slice(&[(&b"Unsupported"[..], &list[..])])
            };
            self.reply(
                pkt.src,
                pkt.local,
                pkt.proto,
                msg,
                code,
                reason.as_bytes(),
                &headers,
                &[],
                out,
            );
            self.recycle(ctx);
            return;
        }
        if self.shared.sl.is_own_ack(msg) {
            if let Some(st) = self.shared.sl_stats.get(self.shard) {
                st.acks_absorbed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            ser_log!(
                L_DBG,
                "absorbed ACK for our stateless reply from {}",
                pkt.src
            );
            self.recycle(ctx);
            return;
        }
        // SER's dns / rev_dns: does the Via's sent-by name stand for the source address? Answered
        // from caches only (the hot path never waits for DNS); a name not known yet gets
        // `received` (RFC 3261 always allows it) and a background lookup fills the cache for the
        // next request from that sender.
        let settings = &self.shared.settings;
        let now = out.now();
        let src_ip = pkt.src.ip();
        let mut fill: Option<Job> = None;
        let mut name_is_src = |name: &[u8]| {
            let Ok(name) = std::str::from_utf8(name) else {
                return false;
            };
            if settings.dns {
                match self
                    .shared
                    .dns
                    .get(&DnsKeyRef::new(name, Some(0), None, false), now)
                {
                    Lookup::Hit(t) if t.iter().any(|t| t.addr.ip() == src_ip) => return true,
                    Lookup::Miss => {
                        fill = Some(Job::Dns {
                            name: name.to_string(),
                            query: crate::offload::DnsQuery::Addrs,
                        })
                    }
                    _ => {}
                }
            }
            if settings.rev_dns {
                match self.shared.rev_dns.pin().get(&src_ip) {
                    Some((names, until)) if *until > now => {
                        return names.iter().any(|n| n.eq_ignore_ascii_case(name));
                    }
                    _ => {
                        fill.get_or_insert(Job::Dns {
                            name: src_ip.to_string(),
                            query: crate::offload::DnsQuery::Reverse(src_ip),
                        });
                    }
                }
            }
            false
        };
        let marked = forward::mark_received_with(msg, pkt.src, &mut name_is_src);
        if let Err(e) = marked {
            ser_log!(L_DBG, "cannot mark received on Via from {}: {e}", pkt.src);
        }
        if let Some(job) = fill {
            self.background(job, src_ip);
        }
        if msg.method() == Method::Ack && self.table.absorb_ack(msg, now) {
            ser_log!(
                L_DBG,
                "absorbed ACK for our negative reply from {}",
                pkt.src
            );
            self.recycle(ctx);
            return;
        }
        let program = self.take_program();
        ctx.reset(pkt.src, pkt.local, to_ir_proto(pkt.proto));
        let outcome = {
            let mut env = ShardEnv {
                shard: self.shard,
                now: out.now(),
                out,
                shared: &self.shared,
                program: &program.program,
                timers: program.timers,
                configs: &program.configs,
                myself: &program.myself,
                local: pkt.local,
                proto: pkt.proto,
                pid: self.pid,
                table: Some(&mut self.table),
            };
            exec::exec(&program.program, &mut ctx, &mut env)
        };
        self.after_run(outcome, ctx, &program, pkt.local, pkt.proto, None, out);
        self.program = Some(program);
        self.run_actions(out);
    }

    // Inlined so the context (a few KB) is moved only when it is parked, not per message.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn after_run(
        &mut self,
        outcome: Outcome,
        ctx: Box<Ctx>,
        program: &Arc<Loaded>,
        local: SocketAddr,
        proto: Proto,
        failure: Option<TxnHandle>,
        out: &mut Outbox,
    ) {
        if !matches!(outcome, Outcome::Suspended(_)) {
            if let Some(h) = failure {
                // The flags as the failure_route left them are the ones its completion reports.
                self.table.set_flags(h, ctx.flags());
                // What this queues is carried out by the caller's `run_actions`.
                self.table.failure_done(h, out.now());
            }
            self.recycle(ctx);
            return;
        }
        if let Outcome::Suspended(job) = outcome {
            if failure.is_none() && self.parked.len() >= max_parked() {
                // Each parked script keeps its message: with a database that does not answer,
                // requests would pile up without bound. Beyond the bound a request is refused
                // (503, try again later) instead.
                ser_log!(
                    L_DBG,
                    "{} scripts wait for jobs: request from {} refused",
                    self.parked.len(),
                    ctx.src
                );
                self.refuse(&ctx, local, proto, out);
                return;
            }
            self.next_job += 1;
            let id = self.next_job;
            let rev = rev_ip(&job);
            let key = select_key(&job);
            if let Some(leader) = key.as_ref().and_then(|k| self.selects.get(k)) {
                // The same select is in flight: wait for its answer.
                if let Some((_, waiters)) = self.joined.get_mut(leader) {
                    waiters.push(id);
                }
                ser_log!(L_DBG, "script joined job {leader} as {id}");
                let mut ctx = ctx;
                ctx.msg.unshare();
                self.parked.insert(
                    id,
                    Parked {
                        ctx,
                        program: program.clone(),
                        local,
                        proto,
                        failure,
                        reply: None,
                        rev,
                    },
                );
                return;
            }
            let req = JobRequest {
                shard: self.shard,
                id,
                job,
            };
            ser_log!(L_DBG, "script suspended on job {id}: {:?}", req.job);
            // Never wait on the job queue: a full one (the job runner is behind) refuses the
            // request like a full parking lot does.
            match self.shared.jobs.try_send(req) {
                Ok(()) => {}
                Err(crossbeam_channel::TrySendError::Full(_)) => {
                    ser_log!(L_DBG, "job queue full: request from {} refused", ctx.src);
                    self.refuse(&ctx, local, proto, out);
                    return;
                }
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                    ser_log!(L_ERR, "job runner is gone: dropping a suspended request");
                    return;
                }
            }
            if let Some(k) = key {
                self.selects.insert(k.clone(), id);
                self.joined.insert(id, (k, Vec::new()));
            }
            // The message is kept until the job answers: copied out of the shared receive chunk
            // so that a waiting request pins its own octets, not 128 KiB.
            let mut ctx = ctx;
            ctx.msg.unshare();
            self.parked.insert(
                id,
                Parked {
                    ctx,
                    program: program.clone(),
                    local,
                    proto,
                    failure,
                    reply: None,
                    rev,
                },
            );
        }
    }

    /// Refuses the request in `ctx` because a bound was hit (scripts waiting, job queue): `503`
    /// with `Retry-After`, counted as an overload 503. An ACK has no reply and is dropped.
    #[cold]
    fn refuse(&mut self, ctx: &Ctx, local: SocketAddr, proto: Proto, out: &mut Outbox) {
        if ctx.msg.is_request() && ctx.msg.method() != Method::Ack {
            self.shared.services.stats.overloaded(self.shard); // mgmt: overload_503
            self.reply(
                ctx.src,
                local,
                proto,
                &ctx.msg,
                503,
                b"Service Unavailable",
                &[(b"Retry-After", PARKED_RETRY_AFTER)],
                &[],
                out,
            );
        } else {
            self.shared.services.stats.dropped(self.shard); // mgmt: dropped counter
        }
    }

    /// Carries out what the transaction table asked for, until it asks for nothing more (a
    /// failure_route run here may queue more: its branches, its reply).
    fn run_actions(&mut self, out: &mut Outbox) {
        while let Some(a) = self.table.poll_action() {
            match a {
                Action::Send(t) => out.send(t.data, t.dest, t.proto, Some(t.local)),
                Action::Failure { txn, route } => self.run_failure(txn, route, out),
                Action::UacDone { done, result } => done(result),
                Action::Completed(c) => self.completed(&c),
            }
        }
    }

    /// A transaction that asked to be reported completed: the loaded modules' hooks hear of it.
    fn completed(&mut self, c: &crate::txn::table::Completed) {
        let program = self.take_program();
        let done = crate::script::Completion {
            request: &c.request,
            branch: c.branch.as_ref(),
            code: c.code,
            reply: &c.reply,
            flags: c.flags,
            src: c.src,
        };
        for hook in program.configs.completion_hooks() {
            hook(&done, &program.configs, Some(&self.shared.services));
        }
        self.program = Some(program);
    }

    /// failure_route `route` for transaction `h`: over the request as it was routed, with its
    /// flags; `t_relay` there adds branches to the same transaction, `t_reply` answers it.
    fn run_failure(&mut self, h: TxnHandle, route: crate::script::ir::RouteId, out: &mut Outbox) {
        let Some((request, src, local, proto, flags)) = self.table.failure_request(h) else {
            return;
        };
        let parsed = Message::parse_with(request, &Self::limits(proto));
        let Ok(msg) = parsed else {
            self.table.failure_done(h, out.now());
            return;
        };
        let program = self.take_program();
        let mut ctx = Box::new(Ctx::new(msg, src, local, to_ir_proto(proto)));
        for f in 0..32 {
            if flags & (1 << f) != 0 {
                ctx.set_flag(f);
            }
        }
        ctx.module_state.set(crate::modules::tm::TmState {
            txn: Some(h),
            ..Default::default()
        });
        let outcome = {
            let mut env = ShardEnv {
                shard: self.shard,
                now: out.now(),
                out,
                shared: &self.shared,
                program: &program.program,
                timers: program.timers,
                configs: &program.configs,
                myself: &program.myself,
                local,
                proto,
                pid: self.pid,
                table: Some(&mut self.table),
            };
            exec::exec_route(&program.program, route, &mut ctx, &mut env)
        };
        self.after_run(outcome, ctx, &program, local, proto, Some(h), out);
        self.program = Some(program);
    }

    fn on_response(&mut self, pkt: &Packet, mut msg: Message, out: &mut Outbox) {
        if let Err(e) = msg.check_response() {
            ser_log!(L_DBG, "dropping malformed response from {}: {e}", pkt.src);
            return;
        }
        if let Some(id) = crate::txn::response_branch(&msg) {
            if usize::from(id.shard) != self.shard {
                // SO_REUSEPORT handed us a reply for another shard's transaction: pass it on.
                if let Some(inbox) = self.shared.tm.inbox(usize::from(id.shard)) {
                    if inbox.send(ShardMsg::Reply(pkt.clone())).is_ok() {
                        return;
                    }
                }
            } else if self.table.owns(id) {
                let program = self.shared.program.load();
                self.table.configure(program.timers);
                if let Some(route) = self.table.reply_route(id) {
                    self.run_onreply(pkt, msg, id, route, out);
                    return;
                }
                if self.table.on_reply(id, msg, out.now()) {
                    self.run_actions(out);
                }
                return;
            }
        }
        let local = &self.shared.local;
        let route = forward::route_response(&msg, self.shared.settings.check_via, |via| {
            let port = via.port.unwrap_or(5060);
            let ip = match via.host {
                Host::V4(a) => Some(IpAddr::V4(a)),
                Host::V6(a) => Some(IpAddr::V6(a)),
                Host::Name(_) => None,
            };
            local.iter().any(|(a, _)| {
                ip.is_some_and(|ip| a.ip() == ip || a.ip().is_unspecified()) && a.port() == port
            })
        });
        match route {
            ResponseRoute::Drop(why) => {
                ser_log!(L_DBG, "dropping response from {}: {why}", pkt.src)
            }
            ResponseRoute::Forward { index, span, hop } => {
                let HopHost::Ip(ip) = hop.host else {
                    // Stateless replies to a Via host name would need DNS on the hot path; the
                    // sender put its name there without `received`, so we have nowhere to send.
                    ser_log!(L_WARN, "response Via names a host, not an address: dropped");
                    return;
                };
                if msg.delete_header_value(index, span).is_err() {
                    return;
                }
                let proto = transport_to_proto(hop.transport);
                let data = write(&msg, out);
                out.send(data, SocketAddr::new(ip, hop.port), proto, None);
            }
        }
    }

    /// onreply_route `route` (armed by `t_on_reply`) over a reply for branch `id`; what it leaves
    /// of the reply (nathelper's SDP, a fixed Contact) is what the transaction passes upstream.
    fn run_onreply(
        &mut self,
        pkt: &Packet,
        msg: Message,
        id: crate::txn::BranchId,
        route: crate::script::ir::RouteId,
        out: &mut Outbox,
    ) {
        let program = self.take_program();
        let mut ctx = Box::new(Ctx::new(msg, pkt.src, pkt.local, to_ir_proto(pkt.proto)));
        let outcome = {
            let mut env = ShardEnv {
                shard: self.shard,
                now: out.now(),
                out,
                shared: &self.shared,
                program: &program.program,
                timers: program.timers,
                configs: &program.configs,
                myself: &program.myself,
                local: pkt.local,
                proto: pkt.proto,
                pid: self.pid,
                table: Some(&mut self.table),
            };
            exec::exec_route(&program.program, route, &mut ctx, &mut env)
        };
        self.onreply_done(outcome, ctx, &program, pkt.local, pkt.proto, id, out);
        self.program = Some(program);
    }

    /// An onreply_route run ended (or suspended): the reply goes on to its transaction, unless
    /// the route dropped a provisional one (a final reply cannot be dropped, as in SER).
    #[allow(clippy::too_many_arguments)]
    fn onreply_done(
        &mut self,
        outcome: Outcome,
        ctx: Box<Ctx>,
        program: &Arc<Loaded>,
        local: SocketAddr,
        proto: Proto,
        id: crate::txn::BranchId,
        out: &mut Outbox,
    ) {
        match outcome {
            Outcome::Suspended(job) => {
                self.next_job += 1;
                let jid = self.next_job;
                let rev = rev_ip(&job);
                let req = JobRequest {
                    shard: self.shard,
                    id: jid,
                    job,
                };
                if self.shared.jobs.try_send(req).is_err() {
                    // A full job queue (or none): the reply is dropped, as a lost datagram is;
                    // the transaction's retransmissions or timers carry on.
                    self.shared.services.stats.dropped(self.shard); // mgmt: dropped counter
                    ser_log!(L_DBG, "job queue full or gone: dropping a reply");
                    return;
                }
                let mut ctx = ctx;
                ctx.msg.unshare();
                self.parked.insert(
                    jid,
                    Parked {
                        ctx,
                        program: program.clone(),
                        local,
                        proto,
                        failure: None,
                        reply: Some(id),
                        rev,
                    },
                );
            }
            Outcome::Dropped if ctx.msg.status().is_some_and(|c| c < 200) => {
                ser_log!(L_DBG, "onreply_route dropped a provisional reply");
            }
            _ => {
                let ctx = *ctx;
                if self.table.on_reply(id, ctx.msg, out.now()) {
                    self.run_actions(out);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn reply(
        &self,
        dest_src: SocketAddr,
        local: SocketAddr,
        proto: Proto,
        msg: &Message,
        code: u16,
        reason: &[u8],
        headers: &[(&[u8], &[u8])],
        contacts: &[&[u8]],
        out: &mut Outbox,
    ) {
        send_reply(
            &self.shared,
            self.shard,
            self.pid,
            dest_src,
            local,
            proto,
            msg,
            code,
            reason,
            headers,
            contacts,
            &[],
            out,
        );
    }
}

impl Handler for ProxyHandler {
    type Msg = ShardMsg;

    fn on_packet(&mut self, pkt: Packet, out: &mut Outbox) {
        let limits = Self::limits(pkt.proto);
        let mut ctx = match self.spare.take() {
            Some(c) => c,
            None => Box::new(Ctx::new(
                Message::empty(),
                pkt.src,
                pkt.local,
                to_ir_proto(pkt.proto),
            )),
        };
        let parsed = ctx.msg.parse_lenient_into(pkt.data.clone(), &limits);
        match parsed {
            Ok(None) => {
                if ctx.msg.has_bare_lf() {
                    // What ser writes from it (forwards, branches) uses CRLF throughout.
                    ctx.msg.crlf_line_ends();
                }
                if ctx.msg.is_request() {
                    self.on_request(&pkt, ctx, out);
                } else {
                    let msg = std::mem::replace(&mut ctx.msg, Message::empty());
                    self.spare = Some(ctx);
                    self.on_response(&pkt, msg, out);
                }
            }
            Ok(Some(e)) => {
                let msg = &mut ctx.msg;
                // A bad request line: answer (505 / 400) if we can copy the headers, never an ACK.
                if !precheck::answerable(msg)
                    || msg
                        .header_value(crate::wire::HeaderId::CSeq)
                        .is_some_and(|c| c.ends_with(b"ACK"))
                {
                    ser_log!(L_DBG, "dropping unanswerable request from {}: {e}", pkt.src);
                    self.shared.services.stats.dropped(self.shard); // mgmt: dropped counter
                    self.recycle(ctx);
                    return;
                }
                ser_log!(L_DBG, "bad request line from {}: {e}", pkt.src);
                let _ = forward::mark_received(msg, pkt.src);
                self.reply(
                    pkt.src,
                    pkt.local,
                    pkt.proto,
                    msg,
                    e.kind.status(),
                    e.kind.reason().as_bytes(),
                    &[],
                    &[],
                    out,
                );
                self.recycle(ctx);
            }
            Err(e) => {
                // Emptied by the failed parse: kept as it is.
                self.spare = Some(ctx);
                match precheck::parse_failure(&pkt.data, &e) {
                    Verdict::Reply { code, reason, .. } => match precheck::salvage(&pkt.data) {
                        // The headers a reply copies survive: answer with the error's reason.
                        Some(mut m) => {
                            ser_log!(L_DBG, "malformed request from {}: {e}", pkt.src);
                            let _ = forward::mark_received(&mut m, pkt.src);
                            self.reply(
                                pkt.src,
                                pkt.local,
                                pkt.proto,
                                &m,
                                code,
                                reason.as_bytes(),
                                &[],
                                &[],
                                out,
                            );
                        }
                        None => {
                            ser_log!(L_DBG, "dropping unanswerable request from {}: {e}", pkt.src);
                            self.shared.services.stats.dropped(self.shard); // mgmt: dropped counter
                        }
                    },
                    _ => {
                        ser_log!(L_DBG, "dropping unparseable message from {}: {e}", pkt.src);
                        self.shared.services.stats.dropped(self.shard); // mgmt: dropped counter
                    }
                }
            }
        }
    }

    fn on_tick(&mut self, now: Instant, out: &mut Outbox) {
        self.table.on_tick(now);
        self.run_actions(out);
        // Module pa's presence checks (nothing while pa is not loaded); its NOTIFYs reach the
        // shards as t_uac requests.
        if self.shard == 0 {
            crate::modules::pa::tick(&self.shared, now);
        }
        // Expired DNS entries are swept off the shards (proxy::shared::purge_dns).
    }

    fn on_message(&mut self, msg: ShardMsg, out: &mut Outbox) {
        match msg {
            ShardMsg::JobDone { id, result } => {
                if let Some((key, waiters)) = self.joined.remove(&id) {
                    self.selects.remove(&key);
                    // Those that joined first, then the one that asked: each with the answer.
                    for w in waiters {
                        self.on_message(
                            ShardMsg::JobDone {
                                id: w,
                                result: result.clone(),
                            },
                            out,
                        );
                    }
                }
                ser_log!(L_DBG, "job {id} answered: {result:?}");
                if let Some(ip) = self.background.remove(&id) {
                    // A forward lookup already filled the DNS cache in the controlplane; a reverse
                    // one is kept here.
                    self.keep_rev_dns(ip, &result, out.now());
                    return;
                }
                let Some(mut p) = self.parked.remove(&id) else {
                    ser_log!(L_WARN, "answer for unknown job {id}");
                    return;
                };
                if let Some(ip) = p.rev {
                    self.keep_rev_dns(ip, &result, out.now());
                }
                let outcome = {
                    let mut env = ShardEnv {
                        shard: self.shard,
                        now: out.now(),
                        out,
                        shared: &self.shared,
                        program: &p.program.program,
                        timers: p.program.timers,
                        configs: &p.program.configs,
                        myself: &p.program.myself,
                        local: p.local,
                        proto: p.proto,
                        pid: self.pid,
                        table: Some(&mut self.table),
                    };
                    exec::resume(&p.program.program, &mut p.ctx, &mut env, result)
                };
                if let Some(branch) = p.reply {
                    self.onreply_done(outcome, p.ctx, &p.program, p.local, p.proto, branch, out);
                    self.run_actions(out);
                    return;
                }
                self.after_run(outcome, p.ctx, &p.program, p.local, p.proto, p.failure, out);
                self.run_actions(out);
            }
            ShardMsg::Reply(pkt) => self.on_packet(pkt, out),
            ShardMsg::Datagram { data, dest } => out.send(data, dest, Proto::Udp, None),
            ShardMsg::TReply(r) => {
                let program = self.shared.program.load();
                self.table.configure(program.timers);
                let r = *r;
                let sent = self.table.reply_external(
                    r.txn,
                    r.code,
                    r.reason.as_bytes(),
                    r.to_tag.as_bytes(),
                    r.headers.as_bytes(),
                    &r.body,
                    out.now(),
                );
                (r.done)(if sent {
                    Ok(())
                } else {
                    Err("no such transaction, or it cannot take this reply".into())
                });
                self.run_actions(out);
            }
            ShardMsg::Uac(req) => {
                let program = self.shared.program.load();
                self.table.configure(program.timers);
                // On a wildcard listen, t_uac names the address the route toward the
                // destination leaves from (the table itself does no I/O).
                let hop = req.next_hop.as_deref().unwrap_or(&req.ruri);
                let dest = crate::txn::table::uac::literal_dest(hop.as_bytes());
                let locals: SmallVec<[(SocketAddr, Proto); 4]> = self
                    .shared
                    .local
                    .iter()
                    .map(|&(a, p)| match dest {
                        Some((d, dp)) if dp == p => (out.local_for(a, p, d), p),
                        _ => (a, p),
                    })
                    .collect();
                self.table.uac(*req, &locals, out.now());
                self.run_actions(out);
            }
        }
    }
}
