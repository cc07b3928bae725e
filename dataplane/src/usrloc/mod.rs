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
//!   each change at once ([`DbSink::post`]), db_mode 2 marks the AOR dirty and [`Usrloc::timer`]
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

pub mod time;

use std::sync::atomic::{AtomicUsize, Ordering};

use smallvec::SmallVec;

use crate::offload::{DbSink, DbWrite, Job};
use crate::wire::uri::{uri_eq, Uri};

/// SER's `FL_PERMANENT`: a binding that never expires (`ul_add` with expires 0).
pub const FL_PERMANENT: u32 = 1 << 7;

/// Most bindings one AOR may have (SER 0.8.11 has no such parameter; this bounds memory).
pub const MAX_CONTACTS_PER_AOR: usize = 64;

/// Most bindings in the whole store.
pub const MAX_BINDINGS: usize = 2_000_000;

/// Longest contact URI stored (SER's MAX_URI_SIZE).
pub const MAX_CONTACT_LEN: usize = 1023;

/// One registered contact of an AOR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The contact URI as registered (without the Contact header's parameters).
    pub contact: Box<str>,
    /// When it expires (Unix seconds); ignored for permanent bindings.
    pub expires: u64,
    /// Preference in thousandths (`q=0.5` → 500).
    pub q: u16,
    /// Call-ID of the REGISTER that last changed it.
    pub callid: Box<str>,
    /// CSeq number of that REGISTER.
    pub cseq: u32,
    /// Where the REGISTER came from, when recorded (`sip:ip:port`), for NAT traversal.
    pub received: Option<Box<str>>,
    /// The registering agent's User-Agent.
    pub user_agent: Box<str>,
    /// SER's flags ([`FL_PERMANENT`]…).
    pub flags: u32,
    /// When it was last changed (Unix seconds).
    pub last_modified: u64,
}

impl Binding {
    /// A permanent binding (never expires).
    pub fn is_permanent(&self) -> bool {
        self.flags & FL_PERMANENT != 0
    }
    /// Whether it is still in force at `now`.
    pub fn is_valid(&self, now: u64) -> bool {
        self.is_permanent() || self.expires > now
    }
    /// Seconds left at `now` (0 for a permanent binding, as `ul_show_contact` prints it).
    pub fn expires_in(&self, now: u64) -> u64 {
        if self.is_permanent() {
            0
        } else {
            self.expires.saturating_sub(now)
        }
    }
    /// `<sip:…>;q=0.50;expires=1012`: a line of SER's `ul_show_contact` / `ul_dump` output.
    pub fn fifo_line(&self, now: u64) -> String {
        format!(
            "<{}>;q={}.{:02};expires={}",
            self.contact,
            self.q / 1000,
            (self.q % 1000) / 10,
            self.expires_in(now)
        )
    }

    /// `<uri>;q=0.5;expires=N`: a Contact value of a REGISTER's 200 (RFC 3261 §10.3 step 8).
    pub fn contact_value(&self, now: u64) -> String {
        let mut s = String::with_capacity(self.contact.len() + 32);
        self.write_contact_value(now, &mut s);
        s
    }

    /// [`Binding::contact_value`] appended to `out` (no formatting machinery: a 200 OK to a
    /// REGISTER lists every binding).
    pub fn write_contact_value(&self, now: u64, out: &mut String) {
        out.push('<');
        out.push_str(&self.contact);
        out.push_str(">;q=");
        write_q(self.q, out);
        out.push_str(";expires=");
        out.push_str(itoa::Buffer::new().format(self.expires_in(now)));
    }
}

/// [`q_text`] appended to `out`.
pub fn write_q(q: u16, out: &mut String) {
    if q >= 1000 {
        out.push('1');
        return;
    }
    if q == 0 {
        out.push('0');
        return;
    }
    let digits = [
        b'0' + (q / 100) as u8,
        b'0' + (q / 10 % 10) as u8,
        b'0' + (q % 10) as u8,
    ];
    let len = 3 - digits.iter().rev().take_while(|&&d| d == b'0').count();
    out.push_str("0.");
    for &d in &digits[..len] {
        out.push(char::from(d));
    }
}

