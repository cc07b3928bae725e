//! Script module `auth_radius`: RADIUS digest authentication.
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//! Needs `auth` loaded as well.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `radius_www_authorize` | Str | request | verify Authorization credentials via RADIUS: realm |
//! | `radius_proxy_authorize` | Str | request | verify Proxy-Authorization credentials via RADIUS: realm |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `radius_config` | string | `"/usr/local/etc/radiusclient/radiusclient.conf"` |
//! | `service_type` | int | `15` |

use crate::script::{ArgKind::*, FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};

/// Declaration of module `auth_radius`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "auth_radius",
    aliases: &[],
    depends: &["auth"],
    functions: &[
        FunctionDecl::new(
            "radius_www_authorize",
            &[Str],
            RouteKinds::REQUEST,
            "verify Authorization credentials via RADIUS: realm",
        ),
        FunctionDecl::new(
            "radius_proxy_authorize",
            &[Str],
            RouteKinds::REQUEST,
            "verify Proxy-Authorization credentials via RADIUS: realm",
        ),
    ],
    params: &[
        ParamDecl::str(
            "radius_config",
            "/usr/local/etc/radiusclient/radiusclient.conf",
        ),
        ParamDecl::int("service_type", 15),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "RADIUS digest authentication",
    config: None,
    commands: &[],
};
