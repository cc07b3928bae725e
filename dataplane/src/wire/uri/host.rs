//! Hosts and ports of a URI (and of Via sent-by): `[IPv6]` references (RFC 5118), dotted-quad
//! IPv4, host names, `1*DIGIT` ports.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{err, Host, HOST_NAME};
use crate::wire::error::Result;
use crate::wire::ErrorKind;

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
    if let Some((host, end)) = super::fast::host(s) {
        return Ok((host, s.get(..end).unwrap_or_default(), end));
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
