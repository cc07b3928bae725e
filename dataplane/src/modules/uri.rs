//! Script module `uri`: checks of the authenticated identity against the request's URIs.
//!
//! `check_to()`, `check_from()` and `is_user(name)` compare the username of the credentials that
//! passed `www_authorize`/`proxy_authorize` in this run (the part before `@` when the username is
//! written `user@domain`) with the To URI user, the From URI user, or `name`; case-insensitively,
//! as SER did. With no authorized credentials they are false and log an error (the script forgot
//! to authorize first). This is what stops "alice" registering or calling as "bob" with her own
//! valid password (Admin Guide 3.2.11).
//!
//! `does_uri_exist()` is true when the Request-URI's user and host name a row of
//! `subscriber_table` (or of `uri_table` with `use_uri_table`), columns `username` / `domain`;
//! answered from a cache, a miss suspends on an offloaded select.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `check_to` | - | request | true if the To username equals the digest username |
//! | `check_from` | - | request | true if the From username equals the digest username |
//! | `is_user` | Str | request | true if the credentials belong to the user |
//! | `does_uri_exist` | - | request | true if the request URI is a known subscriber or alias |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `db_url` | string | `""` (the server's default database) |
//! | `uri_table` | string | `"uri"` |
//! | `subscriber_table` | string | `"subscriber"` |
//! | `use_uri_table` | int | `0` |
//! | `cache_ttl` | int | `60` (addition: seconds an answer of does_uri_exist is cached) |

use crate::auth::cache::{self, DEFAULT_TTL};
use crate::auth::{authorized, cached_answer, split_username, store_answer, uri_user_host};
use crate::offload::{Job, JobResult};
use crate::script::env::{level, ActionResult, Env};
use crate::script::ir::Arg;
use crate::script::{ArgKind::*, Ctx, FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};
use crate::wire::HeaderId;

/// Compares the authorized username with `other` (`None`: no such user part).
fn same_user(ctx: &mut Ctx, env: &mut dyn Env, what: &str, other: Option<&[u8]>) -> ActionResult {
    let Some(c) = authorized(ctx) else {
        if ctx.log_enabled(level::ERR) {
            env.log(
                level::ERR,
                format!("ERROR: {what}: no authorized credentials found (error in scripts)")
                    .as_bytes(),
            );
        }
        return ActionResult::Ret(-1);
    };
    let (user, _) = split_username(c.username().unwrap_or_default());
    ActionResult::from_bool(other.is_some_and(|o| !user.is_empty() && o.eq_ignore_ascii_case(user)))
}

/// The user part of the URI of header `id` (To, From).
fn header_user(ctx: &Ctx, id: HeaderId) -> Option<smallvec::SmallVec<[u8; 64]>> {
    let v = ctx.msg.header_value(id)?;
    let na = crate::wire::name_addr::NameAddr::parse(v).ok()?;
    na.uri.user.map(smallvec::SmallVec::from_slice)
}

/// `check_to()`.
fn check_to(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg]) -> ActionResult {
    let u = header_user(ctx, HeaderId::To);
    same_user(ctx, env, "check_to", u.as_deref())
}

/// `check_from()`.
fn check_from(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg]) -> ActionResult {
    let u = header_user(ctx, HeaderId::From);
    same_user(ctx, env, "check_from", u.as_deref())
}

/// `is_user(name)`.
fn is_user(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let name = crate::auth::str_arg(args, 0);
    same_user(ctx, env, "is_user", Some(name.as_bytes()))
}

/// uri's parameters, resolved once per loaded program.
#[derive(Debug, Clone)]
pub struct UriConfig {
    /// The table `does_uri_exist` asks (`uri_table` with `use_uri_table`, else `subscriber_table`).
    table: String,
    db_url: String,
    ttl: u64,
}

