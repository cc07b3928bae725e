//! The administrator's pages for SER's other tables: each lists (search, pages of
//! [`PAGE`] rows), adds and deletes, through the same storage layer serctl and the FIFO use, and
//! tells the running server the way they do, so the next request sees the change.
//!
//! | page | table | read, changed through | the running server learns it by |
//! |---|---|---|---|
//! | `/ui/aliases` | usrloc's `aliases` | `ul_dump`, `ul_add`, `ul_rm_contact` (as `serctl alias`) | the commands themselves (usrloc's memory) |
//! | `/ui/domains` | domain's `domain_table` | the database at domain's `db_url` | `domain_reload` |
//! | `/ui/groups` | group's `table` (`grp`) | the database at group's `db_url` (as `serctl acl`) | `auth_flush user domain` (as serctl) |
//! | `/ui/pdt` | pdt's `db_table` | `pdt_list`, `pdt_add`, `pdt_delete` (memory and database together) | the commands themselves |
//! | `/ui/messages` | msilo's `db_table` (`silo`) | the database at msilo's `db_url`: list, delete | nothing to tell: `m_dump` reads the table |
//!
//! No page edits a row: every column shown but a time stamp is part of the row's key (a
//! prefix's domain is changed by deleting the pair and adding the new one, as with `pdt_*`).
//!
//! SER's `trusted` table (permissions' `allow_trusted`) came after 0.8.11, whose permissions
//! module reads files only; there is no such table here, so no page either.
//!
//! Without the module loaded, the database pages still show and change the table (the change
//! counts from the module's next start); the command-backed pages show the refusal.
//! Group changes reach a running server with auth_db loaded at once; without it, group's
//! answers are cached for its `cache_ttl`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use minijinja::context;
use serde::Serialize;

use super::pages::{page_no, Ctx, Params, PAGE};
use super::selfcare::name_problem;
use super::Web;
use crate::db::sql::PageQuery;
use crate::db::DbError;
use crate::subscriber;

/// Where the module tables are: (`db_url`, table) of each module ("" = the default).
#[derive(Debug, Clone, Default)]
pub struct TableSettings {
    pub domain: (String, String),
    pub grp: (String, String),
    pub silo: (String, String),
}

/// The usrloc table aliases live in (registrar's `lookup("aliases")`).
const ALIASES: &str = "aliases";

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/ui/aliases", get(aliases))
        .route("/ui/aliases/add", post(alias_add))
        .route("/ui/aliases/delete", post(alias_delete))
        .route("/ui/domains", get(domains))
        .route("/ui/domains/add", post(domain_add))
        .route("/ui/domains/delete", post(domain_delete))
        .route("/ui/groups", get(groups))
        .route("/ui/groups/add", post(group_add))
        .route("/ui/groups/delete", post(group_delete))
        .route("/ui/pdt", get(pdt))
        .route("/ui/pdt/add", post(pdt_add))
        .route("/ui/pdt/delete", post(pdt_delete))
        .route("/ui/messages", get(messages))
        .route("/ui/messages/delete", post(message_delete))
}

// ---------------------------------------------------------------- the page

/// One field of a page's add form.
#[derive(Serialize)]
struct Field {
    name: &'static str,
    label: &'static str,
    hint: &'static str,
    value: String,
}

const fn field(name: &'static str, label: &'static str, hint: &'static str) -> Field {
    Field {
        name,
        label,
        hint,
        value: String::new(),
    }
}

/// One row shown: its cells, and the fields its delete form posts.
#[derive(Serialize)]
struct Row {
    cells: Vec<String>,
    keys: Vec<(&'static str, String)>,
}

/// What a table page shows.
struct Page {
    path: &'static str,
    nav: &'static str,
    title: &'static str,
    hint: &'static str,
    headers: &'static [&'static str],
    fields: Vec<Field>,
    note: String,
}

/// The request's search text and page number.
struct Want {
    q: String,
    page: u32,
}

fn want(p: &Params) -> Want {
    Want {
        q: p.get("q").map_or(String::new(), |q| q.trim().to_string()),
        page: page_no(p),
    }
}

