//! Script module `vm`: voicemail interface: hands transactions to a media server through its FIFO.
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//! Also answers to `modparam("voicemail", ...)`.
//! Needs `tm` loaded as well.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `vm` | Str, Str | request | hand the transaction to the media application: fifo, action |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `db_url` | string | `""` (the server's default database) |
//! | `email_column` | string | `"email_address"` |
//! | `subscriber_table` | string | `"subscriber"` |
//! | `user_column` | string | `"username"` |
//! | `domain_column` | string | `"domain"` |
//! | `use_domain` | int | `0` |

use crate::script::{ArgKind::*, FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};

/// Declaration of module `vm`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "vm",
    aliases: &["voicemail"],
    depends: &["tm"],
    functions: &[FunctionDecl::new(
        "vm",
        &[Str, Str],
        RouteKinds::REQUEST,
        "hand the transaction to the media application: fifo, action",
    )],
    params: &[
        ParamDecl::str("db_url", ""),
        ParamDecl::str("email_column", "email_address"),
        ParamDecl::str("subscriber_table", "subscriber"),
        ParamDecl::str("user_column", "username"),
        ParamDecl::str("domain_column", "domain"),
        ParamDecl::int("use_domain", 0),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "voicemail interface: hands transactions to a media server through its FIFO",
    config: None,
    commands: &[],
};
