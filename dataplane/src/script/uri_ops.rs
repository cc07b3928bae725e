//! URI rewriting as SER's core actions do it (`rewritehost`, `rewriteuser`, `prefix`, `strip`…):
//! parse the current URI with [`Uri::parse`], swap one part, and rebuild an owned URI in which every
//! other byte is kept exactly as it was (scheme as written, password, port text, parameters, headers).
//!
//! ```text
//! scheme ":" [ user [ ":" password ] "@" ] host [ ":" port ] rest(;params ?headers)
//! ```
//!
//! Only `sip:`/`sips:` URIs have parts to rewrite; any other scheme is an error ([`UriOpError`]), as
//! is a URI that does not parse. `rewriteuri` replaces the whole URI and needs none of this.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::ctx::UriBuf;
use crate::wire::chars::offset_in;
use crate::wire::uri::{Host, Uri};

/// Which part a rewrite replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriPart {
    /// `rewritehost`: the host; the port stays.
    Host,
    /// `rewritehostport`: host and port (the old port goes).
    HostPort,
    /// `rewriteuser`: the user; the password stays.
    User,
    /// `rewriteuserpass`: user and password (`"user:pass"`).
    UserPass,
    /// `rewriteport`: the port (`""` removes it).
    Port,
}

/// Why a URI could not be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriOpError {
    /// The current URI does not parse.
    BadUri,
    /// It is not a `sip:`/`sips:` URI.
    NotSip,
}

impl std::fmt::Display for UriOpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UriOpError::BadUri => "bad request URI",
            UriOpError::NotSip => "not a SIP URI",
        })
    }
}

/// The pieces of a SIP URI, each a slice of the original (or a replacement).
#[derive(Clone, Copy)]
struct Parts<'a> {
    /// Through the `:` after the scheme.
    scheme: &'a [u8],
    user: Option<&'a [u8]>,
    password: Option<&'a [u8]>,
    host: &'a [u8],
    /// Port text as written.
    port: Option<&'a [u8]>,
    /// Parameters and headers, as written.
    rest: &'a [u8],
}

fn split(raw: &[u8]) -> Result<Parts<'_>, UriOpError> {
    let uri = Uri::parse(raw).map_err(|_| UriOpError::BadUri)?;
    if !uri.is_sip() {
        return Err(UriOpError::NotSip);
    }
    let scheme = raw
        .get(..uri.scheme_raw.len() + 1)
        .ok_or(UriOpError::BadUri)?;
    let hp = uri.host_port_raw();
    let hp_start = offset_in(raw, hp).ok_or(UriOpError::BadUri)?;
    let rest = raw.get(hp_start + hp.len()..).ok_or(UriOpError::BadUri)?;
    let port = match uri.port {
        Some(_) => hp.get(uri.host_raw.len() + 1..),
        None => None,
    };
    Ok(Parts {
        scheme,
        user: uri.user,
        password: uri.password,
        host: uri.host_raw,
        port,
        rest,
    })
}

fn build(p: &Parts<'_>) -> UriBuf {
    let mut out = UriBuf::new();
    out.extend_from_slice(p.scheme);
    let user = p.user.unwrap_or_default();
    if !user.is_empty() || p.password.is_some() {
        out.extend_from_slice(user);
        if let Some(pw) = p.password {
            out.push(b':');
            out.extend_from_slice(pw);
        }
        out.push(b'@');
    }
    out.extend_from_slice(p.host);
    if let Some(port) = p.port.filter(|p| !p.is_empty()) {
        out.push(b':');
        out.extend_from_slice(port);
    }
    out.extend_from_slice(p.rest);
    out
}

/// Replaces `part` of `uri` with `value` (taken as written).
pub fn rewrite(uri: &[u8], part: UriPart, value: &[u8]) -> Result<UriBuf, UriOpError> {
    let mut p = split(uri)?;
    match part {
        UriPart::Host => p.host = value,
        UriPart::HostPort => {
            p.host = value;
            p.port = None;
        }
        UriPart::User => p.user = Some(value),
        UriPart::UserPass => {
            p.user = Some(value);
            p.password = None;
        }
        UriPart::Port => p.port = Some(value),
    }
    Ok(build(&p))
}

