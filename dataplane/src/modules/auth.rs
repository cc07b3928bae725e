//! Script module `auth`: digest authentication core: challenges, nonces, consuming credentials,
//! and the settings `auth_db` checks credentials with (see [`crate::auth`] for the state).
//!
//! `www_challenge(realm, qop)` answers 401 with `WWW-Authenticate`, `proxy_challenge` 407 with
//! `Proxy-Authenticate`: one challenge per algorithm of `algorithms` (RFC 8760 order, preferred
//! first), `qop="auth"` when qop is 1 (`"auth,auth-int"` when 2), and `stale=true` when the
//! request carried one of our nonces for that realm that has expired. An empty realm means the
//! Request-URI host for a REGISTER answered with 401, else the From host. The reply is stateless
//! (through `sl`); the functions return 1 once it is sent.
//!
//! Nonces are stateless (HMAC-SHA256 of `secret`, expiry and realm; see [`crate::auth::nonce`]):
//! servers sharing `secret` accept each other's nonces, and so does this server after a restart.
//! Without `secret` a random one is drawn at start, so nonces handed out before a restart are
//! refused (the client is challenged again).
//!
//! `consume_credentials()` removes the header field whose credentials passed
//! `www_authorize`/`proxy_authorize` before the request is forwarded (false when none did).
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `www_challenge` | Str, Int | request | send 401 with WWW-Authenticate: realm, qop (0|1) |
//! | `proxy_challenge` | Str, Int | request | send 407 with Proxy-Authenticate: realm, qop (0|1) |
//! | `consume_credentials` | - | request | remove the credentials used for authorization from the request |
//!
//! | parameter | type | default | what |
//! |---|---|---|---|
//! | `secret` | string | unset (random per start) | nonce secret; equal on servers sharing registrations |
//! | `nonce_expire` | int | `300` | nonce lifetime, seconds |
//! | `algorithms` | string | `"MD5"` | (addition) offered algorithms, preferred first: `MD5`, `MD5-sess`, `SHA-256`, `SHA-256-sess` |
//! | `fail_limit` | int | `10` | (addition) failed checks per source address before refusing it (0 = never) |
//! | `fail_window` | int | `60` | (addition) seconds over which failures are counted |
//! | `fail_reply` | int | `503` | (addition) reply to a refused source: 503 (with Retry-After) or 403 |
//!
//! Differences from SER 0.8.11: SHA-256 and `-sess` algorithms, `auth-int`, nonce-count replay
//! protection, throttling of failing sources, and nonces that bind the realm and carry a salt.

use crate::auth::digest::AlgorithmSet;
use crate::auth::nonce::{NonceKey, NonceState};
use crate::auth::{default_realm, unix_now, AuthKind, AuthState, Realm};
use crate::script::env::{level, ActionResult, Env};
use crate::script::ir::Arg;
use crate::script::{ArgKind::*, Ctx, FunctionDecl, ModuleDecl, ParamDecl, Renamed, RouteKinds};

/// The module settings a check or challenge needs, read once per call.
pub(crate) struct AuthConfig {
    pub expire: u32,
    pub algorithms: AlgorithmSet,
    pub fail_limit: u32,
    pub fail_window: u64,
    pub fail_reply: u16,
    pub key: NonceKey,
}

/// auth's parameters, resolved once per loaded program.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// `secret` (`None`: the random per-process one).
    pub secret: Option<Box<[u8]>>,
    pub expire: u32,
    pub algorithms: AlgorithmSet,
    pub fail_limit: u32,
    pub fail_window: u64,
    pub fail_reply: u16,
}

