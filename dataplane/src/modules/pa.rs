//! Script module `pa`: presence agent — SUBSCRIBE/NOTIFY (RFC 6665) for the presence event
//! package (RFC 3856) with PIDF bodies (RFC 3863). Needs `tm` loaded as well (NOTIFYs go out
//! statefully), and usrloc for `handle_subscription("registrar")`.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `handle_subscription` | Str | request | handle a SUBSCRIBE: domain (e.g. "jabber", "registrar") |
//! | `handle_publish` | Str | request | handle a PUBLISH of the presentity's own state: domain ("registrar") |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `default_expires` | int | `3600` (a SUBSCRIBE without Expires) |
//! | `timer_interval` | int | `10` (seconds between checks of presentities and expiries) |
//! | `max_expires` | int | `0` (ser's addition: longest subscription granted; 0 = no cap) |
//! | `max_watchers` | int | `0` (ser's addition: watchers per presentity; 0 = no limit) |
//! | `use_db` | int | `0` (1: subscriptions are kept in the database and survive a restart) |
//! | `db_url` | string | `""` (the server's default database) |
//! | `watcher_table` | string | `"pa_watchers"` (ser's table: one row per subscription dialog) |
//! | `publication_table` | string | `"pa_publications"` (ser's table: one row per PUBLISHed state) |
//!
//! `handle_subscription("registrar")` answers a SUBSCRIBE itself (statelessly; call it instead
//! of relaying). The presentity is the request URI's user (with usrloc's `use_domain`, user and
//! host), its state follows its registrations: `open` while it has a binding in the `location`
//! table, else `closed`.
//! - An Event other than `presence` → 489 Bad Event with `Allow-Events: presence`; no Contact →
//!   400; a refresh (To tag) of no known subscription → 481; too many watchers → 503.
//! - A new subscription → 202 with Expires (the request's, else `default_expires`, capped by
//!   `max_expires`) and a Contact; a refresh → 200. Either is followed by a NOTIFY with the
//!   current state (`Subscription-State: active;expires=N`). Expires 0 ends the subscription: a
//!   NOTIFY with `Subscription-State: terminated` (a fetch when the subscription was new).
//! - Every `timer_interval` seconds, one shard checks every subscription: when the presentity's
//!   state changed since the last NOTIFY (a REGISTER added the first binding, the last one was
//!   removed or expired), the watcher gets a NOTIFY with the new state; an expired subscription
//!   gets `terminated;reason=timeout` and is forgotten. A NOTIFY answered with 481 or not at all
//!   (408) ends the subscription (RFC 6665 §4.2.2).
//!
//! `handle_publish("registrar")` (SER 0.9's name; 0.8.11 had no PUBLISH) is an event state
//! compositor for presence (RFC 3903): a PUBLISH with an `application/pidf+xml` body (another
//! type → 415 with Accept; a body that is not XML, or not PIDF → 400 saying why) is kept for its
//! Expires and answered 200 with a `SIP-ETag`; `SIP-If-Match` refreshes, modifies or (Expires 0)
//! removes it, an unknown or expired entity tag → 412. While a publication lasts, watchers get
//! the latest published document instead of the registrar's view, at once on every change.
//!
//! `handle_subscription("jabber")` (module jabber loaded): the request URI names a Jabber user
//! (`user<delim>server@jdomain`), the watcher is the From user, who needs a Jabber account
//! (`jusers`; none → 403, the gateway down → 503). The watcher's gateway connection subscribes
//! to the Jabber user's presence; watchers get `open` while the Jabber user is available, and a
//! NOTIFY at each XMPP presence change. A URI that is no Jabber user → 404.
//!
//! With `use_db = 1` every subscription is also a row of `watcher_table` (SER's pa kept only its
//! `watcherinfo`; this table holds the whole notifier dialog: `s_key`, `presentity`, `w_uri`,
//! `w_tag`, `s_tag`, `callid`, `contact`, `next_hop`, `local_contact`, `cseq`, `expires`),
//! written through the server's queue of database writes on each change (new, refresh, every
//! NOTIFY's CSeq, end). At start-up the unexpired rows are loaded back; the first check sends
//! each watcher a NOTIFY with the current state in the same dialog.
//!
//! Publications too: with `use_db = 1` each is a row of `publication_table` (`etag`, `s_key`,
//! `expires`, `doc`: the PIDF as published), written on every PUBLISH that creates, refreshes
//! (the row moves to the new entity tag) or removes one; the unexpired rows are loaded back at
//! start-up (so the entity tag a UA holds still works, and watchers get the published document
//! after a restart), the expired ones deleted then.
//!
//! Not done: composing several publications of one presentity (the latest wins), Record-Route
//! in the subscription dialog (NOTIFYs go straight to the watcher's Contact).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::offload::JobResult;
use crate::proxy::shared::Shared;
use crate::script::env::{ActionResult, Env};
use crate::script::ir::{Arg, Program, Proto};
use crate::script::{
    ArgKind::*, Ctx, FunctionDecl, ModuleConfig, ModuleDecl, ParamDecl, Renamed, RouteKinds,
};
use crate::ser_log;
use crate::shard::log::{L_DBG, L_ERR, L_NOTICE};
use crate::txn::table::{UacRequest, UacResult};
use crate::usrloc::time::now_unix;
use crate::wire::uri::Uri;
use crate::wire::{Message, Method};

