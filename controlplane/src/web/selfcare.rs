//! The web UI's subscriber side (SER's serweb "user" pages), under `/ui/self/`: a subscriber logs
//! in with the SIP credentials (`user@domain` and password) and sees and changes only their own
//! data.
//!
//! | page | what |
//! |---|---|
//! | `/ui/self/login` | log in: `user@domain` (or `user` in `SIP_DOMAIN`) and the SIP password |
//! | `/ui/self/password` | change the password (HA1/HA1b computed here; then `auth_flush`) |
//! | `/ui/self/registrations` | own bindings in the running usrloc (`location`) |
//! | `/ui/self/calls`, `/ui/self/missed` | own placed calls (`acc`, INVITEs), missed calls (`missed_calls` to the own address) |
//! | `/ui/self/messages` | own stored messages (msilo's `silo`) |
//! | `/ui/self/aliases` | own aliases (usrloc's `aliases` table, as `serctl alias`): add, remove |
//! | `/ui/self/signup`, `/ui/self/confirm` | sign-up with e-mail confirmation, with `--web-signup-mail` ([`super::signup`]) |
//!
//! Enabled by `--web-selfcare` (with `--web-admins` and `--http`); off by default. The calls and
//! messages pages show the newest first, [`SHOWN`] rows a page (`?page=N`); messages are read from
//! msilo's database and table (its `db_url`, `db_table`).
//!
//! The password is checked as digest would check it: MD5(user:domain:password) against the row's
//! `ha1`, in constant time; only when auth_db's `calculate_ha1` is set (the server itself reads the
//! plain column) is the `password` column compared instead.
//!
//! Security: subscriber sessions live in a store of their own behind their own cookie
//! (`ser_self`, Path=/ui/self, HttpOnly, SameSite=Strict), so a subscriber session never opens an
//! administrator page and an administrator session is no subscriber session. Who the data belongs
//! to comes only from the session, never from the request, so subscriber A cannot name B in a
//! URL or a form. Every POST carries the session's CSRF token (the login form a pre-session one
//! in a cookie); failed logins (and failed current passwords on the password page) are throttled
//! as the administrators' are ([`super::auth::Throttle`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use minijinja::context;
use serde::Serialize;
use subtle::ConstantTimeEq;

use super::auth::{cookie, random_token, same_token, Sessions, Throttle};
use super::pages::{forbidden, login_refused, same_origin};
use super::Web;
use crate::db::sql::PageQuery;
use crate::subscriber;

const SESSION_COOKIE: &str = "ser_self";
const LOGIN_COOKIE: &str = "ser_self_login";
/// Rows on one calls or messages page.
const SHOWN: u32 = 25;
/// Most aliases one subscriber may hold.
pub const MAX_ALIASES: usize = 5;
/// The usrloc table aliases live in (registrar's `lookup("aliases")`).
const ALIASES: &str = "aliases";

type Params = HashMap<String, String>;

/// The templates of the subscriber pages (compiled in, overridable like the others).
pub(super) const TEMPLATES: &[(&str, &str)] = &[
    ("self_base.html", include_str!("templates/self_base.html")),
    ("self_login.html", include_str!("templates/self_login.html")),
    (
        "self_message.html",
        include_str!("templates/self_message.html"),
    ),
    (
        "self_password.html",
        include_str!("templates/self_password.html"),
    ),
    (
        "self_registrations.html",
        include_str!("templates/self_registrations.html"),
    ),
    ("self_calls.html", include_str!("templates/self_calls.html")),
    (
        "self_messages.html",
        include_str!("templates/self_messages.html"),
    ),
    (
        "self_aliases.html",
        include_str!("templates/self_aliases.html"),
    ),
];

/// The subscriber side's state: its sessions and its login throttle.
#[derive(Default)]
pub struct SelfCare {
    sessions: Mutex<Sessions>,
    throttle: Mutex<Throttle>,
}

