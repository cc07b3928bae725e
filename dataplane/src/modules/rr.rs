//! Script module `rr`: record routing (RFC 3261 §16.6 step 4) and Route processing (§16.4, §16.12).
//!
//! `record_route()` adds `Record-Route: <sip:ADDR:PORT;lr>` naming the address and transport the
//! request arrived on (`;transport=tcp` unless UDP; `;lr=on` with `enable_full_lr` for UAs that
//! cannot parse a bare `;lr`). When the request leaves over another transport or address family
//! (UDP↔TCP, IPv4↔IPv6), a second Record-Route naming the outbound side must sit above it, so that
//! each side of the dialog reaches us over its own network. Only the forward path knows the outbound
//! side, so `record_route` leaves a [`RecordRouted`] in its slot of [`Ctx::module_state`] and the forward path
//! calls [`outbound_record_route`] on the message it is about to send. (The inbound header is
//! placed so that a header inserted at the top lands above it: after the last header field when
//! the request has no Record-Route, else just before its first one.)
//!
//! `loose_route()`, in this order:
//! 1. §16.4: a Request-URI that is one of our Record-Route URIs (ours, no user part, `;lr`) came
//!    from a strict router: the last Route value becomes the Request-URI and is removed.
//! 2. §16.4: the top Route values that are ours are removed (one, or two after a double
//!    Record-Route).
//! 3. The next Route value, if any, is the next hop: a loose router (`;lr`) goes to
//!    [`Ctx::dst_uri`] with the Request-URI untouched; a strict router becomes the Request-URI and
//!    the old Request-URI is appended as the last Route (§16.6 step 6).
//!
//! It returns true when the request is routed by its Route headers: a next hop from step 3, a
//! Request-URI taken from a Route in step 1, or — only our own values removed — a request within a
//! dialog (To tag), which goes to its Request-URI, the remote target. It returns false without
//! Route headers, and for an initial request whose pre-loaded Route named only us (the script goes
//! on to `lookup`). A Route header that does not parse: false, with 400 as the last error (for
//! `sl_reply_error`).
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `record_route` | - | request | add a Record-Route header |
//! | `loose_route` | - | request | process Route headers; true if the request is routed by them |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `enable_full_lr` | int | `0` |

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use smallvec::SmallVec;

use crate::script::ctx::UriBuf;
use crate::script::env::{level, ActionResult, Env};
use crate::script::ir::{Arg, CoreOptions, Proto};
use crate::script::{myself, Ctx, FunctionDecl, ModuleDecl, ParamDecl, Renamed, RouteKinds};
use crate::wire::uri::{Scheme, Uri};
use crate::wire::{HeaderId, Message, Span};

/// Declaration of module `rr`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "rr",
    aliases: &[],
    depends: &[],
    functions: &[
        FunctionDecl::new(
            "record_route",
            &[],
            RouteKinds::REQUEST,
            "add a Record-Route header",
        )
        .implemented_by(record_route)
        .restricted("record-routing belongs to the request route"),
        FunctionDecl::new(
            "loose_route",
            &[],
            RouteKinds::REQUEST,
            "process Route headers; true if the request is routed by them",
        )
        .implemented_by(loose_route)
        .restricted("Route processing belongs to the request route"),
    ],
    params: &[ParamDecl::int("enable_full_lr", 0)],
    renamed_functions: &[
        Renamed {
            old: "addRecordRoute",
            new: Some("record_route"),
            note: "addRecordRoute was replaced by record_route",
        },
        Renamed {
            old: "rewriteFromRoute",
            new: Some("loose_route"),
            note: "rewriteFromRoute was replaced by loose_route",
        },
    ],
    renamed_params: &[],
    doc: "record routing (strict and loose)",
    config: Some(resolve_config),
    commands: &[],
};

/// What `record_route()` recorded: the inbound side, for the forward path's second header. The
/// core forward paths (`forward`, `t_relay`) get it with [`RecordRouted::of`] when they write the
/// outbound Record-Route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRouted {
    /// The address the request arrived on (named in the inbound Record-Route).
    pub inbound: SocketAddr,
    /// Its transport.
    pub proto: Proto,
    /// `;lr=on` instead of `;lr`.
    pub full_lr: bool,
}

/// rr's slot of [`Ctx::module_state`]: `record_route()` ran for this request. Zero-sized, so
/// the slot allocates nothing: what the forward path needs is the request's own inbound side
/// and rr's settings.
struct Recorded;

impl RecordRouted {
    /// What `record_route()` recorded for the request in `ctx`, if it was called (`env`: the
    /// settings of the program running it).
    pub fn of(ctx: &Ctx, env: &dyn Env) -> Option<RecordRouted> {
        ctx.module_state.get::<Recorded>()?;
        Some(RecordRouted {
            inbound: ctx.dst,
            proto: ctx.proto,
            full_lr: crate::script::config(env, RrConfig::resolve).full_lr,
        })
    }
}

