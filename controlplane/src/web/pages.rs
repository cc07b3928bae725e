//! The web UI's handlers. Each protected handler starts with [`Web::session`] (GET) or
//! [`Web::action`] (POST: session and CSRF token); nothing is read or changed before that.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use minijinja::context;
use serde::Serialize;

use super::auth::{cookie, random_token, same_token};
use super::Web;
use crate::db::sql::PageQuery;
use crate::db::{DbError, Rows};
use crate::subscriber;

const SESSION_COOKIE: &str = "ser_session";
const LOGIN_COOKIE: &str = "ser_login";
/// Rows per page.
pub(super) const PAGE: u32 = 25;

pub(super) type Params = HashMap<String, String>;

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/ui", get(home))
        .route("/ui/", get(home))
        .route("/ui/style.css", get(style))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/subscribers", get(subscribers))
        .route("/ui/subscribers/new", get(subscriber_new))
        .route("/ui/subscribers/create", post(subscriber_create))
        .route("/ui/subscribers/edit", get(subscriber_edit))
        .route("/ui/subscribers/update", post(subscriber_update))
        .route("/ui/subscribers/delete", post(subscriber_delete))
        .route("/ui/location", get(location))
        .route("/ui/location/remove", post(location_remove))
        .route("/ui/acc", get(acc))
        .route("/ui/missed", get(missed))
        .merge(super::rpc::routes())
}

/// The logged-in administrator a handler works for.
pub(super) struct Ctx {
    pub(super) user: String,
    pub(super) csrf: String,
    flash: Option<String>,
    session: String,
}

/// Why a request was not served (small, so results carrying it stay small).
pub(super) enum Refused {
    /// No session: a page goes to the login.
    ToLogin,
    /// 403 with this reason (an action without session or token).
    Forbidden(&'static str),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::ToLogin => to_login(),
            Refused::Forbidden(why) => forbidden(why),
        }
    }
}

pub(super) fn forbidden(why: &str) -> Response {
    (StatusCode::FORBIDDEN, format!("{why}\n")).into_response()
}

/// The checks of a login POST before any credential is looked at: same origin, and (login CSRF)
/// the form's token equal to the one this browser got with the form in cookie `login_cookie`.
pub(super) fn login_refused(
    headers: &HeaderMap,
    f: &Params,
    login_cookie: &str,
) -> Option<Response> {
    if !same_origin(headers) {
        return Some(forbidden("cross-origin request refused"));
    }
    match (cookie(headers, login_cookie), f.get("csrf")) {
        (Some(c), Some(t)) if same_token(c, t) => None,
        _ => Some(forbidden("CSRF token missing or wrong")),
    }
}

fn to_login() -> Response {
    Redirect::to("/ui/login").into_response()
}

/// `Origin`, when sent, must be this server (the Host the request was sent to).
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (origin.to_str().ok(), host) {
        (Some(o), Some(h)) => o.strip_prefix("http://").or(o.strip_prefix("https://")) == Some(h),
        _ => false,
    }
}

fn set_cookie(resp: &mut Response, name: &str, value: &str, max_age: Option<u64>) {
    let age = max_age.map_or(String::new(), |a| format!("; Max-Age={a}"));
    let c = format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict{age}");
    if let Ok(v) = HeaderValue::from_str(&c) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

impl Web {
    /// The session of a page request (its flash message taken), or the way to the login page.
    pub(super) fn session(&self, headers: &HeaderMap) -> Result<Ctx, Refused> {
        let Some(id) = cookie(headers, SESSION_COOKIE) else {
            return Err(Refused::ToLogin);
        };
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = sessions.get(id, Instant::now()) else {
            return Err(Refused::ToLogin);
        };
        Ok(Ctx {
            user: s.user.clone(),
            csrf: s.csrf.clone(),
            flash: s.flash.take(),
            session: id.to_string(),
        })
    }

    /// The session of an action: a session, its CSRF token in the form, and no foreign Origin;
    /// otherwise 403 and nothing done.
    pub(super) fn action(&self, headers: &HeaderMap, form: &Params) -> Result<Ctx, Refused> {
        if !same_origin(headers) {
            return Err(Refused::Forbidden("cross-origin request refused"));
        }
        let ctx = self
            .session(headers)
            .map_err(|_| Refused::Forbidden("no session: log in first"))?;
        match form.get("csrf") {
            Some(t) if same_token(t, &ctx.csrf) => Ok(ctx),
            _ => Err(Refused::Forbidden("CSRF token missing or wrong")),
        }
    }

    /// Sets the message the next page shows.
    pub(super) fn flash(&self, ctx: &Ctx, msg: impl Into<String>) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sessions.get(&ctx.session, Instant::now()) {
            s.flash = Some(msg.into());
        }
    }

    pub(super) fn page(
        &self,
        name: &str,
        ctx: &Ctx,
        nav: &str,
        extra: minijinja::Value,
    ) -> Response {
        self.render(
            name,
            context! {
                user => ctx.user, csrf => ctx.csrf, flash => ctx.flash, nav => nav, ..extra
            },
        )
    }

    pub(super) fn error_page(&self, ctx: &Ctx, nav: &str, message: &str) -> Response {
        let mut r = self.page("message.html", ctx, nav, context! { message => message });
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    }

    /// Tells the running server that a subscriber changed (as serctl does after a write): its
    /// credential cache must not answer with the old password. Without auth_db loaded there is
    /// no cache, and the refusal is fine.
    pub(super) async fn auth_flush(&self, user: &str, domain: &str) {
        let _ = self
            .registry
            .call("auth_flush", vec![user.to_string(), domain.to_string()])
            .await;
    }
}

