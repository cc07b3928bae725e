//! Management wired to the running proxy: the command registry ([`registry`]) over a
//! [`server::Control`], and the front ends (FIFO, JSON-RPC unix socket, HTTP) on one thread with a
//! tokio runtime ([`Mgmt::start`] / [`Mgmt::stop`], started after the proxy, stopped before it).
//!
//! Settings: the FIFO from `-i` or the `fifo` core option with `fifo_mode`; the rest are ser
//! extensions on the command line: `--rpc-socket=PATH`, `--rpc-socket-mode=OCTAL` (0660),
//! `--http=ADDR:PORT`, `--http-token=TOKEN` (or env `SER_HTTP_TOKEN`). Nothing configured: no
//! thread is started.
//!
//! Commands registered here: SER's core set, `sl_stats`, and ser's `reload` (the SIGHUP config
//! reload) and `stats` (the traffic counters). Modules' commands (tm's `t_stats`, `t_hash`,
//! `t_uac_dlg`, usrloc's `ul_*`) are registered in [`registry`] too, each with a formatter from
//! `controlplane::mgmt::format`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use controlplane::mgmt::core::{self, ServerInfo};
use controlplane::mgmt::metrics::Sources;
use controlplane::mgmt::{fifo, format, http, jsonrpc, Framing, Registry, Reply};
use dataplane::script::ir::CoreOptions;
use dataplane::ser_log;
use dataplane::shard::log::{L_ERR, L_NOTICE};
use dataplane::stats::{Totals, CLASSES, METHODS};
use serde_json::json;

use crate::server::Control;
use crate::Cli;

/// Where management listens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MgmtConfig {
    pub fifo: Option<PathBuf>,
    pub fifo_mode: u32,
    pub rpc_socket: Option<PathBuf>,
    pub rpc_socket_mode: u32,
    pub http: Option<SocketAddr>,
    pub http_token: Option<String>,
}

impl MgmtConfig {
    /// `-i` before the `fifo` option (an empty path disables the FIFO, as in SER).
    pub fn from_cli(cli: &Cli, opts: &CoreOptions) -> MgmtConfig {
        MgmtConfig {
            fifo: cli
                .fifo
                .clone()
                .or_else(|| opts.fifo.clone())
                .filter(|f| !f.is_empty())
                .map(PathBuf::from),
            fifo_mode: opts.fifo_mode,
            rpc_socket: cli.rpc_socket.clone(),
            rpc_socket_mode: cli.rpc_socket_mode.unwrap_or(0o660),
            http: cli.http,
            http_token: cli
                .http_token
                .clone()
                .or_else(|| std::env::var("SER_HTTP_TOKEN").ok())
                .filter(|t| !t.is_empty()),
        }
    }

    fn any(&self) -> bool {
        self.fifo.is_some() || self.rpc_socket.is_some() || self.http.is_some()
    }
}

fn stats_lines(t: &Totals, per_shard: &[u64]) -> (Vec<String>, serde_json::Value) {
    let mut lines = Vec::new();
    let mut obj = serde_json::Map::new();
    let mut put = |k: String, v: u64| {
        lines.push(format!("{k} = {v}"));
        obj.insert(k, json!(v));
    };
    for (m, v) in METHODS.iter().zip(t.requests_in) {
        put(format!("requests_received.{m}"), v);
    }
    for (c, v) in CLASSES.iter().zip(t.replies_in) {
        put(format!("replies_received.{c}"), v);
    }
    for (m, v) in METHODS.iter().zip(t.requests_out) {
        put(format!("requests_sent.{m}"), v);
    }
    for (c, v) in CLASSES.iter().zip(t.replies_out) {
        put(format!("replies_sent.{c}"), v);
    }
    put("dropped".into(), t.dropped);
    put("overload_503".into(), t.overload_503);
    for (i, v) in per_shard.iter().enumerate() {
        put(format!("shard.{i}.messages"), *v);
    }
    (lines, serde_json::Value::Object(obj))
}

