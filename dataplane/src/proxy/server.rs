//! The proxy handler: what a shard runs for every packet when ser routes with a script.
//!
//! Per request: parse (leniently, so a bad request line can still be answered) → the §16.3 checks
//! ([`super::precheck`]) → absorb ACKs of our own stateless replies → `received`/`rport` on the
//! sender's Via → run `route[0]` of the current [`Program`] over a [`Ctx`] with a [`ShardEnv`] that
//! forwards, sends and replies through the shard's [`Outbox`]. A script that suspends (DNS, exec, DB)
//! is parked under a job id; the job goes to the controlplane and the script resumes when
//! [`ShardMsg::JobDone`] comes back to this shard. Per response: a reply whose branch is one of our
//! stateful ones goes to the transaction table of the shard that owns it ([`super::stateful`]);
//! any other is routed statelessly ([`super::forward::route_response`]). The shard's tick drives
//! the transaction timers; a transaction that fails runs its failure_route here.
//!
//! The [`Program`] is read from an `ArcSwap` once per message: a reload (SIGHUP) makes new messages
//! use the new program, while a parked script finishes on the program it started with.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use smallvec::SmallVec;

use super::forward::{self, HopHost, MaxForwards, ResponseRoute};
use super::precheck::{self, CheckOptions, Verdict};
use super::sl::{self, SlReply, SlTagger};
use super::stateful::{Io, Next, ReplyMatch, Table, TmShared, UacRequest};
use crate::dns::{self, DnsCache, DnsKeyRef, Lookup, SipTarget};
use crate::offload::{Job, JobResult};
use crate::script::ctx::PendingTarget;
use crate::script::env::{ActionResult, Env, Target, TargetHost};
use crate::script::exec::{self, Outcome};
use crate::script::ir::Program;
use crate::script::myself::Myself;
use crate::script::Ctx;
use crate::ser_log;
use crate::shard::log::{L_DBG, L_ERR, L_WARN};
use crate::shard::{Handler, Outbox};
use crate::transport::{Packet, Proto};
use crate::txn::TxnHandle;
use crate::wire::uri::{Host, Uri};
use crate::wire::via::Transport;
use crate::wire::{Limits, Message, Method};

/// How long a reverse-DNS answer is used for `rev_dns`.
const REV_DNS_TTL: std::time::Duration = std::time::Duration::from_secs(300);
/// How often expired DNS cache entries are swept.
const DNS_PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// Most addresses kept in the reverse-DNS cache.
const REV_DNS_MAX: usize = 65_536;

/// A job handed to the controlplane, with where its answer goes.
#[derive(Debug)]
pub struct JobRequest {
    pub shard: usize,
    pub id: u64,
    pub job: Job,
}

/// Messages a proxy shard receives in its inbox.
#[derive(Debug)]
pub enum ShardMsg {
    /// The answer to job `id`.
    JobDone { id: u64, result: JobResult },
    /// A reply that arrived on another shard for a transaction of this one.
    Reply(Packet),
    /// `t_uac`: send this request statefully.
    Uac(Box<UacRequest>),
}

/// Settings of the proxy taken from the core options.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub reply_to_via: bool,
    pub check_via: bool,
    pub sip_warning: bool,
    pub server_signature: bool,
    /// The `Server:` value.
    pub server_header: String,
    /// Answer Max-Forwards 0 with 483 before the script (when the script does not load maxfwd).
    pub enforce_max_forwards: bool,
    /// SER's `dns`: a Via sent-by name that resolves (in the DNS cache) to the source address gets
    /// no `received`.
    pub dns: bool,
    /// SER's `rev_dns`: the same decision by the source address's reverse (PTR) names.
    pub rev_dns: bool,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            reply_to_via: false,
            check_via: false,
            sip_warning: false,
            server_signature: true,
            server_header: format!(
                "Sip EXpress router ({} ({}/{}))",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::ARCH,
                std::env::consts::OS
            ),
            enforce_max_forwards: true,
            dns: false,
            rev_dns: false,
        }
    }
}

