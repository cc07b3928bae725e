//! Script module `maxfwd`: Max-Forwards checking.
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `mf_process_maxfwd_header` | Int | request | false when Max-Forwards reached zero; adds the header with the given value if absent |

use crate::script::{ArgKind::*, FunctionDecl, ModuleDecl, RouteKinds};

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
    )],
    params: &[],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "Max-Forwards checking",
};
