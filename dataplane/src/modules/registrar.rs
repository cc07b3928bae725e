//! Script module `registrar`: REGISTER processing (`save`) and location lookup (`lookup`) on top of
//! the usrloc store ([`crate::usrloc`], reached through [`Env::services`]). Needs `usrloc` and `sl`
//! loaded as well.
//!
//! `save(table)` follows RFC 3261 §10.3: the AOR is the To URI (`user`, or `user@domain` with
//! `use_domain`; lower-cased unless `case_sensitive`); `Contact: *` removes every binding and is
//! valid only alone and with `Expires: 0`; each contact's expiration is its `expires` parameter,
//! else the Expires header, else `default_expires`, capped at `max_expires` (0 = no cap); a
//! non-zero expiration below `min_expires` (and below one hour) is refused with 423 and
//! Min-Expires; q is the contact's `q`, else `default_q`/100; a binding changed by a REGISTER with
//! the same Call-ID and a CSeq not higher than the one stored is left alone; expires=0 removes.
//! The 200 lists every binding in force (`<uri>;q=…;expires=N`) and a Date header. Malformed To,
//! Call-ID, CSeq or Contact → 400 saying which. Too many bindings → 503.
//!
//! `lookup(table)`: the AOR of the request URI; its best binding (highest q, then most recently
//! registered; most recent first with `desc_time_order`) becomes the request URI, the others are
//! appended to the destination set in that order when `append_branches` is 1 (the 0.8.11 README's
//! meaning; the Admin Guide's sentence has it backwards). -1 when none.
//!
//! db_mode 3 (DB only, several servers on one database): `lookup` suspends on a `Job::Db` select
//! of the AOR's rows; `save` selects the AOR's rows, applies the REGISTER to them, then awaits each
//! resulting write (`Job::DbWrite`) before replying, so the 200 is sent only once the database has
//! the bindings. Other modes work on the in-memory store; its persistence is usrloc's business.
//!
//! Differences from SER 0.8.11 (RFC 3261 wins): `min_expires` refuses with 423 instead of raising
//! the expiration; a REGISTER whose Contact is malformed is refused as a whole with 400.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `save` | Str | request | store the Contacts of a REGISTER in the table and reply |
//! | `lookup` | Str | request | rewrite the request URI with the registered contacts; false if none |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `default_expires` | int | `3600` |
//! | `default_q` | int | `0` (hundredths: 50 = q 0.5) |
//! | `append_branches` | int | `1` |
//! | `desc_time_order` | int | `0` |
//! | `use_domain` | int | `0` |
//! | `case_sensitive` | int | `0` |
//! | `min_expires` | int | `60` |
//! | `max_expires` | int | `0` |
//! | `nat_flag` | int | `-1`: the script flag marking a REGISTER from behind NAT (SER 0.9's; none here by default): its bindings keep the source address (`received`), and `lookup` sends to it (the request URI stays the contact) |

use std::collections::VecDeque;

use smallvec::SmallVec;

use crate::offload::{DbWrite, Job, JobResult};
use crate::script::env::{level, ActionResult, Env};
use crate::script::ir::Arg;
use crate::script::{ArgKind::*, Ctx, FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};
use crate::usrloc::{
    self, aor_key, time, ContactUpdate, Record, RegisterInfo, Reject, UsrlocConfig, MAX_CONTACT_LEN,
};
use crate::wire::HeaderId;

/// Declaration of module `registrar`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "registrar",
    aliases: &[],
    depends: &["usrloc", "sl"],
    functions: &[
        FunctionDecl::new(
            "save",
            &[Str],
            RouteKinds::REQUEST,
            "store the Contacts of a REGISTER in the table and reply",
        )
        .implemented_by(save)
        .restricted("it replies statelessly to the REGISTER"),
        FunctionDecl::new(
            "lookup",
            &[Str],
            RouteKinds::REQUEST,
            "rewrite the request URI with the registered contacts; false if none",
        )
        .implemented_by(lookup),
    ],
    params: &[
        ParamDecl::int("default_expires", 3600),
        ParamDecl::int("default_q", 0),
        ParamDecl::int("append_branches", 1),
        ParamDecl::int("desc_time_order", 0),
        ParamDecl::int("use_domain", 0),
        ParamDecl::int("case_sensitive", 0),
        ParamDecl::int("min_expires", 60),
        ParamDecl::int("max_expires", 0),
        ParamDecl::int("nat_flag", -1),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "registrar (save, lookup) on top of usrloc",
    config: Some(resolve_config),
    commands: &[],
};

