//! Script module `auth_db`: database digest authentication.
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//! Needs `auth` loaded as well.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `www_authorize` | Str, Str | request | verify Authorization credentials: realm, subscriber table |
//! | `proxy_authorize` | Str, Str | request | verify Proxy-Authorization credentials: realm, subscriber table |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `db_url` | string | `""` (the server's default database) |
//! | `user_column` | string | `"username"` |
//! | `domain_column` | string | `"domain"` |
//! | `password_column` | string | `"ha1"` |
//! | `password_column_2` | string | `"ha1b"` |
//! | `calculate_ha1` | int | `0` |
//! | `use_rpid` | int | `0` |

use crate::script::{ArgKind::*, FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};

/// Declaration of module `auth_db`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "auth_db",
    aliases: &[],
    depends: &["auth"],
    functions: &[
        FunctionDecl::new(
            "www_authorize",
            &[Str, Str],
            RouteKinds::REQUEST,
            "verify Authorization credentials: realm, subscriber table",
        ),
        FunctionDecl::new(
            "proxy_authorize",
            &[Str, Str],
            RouteKinds::REQUEST,
            "verify Proxy-Authorization credentials: realm, subscriber table",
        ),
    ],
    params: &[
        ParamDecl::str("db_url", ""),
        ParamDecl::str("user_column", "username"),
        ParamDecl::str("domain_column", "domain"),
        ParamDecl::str("password_column", "ha1"),
        ParamDecl::str("password_column_2", "ha1b"),
        ParamDecl::int("calculate_ha1", 0),
        ParamDecl::int("use_rpid", 0),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "database digest authentication",
};
