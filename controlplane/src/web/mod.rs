//! The web UI (SER's serweb, administrator side): server-rendered pages on the HTTP management
//! listener, under `/ui/`.
//!
//! | page | what |
//! |---|---|
//! | `/ui/login` | log in (an administrator of the admins file) |
//! | `/ui/subscribers` | list, search, page; create, edit (password: HA1/HA1b computed here), delete |
//! | `/ui/location` | the running usrloc's bindings (usrloc's `ul_dump`; every db_mode), remove one |
//! | `/ui/acc`, `/ui/missed` | the `acc` and `missed_calls` tables, newest first, searchable |
//! | `/ui/self/…` | the subscribers' own pages, with `--web-selfcare` ([`selfcare`]) |
//! | `/ui/self/signup` | sign-up with e-mail confirmation, with `--web-signup-mail` ([`signup`]) |
//! | `/ui/rpc` | RPC console: the running program's commands (`which`, with help and module), run one |
//! | `/ui/stats` | traffic of the last hour as charts, sampled every `--web-stats-interval` ([`stats`]) |
//! | `/ui/config` | the running script: check, save and reload ([`config`]) |
//! | `/ui/permissions` | the permissions module's allow/deny files: check, save and reload ([`permissions`]) |
//! | `/ui/aliases`, `/ui/domains`, `/ui/groups`, `/ui/pdt`, `/ui/messages` | SER's tables ([`tables`]) |
//!
//! Enabled by `--web-admins=FILE` (with `--http`; off otherwise); `--web-templates=DIR` replaces
//! any embedded template (or `style.css`) by the file of the same name there, read at start.
//!
//! Security: every page and action but the login needs a session ([`auth`]); every POST carries
//! the session's CSRF token (the login form a pre-session one, double-submitted in a cookie) and a
//! foreign `Origin` is refused; templates escape every value (minijinja's HTML auto-escaping,
//! templates named `*.html`), and the Content-Security-Policy allows no script at all, so a
//! `<script>` that came in a User-Agent or a display name is shown as text and could not run.
//!
//! The listener is plain HTTP (so the cookie has no `Secure` flag): off loopback, put a TLS
//! reverse proxy in front (and `--http-token` is required there anyway for `/rpc`).
//!
//! Storage: subscriber writes go to auth_db's database (its `db_url`, else the server's default)
//! through [`crate::db`], with [`crate::subscriber`]'s columns (the plain password only with
//! auth_db's `calculate_ha1`), and then `auth_flush` tells the running server, so the next
//! REGISTER sees the change. Location changes go through usrloc's own commands.

pub mod auth;
pub mod config;
mod pages;
pub mod permissions;
mod rpc;
pub mod selfcare;
pub mod signup;
pub mod stats;
pub mod tables;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use dataplane::ser_log;
use dataplane::shard::log::L_ERR;

use crate::db::{Databases, DbError};
use crate::mgmt::Registry;

pub use auth::{hash_password, Admins};

/// How the web UI is configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebConfig {
    /// `--web-admins=FILE`; `None` (self-care alone): nobody can log in to the admin pages.
    pub admins: Option<PathBuf>,
    pub templates: Option<PathBuf>,
    /// `--web-selfcare`: the subscribers' pages ([`selfcare`]).
    pub selfcare: bool,
    /// `--web-signup-mail`: sign-up with e-mail confirmation ([`signup`]).
    pub signup: Option<signup::SignupConfig>,
    /// `--web-stats-interval=SECS`: how often the statistics page's counters are read (`None`:
    /// [`stats::DEFAULT_INTERVAL`]).
    pub stats_interval: Option<std::time::Duration>,
}

