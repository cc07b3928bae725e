//! Script module `auth_db`: digest authentication against the subscriber table.
//!
//! `www_authorize(realm, table)` checks the `Authorization` credentials of the request,
//! `proxy_authorize(realm, table)` the `Proxy-Authorization` ones, as RFC 2617 / RFC 7616 say:
//! 1. A source address that failed `fail_limit` times within `fail_window` (module `auth`) is
//!    answered `fail_reply` (503 with Retry-After, or 403) and the script stops (0).
//! 2. The credentials are the first Digest ones whose realm is `realm` (empty: the Request-URI
//!    host for a REGISTER checked with www_authorize, else the From host). None: false (-1), the
//!    script then challenges. Malformed ones (or missing username, nonce, uri, response, or nc /
//!    cnonce with qop): 400 Bad Request and the script stops (0), as SER did.
//! 3. The nonce must be ours (HMAC of `secret`), for this realm, not expired; the algorithm one
//!    the module `auth` offers. Otherwise false; an expired nonce makes the next challenge say
//!    `stale=true`.
//! 4. The password comes from the credential cache (see [`crate::auth::cache`]); on a miss the
//!    run suspends on a `Job::Db` select of `table` (`user_column` = username, `domain_column` =
//!    realm) and resumes when the controlplane answers: no shard waits for the database.
//!    With `calculate_ha1` the `password_column` holds the plain password; else it holds HA1
//!    (`password_column_2` HA1b, used for usernames written `user@domain`).
//! 5. The response must match (constant-time). An unknown user and a wrong password are the same
//!    failure (false, counted against the source address, same work done): the replies the
//!    script sends cannot tell them apart.
//! 6. With qop, the nonce-count must be above every nc already accepted for that nonce (replay).
//!
//! On success (1) the credentials become the request's authorized credentials (`check_to`,
//! `is_user`, `is_user_in("Credentials", …)`, `consume_credentials`).
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `www_authorize` | Str, Str | request | verify Authorization credentials: realm, subscriber table |
//! | `proxy_authorize` | Str, Str | request | verify Proxy-Authorization credentials: realm, subscriber table |
//!
//! | parameter | type | default | what |
//! |---|---|---|---|
//! | `db_url` | string | `""` (the server's default database) | where the subscriber table is |
//! | `user_column` | string | `"username"` | |
//! | `domain_column` | string | `"domain"` | matched against the realm |
//! | `password_column` | string | `"ha1"` | HA1, or the plain password with `calculate_ha1` |
//! | `password_column_2` | string | `"ha1b"` | HA1 of `user@domain` usernames |
//! | `calculate_ha1` | int | `0` | yes: compute HA1 from the plain password |
//! | `use_rpid` | int | `0` | accepted, no effect (Remote-Party-ID is not read) |
//! | `cache_ttl` | int | `60` | (addition) seconds a subscriber row is cached (0: ask the DB every time) |
//!
//! | command | parameters | what |
//! |---|---|---|
//! | `auth_flush` | none, or user and domain | (addition) forget cached credentials (of one user, or all) |
//!
//! SHA-256 needs the plain password (`calculate_ha1`) or a 64-character SHA-256 HA1 stored in
//! the HA1 columns; a stored MD5 HA1 (32 characters) only answers MD5.
//!
//! Differences from SER 0.8.11: the checks of steps 1, 3 (realm binding) and 6, and SHA-256.

use crate::auth::cache::{self, Secret, NEGATIVE_TTL};
use crate::auth::digest::{self, Algorithm, Qop, ResponseInput};
use crate::auth::{default_realm, split_username, str_arg, unix_now, AuthKind, Realm};
use crate::command::{CommandDecl, Host, Reply};
use crate::offload::{Job, JobResult};
use crate::script::env::{level, ActionResult, Env};
use crate::script::ir::Arg;
use crate::script::{ArgKind::*, Ctx, FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};

use super::auth::{config, reply_with, NotOffered};

/// What the credential lookup gave (or is about to give).
enum Lookup {
    /// Not looked up yet: use the cache, suspend on a miss.
    Cache,
    /// The database just answered (`None`: no such subscriber).
    Fetched(Option<Secret>),
}

