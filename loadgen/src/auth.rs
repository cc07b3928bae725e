//! MD5 digest authentication (RFC 2617 / RFC 3261 §22.4), both sides: the client's answer to a
//! 401/407 challenge and the UAS's check of credentials. `qop=auth` is used when offered.

use dataplane::wire::digest::Credentials;
use md5::{Digest, Md5};

/// Lower-case hex MD5 of the parts joined by `:`.
pub fn md5_hex(parts: &[&[u8]]) -> String {
    let mut h = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p);
    }
    let d = h.finalize();
    let mut s = String::with_capacity(32);
    for b in d {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    s
}

/// The digest `response` value.
#[allow(clippy::too_many_arguments)]
pub fn response(
    user: &[u8],
    realm: &[u8],
    password: &[u8],
    method: &[u8],
    uri: &[u8],
    nonce: &[u8],
    qop: Option<(&[u8], &[u8], &[u8])>,
) -> String {
    let ha1 = md5_hex(&[user, realm, password]);
    let ha2 = md5_hex(&[method, uri]);
    match qop {
        Some((nc, cnonce, qop)) => {
            md5_hex(&[ha1.as_bytes(), nonce, nc, cnonce, qop, ha2.as_bytes()])
        }
        None => md5_hex(&[ha1.as_bytes(), nonce, ha2.as_bytes()]),
    }
}

/// Builds the Authorization / Proxy-Authorization value answering `challenge` (a
/// WWW-Authenticate / Proxy-Authenticate value). `None` when it is not a usable MD5 digest challenge.
pub fn answer(
    challenge: &[u8],
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
) -> Option<String> {
    answer_nc(challenge, user, password, method, uri, cnonce, 1)
}

/// [`answer`] with nonce-count `nc` (a later request reusing the same challenge, RFC 2617 §3.2.2).
pub fn answer_nc(
    challenge: &[u8],
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> Option<String> {
    let c = Credentials::parse(challenge).ok()?;
    if !c.is_digest() {
        return None;
    }
    if let Some(alg) = c.algorithm() {
        if !alg.eq_ignore_ascii_case(b"MD5") {
            return None;
        }
    }
    let realm = c.realm().unwrap_or_default();
    let nonce = c.nonce()?;
    let use_qop = c.qop().is_some_and(|q| {
        q.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"auth"))
    });
    let nc = format!("{nc:08x}");
    let nc = nc.as_bytes();
    let resp = response(
        user.as_bytes(),
        realm,
        password.as_bytes(),
        method.as_bytes(),
        uri.as_bytes(),
        nonce,
        use_qop.then_some((nc, cnonce.as_bytes(), &b"auth"[..])),
    );
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut out = format!(
        "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{resp}\", algorithm=MD5",
        s(realm),
        s(nonce)
    );
    if let Some(o) = c.opaque() {
        out.push_str(&format!(", opaque=\"{}\"", s(o)));
    }
    if use_qop {
        out.push_str(&format!(
            ", qop=auth, nc={}, cnonce=\"{cnonce}\"",
            String::from_utf8_lossy(nc)
        ));
    }
    Some(out)
}

/// Whether `creds` (an Authorization value) is a correct MD5 answer for `method` with `password`
/// in `realm`. The nonce is not checked for freshness (the UAS is a test peer, not a registrar).
pub fn verify(creds: &[u8], realm: &str, password: &str, method: &[u8]) -> bool {
    let Ok(c) = Credentials::parse(creds) else {
        return false;
    };
    let (Some(user), Some(r), Some(nonce), Some(uri), Some(resp)) =
        (c.username(), c.realm(), c.nonce(), c.uri(), c.response())
    else {
        return false;
    };
    if r != realm.as_bytes() {
        return false;
    }
    let qop = match (c.qop(), c.nc(), c.cnonce()) {
        (Some(q), Some(nc), Some(cn)) => Some((nc, cn, q)),
        _ => None,
    };
    let want = response(user, r, password.as_bytes(), method, uri, nonce, qop);
    want.as_bytes().eq_ignore_ascii_case(resp)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_example() {
        // RFC 2617 §3.5 (HTTP, but the arithmetic is the same).
        let r = response(
            b"Mufasa",
            b"testrealm@host.com",
            b"Circle Of Life",
            b"GET",
            b"/dir/index.html",
            b"dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some((b"00000001", b"0a4f113b", b"auth")),
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn answer_then_verify() {
        let ch = b"Digest realm=\"lg\", nonce=\"abc\", qop=\"auth\", opaque=\"o1\"";
        let a = answer(ch, "alice", "pw", "REGISTER", "sip:lg", "cn1").unwrap();
        assert!(verify(a.as_bytes(), "lg", "pw", b"REGISTER"));
        assert!(!verify(a.as_bytes(), "lg", "wrong", b"REGISTER"));
        let ch = b"Digest realm=\"lg\", nonce=\"abc\"";
        let a = answer(ch, "alice", "pw", "INVITE", "sip:b@lg", "cn1").unwrap();
        assert!(!a.contains("qop"));
        assert!(verify(a.as_bytes(), "lg", "pw", b"INVITE"));
    }

    #[test]
    fn a_reused_challenge_carries_the_next_nonce_count() {
        let ch = b"Digest realm=\"lg\", nonce=\"abc\", qop=\"auth\"";
        let a = answer_nc(ch, "alice", "pw", "REGISTER", "sip:lg", "cn2", 26).unwrap();
        assert!(a.contains("nc=0000001a"), "{a}");
        assert!(verify(a.as_bytes(), "lg", "pw", b"REGISTER"));
    }
}
