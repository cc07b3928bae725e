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
//! | command | parameters | reply |
//! |---|---|---|
//! | `sl_stats` | — | [`sl_stats_reply`] |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `enable_stats` | int | `1` |

use serde_json::json;

use crate::command::{CommandDecl, Host, Reply};
use crate::proxy::sl::{SlStats, SlTotals};
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
    commands: &[CommandDecl::sync(
        "sl_stats",
        "",
        "stateless reply statistics",
        sl_stats,
    )],
};

fn sl_stats(host: &dyn Host, _: &[String]) -> Reply {
    sl_stats_reply(&SlStats::sum(&host.shared().sl_stats))
}

/// `sl_stats`: SER printed per-code counters and the rest of each class (`2xx` = 2xx other than
/// those listed); ser counts 200 apart and the other codes by class.
pub fn sl_stats_reply(t: &SlTotals) -> Reply {
    let c = &t.by_class;
    Reply::ok(vec![
        format!("200: {} 2xx: {}", t.ok_200, c[1].saturating_sub(t.ok_200)),
        format!("3xx: {}", c[2]),
        format!("4xx: {}", c[3]),
        format!("5xx: {}", c[4]),
        format!("6xx: {}", c[5]),
        format!("xxx: {}", c[0]),
    ])
    .with_data(json!({
        "200": t.ok_200, "1xx": c[0], "2xx": c[1], "3xx": c[2], "4xx": c[3], "5xx": c[4],
        "6xx": c[5], "acks_absorbed": t.acks_absorbed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sl_stats_lines() {
        let r = sl_stats_reply(&SlTotals {
            by_class: [0, 3, 0, 2, 1, 0],
            ok_200: 2,
            acks_absorbed: 0,
        });
        assert_eq!(
            r.to_fifo(),
            "200 ok\n200: 2 2xx: 1\n3xx: 0\n4xx: 2\n5xx: 1\n6xx: 0\nxxx: 0\n"
        );
    }
}
