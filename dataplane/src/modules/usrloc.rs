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
//! Management commands (`ul_stats`, `ul_rm`, `ul_rm_contact`, `ul_dump`, `ul_flush`, `ul_add`,
//! `ul_show_contact`): see [`commands`].
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
pub use crate::usrloc::UsrlocConfig;

pub mod commands;

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
    config: Some(resolve_config),
    commands: commands::COMMANDS,
};

fn resolve_config(program: &crate::script::ir::Program) -> crate::script::ModuleConfig {
    std::sync::Arc::new(UsrlocConfig::from_program(Some(program)))
}

impl Default for UsrlocConfig {
    fn default() -> Self {
        UsrlocConfig::from_program(None)
    }
}

impl UsrlocConfig {
    /// The parameters of `program` (defaults when `None` or when usrloc is not loaded).
    pub fn from_program(program: Option<&crate::script::ir::Program>) -> UsrlocConfig {
        Self::read(program)
    }

    fn read(program: Option<&crate::script::ir::Program>) -> UsrlocConfig {
        let db_mode = super::param(program, &MODULE, "db_mode")
            .and_then(|p| p.int())
            .unwrap_or(0);
        let int = |m, n| {
            super::param(program, m, n)
                .and_then(|p| p.int())
                .unwrap_or(0)
        };
        let s = |n: &str| {
            super::param(program, &MODULE, n)
                .and_then(|p| p.str())
                .unwrap_or("")
                .to_string()
        };
        UsrlocConfig {
            db_mode,
            db_url: s("db_url"),
            timer_interval: u64::try_from(int(&MODULE, "timer_interval"))
                .unwrap_or(60)
                .max(1),
            use_domain: int(&MODULE, "use_domain") != 0
                || int(&super::registrar::MODULE, "use_domain") != 0,
            case_sensitive: int(&super::registrar::MODULE, "case_sensitive") != 0,
            user_col: s("user_col"),
            domain_col: s("domain_col"),
            contact_col: s("contact_col"),
            expires_col: s("expires_col"),
            q_col: s("q_col"),
            callid_col: s("callid_col"),
            cseq_col: s("cseq_col"),
        }
    }
}

/// What to load at start: for db_mode 1 and 2, one select per table the script uses (answer each
/// with [`crate::usrloc::Usrloc::load_rows`]); nothing otherwise.
pub fn start_jobs(program: &crate::script::ir::Program) -> Vec<(String, crate::offload::Job)> {
    let cfg = UsrlocConfig::from_program(Some(program));
    if !matches!(cfg.db_mode, 1 | 2) {
        return Vec::new();
    }
    super::registrar::script_tables(program)
        .into_iter()
        .map(|t| {
            let job = cfg.select_job(&t, None);
            (t, job)
        })
        .collect()
}
