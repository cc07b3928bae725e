//! Script module `group_radius`: group membership checks via RADIUS.
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `radius_is_user_in` | Str, Str | request | true if the user is in the group (RADIUS) |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `radius_config` | string | `"/usr/local/etc/radiusclient/radiusclient.conf"` |
//! | `use_domain` | int | `0` |

use crate::script::{ArgKind::*, FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};

/// Declaration of module `group_radius`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "group_radius",
    aliases: &[],
    depends: &[],
    functions: &[FunctionDecl::new(
        "radius_is_user_in",
        &[Str, Str],
        RouteKinds::REQUEST,
        "true if the user is in the group (RADIUS)",
    )],
    params: &[
        ParamDecl::str(
            "radius_config",
            "/usr/local/etc/radiusclient/radiusclient.conf",
        ),
        ParamDecl::int("use_domain", 0),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "group membership checks via RADIUS",
    config: None,
    commands: &[],
};
