//! Script module `msilo`: message silo — stores instant messages (MESSAGE, RFC 3428) for users
//! who are off line and delivers them when the user registers. Needs `tm` loaded as well.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `m_store` | Int | request, failure | store the MESSAGE: which URI is the destination (0 = the new request URI, 1 = the original one, 2 = To) |
//! | `m_dump` | - | request | send the stored messages to a user who registers |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `db_url` | string | `""` (the server's default database) |
//! | `db_table` | string | `"silo"` |
//! | `registrar` | string | unset (no "user is offline" notice) |
//! | `expire_time` | int | `259200` (seconds a message is kept at most) |
//! | `check_time` | int | `30` (seconds; with `clean_period`, how often expired rows are swept) |
//! | `clean_period` | int | `5` (expired rows are swept every `check_time * clean_period` s) |
//! | `use_contact` | int | `1` (the notice goes to the sender's Contact, else its From URI) |
//! | `max_messages` | int | `0` (ser's addition: messages kept per user at most; 0 = no limit) |
//!
//! `m_store(mode)` (SER 0.8.11's rules): the destination is the new request URI (mode 0, when the
//! script rewrote it and it has a user part), else the original request URI (mode 0 or 1, when it
//! has a user part), else the To URI (always for mode 2); its parameters are dropped. The MESSAGE
//! needs a body. A message to or from the `registrar` address is refused (no notice loops). The
//! row (SER's `silo` table: `src_addr` = From URI, `dst_addr` = To URI, `r_uri`, `username` and
//! `domain` of the destination, `inc_time`, `exp_time` = now + the smaller of `expire_time` and
//! the request's Expires, `ctype`, `body`) is written to the database **before** `m_store`
//! returns true, so the script's 202 promises a message the database holds; when the database
//! refuses or is down, `m_store` returns false (the script answers 503 and the sender still
//! has the message). With `max_messages`, a user who already has that many unexpired messages
//! gets no more (false). With `registrar` set, the sender is told by a MESSAGE from that address
//! that the user is off line.
//!
//! `m_dump()` on a REGISTER (false when its Expires is 0 or Contact is `*`: the user goes
//! off line): every stored message whose `username`/`domain` are those of the REGISTER's To URI
//! is sent statefully (tm) as a MESSAGE with the original From, To, Content-Type and body, and a
//! Date header saying when it was stored. Like SER's, it goes to this server's own address, so
//! the script routes it (`lookup("location")` finds the binding the REGISTER just made, and forks
//! to every binding); its request URI is the stored `r_uri` (the one the MESSAGE came with, which
//! the script took for `myself` then), the To URI of the REGISTER when that is unusable. A message is deleted only when its delivery ends with a 2xx;
//! any other outcome (error reply, timeout) leaves it stored for the next REGISTER. A message
//! being delivered is not sent again by a second REGISTER meanwhile. Expired messages are deleted
//! instead of delivered. At most every `check_time * clean_period` seconds, an `m_dump` also
//! sweeps the whole table of the expired messages of every user (SER's timer did this; here it
//! runs after the REGISTER's deliveries went out, whose 200 `save` has sent already).
//!
//! Differences from SER 0.8.11: the time a message was stored is a Date header (RFC 3261
//! §20.17), not a `[date]` prefix in the body, so the user gets the body exactly as sent; the
//! delivered MESSAGE carries no Contact (RFC 3428 §4: MESSAGE establishes no dialog). SER
//! swept on a timer; here the sweep needs a REGISTER that calls `m_dump` (an expired message is
//! never delivered either way, and is also deleted when its user's messages are read by `m_dump`
//! or by `m_store` with `max_messages`). Deletes after a delivery
//! go through the server's queue of database writes (retried while the database is down): a
//! server stopped during an outage may deliver such a message once more after the restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::offload::{DbWrite, Job, JobResult};
use crate::proxy::shared::Shared;
use crate::script::env::{ActionResult, Env};
use crate::script::ir::{Arg, Program, Proto};
use crate::script::{
    ArgKind::*, Ctx, FunctionDecl, ModuleConfig, ModuleDecl, ParamDecl, RouteKinds,
};
use crate::ser_log;
use crate::services::Services;
use crate::shard::log::{L_DBG, L_ERR, L_NOTICE, L_WARN};
use crate::txn::table::{UacRequest, UacResult};
use crate::usrloc::time::{http_date, now_unix};
use crate::wire::uri::Uri;
use crate::wire::HeaderId;