/// The process table `ps` shows: SER's descriptions for the roles ser's threads play.
fn processes(control: &Control, cfg: &MgmtConfig) -> Vec<String> {
    let mut p = vec!["attendant".to_string()];
    let socks = control.local.join(" ");
    for i in 0..control.shards {
        p.push(format!("receiver child={i} @ {socks}"));
    }
    p.push("timer".into());
    if cfg.fifo.is_some() {
        p.push("fifo server".into());
    }
    if cfg.rpc_socket.is_some() || cfg.http.is_some() {
        p.push("rpc server".into());
    }
    p
}

/// Every management command of this build.
pub fn registry(
    control: &Control,
    cfg: &MgmtConfig,
    argv: Vec<String>,
) -> Result<Registry, String> {
    let mut reg = Registry::new();
    let (c, pcfg) = (control.clone(), cfg.clone());
    core::register(
        &mut reg,
        ServerInfo {
            started: SystemTime::now(),
            argv,
            server_header: format!(
                "ser ({} ({}/{}))",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::ARCH,
                std::env::consts::OS
            ),
            processes: Arc::new(move || processes(&c, &pcfg)),
            ctime: core::ctime_utc,
        },
    )?;
    let c = control.clone();
    reg.register("sl_stats", "stateless reply statistics", move |_| {
        format::sl_stats_reply(&c.sl_stats())
    })?;
    let c = control.clone();
    reg.register(
        "reload",
        "recompile the config file and swap it in",
        move |_| match c.reload() {
            Ok(()) => Reply::status(200, "configuration reloaded")
                .with_data(json!({"reloaded": c.config().display().to_string()})),
            Err(text) => Reply::status(500, "reload failed, the running configuration stays")
                .with_body(text.lines().map(String::from).collect()),
        },
    )?;
    let c = control.clone();
    reg.register(
        "stats",
        "traffic counters (summed over shards)",
        move |_| {
            let st = &c.services().stats;
            let per_shard: Vec<u64> = (0..c.shards).map(|i| st.shard_totals(i).handled).collect();
            let (lines, data) = stats_lines(&st.sum(), &per_shard);
            Reply::ok(lines).with_data(data)
        },
    )?;
    register_tm(&mut reg, control)?;
    register_usrloc(&mut reg, control)?;
    let c = control.clone();
    reg.register(
        "auth_flush",
        "forget cached credentials: of one user (user, domain) or all",
        move |p| {
            let auth = &c.services().auth;
            match p {
                [] => {
                    auth.invalidate_all();
                    Reply::status(200, "credential, group and domain caches flushed")
                }
                [user, domain] => {
                    auth.credentials_changed(user, domain);
                    Reply::status(
                        200,
                        format!("cached credentials of {user}@{domain} flushed"),
                    )
                }
                _ => Reply::status(400, "auth_flush: give no parameter or user and domain"),
            }
        },
    )?;
    Ok(reg)
}

fn contact_of(b: &dataplane::usrloc::Binding, now: u64) -> format::Contact {
    format::Contact {
        uri: b.contact.to_string(),
        q: f32::from(b.q) / 1000.0,
        expires_in: (!b.is_permanent()).then(|| b.expires as i64 - now as i64),
        call_id: b.callid.to_string(),
        cseq: b.cseq,
        user_agent: b.user_agent.to_string(),
        received: b.received.as_deref().unwrap_or("").to_string(),
        flags: b.flags,
    }
}