/// The registrar's parameters for one call.
#[derive(Debug, Clone)]
pub struct RegConfig {
    /// Seconds when neither the contact nor the request says.
    pub default_expires: u32,
    /// q in thousandths for contacts without one.
    pub default_q: u16,
    /// Put every contact into the destination set (`lookup`).
    pub append_branches: bool,
    /// Order by registration time instead of q.
    pub desc_time_order: bool,
    /// AOR user part compared case-sensitively.
    pub case_sensitive: bool,
    /// Shortest non-zero expiration accepted (0 = any).
    pub min_expires: u32,
    /// Longest expiration granted (0 = no limit).
    pub max_expires: u32,
    /// usrloc's settings (db_mode, columns, use_domain).
    pub ul: UsrlocConfig,
    /// The script flag marking a REGISTER from behind NAT (`nat_flag`; none when negative).
    pub nat_flag: Option<u32>,
}

impl RegConfig {
    /// The parameters of `program` (defaults without one), with usrloc's.
    pub fn resolve(program: Option<&crate::script::ir::Program>) -> RegConfig {
        let int = |n| {
            crate::modules::param(program, &MODULE, n)
                .and_then(|p| p.int())
                .unwrap_or(0)
        };
        let u32_of = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
        RegConfig {
            default_expires: u32_of(int("default_expires")),
            default_q: u16::try_from((int("default_q").clamp(0, 100)) * 10).unwrap_or(0),
            append_branches: int("append_branches") != 0,
            desc_time_order: int("desc_time_order") != 0,
            case_sensitive: int("case_sensitive") != 0, // also in `ul`
            min_expires: u32_of(int("min_expires")),
            max_expires: u32_of(int("max_expires")),
            ul: UsrlocConfig::from_program(program),
            nat_flag: crate::modules::param(program, &MODULE, "nat_flag")
                .and_then(|p| p.int())
                .and_then(|f| u32::try_from(f).ok())
                .filter(|&f| f < 32),
        }
    }

    /// The parameters of the program `env` runs: resolved at load, borrowed.
    pub fn of(env: &dyn Env) -> std::borrow::Cow<'_, RegConfig> {
        crate::script::config(env, RegConfig::resolve)
    }
}

fn resolve_config(program: &crate::script::ir::Program) -> crate::script::ModuleConfig {
    std::sync::Arc::new(RegConfig::resolve(Some(program)))
}

/// The location tables the script names in `save`/`lookup` calls (what usrloc loads at start and
/// management lists), sorted. Read from the program's calls of this module's functions, once.
pub fn script_tables(program: &crate::script::ir::Program) -> Vec<String> {
    let Some((id, _)) = crate::modules::by_name(MODULE.name) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for c in program.calls_of(id) {
        if let Some(crate::script::ir::Arg::Str(t)) = c.args.first() {
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
    }
    out.sort();
    out
}

/// What a REGISTER asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegAction {
    /// No Contact: list the bindings.
    Query,
    /// `Contact: *` with `Expires: 0`: remove them all.
    RemoveAll,
    /// Add, refresh or remove these (URI, expires, q).
    Contacts(Vec<(String, u32, u16)>),
}

/// A REGISTER, checked and reduced to what the store needs (owned: it may wait for the DB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// The AOR's key in the table.
    pub key: SmallVec<[u8; 64]>,
    /// User part of the AOR.
    pub username: String,
    /// Domain of the AOR (empty without `use_domain`).
    pub domain: String,
    /// Call-ID.
    pub callid: String,
    /// CSeq number.
    pub cseq: u32,
    /// User-Agent.
    pub user_agent: String,
    /// What to do.
    pub action: RegAction,
    /// `sip:ip:port` the REGISTER came from, stored with the bindings when the UA is behind NAT
    /// (the request has `nat_flag` set, or nathelper's `fix_nated_contact` ran on it).
    pub received: Option<String>,
}

/// A refusal: status, reason, extra header lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Status code.
    pub code: u16,
    /// Reason phrase.
    pub reason: &'static str,
    /// Extra header lines (`Min-Expires: 60\r\n`).
    pub headers: String,
}

