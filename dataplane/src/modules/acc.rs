//! Script module `acc`: call accounting to syslog (ser's log), SQL and RADIUS (SER 0.8.11's acc).
//! Needs `tm` loaded as well: accounting is of stateful transactions.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `acc_log_request` | Str | request, failure | report the request to the log now: comment (e.g. "404 Not Found") |
//! | `acc_db_request` | Str, Str | request, failure | record the request in the database now: comment, table |
//! | `acc_rad_request` | Str | request, failure | send an Accounting-Request for the request now: comment; true when the server answered |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `log_level` | int | `2` (L_NOTICE: a record is logged when `log_level <= debug`) |
//! | `log_flag` | int | `0` (off) — transactions with this flag are reported when they complete |
//! | `log_missed_flag` | int | `0` (off) — reported as missed when they complete negatively |
//! | `log_fmt` | string | `"miocfs"` (see below) |
//! | `report_ack` | int | `1` — the end-to-end ACK of an accounted, answered INVITE is reported too |
//! | `report_cancels` | int | `0` — CANCEL transactions are not reported unless set |
//! | `early_media` | int | `0` — a 183 sent upstream is reported as answered too (with its code) |
//! | `failed_transactions` | int | `0` — negative outcomes are reported by `log_flag`/`db_flag` only if set |
//! | `db_url` | string | `""` (the server's default database) |
//! | `db_flag` | int | `0` (off) — the `acc` table gets a row per completed transaction |
//! | `db_missed_flag` | int | `0` (off) — the `missed_calls` table gets a row per missed one |
//! | `radius_config` | string | `"/usr/local/etc/radiusclient/radiusclient.conf"` (servers, secrets, dictionary: see [`crate::radius`]) |
//! | `radius_flag` | int | `0` (off) — an Accounting-Request per completed transaction |
//! | `radius_missed_flag` | int | `0` (off) — an Accounting-Request (`Failed`) per missed one |
//! | `service_type` | int | `15` (Sip-Session) — the `Service-Type` of the records |
//!
//! `log_fmt` letters (each printed as `name=value`, in the order given, joined by `, `): `m`
//! method, `i` i-uri (the Request-URI as received), `o` o-uri (as forwarded on the branch that
//! won), `c` call_id, `f` from (the whole header), `r` from_uri, `t` to (the whole header, with
//! the tag of the reply), `d` to_tag, `s` code, `u` uid (the digest username, else From's user),
//! `p` r-user (the user part of i-uri). Unknown letters are warned about at load and skipped.
//!
//! A transaction is reported when its first final reply goes upstream (the completion hook of
//! the transaction layer, [`crate::script::Completion`]): after a failure_route's serial forking
//! only the final outcome counts, with the flags as the failure_route left them. A log record
//! reads `ACC: transaction answered: method=INVITE, i-uri=…, …, code=200`; a missed one
//! `ACC: call missed: …`; `acc_log_request` `ACC: request accounted: …` with the comment's status.
//! The transaction's own ACK (for a negative reply) is absorbed and a CANCEL's transaction is not
//! reported (unless `report_cancels`): one record per call attempt.
//!
//! With `report_ack` (SER's TMCB_E2EACK callback), the ACK of a 2xx to an INVITE that was
//! accounted gets a record of its own when the script relays it with `t_relay` (the ACK is a new
//! request, end to end): `ACC: request acknowledged: method=ACK, …, code=200` with the INVITE's
//! final status, and a row in `acc` / an Accounting-Request where the INVITE had one (`db_flag`,
//! `radius_flag`). The ACK is matched by Call-ID, From tag, CSeq number and the 2xx's To tag
//! against the answered INVITEs of the last 64·T1 (32 s: RFC 6026's Accepted state, while 2xx
//! retransmissions and their ACKs may come), once: its retransmissions add nothing. Only
//! accounted INVITEs are remembered (at most [`ACK_PENDING_MAX`]; the oldest go first).
//!
//! SQL records go through the server's queue of database writes (ordered, retried while the
//! database is down, drained at a clean stop; bounded, and a record refused by a full queue is
//! logged): columns `sip_from`, `sip_to`, `sip_status` (`"200 OK"`), `sip_method`, `i_uri`,
//! `o_uri`, `from_uri`, `to_uri`, `sip_callid`, `username`, `domain`, `fromtag`, `totag`, `time`.
//!
//! RADIUS records (RFC 2866, with SER's attributes): `Acct-Status-Type` (`Start` for an answered
//! request, `Stop` for an answered BYE, `Failed` for a negative outcome), `Service-Type`,
//! `Sip-Response-Code`, `Sip-Method` (SER's method bits: INVITE 1, CANCEL 2, ACK 4, BYE 8…),
//! `User-Name` (uid@domain), `Calling-Station-Id` (From URI), `Called-Station-Id` (To URI),
//! `Sip-Translated-Request-URI` (o-uri), `Acct-Session-Id` (Call-ID), `Sip-To-Tag`,
//! `Sip-From-Tag`, `Sip-CSeq`. Records of completed transactions go through a bounded queue to
//! the controlplane's RADIUS client (a full queue refuses and logs; never waited for); a record
//! no server acknowledged is logged. `radius_config` is read at load; a missing or bad file is
//! logged then when `radius_flag`/`radius_missed_flag` are set, and `acc_rad_request` fails.