/// A Record-Route value naming `addr` over `proto`: `<sip:1.2.3.4:5060;transport=tcp;lr>`.
pub fn rr_value(host: &[u8], port: u16, proto: Proto, full_lr: bool) -> SmallVec<[u8; 96]> {
    let mut v: SmallVec<[u8; 96]> = SmallVec::new();
    v.extend_from_slice(b"<sip:");
    v.extend_from_slice(host);
    let _ = write!(v, ":{port}");
    match proto {
        Proto::Udp => {}
        Proto::Tcp => v.extend_from_slice(b";transport=tcp"),
        Proto::Tls => v.extend_from_slice(b";transport=tls"),
        Proto::Sctp => v.extend_from_slice(b";transport=sctp"),
    }
    v.extend_from_slice(if full_lr { b";lr=on>" } else { b";lr>" });
    v
}

fn host_text(ip: IpAddr) -> SmallVec<[u8; 48]> {
    let mut h: SmallVec<[u8; 48]> = SmallVec::new();
    let _ = match ip {
        IpAddr::V4(a) => write!(h, "{a}"),
        IpAddr::V6(a) => write!(h, "[{a}]"),
    };
    h
}

/// rr's settings, resolved once per loaded program.
#[derive(Debug, Clone, Default)]
pub struct RrConfig {
    /// `enable_full_lr`: write `;lr=on` instead of `;lr` (for broken peers).
    pub full_lr: bool,
}

impl RrConfig {
    /// The settings of `program` (defaults without one).
    pub fn resolve(program: Option<&crate::script::ir::Program>) -> RrConfig {
        let p = crate::modules::param(program, &MODULE, "enable_full_lr");
        RrConfig {
            full_lr: p.and_then(|v| v.int()).unwrap_or(0) != 0,
        }
    }
}

fn resolve_config(program: &crate::script::ir::Program) -> crate::script::ModuleConfig {
    std::sync::Arc::new(RrConfig::resolve(Some(program)))
}

/// `record_route()`.
fn record_route(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg]) -> ActionResult {
    if ctx.module_state.get::<Recorded>().is_some() {
        // Once per request: a second call would name the same hop twice.
        return ActionResult::Ret(1);
    }
    let full_lr = crate::script::config(env, RrConfig::resolve).full_lr;
    let value = if ctx.dst.ip().is_unspecified() {
        // A wildcard listen: name ourselves as the client did, when the Request-URI is ours.
        let named = Uri::parse(ctx.uri()).ok().and_then(|u| {
            is_mine(ctx, env, &u).then(|| {
                rr_value(
                    u.host_raw,
                    u.port.unwrap_or(ctx.dst.port()),
                    ctx.proto,
                    full_lr,
                )
            })
        });
        match named {
            Some(v) => v,
            None => {
                if ctx.log_enabled(level::WARN) {
                    env.log(
                        level::WARN,
                        b"record_route: listening on a wildcard address; the Record-Route names it (set listen= to a reachable address)",
                    );
                }
                rr_value(&host_text(ctx.dst.ip()), ctx.dst.port(), ctx.proto, full_lr)
            }
        }
    } else {
        rr_value(&host_text(ctx.dst.ip()), ctx.dst.port(), ctx.proto, full_lr)
    };
    insert_inbound(&mut ctx.msg, &value);
    ctx.module_state.set(Recorded);
    ActionResult::Ret(1)
}

/// Inserts the inbound Record-Route where a later top insertion lands above it and every existing
/// Record-Route stays below it.
fn insert_inbound(msg: &mut Message, value: &[u8]) {
    let first_rr = (0..msg.header_count()).find(|&i| {
        msg.header_entry(i)
            .is_some_and(|h| h.id == HeaderId::RecordRoute)
    });
    match first_rr {
        None => msg.append_header(b"Record-Route", value),
        Some(0) => {
            // The very first header is a Record-Route: replace that line by ours + itself, so that
            // a top insertion (the outbound Record-Route) still comes first.
            if let Some(line) = msg.header_entry(0).map(|h| h.line) {
                let mut bytes: SmallVec<[u8; 256]> = SmallVec::new();
                bytes.extend_from_slice(b"Record-Route: ");
                bytes.extend_from_slice(value);
                bytes.extend_from_slice(b"\r\n");
                bytes.extend_from_slice(msg.slice(line));
                msg.replace_span(line, &bytes);
            }
        }
        Some(i) => {
            let _ = msg.insert_header_before(i, b"Record-Route", value);
        }
    }
}

/// The forward path's half of `record_route()`: called with the message about to be sent (after
/// the script, per branch) and the local address and transport it leaves from. Adds the outbound
/// Record-Route on top when that side differs from the inbound one (transport, address family or
/// address); returns whether it did.
pub fn outbound_record_route(
    msg: &mut Message,
    rr: &RecordRouted,
    out_local: SocketAddr,
    out_proto: Proto,
) -> bool {
    let same = out_proto == rr.proto
        && (out_local.ip() == rr.inbound.ip() || out_local.ip().is_unspecified());
    if same {
        return false;
    }
    let v = rr_value(
        &host_text(out_local.ip()),
        out_local.port(),
        out_proto,
        rr.full_lr,
    );
    msg.insert_header_top(b"Record-Route", &v);
    true
}

