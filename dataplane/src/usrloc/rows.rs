//! The `location` table's rows: usrloc's column settings, the select of a table (or an AOR),
//! a row turned into a binding and a change turned into a [`DbWrite`].

use super::{time, Binding, Change};
use crate::offload::{DbWrite, Job};

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

    pub(super) fn aor_keys(&self, username: &str, domain: &str) -> Vec<(String, String)> {
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