/// Declaration of module `pa`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "pa",
    aliases: &[],
    depends: &["tm"],
    functions: &[
        FunctionDecl::new(
            "handle_subscription",
            &[Str],
            RouteKinds::REQUEST,
            "handle a SUBSCRIBE: domain (e.g. \"jabber\", \"registrar\")",
        )
        .implemented_by(handle_subscription),
        FunctionDecl::new(
            "handle_publish",
            &[Str],
            RouteKinds::REQUEST,
            "handle a PUBLISH (RFC 3903) of the presentity's own state: domain (\"registrar\")",
        )
        .implemented_by(handle_publish),
    ],
    params: &[
        ParamDecl::int("default_expires", 3600),
        ParamDecl::int("timer_interval", 10),
        ParamDecl::int("max_expires", 0),
        ParamDecl::int("max_watchers", 0),
        ParamDecl::int("use_db", 0),
        ParamDecl::str("db_url", ""),
        ParamDecl::str("watcher_table", "pa_watchers"),
        ParamDecl::str("publication_table", "pa_publications"),
    ],
    renamed_functions: &[Renamed {
        old: "handle_subscribe",
        new: Some("handle_subscription"),
        note: "the 0.8.11 pa module exports handle_subscription",
    }],
    renamed_params: &[],
    doc: "presence agent",
    config: Some(resolve_config),
    commands: &[],
};

/// The usrloc table whose bindings make a presentity `open`.
const TABLE: &str = "location";

/// Most subscriptions kept at once (beyond: 503), so a flood of SUBSCRIBEs cannot grow memory
/// without bound.
const MAX_SUBSCRIPTIONS: usize = 100_000;

/// Most publications kept per presentity, and for every presentity together (beyond: 503).
const MAX_PUBLICATIONS: usize = 16;
const MAX_PUBLISHED: usize = 100_000;

/// pa's settings, resolved once per loaded program.
#[derive(Debug, Clone)]
pub struct PaConfig {
    default_expires: u64,
    timer_interval: u64,
    max_expires: u64,
    max_watchers: usize,
    use_domain: bool,
    case_sensitive: bool,
    /// With `use_db`: the database URL and table the subscriptions are kept in.
    db: Option<(String, String)>,
    /// With `use_db`: the table of the publications (same database).
    publication_table: String,
}

impl PaConfig {
    fn resolve(program: Option<&Program>) -> PaConfig {
        let int = |m: &'static ModuleDecl, n: &str, d: i64| {
            super::param(program, m, n)
                .and_then(|p| p.int())
                .unwrap_or(d)
        };
        let u = |n: &str, d: i64| u64::try_from(int(&MODULE, n, d)).unwrap_or(0);
        PaConfig {
            default_expires: u("default_expires", 3600),
            timer_interval: u("timer_interval", 10).max(1),
            max_expires: u("max_expires", 0),
            max_watchers: usize::try_from(int(&MODULE, "max_watchers", 0)).unwrap_or(0),
            use_domain: int(&super::usrloc::MODULE, "use_domain", 0) != 0
                || int(&super::registrar::MODULE, "use_domain", 0) != 0,
            case_sensitive: int(&super::registrar::MODULE, "case_sensitive", 0) != 0,
            db: (int(&MODULE, "use_db", 0) != 0).then(|| {
                let s = |n: &str, d: &str| {
                    super::param(program, &MODULE, n)
                        .and_then(|p| p.str())
                        .map(|v| v.trim().to_string())
                        .filter(|v| !v.is_empty())
                        .unwrap_or_else(|| d.to_string())
                };
                let url = s("db_url", "");
                let url = if url.contains("://") {
                    url
                } else {
                    String::new()
                };
                (url, s("watcher_table", "pa_watchers"))
            }),
            publication_table: super::param(program, &MODULE, "publication_table")
                .and_then(|p| p.str())
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "pa_publications".into()),
        }
    }

    /// With `use_db`: (database URL, table) of the subscriptions.
    pub fn db(&self) -> Option<&(String, String)> {
        self.db.as_ref()
    }

    /// With `use_db`: (database URL, table) of the publications.
    pub fn publications_db(&self) -> Option<(String, String)> {
        self.db
            .as_ref()
            .map(|(url, _)| (url.clone(), self.publication_table.clone()))
    }
}

/// The columns of the publications table, in the order [`restore_publications`] reads them.
pub const PUBLICATION_COLUMNS: &[&str] = &["etag", "s_key", "expires", "doc"];

