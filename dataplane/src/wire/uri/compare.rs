//! Unescaping and URI equality (RFC 3261 §19.1.4).

use std::borrow::Cow;

use super::Uri;
use crate::wire::chars::{eq_ignore_case, hex_val};

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
