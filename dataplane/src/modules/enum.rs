//! Script module `enum`: ENUM: E.164 number resolution.
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `enum_query` | Str | request | rewrite the request URI from the ENUM record: suffix (optional) |
//! | `is_from_user_e164` | - | request | true if the From user is an E.164 number |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `domain_suffix` | string | `"e164.arpa."` |

use crate::script::{ArgKind::*, FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};

/// Declaration of module `enum`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "enum",
    aliases: &[],
    depends: &[],
    functions: &[
        FunctionDecl::new(
            "enum_query",
            &[Str],
            RouteKinds::REQUEST,
            "rewrite the request URI from the ENUM record: suffix (optional)",
        )
        .min(0),
        FunctionDecl::new(
            "is_from_user_e164",
            &[],
            RouteKinds::REQUEST,
            "true if the From user is an E.164 number",
        ),
    ],
    params: &[ParamDecl::str("domain_suffix", "e164.arpa.")],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "ENUM: E.164 number resolution",
    config: None,
    commands: &[],
};
