//! Script module `domain`: served-domain checks.
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `is_from_local` | - | request | true if the From host is a local domain |
//! | `is_uri_host_local` | - | request | true if the request URI host is a local domain |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `db_url` | string | `""` (the server's default database) |
//! | `db_mode` | int | `0` |
//! | `domain_table` | string | `"domain"` |
//! | `domain_column` | string | `"domain"` |

use crate::script::{FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};

/// Declaration of module `domain`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "domain",
    aliases: &[],
    depends: &[],
    functions: &[
        FunctionDecl::new(
            "is_from_local",
            &[],
            RouteKinds::REQUEST,
            "true if the From host is a local domain",
        ),
        FunctionDecl::new(
            "is_uri_host_local",
            &[],
            RouteKinds::REQUEST,
            "true if the request URI host is a local domain",
        ),
    ],
    params: &[
        ParamDecl::str("db_url", ""),
        ParamDecl::int("db_mode", 0),
        ParamDecl::str("domain_table", "domain"),
        ParamDecl::str("domain_column", "domain"),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "served-domain checks",
};
