//! Script module `tm`: transaction manager: stateful processing.
//!
//! The functions are thin: each turns its arguments into a call on the shard's transaction layer
//! ([`Transactions`]; the shard owns the transaction table and runs them with [`run`] from its
//! [`Env::call`], see [`crate::proxy::tm`]). Where there is none (tests, tools) they fail (-1).
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
//! | `t_on_reply` | OnReplyRoute | request, failure | run onreply_route[n] over every reply of the transaction before it goes upstream |
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

use crate::offload::JobResult;
use crate::script::env::{ActionResult, Env};
use crate::script::ir::{Arg, Proto};
use crate::script::{
    ArgKind::*, Ctx, FunctionDecl, FunctionId, ModuleDecl, ModuleId, ParamDecl, ParamDefault,
    ParamType, Renamed, RouteKinds,
};

/// What a stateful forward does (`t_relay`, `t_relay_to_*`, `t_forward_nonack*`, `t_replicate*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Relay {
    /// An explicit next hop (host, port) instead of the destination set.
    pub to: Option<(smallvec::SmallVec<[u8; 64]>, u16)>,
    /// Transport forced by the function name.
    pub proto: Option<Proto>,
    /// `t_replicate*`: replies stay here (the script answered the request itself).
    pub replicate: bool,
    /// `t_forward_nonack*`: an ACK is an error.
    pub non_ack: bool,
    /// Set when the call is redone after a DNS answer (a second miss is a failure, not a loop).
    pub after_dns: bool,
}

/// The transaction layer tm's functions run on (the shard implements it over its transaction
/// table and runs them through [`Env::call`] with [`run`]). Each returns what the script sees (`Ret(0)` ends the script: a
/// retransmission was absorbed).
pub trait Transactions {
    /// `t_newtran`.
    fn t_newtran(&mut self, ctx: &mut Ctx) -> ActionResult;
    /// `t_relay` and friends.
    fn t_relay(&mut self, ctx: &mut Ctx, how: &Relay) -> ActionResult;
    /// `t_reply(code, reason)`.
    fn t_reply(&mut self, ctx: &mut Ctx, code: u16, reason: &[u8]) -> ActionResult;
    /// `t_lookup_request`.
    fn t_lookup_request(&mut self, ctx: &mut Ctx) -> ActionResult;
    /// `t_retransmit_reply`.
    fn t_retransmit_reply(&mut self, ctx: &mut Ctx) -> ActionResult;
    /// `t_release`.
    fn t_release(&mut self, ctx: &mut Ctx) -> ActionResult;
}

/// What tm keeps about the request being run (its slot of [`Ctx::module_state`]).
#[derive(Debug, Clone, Default)]
pub struct TmState {
    /// The transaction of this request, once `t_newtran`/`t_relay`/`t_lookup_request` found or
    /// made it (a handle into the shard's table), or the one a failure_route runs for.
    pub txn: Option<crate::txn::TxnHandle>,
    /// `t_on_failure(n)`: the failure_route to run if the transaction fails.
    pub failure_route: Option<crate::script::ir::RouteId>,
    /// `t_on_reply(n)`: the onreply_route every reply of the transaction runs through.
    pub reply_route: Option<crate::script::ir::RouteId>,
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

/// A tm function as it runs on the transaction layer.
type LayerFn = fn(&mut dyn Transactions, &mut Ctx, &[Arg]) -> ActionResult;

/// What runs on the transaction layer, by function id (the order of [`MODULE`]'s functions;
/// `None`: the declaration's `imp` runs, it needs no layer).
static LAYER: &[(&str, Option<LayerFn>)] = &[
    ("t_newtran", Some(t_newtran)),
    ("t_lookup_request", Some(t_lookup_request)),
    ("t_reply", Some(t_reply)),
    ("t_retransmit_reply", Some(t_retransmit_reply)),
    ("t_release", Some(t_release)),
    ("t_relay", Some(t_relay)),
    ("t_relay_to_udp", Some(t_relay_to_udp)),
    ("t_relay_to_tcp", Some(t_relay_to_tcp)),
    ("t_replicate", Some(t_replicate)),
    ("t_replicate_udp", Some(t_replicate_udp)),
    ("t_replicate_tcp", Some(t_replicate_tcp)),
    ("t_forward_nonack", Some(t_forward_nonack)),
    ("t_forward_nonack_udp", Some(t_forward_nonack_udp)),
    ("t_forward_nonack_tcp", Some(t_forward_nonack_tcp)),
    ("t_on_failure", None),
    ("t_on_reply", None),
];

/// `t_relay`'s id in [`MODULE`] (checked by a test).
const T_RELAY: FunctionId = FunctionId(5);

/// Runs tm's `function` on the transaction layer `t` (what the shard's [`Env::call`] does for
/// tm's calls); `None` for a function that needs no layer.
pub fn run(
    t: &mut dyn Transactions,
    function: FunctionId,
    ctx: &mut Ctx,
    args: &[Arg],
) -> Option<ActionResult> {
    let f = LAYER.get(usize::from(function.0))?.1?;
    Some(f(t, ctx, args))
}

/// tm's id in [`crate::modules::ALL`] (its place there, checked by a test): a constant, because
/// the shard compares it on every module call.
pub const ID: ModuleId = ModuleId(25);

/// tm's id in [`crate::modules::ALL`].
pub fn id() -> ModuleId {
    ID
}

/// What a tm function does where there is no transaction layer (tests, tools): fail.
fn no_layer(_: &mut Ctx, _: &mut dyn Env, _: &[Arg]) -> ActionResult {
    ActionResult::Ret(-1)
}

/// Resumes a stateful forward that waited for DNS (the layer set [`TmState::pending_relay`] and
/// suspended with this): the relay is redone on the layer, the DNS cache filled now.
pub fn redo_relay(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg], _: JobResult) -> ActionResult {
    env.call(id(), T_RELAY, ctx, args)
        .unwrap_or(ActionResult::Ret(-1))
}

