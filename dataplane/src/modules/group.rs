//! Script module `group`: group membership checks in the database.
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `is_user_in` | Str, Str | request | true if the user (Request-URI|To|From|Credentials) is in the group |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `db_url` | string | `""` (the server's default database) |
//! | `table` | string | `"grp"` |
//! | `user_column` | string | `"username"` |
//! | `domain_column` | string | `"domain"` |
//! | `group_column` | string | `"grp"` |
//! | `use_domain` | int | `0` |

use crate::script::{ArgKind::*, FunctionDecl, ModuleDecl, ParamDecl, Renamed, RouteKinds};

/// Declaration of module `group`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "group",
    aliases: &[],
    depends: &[],
    functions: &[FunctionDecl::new(
        "is_user_in",
        &[Str, Str],
        RouteKinds::REQUEST,
        "true if the user (Request-URI|To|From|Credentials) is in the group",
    )],
    params: &[
        ParamDecl::str("db_url", ""),
        ParamDecl::str("table", "grp"),
        ParamDecl::str("user_column", "username"),
        ParamDecl::str("domain_column", "domain"),
        ParamDecl::str("group_column", "grp"),
        ParamDecl::int("use_domain", 0),
    ],
    renamed_functions: &[Renamed {
        old: "is_in_group",
        new: Some("is_user_in"),
        note: "is_in_group was renamed is_user_in",
    }],
    renamed_params: &[],
    doc: "group membership checks in the database",
};