/// Where a management request to `uri` goes when its host is a name: `sip:IP:PORT;transport=…` of
/// the first RFC 3263 target (the resolver of `SER_NAMESERVER`, else the system's); `None` when the
/// URI already names an address (or is not a SIP URI: the transaction layer answers that).
async fn resolve_hop(uri: &str) -> Result<Option<String>, String> {
    use dataplane::dns::{host_port_of_uri, TargetHost};
    use dataplane::wire::via::Transport;
    let Ok(u) = dataplane::wire::uri::Uri::parse(uri.as_bytes()) else {
        return Ok(None);
    };
    let Some(t) = host_port_of_uri(&u) else {
        return Ok(None);
    };
    let name = match t.host {
        TargetHost::Name(n) if !n.eq_ignore_ascii_case("localhost") => n.to_string(),
        _ => return Ok(None),
    };
    let resolver = match std::env::var("SER_NAMESERVER")
        .ok()
        .and_then(|a| a.parse::<SocketAddr>().ok())
    {
        Some(ns) => controlplane::dns::SipResolver::with_nameserver(ns),
        None => controlplane::dns::SipResolver::system().map_err(|e| e.to_string())?,
    };
    let (targets, _) = resolver
        .resolve(&name, t.port, t.transport, t.secure)
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    let Some(first) = targets.first() else {
        return Err(format!("{name}: no address"));
    };
    let transport = match first.transport {
        Transport::Tcp | Transport::Tls => "tcp",
        _ => "udp",
    };
    let host = match first.addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    };
    Ok(Some(format!("sip:{host};transport={transport}")))
}

/// db_mode 3 (the database is the store): the bindings of `table` as (username, domain, binding)
/// rows, of one AOR or all.
fn db_bindings(
    c: &Control,
    cfg: &dataplane::usrloc::UsrlocConfig,
    table: &str,
    aor: Option<(&str, &str)>,
) -> Result<Vec<(String, String, dataplane::usrloc::Binding)>, Reply> {
    match c.db_job(cfg.select_job(table, aor)) {
        dataplane::offload::JobResult::Rows(rows) => {
            Ok(rows.iter().filter_map(|r| cfg.binding_of_row(r)).collect())
        }
        other => Err(Reply::status(
            500,
            format!("reading table {table} failed: {other:?}"),
        )),
    }
}

/// db_mode 3: one change written to the database (waited for).
fn db_change(
    c: &Control,
    cfg: &dataplane::usrloc::UsrlocConfig,
    table: &str,
    user: &str,
    domain: &str,
    change: &dataplane::usrloc::Change,
) -> Result<(), Reply> {
    let w = cfg.write_of(table, user, domain, change);
    match c.db_job(dataplane::offload::Job::DbWrite(w)) {
        dataplane::offload::JobResult::Failed(e) => Err(Reply::status(
            500,
            format!("writing table {table} failed: {e}"),
        )),
        _ => Ok(()),
    }
}

