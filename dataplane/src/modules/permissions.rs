//! Script module `permissions`: access control lists (allow/deny files).
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `allow_routing` | Str | request | true if routing is allowed: basename of allow/deny files (optional) |
//! | `allow_register` | Str | request | true if the REGISTER is allowed: basename of allow/deny files |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `default_allow_file` | string | `"permissions.allow"` |
//! | `default_deny_file` | string | `"permissions.deny"` |
//! | `check_all_branches` | int | `1` |

use crate::script::{ArgKind::*, FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};

/// Declaration of module `permissions`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "permissions",
    aliases: &[],
    depends: &[],
    functions: &[
        FunctionDecl::new(
            "allow_routing",
            &[Str],
            RouteKinds::REQUEST,
            "true if routing is allowed: basename of allow/deny files (optional)",
        )
        .min(0),
        FunctionDecl::new(
            "allow_register",
            &[Str],
            RouteKinds::REQUEST,
            "true if the REGISTER is allowed: basename of allow/deny files",
        ),
    ],
    params: &[
        ParamDecl::str("default_allow_file", "permissions.allow"),
        ParamDecl::str("default_deny_file", "permissions.deny"),
        ParamDecl::int("check_all_branches", 1),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "access control lists (allow/deny files)",
};
