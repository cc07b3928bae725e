//! Script module `tm`: transaction manager: stateful processing.
//!
//! The functions are thin: each turns its arguments into a call on the shard's transaction layer
//! ([`Transactions`], reached through [`Env::tm`]; the shard owns the transaction table, see
//! [`crate::proxy::tm`]). Where there is none (tests, tools) they fail (-1).
//!
//! Management commands (`t_stats`, `t_hash`, `t_uac_dlg`): see [`commands`].
//!
//! Timer parameters are seconds, as in SER. `retr_timer1p1` and `retr_timer2` set RFC 3261's T1
//! and T2 when given (unset: 500 ms and 4 s, RFC 3261 Table 4 — SER's 1 s granularity made its T1
//! 1 s); `retr_timer1p2`/`retr_timer1p3` are accepted but the intervals double from T1 as RFC 3261
//! says; `wt_timer` is T4 (the time a completed transaction stays to absorb retransmissions);
//! `delete_timer` is accepted and unused (nothing references a transaction after it ends);
//! `noisy_ctimer` is accepted: an INVITE branch that had a provisional reply and times out is always
//! CANCELed and answered 408 (RFC 3261 §16.8), SER dropped it silently by default.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `t_newtran` | - | request | create the transaction; retransmissions are absorbed |
//! | `t_lookup_request` | - | request | true if the request belongs to a known transaction |
//! | `t_reply` | StatusCode, Str | request, failure | stateful reply: code, reason |
//! | `t_retransmit_reply` | - | request | retransmit the last reply of the transaction |
//! | `t_release` | - | request | remove the transaction from memory |
//! | `t_relay` | - | request, failure | stateful forward to the whole destination set |
//! | `t_relay_to_udp` | Host, Port | request, failure | stateful forward to host, port over UDP |
//! | `t_relay_to_tcp` | Host, Port | request, failure | stateful forward to host, port over TCP |
//! | `t_replicate` | Host, Port | request | replicate the request to host, port |
//! | `t_replicate_udp` | Host, Port | request | replicate over UDP |
//! | `t_replicate_tcp` | Host, Port | request | replicate over TCP |
//! | `t_forward_nonack` | Host, Port | request | stateful forward of a non-ACK request to host, port |
//! | `t_forward_nonack_udp` | Host, Port | request | as t_forward_nonack over UDP |
//! | `t_forward_nonack_tcp` | Host, Port | request | as t_forward_nonack over TCP |
//! | `t_on_failure` | FailureRoute | request, failure | enter failure_route[n] if the transaction fails |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `fr_timer` | int | `30` |
//! | `fr_inv_timer` | int | `120` |
//! | `wt_timer` | int | `5` |
//! | `delete_timer` | int | `2` |
//! | `retr_timer1p1` | int | unset (T1 = 500 ms) |
//! | `retr_timer1p2` | int | `2` |
//! | `retr_timer1p3` | int | `4` |
//! | `retr_timer2` | int | unset (T2 = 4 s) |
//! | `noisy_ctimer` | int | `0` |
//! | `uac_from` | string | `"sip:foo@foo.bar"` |

use smallvec::SmallVec;

pub mod commands;
pub use commands::TStats;

use crate::script::env::{ActionResult, Env};
use crate::script::ir::{Arg, Proto};
use crate::script::{
    ArgKind::*, Ctx, FunctionDecl, ModuleDecl, ParamDecl, ParamDefault, ParamType, Renamed,
    RouteKinds,
};

pub use crate::script::env::{Relay, Transactions};

/// What tm keeps about the request being run (its slot of [`Ctx::module_state`]).
#[derive(Debug, Clone, Default)]
pub struct TmState {
    /// The transaction of this request, once `t_newtran`/`t_relay`/`t_lookup_request` found or
    /// made it (a handle into the shard's table), or the one a failure_route runs for.
    pub txn: Option<crate::txn::TxnHandle>,
    /// `t_on_failure(n)`: the failure_route to run if the transaction fails.
    pub failure_route: Option<crate::script::ir::RouteId>,
    /// A stateful forward suspended for DNS: redone with the same arguments when the answer is in.
    pub pending_relay: Option<Relay>,
}

impl TmState {
    /// The transaction of the request in `ctx`, if it has one.
    pub fn txn(ctx: &Ctx) -> Option<crate::txn::TxnHandle> {
        ctx.module_state.get::<TmState>().and_then(|s| s.txn)
    }

    /// tm's slot of `ctx`, made when missing.
    pub fn of(ctx: &mut Ctx) -> &mut TmState {
        ctx.module_state.get_or_default::<TmState>()
    }
}

