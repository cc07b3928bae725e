//! Replies: those from downstream ([`Table::on_reply`]), those ser writes itself
//! ([`Table::reply`]), and the §16.7 response context that decides what goes upstream — every
//! provisional reply but 100, every 2xx, and once all branches are final the best of them (a 6xx
//! wins and ends the forking; 401/407 challenges of all branches are merged into one reply; a 503
//! goes up as 500), unless a failure_route armed for the transaction gets to try more branches.

use std::time::Instant;

use bytes::Bytes;
use smallvec::SmallVec;

use super::cell::{Cell, Client, Server};
use super::{Action, Table};
use crate::proxy::sl::{self, SlReply};
use crate::txn::build;
use crate::txn::{better_final, upstream_code, BranchId, TmStats, TxnHandle};
use crate::wire::{HeaderId, Message};

impl Table {
    /// Sends `bytes` upstream as the reply with status `code` (the server transaction allowing).
    ///
    /// `branch`: the branch whose reply this is (`None` for ours), for the completion report.
    fn send_upstream(
        &mut self,
        h: TxnHandle,
        code: u16,
        bytes: Bytes,
        local: bool,
        branch: Option<usize>,
        now: Instant,
    ) {
        let cfg = self.cfg;
        let counters = self.counters.clone();
        let shard = usize::from(self.shard);
        let Some(c) = self.get(h) else { return };
        if matches!(c.server, Server::Local(_)) {
            // A t_uac transaction: its "upstream" is the caller's callback, told once.
            if code >= 200 {
                let reason = reason_of(&bytes);
                if let Some(a) = finish_local(c, code, reason, Some(bytes), &counters, shard) {
                    self.actions.push_back(a);
                }
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
        c.last_reply = Some(bytes.clone());
        let (dest, proto, from) = (c.reply_dest, c.proto, c.local);
        let mut completed = None;
        // The first final reply completes the transaction; a 183 (early media) before it is
        // reported too, for the hooks that account it.
        let report = c.notify && !c.replied && (code >= 200 || code == 183);
        if report {
            completed = Some(Box::new(super::Completed {
                txn: h,
                request: c.request.clone(),
                branch: branch
                    .and_then(|i| c.branches.get(i))
                    .map(|b| b.request.clone()),
                code,
                reply: bytes.clone(),
                flags: c.flags,
                src: c.src,
            }));
        }
        if code >= 200 {
            let first = !c.replied;
            c.replied = true;
            if let Some(st) = counters.stats(shard) {
                if first {
                    TmStats::inc(&st.waiting);
                    st.completed(code);
                }
                if local {
                    TmStats::inc(&st.replied_locally);
                }
            }
        }
        self.send(bytes, dest, proto, from);
        if let Some(done) = completed {
            self.actions.push_back(Action::Completed(done));
        }
    }

    /// A reply ser writes itself for `req` (the request of `h`), as sl does: same To-tag for every
    /// reply to one request.
    fn build_local_reply(
        &mut self,
        req: &Message,
        code: u16,
        reason: &[u8],
        contacts: &[&[u8]],
        raw: &[u8],
    ) -> Bytes {
        let tag = self.replies.tagger.tag_for(req);
        self.scratch.clear();
        sl::write_reply(
            &mut self.scratch,
            req,
            &SlReply {
                code,
                reason,
                contacts,
                headers: &[],
                raw,
                server: self.replies.server.as_deref(),
                warning: None,
            },
            &tag,
        );
        Bytes::copy_from_slice(&self.scratch)
    }

    /// `t_reply` (and the 100 of `t_relay`, the 200 to a CANCEL): a reply of ours to `req`, the
    /// request of `h`, upstream. The first final reply CANCELs the pending branches (§16.10).
    /// `true` when the transaction has sent a reply (this one, or one before it).
    #[allow(clippy::too_many_arguments)]
    pub fn reply(
        &mut self,
        h: TxnHandle,
        req: &Message,
        code: u16,
        reason: &[u8],
        contacts: &[&[u8]],
        raw: &[u8],
        now: Instant,
    ) -> bool {
        let Some(before) = self.cell(h).map(|c| c.replied) else {
            return false;
        };
        let bytes = self.build_local_reply(req, code, reason, contacts, raw);
        self.send_upstream(h, code, bytes, code >= 200, None, now);
        let after = self.cell(h).map(|c| (c.replied, c.last_reply.is_some()));
        if code >= 200 && !before && after.is_some_and(|a| a.0) {
            self.cancel_branches(h, None, now);
        }
        self.schedule(h);
        after.is_some_and(|a| a.1)
    }

    /// A reply an application outside the script writes for the request of `h` (the FIFO's
    /// `t_reply`, a media server behind module vm): its status, To tag (empty: ours), extra
    /// header lines (`Name: value\r\n` each, Content-Type among them when there is a body) and
    /// body. `false` when the transaction is gone or its server transaction refuses the reply.
    #[allow(clippy::too_many_arguments)]
    pub fn reply_external(
        &mut self,
        h: TxnHandle,
        code: u16,
        reason: &[u8],
        to_tag: &[u8],
        headers: &[u8],
        body: &[u8],
        now: Instant,
    ) -> bool {
        let Some(c) = self.cell(h) else { return false };
        if matches!(c.server, Server::Local(_) | Server::Replicate) {
            return false;
        }
        let before = c.replied;
        let Ok(req) = Message::parse(c.request.clone()) else {
            return false;
        };
        let tag;
        let to_tag = if to_tag.is_empty() {
            tag = self.replies.tagger.tag_for(&req);
            tag.as_bytes()
        } else {
            to_tag
        };
        self.scratch.clear();
        {
            let mut b = crate::wire::builder::ReplyBuilder::new(
                &mut self.scratch,
                &req,
                code,
                reason,
                to_tag,
            );
            b.raw_lines(headers);
            if let Some(s) = &self.replies.server {
                b.header(b"Server", s);
            }
            b.finish(None, body);
        }
        let bytes = Bytes::copy_from_slice(&self.scratch);
        let sent_before = self.cell(h).and_then(|c| c.last_reply.clone());
        self.send_upstream(h, code, bytes, true, None, now);
        let after = self.cell(h).map(|c| (c.replied, c.last_reply.clone()));
        if code >= 200 && !before && after.as_ref().is_some_and(|a| a.0) {
            self.cancel_branches(h, None, now);
        }
        self.schedule(h);
        // Sent when the last reply is this one (the server transaction let it through).
        after.is_some_and(|(_, last)| last.is_some() && last != sent_before)
    }

    /// A reply we generate for the request of cell `h` (408, 500).
    pub(super) fn local_reply(&mut self, h: TxnHandle, code: u16, reason: &[u8], now: Instant) {
        let counters = self.counters.clone();
        let shard = usize::from(self.shard);
        let Some(c) = self.get(h) else { return };
        if matches!(c.server, Server::Local(_)) {
            let reason = String::from_utf8_lossy(reason).into_owned();
            if let Some(a) = finish_local(c, code, reason, None, &counters, shard) {
                self.actions.push_back(a);
            }
            return;
        }
        let Ok(req) = Message::parse(c.request.clone()) else {
            return;
        };
        let bytes = self.build_local_reply(&req, code, reason, &[], b"");
        self.send_upstream(h, code, bytes, true, None, now);
    }

    /// §16.7 steps 6-8: all branches have a final reply — pick the best and send it, or run the
    /// failure_route armed for the transaction.
    pub(super) fn branches_done(&mut self, h: TxnHandle, now: Instant) {
        let Some(c) = self.get(h) else { return };
        if c.replied || c.in_failure || !c.all_branches_final() {
            return;
        }
        // §16.7 step 5: after a 6xx no new branch may start, so no failure_route runs (SER ran it).
        let global_failure = c
            .branches
            .iter()
            .any(|b| matches!(b.final_reply, Some((code, _)) if code >= 600));
        if let Some(route) = c.failure_route.take() {
            if !global_failure && !matches!(c.server, Server::Replicate | Server::Local(_)) {
                c.in_failure = true;
                self.actions.push_back(Action::Failure { txn: h, route });
                return;
            }
        }
        self.send_best(h, now);
    }

    fn send_best(&mut self, h: TxnHandle, now: Instant) {
        let counters = self.counters.clone();
        let shard = usize::from(self.shard);
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
            self.local_reply(h, 500, b"Server Internal Error", now);
            return;
        };
        if local {
            self.local_reply(h, 408, b"Request Timeout", now);
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
            let reason = reason_of(&bytes);
            if let Some(a) = finish_local(c, code, reason, Some(bytes), &counters, shard) {
                self.actions.push_back(a);
            }
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
            self.send_upstream(h, up, b, false, Some(i), now);
        }
    }

    /// A reply from downstream whose top Via carries branch `id` of this table. `false` when it
    /// is not ours (or the transaction is gone): the owner routes it statelessly by Via.
    pub fn on_reply(&mut self, id: BranchId, msg: Message, now: Instant) -> bool {
        let h = TxnHandle {
            slot: id.slot,
            gen: id.gen,
        };
        let cfg = self.cfg;
        let Some(code) = msg.status() else {
            return false;
        };
        let cseq_cancel = msg.cseq().is_ok_and(|c| c.method == b"CANCEL");
        let bi = usize::from(id.branch);
        let mut ack: Option<Bytes> = None;
        let (to_tu, dest, proto, local) = {
            let Some(c) = self.get(h) else { return false };
            let Some(b) = c.branches.get_mut(bi) else {
                return false;
            };
            if cseq_cancel {
                // The answer to our CANCEL: absorbed here (§16.7: responses to CANCEL go nowhere).
                if let Some((ct, _)) = &mut b.cancel {
                    ct.on_response(code, now, &cfg);
                }
                self.settle(h);
                return true;
            }
            let (to_tu, send_ack) = match &mut b.client {
                Client::Invite(ci) => {
                    let r = ci.on_response(code, now, &cfg);
                    (r.to_tu, r.send_ack)
                }
                Client::NonInvite(cn) => (cn.on_response(code, now, &cfg), false),
            };
            if send_ack {
                if let Ok(sent) = Message::parse(b.request.clone()) {
                    let mut buf = bytes::BytesMut::with_capacity(b.request.len());
                    if build::ack(&mut buf, &sent, &msg) {
                        ack = Some(buf.freeze());
                    }
                }
            }
            (to_tu, b.dest, b.proto, b.local)
        };
        if let Some(a) = ack {
            self.send(a, dest, proto, local);
        }
        if to_tu {
            match code {
                100 => {}
                101..=199 => {
                    let wanted = self.get(h).and_then(|c| c.branches.get_mut(bi)).map(|b| {
                        b.provisional = true;
                        std::mem::take(&mut b.cancel_wanted)
                    });
                    if wanted == Some(true) {
                        self.send_cancel(h, bi, now);
                    }
                    let mut m = msg;
                    if let Some(bytes) = strip_top_via(&mut m) {
                        self.send_upstream(h, code, bytes, false, Some(bi), now);
                    }
                }
                200..=299 => {
                    if let Some(b) = self.get(h).and_then(|c| c.branches.get_mut(bi)) {
                        b.final_reply = Some((code, None));
                    }
                    let mut m = msg;
                    if let Some(bytes) = strip_top_via(&mut m) {
                        // Every 2xx goes up (§16.7 step 9); the server transaction lets them pass.
                        self.send_upstream(h, code, bytes, false, Some(bi), now);
                    }
                    self.cancel_branches(h, Some(bi), now);
                }
                _ => {
                    // A copy: a slice would pin the whole receive chunk (128 KB) until the
                    // transaction ends.
                    let kept = Bytes::copy_from_slice(&msg.buffer()[..msg.len()]);
                    if let Some(b) = self.get(h).and_then(|c| c.branches.get_mut(bi)) {
                        b.final_reply = Some((code, Some(kept)));
                    }
                    if code >= 600 {
                        self.cancel_branches(h, Some(bi), now);
                    }
                    self.branches_done(h, now);
                }
            }
        }
        self.settle(h);
        true
    }

    /// A failure_route for `h` has ended: if it neither replied nor started new branches, the best
    /// reply goes upstream now.
    pub fn failure_done(&mut self, h: TxnHandle, now: Instant) {
        let Some(c) = self.get(h) else { return };
        c.in_failure = false;
        if !c.replied && c.all_branches_final() {
            // Nothing new: the route may have armed another failure_route, but there is nothing
            // it could fail with; send the best reply.
            c.failure_route = None;
            self.send_best(h, now);
        }
        self.settle(h);
    }
}

/// Ends a `t_uac` transaction for its caller: the completion (once) and the counters.
pub(super) fn finish_local(
    c: &mut Cell,
    code: u16,
    reason: String,
    reply: Option<Bytes>,
    counters: &crate::txn::TmCounters,
    shard: usize,
) -> Option<Action> {
    let Server::Local(done) = &mut c.server else {
        return None;
    };
    let done = done.take()?;
    let first = !c.replied;
    c.replied = true;
    if let Some(st) = counters.stats(shard) {
        if first {
            TmStats::inc(&st.waiting);
            st.completed(code);
        }
    }
    Some(Action::UacDone {
        done,
        result: super::UacResult {
            code,
            reason,
            reply,
        },
    })
}

fn reason_of(reply: &Bytes) -> String {
    Message::parse(reply.clone())
        .ok()
        .and_then(|m| m.reason().map(|r| String::from_utf8_lossy(r).into_owned()))
        .unwrap_or_default()
}

/// The reply with our Via removed, written (`None` when the top Via cannot be removed).
fn strip_top_via(m: &mut Message) -> Option<Bytes> {
    let top = m.vias().next()?.ok()?;
    let (index, span) = (top.index, top.span);
    m.delete_header_value(index, span).ok()?;
    Some(super::exact(m))
}