// ---------------------------------------------------------------- login

async fn home(State(w): State<Arc<Web>>, headers: HeaderMap) -> Response {
    match w.session(&headers) {
        Ok(_) => Redirect::to("/ui/subscribers").into_response(),
        Err(r) => r.into_response(),
    }
}

async fn style(State(w): State<Arc<Web>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        w.style.clone(),
    )
        .into_response()
}

fn login_form(w: &Web, status: StatusCode, error: Option<String>) -> Response {
    let Some(token) = random_token() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness\n").into_response();
    };
    let mut r = w.render("login.html", context! { csrf => token, error => error });
    *r.status_mut() = status;
    set_cookie(&mut r, LOGIN_COOKIE, &token, Some(600));
    r
}

async fn login_page(State(w): State<Arc<Web>>, headers: HeaderMap) -> Response {
    if w.session(&headers).is_ok() {
        return Redirect::to("/ui/subscribers").into_response();
    }
    login_form(&w, StatusCode::OK, None)
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
    let user = f.get("user").cloned().unwrap_or_default();
    let password = f.get("password").cloned().unwrap_or_default();
    let keys = vec![format!("ip:{}", peer.ip()), format!("user:{user}")];
    // The attempt counts as a failure before the (slow) check, so a burst of parallel guesses
    // cannot all pass the lock test; a success forgets it again.
    let locked = {
        let mut t = w.throttle.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let l = t.locked(&keys, now);
        if l.is_none() {
            t.fail(&keys, now);
        }
        l
    };
    if let Some(secs) = locked {
        return login_form(
            &w,
            StatusCode::TOO_MANY_REQUESTS,
            Some(format!(
                "Too many failed logins: try again in {secs} seconds."
            )),
        );
    }
    let admins = Arc::clone(&w.admins);
    let u = user.clone();
    let ok = tokio::task::spawn_blocking(move || admins.verify(&u, &password))
        .await
        .unwrap_or(false);
    if !ok {
        dataplane::ser_log!(
            dataplane::shard::log::L_NOTICE,
            "web: failed login for {user:?} from {}",
            peer.ip()
        );
        return login_form(
            &w,
            StatusCode::UNAUTHORIZED,
            Some("Wrong name or password.".into()),
        );
    }
    w.throttle
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .succeed(&keys);
    let created = w
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .create(&user, Instant::now());
    let Some((id, _)) = created else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness\n").into_response();
    };
    let mut r = Redirect::to("/ui/subscribers").into_response();
    set_cookie(&mut r, SESSION_COOKIE, &id, None);
    set_cookie(&mut r, LOGIN_COOKIE, "", Some(0));
    r
}

async fn logout(State(w): State<Arc<Web>>, headers: HeaderMap, Form(f): Form<Params>) -> Response {
    let ctx = match w.action(&headers, &f) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    w.sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&ctx.session);
    let mut r = to_login();
    set_cookie(&mut r, SESSION_COOKIE, "", Some(0));
    r
}

// ---------------------------------------------------------------- subscribers

const SUBSCRIBER_LIST: &[&str] = &[
    "username",
    "domain",
    "first_name",
    "last_name",
    "email_address",
    "datetime_created",
];
const SUBSCRIBER_FORM: &[&str] = &[
    "username",
    "domain",
    "first_name",
    "last_name",
    "email_address",
    "phone",
];

