//! usrloc's management commands over the shared location store (SER 0.8.11's usrloc FIFO
//! commands, same output). Tables are the ones the running script names in registrar's calls
//! (SER answered "table not found" for others); changes are persisted per `db_mode` like a
//! REGISTER's. With db_mode 3 the database is the store: the commands read and write it
//! directly ([`Host::db_job`], blocking on the management thread).
//!
//! | command | parameters | reply |
//! |---|---|---|
//! | `ul_stats` | — | [`ul_stats_reply`]: `Domain Registered Expired`, `'<table>' <n> <n>` |
//! | `ul_rm` | table, user | [`ul_rm_reply`] |
//! | `ul_rm_contact` | table, user, contact | [`ul_rm_contact_reply`] |
//! | `ul_dump` | — | [`ul_dump_reply`] |
//! | `ul_flush` | — | `200 ul_flush completed` |
//! | `ul_add` | table, user, contact, expires, q | [`parse_ul_add`], [`ul_add_reply`] |
//! | `ul_show_contact` | table, user | [`ul_show_contact_reply`]: `<uri>;q=0.00;expires=1012` lines, or `404 AOR not found` |

use serde_json::json;

use crate::command::{bad_params, number_param, text_param, CommandDecl, Host, Reply};
use crate::modules::registrar::script_tables;
use crate::offload::{Job, JobResult};
use crate::usrloc::time::now_unix as now_unix_secs;
use crate::usrloc::{aor_of_text, Binding, Change, TableStats as StoreStats, UsrlocConfig};

/// usrloc's commands.
pub const COMMANDS: &[CommandDecl] = &[
    CommandDecl::sync("ul_stats", "", "registered contacts per table", ul_stats),
    CommandDecl::sync("ul_rm", "table, user", "remove an AOR's bindings", ul_rm),
    CommandDecl::sync(
        "ul_rm_contact",
        "table, user, contact",
        "remove one binding",
        ul_rm_contact,
    ),
    CommandDecl::sync("ul_dump", "", "every binding", ul_dump),
    CommandDecl::sync(
        "ul_flush",
        "",
        "write changed bindings to the DB now",
        ul_flush,
    ),
    CommandDecl::sync(
        "ul_add",
        "table, user, contact, expires, q",
        "add a binding",
        ul_add,
    ),
    CommandDecl::sync(
        "ul_show_contact",
        "table, user",
        "an AOR's bindings",
        ul_show_contact,
    ),
];

/// The running program's usrloc settings and whether its script names `table`.
fn setup(host: &dyn Host, table: &str) -> (UsrlocConfig, bool) {
    let loaded = host.shared().program.load();
    let cfg = UsrlocConfig::from_program(Some(&loaded.program));
    let known = script_tables(&loaded.program).iter().any(|t| t == table);
    (cfg, known)
}