/// Writes the publication `p` of `key` (queued), after deleting the row of `old` (the entity
/// tag it had before a refresh or change) when given.
fn persist_publication(
    services: &crate::services::Services,
    db: &(String, String),
    key: &[u8],
    old: Option<&str>,
    p: Option<&Publication>,
) {
    let mut ok = true;
    if let Some(old) = old {
        ok &= services.db.post(crate::offload::DbWrite::Delete {
            url: db.0.clone(),
            table: db.1.clone(),
            keys: vec![("etag".into(), old.to_string())],
        });
    }
    if let Some(p) = p {
        ok &= services.db.post(crate::offload::DbWrite::Upsert {
            url: db.0.clone(),
            table: db.1.clone(),
            keys: vec![("etag".into(), p.etag.clone())],
            row: vec![
                ("s_key".into(), Some(text(key))),
                ("expires".into(), Some(p.until.to_string())),
                ("doc".into(), Some(p.doc.clone())),
            ],
        });
    }
    if !ok {
        ser_log!(
            L_ERR,
            "ERROR: pa: a publication of {} could not be queued for the database",
            text(key)
        );
    }
}

/// Puts publications read from the database (rows of [`PUBLICATION_COLUMNS`]) back, at
/// start-up, the latest last; rows already expired are deleted. Returns how many were kept.
pub fn restore_publications(shared: &Shared, rows: &[Vec<Option<String>>]) -> usize {
    let store = shared.services.store::<Subscriptions>();
    let db = db_of_publications(shared);
    let now = now_unix();
    let mut kept: Vec<(Vec<u8>, Publication)> = Vec::new();
    for r in rows {
        let c = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
        let (etag, key, doc) = (c(0), c(1), c(3));
        let until: u64 = c(2).trim().parse().unwrap_or(0);
        let bad = check_pidf(&doc).err();
        if let Some(why) = &bad {
            ser_log!(
                L_NOTICE,
                "pa: stored publication {etag} of {key} is refused ({why}): deleted"
            );
        }
        if until <= now || etag.is_empty() || key.is_empty() || bad.is_some() {
            if let (Some(db), false) = (&db, etag.is_empty()) {
                persist_publication(&shared.services, db, key.as_bytes(), Some(&etag), None);
            }
            continue;
        }
        kept.push((key.into_bytes(), Publication { etag, until, doc }));
    }
    // The one that lasts longest is the latest one published.
    kept.sort_by_key(|(_, p)| p.until);
    let mut all = store.publications();
    let mut n = 0;
    for (key, p) in kept {
        if all.len() >= MAX_PUBLISHED && !all.contains_key(&key) {
            continue;
        }
        let list = all.entry(key).or_default();
        if list.len() < MAX_PUBLICATIONS {
            list.push(p);
            n += 1;
        }
    }
    n
}

/// The database (URL, table) of the running program's publications, with `use_db`.
fn db_of_publications(shared: &Shared) -> Option<(String, String)> {
    shared
        .program
        .load()
        .configs
        .get::<PaConfig>()
        .and_then(|c| c.publications_db())
}

/// The columns of the subscriptions table, in the order [`restore`] reads them.
pub const WATCHER_COLUMNS: &[&str] = &[
    "s_key",
    "presentity",
    "w_uri",
    "w_tag",
    "s_tag",
    "callid",
    "contact",
    "next_hop",
    "local_contact",
    "cseq",
    "expires",
];

/// The database (URL, table) of the running program's pa, when it keeps subscriptions there.
fn db_of(shared: &Shared) -> Option<(String, String)> {
    shared
        .program
        .load()
        .configs
        .get::<PaConfig>()
        .and_then(|c| c.db.clone())
}

/// Writes `sub` (queued: the write never holds up a shard).
fn persist(services: &crate::services::Services, db: &(String, String), sub: &Sub) {
    let v = |x: &str| Some(x.to_string());
    let w = crate::offload::DbWrite::Upsert {
        url: db.0.clone(),
        table: db.1.clone(),
        keys: vec![
            ("callid".into(), sub.call_id.clone()),
            ("s_tag".into(), sub.our_tag.clone()),
        ],
        row: vec![
            ("s_key".into(), Some(text(&sub.key))),
            ("presentity".into(), v(&sub.presentity)),
            ("w_uri".into(), v(&sub.watcher)),
            ("w_tag".into(), v(&sub.watcher_tag)),
            ("contact".into(), v(&sub.target)),
            ("next_hop".into(), sub.next_hop.clone()),
            ("local_contact".into(), v(&sub.contact)),
            ("cseq".into(), Some(sub.cseq.to_string())),
            ("expires".into(), Some(sub.until.to_string())),
        ],
    };
    if !services.db.post(w) {
        ser_log!(
            L_ERR,
            "ERROR: pa: the subscription {} could not be queued for the database",
            sub.call_id
        );
    }
}

/// Deletes the subscription (`call_id`, `our_tag`) from the database.
fn forget(
    services: &crate::services::Services,
    db: &(String, String),
    call_id: &str,
    our_tag: &str,
) {
    let w = crate::offload::DbWrite::Delete {
        url: db.0.clone(),
        table: db.1.clone(),
        keys: vec![
            ("callid".into(), call_id.to_string()),
            ("s_tag".into(), our_tag.to_string()),
        ],
    };
    if !services.db.post(w) {
        ser_log!(
            L_ERR,
            "ERROR: pa: the end of subscription {call_id} could not be queued for the database"
        );
    }
}