/// usrloc's commands over the shared location store: `ul_stats`, `ul_rm`, `ul_rm_contact`,
/// `ul_dump`, `ul_flush`, `ul_add`, `ul_show_contact`. Tables are the ones the running script
/// names (SER answered "table not found" for others); changes are persisted per db_mode like a
/// REGISTER's.
fn register_usrloc(reg: &mut Registry, control: &Control) -> Result<(), String> {
    use dataplane::usrloc::time::now_unix as now_unix_secs;
    use dataplane::usrloc::{aor_of_text, script_tables, UsrlocConfig};
    // (config, whether the script knows the table)
    fn setup(c: &Control, table: &str) -> (UsrlocConfig, bool) {
        let loaded = c.shared().program.load();
        let cfg = UsrlocConfig::from_program(Some(&loaded.program));
        let known = script_tables(&loaded.program).iter().any(|t| t == table);
        (cfg, known)
    }
    let c = control.clone();
    reg.register("ul_stats", "registered contacts per table", move |_| {
        let loaded = c.shared().program.load();
        let cfg = UsrlocConfig::from_program(Some(&loaded.program));
        let mut stats = if cfg.db_mode == 3 {
            let now = now_unix_secs();
            let mut v = Vec::new();
            for t in script_tables(&loaded.program) {
                let rows = match db_bindings(&c, &cfg, &t, None) {
                    Ok(r) => r,
                    Err(r) => return r,
                };
                let valid = rows.iter().filter(|(_, _, b)| b.is_valid(now)).count();
                let mut aors: Vec<(&str, &str)> = rows
                    .iter()
                    .map(|(u, d, _)| (u.as_str(), d.as_str()))
                    .collect();
                aors.sort_unstable();
                aors.dedup();
                v.push(dataplane::usrloc::TableStats {
                    table: t,
                    records: aors.len(),
                    contacts: valid,
                    expired: rows.len() - valid,
                });
            }
            v
        } else {
            c.services().usrloc.stats(now_unix_secs())
        };
        for t in script_tables(&loaded.program) {
            if !stats.iter().any(|s| s.table == t) {
                stats.push(dataplane::usrloc::TableStats {
                    table: t,
                    records: 0,
                    contacts: 0,
                    expired: 0,
                });
            }
        }
        let rows: Vec<format::TableStats> = stats
            .iter()
            .map(|s| format::TableStats {
                table: s.table.clone(),
                registered: s.contacts as u64,
                expired: s.expired as u64,
            })
            .collect();
        format::ul_stats_reply(&rows)
    })?;
    let c = control.clone();
    reg.register("ul_rm", "remove an AOR's bindings", move |p| {
        let (table, user) = match format::parse_table_user(p) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let (cfg, known) = setup(&c, &table);
        if !known {
            return format::ul_rm_reply(&table, &user, format::Removal::NoTable);
        }
        let (key, username, domain) = aor_of_text(&user, cfg.use_domain, cfg.case_sensitive);
        if cfg.db_mode == 3 {
            let rows = match db_bindings(&c, &cfg, &table, Some((&username, &domain))) {
                Ok(r) => r,
                Err(r) => return r,
            };
            if rows.is_empty() {
                return format::ul_rm_reply(&table, &user, format::Removal::NoUser);
            }
            for (u, d, b) in &rows {
                let gone = dataplane::usrloc::Change::Delete(b.contact.clone());
                if let Err(r) = db_change(&c, &cfg, &table, u, d, &gone) {
                    return r;
                }
            }
            return format::ul_rm_reply(&table, &user, format::Removal::Removed);
        }
        let s = c.services();
        let r = if s.usrloc.remove_aor(&table, &key, &cfg, &s.db) {
            format::Removal::Removed
        } else {
            format::Removal::NoUser
        };
        format::ul_rm_reply(&table, &user, r)
    })?;
    let c = control.clone();
    reg.register("ul_rm_contact", "remove one binding", move |p| {
        let (table, user, contact) = match format::parse_table_user_contact(p) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let (cfg, known) = setup(&c, &table);
        if !known {
            return format::ul_rm_contact_reply(&table, &user, &contact, format::Removal::NoTable);
        }
        let (key, username, domain) = aor_of_text(&user, cfg.use_domain, cfg.case_sensitive);
        if cfg.db_mode == 3 {
            let rows = match db_bindings(&c, &cfg, &table, Some((&username, &domain))) {
                Ok(r) => r,
                Err(r) => return r,
            };
            let r = match rows
                .iter()
                .find(|(_, _, b)| dataplane::usrloc::same_contact(&b.contact, &contact))
            {
                _ if rows.is_empty() => format::Removal::NoUser,
                None => format::Removal::NoContact,
                Some((u, d, b)) => {
                    let gone = dataplane::usrloc::Change::Delete(b.contact.clone());
                    if let Err(r) = db_change(&c, &cfg, &table, u, d, &gone) {
                        return r;
                    }
                    format::Removal::Removed
                }
            };
            return format::ul_rm_contact_reply(&table, &user, &contact, r);
        }
        let s = c.services();
        let r = if s.usrloc.show(&table, &key, now_unix_secs()).is_none() {
            format::Removal::NoUser
        } else if s.usrloc.remove_contact(&table, &key, &contact, &cfg, &s.db) {
            format::Removal::Removed
        } else {
            format::Removal::NoContact
        };
        format::ul_rm_contact_reply(&table, &user, &contact, r)
    })?;
    let c = control.clone();
    reg.register("ul_dump", "every binding", move |_| {
        let now = now_unix_secs();
        let loaded = c.shared().program.load();
        let cfg = UsrlocConfig::from_program(Some(&loaded.program));
        if cfg.db_mode == 3 {
            let mut tables = Vec::new();
            for t in script_tables(&loaded.program) {
                let rows = match db_bindings(&c, &cfg, &t, None) {
                    Ok(r) => r,
                    Err(r) => return r,
                };
                let mut by_aor: std::collections::BTreeMap<String, Vec<format::Contact>> =
                    std::collections::BTreeMap::new();
                for (u, d, b) in rows.iter().filter(|(_, _, b)| b.is_valid(now)) {
                    let aor = if cfg.use_domain && !d.is_empty() {
                        format!("{u}@{d}")
                    } else {
                        u.clone()
                    };
                    by_aor.entry(aor).or_default().push(contact_of(b, now));
                }
                let recs = by_aor
                    .into_iter()
                    .map(|(aor, contacts)| format::Record { aor, contacts })
                    .collect();
                tables.push((t, recs));
            }
            return format::ul_dump_reply(&tables);
        }
        let tables: Vec<(String, Vec<format::Record>)> = c
            .services()
            .usrloc
            .dump(now)
            .into_iter()
            .map(|t| {
                let recs = t
                    .aors
                    .iter()
                    .map(|(aor, bs)| format::Record {
                        aor: aor.clone(),
                        contacts: bs.iter().map(|b| contact_of(b, now)).collect(),
                    })
                    .collect();
                (t.table, recs)
            })
            .collect();
        format::ul_dump_reply(&tables)
    })?;
    let c = control.clone();
    reg.register(
        "ul_flush",
        "write changed bindings to the DB now",
        move |_| {
            let loaded = c.shared().program.load();
            let cfg = UsrlocConfig::from_program(Some(&loaded.program));
            let s = c.services();
            let n = s.usrloc.flush(&cfg, &s.db);
            Reply::status(200, "ul_flush completed").with_data(json!({ "written": n }))
        },
    )?;
    let c = control.clone();
    reg.register("ul_add", "add a binding", move |p| {
        let a = match format::parse_ul_add(p) {
            Ok(a) => a,
            Err(r) => return r,
        };
        let (cfg, known) = setup(&c, &a.table);
        if !known {
            return Reply::status(400, format!("table ({}) not found", a.table));
        }
        let (key, user, domain) = aor_of_text(&a.user, cfg.use_domain, cfg.case_sensitive);
        let q = (a.q * 1000.0).round() as u16;
        if cfg.db_mode == 3 {
            let now = now_unix_secs();
            let b = dataplane::usrloc::Binding {
                contact: a.contact.as_str().into(),
                expires: if a.expires == 0 {
                    0
                } else {
                    now + u64::from(a.expires)
                },
                q: q.min(1000),
                callid: "ul_add".into(),
                cseq: 1,
                received: None,
                user_agent: "".into(),
                flags: if a.expires == 0 {
                    dataplane::usrloc::FL_PERMANENT
                } else {
                    0
                },
                last_modified: now,
            };
            let change = dataplane::usrloc::Change::Upsert(b);
            return match db_change(&c, &cfg, &a.table, &user, &domain, &change) {
                Ok(()) => format::ul_add_reply(&a),
                Err(r) => r,
            };
        }
        let s = c.services();
        match s.usrloc.add(
            &a.table,
            &key,
            &user,
            &domain,
            &a.contact,
            a.expires,
            q,
            now_unix_secs(),
            &cfg,
            &s.db,
        ) {
            Ok(()) => format::ul_add_reply(&a),
            Err(e) => {
                let (code, reason) = e.status();
                Reply::status(code, reason)
            }
        }
    })?;
    let c = control.clone();
    reg.register("ul_show_contact", "an AOR's bindings", move |p| {
        let (table, user) = match format::parse_table_user(p) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let (cfg, known) = setup(&c, &table);
        if !known {
            return Reply::status(400, format!("table ({table}) not found"));
        }
        let (key, username, domain) = aor_of_text(&user, cfg.use_domain, cfg.case_sensitive);
        let now = now_unix_secs();
        if cfg.db_mode == 3 {
            let rows = match db_bindings(&c, &cfg, &table, Some((&username, &domain))) {
                Ok(r) => r,
                Err(r) => return r,
            };
            let mut bs: Vec<_> = rows
                .into_iter()
                .map(|(_, _, b)| b)
                .filter(|b| b.is_valid(now))
                .collect();
            bs.sort_by(|x, y| y.q.cmp(&x.q).then(y.last_modified.cmp(&x.last_modified)));
            let contacts: Vec<format::Contact> = bs.iter().map(|b| contact_of(b, now)).collect();
            return format::ul_show_contact_reply(Some(&contacts));
        }
        let contacts: Option<Vec<format::Contact>> = c
            .services()
            .usrloc
            .show(&table, &key, now)
            .map(|bs| bs.iter().map(|b| contact_of(b, now)).collect());
        format::ul_show_contact_reply(contacts.as_deref())
    })?;
    Ok(())
}