fn contact_of(b: &Binding, now: u64) -> Contact {
    Contact {
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

/// db_mode 3 (the database is the store): the bindings of `table` as (username, domain, binding)
/// rows, of one AOR or all.
fn db_bindings(
    host: &dyn Host,
    cfg: &UsrlocConfig,
    table: &str,
    aor: Option<(&str, &str)>,
) -> Result<Vec<(String, String, Binding)>, Reply> {
    match host.db_job(cfg.select_job(table, aor)) {
        JobResult::Rows(rows) => Ok(rows.iter().filter_map(|r| cfg.binding_of_row(r)).collect()),
        other => Err(Reply::status(
            500,
            format!("reading table {table} failed: {other:?}"),
        )),
    }
}

/// db_mode 3: one change written to the database (waited for).
fn db_change(
    host: &dyn Host,
    cfg: &UsrlocConfig,
    table: &str,
    user: &str,
    domain: &str,
    change: &Change,
) -> Result<(), Reply> {
    let w = cfg.write_of(table, user, domain, change);
    match host.db_job(Job::DbWrite(w)) {
        JobResult::Failed(e) => Err(Reply::status(
            500,
            format!("writing table {table} failed: {e}"),
        )),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------- handlers

fn ul_stats(host: &dyn Host, _: &[String]) -> Reply {
    let loaded = host.shared().program.load();
    let cfg = UsrlocConfig::from_program(Some(&loaded.program));
    let mut stats = if cfg.db_mode == 3 {
        let now = now_unix_secs();
        let mut v = Vec::new();
        for t in script_tables(&loaded.program) {
            let rows = match db_bindings(host, &cfg, &t, None) {
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
            v.push(StoreStats {
                table: t,
                records: aors.len(),
                contacts: valid,
                expired: rows.len() - valid,
            });
        }
        v
    } else {
        host.shared().services.usrloc.stats(now_unix_secs())
    };
    for t in script_tables(&loaded.program) {
        if !stats.iter().any(|s| s.table == t) {
            stats.push(StoreStats {
                table: t,
                records: 0,
                contacts: 0,
                expired: 0,
            });
        }
    }
    let rows: Vec<TableStats> = stats
        .iter()
        .map(|s| TableStats {
            table: s.table.clone(),
            registered: s.contacts as u64,
            expired: s.expired as u64,
        })
        .collect();
    ul_stats_reply(&rows)
}

fn ul_rm(host: &dyn Host, p: &[String]) -> Reply {
    let (table, user) = match parse_table_user(p) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (cfg, known) = setup(host, &table);
    if !known {
        return ul_rm_reply(&table, &user, Removal::NoTable);
    }
    let (key, username, domain) = aor_of_text(&user, cfg.use_domain, cfg.case_sensitive);
    if cfg.db_mode == 3 {
        let rows = match db_bindings(host, &cfg, &table, Some((&username, &domain))) {
            Ok(r) => r,
            Err(r) => return r,
        };
        if rows.is_empty() {
            return ul_rm_reply(&table, &user, Removal::NoUser);
        }
        for (u, d, b) in &rows {
            let gone = Change::Delete(b.contact.clone());
            if let Err(r) = db_change(host, &cfg, &table, u, d, &gone) {
                return r;
            }
        }
        return ul_rm_reply(&table, &user, Removal::Removed);
    }
    let s = &host.shared().services;
    let r = if s.usrloc.remove_aor(&table, &key, &cfg, &s.db) {
        Removal::Removed
    } else {
        Removal::NoUser
    };
    ul_rm_reply(&table, &user, r)
}

fn ul_rm_contact(host: &dyn Host, p: &[String]) -> Reply {
    let (table, user, contact) = match parse_table_user_contact(p) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (cfg, known) = setup(host, &table);
    if !known {
        return ul_rm_contact_reply(&table, &user, &contact, Removal::NoTable);
    }
    let (key, username, domain) = aor_of_text(&user, cfg.use_domain, cfg.case_sensitive);
    if cfg.db_mode == 3 {
        let rows = match db_bindings(host, &cfg, &table, Some((&username, &domain))) {
            Ok(r) => r,
            Err(r) => return r,
        };
        let r = match rows
            .iter()
            .find(|(_, _, b)| crate::usrloc::same_contact(&b.contact, &contact))
        {
            _ if rows.is_empty() => Removal::NoUser,
            None => Removal::NoContact,
            Some((u, d, b)) => {
                let gone = Change::Delete(b.contact.clone());
                if let Err(r) = db_change(host, &cfg, &table, u, d, &gone) {
                    return r;
                }
                Removal::Removed
            }
        };
        return ul_rm_contact_reply(&table, &user, &contact, r);
    }
    let s = &host.shared().services;
    let r = if s.usrloc.show(&table, &key, now_unix_secs()).is_none() {
        Removal::NoUser
    } else if s.usrloc.remove_contact(&table, &key, &contact, &cfg, &s.db) {
        Removal::Removed
    } else {
        Removal::NoContact
    };
    ul_rm_contact_reply(&table, &user, &contact, r)
}

fn ul_dump(host: &dyn Host, _: &[String]) -> Reply {
    let now = now_unix_secs();
    let loaded = host.shared().program.load();
    let cfg = UsrlocConfig::from_program(Some(&loaded.program));
    if cfg.db_mode == 3 {
        let mut tables = Vec::new();
        for t in script_tables(&loaded.program) {
            let rows = match db_bindings(host, &cfg, &t, None) {
                Ok(r) => r,
                Err(r) => return r,
            };
            let mut by_aor: std::collections::BTreeMap<String, Vec<Contact>> =
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
                .map(|(aor, contacts)| Record { aor, contacts })
                .collect();
            tables.push((t, recs));
        }
        return ul_dump_reply(&tables);
    }
    let tables: Vec<(String, Vec<Record>)> = host
        .shared()
        .services
        .usrloc
        .dump(now)
        .into_iter()
        .map(|t| {
            let recs = t
                .aors
                .iter()
                .map(|(aor, bs)| Record {
                    aor: aor.clone(),
                    contacts: bs.iter().map(|b| contact_of(b, now)).collect(),
                })
                .collect();
            (t.table, recs)
        })
        .collect();
    ul_dump_reply(&tables)
}

fn ul_flush(host: &dyn Host, _: &[String]) -> Reply {
    let loaded = host.shared().program.load();
    let cfg = UsrlocConfig::from_program(Some(&loaded.program));
    let s = &host.shared().services;
    let n = s.usrloc.flush(&cfg, &s.db);
    Reply::status(200, "ul_flush completed").with_data(json!({ "written": n }))
}

fn ul_add(host: &dyn Host, p: &[String]) -> Reply {
    let a = match parse_ul_add(p) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (cfg, known) = setup(host, &a.table);
    if !known {
        return Reply::status(400, format!("table ({}) not found", a.table));
    }
    let (key, user, domain) = aor_of_text(&a.user, cfg.use_domain, cfg.case_sensitive);
    let q = (a.q * 1000.0).round() as u16;
    if cfg.db_mode == 3 {
        let now = now_unix_secs();
        let b = Binding {
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
                crate::usrloc::FL_PERMANENT
            } else {
                0
            },
            last_modified: now,
        };
        let change = Change::Upsert(b);
        return match db_change(host, &cfg, &a.table, &user, &domain, &change) {
            Ok(()) => ul_add_reply(&a),
            Err(r) => r,
        };
    }
    let s = &host.shared().services;
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
        Ok(()) => ul_add_reply(&a),
        Err(e) => {
            let (code, reason) = e.status();
            Reply::status(code, reason)
        }
    }
}

fn ul_show_contact(host: &dyn Host, p: &[String]) -> Reply {
    let (table, user) = match parse_table_user(p) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (cfg, known) = setup(host, &table);
    if !known {
        return Reply::status(400, format!("table ({table}) not found"));
    }
    let (key, username, domain) = aor_of_text(&user, cfg.use_domain, cfg.case_sensitive);
    let now = now_unix_secs();
    if cfg.db_mode == 3 {
        let rows = match db_bindings(host, &cfg, &table, Some((&username, &domain))) {
            Ok(r) => r,
            Err(r) => return r,
        };
        let mut bs: Vec<_> = rows
            .into_iter()
            .map(|(_, _, b)| b)
            .filter(|b| b.is_valid(now))
            .collect();
        bs.sort_by(|x, y| y.q.cmp(&x.q).then(y.last_modified.cmp(&x.last_modified)));
        let contacts: Vec<Contact> = bs.iter().map(|b| contact_of(b, now)).collect();
        return ul_show_contact_reply(Some(&contacts));
    }
    let contacts: Option<Vec<Contact>> = host
        .shared()
        .services
        .usrloc
        .show(&table, &key, now)
        .map(|bs| bs.iter().map(|b| contact_of(b, now)).collect());
    ul_show_contact_reply(contacts.as_deref())
}

// ---------------------------------------------------------------- output shapes

/// One contact of a location record.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    pub uri: String,
    pub q: f32,
    /// Seconds until it expires (negative: expired, awaiting removal); None: permanent.
    pub expires_in: Option<i64>,
    pub call_id: String,
    pub cseq: u32,
    pub user_agent: String,
    pub received: String,
    pub flags: u32,
}

/// One table's statistics (`ul_stats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStats {
    pub table: String,
    pub registered: u64,
    pub expired: u64,
}

/// `ul_stats`.
pub fn ul_stats_reply(tables: &[TableStats]) -> Reply {
    let mut lines = vec!["Domain Registered Expired".to_string()];
    lines.extend(
        tables
            .iter()
            .map(|t| format!("'{}' {} {}", t.table, t.registered, t.expired)),
    );
    let data: Vec<_> = tables
        .iter()
        .map(|t| json!({"table": t.table, "registered": t.registered, "expired": t.expired}))
        .collect();
    Reply::ok(lines).with_data(json!(data))
}

fn q2str(q: f32) -> String {
    format!("{q:.2}")
}

/// `ul_show_contact` (Admin Guide Example 4-9): None = the user has no record.
pub fn ul_show_contact_reply(contacts: Option<&[Contact]>) -> Reply {
    let Some(cs) = contacts.filter(|c| !c.is_empty()) else {
        return Reply::status(404, "AOR not found");
    };
    let lines = cs
        .iter()
        .map(|c| {
            format!(
                "<{}>;q={};expires={}",
                c.uri,
                q2str(c.q),
                c.expires_in.unwrap_or(0)
            )
        })
        .collect();
    let data: Vec<_> = cs
        .iter()
        .map(|c| json!({"contact": c.uri, "q": q2str(c.q), "expires": c.expires_in}))
        .collect();
    Reply::ok(lines).with_data(json!(data))
}

/// One record (address of record and its contacts) for `ul_dump`.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub aor: String,
    pub contacts: Vec<Contact>,
}