/// The outcome of a check, computed while the shared state is borrowed.
enum Verdict {
    Ok(usize),
    Fail,
    /// Failed, with a line for the log.
    FailLog(String),
    /// 400 for malformed credentials, then stop.
    Malformed(&'static str),
    /// Source refused: reply code, Retry-After seconds.
    Throttled(u16, u64),
    /// Cache miss: ask the database.
    Fetch(Job),
}

/// auth_db's parameters, resolved once per loaded program.
#[derive(Debug, Clone)]
pub struct AuthDbConfig {
    calculate_ha1: bool,
    ttl: u64,
    db_url: String,
    user_column: String,
    domain_column: String,
    password_column: String,
    password_column_2: String,
}

impl AuthDbConfig {
    /// The settings of `program` (defaults without one).
    pub fn resolve(program: Option<&crate::script::ir::Program>) -> AuthDbConfig {
        let param = |name| crate::modules::param(program, &MODULE, name);
        let int = |name, d: i64| param(name).and_then(|p| p.int()).unwrap_or(d);
        let text = |name, d: &str| param(name).and_then(|p| p.str()).unwrap_or(d).to_owned();
        AuthDbConfig {
            calculate_ha1: int("calculate_ha1", 0) != 0,
            ttl: u64::try_from(int("cache_ttl", cache::DEFAULT_TTL as i64)).unwrap_or(0),
            db_url: text("db_url", ""),
            user_column: text("user_column", "username"),
            domain_column: text("domain_column", "domain"),
            password_column: text("password_column", "ha1"),
            password_column_2: text("password_column_2", "ha1b"),
        }
    }
}

fn resolve_config(program: &crate::script::ir::Program) -> crate::script::ModuleConfig {
    std::sync::Arc::new(AuthDbConfig::resolve(Some(program)))
}

fn db_cols(env: &dyn Env) -> std::borrow::Cow<'_, AuthDbConfig> {
    crate::script::config(env, AuthDbConfig::resolve)
}

/// The select that fetches `user`'s secret.
fn fetch_job(cfg: &AuthDbConfig, table: &str, user: &[u8], realm: &[u8], calc: bool) -> Job {
    let pw = cfg.password_column.clone();
    let columns = if calc {
        vec![pw]
    } else {
        vec![pw, cfg.password_column_2.clone()]
    };
    Job::Db {
        url: cfg.db_url.clone(),
        table: table.to_owned(),
        keys: vec![
            (
                cfg.user_column.clone(),
                String::from_utf8_lossy(user).into_owned(),
            ),
            (
                cfg.domain_column.clone(),
                String::from_utf8_lossy(realm).into_owned(),
            ),
        ],
        columns,
    }
}

/// The secret in the first row of a subscriber select.
fn secret_of(rows: &[Vec<Option<String>>], calc: bool) -> Option<Secret> {
    let row = rows.first()?;
    let col = |i: usize| {
        row.get(i)
            .cloned()
            .flatten()
            .map(|s| s.into_bytes().into_boxed_slice())
    };
    Some(if calc {
        Secret::Plain(col(0)?)
    } else {
        Secret::Ha1 {
            ha1: col(0),
            ha1b: col(1),
        }
    })
}

/// HA1 for `alg` from what the subscriber row holds (`None`: cannot answer this algorithm).
fn ha1_for(
    secret: &Secret,
    alg: Algorithm,
    username: &[u8],
    realm: &[u8],
    has_domain: bool,
) -> Option<digest::Hex> {
    match secret {
        Secret::Plain(pw) => Some(digest::ha1(alg, username, realm, pw)),
        Secret::Ha1 { ha1, ha1b } => {
            let v = if has_domain { ha1b } else { ha1 };
            let v = v.as_deref()?;
            // A stored HA1 is taken as is; its length says which hash it is.
            (v.len() == alg.hex_len())
                .then(|| digest::Hex::from_hex(v))
                .flatten()
        }
    }
}