impl UriConfig {
    /// The settings of `program` (defaults without one).
    pub fn resolve(program: Option<&crate::script::ir::Program>) -> UriConfig {
        let param = |name| crate::modules::param(program, &MODULE, name);
        let text = |name, d: &str| param(name).and_then(|p| p.str()).unwrap_or(d).to_owned();
        let use_uri = param("use_uri_table").and_then(|p| p.int()).unwrap_or(0) != 0;
        UriConfig {
            table: if use_uri {
                text("uri_table", "uri")
            } else {
                text("subscriber_table", "subscriber")
            },
            db_url: text("db_url", ""),
            ttl: param("cache_ttl")
                .and_then(|p| p.int())
                .and_then(|t| u64::try_from(t).ok())
                .unwrap_or(DEFAULT_TTL),
        }
    }
}

fn resolve_config(program: &crate::script::ir::Program) -> crate::script::ModuleConfig {
    std::sync::Arc::new(UriConfig::resolve(Some(program)))
}

fn settings(env: &dyn Env) -> std::borrow::Cow<'_, UriConfig> {
    crate::script::config(env, UriConfig::resolve)
}

fn uris(s: &crate::auth::AuthState) -> &cache::TtlCache<bool> {
    &s.uris
}

/// The cache key of the current Request-URI (`None`: it does not parse).
fn ruri_key(ctx: &Ctx, table: &str) -> Option<(cache::Key, String, String)> {
    let (user, host) = uri_user_host(ctx.uri())?;
    Some((
        cache::key(&[table.as_bytes(), &user, &host]),
        String::from_utf8_lossy(&user).into_owned(),
        String::from_utf8_lossy(&host).into_owned(),
    ))
}

/// `does_uri_exist()`.
fn does_uri_exist(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg]) -> ActionResult {
    let cfg = settings(&*env);
    let table = cfg.table.clone();
    let url = cfg.db_url.clone();
    let Some((key, user, host)) = ruri_key(ctx, &table) else {
        env.log(level::ERR, b"ERROR: does_uri_exist: bad Request-URI");
        return ActionResult::Ret(-1);
    };
    let env_ro: &dyn Env = &*env;
    cached_answer(
        ctx,
        env_ro,
        uris,
        &key,
        || Job::Db {
            url,
            table,
            keys: vec![("username".into(), user), ("domain".into(), host)],
            columns: vec!["username".into()],
        },
        does_uri_exist_resume,
    )
}

fn does_uri_exist_resume(
    ctx: &mut Ctx,
    env: &mut dyn Env,
    _args: &[Arg],
    result: JobResult,
) -> ActionResult {
    let cfg = settings(&*env);
    let ttl = cfg.ttl;
    let key = ruri_key(ctx, &cfg.table).map(|k| k.0).unwrap_or_default();
    match store_answer(&*env, uris, &key, &result, ttl) {
        Some(b) => ActionResult::from_bool(b),
        None => {
            env.log(
                level::ERR,
                format!("ERROR: does_uri_exist: database lookup failed: {result:?}").as_bytes(),
            );
            ActionResult::Ret(-1)
        }
    }
}

/// Declaration of module `uri`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "uri",
    aliases: &[],
    depends: &[],
    functions: &[
        FunctionDecl::new(
            "check_to",
            &[],
            RouteKinds::REQUEST,
            "true if the To username equals the digest username",
        )
        .implemented_by(check_to),
        FunctionDecl::new(
            "check_from",
            &[],
            RouteKinds::REQUEST,
            "true if the From username equals the digest username",
        )
        .implemented_by(check_from),
        FunctionDecl::new(
            "is_user",
            &[Str],
            RouteKinds::REQUEST,
            "true if the credentials belong to the user",
        )
        .implemented_by(is_user),
        FunctionDecl::new(
            "does_uri_exist",
            &[],
            RouteKinds::REQUEST,
            "true if the request URI is a known subscriber or alias",
        )
        .implemented_by(does_uri_exist),
    ],
    params: &[
        ParamDecl::str("db_url", ""),
        ParamDecl::str("uri_table", "uri"),
        ParamDecl::str("subscriber_table", "subscriber"),
        ParamDecl::int("use_uri_table", 0),
        ParamDecl::int("cache_ttl", DEFAULT_TTL as i64),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "checks of digest identity against header URIs",
    config: Some(resolve_config),
    commands: &[],
};
