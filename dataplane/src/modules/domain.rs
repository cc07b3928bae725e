//! Script module `domain`: is a host one of the domains this server serves (multi-domain hosting)?
//!
//! `is_from_local()` checks the From URI host, `is_uri_host_local()` the current Request-URI host,
//! against the `domain_column` of `domain_table`, case-insensitively. The whole table is read at
//! once through an offloaded select (the first call suspends; the shard goes on) and kept in a
//! shared cache: with `db_mode` 1 (SER: "cache the table") until the management side reloads it
//! ([`crate::auth::AuthState::domains_changed`], SER's `domain_reload`), with `db_mode` 0 for
//! `cache_ttl` seconds (SER asked the database on every call; no shard may wait for it here).
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `is_from_local` | - | request | true if the From host is a local domain |
//! | `is_uri_host_local` | - | request | true if the request URI host is a local domain |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `db_url` | string | `""` (the server's default database) |
//! | `db_mode` | int | `0` |
//! | `domain_table` | string | `"domain"` |
//! | `domain_column` | string | `"domain"` |
//! | `cache_ttl` | int | `60` (addition: seconds the table is cached with db_mode 0) |
//!
//! | command | parameters | reply |
//! |---|---|---|
//! | `domain_reload` | - | `200 ok`: the table is read again by the next check (SER's FIFO command) |

use crate::auth::cache::{self, DEFAULT_TTL};
use crate::auth::{unix_now, uri_user_host, Realm};
use crate::command::{CommandDecl, Host, Reply};
use crate::offload::{Job, JobResult};
use crate::script::env::{level, ActionResult, Env};
use crate::script::ir::Arg;
use crate::script::{Ctx, FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};
use crate::wire::HeaderId;

/// Lifetime of the cached table with db_mode 1: until reloaded (a century).
const FOREVER: u64 = 100 * 365 * 86_400;

/// domain's parameters, resolved once per loaded program.
#[derive(Debug, Clone)]
pub struct DomainConfig {
    db_url: String,
    table: String,
    column: String,
    /// The cache key of the table (`domain_table NUL domain_column`).
    key: cache::Key,
    /// How long an answer is kept (db_mode 1: until reloaded).
    ttl: u64,
}

impl DomainConfig {
    /// The settings of `program` (defaults without one).
    pub fn resolve(program: Option<&crate::script::ir::Program>) -> DomainConfig {
        let param = |name| crate::modules::param(program, &MODULE, name);
        let text = |name, d: &str| param(name).and_then(|p| p.str()).unwrap_or(d).to_owned();
        let table = text("domain_table", "domain");
        let column = text("domain_column", "domain");
        let mode = param("db_mode").and_then(|p| p.int()).unwrap_or(0);
        DomainConfig {
            db_url: text("db_url", ""),
            key: cache::key(&[table.as_bytes(), column.as_bytes()]),
            table,
            column,
            ttl: if mode == 1 {
                FOREVER
            } else {
                param("cache_ttl")
                    .and_then(|p| p.int())
                    .and_then(|t| u64::try_from(t).ok())
                    .unwrap_or(DEFAULT_TTL)
            },
        }
    }
}

fn resolve_config(program: &crate::script::ir::Program) -> crate::script::ModuleConfig {
    std::sync::Arc::new(DomainConfig::resolve(Some(program)))
}

fn settings(env: &dyn Env) -> std::borrow::Cow<'_, DomainConfig> {
    crate::script::config(env, DomainConfig::resolve)
}

/// Whether `host` is local: `Some(answer)` from the cache, `None` on a miss.
fn lookup(env: &dyn Env, host: &[u8]) -> Option<bool> {
    let mut lower = Realm::from_slice(host);
    lower.make_ascii_lowercase();
    let now = unix_now(env.now());
    env.services()?
        .auth
        .domains
        .get_with(&settings(env).key, now, |set| {
            set.binary_search_by(|d| (**d).cmp(&lower[..])).is_ok()
        })
}

fn host_of(ctx: &Ctx, from: bool) -> Option<Realm> {
    if from {
        let v = ctx.msg.header_value(HeaderId::From)?;
        let na = crate::wire::name_addr::NameAddr::parse(v).ok()?;
        Some(Realm::from_slice(na.uri.host_raw))
    } else {
        uri_user_host(ctx.uri()).map(|(_, h)| h)
    }
}