fn bad(reason: &'static str) -> Refusal {
    Refusal {
        code: 400,
        reason,
        headers: String::new(),
    }
}

/// Checks a REGISTER (RFC 3261 §10.3 steps 5–7, without touching any binding).
pub fn parse_register(msg: &crate::wire::Message, cfg: &RegConfig) -> Result<Register, Refusal> {
    let to = msg.to().map_err(|_| bad("Bad To Header"))?;
    let user = to
        .uri
        .user_unescaped()
        .filter(|u| !u.is_empty())
        .ok_or(bad("Bad Address Of Record: no user part in To"))?;
    let user = std::str::from_utf8(&user)
        .map_err(|_| bad("Bad Address Of Record"))?
        .to_string();
    let domain = std::str::from_utf8(to.uri.host_raw)
        .map_err(|_| bad("Bad Address Of Record"))?
        .to_ascii_lowercase();
    let use_domain = cfg.ul.use_domain;
    let key = aor_key(
        user.as_bytes(),
        use_domain.then_some(domain.as_bytes()),
        cfg.case_sensitive,
    );
    let username = if cfg.case_sensitive {
        user
    } else {
        user.to_ascii_lowercase()
    };
    let domain = if use_domain { domain } else { String::new() };
    let callid = msg
        .call_id()
        .ok()
        .and_then(|c| std::str::from_utf8(c).ok())
        .ok_or(bad("Missing or Bad Call-ID"))?
        .to_string();
    let cseq = msg.cseq().map_err(|_| bad("Bad CSeq"))?.num;
    let user_agent = msg
        .header_value(HeaderId::UserAgent)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    // An Expires header that does not parse counts as absent (RFC 4475 §3.1.2.19's advice).
    let header_expires = msg.expires().and_then(Result::ok);
    let star = msg
        .contact_is_star()
        .map_err(|_| bad("Bad Contact: * must be the only Contact"))?;
    let action = if star {
        if header_expires != Some(0) {
            return Err(bad("Bad Contact: * needs Expires: 0"));
        }
        RegAction::RemoveAll
    } else {
        let mut list = Vec::new();
        for c in msg.contacts() {
            let c = c.map_err(|_| bad("Bad Contact"))?.value;
            let uri = std::str::from_utf8(c.addr.uri_raw).map_err(|_| bad("Bad Contact"))?;
            if uri.is_empty() || uri.len() > MAX_CONTACT_LEN {
                return Err(bad("Bad Contact: URI empty or too long"));
            }
            let q = c
                .q()
                .map_err(|_| bad("Bad Contact: malformed q"))?
                .unwrap_or(cfg.default_q);
            let mut expires = c
                .expires()
                .ok()
                .flatten()
                .or(header_expires)
                .unwrap_or(cfg.default_expires);
            if cfg.max_expires > 0 && expires > cfg.max_expires {
                expires = cfg.max_expires;
            }
            if expires > 0 && expires < cfg.min_expires && expires < 3600 {
                return Err(Refusal {
                    code: 423,
                    reason: "Interval Too Brief",
                    headers: format!("Min-Expires: {}\r\n", cfg.min_expires),
                });
            }
            list.push((uri.to_string(), expires, q));
        }
        if list.is_empty() {
            RegAction::Query
        } else {
            RegAction::Contacts(list)
        }
    };
    Ok(Register {
        key,
        username,
        domain,
        callid,
        cseq,
        user_agent,
        action,
        received: None,
    })
}