/// Whether a URI's host and port are ours (`myself`).
fn is_mine(ctx: &Ctx, env: &dyn Env, u: &Uri<'_>) -> bool {
    let port = u
        .port
        .unwrap_or(if u.scheme == Scheme::Sips { 5061 } else { 5060 });
    match env.myself() {
        Some(m) => m.host_is_mine(&u.host, port, ctx.dst),
        None => {
            let default = CoreOptions::default();
            let opts = env.program().map_or(&default, |p| &p.options);
            myself::host_in_options(opts, &u.host, port, ctx.dst)
        }
    }
}

/// One Route value.
struct RouteVal {
    /// Header field index.
    index: usize,
    /// Its span in the message.
    span: Span,
    uri: UriBuf,
    mine: bool,
    lr: bool,
}

/// `loose_route()`.
fn loose_route(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg]) -> ActionResult {
    let mut routes: SmallVec<[RouteVal; 4]> = SmallVec::new();
    for r in ctx.msg.routes() {
        let Ok(r) = r else {
            if ctx.log_enabled(level::ERR) {
                env.log(level::ERR, b"loose_route: a Route header does not parse");
            }
            ctx.last_error = Some((400, "Bad Route header"));
            return ActionResult::Ret(-1);
        };
        let mine = is_mine(ctx, env, &r.value.uri);
        routes.push(RouteVal {
            index: r.index,
            span: r.span,
            uri: UriBuf::from_slice(r.value.uri_raw),
            mine,
            lr: r.value.uri.lr(),
        });
    }
    if routes.is_empty() {
        return ActionResult::Ret(-1);
    }
    let mut remove: SmallVec<[bool; 4]> = SmallVec::from_elem(false, routes.len());
    let mut routed = false;
    // 1. Previous hop was a strict router: the Request-URI is our Record-Route URI.
    let from_strict =
        Uri::parse(ctx.uri()).is_ok_and(|u| u.user.is_none() && u.lr() && is_mine(ctx, env, &u));
    let mut last = routes.len();
    if from_strict {
        last -= 1;
        let uri = routes[last].uri.clone();
        ctx.set_uri(&uri);
        remove[last] = true;
        routed = true;
    }
    // 2. Our own values on top (two after a double Record-Route).
    let mut next = 0;
    while next < last && next < 2 && routes[next].mine {
        remove[next] = true;
        next += 1;
    }
    // 3. The next hop.
    let mut append_route: Option<UriBuf> = None;
    if next == last && next > 0 {
        // Only our own values: within a dialog (To tag) the route set brought the request here and
        // the Request-URI (the remote target) is where it goes; an initial request with a
        // pre-loaded route to us is routed by the script (SER 0.9's `preloaded` rule).
        routed |= ctx.msg.to_tag().is_some();
    }
    if next < last {
        let hop = &routes[next];
        if hop.lr {
            ctx.dst_uri = Some(hop.uri.clone());
        } else {
            // §16.6 step 6: a strict router gets the request with itself as Request-URI.
            append_route = Some(UriBuf::from_slice(ctx.uri()));
            let uri = hop.uri.clone();
            ctx.set_uri(&uri);
            remove[next] = true;
        }
        routed = true;
    }
    remove_values(&mut ctx.msg, &routes, &remove);
    if let Some(old) = append_route {
        let mut v: SmallVec<[u8; 160]> = SmallVec::new();
        v.push(b'<');
        v.extend_from_slice(&old);
        v.push(b'>');
        let last_index = routes.last().map_or(0, |r| r.index);
        let _ = ctx.msg.insert_header_after(last_index, b"Route", &v);
    }
    ActionResult::from_bool(routed)
}

/// Removes the Route values flagged in `remove`: a header field whose values all go is deleted,
/// otherwise each run of removed values is cut with its separating comma, in edits that never
/// overlap.
fn remove_values(msg: &mut Message, routes: &[RouteVal], remove: &[bool]) {
    let mut i = 0;
    while i < routes.len() {
        let index = routes[i].index;
        let mut j = i;
        while j < routes.len() && routes[j].index == index {
            j += 1;
        }
        let line = &routes[i..j];
        let flags = &remove[i..j];
        if flags.iter().all(|&r| r) {
            let _ = msg.delete_header(index);
        } else if flags.iter().any(|&r| r) {
            let mut spans: SmallVec<[Span; 4]> = SmallVec::new();
            let mut prev_kept: Option<usize> = None;
            let mut k = 0;
            while k < line.len() {
                if !flags[k] {
                    prev_kept = Some(k);
                    k += 1;
                    continue;
                }
                let start = k;
                while k < line.len() && flags[k] {
                    k += 1;
                }
                let end = k - 1;
                match prev_kept {
                    // "kept, r1, r2[, next]": from the end of the kept value to the end of r2.
                    Some(p) => spans.push(Span::new(
                        line[p].span.end as usize,
                        line[end].span.end as usize,
                    )),
                    // "r1, r2, kept": from r1 to the start of the kept value.
                    None => spans.push(Span::new(
                        line[start].span.start as usize,
                        line[k].span.start as usize,
                    )),
                }
            }
            for s in spans {
                msg.replace_span(s, b"");
            }
        }
        i = j;
    }
}
