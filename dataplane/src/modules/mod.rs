//! Script modules: one file per module, each holding its `static MODULE` declaration table.
//!
//! [`ALL`] is the registry: a module's [`crate::script::ModuleId`] is its index there.
//!
//! # Adding script module `x`
//!
//! 1. `dataplane/src/modules/x.rs`: a `//!` doc with the table of its functions and parameters,
//!    and `pub static MODULE: ModuleDecl` — its functions ([`crate::script::FunctionDecl`]: script
//!    name, argument fix-ups checked at compile time, route kinds, implementation), its
//!    parameters ([`crate::script::ParamDecl`], checked against `modparam`), and `config`.
//! 2. One line here: `pub mod x;` and `&x::MODULE` in [`ALL`] (`loadmodule "…/x.so"` finds it by
//!    its base name).
//! 3. Optionally `controlplane/src/modules/x.rs` for blocking work (database, files, processes,
//!    DNS); the shard never blocks — a function returns `Suspend(job)` with a
//!    [`crate::offload::Job`] and finishes in its resume function.
//! 4. `tests/module_x.rs`: the real `ser` with a script using `x`, real SIP over loopback, the
//!    replies and bytes a user sees.
//!
//! What a module has, and where it lives:
//!
//! - **Settings**: a type of its own (`XConfig`) resolved from its parameters once per loaded
//!   program — `config: Some(resolve)` with `fn resolve(&Program) -> ModuleConfig` using
//!   [`param`]; a function reads it with [`crate::script::config`]. Never look a parameter up
//!   by name while a message runs. Files a module reads (permissions' allow/deny lists) are read
//!   there too: at start and on every reload, off the shards.
//! - **Per-message state**: a type of its own in a slot of [`crate::script::Ctx::module_state`]
//!   (`ctx.module_state.set(..)`, `get`, `get_or_default`, `take`); the interpreter never looks
//!   inside, and the state survives suspensions.
//! - **Suspension**: `ctx.suspend_with(job, resume)`; `resume` gets the call's own arguments
//!   and the job's result.
//! - **Management commands** (FIFO and JSON-RPC): `commands: &[CommandDecl]` in its
//!   `ModuleDecl` ([`crate::command::CommandDecl`]: name, parameter lines, help line, handler).
//!   A handler gets the parameter lines and a [`crate::command::Host`] (the shards' shared
//!   state, a blocking `db_job` — handlers run on a management thread, never a shard) and
//!   returns a [`crate::command::Reply`]. They are served, and listed by `which`, only while the
//!   running program loads the module, as SER's modules registered theirs in `mod_init`.
//! - **State the shard owns** (tm's transaction table): the shard runs such a module's calls
//!   itself from [`crate::script::Env::call`]; the interpreter never names the module.
//! - **Shared state** (caches, stores): in [`crate::services::Services`], lock-free, read by every
//!   shard; a module's own type there with [`crate::services::Services::store`] (pdt's prefix
//!   table), never a new field.
//! - **Transaction completion** (accounting and the like): one line `(&x::MODULE, x::on_complete)`
//!   in [`COMPLETION_HOOKS`]; while `x` is loaded, every stateful transaction reports its final
//!   outcome to the hook ([`crate::script::Completion`], after any failure_route). The hook runs
//!   on the shard: it must not block (log, or post to the DB write queue). With no such module
//!   loaded the transaction layer does nothing extra.
//!
//! `permissions.rs` is a complete example written this way (settings with the files read at load,
//! three call forms, no other file touched); CONTRIBUTING.md says the same for newcomers.

use crate::script::ir::{ParamValue, Program};
use crate::script::{ModuleDecl, ModuleId, ParamDefault, ParamRef};

pub mod acc;
pub mod auth;
pub mod auth_db;
pub mod auth_radius;
pub mod dbtext;
pub mod domain;
pub mod r#enum;
pub mod exec;
pub mod group;
pub mod group_radius;
pub mod jabber;
pub mod mangler;
pub mod maxfwd;
pub mod msilo;
pub mod mysql;
pub mod nathelper;
pub mod pa;
pub mod pdt;
pub mod permissions;
pub mod postgres;
pub mod registrar;
pub mod rr;
pub mod sl;
pub mod sms;
pub mod textops;
pub mod tm;
pub mod uri;
pub mod uri_radius;
pub mod usrloc;
pub mod vm;

/// Every built-in module, indexed by [`ModuleId`].
pub static ALL: &[&ModuleDecl] = &[
    &acc::MODULE,
    &auth::MODULE,
    &auth_db::MODULE,
    &auth_radius::MODULE,
    &dbtext::MODULE,
    &domain::MODULE,
    &r#enum::MODULE,
    &exec::MODULE,
    &group::MODULE,
    &group_radius::MODULE,
    &jabber::MODULE,
    &mangler::MODULE,
    &maxfwd::MODULE,
    &msilo::MODULE,
    &mysql::MODULE,
    &nathelper::MODULE,
    &pa::MODULE,
    &pdt::MODULE,
    &permissions::MODULE,
    &postgres::MODULE,
    &registrar::MODULE,
    &rr::MODULE,
    &sl::MODULE,
    &sms::MODULE,
    &textops::MODULE,
    &tm::MODULE,
    &uri::MODULE,
    &uri_radius::MODULE,
    &usrloc::MODULE,
    &vm::MODULE,
];