impl Register {
    /// Applies this REGISTER to `cur` (RFC 3261 §10.3 steps 6–7): `Ok(None)` when it changes nothing.
    pub fn apply(
        &self,
        cur: Option<&Record>,
        now: u64,
        room: usize,
    ) -> Result<Option<(Record, Vec<usrloc::Change>)>, Reject> {
        let empty;
        let cur = match cur {
            Some(c) => c,
            None => {
                empty = Record::new(&self.username, &self.domain);
                &empty
            }
        };
        let info = RegisterInfo {
            callid: &self.callid,
            cseq: self.cseq,
            user_agent: &self.user_agent,
            received: self.received.as_deref(),
        };
        match &self.action {
            RegAction::Query => Ok(None),
            RegAction::RemoveAll => Ok(Some(cur.remove_all(&info, now))),
            RegAction::Contacts(list) => {
                let updates: SmallVec<[ContactUpdate<'_>; 4]> = list
                    .iter()
                    .map(|(c, e, q)| ContactUpdate {
                        contact: c,
                        expires: *e,
                        q: *q,
                    })
                    .collect();
                cur.apply(&info, &updates, now, room).map(Some)
            }
        }
    }
}

/// Contact lines of a 200 to REGISTER (every binding in force, best first) and a Date line.
pub fn ok_headers(rec: Option<&Record>, now: u64) -> String {
    let mut s = String::with_capacity(64 + rec.map_or(0, |r| r.bindings.len() * 96));
    if let Some(r) = rec {
        for i in r.ordered(now, false) {
            s.push_str("Contact: ");
            r.bindings[i].write_contact_value(now, &mut s);
            s.push_str("\r\n");
        }
    }
    s.push_str("Date: ");
    time::write_http_date(now, &mut s);
    s.push_str("\r\n");
    s
}

fn log(ctx: &Ctx, env: &mut dyn Env, lvl: i32, text: &str) {
    if ctx.log_enabled(lvl) {
        env.log(lvl, text.as_bytes());
    }
}

fn reply(ctx: &mut Ctx, env: &mut dyn Env, code: u16, reason: &str, headers: &str) -> ActionResult {
    ctx.reply_headers.extend_from_slice(headers.as_bytes());
    let r = env.reply(ctx, code, reason.as_bytes());
    if code >= 300 {
        return ActionResult::Ret(-1);
    }
    r
}

fn table_arg<'a>(ctx: &Ctx, env: &mut dyn Env, args: &'a [Arg], name: &str) -> Option<&'a str> {
    match args {
        [Arg::Str(t)] => Some(t.as_str()),
        _ => {
            log(
                ctx,
                env,
                level::ERR,
                &format!("BUG: registrar {name}: arguments not fixed up as declared"),
            );
            None
        }
    }
}

/// `save(table)`.
fn save(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let Some(table) = table_arg(ctx, env, args, "save") else {
        return ActionResult::Ret(-1);
    };
    let cfg = RegConfig::of(env);
    let mut reg = match parse_register(&ctx.msg, &cfg) {
        Ok(r) => r,
        Err(e) => {
            log(
                ctx,
                env,
                level::INFO,
                &format!("save: REGISTER refused: {} {}", e.code, e.reason),
            );
            return reply(ctx, env, e.code, e.reason, &e.headers);
        }
    };
    let nated = cfg.nat_flag.is_some_and(|f| ctx.is_flag_set(f))
        || ctx
            .module_state
            .get::<crate::modules::nathelper::FixedContact>()
            .is_some();
    if nated {
        reg.received = Some(crate::modules::nathelper::received_uri(ctx.src));
    }
    let now = time::now_unix();
    if cfg.ul.db_mode == 3 {
        let job = cfg.ul.select_job(table, Some((&reg.username, &reg.domain)));
        ctx.module_state.set(PendingSave {
            reg,
            table: table.to_string(),
            writes: VecDeque::new(),
            headers: String::new(),
            through: false,
            current: None,
        });
        return ctx.suspend_with(job, save_db_selected);
    }
    let Some(services) = env.services() else {
        log(
            ctx,
            env,
            level::ERR,
            "save: no location store in this environment",
        );
        return reply(ctx, env, 500, "Server Internal Error", "");
    };
    let store = &services.usrloc;
    // db_mode 1 (write-through): the changes are written before the 200, so an acknowledged
    // registration is in the database even if ser is killed right after answering.
    let through = cfg.ul.db_mode == 1;
    let sink = (!through).then_some(&services.db);
    let res = store.update_with(table, &reg.key, &cfg.ul, sink, |cur, room| {
        reg.apply(cur, now, room)
    });
    let headers = match res {
        Ok(Some((rec, changes))) if through && !changes.is_empty() => {
            let writes = changes
                .iter()
                .map(|c| cfg.ul.write_of(table, &rec.username, &rec.domain, c))
                .collect();
            let p = PendingSave {
                reg,
                table: table.to_string(),
                writes,
                headers: ok_headers(Some(&rec), now),
                through: true,
                current: None,
            };
            return next_write(ctx, env, p);
        }
        Ok(Some((rec, _))) => ok_headers(Some(&rec), now),
        Ok(None) => store.with_record(table, &reg.key, |r| ok_headers(r, now)),
        Err(rej) => {
            let (code, reason) = rej.status();
            log(
                ctx,
                env,
                level::WARN,
                &format!("save: {} refused: {reason}", reg.username),
            );
            return reply(ctx, env, code, reason, "");
        }
    };
    reply(ctx, env, 200, "OK", &headers)
}

