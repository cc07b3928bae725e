//! One-pass parsing of the URIs nearly all traffic carries: `sip:`/`sips:`, an optional plain user
//! (no escapes, no password), a host name or IPv4 address, an optional port and URI parameters.
//!
//! The general parser walks a URI several times (forbidden bytes, scheme, `@`, userinfo, colons,
//! host, port, `?`); profiles of OPTIONS and REGISTER loads put it at ~1,300 instructions per URI,
//! three or four URIs per request. This path reads each byte once. It never decides an error: on
//! anything it does not know for sure (an escape, a password, brackets, headers, an odd byte) it
//! answers `None` and [`Uri::parse`] falls back to the general parser, so both accept the same
//! URIs with the same fields (a property test holds them to that).

use super::{Host, Params, Scheme, Uri, HOST_NAME};

/// Bytes a user part may hold on this path: `unreserved` and the `user-unreserved` marks that
/// cannot be mistaken for the host's delimiters (`;`, `?`, `/` and `%` are left to the general
/// parser).
static USER: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'_'
                    | b'.'
                    | b'!'
                    | b'~'
                    | b'*'
                    | b'\''
                    | b'('
                    | b')'
                    | b'&'
                    | b'='
                    | b'+'
                    | b'$'
                    | b','
            );
        b += 1;
    }
    t
};

/// The URI, if it is of the common shape; `None` means "ask the general parser".
#[inline]
pub(super) fn parse(input: &[u8]) -> Option<Uri<'_>> {
    let (scheme, colon) = match input {
        [s, i, p, b':', ..] if eq3(*s, *i, *p, b"sip") => (Scheme::Sip, 3),
        [s, i, p, s2, b':', ..] if eq3(*s, *i, *p, b"sip") && s2 | 0x20 == b's' => {
            (Scheme::Sips, 4)
        }
        _ => return None,
    };
    let base = colon + 1;
    let rest = input.get(base..)?;
    // The first run of user bytes: the user if an '@' ends it, else (host bytes being user bytes
    // too) the host is read from the start.
    let run = rest
        .iter()
        .position(|&b| !USER[b as usize])
        .unwrap_or(rest.len());
    let (user, hp_start) = match rest.get(run) {
        Some(b'@') if run > 0 => (Some(rest.get(..run)?), run + 1),
        Some(b'@') => return None,
        _ => (None, 0),
    };
    let hp = rest.get(hp_start..)?;
    let (host, host_len) = host(hp)?;
    let mut pos = host_len;
    let mut port = None;
    if hp.get(pos) == Some(&b':') {
        pos += 1;
        let start = pos;
        let mut v: u32 = 0;
        while let Some(&d) = hp.get(pos) {
            if !d.is_ascii_digit() {
                break;
            }
            v = v * 10 + u32::from(d - b'0');
            if v > u32::from(u16::MAX) {
                return None;
            }
            pos += 1;
        }
        if pos == start {
            return None;
        }
        port = Some(v as u16);
    }
    let tail = hp.get(pos..)?;
    if !tail.is_empty() && tail.first() != Some(&b';') {
        return None;
    }
    // Parameters hold no '@', '?' or forbidden byte once they parse: the '@' found above was the
    // first, and there are no headers.
    let params = Params::parse_uri(tail).ok()?;
    Some(Uri {
        raw: input,
        scheme,
        scheme_raw: input.get(..colon)?,
        user,
        password: None,
        host,
        host_raw: hp.get(..host_len)?,
        port,
        params,
        headers: None,
        opaque: rest,
    })
}

fn eq3(a: u8, b: u8, c: u8, lower: &[u8; 3]) -> bool {
    a | 0x20 == lower[0] && b | 0x20 == lower[1] && c | 0x20 == lower[2]
}

/// A host name or dotted-quad IPv4 address at the start of `s` and its length, in one pass:
/// what [`super::parse_host`] accepts for those forms (`None` for anything else, or when in doubt).
#[inline]
pub(crate) fn host(s: &[u8]) -> Option<(Host<'_>, usize)> {
    let first = *s.first()?;
    if first.is_ascii_digit() {
        if let Some(r) = v4(s) {
            return Some(r);
        }
    }
    // A name: labels of HOST_NAME bytes, none empty (one trailing dot allowed), none starting or
    // ending with '-'. A name of digits and dots only is an address, which `v4` refused.
    if !HOST_NAME[first as usize] || first == b'.' || first == b'-' {
        return None;
    }
    let mut prev = first;
    let mut end = 1;
    let mut numeric = first.is_ascii_digit();
    for &b in s.get(1..)? {
        if !HOST_NAME[b as usize] {
            break;
        }
        if (prev == b'.' && (b == b'.' || b == b'-')) || (prev == b'-' && b == b'.') {
            return None;
        }
        numeric &= b.is_ascii_digit() || b == b'.';
        prev = b;
        end += 1;
    }
    if prev == b'-' || numeric {
        return None;
    }
    let name = s.get(..end)?;
    Some((Host::Name(name), end))
}

/// Dotted-quad IPv4 at the start of `s`, ended by a byte that cannot continue a host name;
/// the same rules as [`super::parse_v4`] (four octets ≤ 255, no leading zeros).
#[inline]
fn v4(s: &[u8]) -> Option<(Host<'_>, usize)> {
    let mut octets = [0u8; 4];
    let mut n = 0usize;
    let mut v: u16 = 0;
    let mut digits = 0u8;
    let mut end = s.len();
    for (i, &b) in s.iter().enumerate() {
        let d = b.wrapping_sub(b'0');
        if d <= 9 {
            if digits == 3 || (digits == 1 && v == 0) {
                return None;
            }
            v = v * 10 + u16::from(d);
            digits += 1;
        } else if b == b'.' {
            if digits == 0 || n == 3 || v > 255 {
                return None;
            }
            *octets.get_mut(n)? = v as u8;
            n += 1;
            v = 0;
            digits = 0;
        } else if HOST_NAME[b as usize] {
            // A letter, '-' or '_': a host name that starts with a digit.
            return None;
        } else {
            end = i;
            break;
        }
    }
    if n != 3 || digits == 0 || v > 255 {
        return None;
    }
    *octets.get_mut(3)? = v as u8;
    Some((Host::V4(std::net::Ipv4Addr::from(octets)), end))
}
