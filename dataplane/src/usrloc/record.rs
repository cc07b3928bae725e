//! Bindings and records: one AOR's contacts and the REGISTER rules that change them (RFC 3261
//! §10.3: Call-ID/CSeq ordering, expiry, `*`), with the bounds of the store.

use smallvec::SmallVec;

use super::{FL_PERMANENT, MAX_CONTACTS_PER_AOR};
use crate::wire::uri::{uri_eq, Uri};

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

    pub(super) fn position(&self, contact: &str) -> Option<usize> {
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