pub(super) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/ui/self", get(home))
        .route("/ui/self/", get(home))
        .route("/ui/self/login", get(login_page).post(login))
        .route("/ui/self/logout", post(logout))
        .route(
            "/ui/self/password",
            get(password_page).post(password_change),
        )
        .route("/ui/self/registrations", get(registrations))
        .route("/ui/self/calls", get(placed))
        .route("/ui/self/missed", get(missed))
        .route("/ui/self/messages", get(messages))
        .route("/ui/self/aliases", get(aliases))
        .route("/ui/self/aliases/add", post(alias_add))
        .route("/ui/self/aliases/remove", post(alias_remove))
}

/// The logged-in subscriber a handler works for.
struct Me {
    user: String,
    domain: String,
    csrf: String,
    flash: Option<String>,
    session: String,
}

impl Me {
    fn aor(&self) -> String {
        format!("{}@{}", self.user, self.domain)
    }
}

fn set_cookie(resp: &mut Response, name: &str, value: &str, max_age: Option<u64>) {
    let age = max_age.map_or(String::new(), |a| format!("; Max-Age={a}"));
    let c = format!("{name}={value}; Path=/ui/self; HttpOnly; SameSite=Strict{age}");
    if let Ok(v) = HeaderValue::from_str(&c) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn to_login() -> Response {
    Redirect::to("/ui/self/login").into_response()
}

fn sc(w: &Web) -> &SelfCare {
    // Routes are only mounted when self-care is configured; a default keeps this total.
    static OFF: std::sync::OnceLock<SelfCare> = std::sync::OnceLock::new();
    w.selfcare
        .as_ref()
        .unwrap_or_else(|| OFF.get_or_init(SelfCare::default))
}

/// `user@domain` (or `user`, in `default`) split; None when malformed.
pub fn split_login(login: &str, default: &str) -> Option<(String, String)> {
    let login = login.trim();
    let (u, d) = match login.rsplit_once('@') {
        Some((u, d)) => (u, d),
        None => (login, default),
    };
    let bad = |s: &str| s.is_empty() || s.len() > 128 || s.chars().any(|c| c.is_control());
    if bad(u) || bad(d) || u.chars().count() > 64 {
        return None;
    }
    Some((u.to_string(), d.to_lowercase()))
}

/// Whether `password` is the subscriber's, as digest would decide: the row's `ha1` against
/// MD5(user:domain:password), or with `plain` (calculate_ha1) the `password` column. Constant time.
pub fn password_matches(
    user: &str,
    domain: &str,
    password: &str,
    ha1: &str,
    plain_column: &str,
    plain: bool,
) -> bool {
    if plain {
        return !plain_column.is_empty()
            && plain_column.len() == password.len()
            && bool::from(plain_column.as_bytes().ct_eq(password.as_bytes()));
    }
    let want = subscriber::ha1(user, domain, password);
    let have = ha1.to_ascii_lowercase();
    have.len() == want.len() && bool::from(have.as_bytes().ct_eq(want.as_bytes()))
}

impl Web {
    fn me(&self, headers: &HeaderMap) -> Option<Me> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let mut sessions = sc(self).sessions.lock().unwrap_or_else(|e| e.into_inner());
        let s = sessions.get(id, Instant::now())?;
        let (user, domain) = s.user.rsplit_once('@')?;
        Some(Me {
            user: user.to_string(),
            domain: domain.to_string(),
            csrf: s.csrf.clone(),
            flash: s.flash.take(),
            session: id.to_string(),
        })
    }

    /// A subscriber action: session, its CSRF token, no foreign Origin; else 403.
    fn my_action(&self, headers: &HeaderMap, form: &Params) -> Result<Me, &'static str> {
        if !same_origin(headers) {
            return Err("cross-origin request refused");
        }
        let me = self.me(headers).ok_or("no session: log in first")?;
        match form.get("csrf") {
            Some(t) if same_token(t, &me.csrf) => Ok(me),
            _ => Err("CSRF token missing or wrong"),
        }
    }

    fn my_flash(&self, me: &Me, msg: impl Into<String>) {
        let mut sessions = sc(self).sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sessions.get(&me.session, Instant::now()) {
            s.flash = Some(msg.into());
        }
    }

    fn my_page(&self, name: &str, me: &Me, nav: &str, extra: minijinja::Value) -> Response {
        self.render(
            name,
            context! {
                me => me.aor(), csrf => me.csrf, flash => me.flash, nav => nav, ..extra
            },
        )
    }

    fn my_error(&self, me: &Me, nav: &str, message: &str) -> Response {
        let mut r = self.my_page(
            "self_message.html",
            me,
            nav,
            context! { message => message },
        );
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    }

    /// The subscriber's (ha1, password) columns; None: no such subscriber.
    async fn credentials(
        &self,
        user: &str,
        domain: &str,
    ) -> Result<Option<(String, String)>, String> {
        let keys = vec![
            ("username".to_string(), user.to_string()),
            ("domain".to_string(), domain.to_string()),
        ];
        let url = self.settings().subscriber_db;
        let cols = vec!["ha1".to_string(), "password".to_string()];
        let rows = self
            .on_db(move |dbs| async move { dbs.select(&url, "subscriber", &keys, &cols).await })
            .await?;
        Ok(rows.into_iter().next().map(|r| {
            let mut it = r.into_iter();
            let ha1 = it.next().flatten().unwrap_or_default();
            let pw = it.next().flatten().unwrap_or_default();
            (ha1, pw)
        }))
    }

    /// Checks a subscriber's password against the database (false also when unknown).
    async fn check_password(
        &self,
        user: &str,
        domain: &str,
        password: &str,
    ) -> Result<bool, String> {
        let plain = self.settings().store_plain;
        let found = self.credentials(user, domain).await?;
        // An unknown user costs the same hash as a known one.
        let (ha1, pw) = found.clone().unwrap_or_default();
        let ok = password_matches(user, domain, password, &ha1, &pw, plain);
        Ok(ok && found.is_some())
    }

    /// The AOR usrloc files the subscriber under.
    fn usrloc_aor(&self, user: &str, domain: &str) -> String {
        if self.settings().use_domain {
            format!("{user}@{domain}")
        } else {
            user.to_string()
        }
    }
}