fn t_stats_of(t: &dataplane::txn::TmTotals) -> format::TStats {
    format::TStats {
        current: t.current,
        waiting: t.waiting,
        total: t.total,
        total_local: t.total_local,
        replied_locally: t.replied_locally,
        completed: t.completed,
    }
}

/// `t_reply`'s lines (as [`Framing::TReply`] delivers them): code, reason, `hash:label`, To tag
/// (`.` or empty: ser's own), header lines, `.`, body lines.
fn parse_t_reply(p: &[String]) -> Result<dataplane::proxy::server::ExternalReply, Reply> {
    let bad = |why: String| Reply::status(400, why);
    let line = |i: usize| p.get(i).map(String::as_str).unwrap_or("");
    let code: u16 = match line(0).trim().parse() {
        Ok(c) if (100..700).contains(&c) => c,
        _ => return Err(bad(format!("bad status code: '{}'", line(0)))),
    };
    let Some((shard, txn)) = dataplane::proxy::server::parse_trans_id(line(2)) else {
        return Err(bad(format!(
            "bad transaction id (hash:label): '{}'",
            line(2)
        )));
    };
    let to_tag = match line(3).trim() {
        "." => String::new(),
        t => t.to_string(),
    };
    let rest = p.get(4..).unwrap_or(&[]);
    let split = rest.iter().position(|l| l == ".").unwrap_or(rest.len());
    let mut headers = String::new();
    for h in rest
        .get(..split)
        .unwrap_or(&[])
        .iter()
        .filter(|l| !l.is_empty())
    {
        if !h.contains(':') {
            return Err(bad(format!("bad header line: '{h}'")));
        }
        headers.push_str(h);
        headers.push_str("\r\n");
    }
    let body: String = rest
        .get(split + 1..)
        .unwrap_or(&[])
        .iter()
        .map(|l| format!("{l}\r\n"))
        .collect();
    Ok(dataplane::proxy::server::ExternalReply {
        shard,
        txn,
        code,
        reason: line(1).to_string(),
        to_tag,
        headers,
        body: body.into_bytes(),
        done: Box::new(|_| {}),
    })
}

