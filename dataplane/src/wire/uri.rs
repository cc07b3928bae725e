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
    eq_ignore_case, hex_val, is_alphanum, is_hnv_unreserved, is_password_char, is_unreserved,
    is_user_unreserved, offset_in,
};
use super::error::{ErrorKind, ParseError, Result};
use super::params::{check_escapes, Params};

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

/// Parses a host at the start of `s` (`[v6]`, IPv4 or hostname), stopping at the first byte that cannot
/// be part of a host. Returns the host, its raw bytes and the end offset. Errors carry offsets into `s`.
pub(crate) fn parse_host(s: &[u8]) -> Result<(Host<'_>, &[u8], usize)> {
    if s.first() == Some(&b'[') {
        let close = memchr::memchr(b']', s).ok_or(err(ErrorKind::BadHost, 0))?;
        let inner = s.get(1..close).unwrap_or_default();
        let addr = parse_v6(inner).ok_or(err(ErrorKind::BadHost, 1))?;
        return Ok((
            Host::V6(addr),
            s.get(..close + 1).unwrap_or_default(),
            close + 1,
        ));
    }
    // One pass: find the end of the name, whether it is all digits and dots (an IPv4 address),
    // and check the labels (non-empty, no leading or trailing '-'; one trailing dot allowed).
    let mut end = 0;
    let mut numeric = true;
    let mut label_start = 0;
    let mut bad_label: Option<usize> = None;
    while let Some(&b) = s.get(end) {
        if !HOST_NAME[b as usize] {
            break;
        }
        if b == b'.' {
            if bad_label.is_none()
                && (end == label_start || s[label_start] == b'-' || s[end - 1] == b'-')
            {
                bad_label = Some(label_start);
            }
            label_start = end + 1;
        } else if !b.is_ascii_digit() {
            numeric = false;
        }
        end += 1;
    }
    let name = s.get(..end).unwrap_or_default();
    if name.is_empty() {
        return Err(err(ErrorKind::BadHost, 0));
    }
    if numeric {
        let a = parse_v4(name).ok_or(err(ErrorKind::BadHost, 0))?;
        return Ok((Host::V4(a), name, end));
    }
    // The last label (empty only after a single trailing dot, which is allowed).
    if bad_label.is_none() && label_start < end && (s[label_start] == b'-' || s[end - 1] == b'-') {
        bad_label = Some(label_start);
    }
    if bad_label.is_none() && label_start == end && end >= 2 && s[end - 2] == b'.' {
        bad_label = Some(end - 1);
    }
    if let Some(off) = bad_label {
        return Err(err(ErrorKind::BadHost, off));
    }
    Ok((Host::Name(name), name, end))
}

/// Parses dotted-quad IPv4 text.
pub(crate) fn parse_v4(s: &[u8]) -> Option<Ipv4Addr> {
    // By hand, in one pass: std's parser wants a &str (a UTF-8 check first) and a split iterator
    // cost ~280 instructions per address; both showed in profiles. Same rules as std: four
    // decimal octets ≤ 255, no leading zeros.
    if s.len() < 7 || s.len() > 15 {
        return None;
    }
    let mut octets = [0u8; 4];
    let mut n = 0usize; // octets finished
    let mut v: u16 = 0;
    let mut digits = 0u8;
    let mut lead_zero = false;
    for &b in s {
        if b == b'.' {
            if digits == 0 || n >= 3 {
                return None;
            }
            octets[n] = v as u8;
            n += 1;
            v = 0;
            digits = 0;
            continue;
        }
        let d = b.wrapping_sub(b'0');
        if d > 9 || digits >= 3 || lead_zero && digits == 1 {
            return None;
        }
        lead_zero = digits == 0 && d == 0;
        v = v * 10 + u16::from(d);
        if v > 255 {
            return None;
        }
        digits += 1;
    }
    if n != 3 || digits == 0 {
        return None;
    }
    octets[3] = v as u8;
    Some(Ipv4Addr::from(octets))
}

