//! Script module `rr`: record routing (strict and loose).
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `record_route` | - | request | add a Record-Route header |
//! | `loose_route` | - | request | process Route headers; true if the request is routed by them |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `enable_full_lr` | int | `0` |

use crate::script::{FunctionDecl, ModuleDecl, ParamDecl, Renamed, RouteKinds};

/// Declaration of module `rr`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "rr",
    aliases: &[],
    depends: &[],
    functions: &[
        FunctionDecl::new(
            "record_route",
            &[],
            RouteKinds::REQUEST,
            "add a Record-Route header",
        )
        .restricted("record-routing belongs to the request route"),
        FunctionDecl::new(
            "loose_route",
            &[],
            RouteKinds::REQUEST,
            "process Route headers; true if the request is routed by them",
        )
        .restricted("Route processing belongs to the request route"),
    ],
    params: &[ParamDecl::int("enable_full_lr", 0)],
    renamed_functions: &[
        Renamed {
            old: "addRecordRoute",
            new: Some("record_route"),
            note: "addRecordRoute was replaced by record_route",
        },
        Renamed {
            old: "rewriteFromRoute",
            new: Some("loose_route"),
            note: "rewriteFromRoute was replaced by loose_route",
        },
    ],
    renamed_params: &[],
    doc: "record routing (strict and loose)",
};
