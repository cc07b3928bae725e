//! Contact header values (RFC 3261 §20.10, §25.1):
//! `Contact = ( STAR / (contact-param *(COMMA contact-param)) )`,
//! `contact-param = (name-addr / addr-spec) *(SEMI contact-params)`.
//!
//! Invariants and choices:
//! - `*` must be the whole value; a `*` among other values is `BadContact`; an empty element (`a,,b`)
//!   is `BadContact`; errors inside an element keep the kind of [`NameAddr::parse`] with offsets moved
//!   into the header value.
//! - [`parse_contacts`] validates every element once and returns a list that re-parses lazily when
//!   iterated (no allocation); the iterator can therefore not fail.
//! - `expires` above `u32::MAX` is `BadExpires` (the caller may use its default, RFC 4475 scalar02);
//!   `q` is returned in thousandths (`0.33` → 330) and must be a `qvalue` (else `BadParam`).

use super::chars::{offset_in, split_commas};
use super::error::{ErrorKind, ParseError, Result};
use super::name_addr::NameAddr;
use super::scalar;

/// One Contact value with its offsets in the header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contact<'a> {
    /// The address and its contact parameters.
    pub addr: NameAddr<'a>,
    /// Offset of the value's first byte in the header value.
    pub start: usize,
    /// Offset just past the value's last byte.
    pub end: usize,
}

impl<'a> Contact<'a> {
    /// The `expires` parameter in seconds: `Ok(None)` if absent; `BadExpires` if it has no value, is not
    /// a number or exceeds `u32::MAX`.
    pub fn expires(&self) -> Result<Option<u32>> {
        match self.addr.params.get(b"expires") {
            None => Ok(None),
            Some(None) => Err(ParseError::new(ErrorKind::BadExpires, self.start)),
            Some(Some(v)) => scalar::expires(v)
                .map(Some)
                .map_err(|e| ParseError::new(ErrorKind::BadExpires, self.at(v) + e.at)),
        }
    }

    /// The `q` parameter in thousandths (0..=1000): `Ok(None)` if absent, `BadParam` if malformed.
    pub fn q(&self) -> Result<Option<u16>> {
        match self.addr.params.get(b"q") {
            None => Ok(None),
            Some(v) => parse_q(v.unwrap_or_default())
                .map(Some)
                .ok_or(ParseError::new(
                    ErrorKind::BadParam,
                    v.map_or(self.start, |v| self.at(v)),
                )),
        }
    }

    /// Offset of `v` (a sub-slice of this contact) in the header value.
    fn at(&self, v: &[u8]) -> usize {
        self.start + offset_in(self.addr.raw, v).unwrap_or(0)
    }
}

/// Parses a `qvalue` (`"0" ["." 0*3DIGIT]` / `"1" ["." 0*3"0"]`) into thousandths.
pub fn parse_q(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(p) => (v.get(..p)?, v.get(p + 1..)?),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut f: u16 = 0;
    for i in 0..3 {
        f = f * 10 + frac.get(i).map_or(0, |&d| u16::from(d - b'0'));
    }
    match int {
        b"0" => Some(f),
        b"1" if f == 0 => Some(1000),
        _ => None,
    }
}

/// A Contact header: `*` or a validated list of values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contacts<'a> {
    /// `Contact: *` (remove all bindings).
    Star,
    /// One or more contacts.
    List(ContactList<'a>),
}

/// A validated comma-separated list of contacts (kept as its raw text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactList<'a> {
    value: &'a [u8],
    len: usize,
}

impl<'a> ContactList<'a> {
    /// The contacts in order.
    pub fn iter(&self) -> impl Iterator<Item = Contact<'a>> + 'a {
        contacts(self.value).filter_map(Result::ok)
    }

    /// How many contacts there are (at least one).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a list holds at least one contact.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The raw header value.
    pub fn raw(&self) -> &'a [u8] {
        self.value
    }
}

/// Iterates over the elements of a Contact header value, parsing each (no `*` handling, see
/// [`parse_contacts`]). Empty elements and elements starting with `*` yield `BadContact`.
pub fn contacts(value: &[u8]) -> impl Iterator<Item = Result<Contact<'_>>> + '_ {
    split_commas(value).map(|(v, start, end)| {
        if v.is_empty() || v.first() == Some(&b'*') {
            return Err(ParseError::new(ErrorKind::BadContact, start));
        }
        NameAddr::parse(v)
            .map(|addr| Contact { addr, start, end })
            .map_err(|e| e.offset(start))
    })
}

