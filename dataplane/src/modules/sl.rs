//! Script module `sl`: stateless user agent server: replies without a transaction.
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `sl_send_reply` | StatusCode, Str | request | send a stateless reply: code, reason |
//! | `sl_reply_error` | - | request | stateless reply describing the last internal error |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `enable_stats` | int | `1` |

use crate::script::{ArgKind::*, FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};

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
        .restricted("stateless reply; use t_reply"),
        FunctionDecl::new(
            "sl_reply_error",
            &[],
            RouteKinds::REQUEST,
            "stateless reply describing the last internal error",
        )
        .restricted("stateless reply; use t_reply"),
    ],
    params: &[ParamDecl::int("enable_stats", 1)],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "stateless user agent server: replies without a transaction",
};