use std::sync::Arc;

use bytes::Bytes;

use crate::offload::DbWrite;
use crate::script::env::{ActionResult, Env};
use crate::script::ir::{Arg, Program};
use crate::script::{
    ArgKind::*, Completion, Ctx, FunctionDecl, ModuleConfig, ModuleConfigs, ModuleDecl, ParamDecl,
    Renamed, RouteKinds,
};
use crate::ser_log;
use crate::services::Services;
use crate::shard::log::{L_ERR, L_WARN};
use crate::wire::{Message, Method};

/// Declaration of module `acc`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "acc",
    aliases: &[],
    depends: &["tm"],
    functions: &[
        FunctionDecl::new(
            "acc_log_request",
            &[Str],
            RouteKinds::REQUEST_FAILURE,
            "report the request to syslog now: comment (e.g. \"404 Not Found\")",
        )
        .implemented_by(acc_log_request),
        FunctionDecl::new(
            "acc_db_request",
            &[Str, Str],
            RouteKinds::REQUEST_FAILURE,
            "report the request to the database: comment, table",
        )
        .implemented_by(acc_db_request),
        FunctionDecl::new(
            "acc_rad_request",
            &[Str],
            RouteKinds::REQUEST_FAILURE,
            "report the request via RADIUS: comment",
        )
        .implemented_by(acc_rad_request),
    ],
    params: &[
        ParamDecl::int("log_level", 2),
        ParamDecl::int("log_flag", 0),
        ParamDecl::int("log_missed_flag", 0),
        ParamDecl::str("log_fmt", DEFAULT_FMT),
        ParamDecl::int("report_ack", 1),
        ParamDecl::int("report_cancels", 0),
        ParamDecl::int("early_media", 0),
        ParamDecl::int("failed_transactions", 0),
        ParamDecl::str("db_url", ""),
        ParamDecl::int("db_flag", 0),
        ParamDecl::int("db_missed_flag", 0),
        ParamDecl::str(
            "radius_config",
            "/usr/local/etc/radiusclient/radiusclient.conf",
        ),
        ParamDecl::int("radius_flag", 0),
        ParamDecl::int("radius_missed_flag", 0),
        ParamDecl::int("service_type", 15),
    ],
    renamed_functions: &[Renamed {
        old: "acc_request",
        new: Some("acc_log_request"),
        note: "acc_request is now called acc_log_request",
    }],
    renamed_params: &[
        Renamed {
            old: "acc_flag",
            new: Some("log_flag"),
            note: "acc_flag was renamed log_flag",
        },
        Renamed {
            old: "log_missed_calls",
            new: Some("log_missed_flag"),
            note: "the module's parameter is log_missed_flag",
        },
    ],
    doc: "call accounting (syslog, optionally SQL and RADIUS)",
    config: Some(resolve_config),
    commands: &[],
};

/// SER 0.8.11's default `log_fmt`.
const DEFAULT_FMT: &str = "miocfs";

