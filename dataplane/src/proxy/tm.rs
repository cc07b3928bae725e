//! Module tm's script side on a shard: `t_newtran`, `t_relay` (and its `_to_*`, `t_replicate*`,
//! `t_forward_nonack*` forms), `t_reply`, `t_lookup_request`, `t_retransmit_reply`, `t_release`,
//! as calls on the shard's [`Table`] ([`crate::modules::tm::Transactions`] for [`ShardEnv`]).
//!
//! This is where the script's view (the request URI, the destination set, `dst_uri`, the
//! Record-Route wish, `t_on_failure`) becomes branches: each destination is resolved from the DNS
//! cache first (a miss suspends the call before anything is created, and the same call is redone
//! with the answer), our Via with the table's branch id goes on top, and the table sends. What the
//! table queues is moved to the shard's outbox after every call, so sends keep the script's order.
//!
//! In a failure_route, `t_relay` adds branches to the same transaction: the appended branches
//! and, if the script rewrote it, the request URI (SER only the appended branches).

use std::net::IpAddr;

use smallvec::SmallVec;

use super::env::{error_status, proto_name, reply_destination, Dest, ShardEnv};
use super::forward::{self, MaxForwards};
use crate::modules::tm::{Relay, Transactions};
use crate::script::ctx::UriBuf;
use crate::script::env::{ActionResult, Env, Target, TargetHost};
use crate::script::ir::RouteKind;
use crate::script::Ctx;
use crate::ser_log;
use crate::shard::log::{L_DBG, L_ERR, L_WARN};
use crate::txn::table::{exact, NewServer, NoBranch, Table, MAX_TXN_BRANCHES};
use crate::txn::TxnHandle;
use crate::wire::Method;

/// A host argument: an address or a name.
enum HostKind {
    Ip(IpAddr),
    Name,
}

/// Live transactions one shard keeps: `SER_MAX_TRANSACTIONS` (environment, read once; unparsable
/// or 0: 262,144, well below the 2^24 slots a branch can name). A new transaction beyond it is
/// refused with 503.
pub fn max_transactions() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("SER_MAX_TRANSACTIONS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .filter(|&n: &usize| n > 0)
            .unwrap_or(1 << 18)
            .min(1 << 24)
    })
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