/// Declaration of module `msilo`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "msilo",
    aliases: &[],
    depends: &["tm"],
    functions: &[
        FunctionDecl::new(
            "m_store",
            &[Int],
            RouteKinds::REQUEST_FAILURE,
            "store the MESSAGE: which URI is the destination (0 = request URI)",
        )
        .implemented_by(m_store),
        FunctionDecl::new(
            "m_dump",
            &[],
            RouteKinds::REQUEST,
            "send the stored messages to a user who registers",
        )
        .implemented_by(m_dump),
    ],
    params: &[
        ParamDecl::str("db_url", ""),
        ParamDecl::str("db_table", "silo"),
        ParamDecl::str_unset("registrar"),
        ParamDecl::int("expire_time", 259200),
        ParamDecl::int("check_time", 30),
        ParamDecl::int("clean_period", 5),
        ParamDecl::int("use_contact", 1),
        ParamDecl::int("max_messages", 0),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "message silo: stores undelivered instant messages",
    config: Some(resolve_config),
    commands: &[],
};

/// The columns `m_dump` reads, in this order.
const DUMP_COLUMNS: [&str; 8] = [
    "mid", "src_addr", "dst_addr", "ctype", "body", "inc_time", "exp_time", "r_uri",
];

/// Longest a delivery is remembered as under way or done (longer than any tm transaction): a
/// REGISTER meanwhile does not send it again, while its delete is still in the write queue.
const REMEMBER: Duration = Duration::from_secs(300);

/// Most deliveries remembered at once; a REGISTER finding more leaves the rest for later.
const MAX_REMEMBERED: usize = 65536;

/// The From tag prefix of the MESSAGEs `m_dump` sends (SER's `MSILO_TAG` marked its own the same
/// way): `m_store` never stores one of them again.
const DELIVERY_TAG: &str = "msilo-";

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// msilo's settings, resolved once per loaded program.
#[derive(Debug, Clone)]
pub struct MsiloConfig {
    db_url: String,
    db_table: String,
    registrar: Option<String>,
    expire_time: u64,
    /// `check_time * clean_period`, at least 1 s.
    sweep_every: u64,
    use_contact: bool,
    max_messages: usize,
}

impl MsiloConfig {
    fn resolve(program: Option<&Program>) -> MsiloConfig {
        let s = |n: &str| {
            super::param(program, &MODULE, n)
                .and_then(|p| p.str())
                .map(str::to_string)
        };
        let i = |n: &str, d: i64| {
            super::param(program, &MODULE, n)
                .and_then(|p| p.int())
                .unwrap_or(d)
        };
        let mut db_url = s("db_url").unwrap_or_default();
        if !db_url.is_empty() && !db_url.contains("://") {
            if program.is_some() {
                ser_log!(
                    L_WARN,
                    "msilo: db_url {db_url:?} is not a database URL: the server's database is used"
                );
            }
            db_url.clear();
        }
        MsiloConfig {
            db_url,
            db_table: s("db_table")
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "silo".into()),
            registrar: s("registrar").filter(|r| !r.trim().is_empty()),
            expire_time: u64::try_from(i("expire_time", 259200)).unwrap_or(0),
            sweep_every: u64::try_from(i("check_time", 30).saturating_mul(i("clean_period", 5)))
                .unwrap_or(0)
                .max(1),
            use_contact: i("use_contact", 1) != 0,
            max_messages: usize::try_from(i("max_messages", 0)).unwrap_or(0),
        }
    }
}

fn resolve_config(program: &Program) -> ModuleConfig {
    Arc::new(MsiloConfig::resolve(Some(program)))
}

/// Deliveries under way or done recently, shared by every shard (`Services::store`), keyed by
/// database URL, table and `mid`: SER's list of messages being sent.
#[derive(Default)]
pub struct Deliveries {
    map: papaya::HashMap<String, Instant>,
}

impl Deliveries {
    /// Marks `key` as being delivered; false when it already is (or was just now), or when too
    /// many are remembered.
    fn claim(&self, key: &str, now: Instant) -> bool {
        let m = self.map.pin();
        if m.len() >= MAX_REMEMBERED {
            return false;
        }
        let r = m.compute(key.to_string(), |old| match old {
            Some((_, at)) if now.saturating_duration_since(*at) < REMEMBER => {
                papaya::Operation::Abort(())
            }
            _ => papaya::Operation::Insert(now),
        });
        !matches!(r, papaya::Compute::Aborted(()))
    }