fn named(columns: &[&str], rows: &Rows) -> Vec<HashMap<String, String>> {
    rows.iter()
        .map(|r| {
            columns
                .iter()
                .zip(r)
                .map(|(c, v)| (c.to_string(), v.clone().unwrap_or_default()))
                .collect()
        })
        .collect()
}

pub(super) fn page_no(p: &Params) -> u32 {
    p.get("page")
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1)
}

/// A table page: what is shown, searched and sorted.
struct Listing {
    table: &'static str,
    columns: &'static [&'static str],
    search: &'static [&'static str],
    order_by: &'static [&'static str],
    descending: bool,
}

const SUBSCRIBERS: Listing = Listing {
    table: "subscriber",
    columns: SUBSCRIBER_LIST,
    search: &[
        "username",
        "domain",
        "first_name",
        "last_name",
        "email_address",
    ],
    order_by: &["username", "domain"],
    descending: false,
};

/// One page of a listing in the database at `url`, searched for `q`: (rows, whether another
/// page follows).
async fn page_of(
    w: &Web,
    l: &'static Listing,
    url: String,
    q: &str,
    page: u32,
) -> Result<(Rows, bool), String> {
    let q = q.to_string();
    let search = if q.is_empty() { &[][..] } else { l.search };
    let mut rows = w
        .on_db(move |dbs| async move {
            let pq = PageQuery {
                columns: l.columns,
                keys: &[],
                search,
                order_by: l.order_by,
                descending: l.descending,
                limit: PAGE + 1,
                offset: u64::from(page - 1) * u64::from(PAGE),
            };
            dbs.get(&url)
                .await?
                .select_page(l.table, &pq, &[], &q)
                .await
        })
        .await?;
    let more = rows.len() > PAGE as usize;
    rows.truncate(PAGE as usize);
    Ok((rows, more))
}

