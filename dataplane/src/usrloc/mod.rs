//! The user location store (SER's usrloc): per table name (`"location"`, `"aliases"`, per-domain
//! tables), address-of-record → bindings. Read by every shard without locks, written by `save` and by
//! management commands, persisted by the controlplane according to `db_mode`.
//!
//! Invariants:
//! - Each table is a `papaya` concurrent map: readers (`lookup` on any shard) never block; a writer
//!   replaces an AOR's whole [`Record`] with a compare-and-swap ([`Usrloc::update`]), so two shards
//!   saving the same AOR at once cannot lose an update, and a reader sees either the old or the new
//!   set of bindings, never half of each.
//! - Times are Unix seconds (wall clock, because bindings outlive restarts through the DB). A binding
//!   whose time has passed is invisible to readers even before the timer removes it.
//! - Memory is bounded: at most [`MAX_CONTACTS_PER_AOR`] bindings per AOR and [`MAX_BINDINGS`] in
//!   the whole store; a registration beyond is refused ([`Reject`]), never half-applied.
//! - Nothing here blocks or touches a database. Persistence goes out as [`DbWrite`]s: db_mode 1 posts
//!   each change at once ([`DbSink::post`]; the registrar's `save` instead writes its changes
//!   through jobs before it answers, [`Usrloc::update_with`]), db_mode 2 marks the AOR dirty and [`Usrloc::timer`]
//!   posts the changed AORs every `timer_interval`, db_mode 3 keeps nothing here (the registrar
//!   reads and writes the DB through jobs; see `modules::registrar`).
//!
//! DB rows use SER 0.8.11's `location` columns (username, domain, contact, received, expires as
//! `YYYY-MM-DD HH:MM:SS` UTC, q, callid, cseq, last_modified, replicate, state, flags, user_agent);
//! the names of the columns SER made configurable come from usrloc's `*_col` parameters.
//!
//! Management (FIFO `ul_*`, metrics) uses [`Usrloc::stats`], [`Usrloc::remove_aor`],
//! [`Usrloc::remove_contact`], [`Usrloc::dump`], [`Usrloc::add`], [`Usrloc::show`] and
//! [`Usrloc::flush`].

mod record;
mod rows;
pub mod time;

pub use record::{
    q_text, same_contact, write_q, Binding, Change, ContactUpdate, Record, RegisterInfo, Reject,
};
pub use rows::UsrlocConfig;

use std::sync::atomic::{AtomicUsize, Ordering};

use smallvec::SmallVec;

use crate::offload::{DbSink, DbWrite};

/// SER's `FL_PERMANENT`: a binding that never expires (`ul_add` with expires 0).
pub const FL_PERMANENT: u32 = 1 << 7;

/// Most bindings one AOR may have (SER 0.8.11 has no such parameter; this bounds memory).
pub const MAX_CONTACTS_PER_AOR: usize = 64;

/// Most bindings in the whole store.
pub const MAX_BINDINGS: usize = 2_000_000;

/// Longest contact URI stored (SER's MAX_URI_SIZE).
pub const MAX_CONTACT_LEN: usize = 1023;

/// The key of an AOR in a table: `user` or `user@domain` (with `use_domain`), the domain always and
/// the user unless `case_sensitive` lower-cased.
pub fn aor_key(user: &[u8], domain: Option<&[u8]>, case_sensitive: bool) -> SmallVec<[u8; 64]> {
    let mut k: SmallVec<[u8; 64]> = SmallVec::from_slice(user);
    if !case_sensitive {
        k.make_ascii_lowercase();
    }
    if let Some(d) = domain {
        k.push(b'@');
        k.extend(d.iter().map(u8::to_ascii_lowercase));
    }
    k
}