/// Parameters this build accepts but does not act on (warned by `ser -c` and at start).
pub const NOT_IMPLEMENTED_PARAMS: &[&str] = &[];

/// Attributes the RADIUS dictionary must define for accounting.
const RADIUS_ATTRS: &[&str] = &[
    "Acct-Status-Type",
    "Service-Type",
    "Sip-Response-Code",
    "Sip-Method",
    "User-Name",
    "Calling-Station-Id",
    "Called-Station-Id",
    "Sip-Translated-Request-URI",
    "Acct-Session-Id",
    "Sip-To-Tag",
    "Sip-From-Tag",
    "Sip-CSeq",
];

/// One field of a log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Method,
    IUri,
    OUri,
    CallId,
    From,
    FromUri,
    To,
    ToTag,
    Code,
    Uid,
    RUser,
}

impl Field {
    fn of(letter: char) -> Option<Field> {
        Some(match letter {
            'm' => Field::Method,
            'i' => Field::IUri,
            'o' => Field::OUri,
            'c' => Field::CallId,
            'f' => Field::From,
            'r' => Field::FromUri,
            't' => Field::To,
            'd' => Field::ToTag,
            's' => Field::Code,
            'u' => Field::Uid,
            'p' => Field::RUser,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Field::Method => "method",
            Field::IUri => "i-uri",
            Field::OUri => "o-uri",
            Field::CallId => "call_id",
            Field::From => "from",
            Field::FromUri => "from_uri",
            Field::To => "to",
            Field::ToTag => "to_tag",
            Field::Code => "code",
            Field::Uid => "uid",
            Field::RUser => "r-user",
        }
    }
}

/// acc's settings, resolved once per loaded program.
#[derive(Debug, Clone)]
pub struct AccConfig {
    log_level: i32,
    log_flag: Option<u32>,
    log_missed_flag: Option<u32>,
    fmt: Vec<Field>,
    report_cancels: bool,
    report_ack: bool,
    failed_transactions: bool,
    early_media: bool,
    db_url: String,
    db_flag: Option<u32>,
    db_missed_flag: Option<u32>,
    radius: crate::radius::Loaded,
    radius_flag: Option<u32>,
    radius_missed_flag: Option<u32>,
    service_type: u32,
}

fn flag(program: Option<&Program>, name: &str) -> Option<u32> {
    let n = super::param(program, &MODULE, name).and_then(|p| p.int())?;
    (1..32).contains(&n).then_some(n as u32)
}

impl AccConfig {
    fn resolve(program: Option<&Program>) -> AccConfig {
        let int = |n: &str| super::param(program, &MODULE, n).and_then(|p| p.int());
        let s = |n: &str| {
            super::param(program, &MODULE, n)
                .and_then(|p| p.str())
                .unwrap_or("")
                .to_string()
        };
        let fmt_text = s("log_fmt");
        let mut fmt = Vec::new();
        for c in fmt_text.chars() {
            match Field::of(c) {
                Some(f) => fmt.push(f),
                None if program.is_some() => ser_log!(
                    L_WARN,
                    "acc: log_fmt letter '{c}' is not known (known: miocfrtdsup): skipped"
                ),
                None => {}
            }
        }
        let radius_flag = flag(program, "radius_flag");
        let radius_missed_flag = flag(program, "radius_missed_flag");
        let radius_path = s("radius_config");
        let radius = if program.is_none() {
            Err("acc: no program loaded".to_string())
        } else if radius_flag.is_some() || radius_missed_flag.is_some() {
            crate::radius::load_logged("acc", &radius_path, RADIUS_ATTRS)
        } else {
            // Only acc_rad_request can use it: its failure is logged when it is called.
            crate::radius::load(&radius_path, RADIUS_ATTRS)
        };
        AccConfig {
            radius,
            radius_flag,
            radius_missed_flag,
            service_type: int("service_type")
                .and_then(|i| u32::try_from(i).ok())
                .unwrap_or(15),
            log_level: int("log_level").unwrap_or(2) as i32,
            log_flag: flag(program, "log_flag"),
            log_missed_flag: flag(program, "log_missed_flag"),
            fmt,
            report_cancels: int("report_cancels").unwrap_or(0) != 0,
            report_ack: int("report_ack").unwrap_or(1) != 0,
            failed_transactions: int("failed_transactions").unwrap_or(0) != 0,
            early_media: int("early_media").unwrap_or(0) != 0,
            db_url: s("db_url"),
            db_flag: flag(program, "db_flag"),
            db_missed_flag: flag(program, "db_missed_flag"),
        }
    }