    /// Forgets `key` (a delivery that failed: the next REGISTER sends it again).
    fn release(&self, key: &str) {
        self.map.pin().remove(key);
    }

    /// Drops what is older than [`REMEMBER`].
    fn purge(&self, now: Instant) {
        self.map
            .pin()
            .retain(|_, at| now.saturating_duration_since(*at) < REMEMBER);
    }
}

/// When the last sweep of expired rows started (Unix seconds), shared by every shard.
#[derive(Default)]
pub struct Sweep {
    last: std::sync::atomic::AtomicU64,
}

impl Sweep {
    /// Whether a sweep is due at `now`; true for exactly one caller per period.
    fn due(&self, now: u64, every: u64) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let last = self.last.load(Relaxed);
        now >= last.saturating_add(every)
            && self
                .last
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `uri` without its parameters and headers (`sip:bob@host;transport=udp` → `sip:bob@host`).
fn bare(uri: &[u8]) -> &[u8] {
    let end = uri
        .iter()
        .position(|&b| b == b';' || b == b'?')
        .unwrap_or(uri.len());
    &uri[..end]
}

/// The user and (lower-cased) host of a URI with a user part.
fn user_domain(uri: &[u8]) -> Option<(String, String)> {
    let u = Uri::parse(uri).ok()?;
    let user = u.user.filter(|u| !u.is_empty())?;
    Some((text(user), text(u.host_raw).to_ascii_lowercase()))
}

fn same_uri(a: &[u8], b: &str) -> bool {
    bare(a).eq_ignore_ascii_case(bare(b.as_bytes()))
}

/// Where a request of ours goes to be routed by our own script: the address the current request
/// came in on.
fn ourselves(ctx: &Ctx) -> String {
    match ctx.proto {
        Proto::Udp => format!("sip:{}", ctx.dst),
        Proto::Tcp | Proto::Tls | Proto::Sctp => format!("sip:{};transport=tcp", ctx.dst),
    }
}

/// A message accepted by `m_store`, between its database jobs.
#[derive(Debug)]
struct Pending {
    row: Vec<(String, Option<String>)>,
    username: String,
    domain: String,
    /// The sender's address for the "offline" notice, and the To URI.
    notice: Option<(String, String)>,
}

fn mode(args: &[Arg]) -> i64 {
    match args.first() {
        Some(Arg::Int(i)) => *i,
        Some(Arg::Str(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// The row of the MESSAGE in `ctx` (and who to notify), or why it cannot be stored.
fn message_row(ctx: &Ctx, cfg: &MsiloConfig, mode: i64) -> Result<Pending, String> {
    let msg = &ctx.msg;
    let body = msg.body();
    if body.is_empty() {
        return Err("the MESSAGE has no body".into());
    }
    let body = std::str::from_utf8(body)
        .map_err(|_| "the body is not UTF-8 text (the silo keeps text)".to_string())?;
    let to = msg.to().map_err(|_| "no usable To header".to_string())?;
    let from = msg
        .from()
        .map_err(|_| "no usable From header".to_string())?;
    if from.tag().is_some_and(|t| {
        t.len() >= DELIVERY_TAG.len()
            && t[..DELIVERY_TAG.len()].eq_ignore_ascii_case(DELIVERY_TAG.as_bytes())
    }) {
        // A delivery of ours the user's UA refused (the script's failure_route): it is still
        // stored; storing it again would only refresh its times.
        return Err("the message is a delivery of this silo".into());
    }
    if let Some(reg) = &cfg.registrar {
        if same_uri(to.uri_raw, reg) {
            return Err("the message is for the registrar address".into());
        }
        if same_uri(from.uri_raw, reg) {
            return Err("the message is from the registrar address".into());
        }
    }
    let has_user = |u: &[u8]| user_domain(u).is_some();
    let mut dest: Option<&[u8]> = None;
    if mode == 0 && ctx.uri_rewritten() && has_user(ctx.uri()) {
        dest = Some(bare(ctx.uri()));
    }
    if dest.is_none() && mode <= 1 && has_user(ctx.original_uri()) {
        dest = Some(bare(ctx.original_uri()));
    }
    let dest = dest.unwrap_or_else(|| bare(to.uri_raw));
    let (username, domain) =
        user_domain(dest).ok_or_else(|| format!("destination {} has no user", text(dest)))?;
    let ctype = msg
        .header_value(HeaderId::ContentType)
        .map(|v| text(v).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "text/plain".into());
    let mut life = cfg.expire_time;
    if let Some(Ok(e)) = msg.expires() {
        if e > 0 {
            life = life.min(u64::from(e));
        }
    }
    let now = now_unix();
    let row = vec![
        ("src_addr".to_string(), Some(text(bare(from.uri_raw)))),
        ("dst_addr".to_string(), Some(text(bare(to.uri_raw)))),
        ("r_uri".to_string(), Some(text(dest))),
        ("username".to_string(), Some(username.clone())),
        ("domain".to_string(), Some(domain.clone())),
        ("inc_time".to_string(), Some(now.to_string())),
        ("exp_time".to_string(), Some((now + life).to_string())),
        ("ctype".to_string(), Some(ctype)),
        ("body".to_string(), Some(body.to_string())),
    ];
    let notice = cfg.registrar.as_ref().map(|_| {
        let contact = msg
            .contacts()
            .find_map(Result::ok)
            .map(|c| text(c.value.addr.uri_raw))
            .filter(|c| cfg.use_contact && c.len() > 4 && c[..4].eq_ignore_ascii_case("sip:"));
        (
            contact.unwrap_or_else(|| text(bare(from.uri_raw))),
            text(bare(to.uri_raw)),
        )
    });
    Ok(Pending {
        row,
        username,
        domain,
        notice,
    })
}

fn m_store(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let cfg = crate::script::config(&*env, MsiloConfig::resolve);
    let p = match message_row(ctx, &cfg, mode(args)) {
        Ok(p) => p,
        Err(why) => {
            ser_log!(L_ERR, "ERROR: msilo: m_store: not stored: {why}");
            return ActionResult::Ret(-1);
        }
    };
    let cfg = cfg.into_owned();
    if cfg.max_messages > 0 {
        let job = Job::Db {
            url: cfg.db_url.clone(),
            table: cfg.db_table.clone(),
            keys: vec![
                ("username".into(), p.username.clone()),
                ("domain".into(), p.domain.clone()),
            ],
            columns: vec!["mid".into(), "exp_time".into()],
        };
        ctx.module_state.set(p);
        return ctx.suspend_with(job, after_count);
    }
    insert(ctx, &cfg, p)
}

fn insert(ctx: &mut Ctx, cfg: &MsiloConfig, p: Pending) -> ActionResult {
    let job = Job::DbWrite(DbWrite::Insert {
        url: cfg.db_url.clone(),
        table: cfg.db_table.clone(),
        row: p.row.clone(),
    });
    ctx.module_state.set(p);
    ctx.suspend_with(job, after_insert)
}

/// `m_store` with `max_messages`: the user's messages are counted (expired ones deleted).
fn after_count(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg], r: JobResult) -> ActionResult {
    let Some(p) = ctx.module_state.take::<Pending>() else {
        return ActionResult::Ret(-1);
    };
    let cfg = crate::script::config(&*env, MsiloConfig::resolve).into_owned();
    let rows = match r {
        JobResult::Rows(rows) => rows,
        JobResult::Failed(why) => {
            ser_log!(L_ERR, "ERROR: msilo: m_store: not stored: {why}");
            return ActionResult::Ret(-1);
        }
        _ => return ActionResult::Ret(-1),
    };
    let now = now_unix();
    let mut live = 0usize;
    for row in &rows {
        let mid = row.first().cloned().flatten().unwrap_or_default();
        let exp: u64 = row
            .get(1)
            .cloned()
            .flatten()
            .and_then(|e| e.trim().parse().ok())
            .unwrap_or(u64::MAX);
        if exp <= now {
            delete_expired(env, &cfg, &mid);
        } else {
            live += 1;
        }
    }
    if live >= cfg.max_messages {
        ser_log!(
            L_NOTICE,
            "msilo: m_store: {}@{} already has {live} stored messages (max_messages {}): not stored",
            p.username,
            p.domain,
            cfg.max_messages
        );
        return ActionResult::Ret(-1);
    }
    insert(ctx, &cfg, p)
}

fn after_insert(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg], r: JobResult) -> ActionResult {
    let p = ctx.module_state.take::<Pending>();
    match r {
        JobResult::Rows(_) => {}
        JobResult::Failed(why) => {
            ser_log!(L_ERR, "ERROR: msilo: m_store: not stored: {why}");
            return ActionResult::Ret(-1);
        }
        _ => return ActionResult::Ret(-1),
    }
    let Some(p) = p else {
        return ActionResult::Ret(1);
    };
    ser_log!(
        L_DBG,
        "msilo: message for {}@{} stored",
        p.username,
        p.domain
    );
    if let Some((sender, to)) = p.notice {
        let cfg = crate::script::config(&*env, MsiloConfig::resolve);
        if let (Some(reg), Some(shared)) = (cfg.registrar.as_deref(), env.shared()) {
            notify_sender(ctx, shared, reg, &sender, &to);
        }
    }
    ActionResult::Ret(1)
}

/// SER's notice to the sender that the message waits for an off-line user.
fn notify_sender(ctx: &Ctx, shared: &Shared, registrar: &str, sender: &str, to: &str) {
    let literal = crate::txn::table::uac::literal_dest(sender.as_bytes()).is_some();
    let req = UacRequest {
        method: "MESSAGE".into(),
        ruri: sender.to_string(),
        headers: format!(
            "From: <{registrar}>\r\nTo: <{}>\r\nContent-Type: text/plain\r\n",
            text(bare(sender.as_bytes()))
        ),
        body: format!(
            "User [{to}] is offline. The message will be delivered when user goes online."
        )
        .into_bytes(),
        next_hop: (!literal).then(|| ourselves(ctx)),
        done: Box::new(|r: UacResult| {
            if !(200..300).contains(&r.code) {
                ser_log!(
                    L_DBG,
                    "msilo: the offline notice was not delivered ({} {})",
                    r.code,
                    r.reason
                );
            }
        }),
    };
    if shared.tm.uac(req).is_err() {
        ser_log!(L_WARN, "msilo: no shard took the offline notice");
    }
}

fn delete_expired(env: &dyn Env, cfg: &MsiloConfig, mid: &str) {
    if mid.is_empty() {
        return;
    }
    if let Some(s) = env.services() {
        if !s.db.post(delete(cfg, mid)) {
            ser_log!(
                L_WARN,
                "msilo: the delete of expired message {mid} was refused (write queue full)"
            );
        }
    }
}

fn delete(cfg: &MsiloConfig, mid: &str) -> DbWrite {
    DbWrite::Delete {
        url: cfg.db_url.clone(),
        table: cfg.db_table.clone(),
        keys: vec![("mid".into(), mid.to_string())],
    }
}

/// The REGISTER being dumped for: where its messages go.
struct Dump {
    aor: String,
    next_hop: String,
}

fn m_dump(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg]) -> ActionResult {
    let msg = &ctx.msg;
    if matches!(msg.expires(), Some(Ok(0))) || matches!(msg.contact_is_star(), Ok(true)) {
        ser_log!(L_DBG, "msilo: m_dump: the user goes off line");
        return ActionResult::Ret(-1);
    }
    let Ok(to) = msg.to() else {
        ser_log!(L_ERR, "ERROR: msilo: m_dump: no usable To header");
        return ActionResult::Ret(-1);
    };
    let aor = text(bare(to.uri_raw));
    let Some((username, domain)) = user_domain(aor.as_bytes()) else {
        ser_log!(L_ERR, "ERROR: msilo: m_dump: To URI {aor} has no user");
        return ActionResult::Ret(-1);
    };
    let cfg = crate::script::config(&*env, MsiloConfig::resolve);
    let job = Job::Db {
        url: cfg.db_url.clone(),
        table: cfg.db_table.clone(),
        keys: vec![("username".into(), username), ("domain".into(), domain)],
        columns: DUMP_COLUMNS.iter().map(|c| c.to_string()).collect(),
    };
    let next_hop = ourselves(ctx);
    ctx.module_state.set(Dump { aor, next_hop });
    ctx.suspend_with(job, after_select)
}

fn col(row: &[Option<String>], i: usize) -> String {
    row.get(i).cloned().flatten().unwrap_or_default()
}

fn after_select(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg], r: JobResult) -> ActionResult {
    let Some(d) = ctx.module_state.take::<Dump>() else {
        return ActionResult::Ret(-1);
    };
    let rows = match r {
        JobResult::Rows(rows) => rows,
        JobResult::Failed(why) => {
            ser_log!(
                L_ERR,
                "ERROR: msilo: m_dump: the messages of {} cannot be read: {why}",
                d.aor
            );
            return ActionResult::Ret(-1);
        }
        _ => return ActionResult::Ret(-1),
    };
    let cfg = crate::script::config(&*env, MsiloConfig::resolve).into_owned();
    let Some(shared) = env.shared() else {
        ser_log!(L_ERR, "ERROR: msilo: m_dump: no transaction layer here");
        return ActionResult::Ret(-1);
    };
    let services: Arc<Services> = Arc::clone(&shared.services);
    let deliveries = services.store::<Deliveries>();
    let now_i = Instant::now();
    deliveries.purge(now_i);
    let now = now_unix();
    let mut sent = 0usize;
    for row in &rows {
        let mid = col(row, 0);
        if mid.trim().is_empty() {
            continue;
        }
        let exp: u64 = col(row, 6).trim().parse().unwrap_or(u64::MAX);
        if exp <= now {
            delete_expired(env, &cfg, &mid);
            continue;
        }
        let key = format!("{}\n{}\n{mid}", cfg.db_url, cfg.db_table);
        if !deliveries.claim(&key, now_i) {
            ser_log!(
                L_DBG,
                "msilo: m_dump: message {mid} is being delivered already"
            );
            continue;
        }
        let inc: u64 = col(row, 5).trim().parse().unwrap_or(now);
        let mut ctype = col(row, 3);
        if ctype.trim().is_empty() {
            ctype = "text/plain".into();
        }
        let headers = format!(
            "From: <{}>;tag={DELIVERY_TAG}{}-{:x}\r\nTo: <{}>\r\nContent-Type: {}\r\nDate: {}\r\n",
            oneline(&col(row, 1)),
            oneline(mid.trim()),
            now_nanos(),
            oneline(&col(row, 2)),
            oneline(&ctype),
            http_date(inc)
        );
        let done = {
            let services = Arc::clone(&services);
            let deliveries = Arc::clone(&deliveries);
            let cfg = cfg.clone();
            let (mid, key, aor) = (mid.clone(), key.clone(), d.aor.clone());
            Box::new(move |r: UacResult| {
                delivered(&services, &deliveries, &cfg, &mid, &key, &aor, &r)
            })
        };
        // The request URI the message came with reached this script once, so it routes here
        // again (an AOR without our port would not be `myself`).
        let mut ruri = col(row, 7);
        if Uri::parse(ruri.as_bytes()).is_err() {
            ruri.clone_from(&d.aor);
        }
        let req = UacRequest {
            method: "MESSAGE".into(),
            ruri,
            headers,
            body: col(row, 4).into_bytes(),
            next_hop: Some(d.next_hop.clone()),
            done,
        };
        if shared.tm.uac(req).is_err() {
            deliveries.release(&key);
            ser_log!(L_ERR, "ERROR: msilo: m_dump: no shard took message {mid}");
            continue;
        }
        sent += 1;
    }
    if sent > 0 {
        ser_log!(
            L_DBG,
            "msilo: m_dump: {sent} stored messages sent to {}",
            d.aor
        );
    }
    if services.store::<Sweep>().due(now, cfg.sweep_every) {
        let job = Job::Db {
            url: cfg.db_url.clone(),
            table: cfg.db_table.clone(),
            keys: Vec::new(),
            columns: vec!["mid".into(), "exp_time".into()],
        };
        return ctx.suspend_with(job, after_sweep);
    }
    ActionResult::Ret(1)
}

/// The sweep: every expired row is deleted (through the write queue).
fn after_sweep(_ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg], r: JobResult) -> ActionResult {
    let cfg = crate::script::config(&*env, MsiloConfig::resolve).into_owned();
    match r {
        JobResult::Rows(rows) => {
            let now = now_unix();
            let mut n = 0usize;
            for row in &rows {
                let exp: u64 = col(row, 1).trim().parse().unwrap_or(u64::MAX);
                if exp <= now {
                    delete_expired(env, &cfg, &col(row, 0));
                    n += 1;
                }
            }
            if n > 0 {
                ser_log!(L_DBG, "msilo: {n} expired messages deleted");
            }
        }
        JobResult::Failed(why) => {
            ser_log!(L_WARN, "msilo: the sweep of expired messages failed: {why}");
        }
        _ => {}
    }
    // The deliveries went out already: the sweep's outcome is not the script's business.
    ActionResult::Ret(1)
}

