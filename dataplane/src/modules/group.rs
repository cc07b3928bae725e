//! Script module `group`: group membership checks against the `grp` table.
//!
//! `is_user_in(source, group)` is true when the user named by `source` has a row in `table` with
//! `group_column` = `group`. `source` (case-insensitive, as pstn.cfg writes "credentials"):
//! - `Request-URI`: user and host of the current (possibly rewritten) Request-URI;
//! - `To`, `From`: user and host of that header's URI;
//! - `Credentials`: the username of the credentials that passed `www_authorize`/`proxy_authorize`
//!   (its domain part when written `user@domain`, else the realm). False, with a log line, when
//!   none did.
//!
//! The host takes part in the select only with `use_domain`. Answers are cached (see
//! [`crate::auth::cache`]); a miss suspends on an offloaded select, and the shard goes on.
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
//! | `cache_ttl` | int | `60` (addition: seconds an answer is cached) |

use crate::auth::cache::{self, DEFAULT_TTL};
use crate::auth::{
    authorized, cached_answer, split_username, store_answer, str_arg, uri_user_host, AuthState,
    Realm,
};
use crate::offload::{Job, JobResult};
use crate::script::env::{level, ActionResult, Env};
use crate::script::ir::Arg;
use crate::script::{ArgKind::*, Ctx, FunctionDecl, ModuleDecl, ParamDecl, Renamed, RouteKinds};
use crate::wire::HeaderId;

/// The (user, domain) `source` names, or why not.
pub(crate) fn identity(ctx: &Ctx, source: &str) -> Result<(Realm, Realm), &'static str> {
    let header = |id: HeaderId| {
        let v = ctx.msg.header_value(id).ok_or("header missing")?;
        let na = crate::wire::name_addr::NameAddr::parse(v).map_err(|_| "bad header URI")?;
        Ok((
            Realm::from_slice(na.uri.user.unwrap_or_default()),
            Realm::from_slice(na.uri.host_raw),
        ))
    };
    if source.eq_ignore_ascii_case("Request-URI") {
        uri_user_host(ctx.uri()).ok_or("bad Request-URI")
    } else if source.eq_ignore_ascii_case("To") {
        header(HeaderId::To)
    } else if source.eq_ignore_ascii_case("From") {
        header(HeaderId::From)
    } else if source.eq_ignore_ascii_case("Credentials") {
        let c = authorized(ctx).ok_or("no authorized credentials found (error in scripts)")?;
        let (user, domain) = split_username(c.username().unwrap_or_default());
        Ok((
            Realm::from_slice(user),
            Realm::from_slice(domain.or(c.realm()).unwrap_or_default()),
        ))
    } else {
        Err("unknown source: use \"Request-URI\", \"To\", \"From\" or \"Credentials\"")
    }
}

/// group's parameters, resolved once per loaded program.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    table: String,
    user_column: String,
    domain_column: String,
    group_column: String,
    db_url: String,
    use_domain: bool,
    ttl: u64,
}

impl GroupConfig {
    /// The settings of `program` (defaults without one).
    pub fn resolve(program: Option<&crate::script::ir::Program>) -> GroupConfig {
        let param = |name| crate::modules::param(program, &MODULE, name);
        let text = |name, d: &str| param(name).and_then(|p| p.str()).unwrap_or(d).to_owned();
        let int = |name, d: i64| param(name).and_then(|p| p.int()).unwrap_or(d);
        GroupConfig {
            table: text("table", "grp"),
            user_column: text("user_column", "username"),
            domain_column: text("domain_column", "domain"),
            group_column: text("group_column", "grp"),
            db_url: text("db_url", ""),
            use_domain: int("use_domain", 0) != 0,
            ttl: u64::try_from(int("cache_ttl", DEFAULT_TTL as i64)).unwrap_or(0),
        }
    }
}

fn resolve_config(program: &crate::script::ir::Program) -> crate::script::ModuleConfig {
    std::sync::Arc::new(GroupConfig::resolve(Some(program)))
}

fn settings(env: &dyn Env) -> std::borrow::Cow<'_, GroupConfig> {
    crate::script::config(env, GroupConfig::resolve)
}

fn groups(s: &AuthState) -> &cache::TtlCache<bool> {
    &s.groups
}

/// The cache key of a question (the domain is part of it only with `use_domain`).
fn question(
    ctx: &Ctx,
    env: &dyn Env,
    args: &[Arg],
) -> Result<(cache::Key, Realm, Realm, bool), &'static str> {
    let (user, domain) = identity(ctx, str_arg(args, 0))?;
    let cfg = settings(env);
    let use_domain = cfg.use_domain;
    let table = cfg.table.as_str();
    let d: &[u8] = if use_domain { &domain } else { b"" };
    let key = cache::key(&[table.as_bytes(), &user, d, str_arg(args, 1).as_bytes()]);
    Ok((key, user, domain, use_domain))
}

/// `is_user_in(source, group)`.
fn is_user_in(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let (key, user, domain, use_domain) = match question(ctx, &*env, args) {
        Ok(q) => q,
        Err(e) => {
            if ctx.log_enabled(level::ERR) {
                env.log(level::ERR, format!("ERROR: is_user_in: {e}").as_bytes());
            }
            return ActionResult::Ret(-1);
        }
    };
    let env_ro: &dyn Env = &*env;
    cached_answer(
        ctx,
        env_ro,
        groups,
        &key,
        || {
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            let cfg = settings(env_ro);
            let mut keys = vec![(cfg.user_column.clone(), text(&user))];
            if use_domain {
                keys.push((cfg.domain_column.clone(), text(&domain)));
            }
            let group_column = cfg.group_column.clone();
            keys.push((group_column.clone(), str_arg(args, 1).to_owned()));
            Job::Db {
                url: cfg.db_url.clone(),
                table: cfg.table.clone(),
                keys,
                columns: vec![group_column],
            }
        },
        is_user_in_resume,
    )
}

fn is_user_in_resume(
    ctx: &mut Ctx,
    env: &mut dyn Env,
    args: &[Arg],
    result: JobResult,
) -> ActionResult {
    let key = question(ctx, &*env, args).map(|q| q.0).unwrap_or_default();
    let ttl = settings(&*env).ttl;
    match store_answer(&*env, groups, &key, &result, ttl) {
        Some(b) => ActionResult::from_bool(b),
        None => {
            env.log(
                level::ERR,
                format!("ERROR: is_user_in: database lookup failed: {result:?}").as_bytes(),
            );
            ActionResult::Ret(-1)
        }
    }
}

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
    )
    .implemented_by(is_user_in)],
    params: &[
        ParamDecl::str("db_url", ""),
        ParamDecl::str("table", "grp"),
        ParamDecl::str("user_column", "username"),
        ParamDecl::str("domain_column", "domain"),
        ParamDecl::str("group_column", "grp"),
        ParamDecl::int("use_domain", 0),
        ParamDecl::int("cache_ttl", DEFAULT_TTL as i64),
    ],
    renamed_functions: &[Renamed {
        old: "is_in_group",
        new: Some("is_user_in"),
        note: "is_in_group was renamed is_user_in",
    }],
    renamed_params: &[],
    doc: "group membership checks in the database",
    config: Some(resolve_config),
    commands: &[],
};