    fn any(&self) -> bool {
        self.log_flag.is_some()
            || self.log_missed_flag.is_some()
            || self.db_flag.is_some()
            || self.db_missed_flag.is_some()
            || self.radius_flag.is_some()
            || self.radius_missed_flag.is_some()
    }
}

fn resolve_config(program: &Program) -> ModuleConfig {
    Arc::new(AccConfig::resolve(Some(program)))
}

// ------------------------------------------------------------------------------------- records

/// What one record says, taken from the request (and the reply / outbound branch).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Record {
    method: String,
    i_uri: String,
    o_uri: String,
    call_id: String,
    from: String,
    from_uri: String,
    from_tag: String,
    from_user: String,
    from_host: String,
    to: String,
    to_uri: String,
    to_tag: String,
    code: u16,
    reason: String,
    uid: String,
    r_user: String,
    cseq: String,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Record {
    /// The record of `req`; `reply`'s To tag when the request has none; `o_uri` as forwarded.
    fn of(req: &Message, reply: Option<&Message>, o_uri: &[u8], code: u16, reason: &str) -> Record {
        let mut r = Record {
            method: text(req.method_bytes()),
            i_uri: text(req.request_uri_bytes().unwrap_or_default()),
            o_uri: text(o_uri),
            call_id: req.call_id().map(text).unwrap_or_default(),
            code,
            reason: reason.to_string(),
            ..Record::default()
        };
        if let Ok(f) = req.from() {
            r.from = text(f.raw);
            r.from_uri = text(f.uri_raw);
            r.from_tag = f.tag().map(text).unwrap_or_default();
            r.from_user = f.uri.user.map(text).unwrap_or_default();
            r.from_host = text(f.uri.host_raw);
        }
        let to = reply.and_then(|m| m.to().ok()).or_else(|| req.to().ok());
        if let Some(t) = to {
            r.to = text(t.raw);
            r.to_uri = text(t.uri_raw);
            r.to_tag = t.tag().map(text).unwrap_or_default();
        }
        r.cseq = req.cseq().map(|c| c.num.to_string()).unwrap_or_default();
        if let Some(Ok(u)) = req.request_uri() {
            r.r_user = u.user.map(text).unwrap_or_default();
        }
        let creds = req
            .proxy_authorization()
            .chain(req.authorization())
            .find_map(|c| c.ok().and_then(|c| c.value.username().map(text)));
        r.uid = creds.unwrap_or_else(|| r.from_user.clone());
        r
    }

    fn field(&self, f: Field) -> std::borrow::Cow<'_, str> {
        use std::borrow::Cow::Borrowed;
        match f {
            Field::Method => Borrowed(&self.method),
            Field::IUri => Borrowed(&self.i_uri),
            Field::OUri => Borrowed(&self.o_uri),
            Field::CallId => Borrowed(&self.call_id),
            Field::From => Borrowed(&self.from),
            Field::FromUri => Borrowed(&self.from_uri),
            Field::To => Borrowed(&self.to),
            Field::ToTag => Borrowed(&self.to_tag),
            Field::Code => self.code.to_string().into(),
            Field::Uid => Borrowed(&self.uid),
            Field::RUser => Borrowed(&self.r_user),
        }
    }