fn with_tm(
    env: &mut dyn Env,
    f: impl FnOnce(&mut dyn Transactions) -> ActionResult,
) -> ActionResult {
    match env.tm() {
        Some(t) => f(t),
        None => ActionResult::Ret(-1),
    }
}

fn relay_with(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg], how: Relay) -> ActionResult {
    let mut how = how;
    if let (Some(Arg::Str(h)), Some(Arg::Port(p))) = (args.first(), args.get(1)) {
        how.to = Some((SmallVec::from_slice(h.as_bytes()), *p));
    }
    with_tm(env, |t| t.t_relay(ctx, &how))
}

fn t_relay(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    relay_with(ctx, env, args, Relay::default())
}
fn t_relay_to_udp(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let how = Relay {
        proto: Some(Proto::Udp),
        ..Relay::default()
    };
    relay_with(ctx, env, args, how)
}
fn t_relay_to_tcp(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let how = Relay {
        proto: Some(Proto::Tcp),
        ..Relay::default()
    };
    relay_with(ctx, env, args, how)
}
fn t_forward_nonack(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let how = Relay {
        non_ack: true,
        ..Relay::default()
    };
    relay_with(ctx, env, args, how)
}
fn t_forward_nonack_udp(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let how = Relay {
        non_ack: true,
        proto: Some(Proto::Udp),
        ..Relay::default()
    };
    relay_with(ctx, env, args, how)
}
fn t_forward_nonack_tcp(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let how = Relay {
        non_ack: true,
        proto: Some(Proto::Tcp),
        ..Relay::default()
    };
    relay_with(ctx, env, args, how)
}
fn t_replicate(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let how = Relay {
        replicate: true,
        ..Relay::default()
    };
    relay_with(ctx, env, args, how)
}
fn t_replicate_udp(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let how = Relay {
        replicate: true,
        proto: Some(Proto::Udp),
        ..Relay::default()
    };
    relay_with(ctx, env, args, how)
}
fn t_replicate_tcp(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let how = Relay {
        replicate: true,
        proto: Some(Proto::Tcp),
        ..Relay::default()
    };
    relay_with(ctx, env, args, how)
}
fn t_newtran(ctx: &mut Ctx, env: &mut dyn Env, _: &[Arg]) -> ActionResult {
    with_tm(env, |t| t.t_newtran(ctx))
}
fn t_reply(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let code = match args.first() {
        Some(Arg::StatusCode(c)) => *c,
        _ => return ActionResult::Ret(-1),
    };
    let reason: SmallVec<[u8; 64]> = match args.get(1) {
        Some(Arg::Str(r)) => SmallVec::from_slice(r.as_bytes()),
        _ => SmallVec::new(),
    };
    with_tm(env, |t| t.t_reply(ctx, code, &reason))
}
fn t_lookup_request(ctx: &mut Ctx, env: &mut dyn Env, _: &[Arg]) -> ActionResult {
    with_tm(env, |t| t.t_lookup_request(ctx))
}
fn t_retransmit_reply(ctx: &mut Ctx, env: &mut dyn Env, _: &[Arg]) -> ActionResult {
    with_tm(env, |t| t.t_retransmit_reply(ctx))
}
fn t_release(ctx: &mut Ctx, env: &mut dyn Env, _: &[Arg]) -> ActionResult {
    with_tm(env, |t| t.t_release(ctx))
}
fn t_on_failure(ctx: &mut Ctx, _env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    match args.first() {
        Some(Arg::Route(r)) => {
            TmState::of(ctx).failure_route = Some(*r);
            ActionResult::Ret(1)
        }
        _ => ActionResult::Ret(-1),
    }
}

/// An int parameter with no default: unset means "RFC 3261's value".
const fn rfc_default(name: &'static str) -> ParamDecl {
    ParamDecl {
        name,
        ty: ParamType::Int,
        default: ParamDefault::None,
    }
}