/// What the running program says about where subscribers and calls are (asked per request: a
/// reload may change it).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// auth_db's `db_url` ("" = the server's default).
    pub subscriber_db: String,
    /// auth_db's `calculate_ha1`: the plain password column is read, so it is written.
    pub store_plain: bool,
    /// acc's `db_url`.
    pub acc_db: String,
    /// usrloc's `use_domain`: AORs are `user@domain`.
    pub use_domain: bool,
    /// The domain a new subscriber gets unless another is typed (`SIP_DOMAIN`, as for serctl).
    pub default_domain: String,
    /// Where the module tables of [`tables`] are: the modules' `db_url` and table parameters.
    pub tables: tables::TableSettings,
    /// The permissions module's rule files the running program reads ([`permissions`]).
    pub permission_files: Vec<PathBuf>,
}

pub type SettingsFn = Arc<dyn Fn() -> Settings + Send + Sync>;

/// The templates compiled into the binary (name, source).
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("message.html", include_str!("templates/message.html")),
    (
        "subscribers.html",
        include_str!("templates/subscribers.html"),
    ),
    ("subscriber.html", include_str!("templates/subscriber.html")),
    ("location.html", include_str!("templates/location.html")),
    ("acc.html", include_str!("templates/acc.html")),
    ("rpc.html", include_str!("templates/rpc.html")),
    ("table.html", include_str!("templates/table.html")),
];

const STYLE: &str = include_str!("templates/style.css");

/// The web UI's state.
pub struct Web {
    registry: Arc<Registry>,
    db: Option<(tokio::runtime::Handle, Databases)>,
    settings: SettingsFn,
    env: minijinja::Environment<'static>,
    style: String,
    admins: Arc<Admins>,
    sessions: Mutex<auth::Sessions>,
    throttle: Mutex<auth::Throttle>,
    selfcare: Option<selfcare::SelfCare>,
    signup: Option<signup::SignupConfig>,
    /// The statistics page's samples ([`Web::with_stats`]).
    stats: Option<Arc<stats::History>>,
    /// The running script ([`Web::with_script`]).
    script: Option<config::ScriptFile>,
}

/// The templates: the embedded ones, each replaced by `dir/<name>` when that file exists.
fn templates(dir: Option<&Path>) -> Result<(minijinja::Environment<'static>, String), String> {
    let read = |name: &str| -> Result<Option<String>, String> {
        let Some(d) = dir else { return Ok(None) };
        let p = d.join(name);
        match std::fs::read_to_string(&p) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read template {}: {e}", p.display())),
        }
    };
    let mut env = minijinja::Environment::new();
    for (name, src) in TEMPLATES
        .iter()
        .chain(selfcare::TEMPLATES)
        .chain(signup::TEMPLATES)
        .chain(stats::TEMPLATES)
        .chain(config::TEMPLATES)
        .chain(permissions::TEMPLATES)
    {
        let text = read(name)?.unwrap_or_else(|| src.to_string());
        env.add_template_owned(name.to_string(), text)
            .map_err(|e| format!("template {name}: {e:#}"))?;
    }
    let style = read("style.css")?.unwrap_or_else(|| STYLE.to_string());
    Ok((env, style))
}

impl Web {
    /// Loads the admins file and the templates (errors stop `ser` from starting).
    pub fn new(
        cfg: &WebConfig,
        registry: Arc<Registry>,
        db: Option<(tokio::runtime::Handle, Databases)>,
        settings: SettingsFn,
    ) -> Result<Web, String> {
        let admins = match &cfg.admins {
            Some(path) => Admins::load(path)?,
            None => Admins::none(),
        };
        let (env, style) = templates(cfg.templates.as_deref())?;
        Ok(Web {
            registry,
            db,
            settings,
            env,
            style,
            admins: Arc::new(admins),
            sessions: Mutex::new(auth::Sessions::default()),
            throttle: Mutex::new(auth::Throttle::default()),
            selfcare: cfg.selfcare.then(selfcare::SelfCare::default),
            signup: cfg.signup.clone().filter(|_| cfg.selfcare),
            stats: None,
            script: None,
        })
    }

    /// The samples the statistics page draws (a [`stats::Sampler`]'s).
    pub fn with_stats(mut self, history: Arc<stats::History>) -> Web {
        self.stats = Some(history);
        self
    }

