//! Script module `auth_radius`: digest authentication by a RADIUS server
//! (draft-sterman-aaa-sip, as SER and FreeRADIUS's `digest` module speak it).
//! Needs `auth` loaded as well (challenges, nonces, throttling).
//!
//! `radius_www_authorize(realm)` checks the `Authorization` credentials of the request,
//! `radius_proxy_authorize(realm)` the `Proxy-Authorization` ones:
//! 1. A source refused by `auth`'s throttling (`fail_limit`) is answered `fail_reply`, stop (0).
//! 2. The credentials are the first Digest ones for `realm` (empty: the Request-URI host of a
//!    REGISTER, else the From host); none: false (-1, the script challenges). Malformed or
//!    incomplete ones: 400 and stop (0).
//! 3. The nonce must be ours, for this realm and fresh (else false; the next challenge says
//!    `stale=true` for an expired one).
//! 4. The script suspends on an Access-Request to the `radius_config` servers with `User-Name`
//!    (the username, `@realm` appended when it has no domain), `Digest-User-Name`,
//!    `Digest-Realm`, `Digest-Nonce`, `Digest-URI`, `Digest-Method`, `Digest-QOP`,
//!    `Digest-Nonce-Count`, `Digest-CNonce` (with qop), `Digest-Body-Digest` (auth-int),
//!    `Digest-Algorithm` (when given), `Digest-Response` and `Service-Type` (`service_type`,
//!    15 = Sip-Session).
//! 5. Access-Accept: true (1), the credentials become the request's authorized ones (as
//!    auth_db's, for `check_to`, `consume_credentials`…), after the nonce-count replay check.
//!    Access-Reject: false (-1), counted against the source address.
//! 6. No server answered (dead, timed out, forged replies only) or `radius_config` unusable: the
//!    request is answered 500 and the script stops (0), as a database outage does in a
//!    registrar — a failure of the server is not the user's wrong password.
//!
//! `radius_config` is read when the script is loaded (radiusclient.conf, its servers file and
//! dictionary, see [`crate::radius`]); a missing or bad file is logged then with its path and
//! line, and the functions answer 500.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `radius_www_authorize` | Str | request | verify Authorization credentials via RADIUS: realm |
//! | `radius_proxy_authorize` | Str | request | verify Proxy-Authorization credentials via RADIUS: realm |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `radius_config` | string | `"/usr/local/etc/radiusclient/radiusclient.conf"` |
//! | `service_type` | int | `15` |
//!
//! Differences from SER 0.8.11: the nonce realm binding, the nc replay check and throttling
//! (shared with auth_db); SER returned -1 when the server did not answer, so that the script
//! challenged again for ever — here the client sees 500.

use std::sync::Arc;

use crate::auth::digest::{self, Qop};
use crate::auth::{split_username, unix_now, AuthKind};
use crate::offload::{Job, JobResult};
use crate::radius::{Loaded, Value, ACCESS_ACCEPT, ACCESS_REQUEST};
use crate::script::env::{level, ActionResult, Env};
use crate::script::ir::{Arg, Program};
use crate::script::{ArgKind::*, Ctx, FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};

use super::auth::{config, reply_with, NotOffered};

/// Attributes the dictionary must define for this module.
const ATTRS: &[&str] = &[
    "User-Name",
    "Service-Type",
    "Digest-Response",
    "Digest-Realm",
    "Digest-Nonce",
    "Digest-Method",
    "Digest-URI",
    "Digest-QOP",
    "Digest-Algorithm",
    "Digest-Body-Digest",
    "Digest-CNonce",
    "Digest-Nonce-Count",
    "Digest-User-Name",
];

/// auth_radius's settings, resolved (and its `radius_config` read) once per loaded program.
#[derive(Debug, Clone)]
pub struct AuthRadiusConfig {
    radius: Loaded,
    service_type: u32,
}

impl AuthRadiusConfig {
    fn resolve(program: Option<&Program>) -> AuthRadiusConfig {
        let param = |n| super::param(program, &MODULE, n);
        let path = param("radius_config").and_then(|p| p.str()).unwrap_or("");
        AuthRadiusConfig {
            radius: match program {
                Some(_) => crate::radius::load_logged("auth_radius", path, ATTRS),
                None => Err("auth_radius: no program loaded".into()),
            },
            service_type: param("service_type")
                .and_then(|p| p.int())
                .and_then(|i| u32::try_from(i).ok())
                .unwrap_or(15),
        }
    }
}