// ---------------------------------------------------------------- login

async fn home(State(w): State<Arc<Web>>, headers: HeaderMap) -> Response {
    match w.me(&headers) {
        Some(_) => Redirect::to("/ui/self/registrations").into_response(),
        None => to_login(),
    }
}

fn login_form(w: &Web, status: StatusCode, error: Option<String>) -> Response {
    let Some(token) = random_token() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness\n").into_response();
    };
    let domain = w.settings().default_domain;
    let mut r = w.render(
        "self_login.html",
        context! { csrf => token, error => error, domain => domain, signup => w.signup.is_some() },
    );
    *r.status_mut() = status;
    set_cookie(&mut r, LOGIN_COOKIE, &token, Some(600));
    r
}

async fn login_page(State(w): State<Arc<Web>>, headers: HeaderMap) -> Response {
    if w.me(&headers).is_some() {
        return Redirect::to("/ui/self/registrations").into_response();
    }
    login_form(&w, StatusCode::OK, None)
}

/// Takes one attempt from the throttle: Some(seconds) while locked out. The attempt counts as a
/// failure before the check (parallel guesses cannot all pass); a success forgets it.
fn throttle_take(w: &Web, keys: &[String]) -> Option<u64> {
    let mut t = sc(w).throttle.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    let l = t.locked(keys, now);
    if l.is_none() {
        t.fail(keys, now);
    }
    l
}