/// A db_mode 3 `save` between its jobs.
struct PendingSave {
    reg: Register,
    table: String,
    /// Writes still to do, in order.
    writes: VecDeque<DbWrite>,
    /// The 200's header lines, ready once the writes are done.
    headers: String,
    /// db_mode 1: the bindings are in memory already; a write the database refuses goes to the
    /// background writer's queue (retried there, as before) instead of failing the REGISTER.
    through: bool,
    /// The write in flight (db_mode 1), to queue again if it fails.
    current: Option<DbWrite>,
}

/// db_mode 3 `save`, the AOR's rows are in: apply the REGISTER, then write the changes one by one.
fn save_db_selected(
    ctx: &mut Ctx,
    env: &mut dyn Env,
    _args: &[Arg],
    result: JobResult,
) -> ActionResult {
    let Some(mut p) = ctx.module_state.take::<PendingSave>() else {
        return ActionResult::Ret(-1);
    };
    let rows = match result {
        JobResult::Rows(r) => r,
        other => {
            log(
                ctx,
                env,
                level::ERR,
                &format!(
                    "save: reading the bindings of {} failed: {other:?}",
                    p.reg.username
                ),
            );
            return reply(ctx, env, 500, "Server Internal Error", "");
        }
    };
    let cfg = RegConfig::of(env);
    let now = time::now_unix();
    let cur = record_of_rows(&cfg.ul, &p.reg.username, &p.reg.domain, &rows);
    let (rec, changes) = match p.reg.apply(Some(&cur), now, usize::MAX) {
        Ok(Some(x)) => x,
        Ok(None) => (cur, Vec::new()),
        Err(rej) => {
            let (code, reason) = rej.status();
            return reply(ctx, env, code, reason, "");
        }
    };
    p.headers = ok_headers(Some(&rec), now);
    p.writes = changes
        .iter()
        .map(|c| cfg.ul.write_of(&p.table, &rec.username, &rec.domain, c))
        .collect();
    next_write(ctx, env, p)
}

fn next_write(ctx: &mut Ctx, env: &mut dyn Env, mut p: PendingSave) -> ActionResult {
    match p.writes.pop_front() {
        Some(w) => {
            if p.through {
                p.current = Some(w.clone());
            }
            ctx.module_state.set(p);
            ctx.suspend_with(Job::DbWrite(w), save_db_written)
        }
        None => reply(ctx, env, 200, "OK", &p.headers),
    }
}

/// db_mode 3 `save`: one write done; the next, or the reply.
fn save_db_written(
    ctx: &mut Ctx,
    env: &mut dyn Env,
    _args: &[Arg],
    result: JobResult,
) -> ActionResult {
    let Some(mut p) = ctx.module_state.take::<PendingSave>() else {
        return ActionResult::Ret(-1);
    };
    if let (JobResult::Failed(why), true) = (&result, p.through) {
        // The database is down or slow: SIP is not held up; the background writer retries.
        log(
            ctx,
            env,
            level::WARN,
            &format!(
                "save: writing a binding of {} failed ({why}); queued for the background writer",
                p.reg.username
            ),
        );
        if let Some(services) = env.services() {
            for w in p.current.take().into_iter().chain(p.writes.drain(..)) {
                services.db.post(w);
            }
        }
        return reply(ctx, env, 200, "OK", &p.headers);
    }
    if let JobResult::Failed(why) = result {
        log(
            ctx,
            env,
            level::ERR,
            &format!(
                "save: writing a binding of {} failed: {why}",
                p.reg.username
            ),
        );
        return reply(ctx, env, 500, "Server Internal Error", "");
    }
    next_write(ctx, env, p)
}

/// The bindings of one AOR from rows of [`UsrlocConfig::columns`].
pub fn record_of_rows(
    cfg: &UsrlocConfig,
    username: &str,
    domain: &str,
    rows: &[Vec<Option<String>>],
) -> Record {
    let mut rec = Record::new(username, domain);
    for row in rows {
        if let Some((_, _, b)) = cfg.binding_of_row(row) {
            if rec.bindings.len() < usrloc::MAX_CONTACTS_PER_AOR {
                rec.bindings.push(b);
            }
        }
    }
    rec
}

