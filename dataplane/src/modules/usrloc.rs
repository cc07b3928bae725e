//! Script module `usrloc`: in-memory user location table with optional database persistence.
//!
//! Exports no script functions: the store is [`crate::usrloc`] (shared by all shards through
//! `Services::usrloc`), used by registrar's `save`/`lookup`. The parameters below are read from
//! the running program by [`crate::usrloc::UsrlocConfig`]: `db_mode` 0 memory only, 1 every change
//! written at once, 2 changed AORs written back every `timer_interval` seconds, 3 the database only
//! (several servers sharing one DB); `db_url` empty = the server's default database; the `*_col`
//! names are the `location` table's columns (`method_col` is accepted and unused, as in SER 0.8.11).
//! Expired bindings are removed every `timer_interval` seconds (and never returned before that).
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `user_col` | string | `"username"` |
//! | `contact_col` | string | `"contact"` |
//! | `expires_col` | string | `"expires"` |
//! | `q_col` | string | `"q"` |
//! | `callid_col` | string | `"callid"` |
//! | `cseq_col` | string | `"cseq"` |
//! | `method_col` | string | `"method"` |
//! | `db_url` | string | `""` (the server's default database) |
//! | `timer_interval` | int | `60` |
//! | `db_mode` | int | `0` |
//! | `use_domain` | int | `0` |
//! | `domain_col` | string | `"domain"` |

use crate::script::{ModuleDecl, ParamDecl};

/// Declaration of module `usrloc`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "usrloc",
    aliases: &[],
    depends: &[],
    functions: &[],
    params: &[
        ParamDecl::str("user_col", "username"),
        ParamDecl::str("contact_col", "contact"),
        ParamDecl::str("expires_col", "expires"),
        ParamDecl::str("q_col", "q"),
        ParamDecl::str("callid_col", "callid"),
        ParamDecl::str("cseq_col", "cseq"),
        ParamDecl::str("method_col", "method"),
        ParamDecl::str("db_url", ""),
        ParamDecl::int("timer_interval", 60),
        ParamDecl::int("db_mode", 0),
        ParamDecl::int("use_domain", 0),
        ParamDecl::str("domain_col", "domain"),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "in-memory user location table with optional database persistence",
};
