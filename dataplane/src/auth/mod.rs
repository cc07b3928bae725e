//! Digest authentication and identity checks: the state and computations behind script modules
//! `auth`, `auth_db`, `uri`, `group` and `domain`.
//!
//! - [`digest`]: RFC 2617 / RFC 7616 computations (MD5, SHA-256, `-sess`, qop auth / auth-int).
//! - [`nonce`]: stateless nonces (HMAC of the module `secret`, valid across restarts and on every
//!   server sharing the secret) and nonce-count replay tracking.
//! - [`cache`]: TTL caches of database answers (credentials, groups, domains) read by shards.
//! - [`throttle`]: failed attempts counted per source address.
//!
//! [`AuthState`] gathers them; it lives in [`crate::services::Services::auth`], shared by every
//! shard (lock-free maps; nothing here blocks).
//!
//! Management (serctl, FIFO, web) must tell the caches when it changes the tables:
//! [`AuthState::credentials_changed`] after a subscriber's password changes or the subscriber is
//! added or removed, [`AuthState::groups_changed`] after `grp` changes,
//! [`AuthState::domains_changed`] after `domain` changes (SER's `domain_reload`),
//! [`AuthState::invalidate_all`] after a config reload that changes table or column names.
//! Without these calls a change shows after at most `cache_ttl` seconds (5 for a new subscriber).

pub mod cache;
pub mod digest;
pub mod nonce;
pub mod throttle;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use smallvec::SmallVec;

use crate::script::ctx::Ctx;
use crate::script::env::Env;
use crate::script::ir::Arg;
use crate::wire::digest::Credentials;
use crate::wire::HeaderId;

use cache::{key_parts, CredentialCache, TtlCache};
use nonce::{NcTracker, NonceKey};
use throttle::Throttle;

/// Shared state of the authentication modules.
pub struct AuthState {
    /// Subscriber credentials (auth_db).
    pub credentials: CredentialCache,
    /// Group membership answers (group): key `table NUL user NUL domain NUL group`.
    pub groups: TtlCache<bool>,
    /// Local domains (domain): key `table NUL column`, value the sorted lowercase domains.
    pub domains: TtlCache<Vec<Box<[u8]>>>,
    /// Subscriber existence (uri's `does_uri_exist`): key `table NUL user NUL domain`.
    pub uris: TtlCache<bool>,
    /// Highest nonce-count per live nonce.
    pub nc: NcTracker,
    /// Failed attempts per source address.
    pub throttle: Throttle,
    key: ArcSwapOption<(Box<[u8]>, NonceKey)>,
    random_secret: [u8; 32],
    salt: AtomicU32,
}

impl Default for AuthState {
    /// Empty caches and a random secret for when the script sets no `secret` (nonces handed out
    /// then do not survive a restart).
    fn default() -> Self {
        let mut random_secret = [0u8; 32];
        if getrandom::getrandom(&mut random_secret).is_err() {
            // No OS randomness: std's hash keys are still seeded per process.
            use std::hash::{BuildHasher, Hasher};
            for chunk in random_secret.chunks_mut(8) {
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u128(
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos()),
                );
                chunk.copy_from_slice(&h.finish().to_le_bytes());
            }
        }
        let salt = u32::from_le_bytes([
            random_secret[0] ^ random_secret[4],
            random_secret[1] ^ random_secret[5],
            random_secret[2] ^ random_secret[6],
            random_secret[3] ^ random_secret[7],
        ]);
        AuthState {
            credentials: CredentialCache::default(),
            groups: TtlCache::default(),
            domains: TtlCache::default(),
            uris: TtlCache::default(),
            nc: NcTracker::default(),
            throttle: Throttle::default(),
            key: ArcSwapOption::empty(),
            random_secret,
            salt: AtomicU32::new(salt),
        }
    }
}

impl AuthState {
    /// The nonce key for the module `secret` (`None`: the random per-process one). The keyed
    /// state is computed once per secret and cloned per use.
    pub fn nonce_key(&self, secret: Option<&[u8]>) -> NonceKey {
        let secret = secret.unwrap_or(&self.random_secret);
        if let Some(k) = self.key.load().as_ref() {
            if &*k.0 == secret {
                return k.1.clone();
            }
        }
        let k = NonceKey::new(secret);
        self.key
            .store(Some(Arc::new((Box::from(secret), k.clone()))));
        k
    }