/// A value for a header line: no line breaks from the database.
fn oneline(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// A delivery's final answer: 2xx deletes the message, anything else leaves it stored.
fn delivered(
    services: &Services,
    deliveries: &Deliveries,
    cfg: &MsiloConfig,
    mid: &str,
    key: &str,
    aor: &str,
    r: &UacResult,
) {
    if !(200..300).contains(&r.code) {
        deliveries.release(key);
        ser_log!(
            L_NOTICE,
            "msilo: message {mid} to {aor} not delivered ({} {}): kept",
            r.code,
            r.reason
        );
        return;
    }
    if services.db.post(delete(cfg, mid)) {
        ser_log!(L_DBG, "msilo: message {mid} delivered to {aor}");
    } else {
        // Still stored: the next REGISTER after REMEMBER delivers it once more.
        ser_log!(
            L_ERR,
            "ERROR: msilo: message {mid} delivered to {aor}, but its delete was refused (write queue full or no database)"
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ctx(raw: &str) -> Ctx {
        let msg = crate::wire::Message::parse(bytes::Bytes::from(raw.to_string())).unwrap();
        Ctx::new(
            msg,
            "10.0.0.2:5062".parse().unwrap(),
            "10.0.0.1:5060".parse().unwrap(),
            Proto::Udp,
        )
    }

    fn cfg() -> MsiloConfig {
        MsiloConfig::resolve(None)
    }

    const MSG: &str = "MESSAGE sip:Bob@Example.COM:5060;transport=udp SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK1\r\nFrom: \"A\" <sip:alice@x;lr>;tag=a1\r\n\
        To: <sip:bob@example.com>\r\nCall-ID: c1\r\nCSeq: 1 MESSAGE\r\nExpires: 60\r\n\
        Content-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\n\r\nhello";

    fn get<'a>(p: &'a Pending, c: &str) -> &'a str {
        p.row
            .iter()
            .find(|(k, _)| k == c)
            .and_then(|(_, v)| v.as_deref())
            .unwrap()
    }

    #[test]
    fn the_row_is_sers() {
        let p = message_row(&ctx(MSG), &cfg(), 0).unwrap();
        assert_eq!(get(&p, "src_addr"), "sip:alice@x");
        assert_eq!(get(&p, "dst_addr"), "sip:bob@example.com");
        assert_eq!(get(&p, "r_uri"), "sip:Bob@Example.COM:5060");
        assert_eq!(
            (p.username.as_str(), p.domain.as_str()),
            ("Bob", "example.com")
        );
        assert_eq!(get(&p, "ctype"), "text/plain; charset=utf-8");
        assert_eq!(get(&p, "body"), "hello");
        let inc: u64 = get(&p, "inc_time").parse().unwrap();
        let exp: u64 = get(&p, "exp_time").parse().unwrap();
        assert_eq!(exp - inc, 60, "Expires below expire_time wins");
        assert!(p.notice.is_none());
        // Mode 2: the To URI.
        let p = message_row(&ctx(MSG), &cfg(), 2).unwrap();
        assert_eq!(get(&p, "r_uri"), "sip:bob@example.com");
    }

    #[test]
    fn what_is_refused() {
        let empty = MSG.replace(
            "Content-Length: 5\r\n\r\nhello",
            "Content-Length: 0\r\n\r\n",
        );
        assert!(message_row(&ctx(&empty), &cfg(), 0)
            .unwrap_err()
            .contains("no body"));
        let mut c = cfg();
        c.registrar = Some("sip:registrar@example.com".into());
        let from_reg = MSG.replace("sip:alice@x;lr", "sip:registrar@example.com");
        assert!(message_row(&ctx(&from_reg), &c, 0)
            .unwrap_err()
            .contains("from the registrar"));
        let p = message_row(&ctx(MSG), &c, 0).unwrap();
        assert_eq!(
            p.notice,
            Some(("sip:alice@x".to_string(), "sip:bob@example.com".to_string()))
        );
    }

    #[test]
    fn a_delivery_is_claimed_once() {
        let d = Deliveries::default();
        let t = Instant::now();
        assert!(d.claim("k", t));
        assert!(!d.claim("k", t + Duration::from_secs(1)));
        d.release("k");
        assert!(d.claim("k", t));
        assert!(d.claim("k", t + REMEMBER + Duration::from_secs(1)));
        d.purge(t + REMEMBER * 3);
        assert!(d.map.pin().is_empty());
    }
}