/// `ul_dump`: SER's `print_udomain` layout (HowTo 3.5), memory addresses left out.
pub fn ul_dump_reply(tables: &[(String, Vec<Record>)]) -> Reply {
    let mut l = Vec::new();
    let mut data = Vec::new();
    for (table, records) in tables {
        l.push("---Domain---".to_string());
        l.push(format!("name : '{table}'"));
        l.push(format!("users: {}", records.len()));
        let mut recs = Vec::new();
        for r in records {
            l.push("...Record...".to_string());
            l.push(format!("domain: '{table}'"));
            l.push(format!("aor   : '{}'", r.aor));
            let mut cs = Vec::new();
            for c in &r.contacts {
                l.push("~~~Contact~~~".to_string());
                l.push(format!("domain    : '{table}'"));
                l.push(format!("aor       : '{}'", r.aor));
                l.push(format!("Contact   : '{}'", c.uri));
                l.push(match c.expires_in {
                    None => "Expires   : Permanent".to_string(),
                    Some(e) if e < 0 => "Expires   : Expired".to_string(),
                    Some(e) => format!("Expires   : {e}"),
                });
                l.push(format!("q         : {}", q2str(c.q)));
                l.push(format!("Call-ID   : '{}'", c.call_id));
                l.push(format!("CSeq      : {}", c.cseq));
                l.push(format!("User-Agent: '{}'", c.user_agent));
                l.push(format!("received  : '{}'", c.received));
                l.push(format!("Flags     : {}", c.flags));
                l.push("~~~/Contact~~~~".to_string());
                cs.push(json!({
                    "contact": c.uri, "expires": c.expires_in, "q": q2str(c.q),
                    "call_id": c.call_id, "cseq": c.cseq, "user_agent": c.user_agent,
                    "received": c.received, "flags": c.flags,
                }));
            }
            l.push(".../Record...".to_string());
            recs.push(json!({"aor": r.aor, "contacts": cs}));
        }
        l.push("---/Domain---".to_string());
        data.push(json!({"table": table, "records": recs}));
    }
    Reply::ok(l).with_data(json!(data))
}

