//! Script module `sl`: stateless user agent server: replies without a transaction.
//!
//! Both functions reply through [`Env::reply`]: the shard builds the reply (RFC 3261 §8.2.6 copies,
//! a To-tag stable across retransmissions, the destination set as Contacts for 3xx) and sends it to
//! the request's source. ACKs of these replies are absorbed by the shard before the script runs.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `sl_send_reply` | StatusCode, Str | request | send a stateless reply: code, reason |
//! | `sl_reply_error` | - | request | stateless reply describing the last internal error |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `enable_stats` | int | `1` |

use crate::script::env::{ActionResult, Env};
use crate::script::ir::Arg;
use crate::script::{ArgKind::*, Ctx, FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};

/// `sl_send_reply(code, reason)`.
fn sl_send_reply(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let (code, reason) = match args {
        [Arg::StatusCode(c), Arg::Str(r)] => (*c, r.as_bytes()),
        [Arg::Int(c), Arg::Str(r)] => (u16::try_from(*c).unwrap_or(500), r.as_bytes()),
        _ => return ActionResult::Ret(-1),
    };
    env.reply(ctx, code, reason)
}

/// `sl_reply_error()`: answers with the status of the last internal error (an unresolvable
/// destination 478, a bad Request-URI 400, Max-Forwards exhausted 483…), 500 when none is known.
fn sl_reply_error(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg]) -> ActionResult {
    let (code, reason) = ctx.last_error.unwrap_or((500, "Server Internal Error"));
    env.reply(ctx, code, reason.as_bytes())
}

/// Declaration of module `sl`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "sl",
    aliases: &[],
    depends: &[],
    functions: &[
        FunctionDecl::new(
            "sl_send_reply",
            &[StatusCode, Str],
            RouteKinds::REQUEST,
            "send a stateless reply: code, reason",
        )
        .implemented_by(sl_send_reply)
        .restricted("stateless reply; use t_reply"),
        FunctionDecl::new(
            "sl_reply_error",
            &[],
            RouteKinds::REQUEST,
            "stateless reply describing the last internal error",
        )
        .implemented_by(sl_reply_error)
        .restricted("stateless reply; use t_reply"),
    ],
    params: &[ParamDecl::int("enable_stats", 1)],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "stateless user agent server: replies without a transaction",
    config: None,
};
