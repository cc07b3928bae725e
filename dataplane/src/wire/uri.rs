//! URIs: `SIP-URI` / `SIPS-URI` (RFC 3261 §19.1, §25.1), `tel:` (RFC 3966) and any other
//! `absoluteURI` scheme kept opaque; IPv6 references per RFC 5118.
//!
//! ```text
//! SIP-URI  = "sip:" [ userinfo ] hostport uri-parameters [ headers ]
//! userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"
//! hostport = host [ ":" port ]        host = hostname / IPv4address / IPv6reference
//! ```
//!
//! Invariants:
//! - Every field borrows from the input; nothing is allocated except by [`unescape`] when a `%` is there.
//! - A URI never contains white space, CTLs, bytes ≥ 0x80, `<`, `>` or `"` (→ `BadUri`).
//! - `@` cannot appear unescaped in a host, a parameter or a header, so the userinfo is what precedes
//!   the first `@`; it may contain `;`, `?`, `/` and `,` (RFC 4475 semiuri, intmeth).
//! - An IPv6 host must be bracketed (`sip:2001:db8::10` → `BadHost`, RFC 5118 §4.2); inside the brackets
//!   everything is the address (`[2001:db8::10:5070]` has no port, §4.3). As RFC 5118 §4.10 allows, a
//!   reference with one extra colon (`[2001:db8:::192.0.2.1]`) is tolerated and read as `::`; `host_raw`
//!   keeps the bytes as written.
//! - Hostnames are `alphanum`, `-`, `.` (plus `_`, tolerated as SER did), with no empty label except a
//!   trailing dot; a host of digits and dots only must be a valid IPv4 address.
//! - Escapes are validated (`BadEscape`) but never decoded in place; [`unescape`] decodes one level.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::chars::{
    eq_ignore_case, is_alphanum, is_hnv_unreserved, is_password_char, is_unreserved,
    is_user_unreserved, offset_in,
};
use super::error::{ErrorKind, ParseError, Result};
use super::params::{check_escapes, Params};

mod compare;
mod fast;
mod host;

pub use compare::{unescape, uri_eq};
pub(crate) use host::{parse_host, parse_port, parse_v4, parse_v6};

/// The URI scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:` (RFC 3966)
    Tel,
    /// Any other scheme; the rest of the URI is in [`Uri::opaque`].
    Other,
}

/// A host: a name, an IPv4 address, or an IPv6 address (written as a bracketed reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host<'a> {
    /// A hostname as written (compare case-insensitively).
    Name(&'a [u8]),
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 address.
    V6(Ipv6Addr),
}

impl Host<'_> {
    /// True if both hosts are the same: names case-insensitively, addresses by value.
    pub fn same(&self, other: &Host<'_>) -> bool {
        match (self, other) {
            (Host::Name(a), Host::Name(b)) => eq_ignore_case(a, b),
            (Host::V4(a), Host::V4(b)) => a == b,
            (Host::V6(a), Host::V6(b)) => a == b,
            _ => false,
        }
    }
}

/// A parsed URI. For `sip:`/`sips:` every field is filled in; for `tel:` `user` is the number and
/// `params` its parameters; for other schemes only `raw`, `scheme_raw` and `opaque` are meaningful (the
/// host is an empty name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    /// The whole URI as written.
    pub raw: &'a [u8],
    /// The scheme, classified.
    pub scheme: Scheme,
    /// The scheme as written (without the `:`).
    pub scheme_raw: &'a [u8],
    /// The user part (escapes kept), if there is a userinfo; the number for `tel:`.
    pub user: Option<&'a [u8]>,
    /// The password (escapes kept), if present.
    pub password: Option<&'a [u8]>,
    /// The host.
    pub host: Host<'a>,
    /// The host as written; an IPv6 reference includes its brackets.
    pub host_raw: &'a [u8],
    /// The port, if written.
    pub port: Option<u16>,
    /// The URI parameters (`;name=value`).
    pub params: Params<'a>,
    /// The headers, after `?` (escapes kept).
    pub headers: Option<&'a [u8]>,
    /// Everything after `scheme:`.
    pub opaque: &'a [u8],
}

fn err(kind: ErrorKind, at: usize) -> ParseError {
    ParseError::new(kind, at)
}

