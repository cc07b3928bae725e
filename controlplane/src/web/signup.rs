//! Sign-up with e-mail confirmation (serweb's), on the subscriber side: `/ui/self/signup` takes a
//! user name, password and e-mail address; the account waits in SER's `pending` table with a
//! confirmation string (256 random bits) and the mail command sends the link
//! `<base>/ui/self/confirm?c=<string>`; following it moves the row from `pending` to
//! `subscriber`. Names in the `reserved` table, and names a subscriber or a pending sign-up holds,
//! are refused. Pending rows older than [`PENDING_TTL`] are removed at every sign-up and
//! confirmation (their links no longer work).
//!
//! Enabled by `--web-signup-mail=CMD` (with `--web-selfcare`; off by default). CMD is split at
//! white space and run as `CMD -s SUBJECT ADDRESS` with the mail's text on standard input (as
//! serctl runs `mail`), bounded by [`MAIL_TIMEOUT`]. The link's base is `--web-url=URL`, else
//! `http://` and the `--http` address. The new subscriber's domain is `SIP_DOMAIN`'s (sign-up is
//! refused without one). Each address may start [`super::auth::MAX_FAILURES`] sign-ups per
//! [`super::auth::WINDOW`] (the login throttle's rules), so the form cannot be used to flood
//! mailboxes.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Form;
use axum::Router;
use minijinja::context;

use super::auth::{cookie, random_token, same_token};
use super::pages::same_origin;
use super::Web;
use crate::db::{schema, DbError};
use crate::subscriber;

/// How long a sign-up waits for its confirmation.
pub const PENDING_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest the mail command may run.
pub const MAIL_TIMEOUT: Duration = Duration::from_secs(10);
const FORM_COOKIE: &str = "ser_signup";

type Params = HashMap<String, String>;

/// Sign-up's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignupConfig {
    /// The mail command (program and arguments).
    pub mail: String,
    /// Where the confirmation link points (scheme, host and port; no trailing slash).
    pub base_url: String,
}

pub(super) const TEMPLATES: &[(&str, &str)] = &[(
    "self_signup.html",
    include_str!("templates/self_signup.html"),
)];

pub(super) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/ui/self/signup", get(signup_page).post(signup))
        .route("/ui/self/confirm", get(confirm))
}

fn set_cookie(resp: &mut Response, value: &str, max_age: u64) {
    let c = format!(
        "{FORM_COOKIE}={value}; Path=/ui/self; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn page(w: &Web, status: StatusCode, ctx: minijinja::Value) -> Response {
    let Some(token) = random_token() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness\n").into_response();
    };
    let mut r = w.render("self_signup.html", context! { csrf => token, ..ctx });
    *r.status_mut() = status;
    set_cookie(&mut r, &token, 1800);
    r
}

fn form_again(w: &Web, status: StatusCode, f: &Params, error: &str) -> Response {
    let g = |k: &str| f.get(k).cloned().unwrap_or_default();
    page(
        w,
        status,
        context! {
            error => error, username => g("username"), email => g("email_address"),
            first_name => g("first_name"), last_name => g("last_name"),
        },
    )
}

async fn signup_page(State(w): State<Arc<Web>>) -> Response {
    page(&w, StatusCode::OK, context! { error => None::<String> })
}

/// Removes pending sign-ups older than [`PENDING_TTL`]; how many went.
async fn expire_pending(w: &Web) -> Result<u64, String> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let cutoff = subscriber::datetime(secs.saturating_sub(PENDING_TTL.as_secs()));
    let url = w.settings().subscriber_db;
    w.on_db(move |dbs| async move {
        let db = dbs.get(&url).await?;
        let cols = ["username", "domain", "datetime_created"].map(String::from);
        let rows = db.select("pending", &[], &cols).await?;
        let mut n = 0;
        for r in rows {
            let v = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
            // 'YYYY-MM-DD HH:MM:SS' sorts as text.
            if v(2).as_str() < cutoff.as_str() {
                let keys = vec![("username".into(), v(0)), ("domain".into(), v(1))];
                n += db.delete("pending", &keys).await?;
            }
        }
        Ok::<_, DbError>(n)
    })
    .await
}

/// Whether `user`@`domain` is taken: reserved, a subscriber, or a pending sign-up.
async fn taken(w: &Web, user: &str, domain: &str) -> Result<bool, String> {
    let url = w.settings().subscriber_db;
    let (u, d) = (user.to_string(), domain.to_string());
    w.on_db(move |dbs| async move {
        let db = dbs.get(&url).await?;
        let name = vec!["username".to_string()];
        let reserved = db
            .select("reserved", &[("username".into(), u.clone())], &name)
            .await?;
        if !reserved.is_empty() {
            return Ok(true);
        }
        let keys = vec![("username".to_string(), u), ("domain".to_string(), d)];
        for t in ["subscriber", "pending"] {
            if !db.select(t, &keys, &name).await?.is_empty() {
                return Ok(true);
            }
        }
        Ok::<_, DbError>(false)
    })
    .await
}