/// Parses a whole Contact header value: `*` alone, or a list whose every element is valid.
pub fn parse_contacts(value: &[u8]) -> Result<Contacts<'_>> {
    let mut it = split_commas(value);
    if let Some((v, _, _)) = it.next() {
        if v == b"*" && it.next().is_none() {
            return Ok(Contacts::Star);
        }
    }
    let mut len = 0usize;
    for c in contacts(value) {
        c?;
        len += 1;
    }
    Ok(Contacts::List(ContactList { value, len }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::wire::uri::Host;
    use proptest::prelude::*;

    fn list(v: &[u8]) -> Vec<Contact<'_>> {
        match parse_contacts(v).unwrap() {
            Contacts::List(l) => {
                let out: Vec<_> = l.iter().collect();
                assert_eq!(out.len(), l.len());
                out
            }
            Contacts::Star => panic!("star"),
        }
    }

    #[test]
    fn star() {
        assert_eq!(parse_contacts(b"*"), Ok(Contacts::Star));
        assert_eq!(
            parse_contacts(b"*, <sip:a@b>"),
            Err(ParseError::new(ErrorKind::BadContact, 0))
        );
        assert_eq!(
            parse_contacts(b"<sip:a@b>, *"),
            Err(ParseError::new(ErrorKind::BadContact, 11))
        );
        assert_eq!(
            parse_contacts(b"*;expires=0"),
            Err(ParseError::new(ErrorKind::BadContact, 0))
        );
    }

    #[test]
    fn corpus_contacts() {
        // cparam01
        let c = list(b"sip:+19725552222@gw1.example.net;unknownparam");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].addr.uri_raw, b"sip:+19725552222@gw1.example.net");
        assert_eq!(c[0].addr.param(b"unknownparam"), Some(None));
        // cparam02
        let c = list(b"<sip:+19725552222@gw1.example.net;unknownparam>");
        assert_eq!(c[0].addr.uri.param(b"unknownparam"), Some(None));
        assert!(c[0].addr.params.is_empty());
        // wsinv m:
        let v: &[u8] = b"\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33";
        let c = list(v);
        assert_eq!(c[0].q(), Ok(Some(330)));
        assert_eq!(c[0].expires(), Ok(None));
        assert_eq!((c[0].start, c[0].end), (0, v.len()));
        // scalar02: expires overflows
        let c = list(b"<sip:user@host129.example.com>\r\n  ;expires=280297596632815");
        assert_eq!(
            c[0].expires(),
            Err(ParseError::new(ErrorKind::BadExpires, 53))
        );
        // escnull: two distinct contacts
        let a = list(b"<sip:%00@host5.example.com>");
        let b = list(b"<sip:%00%00@host5.example.com>");
        assert_ne!(
            a[0].addr.uri.user_unescaped(),
            b[0].addr.uri.user_unescaped()
        );
        // RFC 5118 ipv4-mapped
        let c = list(b"\"T. desk phone\" <sip:ted@[::ffff:192.0.2.2]>");
        assert!(matches!(c[0].addr.uri.host, Host::V6(_)));
        // several values
        let v: &[u8] = b"<sip:a@h1>;q=1;expires=60, \"B, b\" <sip:b@h2>;q=0.5 ,sip:c@h3";
        let c = list(v);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].q(), Ok(Some(1000)));
        assert_eq!(c[0].expires(), Ok(Some(60)));
        assert_eq!(c[1].q(), Ok(Some(500)));
        assert_eq!(&v[c[1].start..c[1].end], b"\"B, b\" <sip:b@h2>;q=0.5");
        assert_eq!(c[2].addr.uri.host, Host::Name(b"h3"));
        assert_eq!(c[2].q(), Ok(None));
    }

    #[test]
    fn bad_contacts() {
        // badinv01
        assert_eq!(
            parse_contacts(b"\"Joe\" <sip:joe@example.org>;;;;"),
            Err(ParseError::new(ErrorKind::BadParam, 28))
        );
        // regbadct
        assert_eq!(
            parse_contacts(b"sip:user@example.com?Route=%3Csip:sip.example.com%3E")
                .unwrap_err()
                .kind,
            ErrorKind::BadNameAddr
        );
        assert_eq!(
            parse_contacts(b"<sip:a@b>,,<sip:c@d>"),
            Err(ParseError::new(ErrorKind::BadContact, 10))
        );
        assert_eq!(parse_contacts(b"").unwrap_err().kind, ErrorKind::BadContact);
        assert_eq!(
            parse_contacts(b"<sip:a@b>, <sip:c@d>;q=2"),
            Ok(Contacts::List(ContactList {
                value: b"<sip:a@b>, <sip:c@d>;q=2",
                len: 2
            }))
        );
        let c = list(b"<sip:c@d>;q=2");
        assert_eq!(c[0].q(), Err(ParseError::new(ErrorKind::BadParam, 12)));
        let c = list(b"<sip:a@b>, <sip:c@d>;expires=1x");
        assert_eq!(
            c[1].expires(),
            Err(ParseError::new(ErrorKind::BadExpires, 30))
        );
        let c = list(b"<sip:c@d>;expires");
        assert_eq!(c[0].expires().unwrap_err().kind, ErrorKind::BadExpires);
    }

    #[test]
    fn qvalues() {
        for (s, q) in [
            (&b"0"[..], Some(0)),
            (b"0.", Some(0)),
            (b"0.5", Some(500)),
            (b"0.33", Some(330)),
            (b"0.999", Some(999)),
            (b"1", Some(1000)),
            (b"1.000", Some(1000)),
            (b"1.001", None),
            (b"0.1234", None),
            (b"2", None),
            (b"", None),
            (b".5", None),
            (b"0.a", None),
        ] {
            assert_eq!(parse_q(s), q, "{:?}", String::from_utf8_lossy(s));
        }
    }

    #[test]
    fn literals_are_corpus_bytes() {
        for (file, lit) in [
            (
                "rfc4475/scalar02.dat",
                &b"<sip:user@host129.example.com>\r\n  ;expires=280297596632815"[..],
            ),
            ("rfc4475/escnull.dat", b"<sip:%00@host5.example.com>"),
            ("rfc4475/escnull.dat", b"<sip:%00%00@host5.example.com>"),
            (
                "rfc5118/ipv4-mapped-ipv6.dat",
                b"\"T. desk phone\" <sip:ted@[::ffff:192.0.2.2]>",
            ),
        ] {
            crate::wire::chars::corpus::assert_in(file, lit);
        }
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(Contacts::List(l)) = parse_contacts(&data) {
                prop_assert_eq!(l.iter().count(), l.len());
                for c in l.iter() { let _ = (c.q(), c.expires()); }
            }
        }
    }
}