/// What a removal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Removed,
    NoTable,
    NoUser,
    NoContact,
}

/// `ul_rm`.
pub fn ul_rm_reply(table: &str, user: &str, r: Removal) -> Reply {
    match r {
        Removal::Removed => Reply::status(200, format!("user ({table}, {user}) deleted")),
        Removal::NoTable => Reply::status(400, format!("table ({table}) not found")),
        Removal::NoUser | Removal::NoContact => {
            Reply::status(404, format!("user ({table}, {user}) not found"))
        }
    }
}

/// `ul_rm_contact`.
pub fn ul_rm_contact_reply(table: &str, user: &str, contact: &str, r: Removal) -> Reply {
    match r {
        Removal::Removed => Reply::status(
            200,
            format!("contact ({user}, {contact}) deleted from table {table}"),
        ),
        Removal::NoTable => Reply::status(400, format!("table ({table}) not found")),
        Removal::NoUser => Reply::status(404, format!("user ({table}, {user}) not found")),
        Removal::NoContact => Reply::status(404, "Contact not found"),
    }
}

/// `table, user` (ul_rm, ul_show_contact).
pub fn parse_table_user(p: &[String]) -> Result<(String, String), Reply> {
    Ok((
        text_param(p, 0, "table name")?.to_string(),
        text_param(p, 1, "username")?.to_string(),
    ))
}