fn check(ctx: &Ctx, env: &dyn Env, args: &[Arg], kind: AuthKind, lookup: Lookup) -> Verdict {
    let Some(state) = env.services().map(|s| &s.auth) else {
        return Verdict::FailLog("ERROR: authorize: no shared services (auth state)".into());
    };
    let cfg = config(env, state);
    let now = unix_now(env.now());
    let ip = ctx.src.ip();
    // 1.–3. throttle, the credentials for this realm, algorithm and nonce
    let o = match super::auth::offered(ctx, args, kind, &cfg, state, now) {
        Ok(o) => o,
        Err(NotOffered::Fail) => return Verdict::Fail,
        Err(NotOffered::Malformed(why)) => return Verdict::Malformed(why),
        Err(NotOffered::Throttled(code, retry)) => return Verdict::Throttled(code, retry),
    };
    let table = str_arg(args, 1);
    let (index, realm, username, nonce, uri, resp) =
        (o.index, o.realm, o.username, o.nonce, o.uri, o.response);
    let (qop, nc_raw, cnonce, alg) = (o.qop, o.nc_raw, o.cnonce, o.alg);
    let (nc, nonce_id, nonce_expires) = (o.nc.unwrap_or(0), o.nonce_id, o.nonce_expires);
    // 4. the subscriber's secret, 5. the response
    let (user, user_domain) = split_username(username);
    let db = db_cols(env);
    let verify = |secret: Option<&Secret>| {
        // An unknown user costs the same work as a wrong password.
        let ha1 = secret
            .and_then(|s| ha1_for(s, alg, username, &realm, user_domain.is_some()))
            .unwrap_or_else(|| digest::h(alg, &[username, &realm]));
        let expected = digest::response(&ResponseInput {
            alg,
            ha1: ha1.as_bytes(),
            nonce,
            nc: nc_raw,
            cnonce,
            qop,
            method: ctx.msg.method_bytes(),
            uri,
            body: if qop == Qop::AuthInt {
                ctx.msg.body()
            } else {
                b""
            },
        });
        digest::response_matches(&expected, resp) && secret.is_some()
    };
    let ok = match lookup {
        Lookup::Fetched(s) => verify(s.as_ref()),
        Lookup::Cache => {
            let key = cache::key(&[table.as_bytes(), user, &realm]);
            let hit = state.credentials.get_with(&key, now, |s| match s {
                // An entry of the other kind (calculate_ha1 changed by a reload) is a miss.
                Some(Secret::Plain(_)) if !db.calculate_ha1 => None,
                Some(Secret::Ha1 { .. }) if db.calculate_ha1 => None,
                s => Some(verify(s.as_ref())),
            });
            match hit.flatten() {
                Some(ok) => ok,
                None => {
                    return Verdict::Fetch(fetch_job(&db, table, user, &realm, db.calculate_ha1))
                }
            }
        }
    };
    if !ok {
        state
            .throttle
            .failed(ip, now, cfg.fail_limit, cfg.fail_window);
        return Verdict::FailLog(format!(
            "NOTICE: authorize: digest check failed for \"{}\" realm \"{}\" from {}",
            String::from_utf8_lossy(username),
            String::from_utf8_lossy(&realm),
            ip
        ));
    }
    // 6. replay
    if qop != Qop::None && !state.nc.accept(nonce_id, nonce_expires, nc, now) {
        return Verdict::FailLog(format!(
            "NOTICE: authorize: nonce-count {nc:08x} replayed by {ip}"
        ));
    }
    Verdict::Ok(index)
}

fn authorize(
    ctx: &mut Ctx,
    env: &mut dyn Env,
    args: &[Arg],
    kind: AuthKind,
    lookup: Lookup,
) -> ActionResult {
    match check(ctx, &*env, args, kind, lookup) {
        Verdict::Ok(index) => {
            ctx.module_state.set(crate::auth::Authorized(index));
            ActionResult::Ret(1)
        }
        Verdict::Fail => ActionResult::Ret(-1),
        Verdict::FailLog(line) => {
            if ctx.log_enabled(level::NOTICE) {
                env.log(level::NOTICE, line.as_bytes());
            }
            ActionResult::Ret(-1)
        }
        Verdict::Malformed(reason) => {
            if ctx.log_enabled(level::ERR) {
                env.log(
                    level::ERR,
                    format!("ERROR: authorize: {reason} from {}", ctx.src).as_bytes(),
                );
            }
            env.reply(ctx, 400, reason.as_bytes());
            ActionResult::Ret(0)
        }
        Verdict::Throttled(code, retry) => {
            let line = format!("Retry-After: {retry}\r\n");
            let (lines, reason): (&[u8], &[u8]) = if code == 503 {
                (line.as_bytes(), b"Service Unavailable")
            } else {
                (b"", b"Forbidden")
            };
            reply_with(ctx, env, code, reason, lines);
            ActionResult::Ret(0)
        }
        Verdict::Fetch(job) => ctx.suspend_with(
            job,
            match kind {
                AuthKind::Www => www_resume,
                AuthKind::Proxy => proxy_resume,
            },
        ),
    }
}