impl AuthSettings {
    /// The settings of `program` (defaults without one).
    pub fn resolve(program: Option<&crate::script::ir::Program>) -> AuthSettings {
        let param = |name| crate::modules::param(program, &MODULE, name);
        let int = |name, default: i64| param(name).and_then(|p| p.int()).unwrap_or(default);
        AuthSettings {
            secret: param("secret")
                .and_then(|p| p.str())
                .map(|s| Box::from(s.as_bytes())),
            expire: u32::try_from(int("nonce_expire", 300).max(1)).unwrap_or(300),
            algorithms: param("algorithms")
                .and_then(|p| p.str())
                .and_then(AlgorithmSet::parse)
                .unwrap_or(AlgorithmSet::MD5),
            fail_limit: u32::try_from(int("fail_limit", 10).max(0)).unwrap_or(10),
            fail_window: u64::try_from(int("fail_window", 60).max(1)).unwrap_or(60),
            fail_reply: match int("fail_reply", 503) {
                403 => 403,
                _ => 503,
            },
        }
    }
}

fn resolve_config(program: &crate::script::ir::Program) -> crate::script::ModuleConfig {
    std::sync::Arc::new(AuthSettings::resolve(Some(program)))
}

/// The module's settings for the running program, with the nonce key of its secret.
pub(crate) fn config(env: &dyn Env, state: &AuthState) -> AuthConfig {
    let s = crate::script::config(env, AuthSettings::resolve);
    AuthConfig {
        expire: s.expire,
        algorithms: s.algorithms,
        fail_limit: s.fail_limit,
        fail_window: s.fail_window,
        fail_reply: s.fail_reply,
        key: state.nonce_key(s.secret.as_deref()),
    }
}

/// Sends `code` with `lines` (complete header lines) added, then removes them again so that a
/// later reply of the same run does not carry them.
pub(crate) fn reply_with(
    ctx: &mut Ctx,
    env: &mut dyn Env,
    code: u16,
    reason: &[u8],
    lines: &[u8],
) -> ActionResult {
    let mark = ctx.reply_headers.len();
    ctx.reply_headers.extend_from_slice(lines);
    let r = env.reply(ctx, code, reason);
    ctx.reply_headers.truncate(mark);
    r
}

/// True when the request carries credentials of `kind` for `realm` with one of our nonces that
/// has expired.
fn has_stale_nonce(ctx: &Ctx, kind: AuthKind, realm: &[u8], key: &NonceKey, now: u64) -> bool {
    ctx.msg.headers_by_id(kind.header()).any(|h| {
        crate::wire::digest::Credentials::parse(h.value).is_ok_and(|c| {
            c.is_digest()
                && c.realm() == Some(realm)
                && c.nonce()
                    .is_some_and(|n| key.check(n, realm, now) == NonceState::Stale)
        })
    })
}