/// `table, user, contact` (ul_rm_contact).
pub fn parse_table_user_contact(p: &[String]) -> Result<(String, String, String), Reply> {
    let (t, u) = parse_table_user(p)?;
    Ok((t, u, text_param(p, 2, "contact")?.to_string()))
}

/// `ul_add`'s parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct UlAdd {
    pub table: String,
    pub user: String,
    pub contact: String,
    /// Seconds; 0 = permanent (serweb's permanent contacts).
    pub expires: u32,
    pub q: f32,
}

/// `table, user, contact, expires, q` (extra lines, e.g. replicate/flags of later SERs, ignored).
pub fn parse_ul_add(p: &[String]) -> Result<UlAdd, Reply> {
    let (table, user, contact) = parse_table_user_contact(p)?;
    let expires = number_param::<u32>(p, 3, "expires")?;
    let q = number_param::<f32>(p, 4, "q")?;
    if !(0.0..=1.0).contains(&q) {
        return Err(bad_params(format!("bad q: '{q}' (0 … 1)")));
    }
    Ok(UlAdd {
        table,
        user,
        contact,
        expires,
        q,
    })
}

/// `ul_add`'s answer on success.
pub fn ul_add_reply(a: &UlAdd) -> Reply {
    Reply::status(200, "Added to table").with_body(vec![format!(
        "('{}','{}') to '{}'",
        a.user, a.contact, a.table
    )])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn contact(uri: &str, q: f32, e: Option<i64>) -> Contact {
        Contact {
            uri: uri.into(),
            q,
            expires_in: e,
            call_id: "c1".into(),
            cseq: 7,
            user_agent: "ua".into(),
            received: String::new(),
            flags: 0,
        }
    }

    #[test]
    fn ul_show_contact_as_example_4_9() {
        let cs = [contact("sip:195.37.78.160:14519", 0.0, Some(1012))];
        assert_eq!(
            ul_show_contact_reply(Some(&cs)).to_fifo(),
            "200 ok\n<sip:195.37.78.160:14519>;q=0.00;expires=1012\n"
        );
        assert_eq!(ul_show_contact_reply(None).to_fifo(), "404 AOR not found\n");
    }

    #[test]
    fn ul_stats_dump_rm_add() {
        let r = ul_stats_reply(&[TableStats {
            table: "location".into(),
            registered: 2,
            expired: 1,
        }]);
        assert_eq!(
            r.to_fifo(),
            "200 ok\nDomain Registered Expired\n'location' 2 1\n"
        );
        let d = ul_dump_reply(&[(
            "location".into(),
            vec![Record {
                aor: "jiri".into(),
                contacts: vec![contact("sip:jiri@1.2.3.4", 0.5, None)],
            }],
        )]);
        let text = d.to_fifo();
        assert!(text.contains("aor       : 'jiri'\nContact   : 'sip:jiri@1.2.3.4'\nExpires   : Permanent\nq         : 0.50\n"), "{text}");
        assert_eq!(
            ul_rm_reply("location", "jiri", Removal::NoUser).to_fifo(),
            "404 user (location, jiri) not found\n"
        );
        let a = parse_ul_add(&s(&["location", "jiri", "sip:jiri@gw", "0", "0.5"])).unwrap();
        assert_eq!((a.expires, a.q), (0, 0.5));
        assert_eq!(
            ul_add_reply(&a).to_fifo(),
            "200 Added to table\n('jiri','sip:jiri@gw') to 'location'\n"
        );
        assert_eq!(
            parse_ul_add(&s(&["location", "jiri"])).unwrap_err().code,
            400
        );
        assert_eq!(
            parse_ul_add(&s(&["l", "j", "c", "x", "1"]))
                .unwrap_err()
                .code,
            400
        );
    }
}