impl Web {
    fn table_page(&self, ctx: &Ctx, pg: Page, w: &Want, rows: Vec<Row>, more: bool) -> Response {
        self.page(
            "table.html",
            ctx,
            pg.nav,
            context! {
                title => pg.title, path => pg.path, hint => pg.hint, headers => pg.headers,
                fields => pg.fields, note => pg.note, rows => rows, q => w.q, page => w.page,
                prev => w.page - 1, next => if more { w.page + 1 } else { 0 },
            },
        )
    }

    /// The action's message for the next page, then back to the list.
    fn back(&self, ctx: &Ctx, path: &str, msg: impl Into<String>) -> Response {
        self.flash(ctx, msg);
        Redirect::to(path).into_response()
    }

    /// Runs a management command as the FIFO would.
    async fn command(&self, name: &str, params: Vec<String>) -> dataplane::command::Reply {
        self.registry.call(name, params).await
    }
}

/// Rows of a command's answer searched for `q` (any cell contains it, case-insensitively) and cut
/// to the asked page: (rows, whether another page follows).
fn page_in_memory(mut rows: Vec<Row>, w: &Want) -> (Vec<Row>, bool) {
    if !w.q.is_empty() {
        let q = w.q.to_lowercase();
        rows.retain(|r| r.cells.iter().any(|c| c.to_lowercase().contains(&q)));
    }
    let skip = (w.page as usize - 1).saturating_mul(PAGE as usize);
    let more = rows.len() > skip.saturating_add(PAGE as usize);
    let rows = rows.into_iter().skip(skip).take(PAGE as usize).collect();
    (rows, more)
}

/// A table in the database: what is shown, searched and sorted.
struct DbTable {
    columns: &'static [&'static str],
    search: &'static [&'static str],
    order_by: &'static [&'static str],
    descending: bool,
}

/// One page of `table` in the database at `url`, searched for `q`: (rows, another page?).
async fn db_page(
    web: &Web,
    (url, table): (String, String),
    t: &'static DbTable,
    w: &Want,
) -> Result<(Vec<Vec<String>>, bool), String> {
    let (q, page) = (w.q.clone(), w.page);
    let mut rows = web
        .on_db(move |dbs| async move {
            let pq = PageQuery {
                columns: t.columns,
                keys: &[],
                search: if q.is_empty() { &[] } else { t.search },
                order_by: t.order_by,
                descending: t.descending,
                limit: PAGE + 1,
                offset: u64::from(page - 1) * u64::from(PAGE),
            };
            dbs.get(&url).await?.select_page(&table, &pq, &[], &q).await
        })
        .await?;
    let more = rows.len() > PAGE as usize;
    rows.truncate(PAGE as usize);
    Ok((
        rows.into_iter()
            .map(|r| r.into_iter().map(Option::unwrap_or_default).collect())
            .collect(),
        more,
    ))
}

/// A module's (db_url, table), the table's default name when the parameter is empty.
fn at(setting: &(String, String), default: &str) -> (String, String) {
    let table = if setting.1.is_empty() {
        default.to_string()
    } else {
        setting.1.clone()
    };
    (setting.0.clone(), table)
}

fn trimmed(f: &Params, k: &str) -> String {
    f.get(k).map_or(String::new(), |v| v.trim().to_string())
}