/// Checks that every byte of `s` is allowed by `ok` or is a valid `%HH` escape.
fn check_chars(s: &[u8], base: usize, kind: ErrorKind, ok: impl Fn(u8) -> bool) -> Result<()> {
    let mut escapes = false;
    for (p, &b) in s.iter().enumerate() {
        if b == b'%' {
            escapes = true;
        } else if !ok(b) {
            return Err(err(kind, base + p));
        }
    }
    // Escapes are rare: a second pass only when there is one.
    if escapes {
        check_escapes(s, base)?;
    }
    Ok(())
}

/// Bytes that never appear in a URI: controls, SP, DEL, non-ASCII, `<`, `>`, `"`.
static NOT_IN_URI: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = b <= 0x20
            || b >= 0x7f
            || b == b'<' as usize
            || b == b'>' as usize
            || b == b'"' as usize;
        b += 1;
    }
    t
};

/// Host name bytes (alphanum, `-`, `.`, `_`).
static HOST_NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_';
        b += 1;
    }
    t
};

impl<'a> Uri<'a> {
    /// Parses one URI. The whole input must be the URI (no surrounding white space or `<>`).
    pub fn parse(input: &'a [u8]) -> Result<Uri<'a>> {
        match fast::parse(input) {
            Some(uri) => Ok(uri),
            None => Self::parse_general(input),
        }
    }

    /// The one-pass parse of the common shape alone (`None`: not that shape, ask
    /// [`Uri::parse`]). What it accepts holds no white space, `<`, `>`, `?` or escape.
    #[inline]
    pub(crate) fn parse_common(input: &'a [u8]) -> Option<Uri<'a>> {
        fast::parse(input)
    }

    /// Every URI form, every error; [`Uri::parse`] comes here for all but the common shape.
    fn parse_general(input: &'a [u8]) -> Result<Uri<'a>> {
        if let Some(p) = input.iter().position(|&b| NOT_IN_URI[b as usize]) {
            return Err(err(ErrorKind::BadUri, p));
        }
        let colon = memchr::memchr(b':', input).ok_or(err(ErrorKind::BadUri, input.len()))?;
        let scheme_raw = input.get(..colon).unwrap_or_default();
        let scheme_ok = scheme_raw.first().is_some_and(u8::is_ascii_alphabetic)
            && scheme_raw
                .iter()
                .all(|&b| is_alphanum(b) || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return Err(err(ErrorKind::BadUri, 0));
        }
        let scheme = if eq_ignore_case(scheme_raw, b"sip") {
            Scheme::Sip
        } else if eq_ignore_case(scheme_raw, b"sips") {
            Scheme::Sips
        } else if eq_ignore_case(scheme_raw, b"tel") {
            Scheme::Tel
        } else {
            Scheme::Other
        };
        let base = colon + 1;
        let opaque = input.get(base..).unwrap_or_default();
        let mut uri = Uri {
            raw: input,
            scheme,
            scheme_raw,
            user: None,
            password: None,
            host: Host::Name(b""),
            host_raw: input.get(input.len()..).unwrap_or_default(),
            port: None,
            params: Params::EMPTY,
            headers: None,
            opaque,
        };
        match scheme {
            Scheme::Other => {
                if opaque.is_empty() {
                    return Err(err(ErrorKind::BadUri, base));
                }
                Ok(uri)
            }
            Scheme::Tel => {
                let semi = memchr::memchr(b';', opaque).unwrap_or(opaque.len());
                let number = opaque.get(..semi).unwrap_or_default();
                let num_ok = !number.is_empty()
                    && number.iter().all(|&b| {
                        b.is_ascii_hexdigit()
                            || matches!(b, b'*' | b'#' | b'+' | b'-' | b'.' | b'(' | b')')
                    });
                if !num_ok {
                    return Err(err(ErrorKind::BadUri, base));
                }
                uri.user = Some(number);
                uri.params = Params::parse_uri(opaque.get(semi..).unwrap_or_default())
                    .map_err(|e| e.offset(base + semi))?;
                Ok(uri)
            }
            Scheme::Sip | Scheme::Sips => {
                Self::parse_sip(&mut uri, opaque, base)?;
                Ok(uri)
            }
        }
    }

    fn parse_sip(uri: &mut Uri<'a>, rest: &'a [u8], base: usize) -> Result<()> {
        let mut hp_start = 0;
        if let Some(at) = memchr::memchr(b'@', rest) {
            let userinfo = rest.get(..at).unwrap_or_default();
            let (user, password) = match memchr::memchr(b':', userinfo) {
                Some(c) => (
                    userinfo.get(..c).unwrap_or_default(),
                    Some(userinfo.get(c + 1..).unwrap_or_default()),
                ),
                None => (userinfo, None),
            };
            if user.is_empty() {
                return Err(err(ErrorKind::BadUri, base));
            }
            check_chars(user, base, ErrorKind::BadUri, |b| {
                is_unreserved(b) || is_user_unreserved(b)
            })?;
            if let Some(pw) = password {
                check_chars(
                    pw,
                    base + user.len() + 1,
                    ErrorKind::BadUri,
                    is_password_char,
                )?;
            }
            uri.user = Some(user);
            uri.password = password;
            hp_start = at + 1;
        }
        let hp = rest.get(hp_start..).unwrap_or_default();
        let hbase = base + hp_start;
        if hp.is_empty() {
            return Err(err(ErrorKind::BadUri, hbase));
        }
        // an unbracketed IPv6 address (RFC 5118 §4.2): several ':' before any ';' or '?'
        if hp.first() != Some(&b'[') {
            let mut colons = 0;
            for &b in hp {
                match b {
                    b';' | b'?' => break,
                    b':' => colons += 1,
                    _ => {}
                }
            }
            if colons > 1 {
                return Err(err(ErrorKind::BadHost, hbase));
            }
        }
        let (host, host_raw, mut pos) = parse_host(hp).map_err(|e| e.offset(hbase))?;
        uri.host = host;
        uri.host_raw = host_raw;
        if hp.get(pos) == Some(&b':') {
            // Scanned and converted in one pass (as parse_port would judge it).
            let pstart = pos + 1;
            let mut pend = pstart;
            let mut v: u32 = 0;
            while let Some(&d) = hp.get(pend) {
                if !d.is_ascii_digit() {
                    break;
                }
                v = v * 10 + u32::from(d - b'0');
                if v > u32::from(u16::MAX) {
                    return Err(err(ErrorKind::BadPort, hbase + pstart));
                }
                pend += 1;
            }
            if pend == pstart {
                return Err(err(ErrorKind::BadPort, hbase + pstart));
            }
            uri.port = Some(v as u16);
            pos = pend;
        }
        let tail = hp.get(pos..).unwrap_or_default();
        let q = memchr::memchr(b'?', tail).unwrap_or(tail.len());
        let ptext = tail.get(..q).unwrap_or_default();
        if !ptext.is_empty() && ptext.first() != Some(&b';') {
            return Err(err(ErrorKind::BadHost, hbase + pos));
        }
        uri.params = Params::parse_uri(ptext).map_err(|e| e.offset(hbase + pos))?;
        if let Some(h) = tail.get(q + 1..) {
            if tail.get(q) == Some(&b'?') {
                let hstart = hbase + pos + q + 1;
                if h.is_empty() {
                    return Err(err(ErrorKind::BadUri, hstart));
                }
                check_chars(h, hstart, ErrorKind::BadUri, |b| {
                    is_unreserved(b) || is_hnv_unreserved(b) || b == b'=' || b == b'&'
                })?;
                uri.headers = Some(h);
            }
        }
        Ok(())
    }

    /// True for `sip:` and `sips:` URIs.
    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }

    /// A URI parameter by name (case-insensitive): outer `None` absent, inner `None` a flag.
    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        self.params.get(name)
    }

    /// The `transport` parameter value.
    pub fn transport(&self) -> Option<&'a [u8]> {
        self.params.value(b"transport")
    }

    /// True if the `lr` parameter is present (loose routing).
    pub fn lr(&self) -> bool {
        self.params.has(b"lr")
    }

    /// The `maddr` parameter value.
    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.params.value(b"maddr")
    }

    /// The `user` parameter value (`phone`, `ip`…).
    pub fn user_param(&self) -> Option<&'a [u8]> {
        self.params.value(b"user")
    }

    /// `host[:port]` as written (empty for non-SIP URIs).
    pub fn host_port_raw(&self) -> &'a [u8] {
        let Some(start) = offset_in(self.raw, self.host_raw) else {
            return self.host_raw;
        };
        let mut end = start + self.host_raw.len();
        if self.port.is_some() && self.raw.get(end) == Some(&b':') {
            end += 1;
            while self.raw.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
        }
        self.raw.get(start..end).unwrap_or(self.host_raw)
    }

    /// The user part with `%HH` escapes decoded (one level).
    pub fn user_unescaped(&self) -> Option<Cow<'a, [u8]>> {
        self.user.map(unescape)
    }
}

#[cfg(test)]
mod tests;