/// Splits an AOR as management commands give it (`user` or `user@domain`) into (key, username,
/// domain) under the given settings.
pub fn aor_of_text(
    aor: &str,
    use_domain: bool,
    case_sensitive: bool,
) -> (SmallVec<[u8; 64]>, String, String) {
    let (user, domain) = match aor.rsplit_once('@') {
        Some((u, d)) if use_domain => (u, d),
        Some((u, _)) => (u, ""),
        None => (aor, ""),
    };
    let key = aor_key(
        user.as_bytes(),
        use_domain.then_some(domain.as_bytes()),
        case_sensitive,
    );
    let username = if case_sensitive {
        user.to_string()
    } else {
        user.to_ascii_lowercase()
    };
    (key, username, domain.to_ascii_lowercase())
}

/// (username, domain) of an AOR.
type AorName = (Box<str>, Box<str>);

/// One table's AORs and, for db_mode 2, the AORs changed since the last flush.
#[derive(Default)]
pub struct Table {
    records: papaya::HashMap<Box<[u8]>, Record>,
    /// AOR key → (username, domain) of records changed since the last write-back.
    dirty: papaya::HashMap<Box<[u8]>, AorName>,
}

/// One table as `ul_dump` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDump {
    /// Table name.
    pub table: String,
    /// (AOR key, its bindings in force), sorted by AOR.
    pub aors: Vec<(String, Vec<Binding>)>,
}

/// Statistics of one table (`ul_stats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStats {
    /// Table name.
    pub table: String,
    /// AORs with at least one binding.
    pub records: usize,
    /// Bindings in force.
    pub contacts: usize,
    /// Bindings expired but not yet removed by the timer.
    pub expired: usize,
}

/// The location store shared by all shards (see the module docs).
pub struct Usrloc {
    tables: papaya::HashMap<Box<str>, Table>,
    bindings: AtomicUsize,
    max_bindings: usize,
}

impl Default for Usrloc {
    fn default() -> Self {
        Usrloc::with_limit(MAX_BINDINGS)
    }
}

impl Usrloc {
    /// An empty store holding at most `max_bindings` bindings.
    pub fn with_limit(max_bindings: usize) -> Usrloc {
        Usrloc {
            tables: papaya::HashMap::new(),
            bindings: AtomicUsize::new(0),
            max_bindings,
        }
    }

    /// Bindings stored (valid or not yet expired by the timer), all tables together.
    pub fn binding_count(&self) -> usize {
        self.bindings.load(Ordering::Relaxed)
    }

    /// Runs `f` with the bindings of `key` in `table` (`None` when there are none).
    pub fn with_record<R>(
        &self,
        table: &str,
        key: &[u8],
        f: impl FnOnce(Option<&Record>) -> R,
    ) -> R {
        let tables = self.tables.pin();
        match tables.get(table) {
            Some(t) => f(t.records.pin().get(key)),
            None => f(None),
        }
    }

    /// Changes the record of `key` atomically: `f` gets the current record (or `None`) and returns
    /// the new one (`Ok(None)` = no change; an empty record removes the AOR) with the changes to
    /// persist. `f` may run more than once (compare-and-swap retries) and must be pure. The changes
    /// are persisted per `cfg.db_mode` (posted to `db` in mode 1, marked for write-back in mode 2).
    /// Returns the new record and the changes.
    pub fn update<E>(
        &self,
        table: &str,
        key: &[u8],
        cfg: &UsrlocConfig,
        db: &DbSink,
        f: impl FnMut(Option<&Record>, usize) -> Result<Option<(Record, Vec<Change>)>, E>,
    ) -> Result<Option<(Record, Vec<Change>)>, E> {
        self.update_with(table, key, cfg, Some(db), f)
    }

