//! Script module `uri`: checks of digest identity against header URIs.
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `check_to` | - | request | true if the To username equals the digest username |
//! | `check_from` | - | request | true if the From username equals the digest username |
//! | `is_user` | Str | request | true if the credentials belong to the user |
//! | `does_uri_exist` | - | request | true if the request URI is a known subscriber or alias |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `db_url` | string | `""` (the server's default database) |
//! | `uri_table` | string | `"uri"` |
//! | `subscriber_table` | string | `"subscriber"` |
//! | `use_uri_table` | int | `0` |

use crate::script::{ArgKind::*, FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};

/// Declaration of module `uri`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "uri",
    aliases: &[],
    depends: &[],
    functions: &[
        FunctionDecl::new(
            "check_to",
            &[],
            RouteKinds::REQUEST,
            "true if the To username equals the digest username",
        ),
        FunctionDecl::new(
            "check_from",
            &[],
            RouteKinds::REQUEST,
            "true if the From username equals the digest username",
        ),
        FunctionDecl::new(
            "is_user",
            &[Str],
            RouteKinds::REQUEST,
            "true if the credentials belong to the user",
        ),
        FunctionDecl::new(
            "does_uri_exist",
            &[],
            RouteKinds::REQUEST,
            "true if the request URI is a known subscriber or alias",
        ),
    ],
    params: &[
        ParamDecl::str("db_url", ""),
        ParamDecl::str("uri_table", "uri"),
        ParamDecl::str("subscriber_table", "subscriber"),
        ParamDecl::int("use_uri_table", 0),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "checks of digest identity against header URIs",
};
