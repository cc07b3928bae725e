//! Credentials and challenges: Authorization, Proxy-Authorization, WWW-Authenticate,
//! Proxy-Authenticate (RFC 3261 §20.7, §20.27, §20.44, §25.1; RFC 2617 §3.2; RFC 7616).
//!
//! ```text
//! credentials = ("Digest" LWS digest-response) / other-response
//! other-response = auth-scheme LWS auth-param *(COMMA auth-param)
//! auth-param = auth-param-name EQUAL ( token / quoted-string )
//! ```
//!
//! Invariants and choices:
//! - One type, [`Credentials`], serves both credentials and challenges: a scheme and the raw
//!   parameter text, validated on parse; accessors then cannot fail.
//! - LWS (folds included) is allowed around `=` and `,`. An unquoted value may be any run of visible
//!   ASCII except `,` and `"` (lenient: some UAs send `uri=sip:…` unquoted).
//! - Accessors return the value without its quotes: the inner bytes of the quoted string, **as
//!   written** — a value containing a `\` quoted-pair is returned with the backslash (use
//!   [`super::chars::unquote`] when that matters; digest values never legitimately contain one).
//! - For `Digest`, at least one parameter is required. Other schemes (`NoOneKnowsThisScheme
//!   opaque-data=here`, `Basic dXNlcjpwYXNz`) are not errors: their parameters are either an
//!   auth-param list or a `token68` (RFC 7235), or nothing.
//! - Every failure (unterminated quote, empty element, truncated value) is `BadCredentials`, with the
//!   offset into the value.

use super::chars::{is_token, parse_quoted_string, skip_lws};
use super::error::{ErrorKind, ParseError, Result};

/// Parsed credentials or challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// The auth scheme as written (`Digest`).
    pub scheme: &'a [u8],
    /// The raw parameter text after the scheme (trimmed).
    pub params: &'a [u8],
}

fn bad(at: usize) -> ParseError {
    ParseError::new(ErrorKind::BadCredentials, at)
}

fn is_bare_value(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b',' && b != b'"'
}

/// Scans one `name = value` at `pos`; returns (name, raw value, end).
fn auth_param(s: &[u8], pos: usize) -> Result<(&[u8], &[u8], usize)> {
    let mut p = pos;
    while s.get(p).is_some_and(|&b| is_token(b)) {
        p += 1;
    }
    if p == pos {
        return Err(bad(pos));
    }
    let name = s.get(pos..p).unwrap_or_default();
    let eq = skip_lws(s, p);
    if s.get(eq) != Some(&b'=') {
        return Err(bad(eq));
    }
    let v = skip_lws(s, eq + 1);
    let end = if s.get(v) == Some(&b'"') {
        parse_quoted_string(s, v).map_err(|e| bad(e.at))?.1
    } else {
        let mut e = v;
        while s.get(e).is_some_and(|&b| is_bare_value(b)) {
            e += 1;
        }
        if e == v {
            return Err(bad(v));
        }
        e
    };
    Ok((name, s.get(v..end).unwrap_or_default(), end))
}

/// Validates a full auth-param list.
fn check_list(s: &[u8]) -> Result<()> {
    let mut pos = 0;
    loop {
        let (_, _, end) = auth_param(s, pos)?;
        let c = skip_lws(s, end);
        match s.get(c) {
            None => return Ok(()),
            Some(b',') => pos = skip_lws(s, c + 1),
            Some(_) => return Err(bad(c)),
        }
    }
}

/// True if `s` is a `token68` (RFC 7235 §2.1).
fn is_token68(s: &[u8]) -> bool {
    let body = s.iter().position(|&b| b == b'=').unwrap_or(s.len());
    body > 0
        && s.get(..body).unwrap_or_default().iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
        && s.get(body..).unwrap_or_default().iter().all(|&b| b == b'=')
}

