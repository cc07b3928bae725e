//! Script module `msilo`: message silo: stores undelivered instant messages.
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//! Needs `tm` loaded as well.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `m_store` | Int | request, failure | store the MESSAGE: which URI is the destination (0 = request URI) |
//! | `m_dump` | - | request | send the stored messages to a user who registers |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `db_url` | string | `""` (the server's default database) |
//! | `db_table` | string | `"silo"` |
//! | `registrar` | string | unset |
//! | `expire_time` | int | `259200` |
//! | `check_time` | int | `30` |
//! | `clean_period` | int | `5` |
//! | `use_contact` | int | `1` |

use crate::script::{ArgKind::*, FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};

/// Declaration of module `msilo`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "msilo",
    aliases: &[],
    depends: &["tm"],
    functions: &[
        FunctionDecl::new(
            "m_store",
            &[Int],
            RouteKinds::REQUEST_FAILURE,
            "store the MESSAGE: which URI is the destination (0 = request URI)",
        ),
        FunctionDecl::new(
            "m_dump",
            &[],
            RouteKinds::REQUEST,
            "send the stored messages to a user who registers",
        ),
    ],
    params: &[
        ParamDecl::str("db_url", ""),
        ParamDecl::str("db_table", "silo"),
        ParamDecl::str_unset("registrar"),
        ParamDecl::int("expire_time", 259200),
        ParamDecl::int("check_time", 30),
        ParamDecl::int("clean_period", 5),
        ParamDecl::int("use_contact", 1),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "message silo: stores undelivered instant messages",
    config: None,
    commands: &[],
};