/// A compiled program with what is derived from it for the shards.
pub struct Loaded {
    pub program: Program,
    /// `myself`: the program's listen/alias options plus the addresses actually bound.
    pub myself: Myself,
    /// tm's timers from the program's parameters (read once per load).
    pub timers: crate::txn::TimerConfig,
}

impl Loaded {
    /// `program` with `myself` built from its options and the `local` addresses bound.
    pub fn new(program: Program, local: &[(SocketAddr, Proto)]) -> Loaded {
        let mut myself = Myself::from_options(&program.options);
        for (a, _) in local {
            if a.ip().is_unspecified() {
                // Every interface: the loopback addresses and this host's name are ours too.
                myself.add_addr(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), Some(a.port()));
                myself.add_addr(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), Some(a.port()));
                if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
                    myself.add_name(h.trim(), Some(a.port()));
                }
            } else {
                myself.add_addr(a.ip(), Some(a.port()));
            }
        }
        Loaded {
            timers: super::stateful::timer_config(&program),
            program,
            myself,
        }
    }
}

/// What every shard's handler shares.
pub struct Shared {
    /// The current program; swapped on reload.
    pub program: ArcSwap<Loaded>,
    pub settings: ProxySettings,
    pub sl: SlTagger,
    /// Salt of stateless branches (per server).
    pub salt: u64,
    /// Our listen addresses with their transport.
    pub local: Vec<(SocketAddr, Proto)>,
    /// Reverse DNS answers for `rev_dns` (names of a source address, until when they are valid).
    pub rev_dns: papaya::HashMap<IpAddr, (Arc<[String]>, Instant)>,
    /// RFC 3263 answers, filled by the controlplane, read here without blocking.
    pub dns: Arc<DnsCache>,
    /// Where jobs go (the controlplane's job runner).
    pub jobs: crossbeam_channel::Sender<JobRequest>,
    /// Stateless reply counters, one per shard (`sl_stats`).
    pub sl_stats: Vec<sl::SlStats>,
    /// Locations, credentials, the DB write queue: what module functions share.
    pub services: Arc<crate::services::Services>,
    /// Transaction statistics, table sizes, the shards' inboxes (module tm).
    pub tm: TmShared,
}

struct Parked {
    ctx: Ctx,
    program: Arc<Loaded>,
    local: SocketAddr,
    proto: Proto,
    /// A failure_route of this transaction is what waits.
    failure: Option<TxnHandle>,
}

/// The per-shard handler.
pub struct ProxyHandler {
    shared: Arc<Shared>,
    shard: usize,
    parked: HashMap<u64, Parked>,
    /// Background lookups in flight (no script waits for them): job id → the source address a
    /// reverse lookup is for.
    background: HashMap<u64, IpAddr>,
    /// When shard 0 last swept expired DNS entries.
    last_purge: Instant,
    next_job: u64,
    pid: u32,
    /// This shard's transactions.
    table: Table,
}