async fn subscribers(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> Response {
    let ctx = match w.session(&headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let q = p.get("q").cloned().unwrap_or_default();
    let page = page_no(&p);
    let url = w.settings().subscriber_db;
    let res = page_of(&w, &SUBSCRIBERS, url, &q, page).await;
    match res {
        Ok((rows, more)) => w.page(
            "subscribers.html",
            &ctx,
            "subscribers",
            context! {
                rows => named(SUBSCRIBER_LIST, &rows), q => q, page => page,
                prev => page - 1, next => if more { page + 1 } else { 0 },
            },
        ),
        Err(e) => w.error_page(&ctx, "subscribers", &e),
    }
}

#[derive(Serialize, Default)]
struct SubscriberForm {
    username: String,
    domain: String,
    first_name: String,
    last_name: String,
    email_address: String,
    phone: String,
}

impl SubscriberForm {
    fn from_params(f: &Params) -> SubscriberForm {
        let g = |k: &str| f.get(k).map_or(String::new(), |v| v.trim().to_string());
        SubscriberForm {
            username: g("username"),
            domain: g("domain"),
            first_name: g("first_name"),
            last_name: g("last_name"),
            email_address: g("email_address"),
            phone: g("phone"),
        }
    }

    /// The editable columns (not the keys).
    fn details(&self) -> [(&'static str, &str); 4] {
        [
            ("first_name", &self.first_name),
            ("last_name", &self.last_name),
            ("email_address", &self.email_address),
            ("phone", &self.phone),
        ]
    }

    /// What is wrong with it (the schema's lengths, a SIP-usable user and domain).
    fn problem(&self) -> Option<String> {
        let bad_user = |s: &str| {
            s.is_empty()
                || s.chars().count() > 64
                || s.chars()
                    .any(|c| c.is_control() || c.is_whitespace() || "@:;<>\"".contains(c))
        };
        if bad_user(&self.username) {
            return Some("The user name must be 1 to 64 characters, without spaces, @ : ; < > \" or control characters.".into());
        }
        let bad_domain = |s: &str| {
            s.is_empty()
                || s.len() > 128
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-_:[]".contains(c))
        };
        if bad_domain(&self.domain) {
            return Some(
                "The domain must be a host name or address (letters, digits, . - _ : [ ]).".into(),
            );
        }
        for (col, max, v) in [
            ("first name", 25, &self.first_name),
            ("last name", 45, &self.last_name),
            ("e-mail address", 50, &self.email_address),
            ("phone", 15, &self.phone),
        ] {
            if v.chars().count() > max || v.chars().any(char::is_control) {
                return Some(format!(
                    "The {col} must be at most {max} characters, without control characters."
                ));
            }
        }
        None
    }
}

fn password_problem(pw: &str, store_plain: bool) -> Option<String> {
    // The plain password column holds 25 characters (SER's schema).
    let max = if store_plain { 25 } else { 128 };
    if pw.is_empty() || pw.chars().count() > max || pw.chars().any(char::is_control) {
        return Some(format!(
            "The password must be 1 to {max} characters, without control characters."
        ));
    }
    None
}

async fn subscriber_new(State(w): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let ctx = match w.session(&headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let sub = SubscriberForm {
        domain: w.settings().default_domain,
        ..SubscriberForm::default()
    };
    w.page(
        "subscriber.html",
        &ctx,
        "subscribers",
        context! { sub => sub, new => true, error => None::<String> },
    )
}

fn form_again(w: &Web, ctx: &Ctx, sub: &SubscriberForm, new: bool, error: &str) -> Response {
    let mut r = w.page(
        "subscriber.html",
        ctx,
        "subscribers",
        context! { sub => sub, new => new, error => error },
    );
    *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    r
}

async fn exists(w: &Web, url: String, user: &str, domain: &str) -> Result<bool, String> {
    let keys = vec![
        ("username".to_string(), user.to_string()),
        ("domain".to_string(), domain.to_string()),
    ];
    let rows = w
        .on_db(move |dbs| async move {
            dbs.select(&url, "subscriber", &keys, &["username".to_string()])
                .await
        })
        .await?;
    Ok(!rows.is_empty())
}

async fn subscriber_create(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<Params>,
) -> Response {
    let ctx = match w.action(&headers, &f) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let sub = SubscriberForm::from_params(&f);
    let st = w.settings();
    let password = f.get("password").cloned().unwrap_or_default();
    if let Some(p) = sub
        .problem()
        .or_else(|| password_problem(&password, st.store_plain))
    {
        return form_again(&w, &ctx, &sub, true, &p);
    }
    match exists(&w, st.subscriber_db.clone(), &sub.username, &sub.domain).await {
        Ok(true) => {
            return form_again(
                &w,
                &ctx,
                &sub,
                true,
                &format!("{}@{} exists already.", sub.username, sub.domain),
            )
        }
        Ok(false) => {}
        Err(e) => return w.error_page(&ctx, "subscribers", &e),
    }
    let row = subscriber::new_row(
        &sub.username,
        &sub.domain,
        &password,
        st.store_plain,
        &sub.details(),
    );
    let url = st.subscriber_db;
    let res = w
        .on_db(move |dbs| async move { dbs.get(&url).await?.insert("subscriber", &row).await })
        .await;
    if let Err(e) = res {
        return w.error_page(&ctx, "subscribers", &e);
    }
    w.auth_flush(&sub.username, &sub.domain).await;
    w.flash(
        &ctx,
        format!("Subscriber {}@{} created.", sub.username, sub.domain),
    );
    Redirect::to("/ui/subscribers").into_response()
}

async fn subscriber_edit(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> Response {
    let ctx = match w.session(&headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let (user, domain) = (
        p.get("username").cloned().unwrap_or_default(),
        p.get("domain").cloned().unwrap_or_default(),
    );
    let keys = vec![
        ("username".to_string(), user.clone()),
        ("domain".to_string(), domain.clone()),
    ];
    let url = w.settings().subscriber_db;
    let cols: Vec<String> = SUBSCRIBER_FORM.iter().map(|c| c.to_string()).collect();
    let res = w
        .on_db(move |dbs| async move { dbs.select(&url, "subscriber", &keys, &cols).await })
        .await;
    match res {
        Ok(rows) if rows.is_empty() => {
            let mut r = w.page(
                "message.html",
                &ctx,
                "subscribers",
                context! { message => format!("No subscriber {user}@{domain}.") },
            );
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
        Ok(rows) => {
            let sub = named(SUBSCRIBER_FORM, &rows).swap_remove(0);
            w.page(
                "subscriber.html",
                &ctx,
                "subscribers",
                context! { sub => sub, new => false, error => None::<String> },
            )
        }
        Err(e) => w.error_page(&ctx, "subscribers", &e),
    }
}

async fn subscriber_update(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<Params>,
) -> Response {
    let ctx = match w.action(&headers, &f) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let sub = SubscriberForm::from_params(&f);
    let st = w.settings();
    let password = f.get("password").cloned().unwrap_or_default();
    let pw_problem = if password.is_empty() {
        None
    } else {
        password_problem(&password, st.store_plain)
    };
    if let Some(p) = sub.problem().or(pw_problem) {
        return form_again(&w, &ctx, &sub, false, &p);
    }
    match exists(&w, st.subscriber_db.clone(), &sub.username, &sub.domain).await {
        Ok(true) => {}
        Ok(false) => {
            w.flash(
                &ctx,
                format!("No subscriber {}@{}.", sub.username, sub.domain),
            );
            return Redirect::to("/ui/subscribers").into_response();
        }
        Err(e) => return w.error_page(&ctx, "subscribers", &e),
    }
    let mut row: Vec<(String, Option<String>)> = sub
        .details()
        .iter()
        .map(|(k, v)| (k.to_string(), Some(v.to_string())))
        .collect();
    if password.is_empty() {
        row.push(("datetime_modified".into(), Some(subscriber::now())));
    } else {
        row.extend(subscriber::password_columns(
            &sub.username,
            &sub.domain,
            &password,
            st.store_plain,
        ));
    }
    let keys = vec![
        ("username".to_string(), sub.username.clone()),
        ("domain".to_string(), sub.domain.clone()),
    ];
    let url = st.subscriber_db;
    let res = w
        .on_db(
            move |dbs| async move { dbs.get(&url).await?.upsert("subscriber", &keys, &row).await },
        )
        .await;
    if let Err(e) = res {
        return w.error_page(&ctx, "subscribers", &e);
    }
    w.auth_flush(&sub.username, &sub.domain).await;
    let what = if password.is_empty() {
        "updated"
    } else {
        "updated, new password in effect"
    };
    w.flash(
        &ctx,
        format!("Subscriber {}@{} {what}.", sub.username, sub.domain),
    );
    Redirect::to("/ui/subscribers").into_response()
}

async fn subscriber_delete(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<Params>,
) -> Response {
    let ctx = match w.action(&headers, &f) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let (user, domain) = (
        f.get("username").cloned().unwrap_or_default(),
        f.get("domain").cloned().unwrap_or_default(),
    );
    if user.is_empty() || domain.is_empty() {
        w.flash(&ctx, "Nothing deleted: no user or domain given.");
        return Redirect::to("/ui/subscribers").into_response();
    }
    let st = w.settings();
    let keys = vec![
        ("username".to_string(), user.clone()),
        ("domain".to_string(), domain.clone()),
    ];
    let url = st.subscriber_db.clone();
    // As serctl's rm: the ACL memberships go too.
    let res = w
        .on_db(move |dbs| async move {
            let db = dbs.get(&url).await?;
            let n = db.delete("subscriber", &keys).await?;
            db.delete("grp", &keys).await?;
            Ok::<_, DbError>(n)
        })
        .await;
    let n = match res {
        Ok(n) => n,
        Err(e) => return w.error_page(&ctx, "subscribers", &e),
    };
    // And its registrations (usrloc's own command, so every db_mode is right).
    let aor = if st.use_domain {
        format!("{user}@{domain}")
    } else {
        user.clone()
    };
    let _ = w.registry.call("ul_rm", vec!["location".into(), aor]).await;
    w.auth_flush(&user, &domain).await;
    w.flash(
        &ctx,
        if n > 0 {
            format!("Subscriber {user}@{domain} deleted.")
        } else {
            format!("No subscriber {user}@{domain}.")
        },
    );
    Redirect::to("/ui/subscribers").into_response()
}

// ---------------------------------------------------------------- location

#[derive(Serialize)]
struct Binding {
    table: String,
    aor: String,
    contact: String,
    expires: String,
    q: String,
    call_id: String,
    cseq: u64,
    user_agent: String,
    received: String,
}

/// The bindings in `ul_dump`'s structured reply.
fn bindings_of(data: &serde_json::Value) -> Vec<Binding> {
    let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    let mut out = Vec::new();
    for t in data.as_array().into_iter().flatten() {
        for r in t["records"].as_array().into_iter().flatten() {
            for c in r["contacts"].as_array().into_iter().flatten() {
                out.push(Binding {
                    table: s(t, "table"),
                    aor: s(r, "aor"),
                    contact: s(c, "contact"),
                    expires: match c["expires"].as_i64() {
                        None => "permanent".into(),
                        Some(e) if e < 0 => "expired".into(),
                        Some(e) => format!("{e} s"),
                    },
                    q: s(c, "q"),
                    call_id: s(c, "call_id"),
                    cseq: c["cseq"].as_u64().unwrap_or(0),
                    user_agent: s(c, "user_agent"),
                    received: s(c, "received"),
                });
            }
        }
    }
    out
}

async fn location(State(w): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let ctx = match w.session(&headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let reply = w.registry.call("ul_dump", vec![]).await;
    if !(200..300).contains(&reply.code) {
        return w.error_page(
            &ctx,
            "location",
            &format!("ul_dump: {} {}", reply.code, reply.reason),
        );
    }
    let bindings = reply.data.as_ref().map(bindings_of).unwrap_or_default();
    w.page(
        "location.html",
        &ctx,
        "location",
        context! { bindings => bindings },
    )
}

async fn location_remove(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<Params>,
) -> Response {
    let ctx = match w.action(&headers, &f) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let g = |k: &str| f.get(k).cloned().unwrap_or_default();
    let reply = w
        .registry
        .call("ul_rm_contact", vec![g("table"), g("aor"), g("contact")])
        .await;
    w.flash(&ctx, format!("{} {}", reply.code, reply.reason));
    Redirect::to("/ui/location").into_response()
}

// ---------------------------------------------------------------- accounting

const ACC_COLUMNS: &[&str] = &[
    "time",
    "sip_method",
    "sip_status",
    "sip_from",
    "sip_to",
    "username",
    "domain",
    "sip_callid",
];

const ACC_SEARCH: &[&str] = &["username", "sip_from", "sip_to", "sip_callid", "sip_status"];
const ACC: Listing = Listing {
    table: "acc",
    columns: ACC_COLUMNS,
    search: ACC_SEARCH,
    order_by: &["time"],
    descending: true,
};
const MISSED: Listing = Listing {
    table: "missed_calls",
    ..ACC
};

async fn calls(w: Arc<Web>, headers: HeaderMap, p: Params, table: &'static str) -> Response {
    let nav = if table == "acc" { "acc" } else { "missed" };
    let ctx = match w.session(&headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let q = p.get("q").cloned().unwrap_or_default();
    let page = page_no(&p);
    let url = w.settings().acc_db;
    let listing = if table == "acc" { &ACC } else { &MISSED };
    match page_of(&w, listing, url, &q, page).await {
        Ok((rows, more)) => w.page(
            "acc.html",
            &ctx,
            nav,
            context! {
                table => table, calls => named(ACC_COLUMNS, &rows), q => q, page => page,
                prev => page - 1, next => if more { page + 1 } else { 0 },
            },
        ),
        Err(e) => w.error_page(&ctx, nav, &e),
    }
}

async fn acc(State(w): State<Arc<Web>>, headers: HeaderMap, Query(p): Query<Params>) -> Response {
    calls(w, headers, p, "acc").await
}

async fn missed(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> Response {
    calls(w, headers, p, "missed_calls").await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn origin_must_be_this_host() {
        let mut h = HeaderMap::new();
        assert!(same_origin(&h));
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.test"));
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
    }

    #[test]
    fn ul_dump_data_to_rows() {
        let d = json!([{"table": "location", "records": [{"aor": "alice", "contacts": [
            {"contact": "sip:a@h", "expires": 30, "q": "1.00", "call_id": "c", "cseq": 2,
             "user_agent": "UA", "received": ""},
            {"contact": "sip:b@h", "expires": null, "q": "0.50", "call_id": "d", "cseq": 1,
             "user_agent": "", "received": ""}]}]}]);
        let b = bindings_of(&d);
        assert_eq!(b.len(), 2);
        assert_eq!(
            (b[0].aor.as_str(), b[0].expires.as_str()),
            ("alice", "30 s")
        );
        assert_eq!(b[1].expires, "permanent");
        assert!(bindings_of(&json!("junk")).is_empty());
    }

    #[test]
    fn subscriber_form_checks() {
        let mut f = SubscriberForm {
            username: "alice".into(),
            domain: "example.com".into(),
            ..SubscriberForm::default()
        };
        assert_eq!(f.problem(), None);
        f.username = "al ice".into();
        assert!(f.problem().is_some());
        f.username = "alice".into();
        f.domain = "exa<mple".into();
        assert!(f.problem().is_some());
        f.domain = "example.com".into();
        f.first_name = "x".repeat(26);
        assert!(f.problem().is_some());
        assert!(password_problem("", false).is_some());
        assert!(password_problem(&"p".repeat(26), true).is_some());
        assert!(password_problem(&"p".repeat(26), false).is_none());
    }
}