/// Whether `d` is unfit as a domain (a host name or address, as SIP URIs carry it).
fn domain_problem(d: &str) -> bool {
    d.is_empty()
        || d.len() > 128
        || !d
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

const DOMAIN_RULE: &str =
    "A domain is 1 to 128 letters, digits and - . : [ ] _ (a host name or an address).";
const NAME_RULE: &str =
    "A user name is 1 to 64 characters, without spaces, @ : ; < > \" or control characters.";

/// The action's session (and CSRF token), or the refusal to send.
macro_rules! action {
    ($w:expr, $headers:expr, $f:expr) => {
        match $w.action(&$headers, &$f) {
            Ok(c) => c,
            Err(r) => return r.into_response(),
        }
    };
}

macro_rules! session {
    ($w:expr, $headers:expr) => {
        match $w.session(&$headers) {
            Ok(c) => c,
            Err(r) => return r.into_response(),
        }
    };
}

// ---------------------------------------------------------------- aliases

fn alias_page(default_domain: String, use_domain: bool) -> Page {
    let mut fields = vec![
        field("alias", "Alias (user name)", "e.g. 4711"),
        field("uri", "Target URI", "sip:alice@example.com"),
    ];
    if use_domain {
        let mut d = field("domain", "Domain", "example.com");
        d.value = default_domain;
        fields.insert(1, d);
    }
    Page {
        path: "/ui/aliases",
        nav: "aliases",
        title: "Aliases",
        hint: "alias or target",
        headers: &["Alias", "Target", "Expires"],
        fields,
        note: "usrloc's aliases table (lookup(\"aliases\") rewrites a request for the alias to \
               its target), as serctl alias changes it."
            .into(),
    }
}

/// The bindings of usrloc's `aliases` table in `ul_dump`'s structured reply.
fn alias_rows(data: &serde_json::Value) -> Vec<Row> {
    let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    let mut out = Vec::new();
    for t in data.as_array().into_iter().flatten() {
        if t["table"].as_str() != Some(ALIASES) {
            continue;
        }
        for r in t["records"].as_array().into_iter().flatten() {
            for c in r["contacts"].as_array().into_iter().flatten() {
                let (aor, contact) = (s(r, "aor"), s(c, "contact"));
                out.push(Row {
                    cells: vec![
                        aor.clone(),
                        contact.clone(),
                        match c["expires"].as_i64() {
                            None => "permanent".into(),
                            Some(e) if e < 0 => "expired".into(),
                            Some(e) => format!("{e} s"),
                        },
                    ],
                    keys: vec![("aor", aor), ("contact", contact)],
                });
            }
        }
    }
    out.sort_by(|a, b| a.cells.cmp(&b.cells));
    out
}

async fn aliases(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> Response {
    let ctx = session!(w, headers);
    let want = want(&p);
    let st = w.settings();
    let reply = w.command("ul_dump", vec![]).await;
    if !(200..300).contains(&reply.code) {
        return w.error_page(
            &ctx,
            "aliases",
            &format!("ul_dump: {} {}", reply.code, reply.reason),
        );
    }
    let rows = reply.data.as_ref().map(alias_rows).unwrap_or_default();
    let (rows, more) = page_in_memory(rows, &want);
    w.table_page(
        &ctx,
        alias_page(st.default_domain, st.use_domain),
        &want,
        rows,
        more,
    )
}

/// Whether `uri` is a SIP URI fit to be an alias's target.
fn target_ok(uri: &str) -> bool {
    (uri.starts_with("sip:") || uri.starts_with("sips:"))
        && uri.len() <= 255
        && !uri
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "<>\"".contains(c))
        && dataplane::wire::uri::Uri::parse(uri.as_bytes()).is_ok()
}

async fn alias_add(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<Params>,
) -> Response {
    let ctx = action!(w, headers, f);
    let path = "/ui/aliases";
    let st = w.settings();
    let (alias, uri) = (trimmed(&f, "alias"), trimmed(&f, "uri"));
    let domain = trimmed(&f, "domain");
    if name_problem(&alias) {
        return w.back(&ctx, path, NAME_RULE);
    }
    if st.use_domain && domain_problem(&domain) {
        return w.back(&ctx, path, DOMAIN_RULE);
    }
    if !target_ok(&uri) {
        return w.back(
            &ctx,
            path,
            format!("{uri} is not a valid URI (sip:user@host)."),
        );
    }
    let aor = if st.use_domain {
        format!("{alias}@{domain}")
    } else {
        alias
    };
    // Permanent (expires 0), q 1: as serctl's `alias add`.
    let r = w
        .command(
            "ul_add",
            vec![
                ALIASES.into(),
                aor.clone(),
                uri.clone(),
                "0".into(),
                "1".into(),
            ],
        )
        .await;
    if (200..300).contains(&r.code) {
        w.back(&ctx, path, format!("Alias {aor} → {uri} added."))
    } else {
        w.back(
            &ctx,
            path,
            format!("Alias not added: {} {}", r.code, r.reason),
        )
    }
}

async fn alias_delete(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<Params>,
) -> Response {
    let ctx = action!(w, headers, f);
    let (aor, contact) = (trimmed(&f, "aor"), trimmed(&f, "contact"));
    let r = w
        .command(
            "ul_rm_contact",
            vec![ALIASES.into(), aor.clone(), contact.clone()],
        )
        .await;
    let msg = if (200..300).contains(&r.code) {
        format!("Alias {aor} → {contact} deleted.")
    } else {
        format!("Alias not deleted: {} {}", r.code, r.reason)
    };
    w.back(&ctx, "/ui/aliases", msg)
}

// ---------------------------------------------------------------- domains

const DOMAINS: DbTable = DbTable {
    columns: &["domain", "last_modified"],
    search: &["domain"],
    order_by: &["domain"],
    descending: false,
};

async fn domains(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> Response {
    let ctx = session!(w, headers);
    let want = want(&p);
    let loc = at(&w.settings().tables.domain, "domain");
    let note = format!(
        "The domains this server serves (module domain's table {}: is_from_local, \
         is_uri_host_local).",
        loc.1
    );
    match db_page(&w, loc, &DOMAINS, &want).await {
        Ok((rows, more)) => {
            let rows = rows
                .into_iter()
                .map(|r| Row {
                    keys: vec![("domain", r[0].clone())],
                    cells: r,
                })
                .collect();
            let pg = Page {
                path: "/ui/domains",
                nav: "domains",
                title: "Domains",
                hint: "domain",
                headers: &["Domain", "Last modified"],
                fields: vec![field("domain", "Domain", "example.com")],
                note,
            };
            w.table_page(&ctx, pg, &want, rows, more)
        }
        Err(e) => w.error_page(&ctx, "domains", &e),
    }
}

/// Tells the running domain module that its table changed (SER's `domain_reload`); without the
/// module loaded there is nothing to tell.
async fn domain_reload(w: &Web) {
    let _ = w.command("domain_reload", vec![]).await;
}

async fn domain_add(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<Params>,
) -> Response {
    let ctx = action!(w, headers, f);
    let path = "/ui/domains";
    let domain = trimmed(&f, "domain");
    if domain_problem(&domain) {
        return w.back(&ctx, path, DOMAIN_RULE);
    }
    let (url, table) = at(&w.settings().tables.domain, "domain");
    let d = domain.clone();
    let res = w
        .on_db(move |dbs| async move {
            let db = dbs.get(&url).await?;
            let keys = vec![("domain".to_string(), d)];
            if !db
                .select(&table, &keys, &["domain".to_string()])
                .await?
                .is_empty()
            {
                return Ok(false);
            }
            let row = vec![("last_modified".to_string(), Some(subscriber::now()))];
            db.upsert(&table, &keys, &row).await?;
            Ok::<_, DbError>(true)
        })
        .await;
    match res {
        Ok(true) => {
            domain_reload(&w).await;
            w.back(&ctx, path, format!("Domain {domain} added."))
        }
        Ok(false) => w.back(&ctx, path, format!("Domain {domain} is there already.")),
        Err(e) => w.error_page(&ctx, "domains", &e),
    }
}

async fn domain_delete(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<Params>,
) -> Response {
    let ctx = action!(w, headers, f);
    let domain = trimmed(&f, "domain");
    if domain.is_empty() {
        return w.back(&ctx, "/ui/domains", "Nothing deleted: no domain given.");
    }
    let (url, table) = at(&w.settings().tables.domain, "domain");
    let keys = vec![("domain".to_string(), domain.clone())];
    let res = w
        .on_db(move |dbs| async move { dbs.get(&url).await?.delete(&table, &keys).await })
        .await;
    match res {
        Ok(n) => {
            domain_reload(&w).await;
            let msg = if n > 0 {
                format!("Domain {domain} deleted.")
            } else {
                format!("No domain {domain}.")
            };
            w.back(&ctx, "/ui/domains", msg)
        }
        Err(e) => w.error_page(&ctx, "domains", &e),
    }
}

// ---------------------------------------------------------------- groups

const GROUPS: DbTable = DbTable {
    columns: &["username", "domain", "grp", "last_modified"],
    search: &["username", "domain", "grp"],
    order_by: &["username", "domain", "grp"],
    descending: false,
};

async fn groups(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> Response {
    let ctx = session!(w, headers);
    let want = want(&p);
    let st = w.settings();
    let loc = at(&st.tables.grp, "grp");
    let note = format!(
        "Group memberships (module group's table {}: is_user_in), as serctl acl grants them; \
         the user must be a subscriber.",
        loc.1
    );
    match db_page(&w, loc, &GROUPS, &want).await {
        Ok((rows, more)) => {
            let rows = rows
                .into_iter()
                .map(|r| Row {
                    keys: vec![
                        ("username", r[0].clone()),
                        ("domain", r[1].clone()),
                        ("grp", r[2].clone()),
                    ],
                    cells: r,
                })
                .collect();
            let mut domain = field("domain", "Domain", "example.com");
            domain.value = st.default_domain;
            let pg = Page {
                path: "/ui/groups",
                nav: "groups",
                title: "Groups",
                hint: "user, domain or group",
                headers: &["User", "Domain", "Group", "Last modified"],
                fields: vec![
                    field("username", "User", "alice"),
                    domain,
                    field("grp", "Group", "e.g. ld, int, voicemail"),
                ],
                note,
            };
            w.table_page(&ctx, pg, &want, rows, more)
        }
        Err(e) => w.error_page(&ctx, "groups", &e),
    }
}

/// Whether `g` is unfit as a group name (the column is 50 wide; names are words).
fn group_problem(g: &str) -> bool {
    g.is_empty()
        || g.len() > 50
        || !g
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

async fn group_add(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<Params>,
) -> Response {
    let ctx = action!(w, headers, f);
    let path = "/ui/groups";
    let (user, domain, grp) = (
        trimmed(&f, "username"),
        trimmed(&f, "domain"),
        trimmed(&f, "grp"),
    );
    if name_problem(&user) {
        return w.back(&ctx, path, NAME_RULE);
    }
    if domain_problem(&domain) {
        return w.back(&ctx, path, DOMAIN_RULE);
    }
    if group_problem(&grp) {
        return w.back(&ctx, path, "A group is 1 to 50 letters, digits and - _ .");
    }
    let st = w.settings();
    let (url, table) = at(&st.tables.grp, "grp");
    let sub_url = st.subscriber_db;
    let (u, d, g) = (user.clone(), domain.clone(), grp.clone());
    // As serctl's `acl grant`: only for an existing subscriber.
    let res = w
        .on_db(move |dbs| async move {
            let who = vec![("username".to_string(), u), ("domain".to_string(), d)];
            let sub = dbs
                .select(&sub_url, "subscriber", &who, &["username".to_string()])
                .await?;
            if sub.is_empty() {
                return Ok(false);
            }
            let mut keys = who;
            keys.push(("grp".to_string(), g));
            let row = vec![("last_modified".to_string(), Some(subscriber::now()))];
            dbs.get(&url).await?.upsert(&table, &keys, &row).await?;
            Ok::<_, DbError>(true)
        })
        .await;
    match res {
        Ok(true) => {
            w.auth_flush(&user, &domain).await;
            w.back(
                &ctx,
                path,
                format!("{user}@{domain} is in group {grp} now."),
            )
        }
        Ok(false) => w.back(&ctx, path, format!("No subscriber {user}@{domain}.")),
        Err(e) => w.error_page(&ctx, "groups", &e),
    }
}

async fn group_delete(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<Params>,
) -> Response {
    let ctx = action!(w, headers, f);
    let (user, domain, grp) = (
        trimmed(&f, "username"),
        trimmed(&f, "domain"),
        trimmed(&f, "grp"),
    );
    if user.is_empty() || grp.is_empty() {
        return w.back(
            &ctx,
            "/ui/groups",
            "Nothing deleted: no user or group given.",
        );
    }
    let (url, table) = at(&w.settings().tables.grp, "grp");
    let keys = vec![
        ("username".to_string(), user.clone()),
        ("domain".to_string(), domain.clone()),
        ("grp".to_string(), grp.clone()),
    ];
    let res = w
        .on_db(move |dbs| async move { dbs.get(&url).await?.delete(&table, &keys).await })
        .await;
    match res {
        Ok(n) => {
            w.auth_flush(&user, &domain).await;
            let msg = if n > 0 {
                format!("{user}@{domain} is no longer in group {grp}.")
            } else {
                format!("{user}@{domain} was not in group {grp}.")
            };
            w.back(&ctx, "/ui/groups", msg)
        }
        Err(e) => w.error_page(&ctx, "groups", &e),
    }
}

// ---------------------------------------------------------------- pdt

async fn pdt(State(w): State<Arc<Web>>, headers: HeaderMap, Query(p): Query<Params>) -> Response {
    let ctx = session!(w, headers);
    let want = want(&p);
    let reply = w.command("pdt_list", vec![]).await;
    if !(200..300).contains(&reply.code) {
        return w.error_page(
            &ctx,
            "pdt",
            &format!("pdt_list: {} {}", reply.code, reply.reason),
        );
    }
    let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    let rows: Vec<Row> = reply
        .data
        .as_ref()
        .and_then(|d| d.as_array())
        .into_iter()
        .flatten()
        .map(|pair| Row {
            cells: vec![s(pair, "prefix"), s(pair, "domain")],
            keys: vec![("domain", s(pair, "domain"))],
        })
        .collect();
    let (rows, more) = page_in_memory(rows, &want);
    let pg = Page {
        path: "/ui/pdt",
        nav: "pdt",
        title: "Prefixes",
        hint: "prefix or domain",
        headers: &["Prefix", "Domain"],
        fields: vec![
            field("prefix", "Prefix", "e.g. 0049"),
            field("domain", "Domain", "gw.example.com"),
        ],
        note: "Module pdt's prefix → domain pairs (prefix2domain), changed in the running server \
               and its database together (pdt_add, pdt_delete)."
            .into(),
    };
    w.table_page(&ctx, pg, &want, rows, more)
}

async fn pdt_add(State(w): State<Arc<Web>>, headers: HeaderMap, Form(f): Form<Params>) -> Response {
    let ctx = action!(w, headers, f);
    let (prefix, domain) = (trimmed(&f, "prefix"), trimmed(&f, "domain"));
    if domain_problem(&domain) {
        return w.back(&ctx, "/ui/pdt", DOMAIN_RULE);
    }
    // The module checks the prefix against its char_list.
    let r = w
        .command("pdt_add", vec![prefix.clone(), domain.clone()])
        .await;
    let msg = if (200..300).contains(&r.code) {
        format!("Prefix {prefix} → {domain} added.")
    } else {
        format!("Not added: {} {}", r.code, r.reason)
    };
    w.back(&ctx, "/ui/pdt", msg)
}

async fn pdt_delete(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<Params>,
) -> Response {
    let ctx = action!(w, headers, f);
    let domain = trimmed(&f, "domain");
    let r = w.command("pdt_delete", vec![domain.clone()]).await;
    let msg = if (200..300).contains(&r.code) {
        format!("Domain {domain} and its prefix deleted.")
    } else {
        format!("Not deleted: {} {}", r.code, r.reason)
    };
    w.back(&ctx, "/ui/pdt", msg)
}

// ---------------------------------------------------------------- stored messages

const SILO_COLUMNS: &[&str] = &[
    "mid", "inc_time", "src_addr", "dst_addr", "username", "domain", "ctype", "body",
];
const SILO: DbTable = DbTable {
    columns: SILO_COLUMNS,
    search: &["src_addr", "dst_addr", "username", "body"],
    order_by: &["inc_time", "mid"],
    descending: true,
};

async fn messages(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> Response {
    let ctx = session!(w, headers);
    let want = want(&p);
    let loc = at(&w.settings().tables.silo, "silo");
    let note = format!(
        "Messages msilo keeps for users who were offline (table {}), the newest first; each is \
         delivered when its user registers. A deleted message is not delivered.",
        loc.1
    );
    match db_page(&w, loc, &SILO, &want).await {
        Ok((rows, more)) => {
            let rows = rows
                .into_iter()
                .map(|r| {
                    // SILO_COLUMNS' order.
                    let g = |i: usize| r.get(i).cloned().unwrap_or_default();
                    let stored = g(1)
                        .parse::<u64>()
                        .map_or_else(|_| g(1), subscriber::datetime);
                    Row {
                        cells: vec![
                            g(0),
                            stored,
                            g(2),
                            g(3),
                            format!("{}@{}", g(4), g(5)),
                            g(6),
                            g(7),
                        ],
                        keys: vec![("mid", g(0))],
                    }
                })
                .collect();
            let pg = Page {
                path: "/ui/messages",
                nav: "messages",
                title: "Stored messages",
                hint: "From, To, user or text",
                headers: &["ID", "Stored", "From", "To", "For", "Type", "Text"],
                fields: vec![],
                note,
            };
            w.table_page(&ctx, pg, &want, rows, more)
        }
        Err(e) => w.error_page(&ctx, "messages", &e),
    }
}

async fn message_delete(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<Params>,
) -> Response {
    let ctx = action!(w, headers, f);
    let mid = trimmed(&f, "mid");
    if mid.is_empty() || !mid.bytes().all(|b| b.is_ascii_digit()) {
        return w.back(&ctx, "/ui/messages", "Nothing deleted: no message given.");
    }
    let (url, table) = at(&w.settings().tables.silo, "silo");
    let keys = vec![("mid".to_string(), mid.clone())];
    let res = w
        .on_db(move |dbs| async move { dbs.get(&url).await?.delete(&table, &keys).await })
        .await;
    match res {
        Ok(n) => {
            let msg = if n > 0 {
                format!("Message {mid} deleted.")
            } else {
                format!("No message {mid}.")
            };
            w.back(&ctx, "/ui/messages", msg)
        }
        Err(e) => w.error_page(&ctx, "messages", &e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(s: &str) -> Row {
        Row {
            cells: vec![s.into()],
            keys: vec![],
        }
    }

    #[test]
    fn pages_in_memory() {
        let rows: Vec<Row> = (0..60).map(|i| row(&format!("r{i:02}"))).collect();
        let w = |q: &str, page| Want { q: q.into(), page };
        let (p1, more) = page_in_memory(rows, &w("", 1));
        assert_eq!((p1.len(), more), (PAGE as usize, true));
        let rows: Vec<Row> = (0..60).map(|i| row(&format!("r{i:02}"))).collect();
        let (p3, more) = page_in_memory(rows, &w("", 3));
        assert_eq!((p3.len(), more), (10, false));
        assert_eq!(p3[0].cells[0], "r50");
        let rows: Vec<Row> = (0..60).map(|i| row(&format!("R{i:02}"))).collect();
        let (hit, _) = page_in_memory(rows, &w("r4", 1));
        assert_eq!(hit.len(), 10);
        let (none, more) = page_in_memory(vec![row("a")], &w("", 9));
        assert!(none.is_empty() && !more);
    }

    #[test]
    fn alias_rows_only_from_the_aliases_table() {
        let d = json!([
            {"table": "location", "records": [{"aor": "bob", "contacts": [
                {"contact": "sip:bob@h", "expires": 30}]}]},
            {"table": "aliases", "records": [{"aor": "4711", "contacts": [
                {"contact": "sip:alice@example.com", "expires": null}]}]}]);
        let r = alias_rows(&d);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].cells, ["4711", "sip:alice@example.com", "permanent"]);
        assert_eq!(r[0].keys[1], ("contact", "sip:alice@example.com".into()));
        assert!(alias_rows(&json!({"x": 1})).is_empty());
    }

    #[test]
    fn input_checks() {
        assert!(!domain_problem("example.com"));
        assert!(!domain_problem("[2001:db8::1]"));
        assert!(domain_problem(""));
        assert!(domain_problem("exa mple.com"));
        assert!(domain_problem("<script>"));
        assert!(domain_problem(&"a".repeat(129)));
        assert!(!group_problem("voicemail"));
        assert!(group_problem("v m"));
        assert!(group_problem(""));
        assert!(target_ok("sip:alice@example.com"));
        assert!(!target_ok("http://example.com"));
        assert!(!target_ok("sip:a b@example.com"));
        assert!(!target_ok("sip:<script>@x"));
    }

    #[test]
    fn the_table_page_escapes() {
        let (env, _) = super::super::templates(None).unwrap();
        let evil = "<script>alert(1)</script>";
        let html = env
            .get_template("table.html")
            .unwrap()
            .render(context! {
                user => "admin", csrf => "tok", title => "T", path => "/ui/domains",
                headers => vec!["Domain"], note => evil, q => evil, page => 1, prev => 0,
                next => 0, fields => vec![field("domain", "Domain", "")],
                rows => vec![Row { cells: vec![evil.into()], keys: vec![("domain", evil.into())] }],
            })
            .unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(html.contains(r#"name="csrf" value="tok""#), "{html}");
    }
}
