//! Script module `maxfwd`: Max-Forwards checking.
//!
//! `mf_process_maxfwd_header(n)`: decrements Max-Forwards (or adds it with `n` when absent) and is
//! false when it is already 0 — the script then replies 483.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `mf_process_maxfwd_header` | Int | request | false when Max-Forwards reached zero; adds the header with the given value if absent |

use crate::script::env::{level, ActionResult, Env};
use crate::script::ir::Arg;
use crate::script::{ArgKind::*, Ctx, FunctionDecl, ModuleDecl, RouteKinds};
use crate::wire::{ErrorKind, HeaderId, Message, ParseError};
use smallvec::SmallVec;

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
    config: None,
    commands: &[],
};

/// What [`process_max_forwards`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxForwards {
    /// The header was there; it now says this.
    Decremented(u8),
    /// The header was missing and was added with this value.
    Added(u8),
    /// It was 0: the request must not be forwarded (483).
    Exhausted,
}

/// RFC 3261 §16.6 item 3 (and SER's `mf_process_maxfwd_header(n)`): decrement Max-Forwards, or add
/// it with `default` when absent; report `Exhausted` when it is already 0.
pub fn process_max_forwards(msg: &mut Message, default: u8) -> Result<MaxForwards, ParseError> {
    let Some(h) = msg.header(HeaderId::MaxForwards) else {
        if msg.inserted_header(b"Max-Forwards") {
            // Added earlier for this message (mf_process_maxfwd_header, then forward): once only.
            return Ok(MaxForwards::Added(default));
        }
        let mut buf = itoa::Buffer::new();
        let s = buf.format(default);
        let v: SmallVec<[u8; 4]> = SmallVec::from_slice(s.as_bytes());
        msg.insert_header_top(b"Max-Forwards", &v);
        return Ok(MaxForwards::Added(default));
    };
    let index = h.index;
    let n = match msg.max_forwards() {
        Some(r) => r?,
        None => return Err(ParseError::new(ErrorKind::BadMaxForwards, 0)),
    };
    if n == 0 {
        return Ok(MaxForwards::Exhausted);
    }
    let mut buf = itoa::Buffer::new();
    let s: SmallVec<[u8; 4]> = SmallVec::from_slice(buf.format(n - 1).as_bytes());
    // The index is valid: it was just read from the same message.
    let _ = msg.replace_header_value(index, &s);
    Ok(MaxForwards::Decremented(n - 1))
}