    /// [`Usrloc::update`]; with `db` `None` the changes are only returned, for a caller that writes
    /// them itself (the registrar in db_mode 1, which answers only once they are committed).
    pub fn update_with<E>(
        &self,
        table: &str,
        key: &[u8],
        cfg: &UsrlocConfig,
        db: Option<&DbSink>,
        mut f: impl FnMut(Option<&Record>, usize) -> Result<Option<(Record, Vec<Change>)>, E>,
    ) -> Result<Option<(Record, Vec<Change>)>, E> {
        let tables = self.tables.pin();
        // The table exists after its first binding: look it up without allocating its name.
        let t = match tables.get(table) {
            Some(t) => t,
            None => tables.get_or_insert_with(table.into(), Table::default),
        };
        let records = t.records.pin();
        let room = self
            .max_bindings
            .saturating_sub(self.bindings.load(Ordering::Relaxed));
        let mut out: Option<(Record, Vec<Change>)> = None;
        let res = records.compute(Box::from(key), |cur| match f(cur.map(|(_, r)| r), room) {
            Err(e) => papaya::Operation::Abort(Some(e)),
            Ok(None) => papaya::Operation::Abort(None),
            Ok(Some((rec, changes))) => {
                let op = if rec.bindings.is_empty() {
                    papaya::Operation::Remove
                } else {
                    papaya::Operation::Insert(rec.clone())
                };
                out = Some((rec, changes));
                op
            }
        });
        let (old_len, new_len) = match res {
            papaya::Compute::Aborted(Some(e)) => return Err(e),
            papaya::Compute::Aborted(None) => return Ok(None),
            papaya::Compute::Inserted(_, new) => (0, new.bindings.len()),
            papaya::Compute::Updated { old, new } => (old.1.bindings.len(), new.1.bindings.len()),
            papaya::Compute::Removed(_, old) => (old.bindings.len(), 0),
        };
        if new_len >= old_len {
            self.bindings
                .fetch_add(new_len - old_len, Ordering::Relaxed);
        } else {
            self.bindings
                .fetch_sub(old_len - new_len, Ordering::Relaxed);
        }
        if let (Some((rec, changes)), Some(db)) = (&out, db) {
            self.persist(t, table, key, rec, changes, cfg, db);
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn persist(
        &self,
        t: &Table,
        table: &str,
        key: &[u8],
        rec: &Record,
        changes: &[Change],
        cfg: &UsrlocConfig,
        db: &DbSink,
    ) {
        if changes.is_empty() {
            return;
        }
        match cfg.db_mode {
            1 => {
                for c in changes {
                    if !db.post(cfg.write_of(table, &rec.username, &rec.domain, c)) {
                        crate::ser_log!(
                            crate::shard::log::L_ERR,
                            "usrloc: database write of {}@{} refused (queue full or no database)",
                            rec.username,
                            table
                        );
                    }
                }
            }
            2 => {
                t.dirty
                    .pin()
                    .insert(key.into(), (rec.username.clone(), rec.domain.clone()));
            }
            _ => {}
        }
    }

    /// Rebuilds `table` from DB rows (in [`UsrlocConfig::columns`] order), as loaded at start in
    /// db_mode 1 and 2. Expired and unusable rows are skipped; returns the bindings loaded.
    pub fn load_rows(
        &self,
        table: &str,
        cfg: &UsrlocConfig,
        rows: &[Vec<Option<String>>],
        now: u64,
    ) -> usize {
        let mut n = 0;
        let none = UsrlocConfig {
            db_mode: 0,
            ..cfg.clone()
        };
        for row in rows {
            let Some((user, domain, b)) = cfg.binding_of_row(row) else {
                continue;
            };
            if !b.is_valid(now) {
                continue;
            }
            let key = aor_key(
                user.as_bytes(),
                cfg.use_domain.then_some(domain.as_bytes()),
                cfg.case_sensitive,
            );
            let loaded = self.update(table, &key, &none, &DbSink::default(), |cur, room| {
                let mut rec = cur.cloned().unwrap_or_else(|| Record::new(&user, &domain));
                if rec.position(&b.contact).is_some()
                    || rec.bindings.len() >= MAX_CONTACTS_PER_AOR
                    || room == 0
                {
                    return Ok::<_, ()>(None);
                }
                rec.bindings.push(b.clone());
                Ok(Some((rec, Vec::new())))
            });
            if matches!(loaded, Ok(Some(_))) {
                n += 1;
            }
        }
        n
    }

    /// The periodic work, every `cfg.timer_interval` seconds: removes expired bindings (persisting
    /// the removals in db_mode 1/2) and, in db_mode 2, writes back every AOR changed since the last
    /// run. Returns the bindings expired.
    pub fn timer(&self, now: u64, cfg: &UsrlocConfig, db: &DbSink) -> usize {
        let mut expired = 0;
        let tables = self.tables.pin();
        for (name, t) in tables.iter() {
            let stale: Vec<Box<[u8]>> = t
                .records
                .pin()
                .iter()
                .filter(|(_, r)| r.bindings.iter().any(|b| !b.is_valid(now)))
                .map(|(k, _)| k.clone())
                .collect();
            for key in stale {
                let r = self.update(name, &key, cfg, db, |cur, _| {
                    let Some(cur) = cur else {
                        return Ok::<_, ()>(None);
                    };
                    let mut rec = Record::new(&cur.username, &cur.domain);
                    let mut changes = Vec::new();
                    for b in &cur.bindings {
                        if b.is_valid(now) {
                            rec.bindings.push(b.clone());
                        } else {
                            changes.push(Change::Delete(b.contact.clone()));
                        }
                    }
                    Ok(Some((rec, changes)))
                });
                if let Ok(Some((_, ch))) = r {
                    expired += ch.len();
                }
            }
        }
        if cfg.db_mode == 2 {
            self.flush(cfg, db);
        }
        expired
    }

    /// Writes back every AOR changed since the last write-back (db_mode 2; `ul_flush`): its rows
    /// are deleted and its current bindings written again, in that order. Returns the AORs written.
    pub fn flush(&self, cfg: &UsrlocConfig, db: &DbSink) -> usize {
        let mut n = 0;
        let tables = self.tables.pin();
        for (name, t) in tables.iter() {
            let dirty = t.dirty.pin();
            let keys: Vec<(Box<[u8]>, AorName)> =
                dirty.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            for (key, (user, domain)) in keys {
                dirty.remove(&key);
                let mut writes = vec![DbWrite::Delete {
                    url: cfg.db_url.clone(),
                    table: name.to_string(),
                    keys: cfg.aor_keys(&user, &domain),
                }];
                if let Some(rec) = t.records.pin().get(&key) {
                    for b in &rec.bindings {
                        writes.push(cfg.write_of(name, &user, &domain, &Change::Upsert(b.clone())));
                    }
                }
                for w in writes {
                    if !db.post(w) {
                        // Not written: keep it dirty for the next run.
                        dirty.insert(key.clone(), (user.clone(), domain.clone()));
                        crate::ser_log!(
                            crate::shard::log::L_ERR,
                            "usrloc: write-back of {user} to table {name} refused (queue full or no database); retried at the next flush"
                        );
                        break;
                    }
                }
                n += 1;
            }
        }
        n
    }

    // ------------------------------------------------------------------ management

    /// Per-table statistics at `now` (`ul_stats`; the "registered contacts" metric is the sum of
    /// `contacts`).
    pub fn stats(&self, now: u64) -> Vec<TableStats> {
        let tables = self.tables.pin();
        let mut v: Vec<TableStats> = tables
            .iter()
            .map(|(name, t)| {
                let mut s = TableStats {
                    table: name.to_string(),
                    records: 0,
                    contacts: 0,
                    expired: 0,
                };
                for (_, r) in t.records.pin().iter() {
                    let valid = r.bindings.iter().filter(|b| b.is_valid(now)).count();
                    s.records += usize::from(valid > 0);
                    s.contacts += valid;
                    s.expired += r.bindings.len() - valid;
                }
                s
            })
            .collect();
        v.sort_by(|a, b| a.table.cmp(&b.table));
        v
    }

    /// Removes every binding of an AOR (`ul_rm`); false when it had none.
    pub fn remove_aor(&self, table: &str, key: &[u8], cfg: &UsrlocConfig, db: &DbSink) -> bool {
        let r = self.update(table, key, cfg, db, |cur, _| {
            let Some(cur) = cur else {
                return Ok::<_, ()>(None);
            };
            let changes = cur
                .bindings
                .iter()
                .map(|b| Change::Delete(b.contact.clone()))
                .collect();
            Ok(Some((Record::new(&cur.username, &cur.domain), changes)))
        });
        matches!(r, Ok(Some(_)))
    }

    /// Removes one binding of an AOR (`ul_rm_contact`); false when there was no such binding.
    pub fn remove_contact(
        &self,
        table: &str,
        key: &[u8],
        contact: &str,
        cfg: &UsrlocConfig,
        db: &DbSink,
    ) -> bool {
        let r = self.update(table, key, cfg, db, |cur, _| {
            let Some(cur) = cur else {
                return Ok::<_, ()>(None);
            };
            let Some(i) = cur.position(contact) else {
                return Ok(None);
            };
            let mut rec = cur.clone();
            let gone = rec.bindings.remove(i);
            Ok(Some((rec, vec![Change::Delete(gone.contact)])))
        });
        matches!(r, Ok(Some(_)))
    }

    /// Adds or replaces a binding (`ul_add`): `expires` seconds from `now`, 0 = permanent.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &self,
        table: &str,
        key: &[u8],
        username: &str,
        domain: &str,
        contact: &str,
        expires: u32,
        q: u16,
        now: u64,
        cfg: &UsrlocConfig,
        db: &DbSink,
    ) -> Result<(), Reject> {
        let b = Binding {
            contact: contact.into(),
            expires: if expires == 0 {
                0
            } else {
                now + u64::from(expires)
            },
            q: q.min(1000),
            callid: "ul_add".into(),
            cseq: 1,
            received: None,
            user_agent: "".into(),
            flags: if expires == 0 { FL_PERMANENT } else { 0 },
            last_modified: now,
        };
        self.update(table, key, cfg, db, |cur, room| {
            let mut rec = cur
                .cloned()
                .unwrap_or_else(|| Record::new(username, domain));
            match rec.position(contact) {
                Some(i) => rec.bindings[i] = b.clone(),
                None if rec.bindings.len() >= MAX_CONTACTS_PER_AOR => {
                    return Err(Reject::TooManyContacts)
                }
                None if room == 0 => return Err(Reject::StoreFull),
                None => rec.bindings.push(b.clone()),
            }
            Ok(Some((rec, vec![Change::Upsert(b.clone())])))
        })
        .map(|_| ())
    }

    /// The bindings of an AOR in force at `now`, best first (`ul_show_contact`; print them with
    /// [`Binding::contact_value`]). `None` when the AOR has none (SER answers 404).
    pub fn show(&self, table: &str, key: &[u8], now: u64) -> Option<Vec<Binding>> {
        self.with_record(table, key, |r| {
            let r = r?;
            let v: Vec<Binding> = r
                .ordered(now, false)
                .iter()
                .map(|&i| r.bindings[i].clone())
                .collect();
            (!v.is_empty()).then_some(v)
        })
    }

    /// Every table with its AORs and their bindings in force at `now` (`ul_dump`), sorted by table
    /// and AOR.
    pub fn dump(&self, now: u64) -> Vec<TableDump> {
        let tables = self.tables.pin();
        let mut out: Vec<TableDump> = tables
            .iter()
            .map(|(name, t)| {
                let mut aors: Vec<(String, Vec<Binding>)> = t
                    .records
                    .pin()
                    .iter()
                    .filter_map(|(k, r)| {
                        let b: Vec<Binding> = r
                            .bindings
                            .iter()
                            .filter(|b| b.is_valid(now))
                            .cloned()
                            .collect();
                        (!b.is_empty()).then(|| (String::from_utf8_lossy(k).into_owned(), b))
                    })
                    .collect();
                aors.sort_by(|a, b| a.0.cmp(&b.0));
                TableDump {
                    table: name.to_string(),
                    aors,
                }
            })
            .collect();
        out.sort_by(|a, b| a.table.cmp(&b.table));
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
