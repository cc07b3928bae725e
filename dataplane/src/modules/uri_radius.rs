//! Script module `uri_radius`: RADIUS variant of uri.
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `radius_does_uri_exist` | - | request | true if the request URI exists (RADIUS) |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `radius_config` | string | `"/usr/local/etc/radiusclient/radiusclient.conf"` |

use crate::script::{FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};

/// Declaration of module `uri_radius`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "uri_radius",
    aliases: &[],
    depends: &[],
    functions: &[FunctionDecl::new(
        "radius_does_uri_exist",
        &[],
        RouteKinds::REQUEST,
        "true if the request URI exists (RADIUS)",
    )],
    params: &[ParamDecl::str(
        "radius_config",
        "/usr/local/etc/radiusclient/radiusclient.conf",
    )],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "RADIUS variant of uri",
    config: None,
    commands: &[],
};