    /// `ACC: <what>: name=value, …`.
    fn line(&self, what: &str, fmt: &[Field]) -> String {
        let mut s = format!("ACC: {what}: ");
        for (i, f) in fmt.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(f.name());
            s.push('=');
            s.push_str(&self.field(*f));
        }
        s
    }

    /// The row of SER's `acc` / `missed_calls` tables.
    fn row(&self, now_unix: u64) -> Vec<(String, Option<String>)> {
        let status = if self.reason.is_empty() {
            self.code.to_string()
        } else {
            format!("{} {}", self.code, self.reason)
        };
        [
            ("sip_from", &self.from),
            ("sip_to", &self.to),
            ("sip_status", &status),
            ("sip_method", &self.method),
            ("i_uri", &self.i_uri),
            ("o_uri", &self.o_uri),
            ("from_uri", &self.from_uri),
            ("to_uri", &self.to_uri),
            ("sip_callid", &self.call_id),
            ("username", &self.uid),
            ("domain", &self.from_host),
            ("fromtag", &self.from_tag),
            ("totag", &self.to_tag),
            ("time", &crate::usrloc::time::datetime(now_unix)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Some(v.clone())))
        .collect()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn log_record(cfg: &AccConfig, rec: &Record, what: &str) {
    ser_log!(cfg.log_level, "{}", rec.line(what, &cfg.fmt));
}

/// Queues a row for `table`; a full queue (or no database) is logged, never waited for.
fn db_record(cfg: &AccConfig, services: Option<&Services>, rec: &Record, table: &str) -> bool {
    let Some(services) = services else {
        ser_log!(L_ERR, "acc: no database service: {table} record dropped");
        return false;
    };
    let ok = services.db.post(DbWrite::Insert {
        url: cfg.db_url.clone(),
        table: table.to_string(),
        row: rec.row(unix_now()),
    });
    if !ok {
        ser_log!(
            L_ERR,
            "acc: database queue full or no database: {table} record of Call-ID {} dropped ({} writes refused so far)",
            rec.call_id,
            services.db.refused()
        );
    }
    ok
}

/// The transaction layer's completion hook (see [`super::COMPLETION_HOOKS`]).
pub fn on_complete(done: &Completion<'_>, configs: &ModuleConfigs, services: Option<&Services>) {
    let Some(cfg) = configs.get::<AccConfig>() else {
        return;
    };
    if !cfg.any() {
        return;
    }
    let on = |f: Option<u32>| f.is_some_and(|n| done.flags & (1 << n) != 0);
    // A 183 before the outcome is accounted only with early_media (as SER did).
    if done.code < 200 && !(cfg.early_media && done.code == 183) {
        return;
    }
    let negative = done.code >= 300;
    let log = on(cfg.log_flag) && (!negative || cfg.failed_transactions);
    let db = on(cfg.db_flag) && (!negative || cfg.failed_transactions);
    let log_missed = negative && on(cfg.log_missed_flag);
    let db_missed = negative && on(cfg.db_missed_flag);
    let rad = (on(cfg.radius_flag) && (!negative || cfg.failed_transactions))
        || (negative && on(cfg.radius_missed_flag));
    if !(log || db || log_missed || db_missed || rad) {
        return;
    }
    let Ok(req) = Message::parse(done.request.clone()) else {
        return;
    };
    if req.method() == Method::Cancel && !cfg.report_cancels {
        return;
    }
    let reply = Message::parse(done.reply.clone()).ok();
    let branch = done
        .branch
        .and_then(|b| Message::parse(Bytes::clone(b)).ok());
    let o_uri = branch
        .as_ref()
        .and_then(|b| b.request_uri_bytes())
        .or_else(|| req.request_uri_bytes())
        .unwrap_or_default();
    let reason = reply
        .as_ref()
        .and_then(|r| r.reason())
        .map(text)
        .unwrap_or_default();
    let rec = Record::of(&req, reply.as_ref(), o_uri, done.code, &reason);
    if cfg.report_ack && (200..300).contains(&done.code) && req.method() == Method::Invite {
        acks::expect(&rec, log, db, rad);
    }
    if log {
        log_record(cfg, &rec, "transaction answered");
    }
    if log_missed {
        log_record(cfg, &rec, "call missed");
    }
    if db {
        db_record(cfg, services, &rec, "acc");
    }
    if db_missed {
        db_record(cfg, services, &rec, "missed_calls");
    }
    if rad {
        rad_record(cfg, services, &rec);
    }
}

// ---------------------------------------------------------------------------- end-to-end ACKs

/// The most answered INVITEs awaiting their ACK that acc remembers (all shards together).
pub const ACK_PENDING_MAX: usize = 4096;

/// Answered, accounted INVITEs awaiting their end-to-end ACK (`report_ack`). Shared by the
/// shards (an ACK may come in on another one than its INVITE); held for a map operation only.
mod acks {
    use std::collections::{HashMap, VecDeque};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use super::Record;

    /// RFC 6026's Accepted state lasts 64·T1.
    const KEEP: Duration = Duration::from_secs(32);

    /// Call-ID, From tag, CSeq number, To tag (of the 2xx).
    pub(super) type Key = (String, String, String, String);

    /// What the ACK's record takes from its INVITE.
    #[derive(Debug, Clone)]
    pub(super) struct Pending {
        pub code: u16,
        pub reason: String,
        pub log: bool,
        pub db: bool,
        pub rad: bool,
    }

    #[derive(Default)]
    struct Waiting {
        map: HashMap<Key, Pending>,
        order: VecDeque<(Instant, Key)>,
    }

    static WAITING: Mutex<Option<Waiting>> = Mutex::new(None);

    fn expire(w: &mut Waiting, now: Instant) {
        while let Some((at, _)) = w.order.front() {
            if now.duration_since(*at) < KEEP && w.order.len() <= super::ACK_PENDING_MAX {
                break;
            }
            if let Some((_, k)) = w.order.pop_front() {
                w.map.remove(&k);
            }
        }
    }

    /// Remembers the answered INVITE of `rec` (records it had: `log`, `db`, `rad`).
    pub(super) fn expect(rec: &Record, log: bool, db: bool, rad: bool) {
        if !(log || db || rad) || rec.to_tag.is_empty() {
            return;
        }
        let key = (
            rec.call_id.clone(),
            rec.from_tag.clone(),
            rec.cseq.clone(),
            rec.to_tag.clone(),
        );
        let p = Pending {
            code: rec.code,
            reason: rec.reason.clone(),
            log,
            db,
            rad,
        };
        let now = Instant::now();
        let Ok(mut g) = WAITING.lock() else {
            return;
        };
        let w = g.get_or_insert_with(Waiting::default);
        if w.map.insert(key.clone(), p).is_none() {
            w.order.push_back((now, key));
        }
        expire(w, now);
    }

    /// The INVITE the ACK of `key` acknowledges, taken (an ACK is reported once).
    pub(super) fn take(key: &Key) -> Option<Pending> {
        let mut g = WAITING.lock().ok()?;
        let w = g.as_mut()?;
        expire(w, Instant::now());
        w.map.remove(key)
    }
}

/// tm's hook for an ACK the script relays with `t_relay` (an ACK of a 2xx, end to end): with
/// `report_ack`, the ACK of an accounted, answered INVITE gets its record. `o_uri`: where it goes.
pub fn on_e2e_ack(
    ack: &Message,
    o_uri: &[u8],
    configs: &ModuleConfigs,
    services: Option<&Services>,
) {
    let Some(cfg) = configs.get::<AccConfig>() else {
        return;
    };
    if !cfg.report_ack || !cfg.any() {
        return;
    }
    let mut rec = Record::of(ack, None, o_uri, 0, "");
    let key = (
        rec.call_id.clone(),
        rec.from_tag.clone(),
        rec.cseq.clone(),
        rec.to_tag.clone(),
    );
    let Some(p) = acks::take(&key) else {
        return;
    };
    rec.code = p.code;
    rec.reason = p.reason;
    if p.log {
        log_record(cfg, &rec, "request acknowledged");
    }
    if p.db {
        db_record(cfg, services, &rec, "acc");
    }
    if p.rad {
        rad_record(cfg, services, &rec);
    }
}

// ------------------------------------------------------------------------------------- RADIUS

/// SER's method bits (`Sip-Method`).
fn method_bits(m: &str) -> u32 {
    match m {
        "INVITE" => 1,
        "CANCEL" => 2,
        "ACK" => 4,
        "BYE" => 8,
        "INFO" => 16,
        "OPTIONS" => 32,
        "UPDATE" => 64,
        "REGISTER" => 128,
        "MESSAGE" => 256,
        "SUBSCRIBE" => 512,
        "NOTIFY" => 1024,
        "PRACK" => 2048,
        "REFER" => 4096,
        _ => 0,
    }
}

/// The Accounting-Request of `rec`, or why it cannot be built.
fn rad_request(cfg: &AccConfig, rec: &Record) -> Result<crate::offload::Job, String> {
    use crate::radius::Value::{Int, Text};
    let radius = cfg.radius.as_ref().map_err(Clone::clone)?;
    let d = &radius.dict;
    let (status, default) = if rec.code >= 300 {
        ("Failed", 15)
    } else if rec.method == "BYE" {
        ("Stop", 2)
    } else {
        ("Start", 1)
    };
    let status = d.value("Acct-Status-Type", status).unwrap_or(default);
    let user = if rec.uid.contains('@') || rec.from_host.is_empty() {
        rec.uid.clone()
    } else {
        format!("{}@{}", rec.uid, rec.from_host)
    };
    let mut a = Vec::new();
    d.push(&mut a, "Acct-Status-Type", Int(status))?;
    d.push(&mut a, "Service-Type", Int(cfg.service_type))?;
    d.push(&mut a, "Sip-Response-Code", Int(u32::from(rec.code)))?;
    d.push(&mut a, "Sip-Method", Int(method_bits(&rec.method)))?;
    d.push(&mut a, "User-Name", Text(&user))?;
    d.push(&mut a, "Calling-Station-Id", Text(&rec.from_uri))?;
    d.push(&mut a, "Called-Station-Id", Text(&rec.to_uri))?;
    d.push(&mut a, "Sip-Translated-Request-URI", Text(&rec.o_uri))?;
    d.push(&mut a, "Acct-Session-Id", Text(&rec.call_id))?;
    d.push(&mut a, "Sip-To-Tag", Text(&rec.to_tag))?;
    d.push(&mut a, "Sip-From-Tag", Text(&rec.from_tag))?;
    d.push(&mut a, "Sip-CSeq", Text(&rec.cseq))?;
    Ok(crate::offload::Job::Radius(
        radius.request(crate::radius::ACCOUNTING_REQUEST, a),
    ))
}

/// Queues the Accounting-Request of `rec`; a full queue or an unusable config is logged.
fn rad_record(cfg: &AccConfig, services: Option<&Services>, rec: &Record) {
    let job = match rad_request(cfg, rec) {
        Ok(crate::offload::Job::Radius(r)) => r,
        Ok(_) => return,
        Err(e) => {
            ser_log!(
                L_ERR,
                "acc: RADIUS record of Call-ID {} dropped: {e}",
                rec.call_id
            );
            return;
        }
    };
    let Some(services) = services else {
        ser_log!(L_ERR, "acc: no services: RADIUS record dropped");
        return;
    };
    let sink = services.store::<crate::radius::AcctSink>();
    if !sink.post(job) {
        ser_log!(
            L_ERR,
            "acc: RADIUS queue full or no client: record of Call-ID {} dropped ({} refused so far)",
            rec.call_id,
            sink.refused()
        );
    }
}

// ------------------------------------------------------------------------------------- functions

/// A comment such as "404 Not Found": its status and reason (no number: 0 and the whole text).
fn comment(args: &[Arg]) -> (u16, String) {
    let c = match args.first() {
        Some(Arg::Str(s)) => s.trim(),
        _ => "",
    };
    let digits = c.bytes().take_while(u8::is_ascii_digit).count();
    match c[..digits].parse::<u16>() {
        Ok(code) if digits == 3 => (code, c[digits..].trim().to_string()),
        _ => (0, c.to_string()),
    }
}

fn request_record(ctx: &Ctx, args: &[Arg]) -> Record {
    let (code, reason) = comment(args);
    Record::of(&ctx.msg, None, ctx.uri(), code, &reason)
}

fn acc_log_request(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let cfg = crate::script::config(&*env, AccConfig::resolve);
    if !ctx.msg.is_request() {
        return ActionResult::Ret(-1);
    }
    log_record(&cfg, &request_record(ctx, args), "request accounted");
    ActionResult::Ret(1)
}

fn acc_db_request(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let cfg = crate::script::config(&*env, AccConfig::resolve);
    let table = match args.get(1) {
        Some(Arg::Str(t)) if t == "acc" || t == "missed_calls" => t.clone(),
        Some(Arg::Str(t)) => {
            ser_log!(
                L_ERR,
                "acc_db_request: table '{t}' is not one of SER's accounting tables (acc, missed_calls)"
            );
            return ActionResult::Ret(-1);
        }
        _ => return ActionResult::Ret(-1),
    };
    if !ctx.msg.is_request() {
        return ActionResult::Ret(-1);
    }
    let rec = request_record(ctx, args);
    ActionResult::from_bool(db_record(&cfg, env.services(), &rec, &table))
}

/// `acc_rad_request(comment)`: the script waits for the server's Accounting-Response
/// (true) or for every server to fail (false).
fn acc_rad_request(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let cfg = crate::script::config(&*env, AccConfig::resolve);
    if !ctx.msg.is_request() {
        return ActionResult::Ret(-1);
    }
    match rad_request(&cfg, &request_record(ctx, args)) {
        Ok(job) => ActionResult::Suspend(job),
        Err(e) => {
            ser_log!(L_ERR, "acc_rad_request: {e}");
            ActionResult::Ret(-1)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn msg(s: &str) -> Message {
        Message::parse(Bytes::from(s.replace('\n', "\r\n"))).unwrap()
    }

    #[test]
    fn a_record_has_the_fields_of_log_fmt_in_order() {
        let req = msg("INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\nFrom: \"Alice\" <sip:alice@example.com>;tag=a1\nTo: <sip:bob@example.com>\nCall-ID: c1@h\nCSeq: 1 INVITE\nContent-Length: 0\n\n");
        let reply = msg("SIP/2.0 200 OK\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\nFrom: \"Alice\" <sip:alice@example.com>;tag=a1\nTo: <sip:bob@example.com>;tag=b2\nCall-ID: c1@h\nCSeq: 1 INVITE\nContent-Length: 0\n\n");
        let rec = Record::of(&req, Some(&reply), b"sip:bob@192.0.2.9", 200, "OK");
        let fmt: Vec<Field> = "miocfsdtup".chars().filter_map(Field::of).collect();
        assert_eq!(
            rec.line("transaction answered", &fmt),
            "ACC: transaction answered: method=INVITE, i-uri=sip:bob@example.com, \
             o-uri=sip:bob@192.0.2.9, call_id=c1@h, from=\"Alice\" <sip:alice@example.com>;tag=a1, \
             code=200, to_tag=b2, to=<sip:bob@example.com>;tag=b2, uid=alice, r-user=bob"
        );
        let row = rec.row(0);
        assert!(row.contains(&("sip_status".into(), Some("200 OK".into()))));
        assert!(row.contains(&("totag".into(), Some("b2".into()))));
        assert!(row.contains(&("time".into(), Some("1970-01-01 00:00:00".into()))));
    }

    #[test]
    fn a_full_queue_refuses_and_counts_instead_of_waiting() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let services = Services {
            db: crate::offload::DbSink::new(tx),
            ..Services::default()
        };
        let cfg = AccConfig::resolve(None);
        let rec = Record {
            call_id: "q1".into(),
            code: 200,
            ..Record::default()
        };
        assert!(db_record(&cfg, Some(&services), &rec, "acc"));
        assert!(
            !db_record(&cfg, Some(&services), &rec, "acc"),
            "the bound holds"
        );
        assert_eq!(services.db.refused(), 1);
        let Ok(DbWrite::Insert { table, row, .. }) = rx.try_recv() else {
            panic!("one row queued")
        };
        assert_eq!(table, "acc");
        assert!(row.contains(&("sip_callid".into(), Some("q1".into()))));
    }

    #[test]
    fn comments_give_status_and_reason() {
        assert_eq!(
            comment(&[Arg::Str("404 Not Found".into())]),
            (404, "Not Found".into())
        );
        assert_eq!(comment(&[Arg::Str("gone".into())]), (0, "gone".into()));
        assert_eq!(comment(&[]), (0, String::new()));
    }
}