/// Runs the mail command: `cmd -s subject to`, `body` on standard input, bounded in time.
pub fn send_mail(cmd: &str, to: &str, subject: &str, body: &str) -> Result<(), String> {
    let mut parts = cmd.split_whitespace();
    let prog = parts.next().ok_or("no mail command")?;
    let mut child = Command::new(prog)
        .args(parts)
        .args(["-s", subject, to])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {prog}: {e}"))?;
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(body.as_bytes());
    }
    let end = Instant::now() + MAIL_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => return Err(format!("{prog} failed ({st})")),
            Ok(None) if Instant::now() > end => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{prog} did not finish in {MAIL_TIMEOUT:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("{prog}: {e}")),
        }
    }
}

fn email_ok(e: &str) -> bool {
    let Some((local, host)) = e.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && host.contains('.')
        && e.len() <= 50
        && !e
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "<>\"'`,;".contains(c))
}

async fn signup(
    State(w): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<Params>,
) -> Response {
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-origin request refused\n").into_response();
    }
    match (cookie(&headers, FORM_COOKIE), f.get("csrf")) {
        (Some(c), Some(t)) if same_token(c, t) => {}
        _ => return (StatusCode::FORBIDDEN, "CSRF token missing or wrong\n").into_response(),
    }
    let Some(cfg) = w.signup.clone() else {
        return (StatusCode::NOT_FOUND, "sign-up is off\n").into_response();
    };
    let g = |k: &str| f.get(k).map_or(String::new(), |v| v.trim().to_string());
    let (user, email) = (g("username"), g("email_address"));
    let password = f.get("password").cloned().unwrap_or_default();
    let st = w.settings();
    let domain = st.default_domain.to_lowercase();
    if domain.is_empty() {
        return form_again(
            &w,
            StatusCode::SERVICE_UNAVAILABLE,
            &f,
            "Sign-up is not configured on this server (no SIP domain).",
        );
    }
    let (first, last) = (g("first_name"), g("last_name"));
    let max_pw = if st.store_plain { 25 } else { 128 };
    let bad = if super::selfcare::name_problem(&user) {
        Some("The user name must be 1 to 64 characters, without spaces, @ : ; < > \" or control characters.".to_string())
    } else if password.is_empty()
        || password.chars().count() > max_pw
        || password.chars().any(char::is_control)
    {
        Some(format!(
            "The password must be 1 to {max_pw} characters, without control characters."
        ))
    } else if password != f.get("again").cloned().unwrap_or_default() {
        Some("The password and its repetition differ.".to_string())
    } else if !email_ok(&email) {
        Some("A valid e-mail address is needed.".to_string())
    } else if first.chars().count() > 25
        || last.chars().count() > 45
        || first.chars().chain(last.chars()).any(char::is_control)
    {
        Some("The names are too long (25 and 45 characters at most).".to_string())
    } else {
        None
    };
    if let Some(p) = bad {
        return form_again(&w, StatusCode::UNPROCESSABLE_ENTITY, &f, &p);
    }
    // Every sign-up counts against the address (mail flooding).
    let keys = vec![format!("signup:{}", peer.ip())];
    {
        let mut t = w.throttle.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(secs) = t.locked(&keys, now) {
            return form_again(
                &w,
                StatusCode::TOO_MANY_REQUESTS,
                &f,
                &format!("Too many sign-ups from here: try again in {secs} seconds."),
            );
        }
        t.fail(&keys, now);
    }
    if let Err(e) = expire_pending(&w).await {
        return form_again(&w, StatusCode::INTERNAL_SERVER_ERROR, &f, &e);
    }
    match taken(&w, &user, &domain).await {
        Ok(false) => {}
        Ok(true) => {
            return form_again(
                &w,
                StatusCode::CONFLICT,
                &f,
                &format!("The name {user} is not available."),
            )
        }
        Err(e) => return form_again(&w, StatusCode::INTERNAL_SERVER_ERROR, &f, &e),
    }
    let Some(confirmation) = random_token() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness\n").into_response();
    };
    let mut row = subscriber::new_row(
        &user,
        &domain,
        &password,
        st.store_plain,
        &[
            ("first_name", first.as_str()),
            ("last_name", last.as_str()),
            ("email_address", email.as_str()),
        ],
    );
    row.push(("confirmation".into(), Some(confirmation.clone())));
    let url = st.subscriber_db.clone();
    let r = row.clone();
    let res = w
        .on_db(move |dbs| async move { dbs.get(&url).await?.insert("pending", &r).await })
        .await;
    if let Err(e) = res {
        return form_again(&w, StatusCode::INTERNAL_SERVER_ERROR, &f, &e);
    }
    let link = format!("{}/ui/self/confirm?c={confirmation}", cfg.base_url);
    let body = format!(
        "Hello,\n\nsomeone (hopefully you) asked for the SIP account {user}@{domain}.\n\
         To activate it, open this link within {} hours:\n\n{link}\n\n\
         If you did not ask for it, ignore this mail.\n",
        PENDING_TTL.as_secs() / 3600
    );
    let (cmd, to) = (cfg.mail.clone(), email.clone());
    let subject = format!("Your SIP account {user}@{domain}");
    let sent = tokio::task::spawn_blocking(move || send_mail(&cmd, &to, &subject, &body))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    if let Err(e) = sent {
        dataplane::ser_log!(dataplane::shard::log::L_ERR, "web: sign-up mail: {e}");
        let url = st.subscriber_db;
        let keys = vec![
            ("username".to_string(), user.clone()),
            ("domain".to_string(), domain.clone()),
        ];
        let _ = w
            .on_db(move |dbs| async move { dbs.get(&url).await?.delete("pending", &keys).await })
            .await;
        return form_again(
            &w,
            StatusCode::INTERNAL_SERVER_ERROR,
            &f,
            "The confirmation mail could not be sent; try again later.",
        );
    }
    page(
        &w,
        StatusCode::OK,
        context! { sent => email, error => None::<String> },
    )
}

