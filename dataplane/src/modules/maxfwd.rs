//! Script module `maxfwd`: Max-Forwards checking.
//!
//! `mf_process_maxfwd_header(n)`: decrements Max-Forwards (or adds it with `n` when absent) and is
//! false when it is already 0 — the script then replies 483.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `mf_process_maxfwd_header` | Int | request | false when Max-Forwards reached zero; adds the header with the given value if absent |

use crate::proxy::forward::{process_max_forwards, MaxForwards};
use crate::script::env::{level, ActionResult, Env};
use crate::script::ir::Arg;
use crate::script::{ArgKind::*, Ctx, FunctionDecl, ModuleDecl, RouteKinds};

fn mf_process_maxfwd_header(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let default = match args {
        [Arg::Int(n)] => u8::try_from(*n).unwrap_or(70),
        _ => 70,
    };
    match process_max_forwards(&mut ctx.msg, default) {
        Ok(MaxForwards::Exhausted) => ActionResult::Ret(-1),
        Ok(_) => ActionResult::Ret(1),
        Err(e) => {
            env.log(
                level::ERR,
                format!("mf_process_maxfwd_header: {e}").as_bytes(),
            );
            ActionResult::Ret(-1)
        }
    }
}

/// Declaration of module `maxfwd`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "maxfwd",
    aliases: &[],
    depends: &[],
    functions: &[FunctionDecl::new(
        "mf_process_maxfwd_header",
        &[Int],
        RouteKinds::REQUEST,
        "false when Max-Forwards reached zero; adds the header with the given value if absent",
    )
    .implemented_by(mf_process_maxfwd_header)],
    params: &[],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "Max-Forwards checking",
};