fn challenge(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg], kind: AuthKind) -> ActionResult {
    let realm: Realm = match args.first() {
        Some(Arg::Str(r)) if !r.is_empty() => Realm::from_slice(r.as_bytes()),
        _ => default_realm(ctx, kind),
    };
    let qop = match args.get(1) {
        Some(Arg::Int(q)) => *q,
        Some(Arg::Str(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    };
    let now = unix_now(env.now());
    let lines = {
        let Some(state) = env.services().map(|s| &s.auth) else {
            env.log(
                level::ERR,
                b"ERROR: challenge: no shared services (auth state)",
            );
            return ActionResult::Ret(-1);
        };
        let cfg = config(env, state);
        let stale = has_stale_nonce(ctx, kind, &realm, &cfg.key, now);
        let expires = u32::try_from(now.saturating_add(u64::from(cfg.expire))).unwrap_or(u32::MAX);
        let nonce = cfg.key.make(&realm, expires, state.next_salt());
        let name: &[u8] = match kind {
            AuthKind::Www => b"WWW-Authenticate",
            AuthKind::Proxy => b"Proxy-Authenticate",
        };
        let several = cfg.algorithms.len() > 1;
        let mut lines: smallvec::SmallVec<[u8; 256]> = smallvec::SmallVec::new();
        for alg in cfg.algorithms.iter() {
            lines.extend_from_slice(name);
            lines.extend_from_slice(b": Digest realm=\"");
            lines.extend_from_slice(&realm);
            lines.extend_from_slice(b"\", nonce=\"");
            lines.extend_from_slice(&nonce);
            lines.push(b'"');
            match qop {
                1 => lines.extend_from_slice(b", qop=\"auth\""),
                2 => lines.extend_from_slice(b", qop=\"auth,auth-int\""),
                _ => {}
            }
            // SER sent no algorithm (MD5 implied); name it when it is not MD5 or several are offered.
            if several || alg != crate::auth::digest::Algorithm::Md5 {
                lines.extend_from_slice(b", algorithm=");
                lines.extend_from_slice(alg.name().as_bytes());
            }
            if stale {
                lines.extend_from_slice(b", stale=true");
            }
            lines.extend_from_slice(b"\r\n");
        }
        lines
    };
    let (code, reason): (u16, &[u8]) = match kind {
        AuthKind::Www => (401, b"Unauthorized"),
        AuthKind::Proxy => (407, b"Proxy Authentication Required"),
    };
    match reply_with(ctx, env, code, reason, &lines) {
        ActionResult::Ret(r) if r < 0 => {
            env.log(level::ERR, b"ERROR: challenge: could not send the reply");
            ActionResult::Ret(-1)
        }
        _ => ActionResult::Ret(1),
    }
}

/// `www_challenge(realm, qop)`.
fn www_challenge(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    challenge(ctx, env, args, AuthKind::Www)
}

/// `proxy_challenge(realm, qop)`.
fn proxy_challenge(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    challenge(ctx, env, args, AuthKind::Proxy)
}

/// `consume_credentials()`: deletes the authorized credentials' header field.
fn consume_credentials(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg]) -> ActionResult {
    let Some(i) = ctx
        .module_state
        .get::<crate::auth::Authorized>()
        .map(|a| a.0)
    else {
        if ctx.log_enabled(level::ERR) {
            env.log(
                level::ERR,
                b"ERROR: consume_credentials: no authorized credentials found (call www_authorize or proxy_authorize first)",
            );
        }
        return ActionResult::Ret(-1);
    };
    match ctx.msg.delete_header(i) {
        Ok(()) => {
            ctx.module_state.take::<crate::auth::Authorized>();
            ActionResult::Ret(1)
        }
        Err(_) => ActionResult::Ret(-1),
    }
}

/// Declaration of module `auth`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "auth",
    aliases: &[],
    depends: &["sl"],
    functions: &[
        FunctionDecl::new("www_challenge", &[Str, Int], RouteKinds::REQUEST, "send 401 with WWW-Authenticate: realm, qop (0|1)")
            .implemented_by(www_challenge)
            .restricted("it replies statelessly"),
        FunctionDecl::new("proxy_challenge", &[Str, Int], RouteKinds::REQUEST, "send 407 with Proxy-Authenticate: realm, qop (0|1)")
            .implemented_by(proxy_challenge)
            .restricted("it replies statelessly"),
        FunctionDecl::new("consume_credentials", &[], RouteKinds::REQUEST, "remove the credentials used for authorization from the request")
            .implemented_by(consume_credentials),
    ],
    params: &[
        ParamDecl::str_unset("secret"),
        ParamDecl::int("nonce_expire", 300),
        ParamDecl::str("algorithms", "MD5"),
        ParamDecl::int("fail_limit", 10),
        ParamDecl::int("fail_window", 60),
        ParamDecl::int("fail_reply", 503),
    ],
    renamed_functions: &[
    ],
    renamed_params: &[
        Renamed { old: "db_url", new: None, note: "parameters of the former auth module moved to module auth_db in 0.8.11: use modparam(\"auth_db\", \"db_url\", ...)" },
    ],
    doc: "digest authentication core: challenges and nonces",
    config: Some(resolve_config),
    commands: &[],
};