    /// The script file the server runs (the configuration page edits it and reloads).
    pub fn with_script(mut self, path: PathBuf) -> Web {
        self.script = Some(config::ScriptFile::new(path));
        self
    }

    fn settings(&self) -> Settings {
        (self.settings)()
    }

    /// Runs database work on the database runtime.
    async fn on_db<T, F, Fut>(&self, f: F) -> Result<T, String>
    where
        F: FnOnce(Databases) -> Fut,
        Fut: Future<Output = Result<T, DbError>> + Send + 'static,
        T: Send + 'static,
    {
        let Some((h, dbs)) = self.db.clone() else {
            return Err("no database in this server".into());
        };
        match h.spawn(f(dbs)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("database task failed: {e}")),
        }
    }

    /// Renders template `name`; a template error is logged and answered 500.
    fn render(&self, name: &str, ctx: minijinja::Value) -> Response {
        match self.env.get_template(name).and_then(|t| t.render(ctx)) {
            Ok(html) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                )],
                html,
            )
                .into_response(),
            Err(e) => {
                ser_log!(L_ERR, "web: template {name}: {e:#}");
                (StatusCode::INTERNAL_SERVER_ERROR, "template error\n").into_response()
            }
        }
    }
}

/// Headers on every web UI response: no script may run (none is used), no framing, no caching of
/// pages that show subscribers' data, no sniffing.
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Not `no-referrer`: with it a browser sends `Origin: null` on the pages' own form posts.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The web UI's routes (under `/ui`).
pub fn router(web: Arc<Web>) -> Router {
    let mut r = pages::routes()
        .merge(stats::routes())
        .merge(config::routes())
        .merge(permissions::routes())
        .merge(tables::routes());
    if web.selfcare.is_some() {
        r = r.merge(selfcare::routes());
    }
    if web.signup.is_some() {
        r = r.merge(signup::routes());
    }
    r.layer(axum::middleware::map_response(security_headers))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(web)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use minijinja::context;

    #[test]
    fn every_template_renders_and_escapes() {
        let (env, style) = templates(None).unwrap();
        assert!(style.contains("body"));
        let evil = "<script>alert(1)</script>";
        let ctx = context! {
            user => "admin", csrf => "tok", flash => evil, title => "t", nav => "subscribers",
            q => evil, page => 1, prev => 0, next => 2, table => "acc",
            rows => vec![context!{ username => evil, domain => "d", first_name => evil,
                last_name => "", email_address => "", datetime_created => "" }],
            sub => context!{ username => evil, domain => "d", first_name => "", last_name => "",
                email_address => "", phone => "" },
            new => false, domain => "d", error => evil, message => evil,
            bindings => vec![context!{ table => "location", aor => evil, contact => evil,
                expires => "3600", q => "1.00", call_id => evil, cseq => 1,
                user_agent => evil, received => "" }],
            calls => vec![context!{ time => "", sip_method => "INVITE", sip_status => "200",
                sip_from => evil, sip_to => evil, username => evil, domain => "",
                sip_callid => evil }],
        };
        for (name, _) in TEMPLATES {
            let html = env.get_template(name).unwrap().render(&ctx).unwrap();
            assert!(!html.contains("<script>"), "{name} let a script through");
        }
        let html = env
            .get_template("location.html")
            .unwrap()
            .render(&ctx)
            .unwrap();
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }

    #[test]
    fn a_template_directory_overrides() {
        let dir = std::env::temp_dir().join(format!("ser-web-tpl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("message.html"), "custom {{ message }}").unwrap();
        let (env, _) = templates(Some(&dir)).unwrap();
        let out = env
            .get_template("message.html")
            .unwrap()
            .render(context! { message => "<b>" })
            .unwrap();
        assert_eq!(out, "custom &lt;b&gt;");
        std::fs::write(dir.join("login.html"), "{% if %}").unwrap();
        assert!(templates(Some(&dir)).unwrap_err().contains("login.html"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