/// A q value in thousandths as RFC 3261's `qvalue` text (`500` → `0.5`, `1000` → `1`).
pub fn q_text(q: u16) -> String {
    let mut s = String::with_capacity(5);
    write_q(q, &mut s);
    s
}

/// All bindings of one AOR.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// User part of the AOR (the DB's username column).
    pub username: Box<str>,
    /// Domain of the AOR when `use_domain` is on, else empty.
    pub domain: Box<str>,
    /// The bindings, oldest registration first.
    pub bindings: Vec<Binding>,
}

impl Record {
    /// An empty record for `username`/`domain`.
    pub fn new(username: &str, domain: &str) -> Record {
        Record {
            username: username.into(),
            domain: domain.into(),
            bindings: Vec::new(),
        }
    }

    /// Indices of the bindings valid at `now`, best first: by q (highest first) then most recently
    /// changed first, or by time alone with `desc_time_order`.
    pub fn ordered(&self, now: u64, desc_time_order: bool) -> SmallVec<[usize; 8]> {
        let mut v: SmallVec<[usize; 8]> = (0..self.bindings.len())
            .filter(|&i| self.bindings[i].is_valid(now))
            .collect();
        let b = &self.bindings;
        if desc_time_order {
            v.sort_by(|&x, &y| b[y].last_modified.cmp(&b[x].last_modified));
        } else {
            v.sort_by(|&x, &y| {
                b[y].q
                    .cmp(&b[x].q)
                    .then(b[y].last_modified.cmp(&b[x].last_modified))
            });
        }
        v
    }

    fn position(&self, contact: &str) -> Option<usize> {
        self.bindings
            .iter()
            .position(|b| same_contact(&b.contact, contact))
    }

    /// Applies the Contacts of a REGISTER (RFC 3261 §10.3 step 7) and returns the new bindings with
    /// the changes to persist. Expired bindings are dropped on the way (and deleted from the DB).
    /// A contact whose binding has the same Call-ID and a CSeq not higher is left alone (an old or
    /// retransmitted REGISTER). Fails without changing anything when a limit would be exceeded.
    pub fn apply(
        &self,
        req: &RegisterInfo<'_>,
        contacts: &[ContactUpdate<'_>],
        now: u64,
        room: usize,
    ) -> Result<(Record, Vec<Change>), Reject> {
        let mut new = Record {
            username: self.username.clone(),
            domain: self.domain.clone(),
            bindings: Vec::with_capacity(self.bindings.len() + contacts.len()),
        };
        let mut changes = Vec::new();
        for b in &self.bindings {
            if b.is_valid(now) {
                new.bindings.push(b.clone());
            } else {
                changes.push(Change::Delete(b.contact.clone()));
            }
        }
        let mut added = 0usize;
        for c in contacts {
            match new.position(c.contact) {
                Some(i) => {
                    let old = &new.bindings[i];
                    if old.callid.as_ref() == req.callid && req.cseq <= old.cseq {
                        continue;
                    }
                    if c.expires == 0 {
                        let gone = new.bindings.remove(i);
                        changes.push(Change::Delete(gone.contact));
                    } else {
                        // A refresh usually repeats the same strings: keep the stored ones.
                        let b = &mut new.bindings[i];
                        if *b.contact != *c.contact {
                            b.contact = c.contact.into();
                        }
                        b.expires = now + u64::from(c.expires);
                        b.q = c.q;
                        if *b.callid != *req.callid {
                            b.callid = req.callid.into();
                        }
                        b.cseq = req.cseq;
                        if *b.user_agent != *req.user_agent {
                            b.user_agent = req.user_agent.into();
                        }
                        if b.received.as_deref() != req.received {
                            b.received = req.received.map(Into::into);
                        }
                        b.flags &= !FL_PERMANENT;
                        b.last_modified = now;
                        changes.push(Change::Upsert(b.clone()));
                    }
                }
                None if c.expires == 0 => {}
                None => {
                    if new.bindings.len() >= MAX_CONTACTS_PER_AOR {
                        return Err(Reject::TooManyContacts);
                    }
                    added += 1;
                    if added > room {
                        return Err(Reject::StoreFull);
                    }
                    let b = Binding {
                        contact: c.contact.into(),
                        expires: now + u64::from(c.expires),
                        q: c.q,
                        callid: req.callid.into(),
                        cseq: req.cseq,
                        received: req.received.map(Into::into),
                        user_agent: req.user_agent.into(),
                        flags: 0,
                        last_modified: now,
                    };
                    changes.push(Change::Upsert(b.clone()));
                    new.bindings.push(b);
                }
            }
        }
        Ok((new, changes))
    }

    /// `Contact: *` with `Expires: 0` (RFC 3261 §10.3 step 6): removes every binding, except those
    /// with the request's Call-ID and a CSeq not lower than the request's.
    pub fn remove_all(&self, req: &RegisterInfo<'_>, now: u64) -> (Record, Vec<Change>) {
        let mut new = Record::new(&self.username, &self.domain);
        let mut changes = Vec::new();
        for b in &self.bindings {
            let keep = b.is_valid(now) && b.callid.as_ref() == req.callid && req.cseq <= b.cseq;
            if keep {
                new.bindings.push(b.clone());
            } else {
                changes.push(Change::Delete(b.contact.clone()));
            }
        }
        (new, changes)
    }
}

/// RFC 3261 §10.3 step 6 contact comparison: URI equality (§19.1.4) when both parse, else bytes.
pub fn same_contact(a: &str, b: &str) -> bool {
    match (Uri::parse(a.as_bytes()), Uri::parse(b.as_bytes())) {
        (Ok(x), Ok(y)) => uri_eq(&x, &y),
        _ => a == b,
    }
}

/// What a REGISTER says about itself.
#[derive(Debug, Clone, Copy)]
pub struct RegisterInfo<'a> {
    /// Call-ID.
    pub callid: &'a str,
    /// CSeq number.
    pub cseq: u32,
    /// User-Agent (empty when absent).
    pub user_agent: &'a str,
    /// Source address to remember, if any.
    pub received: Option<&'a str>,
}