impl ShardEnv<'_> {
    /// The `hash:label` of the request's transaction (see [`crate::script::Env::transaction_id`]).
    pub(super) fn trans_id(&self, ctx: &Ctx) -> Option<String> {
        self.table.as_ref()?;
        let h = crate::modules::tm::TmState::txn(ctx)?;
        Some(super::shared::trans_id(self.shard, h))
    }

    /// SER's `t_addblind` (see [`crate::script::Env::add_blind`]).
    pub(super) fn t_add_blind(&mut self, ctx: &Ctx) -> bool {
        let Some(h) = crate::modules::tm::TmState::txn(ctx) else {
            return false;
        };
        let now = self.now;
        self.table().is_some_and(|t| t.add_blind(h, now))
    }

    /// The table, with the timers of the program being run (a parked script may finish on the
    /// program it started with).
    fn table(&mut self) -> Option<&mut Table> {
        let t = self.table.as_deref_mut()?;
        t.configure(self.timers);
        Some(t)
    }

    /// Moves what the table queued to send into the outbox.
    fn flush_tm(&mut self) {
        if let Some(t) = self.table.as_deref_mut() {
            let out = &mut *self.out;
            t.drain_sends(|x| out.send(x.data, x.dest, x.proto, Some(x.local)));
        }
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

    /// Creates the transaction of the request in `ctx` (or finds it: a retransmission, answered as
    /// its server transaction says, ends the script with `Err(Ret(0))`).
    fn newtran(&mut self, ctx: &mut Ctx, replicate: bool) -> Result<TxnHandle, ActionResult> {
        if crate::modules::tm::TmState::txn(ctx).is_some() {
            ser_log!(L_ERR, "ERROR: t_newtran: transaction already in process");
            return Err(ActionResult::Ret(-1));
        }
        let (proto, local, now) = (self.proto, self.local, self.now);
        let notify = self.configs.wants_completion();
        let reply_dest =
            reply_destination(&ctx.msg, ctx.src, proto, self.shared.settings.reply_to_via);
        let Some(table) = self.table() else {
            return Err(ActionResult::Ret(-1));
        };
        let Some(key) = table.key(&ctx.msg, None) else {
            ser_log!(
                L_ERR,
                "ERROR: t_newtran: cannot build a transaction key (bad Via/CSeq)"
            );
            ctx.last_error = Some((400, "Bad Request"));
            return Err(ActionResult::Ret(-1));
        };
        if let Some(h) = table.find(key) {
            table.retransmission(h);
            self.flush_tm();
            ser_log!(L_DBG, "tm: retransmission absorbed");
            return Err(ActionResult::Ret(0));
        }
        if table.len() >= max_transactions() && !table.evict_lingering() {
            return Err(self.refuse_new_transaction(ctx));
        }
        let Some(table) = self.table() else {
            return Err(ActionResult::Ret(-1));
        };
        let h = table.create(
            NewServer {
                key,
                method: ctx.msg.method(),
                request: exact(&ctx.msg),
                src: ctx.src,
                local,
                proto,
                reply_dest,
                flags: ctx.flags(),
                replicate,
                notify,
            },
            now,
        );
        crate::modules::tm::TmState::of(ctx).txn = Some(h);
        Ok(h)
    }

    /// The transaction table is full ([`max_transactions`]): the request is answered `503` with
    /// `Retry-After` (an ACK is dropped) and the script ends, as for an absorbed retransmission.
    #[cold]
    fn refuse_new_transaction(&mut self, ctx: &Ctx) -> ActionResult {
        ser_log!(
            L_DBG,
            "tm: transaction table full: request from {} refused",
            ctx.src
        );
        if ctx.msg.method() != Method::Ack {
            self.shared.services.stats.overloaded(self.shard); // mgmt: overload_503
            super::env::send_reply(
                self.shared,
                self.shard,
                self.pid,
                ctx.src,
                self.local,
                self.proto,
                &ctx.msg,
                503,
                b"Service Unavailable",
                &[(b"Retry-After", b"5")],
                &[],
                &[],
                self.out,
            );
        }
        ActionResult::Ret(0)
    }

    /// Where each URI of this relay goes; `Err` = suspend (DNS) or fail.
    fn branch_dests(
        &mut self,
        ctx: &mut Ctx,
        how: &Relay,
        failure: bool,
    ) -> Result<SmallVec<[(UriBuf, Dest); 2]>, ActionResult> {
        let mut uris: SmallVec<[UriBuf; 2]> = SmallVec::new();
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
                Ok(Ok(d)) => out.push((uri, d)),
                Ok(Err(why)) => {
                    ser_log!(L_ERR, "t_relay: {why}");
                    ctx.last_error = Some(error_status(why));
                }
                Err((job, _)) if !how.after_dns => {
                    crate::modules::tm::TmState::of(ctx).pending_relay = Some(how.clone());
                    return Err(ctx.suspend_with(job, crate::modules::tm::redo_relay));
                }
                Err(_) => {
                    ser_log!(L_ERR, "t_relay: destination did not resolve");
                    ctx.last_error = Some((478, "Unresolvable destination"));
                }
            }
        }
        Ok(out)
    }

    /// A relay that could not send: the transaction it made goes away again (not in a
    /// failure_route, whose transaction lives on).
    fn abandon(&mut self, ctx: &mut Ctx, h: TxnHandle, failure: bool) {
        if !failure {
            if let Some(t) = self.table() {
                t.remove(h);
            }
            crate::modules::tm::TmState::of(ctx).txn = None;
        }
    }

    /// CANCEL (§16.10): answered 200 in its own transaction and sent on every pending branch of
    /// the INVITE; a CANCEL for no transaction of ours is forwarded statelessly.
    fn relay_cancel(&mut self, ctx: &mut Ctx, how: &Relay) -> ActionResult {
        let Some(table) = self.table() else {
            return ActionResult::Ret(-1);
        };
        let invite = table
            .key(&ctx.msg, Some(Method::Invite))
            .and_then(|k| table.find(k));
        let Some(inv) = invite else {
            return self.relay_stateless(ctx, how);
        };
        let h = match self.newtran(ctx, false) {
            Ok(h) => h,
            Err(r) => return r,
        };
        let now = self.now;
        if let Some(t) = self.table() {
            t.on_cancel(inv, h, &ctx.msg, now);
        }
        self.flush_tm();
        ActionResult::Ret(1)
    }

    fn relay(&mut self, ctx: &mut Ctx, how: &Relay) -> ActionResult {
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
            // acc's report_ack hears of it (SER's TMCB_E2EACK); only a module hook, nothing else.
            crate::modules::acc::on_e2e_ack(
                &ctx.msg,
                ctx.uri(),
                self.configs,
                Some(&self.shared.services),
            );
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
            match crate::modules::tm::TmState::txn(ctx) {
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
            self.abandon(ctx, h, failure);
            ctx.last_error.get_or_insert((500, "No destination"));
            return ActionResult::Ret(-1);
        }
        match forward::process_max_forwards(&mut ctx.msg, 70) {
            Ok(MaxForwards::Exhausted) => {
                ctx.last_error = Some((483, "Too Many Hops"));
                self.abandon(ctx, h, failure);
                return ActionResult::Ret(-1);
            }
            Ok(_) => {}
            Err(e) => {
                ser_log!(L_DBG, "t_relay: bad Max-Forwards: {e}");
                ctx.last_error = Some((400, "Bad Max-Forwards"));
                return ActionResult::Ret(-1);
            }
        }
        let now = self.now;
        let original_uri: SmallVec<[u8; 128]> = SmallVec::from_slice(ctx.original_uri());
        let failure_route = crate::modules::tm::TmState::of(ctx).failure_route.take();
        let reply_route = crate::modules::tm::TmState::of(ctx).reply_route;
        let record_routed = crate::modules::rr::RecordRouted::of(ctx, self);
        // Our Via per destination family/transport; the message clone per branch shares the bytes.
        let mut sent = 0usize;
        for (uri, d) in dests {
            let local = self.via_local(&d);
            let Some(table) = self.table() else {
                return ActionResult::Ret(-1);
            };
            let branch = match table.next_branch(h) {
                Ok(b) => b.encode(),
                Err(NoBranch::Canceled) => {
                    ser_log!(
                        L_WARN,
                        "t_relay: the transaction was canceled: no new branch"
                    );
                    break;
                }
                Err(NoBranch::TooMany) => {
                    ser_log!(L_ERR, "t_relay: too many branches");
                    break;
                }
                Err(NoBranch::Gone) => return ActionResult::Ret(-1),
            };
            let mut m = ctx.msg.clone();
            if uri[..] != original_uri[..] && m.set_request_uri(&uri).is_err() {
                continue;
            }
            if let Some(rr) = &record_routed {
                crate::modules::rr::outbound_record_route(
                    &mut m,
                    rr,
                    local,
                    super::env::to_ir_proto(d.proto),
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
            forward::add_via(&mut m, proto_name(d.proto), &sent_by, &branch);
            if let Some(table) = self.table() {
                if table.add_branch(h, exact(&m), d.addr, d.proto, local, now) {
                    sent += 1;
                }
            }
        }
        ctx.clear_branches();
        let Some(table) = self.table() else {
            return ActionResult::Ret(-1);
        };
        table.set_failure_route(h, failure_route);
        if reply_route.is_some() {
            table.set_reply_route(h, reply_route);
        }
        if sent == 0 {
            self.abandon(ctx, h, failure);
            ctx.last_error.get_or_insert((500, "No destination"));
            self.flush_tm();
            return ActionResult::Ret(-1);
        }
        // A proxy answers INVITE with 100 at once (§16.2), so the caller stops retransmitting.
        if method == Method::Invite && !failure && !how.replicate {
            table.reply(
                h,
                &ctx.msg,
                100,
                b"trying -- your call is important to us",
                &[],
                b"",
                now,
            );
        }
        self.flush_tm();
        ActionResult::Ret(1)
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
        self.relay(ctx, how)
    }

    fn t_reply(&mut self, ctx: &mut Ctx, code: u16, reason: &[u8]) -> ActionResult {
        if ctx.msg.method() == Method::Ack {
            return ActionResult::Ret(1);
        }
        let Some(h) = crate::modules::tm::TmState::txn(ctx) else {
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
        let now = self.now;
        let Some(table) = self.table.as_deref_mut() else {
            return ActionResult::Ret(-1);
        };
        table.configure(self.timers);
        let sent = table.reply(
            h,
            &ctx.msg,
            code,
            reason,
            &contacts,
            &ctx.reply_headers,
            now,
        );
        self.flush_tm();
        ActionResult::from_bool(sent)
    }

    fn t_lookup_request(&mut self, ctx: &mut Ctx) -> ActionResult {
        let Some(table) = self.table() else {
            return ActionResult::Ret(-1);
        };
        let found = table.key(&ctx.msg, None).and_then(|k| table.find(k));
        if let Some(h) = found {
            crate::modules::tm::TmState::of(ctx).txn = Some(h);
        }
        ActionResult::from_bool(found.is_some())
    }

    fn t_retransmit_reply(&mut self, ctx: &mut Ctx) -> ActionResult {
        let Some(h) = crate::modules::tm::TmState::txn(ctx) else {
            return ActionResult::Ret(-1);
        };
        let Some(table) = self.table() else {
            return ActionResult::Ret(-1);
        };
        let sent = table.retransmit_reply(h);
        self.flush_tm();
        ActionResult::from_bool(sent)
    }

    fn t_release(&mut self, ctx: &mut Ctx) -> ActionResult {
        let Some(h) = crate::modules::tm::TmState::of(ctx).txn.take() else {
            return ActionResult::Ret(-1);
        };
        let Some(table) = self.table() else {
            return ActionResult::Ret(-1);
        };
        table.remove(h);
        ActionResult::Ret(1)
    }
}