    /// A salt for the next nonce.
    pub fn next_salt(&self) -> u32 {
        self.salt.fetch_add(1, Ordering::Relaxed)
    }

    /// Forgets what is cached about subscriber `user` of `domain` (credentials, groups, existence):
    /// call after adding, removing or changing the subscriber (serctl add/rm/passwd).
    pub fn credentials_changed(&self, user: &str, domain: &str) {
        let is = |k: &[u8]| {
            let mut p = key_parts(k).skip(1);
            p.next() == Some(user.as_bytes()) && p.next() == Some(domain.as_bytes())
        };
        self.credentials.invalidate_where(is);
        self.uris.invalidate_where(is);
        self.groups
            .invalidate_where(|k| key_parts(k).nth(1) == Some(user.as_bytes()));
    }

    /// Forgets every cached group answer (after a change of the `grp` table).
    pub fn groups_changed(&self) {
        self.groups.clear();
    }

    /// Forgets the cached local domains (after a change of the `domain` table; SER's
    /// `domain_reload`).
    pub fn domains_changed(&self) {
        self.domains.clear();
    }

    /// Forgets everything cached (config reload, `serctl` bulk changes).
    pub fn invalidate_all(&self) {
        self.credentials.clear();
        self.groups.clear();
        self.domains.clear();
        self.uris.clear();
    }
}

/// Wall-clock seconds for the shard time `now`: nonces carry absolute expiries, so that another
/// server (or this one after a restart) can check them. The first shard time asked about is
/// anchored to the system clock, later ones advance from it by the monotonic clock the shard hands
/// out (virtual time in tests); the clock itself is read only by the shard.
pub fn unix_now(now: Instant) -> u64 {
    static BASE: OnceLock<(Instant, u64)> = OnceLock::new();
    let &(bi, bs) = BASE.get_or_init(|| {
        (
            now,
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
    });
    match now.checked_duration_since(bi) {
        Some(d) => bs.saturating_add(d.as_secs()),
        None => bs.saturating_sub(bi.saturating_duration_since(now).as_secs()),
    }
}

/// Which credentials header a function works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// `Authorization` / `WWW-Authenticate` / 401 (registrars, user agents).
    Www,
    /// `Proxy-Authorization` / `Proxy-Authenticate` / 407 (proxies).
    Proxy,
}

impl AuthKind {
    /// The credentials header.
    pub fn header(self) -> HeaderId {
        match self {
            AuthKind::Www => HeaderId::Authorization,
            AuthKind::Proxy => HeaderId::ProxyAuthorization,
        }
    }
}

/// A realm or host, copied out of the message.
pub type Realm = SmallVec<[u8; 64]>;

/// The realm to use when the script gives an empty one: the Request-URI host for a REGISTER
/// answered with 401, else the From host (SER used the To host for REGISTER; for a REGISTER the
/// two name the same domain, and the Request-URI is what the client addressed).
pub fn default_realm(ctx: &Ctx, kind: AuthKind) -> Realm {
    let from_uri = |u: &[u8]| {
        crate::wire::uri::Uri::parse(u)
            .map(|u| Realm::from_slice(u.host_raw))
            .unwrap_or_default()
    };
    if kind == AuthKind::Www && ctx.msg.method() == crate::wire::Method::Register {
        return from_uri(ctx.uri());
    }
    ctx.msg
        .from()
        .map(|f| Realm::from_slice(f.uri.host_raw))
        .unwrap_or_default()
}

/// The credentials of header field `index` (the authorized ones, see [`Authorized`]).
pub fn credentials_at(ctx: &Ctx, index: usize) -> Option<Credentials<'_>> {
    let e = ctx.msg.header_entry(index)?;
    Credentials::parse(ctx.msg.slice(e.value)).ok()
}

/// auth's slot of [`Ctx::module_state`]: the index of the header field (Authorization or
/// Proxy-Authorization) whose credentials passed `www_authorize`/`proxy_authorize` (SER's
/// "authorized credentials"): what `check_to`, `is_user`, `is_user_in("Credentials", …)` and
/// `consume_credentials` look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authorized(pub usize);

