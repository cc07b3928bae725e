//! Script module `pa`: presence agent.
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//! Needs `tm` loaded as well.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `handle_subscription` | Str | request | handle a SUBSCRIBE: domain (e.g. "jabber", "registrar") |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `default_expires` | int | `3600` |
//! | `timer_interval` | int | `10` |

use crate::script::{ArgKind::*, FunctionDecl, ModuleDecl, ParamDecl, Renamed, RouteKinds};

/// Declaration of module `pa`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "pa",
    aliases: &[],
    depends: &["tm"],
    functions: &[FunctionDecl::new(
        "handle_subscription",
        &[Str],
        RouteKinds::REQUEST,
        "handle a SUBSCRIBE: domain (e.g. \"jabber\", \"registrar\")",
    )],
    params: &[
        ParamDecl::int("default_expires", 3600),
        ParamDecl::int("timer_interval", 10),
    ],
    renamed_functions: &[Renamed {
        old: "handle_subscribe",
        new: Some("handle_subscription"),
        note: "the 0.8.11 pa module exports handle_subscription",
    }],
    renamed_params: &[],
    doc: "presence agent",
    config: None,
    commands: &[],
};
