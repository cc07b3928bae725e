//! [`ShardEnv`]: the interpreter's view of the shard — stateless `forward`/`send` with RFC 3263
//! destinations answered from the shared DNS cache (a miss suspends the script on a DNS job),
//! stateless replies (`sl`), logging, the program's `myself`, the shared services, and the
//! shard's transaction table for module tm (its script side is [`super::tm`]).
//!
//! Invariants: nothing here blocks or reads a clock (`now` is the shard's turn time); a forwarded
//! message is written once, with our Via on top, into a pooled buffer.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use smallvec::SmallVec;

use super::forward::{self, HopHost, MaxForwards};
use super::shared::Shared;
use super::sl::{self, SlReply};
use crate::dns::{self, DnsKeyRef, Lookup, SipTarget};
use crate::offload::{Job, JobResult};
use crate::script::ctx::PendingTarget;
use crate::script::env::{ActionResult, Env, Target, TargetHost};
use crate::script::ir::{Arg, Program};
use crate::script::myself::Myself;
use crate::script::Ctx;
use crate::ser_log;
use crate::shard::log::{L_DBG, L_ERR};
use crate::shard::Outbox;
use crate::transport::Proto;
use crate::txn::table::Table;
use crate::wire::uri::Uri;
use crate::wire::via::Transport;
use crate::wire::{Message, Method};

#[allow(clippy::too_many_arguments)]
pub(super) fn send_reply(
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

pub(super) fn write(msg: &Message, out: &mut Outbox) -> bytes::Bytes {
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

pub(super) fn transport_to_proto(t: Transport) -> Proto {
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

/// Finishes a forward/send that waited for DNS: sends to the first address of the answer, or fails
/// (false) with a log line when the name did not resolve.
fn after_dns(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg], result: JobResult) -> ActionResult {
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
    /// The loaded modules' settings of `program`.
    pub(super) configs: &'a crate::script::ModuleConfigs,
    pub(super) myself: &'a Myself,
    /// The local address and transport the message came in on.
    pub(super) local: SocketAddr,
    pub(super) proto: Proto,
    pub(super) pid: u32,
    /// The shard's turn time.
    pub(super) now: Instant,
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
        match self
            .shared
            .dns
            .get(&DnsKeyRef::new(name, port, transport, secure), self.now)
        {
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
    pub(super) fn via_local(&mut self, dest: &Dest) -> SocketAddr {
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
        // By hand, not write!(): the formatting machinery cost ~2,700 instructions per forward.
        let mut sent_by: SmallVec<[u8; 64]> = SmallVec::new();
        let ip = forward::itoa_ip(local.ip());
        if local.is_ipv6() {
            sent_by.push(b'[');
            sent_by.extend_from_slice(&ip);
            sent_by.push(b']');
        } else {
            sent_by.extend_from_slice(&ip);
        }
        sent_by.push(b':');
        sent_by.extend_from_slice(itoa::Buffer::new().format(local.port()).as_bytes());
        // This branch's Record-Route and Via go on the script's message only while it is
        // written (a later forward or reply must not see them); a clone of the message per
        // forward cost more than the rest of the forward.
        let rr = crate::modules::rr::RecordRouted::of(ctx, self);
        let mark = ctx.msg.edits_mark();
        if let Some(rr) = rr {
            crate::modules::rr::outbound_record_route(
                &mut ctx.msg,
                &rr,
                local,
                to_ir_proto(dest.proto),
            );
        }
        forward::add_via(
            &mut ctx.msg,
            proto_name(dest.proto),
            &sent_by,
            branch.as_bytes(),
        );
        let data = write(&ctx.msg, self.out);
        ctx.msg.rollback_edits(mark);
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
        self.now
    }

    fn myself(&self) -> Option<&Myself> {
        Some(self.myself)
    }

    /// `src_ip == name`: from the shared DNS cache (the A/AAAA job a miss suspends on fills it in
    /// the controlplane, so later messages are answered here without a job).
    fn host_has_addr(&mut self, name: &str, ip: IpAddr) -> Option<bool> {
        match self
            .shared
            .dns
            .get(&DnsKeyRef::new(name, Some(0), None, false), self.now)
        {
            Lookup::Hit(t) => Some(t.iter().any(|t| t.addr.ip() == ip)),
            Lookup::Negative => Some(false),
            Lookup::Miss => None,
        }
    }

    /// `src_ip == "name"`: from the shared reverse-DNS map (`rev_dns`); the shard keeps the
    /// answer of the reverse job a miss suspends on, so later messages need no job.
    fn ip_has_name(&mut self, name: &str, ip: IpAddr) -> Option<bool> {
        match self.shared.rev_dns.pin().get(&ip) {
            Some((names, until)) if *until > self.now => {
                Some(names.iter().any(|n| n.eq_ignore_ascii_case(name)))
            }
            _ => None,
        }
    }

    fn services(&self) -> Option<&crate::services::Services> {
        Some(&self.shared.services)
    }

    fn program(&self) -> Option<&Program> {
        Some(self.program)
    }

    fn configs(&self) -> Option<&crate::script::ModuleConfigs> {
        Some(self.configs)
    }

    fn call(
        &mut self,
        module: crate::script::ModuleId,
        function: crate::script::FunctionId,
        ctx: &mut Ctx,
        args: &[Arg],
    ) -> Option<ActionResult> {
        // tm's functions run on this shard's transaction table (without one, their `imp`s fail).
        if module != crate::modules::tm::id() || self.table.is_none() {
            return None;
        }
        crate::modules::tm::run(self, function, ctx, args)
    }

    fn transaction_id(&self, ctx: &Ctx) -> Option<String> {
        self.trans_id(ctx)
    }

    fn shared(&self) -> Option<&Shared> {
        Some(self.shared)
    }

    fn add_blind(&mut self, ctx: &Ctx) -> bool {
        self.t_add_blind(ctx)
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
