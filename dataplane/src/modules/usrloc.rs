//! Script module `usrloc`: in-memory user location table with optional database persistence.
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//!
//! Exports no script functions.
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