fn resolve_config(program: &Program) -> crate::script::ModuleConfig {
    Arc::new(AuthRadiusConfig::resolve(Some(program)))
}

/// What a suspended check remembers for its resume.
struct Pending {
    index: usize,
    nonce_id: u128,
    nonce_expires: u32,
    nc: Option<u32>,
    username: String,
    realm: String,
}

enum Verdict {
    Ask(Job, Pending),
    Fail,
    Malformed(&'static str),
    Throttled(u16, u64),
    ServerError(String),
}

fn check(ctx: &Ctx, env: &dyn Env, args: &[Arg], kind: AuthKind) -> Verdict {
    let Some(state) = env.services().map(|s| &s.auth) else {
        return Verdict::ServerError("no shared services (auth state)".into());
    };
    let cfg = config(env, state);
    let now = unix_now(env.now());
    let o = match super::auth::offered(ctx, args, kind, &cfg, state, now) {
        Ok(o) => o,
        Err(NotOffered::Fail) => return Verdict::Fail,
        Err(NotOffered::Malformed(why)) => return Verdict::Malformed(why),
        Err(NotOffered::Throttled(code, retry)) => return Verdict::Throttled(code, retry),
    };
    let (c, index, realm, username, nonce, uri, resp) = (
        &o.creds, o.index, o.realm, o.username, o.nonce, o.uri, o.response,
    );
    let (qop, nc_raw, cnonce, alg) = (o.qop, o.nc_raw, o.cnonce, o.alg);
    let (nc, nonce_id, nonce_expires) = (o.nc, o.nonce_id, o.nonce_expires);
    let rc = crate::script::config(env, AuthRadiusConfig::resolve);
    let radius = match &rc.radius {
        Ok(r) => Arc::clone(r),
        Err(e) => return Verdict::ServerError(e.clone()),
    };
    let t = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (username_t, realm_t) = (t(username), t(&realm));
    let user_name = match split_username(username).1 {
        Some(_) => username_t.clone(),
        None => format!("{username_t}@{realm_t}"),
    };
    let body_digest =
        (qop == Qop::AuthInt).then(|| t(digest::h(alg, &[ctx.msg.body()]).as_bytes()));
    let qop_t = match qop {
        Qop::None => None,
        Qop::Auth => Some("auth"),
        Qop::AuthInt => Some("auth-int"),
    };
    let (method, uri_t, nonce_t, resp_t) = (t(ctx.msg.method_bytes()), t(uri), t(nonce), t(resp));
    let (nc_t, cnonce_t, alg_t) = (t(nc_raw), t(cnonce), c.algorithm().map(t));
    let d = &radius.dict;
    let mut attrs = Vec::new();
    let mut push = |name: &str, v: Value| d.push(&mut attrs, name, v);
    let built = (|| {
        push("User-Name", Value::Text(&user_name))?;
        push("Digest-User-Name", Value::Text(&username_t))?;
        push("Digest-Realm", Value::Text(&realm_t))?;
        push("Digest-Nonce", Value::Text(&nonce_t))?;
        push("Digest-URI", Value::Text(&uri_t))?;
        push("Digest-Method", Value::Text(&method))?;
        if let Some(q) = qop_t {
            push("Digest-QOP", Value::Text(q))?;
            push("Digest-Nonce-Count", Value::Text(&nc_t))?;
            push("Digest-CNonce", Value::Text(&cnonce_t))?;
        }
        if let Some(b) = &body_digest {
            push("Digest-Body-Digest", Value::Text(b))?;
        }
        if let Some(a) = &alg_t {
            push("Digest-Algorithm", Value::Text(a))?;
        }
        push("Digest-Response", Value::Text(&resp_t))?;
        push("Service-Type", Value::Int(rc.service_type))
    })();
    if let Err(e) = built {
        // A value too long for RADIUS: the credentials cannot be checked, as malformed ones.
        return Verdict::ServerError(format!("cannot build the Access-Request: {e}"));
    }
    Verdict::Ask(
        Job::Radius(radius.request(ACCESS_REQUEST, attrs)),
        Pending {
            index,
            nonce_id,
            nonce_expires,
            nc,
            username: username_t,
            realm: realm_t,
        },
    )
}

fn server_error(ctx: &mut Ctx, env: &mut dyn Env, why: &str) -> ActionResult {
    env.log(
        level::ERR,
        format!("ERROR: radius_authorize: {why}").as_bytes(),
    );
    env.reply(ctx, 500, b"Server Internal Error");
    ActionResult::Ret(0)
}

fn authorize(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg], kind: AuthKind) -> ActionResult {
    match check(ctx, &*env, args, kind) {
        Verdict::Ask(job, pending) => {
            ctx.module_state.set(pending);
            ctx.suspend_with(job, resume)
        }
        Verdict::Fail => ActionResult::Ret(-1),
        Verdict::Malformed(reason) => {
            if ctx.log_enabled(level::ERR) {
                env.log(
                    level::ERR,
                    format!("ERROR: radius_authorize: {reason} from {}", ctx.src).as_bytes(),
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
        Verdict::ServerError(e) => server_error(ctx, env, &e),
    }
}

/// The server's answer to a suspended check.
fn resume(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg], result: JobResult) -> ActionResult {
    let Some(p) = ctx.module_state.take::<Pending>() else {
        return server_error(ctx, env, "BUG: resumed without a pending check");
    };
    let code = match result {
        JobResult::Radius { code, .. } => code,
        JobResult::Failed(e) => return server_error(ctx, env, &e),
        other => return server_error(ctx, env, &format!("BUG: unexpected answer {other:?}")),
    };
    let Some(state) = env.services().map(|s| &s.auth) else {
        return server_error(ctx, env, "no shared services (auth state)");
    };
    let now = unix_now(env.now());
    let ip = ctx.src.ip();
    if code != ACCESS_ACCEPT {
        let cfg = config(&*env, state);
        state
            .throttle
            .failed(ip, now, cfg.fail_limit, cfg.fail_window);
        if ctx.log_enabled(level::NOTICE) {
            env.log(
                level::NOTICE,
                format!(
                    "NOTICE: radius_authorize: RADIUS rejected \"{}\" realm \"{}\" from {ip}",
                    p.username, p.realm
                )
                .as_bytes(),
            );
        }
        return ActionResult::Ret(-1);
    }
    if let Some(nc) = p.nc {
        if !state.nc.accept(p.nonce_id, p.nonce_expires, nc, now) {
            if ctx.log_enabled(level::NOTICE) {
                env.log(
                    level::NOTICE,
                    format!("NOTICE: radius_authorize: nonce-count {nc:08x} replayed by {ip}")
                        .as_bytes(),
                );
            }
            return ActionResult::Ret(-1);
        }
    }
    ctx.module_state.set(crate::auth::Authorized(p.index));
    ActionResult::Ret(1)
}

/// `radius_www_authorize(realm)`.
fn radius_www_authorize(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    authorize(ctx, env, args, AuthKind::Www)
}

/// `radius_proxy_authorize(realm)`.
fn radius_proxy_authorize(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    authorize(ctx, env, args, AuthKind::Proxy)
}

/// Declaration of module `auth_radius`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "auth_radius",
    aliases: &[],
    depends: &["auth"],
    functions: &[
        FunctionDecl::new(
            "radius_www_authorize",
            &[Str],
            RouteKinds::REQUEST,
            "verify Authorization credentials via RADIUS: realm",
        )
        .implemented_by(radius_www_authorize),
        FunctionDecl::new(
            "radius_proxy_authorize",
            &[Str],
            RouteKinds::REQUEST,
            "verify Proxy-Authorization credentials via RADIUS: realm",
        )
        .implemented_by(radius_proxy_authorize),
    ],
    params: &[
        ParamDecl::str(
            "radius_config",
            "/usr/local/etc/radiusclient/radiusclient.conf",
        ),
        ParamDecl::int("service_type", 15),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "RADIUS digest authentication",
    config: Some(resolve_config),
    commands: &[],
};