async fn confirm(State(w): State<Arc<Web>>, Query(p): Query<Params>) -> Response {
    let c = p.get("c").cloned().unwrap_or_default();
    let done = |status: StatusCode, msg: String| {
        page(
            &w,
            status,
            context! { confirmed => msg, error => None::<String> },
        )
    };
    // A confirmation string is 64 hex digits; anything else finds nothing.
    if c.len() != 64 || !c.bytes().all(|b| b.is_ascii_hexdigit()) {
        return done(
            StatusCode::NOT_FOUND,
            "This link is unknown or has expired.".into(),
        );
    }
    if let Err(e) = expire_pending(&w).await {
        return done(StatusCode::INTERNAL_SERVER_ERROR, e);
    }
    let Some(table) = schema::table("pending") else {
        return done(StatusCode::INTERNAL_SERVER_ERROR, "no pending table".into());
    };
    let cols: Vec<String> = table.columns.iter().map(|c| c.name.to_string()).collect();
    let url = w.settings().subscriber_db;
    let res = w
        .on_db(move |dbs| async move {
            let db = dbs.get(&url).await?;
            let keys = vec![("confirmation".to_string(), c)];
            let rows = db.select("pending", &keys, &cols).await?;
            let Some(r) = rows.into_iter().next() else {
                return Ok(None);
            };
            let row: Vec<(String, Option<String>)> = cols
                .iter()
                .zip(r)
                .filter(|(_, v)| v.is_some())
                .map(|(k, v)| {
                    if k == "confirmation" {
                        (k.clone(), Some(String::new()))
                    } else {
                        (k.clone(), v)
                    }
                })
                .collect();
            let get = |k: &str| {
                row.iter()
                    .find(|(c, _)| c == k)
                    .and_then(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let (user, domain) = (get("username"), get("domain"));
            let keys = vec![
                ("username".to_string(), user.clone()),
                ("domain".to_string(), domain.clone()),
            ];
            let exists = !db
                .select("subscriber", &keys, &["username".to_string()])
                .await?
                .is_empty();
            if !exists {
                db.insert("subscriber", &row).await?;
            }
            db.delete("pending", &keys).await?;
            Ok::<_, DbError>(Some((user, domain, exists)))
        })
        .await;
    match res {
        Ok(Some((user, domain, false))) => {
            let _ = w
                .registry
                .call("auth_flush", vec![user.clone(), domain.clone()])
                .await;
            done(
                StatusCode::OK,
                format!("Your account {user}@{domain} is active: log in with it."),
            )
        }
        Ok(Some((user, domain, true))) => done(
            StatusCode::CONFLICT,
            format!("{user}@{domain} exists already."),
        ),
        Ok(None) => done(
            StatusCode::NOT_FOUND,
            "This link is unknown or has expired.".into(),
        ),
        Err(e) => done(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_mail() {
        assert!(email_ok("a@b.example"));
        assert!(!email_ok("a@b"));
        assert!(!email_ok("<a>@b.example"));
        assert!(send_mail("true", "a@b.example", "s", "body").is_ok());
        assert!(send_mail("false", "a@b.example", "s", "body").is_err());
        assert!(send_mail("/nonexistent/mail", "a@b.example", "s", "b").is_err());
    }
}