impl<'a> Credentials<'a> {
    /// Parses an Authorization / Proxy-Authorization / WWW-Authenticate / Proxy-Authenticate value.
    pub fn parse(value: &'a [u8]) -> Result<Credentials<'a>> {
        let start = skip_lws(value, 0);
        let mut p = start;
        while value.get(p).is_some_and(|&b| is_token(b)) {
            p += 1;
        }
        if p == start {
            return Err(bad(start));
        }
        let scheme = value.get(start..p).unwrap_or_default();
        let pstart = skip_lws(value, p);
        let mut pend = value.len();
        while pend > pstart && matches!(value.get(pend - 1), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            pend -= 1;
        }
        let params = value.get(pstart..pend).unwrap_or_default();
        if !params.is_empty() && pstart == p {
            return Err(bad(p));
        }
        let digest = scheme.eq_ignore_ascii_case(b"digest");
        if params.is_empty() {
            if digest {
                return Err(bad(pstart));
            }
        } else if digest || !is_token68(params) {
            check_list(params).map_err(|e| e.offset(pstart))?;
        }
        Ok(Credentials { scheme, params })
    }

    /// True if the scheme is `Digest` (case-insensitive).
    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case(b"digest")
    }

    /// The parameters as `(name, raw value)` pairs (quotes kept). Empty for a `token68`.
    pub fn iter(&self) -> AuthParams<'a> {
        let token68 = !self.is_digest() && is_token68(self.params);
        AuthParams {
            s: self.params,
            pos: if token68 { self.params.len() } else { 0 },
        }
    }

    /// A parameter's value by name (case-insensitive), without its quotes (quoted-pairs not decoded).
    pub fn param(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| {
                if v.len() >= 2 && v.first() == Some(&b'"') && v.last() == Some(&b'"') {
                    v.get(1..v.len() - 1).unwrap_or_default()
                } else {
                    v
                }
            })
    }

    /// `username`
    pub fn username(&self) -> Option<&'a [u8]> {
        self.param(b"username")
    }
    /// `realm`
    pub fn realm(&self) -> Option<&'a [u8]> {
        self.param(b"realm")
    }
    /// `nonce`
    pub fn nonce(&self) -> Option<&'a [u8]> {
        self.param(b"nonce")
    }
    /// `uri` (digest-uri)
    pub fn uri(&self) -> Option<&'a [u8]> {
        self.param(b"uri")
    }
    /// `response`
    pub fn response(&self) -> Option<&'a [u8]> {
        self.param(b"response")
    }
    /// `algorithm`
    pub fn algorithm(&self) -> Option<&'a [u8]> {
        self.param(b"algorithm")
    }
    /// `cnonce`
    pub fn cnonce(&self) -> Option<&'a [u8]> {
        self.param(b"cnonce")
    }
    /// `opaque`
    pub fn opaque(&self) -> Option<&'a [u8]> {
        self.param(b"opaque")
    }
    /// `qop`
    pub fn qop(&self) -> Option<&'a [u8]> {
        self.param(b"qop")
    }
    /// `nc` (nonce count)
    pub fn nc(&self) -> Option<&'a [u8]> {
        self.param(b"nc")
    }
}