/// Parses IPv6 text (no brackets), tolerating one extra colon in a `:::` run (RFC 5118 §4.10).
pub(crate) fn parse_v6(s: &[u8]) -> Option<Ipv6Addr> {
    let text = std::str::from_utf8(s).ok()?;
    if let Ok(a) = text.parse() {
        return Some(a);
    }
    let at = text.find(":::")?;
    if text.get(at + 1..)?.contains(":::") || text.len() > 64 {
        return None;
    }
    let mut buf = [0u8; 64];
    let (head, tail) = (text.get(..at)?, text.get(at + 1..)?);
    let n = head.len() + tail.len();
    buf.get_mut(..head.len())?.copy_from_slice(head.as_bytes());
    buf.get_mut(head.len()..n)?.copy_from_slice(tail.as_bytes());
    std::str::from_utf8(buf.get(..n)?).ok()?.parse().ok()
}

/// Parses a port: `1*DIGIT` with value ≤ 65535 (`BadPort` at offset 0 otherwise).
pub(crate) fn parse_port(s: &[u8]) -> Result<u16> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return Err(err(ErrorKind::BadPort, 0));
    }
    let mut v: u16 = 0;
    for &d in s {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u16::from(d - b'0')))
            .ok_or(err(ErrorKind::BadPort, 0))?;
    }
    Ok(v)
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

/// Decodes `%HH` escapes once (so `%2541` becomes `%41`, not `A`). Malformed escapes are kept as
/// written. Borrows when there is no `%`.
pub fn unescape(s: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'%', s).is_none() {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'%' {
            if let (Some(h), Some(l)) = (
                s.get(i + 1).and_then(|&c| hex_val(c)),
                s.get(i + 2).and_then(|&c| hex_val(c)),
            ) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    Cow::Owned(out)
}

fn unesc_eq(a: &[u8], b: &[u8], ignore_case: bool) -> bool {
    let (a, b) = (unescape(a), unescape(b));
    if ignore_case {
        eq_ignore_case(&a, &b)
    } else {
        a == b
    }
}

fn param_values_eq(a: Option<&[u8]>, b: Option<&[u8]>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => unesc_eq(x, y, true),
        _ => false,
    }
}

/// Compares URI headers (`a=b&c=d`) as unordered sets: names case-insensitively, values exactly after
/// unescaping.
fn headers_eq(a: Option<&[u8]>, b: Option<&[u8]>) -> bool {
    let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
    let split = |h: &'_ [u8]| -> Vec<(Vec<u8>, Vec<u8>)> {
        h.split(|&c| c == b'&')
            .filter(|x| !x.is_empty())
            .map(|kv| {
                let (k, v) = match memchr::memchr(b'=', kv) {
                    Some(e) => (
                        kv.get(..e).unwrap_or_default(),
                        kv.get(e + 1..).unwrap_or_default(),
                    ),
                    None => (kv, &b""[..]),
                };
                (unescape(k).to_ascii_lowercase(), unescape(v).into_owned())
            })
            .collect()
    };
    let mut x = split(a);
    let mut y = split(b);
    x.sort();
    y.sort();
    x == y
}

/// URI equality per RFC 3261 §19.1.4: scheme, user and password exact (after unescaping), host
/// case-insensitive (addresses by value), ports equal (an absent port differs from 5060); the `user`,
/// `ttl`, `method`, `maddr` and `transport` parameters must match if either URI has them; other
/// parameters are compared only when both have them; headers must match as sets. `tel:` and other
/// schemes compare scheme case-insensitively and the rest exactly after unescaping.
pub fn uri_eq(a: &Uri<'_>, b: &Uri<'_>) -> bool {
    if a.scheme != b.scheme {
        return false;
    }
    if !a.is_sip() {
        return eq_ignore_case(a.scheme_raw, b.scheme_raw) && unesc_eq(a.opaque, b.opaque, false);
    }
    let opt_eq = |x: Option<&[u8]>, y: Option<&[u8]>| match (x, y) {
        (None, None) => true,
        (Some(x), Some(y)) => unesc_eq(x, y, false),
        _ => false,
    };
    if !opt_eq(a.user, b.user) || !opt_eq(a.password, b.password) {
        return false;
    }
    if !a.host.same(&b.host) || a.port != b.port {
        return false;
    }
    const STRICT: [&[u8]; 5] = [b"user", b"ttl", b"method", b"maddr", b"transport"];
    for name in STRICT {
        if !param_values_eq_opt(first_param(a, name), first_param(b, name)) {
            return false;
        }
    }
    // Other parameters: compared only when both URIs have them (first occurrence of each name).
    for p in a.params.iter() {
        let n = unescape(p.name);
        if STRICT.iter().any(|s| eq_ignore_case(s, &n)) {
            continue;
        }
        if let (Some(x), Some(y)) = (first_param(a, &n), first_param(b, &n)) {
            if !param_values_eq(x, y) {
                return false;
            }
        }
    }
    headers_eq(a.headers, b.headers)
}