/// Finishes a check suspended on the subscriber select: caches the answer, then checks.
fn resume(
    ctx: &mut Ctx,
    env: &mut dyn Env,
    args: &[Arg],
    result: JobResult,
    kind: AuthKind,
) -> ActionResult {
    let rows = match result {
        JobResult::Rows(r) => r,
        // SER's auth_db: a failed query is answered 500 here and ends the script; -1 would make
        // the script challenge again, telling the phone its password is wrong.
        JobResult::Failed(e) => {
            env.log(
                level::ERR,
                format!("ERROR: authorize: subscriber lookup failed: {e}").as_bytes(),
            );
            env.reply(ctx, 500, b"Server Internal Error");
            return ActionResult::Ret(0);
        }
        other => {
            env.log(
                level::ERR,
                format!("BUG: authorize: unexpected answer {other:?}").as_bytes(),
            );
            return ActionResult::Ret(-1);
        }
    };
    let db = db_cols(&*env);
    let secret = secret_of(&rows, db.calculate_ha1);
    // The cache key is the one check() would build: parse the credentials again.
    if let Some(state) = env.services().map(|s| &s.auth) {
        let realm: Realm = match str_arg(args, 0) {
            "" => default_realm(ctx, kind),
            r => Realm::from_slice(r.as_bytes()),
        };
        let user = ctx.msg.headers_by_id(kind.header()).find_map(|h| {
            let c = crate::wire::digest::Credentials::parse(h.value).ok()?;
            (c.is_digest() && c.realm() == Some(&realm[..]))
                .then(|| c.username())
                .flatten()
        });
        if let Some(u) = user {
            let key = cache::key(&[str_arg(args, 1).as_bytes(), split_username(u).0, &realm]);
            let ttl = if secret.is_some() {
                db.ttl
            } else {
                db.ttl.min(NEGATIVE_TTL)
            };
            state
                .credentials
                .insert(&key, secret.clone(), unix_now(env.now()), ttl);
        }
    }
    authorize(ctx, env, args, kind, Lookup::Fetched(secret))
}

fn www_resume(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg], result: JobResult) -> ActionResult {
    resume(ctx, env, args, result, AuthKind::Www)
}

fn proxy_resume(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg], result: JobResult) -> ActionResult {
    resume(ctx, env, args, result, AuthKind::Proxy)
}

/// `www_authorize(realm, table)`.
fn www_authorize(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    authorize(ctx, env, args, AuthKind::Www, Lookup::Cache)
}

/// `proxy_authorize(realm, table)`.
fn proxy_authorize(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    authorize(ctx, env, args, AuthKind::Proxy, Lookup::Cache)
}

/// Declaration of module `auth_db`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "auth_db",
    aliases: &[],
    depends: &["auth"],
    functions: &[
        FunctionDecl::new(
            "www_authorize",
            &[Str, Str],
            RouteKinds::REQUEST,
            "verify Authorization credentials: realm, subscriber table",
        )
        .implemented_by(www_authorize),
        FunctionDecl::new(
            "proxy_authorize",
            &[Str, Str],
            RouteKinds::REQUEST,
            "verify Proxy-Authorization credentials: realm, subscriber table",
        )
        .implemented_by(proxy_authorize),
    ],
    params: &[
        ParamDecl::str("db_url", ""),
        ParamDecl::str("user_column", "username"),
        ParamDecl::str("domain_column", "domain"),
        ParamDecl::str("password_column", "ha1"),
        ParamDecl::str("password_column_2", "ha1b"),
        ParamDecl::int("calculate_ha1", 0),
        ParamDecl::int("use_rpid", 0),
        ParamDecl::int("cache_ttl", cache::DEFAULT_TTL as i64),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "database digest authentication",
    config: Some(resolve_config),
    commands: &[CommandDecl::sync(
        "auth_flush",
        "nothing, or user and domain",
        "forget cached credentials: of one user (user, domain) or all",
        auth_flush,
    )],
};

/// `auth_flush` (a ser command; serctl's `passwd` calls it): the cached credentials of one user, or
/// every credential, group and domain cache entry, are forgotten.
fn auth_flush(host: &dyn Host, p: &[String]) -> Reply {
    let auth = &host.shared().services.auth;
    match p {
        [] => {
            auth.invalidate_all();
            Reply::status(200, "credential, group and domain caches flushed")
        }
        [user, domain] => {
            auth.credentials_changed(user, domain);
            Reply::status(
                200,
                format!("cached credentials of {user}@{domain} flushed"),
            )
        }
        _ => Reply::status(400, "auth_flush: give no parameter or user and domain"),
    }
}