/// tm's commands: `t_stats`, `t_hash` (one line per shard's table), `t_uac_dlg`, `t_reply`
/// (also as SER vm's `vm_reply`).
fn register_tm(reg: &mut Registry, control: &Control) -> Result<(), String> {
    for name in ["t_reply", "vm_reply"] {
        let c = control.clone();
        reg.register_async(
            name,
            "answer a transaction by its hash:label (a media server behind module vm)",
            Framing::TReply,
            move |p| {
                let c = c.clone();
                Box::pin(async move {
                    let mut r = match parse_t_reply(&p) {
                        Ok(r) => r,
                        Err(e) => return e,
                    };
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    r.done = Box::new(move |res| {
                        let _ = tx.send(res);
                    });
                    if c.shared().tm.reply(r).is_err() {
                        return Reply::status(481, "no such transaction (no such shard)");
                    }
                    match tokio::time::timeout(Duration::from_secs(5), rx).await {
                        Ok(Ok(Ok(()))) => Reply::status(200, "reply sent"),
                        Ok(Ok(Err(why))) => Reply::status(481, why),
                        _ => Reply::status(500, "the shard did not answer"),
                    }
                })
            },
        )?;
    }
    let c = control.clone();
    reg.register("t_stats", "transaction statistics", move |_| {
        format::t_stats_reply(&t_stats_of(&c.shared().tm.totals()))
    })?;
    let c = control.clone();
    reg.register("t_hash", "transaction table sizes", move |_| {
        let tm = &c.shared().tm;
        let slots: Vec<format::HashSlot> = tm
            .table_sizes()
            .iter()
            .enumerate()
            .map(|(i, &current)| format::HashSlot {
                current,
                total: tm.shard_totals(i).total,
            })
            .collect();
        format::t_hash_reply(&slots)
    })?;
    let c = control.clone();
    reg.register_async(
        "t_uac_dlg",
        "send a request statefully; answers with its final reply's status",
        Framing::UacDlg,
        move |p| {
            let c = c.clone();
            Box::pin(async move {
                let u = match format::parse_t_uac_dlg(&p) {
                    Ok(u) => u,
                    Err(r) => return r,
                };
                let mut headers = String::new();
                for h in &u.headers {
                    headers.push_str(h);
                    headers.push_str("\r\n");
                }
                // The shards send only to addresses: a host name is located here first (RFC
                // 3263, off the hot path) and the request goes to what it resolved to.
                let hop = u.next_hop.clone().unwrap_or_else(|| u.ruri.clone());
                let next_hop = match resolve_hop(&hop).await {
                    Ok(Some(h)) => Some(h),
                    Ok(None) => u.next_hop.clone(),
                    Err(e) => {
                        return format::t_uac_dlg_reply(
                            478,
                            &format!("Unresolvable destination ({e})"),
                        )
                    }
                };
                let (tx, rx) = tokio::sync::oneshot::channel();
                let req = dataplane::txn::table::UacRequest {
                    method: u.method,
                    ruri: u.ruri,
                    headers,
                    body: u.body.into_bytes(),
                    next_hop,
                    done: Box::new(move |r| {
                        let _ = tx.send(r);
                    }),
                };
                if c.shared().tm.uac(req).is_err() {
                    return Reply::status(500, "no shard to send the request");
                }
                // The transaction ends by itself (Timer B/F at 64·T1); the bound only guards
                // against a lost completion.
                match tokio::time::timeout(Duration::from_secs(300), rx).await {
                    Ok(Ok(r)) => format::t_uac_dlg_reply(r.code, &r.reason),
                    _ => format::t_uac_dlg_reply(500, "transaction lost"),
                }
            })
        },
    )?;
    Ok(())
}