fn check(
    ctx: &mut Ctx,
    env: &mut dyn Env,
    from: bool,
    then: crate::script::ResumeFn,
) -> ActionResult {
    let Some(host) = host_of(ctx, from) else {
        if ctx.log_enabled(level::ERR) {
            env.log(
                level::ERR,
                b"ERROR: domain: no host to check (bad From or Request-URI)",
            );
        }
        return ActionResult::Ret(-1);
    };
    match lookup(&*env, &host) {
        Some(b) => ActionResult::from_bool(b),
        None => {
            let cfg = settings(&*env);
            let job = Job::Db {
                url: cfg.db_url.clone(),
                table: cfg.table.clone(),
                keys: Vec::new(),
                columns: vec![cfg.column.clone()],
            };
            ctx.suspend_with(job, then)
        }
    }
}

fn resume(ctx: &mut Ctx, env: &mut dyn Env, result: JobResult, from: bool) -> ActionResult {
    let rows = match result {
        JobResult::Rows(r) => r,
        other => {
            env.log(
                level::ERR,
                format!("ERROR: domain: reading the domain table failed: {other:?}").as_bytes(),
            );
            return ActionResult::Ret(-1);
        }
    };
    let mut set: Vec<Box<[u8]>> = rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .map(|d| {
            d.trim()
                .to_ascii_lowercase()
                .into_bytes()
                .into_boxed_slice()
        })
        .collect();
    set.sort();
    set.dedup();
    let ttl = settings(&*env).ttl;
    let host = host_of(ctx, from).unwrap_or_default();
    let mut lower = host.clone();
    lower.make_ascii_lowercase();
    let local = set.binary_search_by(|d| (**d).cmp(&lower[..])).is_ok();
    if let Some(s) = env.services() {
        s.auth
            .domains
            .insert(&settings(&*env).key, set, unix_now(env.now()), ttl);
    }
    ActionResult::from_bool(local)
}

fn is_from_local_resume(
    ctx: &mut Ctx,
    env: &mut dyn Env,
    _args: &[Arg],
    r: JobResult,
) -> ActionResult {
    resume(ctx, env, r, true)
}

fn is_uri_host_local_resume(
    ctx: &mut Ctx,
    env: &mut dyn Env,
    _args: &[Arg],
    r: JobResult,
) -> ActionResult {
    resume(ctx, env, r, false)
}

/// `is_from_local()`.
fn is_from_local(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg]) -> ActionResult {
    check(ctx, env, true, is_from_local_resume)
}

/// `is_uri_host_local()`.
fn is_uri_host_local(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg]) -> ActionResult {
    check(ctx, env, false, is_uri_host_local_resume)
}

/// Declaration of module `domain`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "domain",
    aliases: &[],
    depends: &[],
    functions: &[
        FunctionDecl::new(
            "is_from_local",
            &[],
            RouteKinds::REQUEST,
            "true if the From host is a local domain",
        )
        .implemented_by(is_from_local),
        FunctionDecl::new(
            "is_uri_host_local",
            &[],
            RouteKinds::REQUEST,
            "true if the request URI host is a local domain",
        )
        .implemented_by(is_uri_host_local),
    ],
    params: &[
        ParamDecl::str("db_url", ""),
        ParamDecl::int("db_mode", 0),
        ParamDecl::str("domain_table", "domain"),
        ParamDecl::str("domain_column", "domain"),
        ParamDecl::int("cache_ttl", DEFAULT_TTL as i64),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "served-domain checks",
    config: Some(resolve_config),
    commands: &[CommandDecl::sync(
        "domain_reload",
        "",
        "read the domain table again (after a change of it)",
        domain_reload,
    )],
};

/// `domain_reload`: forgets the cached table, so the next `is_from_local`/`is_uri_host_local`
/// reads it again (serctl and the web UI call it after they change the table).
fn domain_reload(host: &dyn Host, _: &[String]) -> Reply {
    host.shared().services.auth.domains_changed();
    Reply::status(200, "ok")
}