/// The value of the first parameter whose unescaped name matches `n` (case-insensitive).
fn first_param<'a>(u: &Uri<'a>, n: &[u8]) -> Option<Option<&'a [u8]>> {
    u.params
        .iter()
        .find(|q| eq_ignore_case(&unescape(q.name), n))
        .map(|q| q.value)
}

fn param_values_eq_opt(a: Option<Option<&[u8]>>, b: Option<Option<&[u8]>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => param_values_eq(x, y),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &[u8]) -> Uri<'_> {
        Uri::parse(s).unwrap()
    }
    fn e(s: &[u8]) -> ParseError {
        Uri::parse(s).unwrap_err()
    }

    #[test]
    fn ipv4_parser_agrees_with_std() {
        for t in [
            "1.2.3.4",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "1..3.4",
            "",
            "1.2.3.4.",
            "999.1.1.1",
            "1.2.3.a",
            "0.1.10.100",
        ] {
            assert_eq!(parse_v4(t.as_bytes()), t.parse().ok(), "{t}");
        }
    }

    proptest! {
        #[test]
        fn ipv4_parser_agrees_with_std_on_any_digits_and_dots(t in "[0-9.]{0,20}") {
            prop_assert_eq!(parse_v4(t.as_bytes()), t.parse().ok());
        }
    }

    #[test]
    fn plain_sip() {
        let u = p(b"sip:vivekg@chair-dnrc.example.com;unknownparam");
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.scheme_raw, b"sip");
        assert_eq!(u.user, Some(&b"vivekg"[..]));
        assert_eq!(u.password, None);
        assert_eq!(u.host, Host::Name(b"chair-dnrc.example.com"));
        assert_eq!(u.port, None);
        assert_eq!(u.params.raw(), b";unknownparam");
        assert_eq!(u.param(b"UNKNOWNPARAM"), Some(None));
        assert_eq!(u.headers, None);
        assert_eq!(u.opaque, b"vivekg@chair-dnrc.example.com;unknownparam");
        let u =
            p(b"sips:alice:secret@192.0.2.4:5061;transport=TCP;lr;maddr=239.255.255.1;user=phone");
        assert_eq!(u.scheme, Scheme::Sips);
        assert_eq!(u.password, Some(&b"secret"[..]));
        assert_eq!(u.host, Host::V4(Ipv4Addr::new(192, 0, 2, 4)));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.host_port_raw(), b"192.0.2.4:5061");
        assert_eq!(u.transport(), Some(&b"TCP"[..]));
        assert!(u.lr());
        assert_eq!(u.maddr(), Some(&b"239.255.255.1"[..]));
        assert_eq!(u.user_param(), Some(&b"phone"[..]));
        let u = p(b"SIP:services.example.com;lr;unknownwith=value;unknown-no-value");
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user, None);
        assert_eq!(u.host_port_raw(), b"services.example.com");
        assert!(u.lr());
    }

    #[test]
    fn intmeth_and_semiuri_userinfo() {
        let s: &[u8] = b"sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com";
        let u = p(s);
        assert_eq!(
            u.user,
            Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
        );
        assert_eq!(
            u.password,
            Some(&b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"[..])
        );
        assert_eq!(u.host, Host::Name(b"example.com"));
        assert!(u.params.is_empty());
        let u = p(b"sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user, Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(&*u.user_unescaped().unwrap(), b"user;par=u@example.net");
        assert_eq!(u.host, Host::Name(b"example.com"));
        assert!(u.params.is_empty());
    }

    #[test]
    fn escapes() {
        // esc01
        let u = p(b"sip:sips%3Auser%40example.com@example.net");
        assert_eq!(u.user, Some(&b"sips%3Auser%40example.com"[..]));
        assert_eq!(&*u.user_unescaped().unwrap(), b"sips:user@example.com");
        assert_eq!(u.host, Host::Name(b"example.net"));
        let u = p(b"sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31");
        assert_eq!(&*u.user_unescaped().unwrap(), b"caller");
        assert_eq!(
            u.params.get(b"n%61me"),
            Some(Some(&b"v%61lue%25%34%31"[..]))
        );
        assert_eq!(&*unescape(b"v%61lue%25%34%31"), b"value%41");
        assert_eq!(&*unescape(b"%2541"), b"%41");
        assert!(matches!(unescape(b"plain"), Cow::Borrowed(_)));
        assert_eq!(&*unescape(b"bad%zz%4"), b"bad%zz%4");
        let u = p(b"sip:I%20have%20spaces@example.net");
        assert_eq!(&*u.user_unescaped().unwrap(), b"I have spaces");
        // escnull: the NUL is kept, the user is not cut
        let u = p(b"sip:null-%00-null@example.com");
        assert_eq!(&*u.user_unescaped().unwrap(), b"null-\0-null");
        assert_eq!(
            &*p(b"sip:%00%00@host5.example.com").user_unescaped().unwrap(),
            b"\0\0"
        );
        assert_eq!(
            e(b"sip:a%4@example.com"),
            ParseError::new(ErrorKind::BadEscape, 5)
        );
        assert_eq!(
            e(b"sip:a%G1@example.com"),
            ParseError::new(ErrorKind::BadEscape, 5)
        );
        assert_eq!(
            e(b"sip:example.com;a=%"),
            ParseError::new(ErrorKind::BadEscape, 18)
        );
    }

    #[test]
    fn headers_part() {
        // regescrt
        let u = p(b"sip:user@example.com?Route=%3Csip:sip.example.com%3E");
        assert_eq!(u.headers, Some(&b"Route=%3Csip:sip.example.com%3E"[..]));
        assert_eq!(u.host, Host::Name(b"example.com"));
        assert!(u.params.is_empty());
        let u = p(b"sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com");
        assert_eq!(u.transport(), Some(&b"tcp"[..]));
        assert_eq!(u.headers, Some(&b"to=sip:bob%40biloxi.com"[..]));
        assert_eq!(e(b"sip:a@b?").kind, ErrorKind::BadUri);
    }

    #[test]
    fn bad_uris() {
        // ltgtruri / lwsruri
        assert_eq!(
            e(b"<sip:user@example.com>"),
            ParseError::new(ErrorKind::BadUri, 0)
        );
        assert_eq!(
            e(b"sip:user@example.com; lr"),
            ParseError::new(ErrorKind::BadUri, 21)
        );
        assert_eq!(e(b"sip:"), ParseError::new(ErrorKind::BadUri, 4));
        assert_eq!(e(b"sip:user@"), ParseError::new(ErrorKind::BadUri, 9));
        assert_eq!(e(b"sip:@example.com").kind, ErrorKind::BadUri);
        assert_eq!(e(b"nocolon").kind, ErrorKind::BadUri);
        assert_eq!(e(b"1sip:x").kind, ErrorKind::BadUri);
        assert_eq!(e(b":x").kind, ErrorKind::BadUri);
        assert_eq!(e(b"sip:a@b@c").kind, ErrorKind::BadHost);
        assert_eq!(e(b"sip:a@exa_mple..com").kind, ErrorKind::BadHost);
        assert_eq!(e(b"sip:a@-x.com").kind, ErrorKind::BadHost);
        assert_eq!(e(b"sip:a@1.2.3").kind, ErrorKind::BadHost);
        assert_eq!(e(b"sip:a@256.1.1.1").kind, ErrorKind::BadHost);
        assert_eq!(e(b"sip:a@h:65536"), ParseError::new(ErrorKind::BadPort, 8));
        assert_eq!(e(b"sip:a@h:"), ParseError::new(ErrorKind::BadPort, 8));
        assert_eq!(e(b"sip:a@h:99999999999999999999").kind, ErrorKind::BadPort);
        assert_eq!(e(b"sip:a@h:5x").kind, ErrorKind::BadHost);
        assert_eq!(e(b"sip:a@h;;").kind, ErrorKind::BadParam);
        assert_eq!(e(b"sip:a\x80@h").kind, ErrorKind::BadUri);
        assert_eq!(e(b"sip:a\"@h").kind, ErrorKind::BadUri);
        assert_eq!(e(b"sip:a@h:5060:5060").kind, ErrorKind::BadHost);
        // trailing dot on a FQDN is fine
        assert_eq!(p(b"sip:a@example.com.").host, Host::Name(b"example.com."));
        assert_eq!(p(b"sip:a@h:0").port, Some(0));
        assert_eq!(p(b"sip:a@h:65535").port, Some(65535));
    }

    #[test]
    fn rfc5118_ipv6() {
        // ipv6-good
        let u = p(b"sip:[2001:db8::10]");
        assert_eq!(u.host, Host::V6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.host_raw, b"[2001:db8::10]");
        assert_eq!(u.port, None);
        let u = p(b"sip:caller@[2001:db8::1]");
        assert_eq!(u.host, Host::V6("2001:db8::1".parse().unwrap()));
        // ipv6-bad
        assert_eq!(
            e(b"sip:2001:db8::10"),
            ParseError::new(ErrorKind::BadHost, 4)
        );
        // port-ambiguous: all of it is the address
        let u = p(b"sip:[2001:db8::10:5070]");
        assert_eq!(u.host, Host::V6("2001:db8::10:5070".parse().unwrap()));
        assert_eq!(u.port, None);
        // port-unambiguous
        let u = p(b"sip:[2001:db8::10]:5070");
        assert_eq!(u.host, Host::V6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.host_port_raw(), b"[2001:db8::10]:5070");
        // ipv4-mapped
        let u = p(b"sip:ted@[::ffff:192.0.2.2]");
        assert_eq!(
            u.host,
            Host::V6(Ipv4Addr::new(192, 0, 2, 2).to_ipv6_mapped())
        );
        // 2 colons (correct) and 3 colons (tolerated, §4.10)
        let good: Ipv6Addr = "2001:db8::192.0.2.1".parse().unwrap();
        assert_eq!(p(b"sip:user@[2001:db8::192.0.2.1]").host, Host::V6(good));
        let u = p(b"sip:user@[2001:db8:::192.0.2.1]");
        assert_eq!(u.host, Host::V6(good));
        assert_eq!(u.host_raw, b"[2001:db8:::192.0.2.1]");
        assert_eq!(e(b"sip:[2001:db8::10").kind, ErrorKind::BadHost);
        assert_eq!(e(b"sip:[zz::1]").kind, ErrorKind::BadHost);
        assert_eq!(e(b"sip:[1::::2]").kind, ErrorKind::BadHost);
        assert_eq!(e(b"sip:[::1]x").kind, ErrorKind::BadHost);
    }

    #[test]
    fn tel_and_other_schemes() {
        let u = p(b"tel:+1-201-555-0123;phone-context=example.com");
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(u.user, Some(&b"+1-201-555-0123"[..]));
        assert_eq!(u.param(b"phone-context"), Some(Some(&b"example.com"[..])));
        assert_eq!(e(b"tel:").kind, ErrorKind::BadUri);
        assert_eq!(e(b"tel:+1 555").kind, ErrorKind::BadUri);
        for (s, scheme, opaque) in [
            (
                &b"nobodyKnowsThisScheme:totallyopaquecontent"[..],
                &b"nobodyKnowsThisScheme"[..],
                &b"totallyopaquecontent"[..],
            ),
            (
                b"soap.beep://192.0.2.103:3002",
                b"soap.beep",
                b"//192.0.2.103:3002",
            ),
            (b"isbn:2983792873", b"isbn", b"2983792873"),
            (b"http://www.example.com", b"http", b"//www.example.com"),
            (b"name:John_Smith", b"name", b"John_Smith"),
        ] {
            let u = p(s);
            assert_eq!(u.scheme, Scheme::Other);
            assert_eq!(u.scheme_raw, scheme);
            assert_eq!(u.opaque, opaque);
            assert_eq!(u.user, None);
            assert_eq!(u.host_port_raw(), b"");
        }
        assert_eq!(e(b"isbn:").kind, ErrorKind::BadUri);
    }

    fn eq(a: &[u8], b: &[u8]) -> bool {
        let r = uri_eq(&p(a), &p(b));
        assert_eq!(r, uri_eq(&p(b), &p(a)), "symmetry");
        r
    }

    #[test]
    fn rfc3261_19_1_4_equality() {
        assert!(eq(
            b"sip:%61lice@atlanta.com;transport=TCP",
            b"sip:alice@AtLanTa.CoM;Transport=tcp"
        ));
        assert!(eq(
            b"sip:carol@chicago.com",
            b"sip:carol@chicago.com;newparam=5"
        ));
        assert!(eq(
            b"sip:carol@chicago.com",
            b"sip:carol@chicago.com;security=on"
        ));
        assert!(eq(
            b"sip:carol@chicago.com;newparam=5",
            b"sip:carol@chicago.com;security=on"
        ));
        assert!(eq(
            b"sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            b"sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"
        ));
        assert!(eq(
            b"sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            b"sip:alice@atlanta.com?priority=urgent&subject=project%20x"
        ));
        assert!(!eq(
            b"SIP:ALICE@AtLanTa.CoM;Transport=udp",
            b"sip:alice@AtLanTa.CoM;Transport=UDP"
        ));
        assert!(!eq(b"sip:bob@biloxi.com", b"sip:bob@biloxi.com:5060"));
        assert!(!eq(
            b"sip:bob@biloxi.com",
            b"sip:bob@biloxi.com;transport=udp"
        ));
        assert!(!eq(
            b"sip:bob@biloxi.com",
            b"sip:bob@biloxi.com:6000;transport=tcp"
        ));
        assert!(!eq(
            b"sip:carol@chicago.com",
            b"sip:carol@chicago.com?Subject=next%20meeting"
        ));
        assert!(!eq(b"sip:bob@phone21.boxesbybob.com", b"sip:bob@192.0.2.4"));
        assert!(!eq(
            b"sip:carol@chicago.com;security=on",
            b"sip:carol@chicago.com;security=off"
        ));
        // scheme and escapes in the user part
        assert!(!eq(b"sip:alice@atlanta.com", b"sips:alice@atlanta.com"));
        assert!(eq(b"sip:%41@h", b"sip:A@h"));
        assert!(!eq(b"sip:value%2541@h", b"sip:valueA@h"));
        assert!(eq(b"sip:[2001:db8::1]", b"sip:[2001:DB8:0::1]"));
        assert!(!eq(b"sip:a:pw@h", b"sip:a@h"));
        assert!(!eq(b"sip:h;lr", b"sip:h;lr=on"));
        assert!(eq(b"tel:+1-555", b"TEL:+1-555"));
        assert!(eq(b"sip:h;d=1;d", b"sip:h;d=1"));
        assert!(eq(b"sip:h;%6Cr", b"sip:h;lr"));
        assert!(!eq(b"sip:h;%6Cr=1", b"sip:h;lr=2"));
        assert!(!eq(b"sip:h;%74ransport=tcp", b"sip:h"));
        assert!(eq(b"sip:h;%74ransport=tcp", b"sip:h;transport=TCP"));
        assert!(!eq(b"tel:+1-555", b"sip:+1-555@h"));
    }

    #[test]
    fn literals_are_corpus_bytes() {
        for (file, lit) in [
            ("rfc4475/wsinv.dat", &b"sip:vivekg@chair-dnrc.example.com;unknownparam"[..]),
            ("rfc4475/intmeth.dat", b"sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com"),
            ("rfc4475/semiuri.dat", b"sip:user;par=u%40example.net@example.com"),
            ("rfc4475/esc01.dat", b"sip:sips%3Auser%40example.com@example.net"),
            ("rfc4475/esc01.dat", b"sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31"),
            ("rfc4475/esc01.dat", b"sip:I%20have%20spaces@example.net"),
            ("rfc4475/escnull.dat", b"sip:null-%00-null@example.com"),
            ("rfc4475/escnull.dat", b"sip:%00%00@host5.example.com"),
            ("rfc4475/regescrt.dat", b"sip:user@example.com?Route=%3Csip:sip.example.com%3E"),
            ("rfc4475/ltgtruri.dat", b"<sip:user@example.com>"),
            ("rfc4475/lwsruri.dat", b"sip:user@example.com; lr"),
            ("rfc4475/unkscm.dat", b"nobodyKnowsThisScheme:totallyopaquecontent"),
            ("rfc4475/novelsc.dat", b"soap.beep://192.0.2.103:3002"),
            ("rfc4475/unksm2.dat", b"isbn:2983792873"),
            ("rfc5118/ipv6-good.dat", b"sip:[2001:db8::10]"),
            ("rfc5118/ipv6-bad.dat", b"sip:2001:db8::10"),
            ("rfc5118/port-ambiguous.dat", b"sip:[2001:db8::10:5070]"),
            ("rfc5118/port-unambiguous.dat", b"sip:[2001:db8::10]:5070"),
            ("rfc5118/ipv4-mapped-ipv6.dat", b"sip:ted@[::ffff:192.0.2.2]"),
            ("rfc5118/ipv6-bug-abnf-3-colons.dat", b"sip:user@[2001:db8:::192.0.2.1]"),
            ("rfc5118/ipv6-correct-abnf-2-colons.dat", b"sip:user@[2001:db8::192.0.2.1]"),
        ] {
            crate::wire::chars::corpus::assert_in(file, lit);
        }
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(u) = Uri::parse(&data) {
                let _ = u.host_port_raw();
                let _ = u.user_unescaped();
                prop_assert!(uri_eq(&u, &u));
            }
        }

        #[test]
        fn sip_never_panics(rest in "[a-z0-9@:;=?&%.\\[\\]-]{0,40}") {
            let s = format!("sip:{rest}");
            let _ = Uri::parse(s.as_bytes());
        }

        #[test]
        fn generated_sip_roundtrip(
            sips in any::<bool>(),
            user in proptest::option::of("[a-zA-Z0-9_.!~*'()&=+$,;?/-]{1,12}"),
            pw in proptest::option::of("[a-zA-Z0-9&=+$,]{0,8}"),
            host in prop_oneof![
                "[a-z][a-z0-9-]{0,8}[a-z0-9](\\.[a-z][a-z0-9]{0,5}){0,3}",
                any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_string()),
                any::<[u16; 8]>().prop_map(|o| format!("[{}]", Ipv6Addr::from(o))),
            ],
            port in proptest::option::of(any::<u16>()),
            params in proptest::collection::vec(("[a-z]{1,6}", proptest::option::of("[a-zA-Z0-9:&+$-]{1,6}")), 0..4),
            headers in proptest::option::of("[a-z]{1,5}=[a-zA-Z0-9:]{0,6}"),
        ) {
            let mut s = String::from(if sips { "sips:" } else { "sip:" });
            if let Some(u) = &user {
                s.push_str(u);
                if let Some(p) = &pw { s.push(':'); s.push_str(p); }
                s.push('@');
            }
            s.push_str(&host);
            if let Some(p) = port { s.push_str(&format!(":{p}")); }
            let mut praw = String::new();
            for (n, v) in &params {
                praw.push(';'); praw.push_str(n);
                if let Some(v) = v { praw.push('='); praw.push_str(v); }
            }
            s.push_str(&praw);
            if let Some(h) = &headers { s.push('?'); s.push_str(h); }
            let u = Uri::parse(s.as_bytes()).unwrap();
            prop_assert_eq!(u.scheme, if sips { Scheme::Sips } else { Scheme::Sip });
            prop_assert_eq!(u.user, user.as_deref().map(str::as_bytes));
            prop_assert_eq!(u.password, if user.is_some() { pw.as_deref().map(str::as_bytes) } else { None });
            prop_assert_eq!(u.host_raw, host.as_bytes());
            prop_assert_eq!(u.port, port);
            prop_assert_eq!(u.params.raw(), praw.as_bytes());
            let got: Vec<_> = u.params.iter().map(|p| (p.name.to_vec(), p.value.map(<[u8]>::to_vec))).collect();
            let want: Vec<_> = params.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_ref().map(|v| v.as_bytes().to_vec()))).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(u.headers, headers.as_deref().map(str::as_bytes));
            prop_assert!(uri_eq(&u, &u));
        }
    }
}