impl ProxyHandler {
    pub fn new(shared: Arc<Shared>, shard: usize) -> ProxyHandler {
        let table = Table::new(shard, shared.salt);
        ProxyHandler {
            table,
            shared,
            shard,
            parked: HashMap::new(),
            background: HashMap::new(),
            last_purge: Instant::now(),
            next_job: 0,
            pid: std::process::id(),
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
            .send(JobRequest {
                shard: self.shard,
                id,
                job,
            })
            .is_ok()
        {
            self.background.insert(id, ip);
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

    fn on_request(&mut self, pkt: &Packet, mut msg: Message, out: &mut Outbox) {
        let opts = CheckOptions {
            supported: precheck::SUPPORTED,
            enforce_max_forwards: self.shared.settings.enforce_max_forwards,
        };
        let refused = match precheck::check(&msg, &opts) {
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
            if !precheck::answerable(&msg) {
                // No Via or CSeq to copy: a reply would match no client transaction.
                ser_log!(
                    L_DBG,
                    "dropping unanswerable request from {}: {reason}",
                    pkt.src
                );
                self.shared.services.stats.dropped(self.shard); // mgmt: dropped counter
                return;
            }
            // The refusal tells a client behind NAT its address too (RFC 3261 §18.2.1).
            let _ = forward::mark_received(&mut msg, pkt.src);
            let headers: SmallVec<[(&[u8], &[u8]); 1]> = if list.is_empty() {
                SmallVec::new()
            } else {
                SmallVec::from_slice(&[(&b"Unsupported"[..], &list[..])])
            };
            self.reply(
                pkt.src,
                pkt.local,
                pkt.proto,
                &msg,
                code,
                reason.as_bytes(),
                &headers,
                &[],
                out,
            );
            return;
        }
        if self.shared.sl.is_own_ack(&msg) {
            if let Some(st) = self.shared.sl_stats.get(self.shard) {
                st.acks_absorbed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            ser_log!(
                L_DBG,
                "absorbed ACK for our stateless reply from {}",
                pkt.src
            );
            return;
        }
        // SER's dns / rev_dns: does the Via's sent-by name stand for the source address? Answered
        // from caches only (the hot path never waits for DNS); a name not known yet gets
        // `received` (RFC 3261 always allows it) and a background lookup fills the cache for the
        // next request from that sender.
        let settings = &self.shared.settings;
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
                    .get(&DnsKeyRef::new(name, Some(0), None, false), Instant::now())
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
                    Some((names, until)) if *until > Instant::now() => {
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
        let marked = forward::mark_received_with(&mut msg, pkt.src, &mut name_is_src);
        if let Err(e) = marked {
            ser_log!(L_DBG, "cannot mark received on Via from {}: {e}", pkt.src);
        }
        if let Some(job) = fill {
            self.background(job, src_ip);
        }
        if msg.method() == Method::Ack && self.table.absorb_ack(&msg) {
            ser_log!(
                L_DBG,
                "absorbed ACK for our negative reply from {}",
                pkt.src
            );
            return;
        }
        let program = self.shared.program.load_full();
        let mut ctx = Ctx::new(msg, pkt.src, pkt.local, to_ir_proto(pkt.proto));
        let outcome = {
            let mut env = ShardEnv {
                shard: self.shard,
                out,
                shared: &self.shared,
                program: &program.program,
                timers: program.timers,
                myself: &program.myself,
                local: pkt.local,
                proto: pkt.proto,
                pid: self.pid,
                table: Some(&mut self.table),
            };
            exec::exec(&program.program, &mut ctx, &mut env)
        };
        self.after_run(outcome, ctx, program, pkt.local, pkt.proto, None, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn after_run(
        &mut self,
        outcome: Outcome,
        ctx: Ctx,
        program: Arc<Loaded>,
        local: SocketAddr,
        proto: Proto,
        failure: Option<TxnHandle>,
        out: &mut Outbox,
    ) {
        if !matches!(outcome, Outcome::Suspended(_)) {
            if let Some(h) = failure {
                let mut io = Io {
                    out,
                    shared: &self.shared,
                    shard: self.shard,
                };
                let next = self.table.failure_done(h, &mut io);
                self.next(next, out);
            }
            return;
        }
        if let Outcome::Suspended(job) = outcome {
            self.next_job += 1;
            let id = self.next_job;
            let req = JobRequest {
                shard: self.shard,
                id,
                job,
            };
            ser_log!(L_DBG, "script suspended on job {id}: {:?}", req.job);
            if self.shared.jobs.send(req).is_err() {
                ser_log!(L_ERR, "job runner is gone: dropping a suspended request");
                return;
            }
            self.parked.insert(
                id,
                Parked {
                    ctx,
                    program,
                    local,
                    proto,
                    failure,
                },
            );
        }
    }

    /// Runs what the transaction table asked for.
    fn next(&mut self, next: Next, out: &mut Outbox) {
        if let Next::Failure(h, route) = next {
            self.run_failure(h, route, out);
        }
    }

    /// failure_route `route` for transaction `h`: over the request as it was routed, with its
    /// flags; `t_relay` there adds branches to the same transaction, `t_reply` answers it.
    fn run_failure(&mut self, h: TxnHandle, route: crate::script::ir::RouteId, out: &mut Outbox) {
        let Some((request, src, local, proto, flags)) = self.table.failure_request(h) else {
            return;
        };
        let parsed = Message::parse_with(request, &Self::limits(proto));
        let program = self.shared.program.load_full();
        let Ok(msg) = parsed else {
            let mut io = Io {
                out,
                shared: &self.shared,
                shard: self.shard,
            };
            let next = self.table.failure_done(h, &mut io);
            self.next(next, out);
            return;
        };
        let mut ctx = Ctx::new(msg, src, local, to_ir_proto(proto));
        for f in 0..32 {
            if flags & (1 << f) != 0 {
                ctx.set_flag(f);
            }
        }
        ctx.tm.txn = Some(h);
        let outcome = {
            let mut env = ShardEnv {
                shard: self.shard,
                out,
                shared: &self.shared,
                program: &program.program,
                timers: program.timers,
                myself: &program.myself,
                local,
                proto,
                pid: self.pid,
                table: Some(&mut self.table),
            };
            exec::exec_route(&program.program, route, &mut ctx, &mut env)
        };
        self.after_run(outcome, ctx, program, local, proto, Some(h), out);
    }

    fn on_response(&mut self, pkt: &Packet, mut msg: Message, out: &mut Outbox) {
        if let Err(e) = msg.check() {
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
                let mut io = Io {
                    out,
                    shared: &self.shared,
                    shard: self.shard,
                };
                if let ReplyMatch::Done(next) = self.table.on_reply(id, msg, &mut io) {
                    self.next(next, out);
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

#[allow(clippy::too_many_arguments)]
fn send_reply(
    shared: &Shared,
    shard: usize,
    pid: u32,
    src: SocketAddr,
    local: SocketAddr,
    proto: Proto,
    msg: &Message,
    code: u16,
    reason: &[u8],
    headers: &[(&[u8], &[u8])],
    contacts: &[&[u8]],
    raw: &[u8],
    out: &mut Outbox,
) {
    let s = &shared.settings;
    let warning = s.sip_warning.then(|| {
        let uri = msg.request_uri_bytes().unwrap_or_default();
        sl::warning_value(
            local,
            pid,
            src,
            uri,
            msg.current_request_uri().unwrap_or(uri),
            msg.vias().count(),
        )
    });
    let tag = shared.sl.tag_for(msg);
    let mut buf = out.buffer(512 + msg.len().min(4096));
    sl::write_reply(
        &mut buf,
        msg,
        &SlReply {
            code,
            reason,
            contacts,
            headers,
            raw,
            server: s.server_signature.then_some(s.server_header.as_bytes()),
            warning: warning.as_deref(),
        },
        &tag,
    );
    let dest = reply_destination(msg, src, proto, s.reply_to_via);
    out.send(buf.freeze(), dest, proto, Some(local));
    if let Some(st) = shared.sl_stats.get(shard) {
        st.count(code);
    }
}

/// RFC 3261 §18.2.2 / RFC 3581: where a reply to this request goes. SER's default is the source
/// address; with `reply_to_via`, the top Via (received/rport aware). Streams always use the source.
pub(super) fn reply_destination(
    msg: &Message,
    src: SocketAddr,
    proto: Proto,
    reply_to_via: bool,
) -> SocketAddr {
    if proto != Proto::Udp || !reply_to_via {
        return src;
    }
    let Ok(via) = msg.top_via() else { return src };
    if via.rport().is_some() {
        return src;
    }
    match forward::via_destination(&via).host {
        HopHost::Ip(ip) => SocketAddr::new(ip, via.port.unwrap_or(5060)),
        HopHost::Name(_) => src,
    }
}

fn write(msg: &Message, out: &mut Outbox) -> bytes::Bytes {
    let mut buf = out.buffer(msg.written_len());
    msg.write_to(&mut buf);
    buf.freeze()
}

pub(crate) fn to_ir_proto(p: Proto) -> crate::script::ir::Proto {
    match p {
        Proto::Udp => crate::script::ir::Proto::Udp,
        Proto::Tcp => crate::script::ir::Proto::Tcp,
    }
}

fn transport_to_proto(t: Transport) -> Proto {
    match t {
        Transport::Tcp | Transport::Tls | Transport::Ws | Transport::Wss | Transport::Sctp => {
            Proto::Tcp
        }
        _ => Proto::Udp,
    }
}

pub(super) fn proto_name(p: Proto) -> &'static [u8] {
    match p {
        Proto::Udp => b"UDP",
        Proto::Tcp => b"TCP",
    }
}

impl Handler for ProxyHandler {
    type Msg = ShardMsg;

    fn on_packet(&mut self, pkt: Packet, out: &mut Outbox) {
        let limits = Self::limits(pkt.proto);
        match Message::parse_lenient(pkt.data.clone(), &limits) {
            Ok((mut msg, None)) => {
                if msg.has_bare_lf() {
                    // What ser writes from it (forwards, branches) uses CRLF throughout.
                    msg.crlf_line_ends();
                }
                if msg.is_request() {
                    self.on_request(&pkt, msg, out);
                } else {
                    self.on_response(&pkt, msg, out);
                }
            }
            Ok((mut msg, Some(e))) => {
                // A bad request line: answer (505 / 400) if we can copy the headers, never an ACK.
                if !precheck::answerable(&msg)
                    || msg
                        .header_value(crate::wire::HeaderId::CSeq)
                        .is_some_and(|c| c.ends_with(b"ACK"))
                {
                    ser_log!(L_DBG, "dropping unanswerable request from {}: {e}", pkt.src);
                    self.shared.services.stats.dropped(self.shard); // mgmt: dropped counter
                    return;
                }
                ser_log!(L_DBG, "bad request line from {}: {e}", pkt.src);
                let _ = forward::mark_received(&mut msg, pkt.src);
                self.reply(
                    pkt.src,
                    pkt.local,
                    pkt.proto,
                    &msg,
                    e.kind.status(),
                    e.kind.reason().as_bytes(),
                    &[],
                    &[],
                    out,
                );
            }
            Err(e) => match precheck::parse_failure(&pkt.data, &e) {
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
            },
        }
    }

    fn on_tick(&mut self, now: Instant, out: &mut Outbox) {
        let todo = {
            let mut io = Io {
                out,
                shared: &self.shared,
                shard: self.shard,
            };
            self.table.on_tick(now, &mut io)
        };
        for next in todo {
            self.next(next, out);
        }
        // One shard sweeps the shared DNS caches now and then (reads treat expired entries as
        // misses anyway; this only frees their memory).
        if self.shard == 0 && now.duration_since(self.last_purge) >= DNS_PURGE_EVERY {
            self.last_purge = now;
            let purged = self.shared.dns.purge_expired(now);
            self.shared
                .rev_dns
                .pin()
                .retain(|_, (_, until)| *until > now);
            if purged > 0 {
                ser_log!(L_DBG, "DNS cache: {purged} expired entries removed");
            }
        }
    }

    fn on_message(&mut self, msg: ShardMsg, out: &mut Outbox) {
        match msg {
            ShardMsg::JobDone { id, result } => {
                ser_log!(L_DBG, "job {id} answered: {result:?}");
                if let Some(ip) = self.background.remove(&id) {
                    // A forward lookup already filled the DNS cache in the controlplane; a reverse
                    // one is kept here (negative answers too, so they are not asked again at once).
                    let names = match result {
                        JobResult::Names(n) => Some(n),
                        JobResult::Failed(_) => Some(Vec::new()),
                        _ => None,
                    };
                    if let Some(names) = names {
                        let until = Instant::now() + REV_DNS_TTL;
                        let map = self.shared.rev_dns.pin();
                        if map.len() < REV_DNS_MAX || map.contains_key(&ip) {
                            map.insert(ip, (Arc::from(names), until));
                        }
                    }
                    return;
                }
                let Some(mut p) = self.parked.remove(&id) else {
                    ser_log!(L_WARN, "answer for unknown job {id}");
                    return;
                };
                let outcome = {
                    let mut env = ShardEnv {
                        shard: self.shard,
                        out,
                        shared: &self.shared,
                        program: &p.program.program,
                        timers: p.program.timers,
                        myself: &p.program.myself,
                        local: p.local,
                        proto: p.proto,
                        pid: self.pid,
                        table: Some(&mut self.table),
                    };
                    exec::resume(&p.program.program, &mut p.ctx, &mut env, result)
                };
                self.after_run(outcome, p.ctx, p.program, p.local, p.proto, p.failure, out);
            }
            ShardMsg::Reply(pkt) => self.on_packet(pkt, out),
            ShardMsg::Uac(req) => {
                let program = self.shared.program.load();
                self.table.configure(program.timers);
                let mut io = Io {
                    out,
                    shared: &self.shared,
                    shard: self.shard,
                };
                self.table.uac(*req, &mut io);
            }
        }
    }
}

/// Finishes a forward/send that waited for DNS: sends to the first address of the answer, or fails
/// (false) with a log line when the name did not resolve.
fn after_dns(ctx: &mut Ctx, env: &mut dyn Env, result: JobResult) -> ActionResult {
    let Some(p) = ctx.pending_target.take() else {
        return ActionResult::Ret(-1);
    };
    let first = match &result {
        JobResult::Targets(t) => t
            .first()
            .map(|t| (t.addr.ip(), Some(t.addr.port()), Some(t.transport))),
        JobResult::Addrs(a) => a.first().map(|ip| (*ip, p.port, None)),
        _ => None,
    };
    match first {
        Some((ip, port, transport)) => {
            let target = Target::Host {
                host: TargetHost::Ip(ip),
                port,
            };
            // The transport RFC 3263 chose, unless the action forced one.
            let proto = p.proto.or(match transport {
                Some(Transport::Tcp | Transport::Tls) => Some(crate::script::ir::Proto::Tcp),
                Some(Transport::Udp) => Some(crate::script::ir::Proto::Udp),
                _ => None,
            });
            if p.send {
                env.send(ctx, &target, proto)
            } else {
                env.forward(ctx, &target, proto)
            }
        }
        None => {
            env.log(
                crate::script::env::level::ERR,
                format!("forward: destination did not resolve: {result:?}").as_bytes(),
            );
            ctx.last_error = Some((478, "Unresolvable destination"));
            ActionResult::Ret(-1)
        }
    }
}

/// The interpreter's view of the shard.
pub struct ShardEnv<'a> {
    pub(super) shard: usize,
    pub(super) out: &'a mut Outbox,
    pub(super) shared: &'a Shared,
    pub(super) program: &'a Program,
    /// tm's timers of `program`.
    pub(super) timers: crate::txn::TimerConfig,
    myself: &'a Myself,
    pub(super) local: SocketAddr,
    pub(super) proto: Proto,
    pid: u32,
    /// The shard's transactions (module tm); `None` makes tm's functions fail.
    pub(super) table: Option<&'a mut Table>,
}

/// The reply status for a forward/send failure (what `sl_reply_error` sends).
pub(super) fn error_status(why: &str) -> (u16, &'static str) {
    if why.contains("resolve") {
        (478, "Unresolvable destination")
    } else if why.contains("URI") {
        (400, "Bad Request URI")
    } else {
        (500, "Server Internal Error")
    }
}

/// A destination host: an address, or a name to resolve.
type HostOrName = Result<IpAddr, SmallVec<[u8; 64]>>;

/// Where a forward goes once names are resolved.
pub(super) struct Dest {
    pub(super) addr: SocketAddr,
    pub(super) proto: Proto,
}

impl ShardEnv<'_> {
    /// Resolves a target without blocking: literal addresses directly, names from the shared DNS
    /// cache (RFC 3263 answers filled by the controlplane); a cache miss becomes a `Resolve` job
    /// (`Err`), and the forward is finished by [`after_dns`] when the answer is back.
    pub(super) fn resolve(
        &self,
        uri: &[u8],
        target: &Target<'_>,
        forced_ir: Option<crate::script::ir::Proto>,
    ) -> Result<Result<Dest, &'static str>, (Job, u16)> {
        let forced = forced_ir.map(|p| match p {
            crate::script::ir::Proto::Tcp | crate::script::ir::Proto::Tls => Transport::Tcp,
            crate::script::ir::Proto::Sctp => Transport::Sctp,
            crate::script::ir::Proto::Udp => Transport::Udp,
        });
        let (host, port, transport, secure): (HostOrName, Option<u16>, Option<Transport>, bool) =
            match target {
                Target::Uri => {
                    let Ok(uri) = Uri::parse(uri) else {
                        return Ok(Err("the request URI does not parse"));
                    };
                    let Some(t) = dns::host_port_of_uri(&uri) else {
                        return Ok(Err("the request URI is not a SIP URI"));
                    };
                    let host = match t.host {
                        dns::TargetHost::Ip(ip) => Ok(ip),
                        dns::TargetHost::Name(n) => Err(SmallVec::from_slice(n.as_bytes())),
                    };
                    (host, t.port, forced.or(t.transport), t.secure)
                }
                Target::Host { host, port } => {
                    let h = match host {
                        TargetHost::Ip(ip) => Ok(*ip),
                        TargetHost::Name(n) => Err(SmallVec::from_slice(n)),
                    };
                    // No port given (`forward(name)`, or `uri:port` of a URI without one): RFC 3263
                    // decides (NAPTR/SRV, else 5060); an address without a port means 5060.
                    (h, *port, forced, false)
                }
            };
        let dest = |t: &SipTarget| Dest {
            addr: t.addr,
            proto: transport_to_proto(t.transport),
        };
        let name = match host {
            Ok(ip) => return Ok(Ok(dest(&dns::literal_target(ip, port, transport, secure)))),
            Err(name) => name,
        };
        let Ok(name) = std::str::from_utf8(&name) else {
            return Ok(Err("the destination host is not text"));
        };
        if name.eq_ignore_ascii_case("localhost") {
            let ip = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
            return Ok(Ok(dest(&dns::literal_target(ip, port, transport, secure))));
        }
        match self.shared.dns.get(
            &DnsKeyRef::new(name, port, transport, secure),
            Instant::now(),
        ) {
            Lookup::Hit(targets) => match targets.first() {
                Some(t) => Ok(Ok(dest(t))),
                None => Ok(Err("the destination does not resolve")),
            },
            Lookup::Negative => Ok(Err("the destination does not resolve (cached)")),
            Lookup::Miss => Err((
                Job::Resolve {
                    name: name.to_string(),
                    port,
                    transport,
                    secure,
                },
                port.unwrap_or(0),
            )),
        }
    }

    /// Parks a forward/send on a DNS job; [`after_dns`] finishes it.
    fn suspend_for_dns(
        ctx: &mut Ctx,
        job: Job,
        port: u16,
        proto: Option<crate::script::ir::Proto>,
        send: bool,
    ) -> ActionResult {
        ctx.pending_target = Some(PendingTarget {
            port: Some(port),
            proto,
            send,
        });
        ctx.suspend_with(job, after_dns)
    }

    /// Our address for a Via toward `dest` over `proto`: the listen address of that family and
    /// transport (the one the request came in on when it fits); on a wildcard listen, the address
    /// the route toward `dest` leaves from ([`Outbox::local_for`]).
    fn via_local(&mut self, dest: &Dest) -> SocketAddr {
        let fits = |a: &SocketAddr| a.is_ipv4() == dest.addr.is_ipv4();
        let l = if fits(&self.local) && self.proto == dest.proto {
            self.local
        } else {
            self.shared
                .local
                .iter()
                .find(|(a, p)| fits(a) && *p == dest.proto)
                .map_or(self.local, |(a, _)| *a)
        };
        self.out.local_for(l, dest.proto, dest.addr)
    }
}

impl Env for ShardEnv<'_> {
    fn forward(
        &mut self,
        ctx: &mut Ctx,
        target: &Target<'_>,
        proto: Option<crate::script::ir::Proto>,
    ) -> ActionResult {
        // After loose_route, the next hop is the top Route (dst_uri), not the Request-URI.
        let next_hop = ctx.dst_uri.as_deref().unwrap_or(ctx.uri());
        let dest = match self.resolve(next_hop, target, proto) {
            Ok(Ok(d)) => d,
            Ok(Err(why)) => {
                ser_log!(L_ERR, "forward: {why}");
                ctx.last_error = Some(error_status(why));
                return ActionResult::Ret(-1);
            }
            Err((job, port)) => return Self::suspend_for_dns(ctx, job, port, proto, false),
        };
        if ctx.uri_rewritten() && ctx.commit_uri().is_err() {
            return ActionResult::Ret(-1);
        }
        match forward::process_max_forwards(&mut ctx.msg, 70) {
            Ok(MaxForwards::Exhausted) => {
                ser_log!(L_DBG, "forward: Max-Forwards exhausted");
                ctx.last_error = Some((483, "Too Many Hops"));
                return ActionResult::Ret(-1);
            }
            Ok(_) => {}
            Err(e) => {
                ser_log!(L_DBG, "forward: bad Max-Forwards: {e}");
                return ActionResult::Ret(-1);
            }
        }
        let local = self.via_local(&dest);
        let branch = forward::stateless_branch(&ctx.msg, self.shared.salt);
        let mut sent_by: SmallVec<[u8; 64]> = SmallVec::new();
        {
            use std::io::Write;
            let _ = match local.ip() {
                IpAddr::V4(a) => write!(sent_by, "{a}:{}", local.port()),
                IpAddr::V6(a) => write!(sent_by, "[{a}]:{}", local.port()),
            };
        }
        let mut msg = ctx.msg.clone();
        if let Some(rr) = &ctx.record_route {
            crate::modules::rr::outbound_record_route(&mut msg, rr, local, to_ir_proto(dest.proto));
        }
        forward::add_via(
            &mut msg,
            proto_name(dest.proto),
            &sent_by,
            branch.as_bytes(),
        );
        let data = write(&msg, self.out);
        self.out.send(data, dest.addr, dest.proto, Some(local));
        ActionResult::Ret(1)
    }

    fn send(
        &mut self,
        ctx: &mut Ctx,
        target: &Target<'_>,
        proto: Option<crate::script::ir::Proto>,
    ) -> ActionResult {
        match self.resolve(ctx.uri(), target, proto) {
            Ok(Ok(dest)) => {
                let data = ctx.msg.buffer().slice(..ctx.msg.len());
                let local = self.via_local(&dest);
                self.out.send(data, dest.addr, dest.proto, Some(local));
                ActionResult::Ret(1)
            }
            Ok(Err(why)) => {
                ser_log!(L_ERR, "send: {why}");
                ctx.last_error = Some(error_status(why));
                ActionResult::Ret(-1)
            }
            Err((job, port)) => Self::suspend_for_dns(ctx, job, port, proto, true),
        }
    }

    fn log(&mut self, level: i32, msg: &[u8]) {
        if crate::shard::log::enabled(level) {
            crate::shard::log::write(level, format_args!("{}", String::from_utf8_lossy(msg)));
        }
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn myself(&self) -> Option<&Myself> {
        Some(self.myself)
    }

    fn services(&self) -> Option<&crate::services::Services> {
        Some(&self.shared.services)
    }

    fn program(&self) -> Option<&Program> {
        Some(self.program)
    }

    fn tm(&mut self) -> Option<&mut dyn crate::modules::tm::Transactions> {
        if self.table.is_some() {
            Some(self)
        } else {
            None
        }
    }

    fn reply(&mut self, ctx: &mut Ctx, code: u16, reason: &[u8]) -> ActionResult {
        if ctx.msg.method() == Method::Ack {
            return ActionResult::Ret(1);
        }
        let contacts: SmallVec<[&[u8]; 8]> = if (300..400).contains(&code) {
            std::iter::once(ctx.uri())
                .chain(ctx.dset().iter())
                .collect()
        } else {
            SmallVec::new()
        };
        send_reply(
            self.shared,
            self.shard,
            self.pid,
            ctx.src,
            self.local,
            self.proto,
            &ctx.msg,
            code,
            reason,
            &[],
            &contacts,
            &ctx.reply_headers,
            self.out,
        );
        ActionResult::Ret(1)
    }
}
