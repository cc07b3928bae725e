//! Script module `pdt`: prefix-to-domain translation (experimental).
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `prefix2domain` | - | request | rewrite the URI host from the number prefix |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `db_url` | string | `""` (the server's default database) |
//! | `db_table` | string | `"domains"` |
//! | `prefix` | string | `""` |
//! | `start_range` | int | `2000` |

use crate::script::{FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};

/// Declaration of module `pdt`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "pdt",
    aliases: &[],
    depends: &[],
    functions: &[FunctionDecl::new(
        "prefix2domain",
        &[],
        RouteKinds::REQUEST,
        "rewrite the URI host from the number prefix",
    )],
    params: &[
        ParamDecl::str("db_url", ""),
        ParamDecl::str("db_table", "domains"),
        ParamDecl::str("prefix", ""),
        ParamDecl::int("start_range", 2000),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "prefix-to-domain translation (experimental)",
    config: None,
    commands: &[],
};
