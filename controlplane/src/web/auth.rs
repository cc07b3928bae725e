//! Who may use the web UI and how they stay logged in: the administrators' file (argon2id hashes),
//! server-side sessions behind an HttpOnly SameSite=Strict cookie with a per-session CSRF token,
//! and the login throttle.
//!
//! - Admins file: one `name:$argon2id$v=19$m=…,t=…,p=…$salt$hash` per line (`#` comments, blank
//!   lines ignored), as `serctl webpasswd NAME PASSWORD` prints it. Any other hash is refused at
//!   start, naming the line.
//! - Sessions live only in memory (a restart logs everybody out), at most [`MAX_SESSIONS`]; idle
//!   ones end after [`IDLE`], every one after [`LIFETIME`]. The cookie carries 256 random bits and
//!   nothing else.
//! - Throttle: [`MAX_FAILURES`] failed logins within [`WINDOW`], from one address or for one name,
//!   lock that address or name out for [`LOCK`], doubling with each further lock-out up to
//!   [`MAX_LOCK`]. While locked, even the right password is refused and not checked.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use subtle::ConstantTimeEq;

/// Most sessions held at once (the oldest goes first when full).
pub const MAX_SESSIONS: usize = 256;
/// An idle session ends after this.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// Any session ends after this.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Failed logins tolerated within [`WINDOW`].
pub const MAX_FAILURES: u32 = 5;
pub const WINDOW: Duration = Duration::from_secs(10 * 60);
/// First lock-out.
pub const LOCK: Duration = Duration::from_secs(60);
pub const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// Most addresses and names the throttle remembers; beyond that (an attack spread over many
/// addresses) every login is refused until entries age out.
const MAX_THROTTLE: usize = 10_000;

/// The administrators and their argon2id hashes (PHC strings).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admins {
    entries: Vec<(String, String)>,
}

impl Admins {
    /// Parses an admins file's text (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<Admins, String> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{origin}:{}", i + 1);
            let Some((name, hash)) = line.split_once(':') else {
                return Err(format!("{at}: expected name:$argon2id$…"));
            };
            if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(format!("{at}: bad administrator name"));
            }
            let parsed = PasswordHash::new(hash)
                .map_err(|e| format!("{at}: not a PHC password hash ({e})"))?;
            if parsed.algorithm.as_str() != "argon2id" {
                return Err(format!(
                    "{at}: the hash is {}, only argon2id is accepted",
                    parsed.algorithm
                ));
            }
            if entries.iter().any(|(n, _)| n == name) {
                return Err(format!("{at}: administrator {name} listed twice"));
            }
            entries.push((name.to_string(), hash.to_string()));
        }
        if entries.is_empty() {
            return Err(format!("{origin}: no administrator"));
        }
        Ok(Admins { entries })
    }

    /// No administrators: the admin pages refuse every login (ser run with `--web-selfcare` and
    /// without `--web-admins`).
    pub fn none() -> Admins {
        Admins {
            entries: Vec::new(),
        }
    }

    /// Reads and parses an admins file.
    pub fn load(path: &Path) -> Result<Admins, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read web admins file {}: {e}", path.display()))?;
        Admins::parse(&text, &path.display().to_string())
    }

    /// Whether `name` with `password` is an administrator. Slow on purpose (argon2): call it on
    /// a blocking thread. An unknown name costs the same work as a wrong password.
    pub fn verify(&self, name: &str, password: &str) -> bool {
        let known = self.entries.iter().find(|(n, _)| n == name);
        let Some((_, hash)) = known.or(self.entries.first()) else {
            return false;
        };
        let ok = PasswordHash::new(hash).is_ok_and(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        });
        ok && known.is_some()
    }
}

/// An argon2id hash (PHC string, argon2's default cost) of `password`, with a random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| format!("no randomness: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// 256 random bits, hex.
pub fn random_token() -> Option<String> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Constant-time equality of two tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// One logged-in administrator.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub csrf: String,
    /// A message for the next page shown (the result of the last action).
    pub flash: Option<String>,
    created: Instant,
    seen: Instant,
}

/// The sessions, by cookie value.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: HashMap<String, Session>,
}

impl Sessions {
    fn alive(s: &Session, now: Instant) -> bool {
        now.duration_since(s.seen) < IDLE && now.duration_since(s.created) < LIFETIME
    }