async fn login(
    State(w): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<Params>,
) -> Response {
    if let Some(r) = login_refused(&headers, &f, LOGIN_COOKIE) {
        return r;
    }
    let login = f.get("user").cloned().unwrap_or_default();
    let password = f.get("password").cloned().unwrap_or_default();
    let Some((user, domain)) = split_login(&login, &w.settings().default_domain) else {
        return login_form(
            &w,
            StatusCode::UNAUTHORIZED,
            Some("Wrong name or password.".into()),
        );
    };
    let keys = vec![format!("ip:{}", peer.ip()), format!("user:{user}@{domain}")];
    if let Some(secs) = throttle_take(&w, &keys) {
        return login_form(
            &w,
            StatusCode::TOO_MANY_REQUESTS,
            Some(format!(
                "Too many failed logins: try again in {secs} seconds."
            )),
        );
    }
    let ok = match w.check_password(&user, &domain, &password).await {
        Ok(ok) => ok,
        Err(e) => {
            dataplane::ser_log!(dataplane::shard::log::L_ERR, "web: subscriber login: {e}");
            return login_form(
                &w,
                StatusCode::INTERNAL_SERVER_ERROR,
                Some("The subscriber database cannot be read now.".into()),
            );
        }
    };
    if !ok {
        dataplane::ser_log!(
            dataplane::shard::log::L_NOTICE,
            "web: failed subscriber login for {:?} from {}",
            format!("{user}@{domain}"),
            peer.ip()
        );
        return login_form(
            &w,
            StatusCode::UNAUTHORIZED,
            Some("Wrong name or password.".into()),
        );
    }
    sc(&w)
        .throttle
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .succeed(&keys);
    let created = sc(&w)
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .create(&format!("{user}@{domain}"), Instant::now());
    let Some((id, _)) = created else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness\n").into_response();
    };
    let mut r = Redirect::to("/ui/self/registrations").into_response();
    set_cookie(&mut r, SESSION_COOKIE, &id, None);
    set_cookie(&mut r, LOGIN_COOKIE, "", Some(0));
    r
}

async fn logout(State(w): State<Arc<Web>>, headers: HeaderMap, Form(f): Form<Params>) -> Response {
    let me = match w.my_action(&headers, &f) {
        Ok(m) => m,
        Err(why) => return forbidden(why),
    };
    sc(&w)
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&me.session);
    let mut r = to_login();
    set_cookie(&mut r, SESSION_COOKIE, "", Some(0));
    r
}

// ---------------------------------------------------------------- password

async fn password_page(State(w): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let Some(me) = w.me(&headers) else {
        return to_login();
    };
    w.my_page(
        "self_password.html",
        &me,
        "password",
        context! { error => None::<String> },
    )
}