/// Modules that want to hear when a stateful transaction completes (see
/// [`crate::script::Completion`]): a loaded module listed here makes the transaction layer report
/// every transaction it completes; with none loaded, nothing is reported and nothing costs.
pub static COMPLETION_HOOKS: &[(&ModuleDecl, crate::script::CompletionFn)] =
    &[(&acc::MODULE, acc::on_complete)];

/// Database drivers: loaded so that `db_url`s of their kind work; no functions or settings.
const DRIVERS: &[&str] = &["mysql", "postgres", "dbtext"];

/// Whether module `m` does anything in this build. A module with no implemented function, no
/// settings of its own and no driver role is a declaration table: scripts using it compile, its
/// functions fail and its parameters have no effect (`ser -c` and start-up say so).
pub fn is_implemented(m: &ModuleDecl) -> bool {
    DRIVERS.contains(&m.name) || m.config.is_some() || m.functions.iter().any(|f| f.imp.is_some())
}

/// Whether parameter `name` of module `m` has an effect in this build (an implemented module may
/// still accept some parameters it does not act on, e.g. acc's RADIUS ones).
pub fn param_is_implemented(m: &ModuleDecl, name: &str) -> bool {
    if !is_implemented(m) {
        return false;
    }
    let not: &[&str] = match m.name {
        "acc" => acc::NOT_IMPLEMENTED_PARAMS,
        "jabber" => jabber::NOT_IMPLEMENTED_PARAMS,
        _ => &[],
    };
    !not.contains(&name)
}

/// Modules the documents name that 0.8.11 no longer has: (name, what to say).
pub static REMOVED: &[(&str, &str)] = &[
    ("im", "module im is obsolete: it was replaced by tm"),
    (
        "radius_acc",
        "module radius_acc was removed: RADIUS accounting is part of acc",
    ),
];

/// Module by name or alias (`voicemail` finds `vm`).
pub fn by_name(name: &str) -> Option<(ModuleId, &'static ModuleDecl)> {
    ALL.iter()
        .position(|m| m.answers_to(name))
        .map(|i| (ModuleId(i as u16), ALL[i]))
}

/// A module parameter's value for `program`: what `modparam` set, else the declared default
/// (`Unset` when neither) — for resolving a module's settings once per program ([`ModuleDecl::config`]), never per message. `module` is the module's static declaration (`&MODULE` in its file);
/// `None` only when `name` is not one of its parameters.
pub fn param<'p>(
    program: Option<&'p Program>,
    module: &'static ModuleDecl,
    name: &str,
) -> Option<ParamRef<'p>> {
    let (idx, decl) = module.param(name)?;
    let loaded = program.and_then(|p| {
        let id = ALL.iter().position(|m| std::ptr::eq(*m, module))?;
        p.module(ModuleId(id as u16))
    });
    match loaded.and_then(|m| m.params.get(idx)) {
        Some(ParamValue::Int(i)) => Some(ParamRef::Int(*i)),
        Some(ParamValue::Str(s)) => Some(ParamRef::Str(s)),
        Some(ParamValue::Unset) => Some(ParamRef::Unset),
        None => Some(match decl.default {
            ParamDefault::Int(i) => ParamRef::Int(i),
            ParamDefault::Str(s) => ParamRef::Str(s),
            ParamDefault::None => ParamRef::Unset,
        }),
    }
}

/// The settings of every loaded module of `program` that declares a [`ModuleDecl::config`],
/// resolved once (at load, for [`crate::script::Env::configs`]).
pub fn resolve_configs(program: &crate::script::ir::Program) -> crate::script::ModuleConfigs {
    let entries = program
        .modules
        .iter()
        .filter_map(|m| ALL.get(m.id.0 as usize).and_then(|d| d.config))
        .map(|f| f(program))
        .collect();
    let hooks = program
        .modules
        .iter()
        .filter_map(|m| {
            let decl = ALL.get(m.id.0 as usize)?;
            COMPLETION_HOOKS
                .iter()
                .find(|(d, _)| std::ptr::eq(*d, *decl))
                .map(|(_, f)| *f)
        })
        .collect();
    crate::script::ModuleConfigs::new(entries).with_completion(hooks)
}

/// Module by id.
pub fn get(id: ModuleId) -> &'static ModuleDecl {
    ALL[id.0 as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for (i, m) in ALL.iter().enumerate() {
            assert_eq!(by_name(m.name).map(|(id, _)| id), Some(ModuleId(i as u16)));
            for f in m.functions {
                assert!(f.min_args as usize <= f.max_args(), "{}", f.name);
                assert!(!f.routes.is_empty(), "{}", f.name);
            }
        }
        assert_eq!(by_name("voicemail").map(|(_, m)| m.name), Some("vm"));
        assert!(by_name("im").is_none());
    }

    #[test]
    fn function_names_are_unique_across_modules() {
        let mut seen = std::collections::HashSet::new();
        for m in ALL {
            for f in m.functions {
                assert!(seen.insert(f.name), "{} declared twice", f.name);
            }
        }
    }
}