    /// A new session for `user`: (cookie value, CSRF token).
    pub fn create(&mut self, user: &str, now: Instant) -> Option<(String, String)> {
        let id = random_token()?;
        let csrf = random_token()?;
        self.by_id.retain(|_, s| Self::alive(s, now));
        if self.by_id.len() >= MAX_SESSIONS {
            let oldest = self
                .by_id
                .iter()
                .min_by_key(|(_, s)| s.seen)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.by_id.remove(&k);
            }
        }
        self.by_id.insert(
            id.clone(),
            Session {
                user: user.to_string(),
                csrf: csrf.clone(),
                flash: None,
                created: now,
                seen: now,
            },
        );
        Some((id, csrf))
    }

    /// The live session of cookie value `id` (its idle time restarts).
    pub fn get(&mut self, id: &str, now: Instant) -> Option<&mut Session> {
        let alive = self.by_id.get(id).is_some_and(|s| Self::alive(s, now));
        if !alive {
            self.by_id.remove(id);
            return None;
        }
        let s = self.by_id.get_mut(id)?;
        s.seen = now;
        Some(s)
    }

    pub fn remove(&mut self, id: &str) {
        self.by_id.remove(id);
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[derive(Debug, Clone)]
struct Failures {
    count: u32,
    first: Instant,
    locked_until: Option<Instant>,
    /// Lock-outs so far (each doubles the next).
    locks: u32,
}

/// Failed logins by key (`ip:…`, `user:…`).
#[derive(Debug, Default)]
pub struct Throttle {
    entries: HashMap<String, Failures>,
}

impl Throttle {
    /// Seconds left on the longest lock-out among `keys` (None: free to try).
    pub fn locked(&mut self, keys: &[String], now: Instant) -> Option<u64> {
        if self.entries.len() >= MAX_THROTTLE {
            self.prune(now);
            if self.entries.len() >= MAX_THROTTLE {
                return Some(WINDOW.as_secs());
            }
        }
        keys.iter()
            .filter_map(|k| self.entries.get(k)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until.duration_since(now).as_secs().max(1))
            .max()
    }

    /// Counts a failure against every key.
    pub fn fail(&mut self, keys: &[String], now: Instant) {
        for k in keys {
            let f = self.entries.entry(k.clone()).or_insert(Failures {
                count: 0,
                first: now,
                locked_until: None,
                locks: 0,
            });
            if now.duration_since(f.first) > WINDOW {
                f.count = 0;
                f.first = now;
            }
            f.count += 1;
            if f.count >= MAX_FAILURES {
                let lock = LOCK.saturating_mul(1u32 << f.locks.min(10)).min(MAX_LOCK);
                f.locked_until = Some(now + lock);
                f.locks += 1;
                f.count = 0;
                f.first = now;
            }
        }
    }

    /// A successful login forgets the keys' failures.
    pub fn succeed(&mut self, keys: &[String]) {
        for k in keys {
            self.entries.remove(k);
        }
    }

    fn prune(&mut self, now: Instant) {
        self.entries.retain(|_, f| {
            f.locked_until.is_some_and(|u| u > now) || now.duration_since(f.first) <= WINDOW
        });
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn admins_file_takes_argon2id_only() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        let a = Admins::parse(&format!("# admins\n\nadmin:{h}\n"), "f").unwrap();
        assert!(a.verify("admin", "s3cret"));
        assert!(!a.verify("admin", "wrong"));
        assert!(!a.verify("nobody", "s3cret"));
        let md5 = "admin:$1$abc$def";
        assert!(Admins::parse(md5, "f").unwrap_err().starts_with("f:1:"));
        let argon2i = h.replacen("argon2id", "argon2i", 1);
        assert!(Admins::parse(&format!("x:{argon2i}"), "f")
            .unwrap_err()
            .contains("only argon2id"));
        assert!(Admins::parse("", "f").is_err());
        assert!(Admins::parse(&format!("a:{h}\na:{h}"), "f").is_err());
    }

    #[test]
    fn sessions_expire_and_stay_bounded() {
        let mut s = Sessions::default();
        let t0 = Instant::now();
        let (id, csrf) = s.create("admin", t0).unwrap();
        assert_eq!(id.len(), 64);
        assert!(!same_token(&id, &csrf));
        assert_eq!(s.get(&id, t0 + IDLE / 2).unwrap().user, "admin");
        assert!(s.get(&id, t0 + IDLE / 2 + IDLE).is_none());
        assert!(s.get(&id, t0).is_none(), "an ended session stays ended");
        for _ in 0..MAX_SESSIONS + 5 {
            s.create("admin", t0);
        }
        assert_eq!(s.len(), MAX_SESSIONS);
    }

    #[test]
    fn throttle_locks_after_failures_and_doubles() {
        let mut t = Throttle::default();
        let keys = vec!["ip:127.0.0.1".to_string(), "user:admin".to_string()];
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            t.fail(&keys, t0);
        }
        assert_eq!(t.locked(&keys, t0), None);
        t.fail(&keys, t0);
        assert_eq!(t.locked(&keys, t0), Some(LOCK.as_secs()));
        assert_eq!(t.locked(&["user:other".into()], t0), None);
        let t1 = t0 + LOCK + Duration::from_secs(1);
        assert_eq!(t.locked(&keys, t1), None);
        for _ in 0..MAX_FAILURES {
            t.fail(&keys, t1);
        }
        assert_eq!(t.locked(&keys, t1), Some(2 * LOCK.as_secs()));
        t.succeed(&keys);
        assert_eq!(t.locked(&keys, t1), None);
    }

    #[test]
    fn cookies() {
        let mut h = axum::http::HeaderMap::new();
        h.append(
            axum::http::header::COOKIE,
            "a=1; ser_session=abc".parse().unwrap(),
        );
        assert_eq!(cookie(&h, "ser_session"), Some("abc"));
        assert_eq!(cookie(&h, "b"), None);
    }
}