/// The credentials that passed `www_authorize`/`proxy_authorize` in this run, if any.
pub fn authorized(ctx: &Ctx) -> Option<Credentials<'_>> {
    credentials_at(ctx, ctx.module_state.get::<Authorized>()?.0)
}

/// A digest username split SER's way: `user@domain` → (`user`, `Some(domain)`).
pub fn split_username(u: &[u8]) -> (&[u8], Option<&[u8]>) {
    match u.iter().position(|&b| b == b'@') {
        Some(i) => (u.get(..i).unwrap_or_default(), u.get(i + 1..)),
        None => (u, None),
    }
}

/// The string argument `i`, or `""`.
pub fn str_arg(args: &[Arg], i: usize) -> &str {
    match args.get(i) {
        Some(Arg::Str(s)) => s,
        _ => "",
    }
}

/// The user and host of a URI (`None` when it does not parse).
pub fn uri_user_host(uri: &[u8]) -> Option<(Realm, Realm)> {
    let u = crate::wire::uri::Uri::parse(uri).ok()?;
    Some((
        Realm::from_slice(u.user.unwrap_or_default()),
        Realm::from_slice(u.host_raw),
    ))
}

/// A yes/no database answer (group membership, subscriber existence) from `cache`, or a
/// suspension on `job()` whose resume function (`then`) stores the answer with
/// [`store_answer`] and returns it.
pub fn cached_answer(
    ctx: &mut Ctx,
    env: &dyn Env,
    cache: fn(&AuthState) -> &TtlCache<bool>,
    key: &[u8],
    job: impl FnOnce() -> crate::offload::Job,
    then: crate::script::env::ResumeFn,
) -> crate::script::env::ActionResult {
    let now = unix_now(env.now());
    let hit = env
        .services()
        .and_then(|s| cache(&s.auth).get_with(key, now, |b| *b));
    match hit {
        Some(b) => crate::script::env::ActionResult::from_bool(b),
        None => ctx.suspend_with(job(), then),
    }
}

/// Turns a select's answer into yes (rows) / no (none), caches it under `key` for `ttl` seconds
/// (a no for at most [`cache::NEGATIVE_TTL`]); `None` when the database failed.
pub fn store_answer(
    env: &dyn Env,
    cache: fn(&AuthState) -> &TtlCache<bool>,
    key: &[u8],
    result: &crate::offload::JobResult,
    ttl: u64,
) -> Option<bool> {
    let yes = match result {
        crate::offload::JobResult::Rows(r) => !r.is_empty(),
        _ => return None,
    };
    if let Some(s) = env.services() {
        let ttl = if yes {
            ttl
        } else {
            ttl.min(cache::NEGATIVE_TTL)
        };
        cache(&s.auth).insert(key, yes, unix_now(env.now()), ttl);
    }
    Some(yes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_key_follows_the_secret() {
        let s = AuthState::default();
        let n = s.nonce_key(Some(b"a")).make(b"r", 100, 1);
        assert_eq!(
            NonceKey::new(b"a").check(&n, b"r", 0),
            s.nonce_key(Some(b"a")).check(&n, b"r", 0)
        );
        assert_eq!(
            s.nonce_key(None).check(&n, b"r", 0),
            nonce::NonceState::Invalid
        );
        assert_ne!(s.next_salt(), s.next_salt());
    }

    #[test]
    fn invalidation_by_user() {
        let s = AuthState::default();
        let k = cache::key(&[b"subscriber", b"alice", b"a.com"]);
        s.credentials.insert(&k, None, 0, 60);
        s.groups
            .insert(&cache::key(&[b"grp", b"alice", b"", b"ld"]), true, 0, 60);
        s.credentials_changed("bob", "a.com");
        assert_eq!(s.credentials.len(), 1);
        s.credentials_changed("alice", "a.com");
        assert!(s.credentials.is_empty() && s.groups.is_empty());
    }

    #[test]
    fn usernames() {
        assert_eq!(split_username(b"a@b"), (&b"a"[..], Some(&b"b"[..])));
        assert_eq!(split_username(b"a"), (&b"a"[..], None));
    }
}