/// One Contact of a REGISTER, resolved: the URI, its expiration (0 = remove) and q.
#[derive(Debug, Clone, Copy)]
pub struct ContactUpdate<'a> {
    /// Contact URI.
    pub contact: &'a str,
    /// Seconds (already clamped to the registrar's limits); 0 removes the binding.
    pub expires: u32,
    /// q in thousandths.
    pub q: u16,
}

/// A change of one binding, to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The binding was added or changed: write it.
    Upsert(Binding),
    /// The binding with this contact is gone.
    Delete(Box<str>),
}

/// Why a registration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// The AOR has [`MAX_CONTACTS_PER_AOR`] bindings already.
    TooManyContacts,
    /// The store holds [`MAX_BINDINGS`] already.
    StoreFull,
}

impl Reject {
    /// The reply status and reason for it.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            Reject::TooManyContacts => (503, "Too Many Registered Contacts"),
            Reject::StoreFull => (503, "Location Table Full"),
        }
    }
}

/// The usrloc parameters persistence needs, read from the running program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsrlocConfig {
    /// 0 memory, 1 write-through, 2 write-back, 3 DB only.
    pub db_mode: i64,
    /// Database URL (empty = the server's default database).
    pub db_url: String,
    /// Seconds between timer runs (expiry, db_mode 2 flush).
    pub timer_interval: u64,
    /// AORs are user@domain (usrloc's or registrar's `use_domain`).
    pub use_domain: bool,
    /// The AOR's user part compared case-sensitively (registrar's `case_sensitive`).
    pub case_sensitive: bool,
    /// Column names: username, domain, contact, expires, q, callid, cseq.
    pub user_col: String,
    /// Domain column.
    pub domain_col: String,
    /// Contact column.
    pub contact_col: String,
    /// Expires column.
    pub expires_col: String,
    /// q column.
    pub q_col: String,
    /// Call-ID column.
    pub callid_col: String,
    /// CSeq column.
    pub cseq_col: String,
}