/// Declaration of module `tm`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "tm",
    aliases: &[],
    depends: &[],
    functions: &[
        FunctionDecl::new(
            "t_newtran",
            &[],
            RouteKinds::REQUEST,
            "create the transaction; retransmissions are absorbed",
        )
        .implemented_by(t_newtran)
        .restricted("the transaction already exists there"),
        FunctionDecl::new(
            "t_lookup_request",
            &[],
            RouteKinds::REQUEST,
            "true if the request belongs to a known transaction",
        )
        .implemented_by(t_lookup_request),
        FunctionDecl::new(
            "t_reply",
            &[StatusCode, Str],
            RouteKinds::REQUEST_FAILURE,
            "stateful reply: code, reason",
        )
        .implemented_by(t_reply),
        FunctionDecl::new(
            "t_retransmit_reply",
            &[],
            RouteKinds::REQUEST,
            "retransmit the last reply of the transaction",
        )
        .implemented_by(t_retransmit_reply),
        FunctionDecl::new(
            "t_release",
            &[],
            RouteKinds::REQUEST,
            "remove the transaction from memory",
        )
        .implemented_by(t_release),
        FunctionDecl::new(
            "t_relay",
            &[],
            RouteKinds::REQUEST_FAILURE,
            "stateful forward to the whole destination set",
        )
        .implemented_by(t_relay),
        FunctionDecl::new(
            "t_relay_to_udp",
            &[Host, Port],
            RouteKinds::REQUEST_FAILURE,
            "stateful forward to host, port over UDP",
        )
        .implemented_by(t_relay_to_udp),
        FunctionDecl::new(
            "t_relay_to_tcp",
            &[Host, Port],
            RouteKinds::REQUEST_FAILURE,
            "stateful forward to host, port over TCP",
        )
        .implemented_by(t_relay_to_tcp),
        FunctionDecl::new(
            "t_replicate",
            &[Host, Port],
            RouteKinds::REQUEST,
            "replicate the request to host, port",
        )
        .implemented_by(t_replicate),
        FunctionDecl::new(
            "t_replicate_udp",
            &[Host, Port],
            RouteKinds::REQUEST,
            "replicate over UDP",
        )
        .implemented_by(t_replicate_udp),
        FunctionDecl::new(
            "t_replicate_tcp",
            &[Host, Port],
            RouteKinds::REQUEST,
            "replicate over TCP",
        )
        .implemented_by(t_replicate_tcp),
        FunctionDecl::new(
            "t_forward_nonack",
            &[Host, Port],
            RouteKinds::REQUEST,
            "stateful forward of a non-ACK request to host, port",
        )
        .implemented_by(t_forward_nonack),
        FunctionDecl::new(
            "t_forward_nonack_udp",
            &[Host, Port],
            RouteKinds::REQUEST,
            "as t_forward_nonack over UDP",
        )
        .implemented_by(t_forward_nonack_udp),
        FunctionDecl::new(
            "t_forward_nonack_tcp",
            &[Host, Port],
            RouteKinds::REQUEST,
            "as t_forward_nonack over TCP",
        )
        .implemented_by(t_forward_nonack_tcp),
        FunctionDecl::new(
            "t_on_failure",
            &[FailureRoute],
            RouteKinds::REQUEST_FAILURE,
            "enter failure_route[n] if the transaction fails",
        )
        .implemented_by(t_on_failure),
    ],
    params: &[
        ParamDecl::int("fr_timer", 30),
        ParamDecl::int("fr_inv_timer", 120),
        ParamDecl::int("wt_timer", 5),
        ParamDecl::int("delete_timer", 2),
        rfc_default("retr_timer1p1"),
        ParamDecl::int("retr_timer1p2", 2),
        ParamDecl::int("retr_timer1p3", 4),
        rfc_default("retr_timer2"),
        ParamDecl::int("noisy_ctimer", 0),
        ParamDecl::str("uac_from", "sip:foo@foo.bar"),
    ],
    renamed_functions: &[
        Renamed {
            old: "t_relay_to",
            new: Some("t_relay_to_udp"),
            note: "t_relay_to was replaced by t_relay_to_udp and t_relay_to_tcp in 0.8.11",
        },
        Renamed {
            old: "t_reply_unsafe",
            new: Some("t_reply"),
            note: "t_reply_unsafe is deprecated; t_reply is now used from any place in the script",
        },
        Renamed {
            old: "t_on_negative",
            new: Some("t_on_failure"),
            note: "t_on_negative was renamed t_on_failure",
        },
    ],
    renamed_params: &[],
    doc: "transaction manager: stateful processing",
    config: None,
    commands: commands::COMMANDS,
};

/// Timer values from tm's parameters (seconds, SER's units; see [`crate::txn::timer`]), resolved
/// once per loaded program.
pub fn timer_config(program: &crate::script::ir::Program) -> crate::txn::TimerConfig {
    use crate::modules::param;
    let secs = |name: &str| {
        param(Some(program), &MODULE, name)
            .and_then(|p| p.int())
            .filter(|v| *v > 0)
            .map(|v| std::time::Duration::from_secs(v as u64))
    };
    let d = crate::txn::TimerConfig::default();
    crate::txn::TimerConfig {
        t1: secs("retr_timer1p1").unwrap_or(d.t1),
        t2: secs("retr_timer2").unwrap_or(d.t2),
        t4: secs("wt_timer").unwrap_or(d.t4),
        fr: secs("fr_timer").unwrap_or(d.fr),
        fr_inv: secs("fr_inv_timer").unwrap_or(d.fr_inv),
    }
}