/// `lookup(table)`.
fn lookup(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let Some(table) = table_arg(ctx, env, args, "lookup") else {
        return ActionResult::Ret(-1);
    };
    let cfg = RegConfig::of(env);
    let (key, username, domain) = {
        let Ok(uri) = crate::wire::uri::Uri::parse(ctx.uri()) else {
            log(
                ctx,
                env,
                level::ERR,
                "lookup: the request URI does not parse",
            );
            return ActionResult::Ret(-1);
        };
        let Some(user) = uri.user_unescaped().filter(|u| !u.is_empty()) else {
            log(
                ctx,
                env,
                level::DBG,
                "lookup: the request URI has no user part",
            );
            return ActionResult::Ret(-1);
        };
        let key = aor_key(
            &user,
            cfg.ul.use_domain.then_some(uri.host_raw),
            cfg.case_sensitive,
        );
        if cfg.ul.db_mode == 3 {
            let u = String::from_utf8_lossy(&user);
            let u = if cfg.case_sensitive {
                u.into_owned()
            } else {
                u.to_ascii_lowercase()
            };
            let d = String::from_utf8_lossy(uri.host_raw).to_ascii_lowercase();
            (key, u, d)
        } else {
            (key, String::new(), String::new())
        }
    };
    if cfg.ul.db_mode == 3 {
        let d = if cfg.ul.use_domain {
            domain.as_str()
        } else {
            ""
        };
        let job = cfg.ul.select_job(table, Some((&username, d)));
        return ctx.suspend_with(job, lookup_db_rows);
    }
    let now = time::now_unix();
    let Some(services) = env.services() else {
        log(
            ctx,
            env,
            level::ERR,
            "lookup: no location store in this environment",
        );
        return ActionResult::Ret(-1);
    };
    let (found, dropped) = services.usrloc.with_record(table, &key, |r| match r {
        Some(r) => apply_lookup(ctx, r, now, &cfg),
        None => (false, 0),
    });
    after_lookup(ctx, env, found, dropped)
}

/// Sets the request URI and the destination set from `rec`: (found, branches that did not fit).
fn apply_lookup(ctx: &mut Ctx, rec: &Record, now: u64, cfg: &RegConfig) -> (bool, usize) {
    let order = rec.ordered(now, cfg.desc_time_order);
    let Some((&first, rest)) = order.split_first() else {
        return (false, 0);
    };
    ctx.set_uri(rec.bindings[first].contact.as_bytes());
    // A binding registered from behind NAT is reached at the address its REGISTER came from.
    if let Some(r) = rec.bindings[first].received.as_deref() {
        ctx.dst_uri = Some(crate::script::ctx::UriBuf::from_slice(r.as_bytes()));
    }
    let mut dropped = 0;
    if cfg.append_branches {
        for &i in rest {
            if !ctx.append_branch(rec.bindings[i].contact.as_bytes()) {
                dropped += 1;
            }
        }
    }
    (true, dropped)
}

fn after_lookup(ctx: &mut Ctx, env: &mut dyn Env, found: bool, dropped: usize) -> ActionResult {
    if dropped > 0 {
        log(
            ctx,
            env,
            level::ERR,
            &format!("lookup: {dropped} contacts left out: max nr of branches exceeded (too many branches)"),
        );
    }
    ActionResult::from_bool(found)
}

/// db_mode 3 `lookup`: the AOR's rows are in.
fn lookup_db_rows(
    ctx: &mut Ctx,
    env: &mut dyn Env,
    _args: &[Arg],
    result: JobResult,
) -> ActionResult {
    let rows = match result {
        JobResult::Rows(r) => r,
        other => {
            log(
                ctx,
                env,
                level::ERR,
                &format!("lookup: reading the location table failed: {other:?}"),
            );
            return ActionResult::Ret(-1);
        }
    };
    let cfg = RegConfig::of(env);
    let rec = record_of_rows(&cfg.ul, "", "", &rows);
    let (found, dropped) = apply_lookup(ctx, &rec, time::now_unix(), &cfg);
    after_lookup(ctx, env, found, dropped)
}