impl UsrlocConfig {
    /// The columns [`UsrlocConfig::select_job`] asks for, in the order [`UsrlocConfig::binding_of_row`]
    /// and [`Usrloc::load_rows`] read them.
    pub fn columns(&self) -> Vec<String> {
        vec![
            self.user_col.clone(),
            self.domain_col.clone(),
            self.contact_col.clone(),
            self.expires_col.clone(),
            self.q_col.clone(),
            self.callid_col.clone(),
            self.cseq_col.clone(),
            "flags".into(),
            "user_agent".into(),
            "received".into(),
            "last_modified".into(),
        ]
    }

    /// The select of the bindings of `table` — of one AOR when `aor` is given (db_mode 3 lookup and
    /// save), of the whole table otherwise (loading at start for db_mode 1/2).
    pub fn select_job(&self, table: &str, aor: Option<(&str, &str)>) -> Job {
        Job::Db {
            url: self.db_url.clone(),
            table: table.to_string(),
            keys: aor.map_or_else(Vec::new, |(u, d)| self.aor_keys(u, d)),
            columns: self.columns(),
        }
    }

    fn aor_keys(&self, username: &str, domain: &str) -> Vec<(String, String)> {
        let mut k = vec![(self.user_col.clone(), username.to_string())];
        if self.use_domain {
            k.push((self.domain_col.clone(), domain.to_string()));
        }
        k
    }

    /// A row of [`UsrlocConfig::columns`] as (username, domain, binding); `None` when the row is
    /// unusable (no username or contact).
    pub fn binding_of_row(&self, row: &[Option<String>]) -> Option<(String, String, Binding)> {
        let col = |i: usize| row.get(i).and_then(|v| v.as_deref());
        let username = col(0)?.to_string();
        let domain = col(1).unwrap_or("").to_string();
        let contact = col(2).filter(|c| !c.is_empty())?;
        let flags: u32 = col(7).and_then(|f| f.trim().parse().ok()).unwrap_or(0);
        let expires = col(3).and_then(time::parse_datetime).unwrap_or(0);
        let q = col(4)
            .and_then(|q| q.trim().parse::<f64>().ok())
            .map_or(0, |q| (q.clamp(0.0, 1.0) * 1000.0).round() as u16);
        Some((
            username,
            domain,
            Binding {
                contact: contact.into(),
                expires,
                q,
                callid: col(5).unwrap_or("").into(),
                cseq: col(6).and_then(|c| c.trim().parse().ok()).unwrap_or(0),
                received: col(9).filter(|r| !r.is_empty()).map(Into::into),
                user_agent: col(8).unwrap_or("").into(),
                flags,
                last_modified: col(10).and_then(time::parse_datetime).unwrap_or(0),
            },
        ))
    }

    /// The DB write for one change of a binding of `username`/`domain` in `table`.
    pub fn write_of(&self, table: &str, username: &str, domain: &str, change: &Change) -> DbWrite {
        let mut keys = self.aor_keys(username, domain);
        match change {
            Change::Delete(contact) => {
                keys.push((self.contact_col.clone(), contact.to_string()));
                DbWrite::Delete {
                    url: self.db_url.clone(),
                    table: table.to_string(),
                    keys,
                }
            }
            Change::Upsert(b) => {
                keys.push((self.contact_col.clone(), b.contact.to_string()));
                let expires = if b.is_permanent() { 0 } else { b.expires };
                let q = format!("{}.{:02}", b.q / 1000, (b.q % 1000) / 10);
                DbWrite::Upsert {
                    url: self.db_url.clone(),
                    table: table.to_string(),
                    keys,
                    row: vec![
                        (self.expires_col.clone(), Some(time::datetime(expires))),
                        (self.q_col.clone(), Some(q)),
                        (self.callid_col.clone(), Some(b.callid.to_string())),
                        (self.cseq_col.clone(), Some(b.cseq.to_string())),
                        (
                            "last_modified".into(),
                            Some(time::datetime(b.last_modified)),
                        ),
                        ("replicate".into(), Some("0".into())),
                        ("state".into(), Some("0".into())),
                        ("flags".into(), Some(b.flags.to_string())),
                        ("user_agent".into(), Some(b.user_agent.to_string())),
                        (
                            "received".into(),
                            b.received.as_ref().map(|r| r.to_string()),
                        ),
                    ],
                }
            }
        }
    }
}

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
        if let Some((rec, changes)) = &out {
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