fn relay_with(t: &mut dyn Transactions, ctx: &mut Ctx, args: &[Arg], how: Relay) -> ActionResult {
    // Redone after a DNS answer: what the first attempt asked for, once more.
    if let Some(mut pending) = TmState::of(ctx).pending_relay.take() {
        pending.after_dns = true;
        return t.t_relay(ctx, &pending);
    }
    let mut how = how;
    if let (Some(Arg::Str(h)), Some(Arg::Port(p))) = (args.first(), args.get(1)) {
        how.to = Some((SmallVec::from_slice(h.as_bytes()), *p));
    }
    t.t_relay(ctx, &how)
}

fn t_relay(t: &mut dyn Transactions, ctx: &mut Ctx, args: &[Arg]) -> ActionResult {
    relay_with(t, ctx, args, Relay::default())
}
fn t_relay_to_udp(t: &mut dyn Transactions, ctx: &mut Ctx, args: &[Arg]) -> ActionResult {
    let how = Relay {
        proto: Some(Proto::Udp),
        ..Relay::default()
    };
    relay_with(t, ctx, args, how)
}
fn t_relay_to_tcp(t: &mut dyn Transactions, ctx: &mut Ctx, args: &[Arg]) -> ActionResult {
    let how = Relay {
        proto: Some(Proto::Tcp),
        ..Relay::default()
    };
    relay_with(t, ctx, args, how)
}
fn t_forward_nonack(t: &mut dyn Transactions, ctx: &mut Ctx, args: &[Arg]) -> ActionResult {
    let how = Relay {
        non_ack: true,
        ..Relay::default()
    };
    relay_with(t, ctx, args, how)
}
fn t_forward_nonack_udp(t: &mut dyn Transactions, ctx: &mut Ctx, args: &[Arg]) -> ActionResult {
    let how = Relay {
        non_ack: true,
        proto: Some(Proto::Udp),
        ..Relay::default()
    };
    relay_with(t, ctx, args, how)
}
fn t_forward_nonack_tcp(t: &mut dyn Transactions, ctx: &mut Ctx, args: &[Arg]) -> ActionResult {
    let how = Relay {
        non_ack: true,
        proto: Some(Proto::Tcp),
        ..Relay::default()
    };
    relay_with(t, ctx, args, how)
}
fn t_replicate(t: &mut dyn Transactions, ctx: &mut Ctx, args: &[Arg]) -> ActionResult {
    let how = Relay {
        replicate: true,
        ..Relay::default()
    };
    relay_with(t, ctx, args, how)
}
fn t_replicate_udp(t: &mut dyn Transactions, ctx: &mut Ctx, args: &[Arg]) -> ActionResult {
    let how = Relay {
        replicate: true,
        proto: Some(Proto::Udp),
        ..Relay::default()
    };
    relay_with(t, ctx, args, how)
}
fn t_replicate_tcp(t: &mut dyn Transactions, ctx: &mut Ctx, args: &[Arg]) -> ActionResult {
    let how = Relay {
        replicate: true,
        proto: Some(Proto::Tcp),
        ..Relay::default()
    };
    relay_with(t, ctx, args, how)
}
fn t_newtran(t: &mut dyn Transactions, ctx: &mut Ctx, _: &[Arg]) -> ActionResult {
    t.t_newtran(ctx)
}
fn t_reply(t: &mut dyn Transactions, ctx: &mut Ctx, args: &[Arg]) -> ActionResult {
    let code = match args.first() {
        Some(Arg::StatusCode(c)) => *c,
        _ => return ActionResult::Ret(-1),
    };
    let reason: SmallVec<[u8; 64]> = match args.get(1) {
        Some(Arg::Str(r)) => SmallVec::from_slice(r.as_bytes()),
        _ => SmallVec::new(),
    };
    t.t_reply(ctx, code, &reason)
}
fn t_lookup_request(t: &mut dyn Transactions, ctx: &mut Ctx, _: &[Arg]) -> ActionResult {
    t.t_lookup_request(ctx)
}
fn t_retransmit_reply(t: &mut dyn Transactions, ctx: &mut Ctx, _: &[Arg]) -> ActionResult {
    t.t_retransmit_reply(ctx)
}
fn t_release(t: &mut dyn Transactions, ctx: &mut Ctx, _: &[Arg]) -> ActionResult {
    t.t_release(ctx)
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

fn t_on_reply(ctx: &mut Ctx, _env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    match args.first() {
        Some(Arg::Route(r)) => {
            TmState::of(ctx).reply_route = Some(*r);
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
        .implemented_by(no_layer)
        .restricted("the transaction already exists there"),
        FunctionDecl::new(
            "t_lookup_request",
            &[],
            RouteKinds::REQUEST,
            "true if the request belongs to a known transaction",
        )
        .implemented_by(no_layer),
        FunctionDecl::new(
            "t_reply",
            &[StatusCode, Str],
            RouteKinds::REQUEST_FAILURE,
            "stateful reply: code, reason",
        )
        .implemented_by(no_layer),
        FunctionDecl::new(
            "t_retransmit_reply",
            &[],
            RouteKinds::REQUEST,
            "retransmit the last reply of the transaction",
        )
        .implemented_by(no_layer),
        FunctionDecl::new(
            "t_release",
            &[],
            RouteKinds::REQUEST,
            "remove the transaction from memory",
        )
        .implemented_by(no_layer),
        FunctionDecl::new(
            "t_relay",
            &[],
            RouteKinds::REQUEST_FAILURE,
            "stateful forward to the whole destination set",
        )
        .implemented_by(no_layer),
        FunctionDecl::new(
            "t_relay_to_udp",
            &[Host, Port],
            RouteKinds::REQUEST_FAILURE,
            "stateful forward to host, port over UDP",
        )
        .implemented_by(no_layer),
        FunctionDecl::new(
            "t_relay_to_tcp",
            &[Host, Port],
            RouteKinds::REQUEST_FAILURE,
            "stateful forward to host, port over TCP",
        )
        .implemented_by(no_layer),
        FunctionDecl::new(
            "t_replicate",
            &[Host, Port],
            RouteKinds::REQUEST,
            "replicate the request to host, port",
        )
        .implemented_by(no_layer),
        FunctionDecl::new(
            "t_replicate_udp",
            &[Host, Port],
            RouteKinds::REQUEST,
            "replicate over UDP",
        )
        .implemented_by(no_layer),
        FunctionDecl::new(
            "t_replicate_tcp",
            &[Host, Port],
            RouteKinds::REQUEST,
            "replicate over TCP",
        )
        .implemented_by(no_layer),
        FunctionDecl::new(
            "t_forward_nonack",
            &[Host, Port],
            RouteKinds::REQUEST,
            "stateful forward of a non-ACK request to host, port",
        )
        .implemented_by(no_layer),
        FunctionDecl::new(
            "t_forward_nonack_udp",
            &[Host, Port],
            RouteKinds::REQUEST,
            "as t_forward_nonack over UDP",
        )
        .implemented_by(no_layer),
        FunctionDecl::new(
            "t_forward_nonack_tcp",
            &[Host, Port],
            RouteKinds::REQUEST,
            "as t_forward_nonack over TCP",
        )
        .implemented_by(no_layer),
        FunctionDecl::new(
            "t_on_failure",
            &[FailureRoute],
            RouteKinds::REQUEST_FAILURE,
            "enter failure_route[n] if the transaction fails",
        )
        .implemented_by(t_on_failure),
        FunctionDecl::new(
            "t_on_reply",
            &[OnReplyRoute],
            RouteKinds::REQUEST_FAILURE,
            "run onreply_route[n] for every reply of the transaction",
        )
        .implemented_by(t_on_reply),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layer_table_follows_the_function_table() {
        assert_eq!(LAYER.len(), MODULE.functions.len());
        for ((name, _), f) in LAYER.iter().zip(MODULE.functions) {
            assert_eq!(*name, f.name);
        }
        assert_eq!(MODULE.functions[usize::from(T_RELAY.0)].name, "t_relay");
        assert_eq!(crate::modules::get(id()).name, "tm");
    }
}