/// Puts subscriptions read from the database (rows of [`WATCHER_COLUMNS`]) back, at start-up;
/// the first check notifies each watcher of the current state. Returns how many were kept.
pub fn restore(shared: &Shared, rows: &[Vec<Option<String>>]) -> usize {
    let store = shared.services.store::<Subscriptions>();
    let now = now_unix();
    let mut map = store.lock();
    let mut n = 0;
    for r in rows {
        let c = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
        let until: u64 = c(10).trim().parse().unwrap_or(0);
        let (call_id, our_tag) = (c(5), c(4));
        if until <= now
            || call_id.is_empty()
            || our_tag.is_empty()
            || map.len() >= MAX_SUBSCRIPTIONS
        {
            continue;
        }
        let sub = Sub {
            key: c(0).into_bytes(),
            presentity: c(1),
            watcher: c(2),
            watcher_tag: c(3),
            our_tag: our_tag.clone(),
            call_id: call_id.clone(),
            target: c(6),
            next_hop: r.get(7).cloned().flatten().filter(|h| !h.is_empty()),
            contact: c(8),
            cseq: c(9).trim().parse().unwrap_or(1),
            until,
            // Unknown: the first check sends the current state.
            last: String::new(),
        };
        map.insert((call_id, our_tag), sub);
        n += 1;
    }
    n
}

fn resolve_config(program: &Program) -> ModuleConfig {
    Arc::new(PaConfig::resolve(Some(program)))
}

/// One watcher's subscription (the notifier's half of the dialog).
#[derive(Debug, Clone)]
struct Sub {
    /// usrloc key of the presentity.
    key: Vec<u8>,
    /// The presentity's URI (PIDF `entity`, From of the NOTIFYs).
    presentity: String,
    watcher: String,
    watcher_tag: String,
    our_tag: String,
    call_id: String,
    /// The watcher's Contact: the NOTIFYs' request URI.
    target: String,
    /// Where the NOTIFYs go when `target` is not an address (where the SUBSCRIBE came from).
    next_hop: Option<String>,
    /// Our Contact.
    contact: String,
    cseq: u32,
    /// Unix time the subscription ends.
    until: u64,
    /// The document last notified.
    last: String,
}

/// A presentity's own state, from a PUBLISH (RFC 3903).
#[derive(Debug, Clone)]
struct Publication {
    etag: String,
    /// Unix time it expires.
    until: u64,
    /// The PIDF document as published.
    doc: String,
}

/// Every subscription, by (Call-ID, our To tag). Shared by every shard (`Services::store`); the
/// lock is held only to read or change the map, never across I/O.
#[derive(Default)]
pub struct Subscriptions {
    map: Mutex<HashMap<(String, String), Sub>>,
    /// Published states by presentity key, the latest last.
    published: Mutex<HashMap<Vec<u8>, Vec<Publication>>>,
    /// Numbers the entity tags.
    etags: std::sync::atomic::AtomicU64,
    /// Unix time of the last check (the tick of one shard does it).
    last_check: std::sync::atomic::AtomicU64,
}