/// Digest credentials that passed the checks every digest back end makes before it asks for the
/// user's secret (auth_db its table, auth_radius its server): the source is not throttled, one
/// well-formed `Authorization`/`Proxy-Authorization` of the realm is there, with a known qop,
/// a valid nc/cnonce, an allowed algorithm and a fresh nonce of ours.
pub(crate) struct Offered<'m> {
    /// Index of the header that carried them.
    pub index: usize,
    pub creds: crate::wire::digest::Credentials<'m>,
    pub realm: Realm,
    pub username: &'m [u8],
    pub nonce: &'m [u8],
    pub uri: &'m [u8],
    pub response: &'m [u8],
    pub qop: crate::auth::digest::Qop,
    /// The nonce-count as sent (empty without qop) and its value (`None` without qop).
    pub nc_raw: &'m [u8],
    pub nc: Option<u32>,
    pub cnonce: &'m [u8],
    pub alg: crate::auth::digest::Algorithm,
    pub nonce_id: u128,
    pub nonce_expires: u32,
}

/// Why there are no [`Offered`] credentials.
pub(crate) enum NotOffered {
    /// None for this realm, a stale or foreign nonce, an algorithm not allowed: challenge.
    Fail,
    /// 400 with this reason, then stop.
    Malformed(&'static str),
    /// The source is refused: reply code, Retry-After seconds.
    Throttled(u16, u64),
}

/// The credentials of `ctx`'s request for the realm of `args[0]` (empty: the default realm).
pub(crate) fn offered<'m>(
    ctx: &'m Ctx,
    args: &[Arg],
    kind: AuthKind,
    cfg: &AuthConfig,
    state: &AuthState,
    now: u64,
) -> Result<Offered<'m>, NotOffered> {
    use crate::auth::digest::{Algorithm, Qop};
    if let Some(retry) = state
        .throttle
        .blocked(ctx.src.ip(), now, cfg.fail_limit, cfg.fail_window)
    {
        return Err(NotOffered::Throttled(cfg.fail_reply, retry));
    }
    let realm: Realm = match crate::auth::str_arg(args, 0) {
        "" => default_realm(ctx, kind),
        r => Realm::from_slice(r.as_bytes()),
    };
    let mut found = None;
    for h in ctx.msg.headers_by_id(kind.header()) {
        match crate::wire::digest::Credentials::parse(h.value) {
            Ok(c) if c.is_digest() && c.realm() == Some(&realm[..]) => {
                found = Some((h.index, c));
                break;
            }
            Ok(_) => {}
            Err(_) => return Err(NotOffered::Malformed("Bad Request - malformed credentials")),
        }
    }
    let Some((index, c)) = found else {
        return Err(NotOffered::Fail);
    };
    let (Some(username), Some(nonce), Some(uri), Some(response)) =
        (c.username(), c.nonce(), c.uri(), c.response())
    else {
        return Err(NotOffered::Malformed(
            "Bad Request - credentials incomplete",
        ));
    };
    let qop = match c.qop() {
        None => Qop::None,
        Some(q) => Qop::parse(q).ok_or(NotOffered::Malformed("Bad Request - unknown qop"))?,
    };
    let (nc_raw, cnonce) = (c.nc().unwrap_or_default(), c.cnonce().unwrap_or_default());
    let nc = if qop == Qop::None {
        None
    } else {
        match std::str::from_utf8(nc_raw)
            .ok()
            .filter(|s| s.len() == 8)
            .and_then(|s| u32::from_str_radix(s, 16).ok())
        {
            Some(n) if n > 0 && !cnonce.is_empty() => Some(n),
            _ => return Err(NotOffered::Malformed("Bad Request - bad nc or cnonce")),
        }
    };
    let alg = match c.algorithm() {
        None => Algorithm::Md5,
        Some(a) => Algorithm::parse(a).ok_or(NotOffered::Fail)?,
    };
    if !cfg.algorithms.contains(alg) {
        return Err(NotOffered::Fail);
    }
    let (nonce_id, nonce_expires) = match cfg.key.check(nonce, &realm, now) {
        NonceState::Fresh { expires, id } => (id, expires),
        NonceState::Stale | NonceState::Invalid => return Err(NotOffered::Fail),
    };
    Ok(Offered {
        index,
        creds: c,
        realm,
        username,
        nonce,
        uri,
        response,
        qop,
        nc_raw,
        nc,
        cnonce,
        alg,
        nonce_id,
        nonce_expires,
    })
}