async fn password_change(
    State(w): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<Params>,
) -> Response {
    let me = match w.my_action(&headers, &f) {
        Ok(m) => m,
        Err(why) => return forbidden(why),
    };
    let g = |k: &str| f.get(k).cloned().unwrap_or_default();
    let (old, new, again) = (g("old"), g("new"), g("again"));
    let st = w.settings();
    let again_page = |error: String, status: StatusCode| {
        let mut r = w.my_page(
            "self_password.html",
            &me,
            "password",
            context! { error => error },
        );
        *r.status_mut() = status;
        r
    };
    let max = if st.store_plain { 25 } else { 128 };
    if new.is_empty() || new.chars().count() > max || new.chars().any(char::is_control) {
        return again_page(
            format!("The password must be 1 to {max} characters, without control characters."),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    if new != again {
        return again_page(
            "The new password and its repetition differ.".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    // A stolen session must not guess the current password at leisure.
    let keys = vec![format!("ip:{}", peer.ip()), format!("user:{}", me.aor())];
    if let Some(secs) = throttle_take(&w, &keys) {
        return again_page(
            format!("Too many wrong passwords: try again in {secs} seconds."),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    match w.check_password(&me.user, &me.domain, &old).await {
        Ok(true) => {}
        Ok(false) => {
            return again_page(
                "The current password is wrong.".into(),
                StatusCode::UNAUTHORIZED,
            )
        }
        Err(e) => return w.my_error(&me, "password", &e),
    }
    sc(&w)
        .throttle
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .succeed(&keys);
    let row = subscriber::password_columns(&me.user, &me.domain, &new, st.store_plain);
    let keys = vec![
        ("username".to_string(), me.user.clone()),
        ("domain".to_string(), me.domain.clone()),
    ];
    let url = st.subscriber_db;
    let res = w
        .on_db(
            move |dbs| async move { dbs.get(&url).await?.upsert("subscriber", &keys, &row).await },
        )
        .await;
    if let Err(e) = res {
        return w.my_error(&me, "password", &e);
    }
    // The running server's credential cache must not keep the old one.
    let _ = w
        .registry
        .call("auth_flush", vec![me.user.clone(), me.domain.clone()])
        .await;
    w.my_flash(&me, "Password changed: your phones need the new one now.");
    Redirect::to("/ui/self/password").into_response()
}

// ---------------------------------------------------------------- registrations

#[derive(Serialize)]
struct Binding {
    contact: String,
    expires: String,
    q: String,
    user_agent: String,
    received: String,
}

/// The contacts of `aor` in usrloc table `table` from `ul_dump`'s structured reply.
fn contacts_of(data: &serde_json::Value, table: &str, aor: &str) -> Vec<Binding> {
    let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    let mut out = Vec::new();
    for t in data.as_array().into_iter().flatten() {
        if t["table"].as_str() != Some(table) {
            continue;
        }
        for r in t["records"].as_array().into_iter().flatten() {
            if r["aor"].as_str() != Some(aor) {
                continue;
            }
            for c in r["contacts"].as_array().into_iter().flatten() {
                out.push(Binding {
                    contact: s(c, "contact"),
                    expires: match c["expires"].as_i64() {
                        None => "permanent".into(),
                        Some(e) if e < 0 => "expired".into(),
                        Some(e) => format!("{e} s"),
                    },
                    q: s(c, "q"),
                    user_agent: s(c, "user_agent"),
                    received: s(c, "received"),
                });
            }
        }
    }
    out
}

/// The aliases (AORs of table `aliases`) whose contact is `contact`.
fn aliases_of(data: &serde_json::Value, contact: &str) -> Vec<String> {
    let mut out = Vec::new();
    for t in data.as_array().into_iter().flatten() {
        if t["table"].as_str() != Some(ALIASES) {
            continue;
        }
        for r in t["records"].as_array().into_iter().flatten() {
            let mine = r["contacts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["contact"].as_str() == Some(contact));
            if mine {
                out.push(r["aor"].as_str().unwrap_or("").to_string());
            }
        }
    }
    out
}

async fn registrations(State(w): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let Some(me) = w.me(&headers) else {
        return to_login();
    };
    let reply = w.registry.call("ul_dump", vec![]).await;
    if !(200..300).contains(&reply.code) {
        return w.my_error(
            &me,
            "registrations",
            &format!("ul_dump: {} {}", reply.code, reply.reason),
        );
    }
    let aor = w.usrloc_aor(&me.user, &me.domain);
    let bindings = reply
        .data
        .as_ref()
        .map(|d| contacts_of(d, "location", &aor))
        .unwrap_or_default();
    w.my_page(
        "self_registrations.html",
        &me,
        "registrations",
        context! { bindings => bindings },
    )
}

// ---------------------------------------------------------------- calls and messages

const CALL_COLUMNS: &[&str] = &[
    "time",
    "sip_method",
    "sip_status",
    "sip_from",
    "sip_to",
    "to_uri",
    "sip_callid",
];

fn named(columns: &[&str], rows: crate::db::Rows) -> Vec<HashMap<String, String>> {
    rows.into_iter()
        .map(|r| {
            columns
                .iter()
                .zip(r)
                .map(|(c, v)| (c.to_string(), v.unwrap_or_default()))
                .collect()
        })
        .collect()
}

/// Whether a URI (`sip:user@host:port;params`) names `user` at `domain`.
pub fn uri_is(uri: &str, user: &str, domain: &str) -> bool {
    let u = uri.trim().trim_start_matches('<');
    let Some(rest) = u.strip_prefix("sip:").or_else(|| u.strip_prefix("sips:")) else {
        return false;
    };
    let Some((uu, host)) = rest.split_once('@') else {
        return false;
    };
    let uu = uu.split(':').next().unwrap_or("");
    let host = host
        .split([';', '?', '>'])
        .next()
        .unwrap_or("")
        .split(':')
        .next()
        .unwrap_or("");
    uu == user && host.eq_ignore_ascii_case(domain)
}

/// What a calls or messages page reads: the newest rows of `table` whose `keys` equal the
/// subscriber's values (and whose `search` columns contain the text, when given).
struct Mine {
    table: &'static str,
    columns: &'static [&'static str],
    keys: &'static [&'static str],
    search: &'static [&'static str],
    order: &'static [&'static str],
}

const PLACED: Mine = Mine {
    table: "acc",
    columns: CALL_COLUMNS,
    keys: &["username", "domain", "sip_method"],
    search: &[],
    order: &["time"],
};
const MISSED: Mine = Mine {
    table: "missed_calls",
    columns: CALL_COLUMNS,
    keys: &[],
    search: &["to_uri"],
    order: &["time"],
};
const SILO: Mine = Mine {
    table: "silo",
    columns: SILO_COLUMNS,
    keys: &["username", "domain"],
    search: &[],
    order: &["inc_time"],
};

/// Page `page` (from 1) of the newest rows `m` selects from `table` in the database at `url`:
/// (rows, whether an older page follows).
async fn newest(
    w: &Web,
    (url, table): (String, String),
    m: &'static Mine,
    values: Vec<String>,
    text: String,
    page: u32,
) -> Result<(crate::db::Rows, bool), String> {
    let mut rows = w
        .on_db(move |dbs| async move {
            let pq = PageQuery {
                columns: m.columns,
                keys: m.keys,
                search: if text.is_empty() { &[] } else { m.search },
                order_by: m.order,
                descending: true,
                limit: SHOWN + 1,
                offset: u64::from(page - 1) * u64::from(SHOWN),
            };
            dbs.get(&url)
                .await?
                .select_page(&table, &pq, &values, &text)
                .await
        })
        .await?;
    let more = rows.len() > SHOWN as usize;
    rows.truncate(SHOWN as usize);
    Ok((rows, more))
}

/// The pager's values for page `page` of a list: page, prev (0: none), next (0: none).
fn pager(page: u32, more: bool) -> minijinja::Value {
    minijinja::context! { page => page, prev => page - 1, next => if more { page + 1 } else { 0 } }
}

async fn placed(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> Response {
    let Some(me) = w.me(&headers) else {
        return to_login();
    };
    let page = super::pages::page_no(&p);
    let url = w.settings().acc_db;
    let res = newest(
        &w,
        (url, PLACED.table.into()),
        &PLACED,
        vec![me.user.clone(), me.domain.clone(), "INVITE".into()],
        String::new(),
        page,
    )
    .await;
    match res {
        Ok((rows, more)) => w.my_page(
            "self_calls.html",
            &me,
            "calls",
            context! {
                calls => named(CALL_COLUMNS, rows), placed => true, path => "/ui/self/calls",
                ..pager(page, more)
            },
        ),
        Err(e) => w.my_error(&me, "calls", &e),
    }
}

async fn missed(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> Response {
    let Some(me) = w.me(&headers) else {
        return to_login();
    };
    let page = super::pages::page_no(&p);
    let url = w.settings().acc_db;
    // Found by the To URI (the callee's address), then checked exactly: the search is a
    // substring match and must not hand a@d.com's calls to a@d (so a page may show fewer rows
    // than it read).
    let res = newest(
        &w,
        (url, MISSED.table.into()),
        &MISSED,
        vec![],
        format!("{}@{}", me.user, me.domain),
        page,
    )
    .await;
    match res {
        Ok((rows, more)) => {
            let calls: Vec<_> = named(CALL_COLUMNS, rows)
                .into_iter()
                .filter(|r| {
                    uri_is(
                        r.get("to_uri").map_or("", String::as_str),
                        &me.user,
                        &me.domain,
                    )
                })
                .collect();
            w.my_page(
                "self_calls.html",
                &me,
                "missed",
                context! {
                    calls => calls, placed => false, path => "/ui/self/missed",
                    ..pager(page, more)
                },
            )
        }
        Err(e) => w.my_error(&me, "missed", &e),
    }
}

const SILO_COLUMNS: &[&str] = &["src_addr", "inc_time", "exp_time", "ctype", "body"];

async fn messages(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> Response {
    let Some(me) = w.me(&headers) else {
        return to_login();
    };
    let page = super::pages::page_no(&p);
    // msilo's own db_url and db_table (the server's default database and `silo` unless set).
    let (url, table) = w.settings().tables.silo;
    let table = if table.is_empty() {
        SILO.table.into()
    } else {
        table
    };
    let res = newest(
        &w,
        (url, table),
        &SILO,
        vec![me.user.clone(), me.domain.clone()],
        String::new(),
        page,
    )
    .await;
    match res {
        Ok((rows, more)) => {
            let mut msgs = named(SILO_COLUMNS, rows);
            for m in &mut msgs {
                let t = m.get("inc_time").and_then(|t| t.parse::<u64>().ok());
                if let Some(t) = t {
                    m.insert("time".into(), subscriber::datetime(t));
                }
            }
            w.my_page(
                "self_messages.html",
                &me,
                "messages",
                context! { messages => msgs, path => "/ui/self/messages", ..pager(page, more) },
            )
        }
        Err(e) => w.my_error(&me, "messages", &e),
    }
}

// ---------------------------------------------------------------- aliases

fn my_contact(me: &Me) -> String {
    format!("sip:{}@{}", me.user, me.domain)
}

async fn my_aliases(w: &Web, me: &Me) -> Result<Vec<String>, String> {
    let reply = w.registry.call("ul_dump", vec![]).await;
    if !(200..300).contains(&reply.code) {
        return Err(format!("ul_dump: {} {}", reply.code, reply.reason));
    }
    Ok(reply
        .data
        .as_ref()
        .map(|d| aliases_of(d, &my_contact(me)))
        .unwrap_or_default())
}

async fn aliases(State(w): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let Some(me) = w.me(&headers) else {
        return to_login();
    };
    match my_aliases(&w, &me).await {
        Ok(list) => w.my_page(
            "self_aliases.html",
            &me,
            "aliases",
            context! { aliases => list, max => MAX_ALIASES },
        ),
        Err(e) => w.my_error(&me, "aliases", &e),
    }
}

/// Whether `a` is unfit as a SIP user name (an alias, a signed-up name).
pub(super) fn name_problem(a: &str) -> bool {
    a.is_empty()
        || a.chars().count() > 64
        || a.chars()
            .any(|c| c.is_control() || c.is_whitespace() || "@:;<>\"".contains(c))
}

async fn alias_add(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<Params>,
) -> Response {
    let me = match w.my_action(&headers, &f) {
        Ok(m) => m,
        Err(why) => return forbidden(why),
    };
    let alias = f
        .get("alias")
        .map_or(String::new(), |a| a.trim().to_string());
    let back = |w: &Web, msg: String| {
        w.my_flash(&me, msg);
        Redirect::to("/ui/self/aliases").into_response()
    };
    if name_problem(&alias) {
        return back(
            &w,
            "An alias is 1 to 64 characters, without spaces, @ : ; < > \" or control characters."
                .into(),
        );
    }
    let mine = match my_aliases(&w, &me).await {
        Ok(l) => l,
        Err(e) => return w.my_error(&me, "aliases", &e),
    };
    let key = w.usrloc_aor(&alias, &me.domain);
    if mine.contains(&key) {
        return back(&w, format!("{alias} is your alias already."));
    }
    if mine.len() >= MAX_ALIASES {
        return back(
            &w,
            format!("You have {MAX_ALIASES} aliases, the most allowed."),
        );
    }
    // Taken: by a subscriber of that name, a reserved name, or someone else's alias.
    match w.credentials(&alias, &me.domain).await {
        Ok(None) => {}
        Ok(Some(_)) => return back(&w, format!("{alias} is taken.")),
        Err(e) => return w.my_error(&me, "aliases", &e),
    }
    let url = w.settings().subscriber_db;
    let a2 = alias.clone();
    let reserved = w
        .on_db(move |dbs| async move {
            dbs.select(
                &url,
                "reserved",
                &[("username".to_string(), a2)],
                &["username".to_string()],
            )
            .await
        })
        .await;
    match reserved {
        Ok(rows) if !rows.is_empty() => return back(&w, format!("{alias} is taken.")),
        Ok(_) => {}
        Err(e) => return w.my_error(&me, "aliases", &e),
    }
    let shown = w
        .registry
        .call("ul_show_contact", vec![ALIASES.into(), key.clone()])
        .await;
    if (200..300).contains(&shown.code) {
        return back(&w, format!("{alias} is taken."));
    }
    if shown.code == 400 {
        return back(&w, "Aliases are not in use on this server.".into());
    }
    let r = w
        .registry
        .call(
            "ul_add",
            vec![ALIASES.into(), key, my_contact(&me), "0".into(), "1".into()],
        )
        .await;
    if (200..300).contains(&r.code) {
        back(&w, format!("Alias {alias} added."))
    } else {
        back(&w, format!("Alias not added: {} {}", r.code, r.reason))
    }
}

async fn alias_remove(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<Params>,
) -> Response {
    let me = match w.my_action(&headers, &f) {
        Ok(m) => m,
        Err(why) => return forbidden(why),
    };
    let alias = f.get("alias").cloned().unwrap_or_default();
    // Only the binding to the subscriber's own address goes: naming someone else's alias
    // removes nothing of theirs.
    let r = w
        .registry
        .call(
            "ul_rm_contact",
            vec![ALIASES.into(), alias.clone(), my_contact(&me)],
        )
        .await;
    let msg = if (200..300).contains(&r.code) {
        format!("Alias {alias} removed.")
    } else {
        format!("{alias} is not your alias.")
    };
    w.my_flash(&me, msg);
    Redirect::to("/ui/self/aliases").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn passwords_are_checked_as_digest_would() {
        let ha1 = subscriber::ha1("alice", "d.example", "pw");
        assert!(password_matches(
            "alice",
            "d.example",
            "pw",
            &ha1,
            "",
            false
        ));
        assert!(password_matches(
            "alice",
            "d.example",
            "pw",
            &ha1.to_uppercase(),
            "",
            false
        ));
        assert!(!password_matches(
            "alice",
            "d.example",
            "px",
            &ha1,
            "",
            false
        ));
        assert!(!password_matches(
            "alice",
            "d.example",
            "pw",
            "",
            "pw",
            false
        ));
        assert!(password_matches("alice", "d.example", "pw", "", "pw", true));
        assert!(!password_matches("alice", "d.example", "", "", "", true));
    }

    #[test]
    fn logins_and_uris() {
        assert_eq!(
            split_login("alice@D.example", "x"),
            Some(("alice".into(), "d.example".into()))
        );
        assert_eq!(
            split_login("alice", "x"),
            Some(("alice".into(), "x".into()))
        );
        assert_eq!(split_login("alice", ""), None);
        assert!(uri_is("sip:alice@d.example", "alice", "d.example"));
        assert!(uri_is(
            "<sip:alice@D.example:5060;user=phone>",
            "alice",
            "d.example"
        ));
        assert!(!uri_is("sip:alice@d.example.com", "alice", "d.example"));
        assert!(!uri_is("sip:xalice@d.example", "alice", "d.example"));
    }

    #[test]
    fn own_contacts_and_aliases_only() {
        let d = json!([
            {"table": "location", "records": [
                {"aor": "alice", "contacts": [{"contact": "sip:a@h", "expires": 30, "q": "1.00",
                  "user_agent": "UA", "received": ""}]},
                {"aor": "bob", "contacts": [{"contact": "sip:b@h", "expires": 30}]}]},
            {"table": "aliases", "records": [
                {"aor": "al", "contacts": [{"contact": "sip:alice@d", "expires": null}]},
                {"aor": "bo", "contacts": [{"contact": "sip:bob@d", "expires": null}]}]}]);
        let c = contacts_of(&d, "location", "alice");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].contact, "sip:a@h");
        assert_eq!(aliases_of(&d, "sip:alice@d"), vec!["al".to_string()]);
    }
}