/// `prefix("s")`: puts `prefix` before the user part (creating one if there is none).
pub fn prefix_user(uri: &[u8], prefix: &[u8]) -> Result<UriBuf, UriOpError> {
    let p = split(uri)?;
    let mut user: SmallUser = SmallUser::new();
    user.extend_from_slice(prefix);
    user.extend_from_slice(p.user.unwrap_or_default());
    Ok(build(&Parts {
        user: Some(&user),
        ..p
    }))
}

/// `strip(n)`: removes the first `n` bytes of the user part. Returns the new URI and whether `n` was
/// longer than the user (then the whole user is removed, as SER did, with a warning by the caller).
pub fn strip_user(uri: &[u8], n: usize) -> Result<(UriBuf, bool), UriOpError> {
    let p = split(uri)?;
    let user = p.user.unwrap_or_default();
    let too_long = n > user.len();
    let kept = user.get(n..).unwrap_or_default();
    Ok((
        build(&Parts {
            user: Some(kept),
            ..p
        }),
        too_long,
    ))
}

type SmallUser = smallvec::SmallVec<[u8; 64]>;

/// Host and port of a `sip:`/`sips:` URI, found without a full [`Uri::parse`] (which validates every
/// part and costs ~1500 instructions on a plain URI): what `uri==myself` and `forward(uri:host,
/// uri:port)` need per message. The userinfo ends at the first `@` (it cannot appear unescaped
/// later); the host ends at `:`, `;`, `?` or the end; an IPv6 reference is bracketed. `None` for
/// another scheme or a host/port that is not well-formed (so such a URI is never "myself").
pub fn sip_host_port(uri: &[u8]) -> Option<(Host<'_>, Option<u16>)> {
    let colon = memchr::memchr(b':', uri)?;
    let scheme = uri.get(..colon)?;
    if !(scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips")) {
        return None;
    }
    let rest = uri.get(colon + 1..)?;
    let hp = match memchr::memchr(b'@', rest) {
        Some(at) => rest.get(at + 1..)?,
        None => rest,
    };
    let (host, after) = if hp.first() == Some(&b'[') {
        let close = memchr::memchr(b']', hp)?;
        let inner = std::str::from_utf8(hp.get(1..close)?).ok()?;
        let a: Ipv6Addr = inner.parse().ok()?;
        (Host::V6(a), hp.get(close + 1..)?)
    } else {
        // One pass: find the end of the host, check its bytes, note whether it looks like IPv4.
        let mut end = 0;
        let mut dotted_digits = true;
        for &b in hp {
            match b {
                b':' | b';' | b'?' => break,
                b'0'..=b'9' | b'.' => {}
                b'a'..=b'z' | b'A'..=b'Z' | b'-' | b'_' => dotted_digits = false,
                _ => return None,
            }
            end += 1;
        }
        let name = hp.get(..end)?;
        if name.is_empty() {
            return None;
        }
        let host = if dotted_digits {
            let a: Ipv4Addr = std::str::from_utf8(name).ok()?.parse().ok()?;
            Host::V4(a)
        } else {
            Host::Name(name)
        };
        (host, hp.get(end..)?)
    };
    let port = match after.first() {
        Some(b':') => {
            let mut port: u16 = 0;
            let mut digits = 0;
            for &b in after.get(1..)? {
                match b {
                    b'0'..=b'9' => {
                        port = port.checked_mul(10)?.checked_add(u16::from(b - b'0'))?;
                        digits += 1;
                    }
                    b';' | b'?' => break,
                    _ => return None,
                }
            }
            if digits == 0 {
                return None;
            }
            Some(port)
        }
        None | Some(b';' | b'?') => None,
        Some(_) => return None,
    };
    Some((host, port))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rw(uri: &str, part: UriPart, v: &str) -> String {
        String::from_utf8(
            rewrite(uri.as_bytes(), part, v.as_bytes())
                .unwrap()
                .to_vec(),
        )
        .unwrap()
    }

    #[test]
    fn parts_are_replaced_and_the_rest_kept() {
        let u = "sip:12345@foo.bar:6060";
        assert_eq!(
            rw(u, UriPart::Host, "192.168.0.10"),
            "sip:12345@192.168.0.10:6060"
        );
        assert_eq!(
            rw(u, UriPart::HostPort, "192.168.0.10:3040"),
            "sip:12345@192.168.0.10:3040"
        );
        assert_eq!(rw(u, UriPart::User, "alice"), "sip:alice@foo.bar:6060");
        assert_eq!(
            rw(u, UriPart::UserPass, "alice:pw"),
            "sip:alice:pw@foo.bar:6060"
        );
        assert_eq!(rw(u, UriPart::Port, "1234"), "sip:12345@foo.bar:1234");
        assert_eq!(rw(u, UriPart::Port, ""), "sip:12345@foo.bar");
        let v = "SIPS:Bob:secret@[2001:db8::1]:05060;transport=tcp;lr?Subject=x";
        assert_eq!(
            rw(v, UriPart::User, "carol"),
            "SIPS:carol:secret@[2001:db8::1]:05060;transport=tcp;lr?Subject=x"
        );
        assert_eq!(
            rw(v, UriPart::Host, "example.com"),
            "SIPS:Bob:secret@example.com:05060;transport=tcp;lr?Subject=x"
        );
        assert_eq!(rw("sip:foo.bar;lr", UriPart::User, "x"), "sip:x@foo.bar;lr");
        assert_eq!(rw("sip:u@foo.bar", UriPart::User, ""), "sip:foo.bar");
    }

    #[test]
    fn prefix_and_strip() {
        let u = b"sip:12345@foo.bar:6060;user=phone";
        assert_eq!(
            &prefix_user(u, b"9").unwrap()[..],
            b"sip:912345@foo.bar:6060;user=phone"
        );
        assert_eq!(&prefix_user(b"sip:h", b"00").unwrap()[..], b"sip:00@h");
        let (s, long) = strip_user(u, 2).unwrap();
        assert_eq!(&s[..], b"sip:345@foo.bar:6060;user=phone");
        assert!(!long);
        let (s, long) = strip_user(u, 9).unwrap();
        assert_eq!(&s[..], b"sip:foo.bar:6060;user=phone");
        assert!(long);
    }

    #[test]
    fn host_port_agrees_with_the_full_parser() {
        for u in [
            "sip:bob@biloxi.example.com",
            "sip:bob@biloxi.example.com:5070;transport=tcp?x=y",
            "SIPS:a:b@[2001:db8::1]:5061;lr",
            "sip:10.0.0.1",
            "sip:10.0.0.1:5060",
            "sip:user;x=y@host.org;p",
            "sip:host?h=v",
        ] {
            let full = Uri::parse(u.as_bytes()).unwrap();
            let (h, p) = sip_host_port(u.as_bytes()).unwrap();
            assert!(h.same(&full.host), "{u}");
            assert_eq!(p, full.port, "{u}");
        }
        for bad in [
            "tel:+1234",
            "sip:",
            "sip:a@",
            "sip:a@b:",
            "sip:a@b:99999",
            "sip:a@b:50x",
            "sip:a@[::1",
            "sip:a@ho st",
            "sip:a@300.1.1.1",
            "",
        ] {
            assert!(sip_host_port(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn errors() {
        assert_eq!(
            rewrite(b"tel:+1234", UriPart::User, b"x"),
            Err(UriOpError::NotSip)
        );
        assert_eq!(
            rewrite(b"not a uri", UriPart::User, b"x"),
            Err(UriOpError::BadUri)
        );
        assert_eq!(prefix_user(b"", b"x"), Err(UriOpError::BadUri));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(uri in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
                        v in "[a-z0-9:.@;\\[\\]]{0,12}", n in 0usize..100) {
            for part in [UriPart::Host, UriPart::HostPort, UriPart::User, UriPart::UserPass, UriPart::Port] {
                let _ = rewrite(&uri, part, v.as_bytes());
            }
            let _ = prefix_user(&uri, v.as_bytes());
            let _ = strip_user(&uri, n);
            let _ = sip_host_port(&uri);
            let mut sip = b"sip:".to_vec();
            sip.extend_from_slice(&uri);
            let _ = sip_host_port(&sip);
            if let Ok(u) = rewrite(&sip, UriPart::User, v.as_bytes()) {
                let _ = sip_host_port(&u);
            }
        }
    }
}