impl Subscriptions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Sub>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publications(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Vec<Publication>>> {
        self.published.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The document watchers of `key` get now: its latest unexpired publication, else the
    /// registrar's view (open while it has a binding).
    fn document(&self, shared: &Shared, key: &[u8], presentity: &str, now: u64) -> String {
        if let Some(jid) = key.strip_prefix(JABBER_KEY) {
            // A Jabber user: the XMPP presence the gateway's connections see.
            let open = shared
                .services
                .store::<super::jabber::Presences>()
                .open(&text(jid));
            return pidf(presentity, open);
        }
        let published = self.publications().get(key).and_then(|v| {
            v.iter()
                .rev()
                .find(|p| p.until > now)
                .map(|p| p.doc.clone())
        });
        published.unwrap_or_else(|| pidf(presentity, presentity_open(shared, key, now)))
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn arg(args: &[Arg]) -> &str {
    match args.first() {
        Some(Arg::Str(s)) => s,
        _ => "",
    }
}

/// The Event header's package (`presence;id=1` → `presence`), lower-cased.
fn event_package(msg: &Message) -> Option<String> {
    let v = msg
        .header_value_by_name(b"Event")
        .or_else(|| msg.header_value_by_name(b"o"))?;
    let v = text(v);
    Some(
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// RFC 3863 document for `entity`.
fn pidf(entity: &str, open: bool) -> String {
    let e = xml_escape(entity);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
         <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{e}\">\r\n\
         <tuple id=\"registrar\">\r\n<status><basic>{}</basic></status>\r\n</tuple>\r\n\
         </presence>\r\n",
        if open { "open" } else { "closed" }
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Replies statelessly with `extra` header lines.
fn reply(ctx: &mut Ctx, env: &mut dyn Env, code: u16, reason: &str, extra: &str) -> ActionResult {
    ctx.reply_headers.extend_from_slice(extra.as_bytes());
    env.reply(ctx, code, reason.as_bytes())
}

/// Key prefix of the subscriptions to Jabber users (the rest is the bare JID).
const JABBER_KEY: &[u8] = b"xmpp:";

/// Set while a `handle_subscription("jabber")` runs again after the gateway took the watch.
struct JabberWatched(String);

/// The gateway's answer to the watch of a new Jabber subscription.
fn after_watch(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg], r: JobResult) -> ActionResult {
    match r {
        JobResult::Rows(_) => {
            let Some(jid) = ctx.module_state.take::<JabberWatch>() else {
                return ActionResult::Ret(-1);
            };
            ctx.module_state.set(JabberWatched(jid.0));
            handle_subscription(ctx, env, args)
        }
        JobResult::Failed(why) if why.starts_with("no Jabber account") => {
            reply(ctx, env, 403, "Forbidden (No Jabber Account)", "")
        }
        JobResult::Failed(why) => {
            ser_log!(L_ERR, "ERROR: pa: jabber subscription: {why}");
            reply(
                ctx,
                env,
                503,
                "Jabber Gateway Unavailable",
                "Retry-After: 60\r\n",
            )
        }
        _ => ActionResult::Ret(-1),
    }
}

/// The JID a new Jabber subscription watches, between its jobs.
struct JabberWatch(String);

/// Presence of the Jabber user `jid` changed (the gateway saw it): its watchers are notified.
pub fn jabber_changed(shared: &Shared, jid: &str) {
    let store = shared.services.store::<Subscriptions>();
    let mut key = JABBER_KEY.to_vec();
    key.extend_from_slice(jid.as_bytes());
    notify_changed(shared, &store, Some(&key), now_unix());
}

fn handle_subscription(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let domain = arg(args);
    let jabber = domain.eq_ignore_ascii_case("jabber");
    if !domain.eq_ignore_ascii_case("registrar") && !jabber {
        ser_log!(
            L_ERR,
            "ERROR: pa: handle_subscription(\"{domain}\"): the domain is \"registrar\" or \"jabber\""
        );
        return ActionResult::Ret(-1);
    }
    if ctx.msg.method() != Method::Subscribe {
        ser_log!(L_ERR, "ERROR: pa: handle_subscription: not a SUBSCRIBE");
        return ActionResult::Ret(-1);
    }
    if event_package(&ctx.msg).as_deref() != Some("presence") {
        return reply(ctx, env, 489, "Bad Event", "Allow-Events: presence\r\n");
    }
    let cfg = crate::script::config(&*env, PaConfig::resolve).into_owned();
    let Some(store) = env.shared().map(|s| s.services.store::<Subscriptions>()) else {
        ser_log!(L_ERR, "ERROR: pa: no transaction layer here");
        return ActionResult::Ret(-1);
    };
    let expires = match ctx.msg.expires() {
        None => cfg.default_expires,
        Some(Ok(e)) => u64::from(e),
        Some(Err(_)) => return reply(ctx, env, 400, "Bad Expires", ""),
    };
    let expires = if cfg.max_expires > 0 {
        expires.min(cfg.max_expires)
    } else {
        expires
    };
    let (Ok(from), Ok(to), Ok(call_id)) = (ctx.msg.from(), ctx.msg.to(), ctx.msg.call_id()) else {
        return reply(ctx, env, 400, "Bad From, To or Call-ID", "");
    };
    let call_id = text(call_id);
    let now = now_unix();
    let contact_line = format!("Contact: <sip:{}>\r\n", ctx.dst);
    if let Some(tag) = to.tag() {
        // A refresh or an unsubscribe within an existing subscription.
        let k = (call_id, text(tag));
        let sub = {
            let mut map = store.lock();
            match map.get_mut(&k) {
                None => None,
                Some(s) => {
                    s.until = now + expires;
                    s.cseq += 1;
                    let s2 = s.clone();
                    if expires == 0 {
                        map.remove(&k);
                    }
                    if let (Some(db), Some(shared)) = (&cfg.db, env.shared()) {
                        if expires == 0 {
                            forget(&shared.services, db, &s2.call_id, &s2.our_tag);
                        } else {
                            persist(&shared.services, db, &s2);
                        }
                    }
                    Some(s2)
                }
            }
        };
        let Some(sub) = sub else {
            return reply(ctx, env, 481, "Subscription Does Not Exist", "");
        };
        let r = reply(
            ctx,
            env,
            200,
            "OK",
            &format!("Expires: {expires}\r\n{contact_line}"),
        );
        if let Some(shared) = env.shared() {
            let doc = store.document(shared, &sub.key, &sub.presentity, now);
            if expires == 0 {
                notify(shared, &store, &sub, &doc, "terminated", "");
            } else {
                store
                    .lock()
                    .entry(k)
                    .and_modify(|s| s.last.clone_from(&doc));
                notify(shared, &store, &sub, &doc, "active", "");
            }
        }
        return r;
    }
    // A new subscription.
    let Ok(ruri) = Uri::parse(ctx.uri()) else {
        return reply(ctx, env, 400, "Bad Request-URI", "");
    };
    let Some(user) = ruri.user_unescaped().filter(|u| !u.is_empty()) else {
        return reply(ctx, env, 404, "Not Found", "");
    };
    let (user_s, host_s) = (text(&user), text(ruri.host_raw));
    let user_b = user.to_vec();
    let key = if jabber {
        let Some(JabberWatched(jid)) = ctx.module_state.take::<JabberWatched>() else {
            // First the watcher's Jabber connection asks for the presence of the user watched.
            let j =
                crate::script::config(&*env, super::jabber::JabberSettings::resolve).into_owned();
            let Some((jid, None)) = j.to_jid(&user_s, &host_s) else {
                return reply(ctx, env, 404, "Not A Jabber User", "");
            };
            ctx.module_state.set(JabberWatch(jid.clone()));
            return super::jabber::start(
                ctx,
                env,
                super::jabber::JabberOp::Watch { jid },
                Some(after_watch),
            );
        };
        let mut k = JABBER_KEY.to_vec();
        k.extend_from_slice(super::jabber::bare(&jid).as_bytes());
        k
    } else {
        crate::usrloc::aor_key(
            &user_b,
            cfg.use_domain.then_some(host_s.as_bytes()),
            cfg.case_sensitive,
        )
        .to_vec()
    };
    let presentity = format!("sip:{user_s}@{host_s}");
    let Some(target) = ctx
        .msg
        .contacts()
        .find_map(Result::ok)
        .map(|c| text(c.value.addr.uri_raw))
    else {
        return reply(ctx, env, 400, "Missing Contact", "");
    };
    let next_hop = crate::txn::table::uac::literal_dest(target.as_bytes())
        .is_none()
        .then(|| match ctx.proto {
            Proto::Udp => format!("sip:{}", ctx.src),
            _ => format!("sip:{};transport=tcp", ctx.src),
        });
    let Some((our_tag, doc)) = env.shared().map(|shared| {
        (
            text(shared.sl.tag_for(&ctx.msg).as_bytes()),
            store.document(shared, &key, &presentity, now),
        )
    }) else {
        return ActionResult::Ret(-1);
    };
    let sub = Sub {
        key,
        presentity,
        watcher: text(from.uri_raw),
        watcher_tag: text(from.tag().unwrap_or_default()),
        our_tag: our_tag.clone(),
        call_id: call_id.clone(),
        target,
        next_hop,
        contact: contact_line.clone(),
        cseq: 1,
        until: now + expires,
        last: doc.clone(),
    };
    if expires > 0 {
        let mut map = store.lock();
        let k = (call_id, our_tag);
        if !map.contains_key(&k) {
            if map.len() >= MAX_SUBSCRIPTIONS {
                drop(map);
                ser_log!(
                    L_NOTICE,
                    "pa: {MAX_SUBSCRIPTIONS} subscriptions kept: refused"
                );
                return reply(
                    ctx,
                    env,
                    503,
                    "Too Many Subscriptions",
                    "Retry-After: 60\r\n",
                );
            }
            let watchers = map.values().filter(|s| s.key == sub.key).count();
            if cfg.max_watchers > 0 && watchers >= cfg.max_watchers {
                drop(map);
                ser_log!(
                    L_NOTICE,
                    "pa: {} has {watchers} watchers (max_watchers): subscription refused",
                    sub.presentity
                );
                return reply(ctx, env, 503, "Too Many Watchers", "Retry-After: 60\r\n");
            }
        }
        map.insert(k, sub.clone());
        drop(map);
        if let (Some(db), Some(shared)) = (&cfg.db, env.shared()) {
            persist(&shared.services, db, &sub);
        }
    }
    let r = reply(
        ctx,
        env,
        202,
        "Accepted",
        &format!("Expires: {expires}\r\n{contact_line}"),
    );
    let state = if expires == 0 { "terminated" } else { "active" };
    if let Some(shared) = env.shared() {
        notify(shared, &store, &sub, &doc, state, "");
    }
    r
}

/// Checks that `body` is a PIDF document (RFC 3863 §4: a `presence` root in the PIDF namespace
/// with an `entity`).
fn check_pidf(body: &str) -> Result<(), String> {
    let doc = roxmltree::Document::parse(body).map_err(|e| format!("not XML: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "presence"
        || root.tag_name().namespace() != Some("urn:ietf:params:xml:ns:pidf")
    {
        return Err(
            "not a PIDF document (the root must be presence in urn:ietf:params:xml:ns:pidf)".into(),
        );
    }
    if root.attribute("entity").is_none_or(str::is_empty) {
        return Err("the presence element has no entity".into());
    }
    Ok(())
}

/// The presentity of the request URI: (usrloc key, `sip:user@host`), or the reply to send.
fn presentity_of(ctx: &Ctx, cfg: &PaConfig) -> Result<(Vec<u8>, String), (u16, &'static str)> {
    let Ok(ruri) = Uri::parse(ctx.uri()) else {
        return Err((400, "Bad Request-URI"));
    };
    let Some(user) = ruri.user_unescaped().filter(|u| !u.is_empty()) else {
        return Err((404, "Not Found"));
    };
    let key = crate::usrloc::aor_key(
        &user,
        cfg.use_domain.then_some(ruri.host_raw),
        cfg.case_sensitive,
    )
    .to_vec();
    Ok((key, format!("sip:{}@{}", text(&user), text(ruri.host_raw))))
}

fn handle_publish(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let domain = arg(args);
    if !domain.eq_ignore_ascii_case("registrar") || ctx.msg.method() != Method::Publish {
        ser_log!(
            L_ERR,
            "ERROR: pa: handle_publish(\"{domain}\"): needs a PUBLISH and \"registrar\""
        );
        return ActionResult::Ret(-1);
    }
    if event_package(&ctx.msg).as_deref() != Some("presence") {
        return reply(ctx, env, 489, "Bad Event", "Allow-Events: presence\r\n");
    }
    let cfg = crate::script::config(&*env, PaConfig::resolve).into_owned();
    let Some(store) = env.shared().map(|s| s.services.store::<Subscriptions>()) else {
        ser_log!(L_ERR, "ERROR: pa: no transaction layer here");
        return ActionResult::Ret(-1);
    };
    let expires = match ctx.msg.expires() {
        None => cfg.default_expires,
        Some(Ok(e)) => u64::from(e),
        Some(Err(_)) => return reply(ctx, env, 400, "Bad Expires", ""),
    };
    let expires = if cfg.max_expires > 0 {
        expires.min(cfg.max_expires)
    } else {
        expires
    };
    let (key, _presentity) = match presentity_of(ctx, &cfg) {
        Ok(p) => p,
        Err((code, why)) => return reply(ctx, env, code, why, ""),
    };
    let if_match = ctx
        .msg
        .header_value_by_name(b"SIP-If-Match")
        .map(|v| text(v).trim().to_string());
    let body = ctx.msg.body();
    let doc = if body.is_empty() {
        None
    } else {
        let ctype = ctx
            .msg
            .header_value(crate::wire::HeaderId::ContentType)
            .map(|v| {
                text(v)
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        if ctype.as_deref() != Some("application/pidf+xml") {
            return reply(
                ctx,
                env,
                415,
                "Unsupported Media Type",
                "Accept: application/pidf+xml\r\n",
            );
        }
        let Ok(doc) = std::str::from_utf8(body) else {
            return reply(ctx, env, 400, "Bad PIDF: not UTF-8", "");
        };
        if let Err(why) = check_pidf(doc) {
            ser_log!(L_NOTICE, "pa: PUBLISH refused: {why}");
            return reply(ctx, env, 400, &format!("Bad PIDF: {why}"), "");
        }
        Some(doc.to_string())
    };
    let now = now_unix();
    let etag = format!(
        "pa{now:x}.{:x}",
        store
            .etags
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    // What the database must learn: (entity tag whose row goes, publication written).
    let mut change: Option<(Option<String>, Option<Publication>)> = None;
    let done = {
        let mut all = store.publications();
        let full = if_match.is_none()
            && (all.len() >= MAX_PUBLISHED
                || all.get(&key).is_some_and(|l| l.len() >= MAX_PUBLICATIONS));
        let list = all.entry(key.clone()).or_default();
        match &if_match {
            // RFC 3903 §6: refresh, modify or remove the publication the entity tag names.
            Some(tag) => match list.iter().position(|p| &p.etag == tag && p.until > now) {
                None => Err((412, "Conditional Request Failed")),
                Some(i) if expires == 0 => {
                    let p = list.remove(i);
                    change = Some((Some(p.etag), None));
                    Ok(false)
                }
                Some(i) => {
                    let mut p = list.remove(i);
                    p.until = now + expires;
                    let old = std::mem::replace(&mut p.etag, etag.clone());
                    if let Some(d) = doc {
                        p.doc = d;
                    }
                    change = Some((Some(old), Some(p.clone())));
                    list.push(p);
                    Ok(true)
                }
            },
            None if full => Err((503, "Too Many Publications")),
            None => match doc {
                None => Err((400, "Missing Body")),
                Some(_) if expires == 0 => Err((400, "Expires 0 Without SIP-If-Match")),
                Some(d) => {
                    let p = Publication {
                        etag: etag.clone(),
                        until: now + expires,
                        doc: d,
                    };
                    change = Some((None, Some(p.clone())));
                    list.push(p);
                    Ok(true)
                }
            },
        }
    };
    if let (Some((old, p)), Some(db)) = (&change, cfg.publications_db()) {
        if let Some(shared) = env.shared() {
            persist_publication(&shared.services, &db, &key, old.as_deref(), p.as_ref());
        }
    }
    let r = match done {
        Err((code, why)) => return reply(ctx, env, code, why, ""),
        Ok(true) => reply(
            ctx,
            env,
            200,
            "OK",
            &format!("SIP-ETag: {etag}\r\nExpires: {expires}\r\n"),
        ),
        Ok(false) => reply(ctx, env, 200, "OK", "Expires: 0\r\n"),
    };
    if let Some(shared) = env.shared() {
        notify_changed(shared, &store, Some(&key), now);
    }
    r
}

/// Whether the presentity has a valid binding now.
fn presentity_open(shared: &Shared, key: &[u8], now: u64) -> bool {
    shared.services.usrloc.with_record(TABLE, key, |r| {
        r.is_some_and(|r| !r.ordered(now, false).is_empty())
    })
}

/// Sends one NOTIFY for `sub` with `state` (`active` or `terminated`) and `reason`.
fn notify(
    shared: &Shared,
    store: &Arc<Subscriptions>,
    sub: &Sub,
    doc: &str,
    state: &str,
    reason: &str,
) {
    let now = now_unix();
    let sub_state = if state == "active" {
        format!("active;expires={}", sub.until.saturating_sub(now))
    } else if reason.is_empty() {
        "terminated".to_string()
    } else {
        format!("terminated;reason={reason}")
    };
    let headers = format!(
        "From: <{}>;tag={}\r\nTo: <{}>;tag={}\r\nCall-ID: {}\r\nCSeq: {} NOTIFY\r\n\
         Event: presence\r\nSubscription-State: {sub_state}\r\n{}Content-Type: application/pidf+xml\r\n",
        sub.presentity,
        sub.our_tag,
        sub.watcher,
        sub.watcher_tag,
        sub.call_id,
        sub.cseq,
        sub.contact
    );
    let k = (sub.call_id.clone(), sub.our_tag.clone());
    let store2 = Arc::clone(store);
    let db = db_of(shared).map(|d| (d, Arc::clone(&shared.services)));
    let req = UacRequest {
        method: "NOTIFY".into(),
        ruri: sub.target.clone(),
        headers,
        body: doc.as_bytes().to_vec(),
        next_hop: sub.next_hop.clone(),
        done: Box::new(move |r: UacResult| {
            // RFC 6665 §4.2.2: 481 or no answer ends the subscription.
            if r.code == 481 || r.code == 408 {
                store2.lock().remove(&k);
                if let Some((db, services)) = &db {
                    forget(services, db, &k.0, &k.1);
                }
                ser_log!(
                    L_DBG,
                    "pa: NOTIFY answered {} {}: subscription removed",
                    r.code,
                    r.reason
                );
            }
        }),
    };
    if shared.tm.uac(req).is_err() {
        ser_log!(L_ERR, "ERROR: pa: no shard took the NOTIFY");
    }
}

/// The periodic check (called on every shard tick, does its work on one shard per
/// `timer_interval`): expired subscriptions are terminated, changed presentities notified.
pub fn tick(shared: &Shared, _now: Instant) {
    use std::sync::atomic::Ordering::Relaxed;
    let loaded = shared.program.load();
    let Some(cfg) = loaded.configs.get::<PaConfig>() else {
        return;
    };
    let store = shared.services.store::<Subscriptions>();
    let now = now_unix();
    let last = store.last_check.load(Relaxed);
    if now < last.saturating_add(cfg.timer_interval)
        || store
            .last_check
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_err()
    {
        return;
    }
    store.publications().retain(|_, v| {
        v.retain(|p| p.until > now);
        !v.is_empty()
    });
    notify_changed(shared, &store, None, now);
}

/// NOTIFYs every watcher (of `only`, or of every presentity) whose presentity's document changed
/// since its last NOTIFY, and terminates the expired subscriptions.
fn notify_changed(shared: &Shared, store: &Arc<Subscriptions>, only: Option<&[u8]>, now: u64) {
    let subs: Vec<Sub> = store
        .lock()
        .values()
        .filter(|s| only.is_none_or(|k| s.key == k))
        .cloned()
        .collect();
    let mut out: Vec<(Sub, String, &'static str, &'static str)> = Vec::new();
    let db = db_of(shared);
    for s in subs {
        let doc = store.document(shared, &s.key, &s.presentity, now);
        let k = (s.call_id.clone(), s.our_tag.clone());
        let mut map = store.lock();
        let Some(cur) = map.get_mut(&k) else { continue };
        if cur.until <= now {
            cur.cseq += 1;
            out.push((cur.clone(), doc, "terminated", "timeout"));
            map.remove(&k);
        } else if cur.last != doc {
            cur.cseq += 1;
            cur.last.clone_from(&doc);
            out.push((cur.clone(), doc, "active", ""));
        }
    }
    for (s, doc, state, reason) in out {
        if let Some(db) = &db {
            if state == "active" {
                persist(&shared.services, db, &s);
            } else {
                forget(&shared.services, db, &s.call_id, &s.our_tag);
            }
        }
        notify(shared, store, &s, &doc, state, reason);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pidf_is_rfc_3863() {
        let d = pidf("sip:a&b@x", true);
        assert!(d.contains("xmlns=\"urn:ietf:params:xml:ns:pidf\""));
        assert!(d.contains("entity=\"sip:a&amp;b@x\""));
        assert!(d.contains("<basic>open</basic>"));
        assert!(pidf("sip:a@x", false).contains("<basic>closed</basic>"));
    }

    #[test]
    fn only_pidf_is_published() {
        assert!(check_pidf(&pidf("sip:a@x", true)).is_ok());
        assert!(check_pidf("<presence").unwrap_err().starts_with("not XML"));
        assert!(check_pidf("<presence entity=\"a\"/>")
            .unwrap_err()
            .contains("not a PIDF document"));
        assert!(
            check_pidf("<presence xmlns=\"urn:ietf:params:xml:ns:pidf\"/>")
                .unwrap_err()
                .contains("no entity")
        );
    }

    #[test]
    fn the_event_package_is_read() {
        let raw = "SUBSCRIBE sip:a@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                   From: <sip:w@x>;tag=1\r\nTo: <sip:a@x>\r\nCall-ID: c\r\nCSeq: 1 SUBSCRIBE\r\n\
                   Event: Presence;id=7\r\nContent-Length: 0\r\n\r\n";
        let m = Message::parse(bytes::Bytes::from(raw)).unwrap();
        assert_eq!(event_package(&m).as_deref(), Some("presence"));
    }
}