/// Metric sources of this build (see `controlplane::mgmt::metrics`).
pub fn sources(control: &Control) -> Sources {
    let mut s = Sources::new(Arc::clone(&control.services().stats));
    let c = control.clone();
    s.sl_by_class = Some(Arc::new(move || c.sl_stats().by_class));
    let c = control.clone();
    s.db_queue = Some(Arc::new(move || {
        let db = &c.services().db;
        (db.queued() as u64, db.refused())
    }));
    let c = control.clone();
    s.transactions = Some(Arc::new(move || t_stats_of(&c.shared().tm.totals())));
    let c = control.clone();
    s.contacts = Some(Arc::new(move || {
        c.services()
            .usrloc
            .stats(dataplane::usrloc::time::now_unix())
            .iter()
            .map(|t| t.contacts as u64)
            .sum()
    }));
    s
}

/// The running management thread.
pub struct Mgmt {
    thread: Option<JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    ready: Arc<AtomicBool>,
    socket: Option<PathBuf>,
}

impl Mgmt {
    /// Opens the FIFO, the socket and the HTTP listener (errors are returned, so `ser` does not
    /// start half-managed) and serves them on one thread.
    pub fn start(cfg: &MgmtConfig, control: Control, argv: Vec<String>) -> Result<Mgmt, String> {
        let ready = Arc::new(AtomicBool::new(false));
        if !cfg.any() {
            return Ok(Mgmt {
                thread: None,
                stop: None,
                ready,
                socket: None,
            });
        }
        if let Some(a) = &cfg.http {
            http::check_bind(a, cfg.http_token.as_deref())?;
        }
        let registry = Arc::new(registry(&control, cfg, argv)?);
        let sources = sources(&control);
        drop(control);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("management runtime: {e}"))?;
        let (fifo_path, unix, tcp) = rt.block_on(async {
            let fifo_path = match &cfg.fifo {
                Some(p) => {
                    fifo::create(p, cfg.fifo_mode)
                        .map_err(|e| format!("cannot create FIFO {}: {e}", p.display()))?;
                    Some(p.clone())
                }
                None => None,
            };
            let unix = match &cfg.rpc_socket {
                Some(p) => Some((
                    jsonrpc::bind_unix(p, cfg.rpc_socket_mode)
                        .map_err(|e| format!("cannot bind RPC socket {}: {e}", p.display()))?,
                    p.clone(),
                )),
                None => None,
            };
            let tcp = match cfg.http {
                Some(a) => Some(
                    tokio::net::TcpListener::bind(a)
                        .await
                        .map_err(|e| format!("cannot bind HTTP management on {a}: {e}"))?,
                ),
                None => None,
            };
            Ok::<_, String>((fifo_path, unix, tcp))
        })?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let http_state = Arc::new(http::HttpState {
            registry: Arc::clone(&registry),
            sources,
            token: cfg.http_token.clone(),
            ready: Arc::clone(&ready),
        });
        let socket = unix.as_ref().map(|(_, p)| p.clone());
        let thread = std::thread::Builder::new()
            .name("ser-mgmt".into())
            .spawn(move || {
                rt.block_on(async move {
                    let mut tasks = tokio::task::JoinSet::new();
                    if let Some(p) = fifo_path {
                        let r = Arc::clone(&registry);
                        tasks.spawn(async move {
                            if let Err(e) = fifo::serve(p.clone(), r).await {
                                ser_log!(L_ERR, "fifo server on {} stopped: {e}", p.display());
                            }
                        });
                    }
                    if let Some((l, p)) = unix {
                        let r = Arc::clone(&registry);
                        tasks.spawn(async move {
                            if let Err(e) = jsonrpc::serve_unix(l, p, r).await {
                                ser_log!(L_ERR, "RPC socket stopped: {e}");
                            }
                        });
                    }
                    if let Some(l) = tcp {
                        tasks.spawn(async move {
                            if let Err(e) = http::serve(l, http_state).await {
                                ser_log!(L_ERR, "HTTP management stopped: {e}");
                            }
                        });
                    }
                    let _ = stop_rx.await;
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    drop(registry);
                });
                // Sync commands still running on the blocking pool get a moment to finish.
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .map_err(|e| format!("cannot start the management thread: {e}"))?;
        ready.store(true, Ordering::Relaxed);
        ser_log!(L_NOTICE, "management started");
        Ok(Mgmt {
            thread: Some(thread),
            stop: Some(stop_tx),
            ready,
            socket,
        })
    }

    /// Stops serving and releases the proxy's shared state.
    pub fn stop(mut self) {
        self.ready.store(false, Ordering::Relaxed);
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let started = Instant::now();
            let _ = t.join();
            ser_log!(
                dataplane::shard::log::L_DBG,
                "management stopped in {:?}",
                started.elapsed()
            );
        }
        if let Some(p) = self.socket.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_lines_name_every_counter() {
        let mut t = Totals::default();
        t.requests_in[0] = 3;
        t.replies_out[3] = 2;
        let (lines, data) = stats_lines(&t, &[5, 0]);
        assert!(lines.contains(&"requests_received.INVITE = 3".to_string()));
        assert!(lines.contains(&"replies_sent.4xx = 2".to_string()));
        assert!(lines.contains(&"shard.0.messages = 5".to_string()));
        assert_eq!(data["replies_sent.4xx"], json!(2));
    }
}