/// Iterator over the auth-params of validated [`Credentials`].
#[derive(Debug, Clone)]
pub struct AuthParams<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for AuthParams<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (name, value, end) = auth_param(self.s, self.pos).ok()?;
        let c = skip_lws(self.s, end);
        self.pos = if self.s.get(c) == Some(&b',') {
            skip_lws(self.s, c + 1)
        } else {
            self.s.len()
        };
        Some((name, value))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc2617_example() {
        let v: &[u8] = b"Digest username=\"Mufasa\",\r\n                 realm=\"testrealm@host.com\",\r\n                 nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\r\n                 uri=\"/dir/index.html\",\r\n                 qop=auth,\r\n                 nc=00000001,\r\n                 cnonce=\"0a4f113b\",\r\n                 response=\"6629fae49393a05397450978507c4ef1\",\r\n                 opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
        let c = Credentials::parse(v).unwrap();
        assert!(c.is_digest());
        assert_eq!(c.scheme, b"Digest");
        assert_eq!(c.username(), Some(&b"Mufasa"[..]));
        assert_eq!(c.realm(), Some(&b"testrealm@host.com"[..]));
        assert_eq!(c.nonce(), Some(&b"dcd98b7102dd2f0e8b11d0f600bfb0c093"[..]));
        assert_eq!(c.uri(), Some(&b"/dir/index.html"[..]));
        assert_eq!(c.qop(), Some(&b"auth"[..]));
        assert_eq!(c.nc(), Some(&b"00000001"[..]));
        assert_eq!(c.cnonce(), Some(&b"0a4f113b"[..]));
        assert_eq!(c.response(), Some(&b"6629fae49393a05397450978507c4ef1"[..]));
        assert_eq!(c.opaque(), Some(&b"5ccc069c403ebaf9f0171e9517f40e41"[..]));
        assert_eq!(c.algorithm(), None);
        assert_eq!(c.iter().count(), 9);
        assert_eq!(c.iter().nth(4), Some((&b"qop"[..], &b"auth"[..])));
        // the matching challenge (RFC 2617 §3.5)
        let w: &[u8] = b"Digest\r\n                 realm=\"testrealm@host.com\",\r\n                 qop=\"auth,auth-int\",\r\n                 nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\r\n                 opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
        let c = Credentials::parse(w).unwrap();
        assert_eq!(c.qop(), Some(&b"auth,auth-int"[..]));
        assert_eq!(c.realm(), Some(&b"testrealm@host.com"[..]));
        assert_eq!(c.iter().count(), 4);
    }

    #[test]
    fn other_schemes() {
        // regaut01
        let c = Credentials::parse(b"NoOneKnowsThisScheme opaque-data=here").unwrap();
        assert!(!c.is_digest());
        assert_eq!(c.scheme, b"NoOneKnowsThisScheme");
        assert_eq!(c.params, b"opaque-data=here");
        assert_eq!(c.param(b"OPAQUE-DATA"), Some(&b"here"[..]));
        let c = Credentials::parse(b"Basic dXNlcjpwYXNzd29yZA==").unwrap();
        assert_eq!(c.params, b"dXNlcjpwYXNzd29yZA==");
        assert_eq!(c.iter().count(), 0);
        let c = Credentials::parse(b"Negotiate").unwrap();
        assert_eq!(c.params, b"");
    }

    #[test]
    fn sip_style() {
        let c = Credentials::parse(b"digest username=\"bob\" , realm = \"biloxi.com\",nonce=\"abc\",uri=sip:bob@biloxi.com,response=\"0123\",algorithm=MD5").unwrap();
        assert!(c.is_digest());
        assert_eq!(c.realm(), Some(&b"biloxi.com"[..]));
        assert_eq!(c.uri(), Some(&b"sip:bob@biloxi.com"[..]));
        assert_eq!(c.algorithm(), Some(&b"MD5"[..]));
        // quoted-pair returned raw
        let c = Credentials::parse(b"Digest username=\"a\\\"b\"").unwrap();
        assert_eq!(c.username(), Some(&b"a\\\"b"[..]));
    }

    #[test]
    fn malformed() {
        let e = |v: &[u8]| Credentials::parse(v).unwrap_err();
        assert_eq!(e(b"Digest username=\"bob"), bad(16));
        assert_eq!(e(b"Digest username="), bad(16));
        assert_eq!(e(b"Digest username"), bad(15));
        assert_eq!(e(b"Digest"), bad(6));
        assert_eq!(e(b"Digest a=b,,c=d"), bad(11));
        assert_eq!(e(b"Digest a=b,"), bad(11));
        assert_eq!(e(b"Digest a=b c=d"), bad(11));
        assert_eq!(e(b""), bad(0));
        assert_eq!(e(b"\"x\""), bad(0));
        assert_eq!(e(b"Other a=\"b"), bad(8));
        assert_eq!(e(b"Other a b"), bad(8));
    }

    #[test]
    fn literals_are_corpus_bytes() {
        crate::wire::chars::corpus::assert_in(
            "rfc4475/regaut01.dat",
            b"Authorization: NoOneKnowsThisScheme opaque-data=here\r\n",
        );
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(c) = Credentials::parse(&data) {
                let _ = (c.username(), c.realm(), c.nonce(), c.iter().count());
            }
        }

        #[test]
        fn roundtrip(user in "[a-zA-Z0-9 @.]{0,10}", nc in "[0-9a-f]{8}") {
            let s = format!("Digest username=\"{user}\", nc={nc}");
            let c = Credentials::parse(s.as_bytes()).unwrap();
            prop_assert_eq!(c.username(), Some(user.as_bytes()));
            prop_assert_eq!(c.nc(), Some(nc.as_bytes()));
        }
    }
}
