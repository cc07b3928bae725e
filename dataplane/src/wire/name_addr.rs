//! `name-addr` / `addr-spec` values with header parameters: From, To, Contact, Route, Record-Route,
//! Reply-To… (RFC 3261 §20.10, §25.1).
//!
//! ```text
//! ( name-addr / addr-spec ) *( SEMI generic-param )
//! name-addr    = [ display-name ] LAQUOT addr-spec RAQUOT
//! display-name = *(token LWS) / quoted-string
//! ```
//!
//! Invariants and choices:
//! - No LWS is required between the display name and `<` (RFC 4475 lwsdisp: `caller<sip:…>`).
//! - An unquoted display name is tokens separated by LWS; anything else (`Bell, Alexander`) is
//!   `BadNameAddr`. An unterminated quoted display name is `UnterminatedQuote`.
//! - Between `<` and `>` there is exactly a URI: no white space (`< sip:… >` is `BadNameAddr`), and it
//!   may carry URI parameters and headers.
//! - Without `<>` (addr-spec form) the URI ends at the first `;`, which starts the header parameters
//!   (RFC 3261 §20.10, RFC 4475 cparam01), and the URI may not contain `?` or `,` (`BadNameAddr`,
//!   regbadct).
//! - `display` keeps the quotes; [`NameAddr::display_unquoted`] removes them (allocating only when a
//!   quoted-pair is present).

use std::borrow::Cow;

use super::chars::{is_token, parse_quoted_string, skip_lws, trim_lws, unquote};
use super::error::{ErrorKind, ParseError, Result};
use super::params::Params;
use super::uri::Uri;

/// A parsed name-addr or addr-spec with its header parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The whole value as given.
    pub raw: &'a [u8],
    /// The display name as written (quotes kept, trimmed), if any.
    pub display: Option<&'a [u8]>,
    /// The URI.
    pub uri: Uri<'a>,
    /// The URI as written (without `<>`).
    pub uri_raw: &'a [u8],
    /// True if the URI was enclosed in `<>`.
    pub angle: bool,
    /// The header parameters (after `>`, or after the addr-spec).
    pub params: Params<'a>,
}

fn bad(at: usize) -> ParseError {
    ParseError::new(ErrorKind::BadNameAddr, at)
}

/// True if `s` is tokens separated by LWS (folds allowed).
fn is_token_words(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < s.len() {
        let j = skip_lws(s, i);
        if j > i {
            i = j;
            continue;
        }
        match s.get(i) {
            Some(&b) if is_token(b) => i += 1,
            _ => return Some(i),
        }
    }
    None
}

impl<'a> NameAddr<'a> {
    /// Parses one value (one element of a comma-separated list). Error offsets are into `value`.
    pub fn parse(value: &'a [u8]) -> Result<NameAddr<'a>> {
        let start = skip_lws(value, 0);
        if start >= value.len() {
            return Err(bad(start));
        }
        if value.get(start) == Some(&b'"') {
            let (_, end) = parse_quoted_string(value, start)?;
            let display = value.get(start..end);
            let lt = skip_lws(value, end);
            if value.get(lt) != Some(&b'<') {
                return Err(bad(lt));
            }
            return Self::angle_form(value, display, lt);
        }
        // Unquoted: a '<' before any ';' means name-addr (a display name has no ';'); a '<' after a
        // ';' can only be inside an addr-spec's (quoted) header parameter.
        let lt = memchr::memchr(b'<', value);
        let semi = memchr::memchr(b';', value).unwrap_or(value.len());
        if let Some(lt) = lt.filter(|&lt| lt < semi) {
            let before = value.get(start..lt).unwrap_or_default();
            if let Some(p) = is_token_words(before) {
                return Err(bad(start + p));
            }
            let display = trim_lws(before);
            let display = if display.is_empty() {
                None
            } else {
                Some(display)
            };
            return Self::angle_form(value, display, lt);
        }
        // addr-spec form: the URI ends at the first ';' (or LWS before it)
        let uri_part = value.get(start..semi).unwrap_or_default();
        let uri_raw = trim_lws(uri_part);
        if let Some(p) = uri_raw.iter().position(|&b| b == b'?' || b == b',') {
            return Err(bad(start + p));
        }
        if let Some(p) = uri_raw
            .iter()
            .position(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
            return Err(bad(start + p));
        }
        let uri = Uri::parse(uri_raw).map_err(|e| e.offset(start))?;
        let rest = value.get(semi..).unwrap_or_default();
        let params = Params::parse(rest).map_err(|e| e.offset(semi))?;
        Ok(NameAddr {
            raw: value,
            display: None,
            uri,
            uri_raw,
            angle: false,
            params,
        })
    }

    fn angle_form(value: &'a [u8], display: Option<&'a [u8]>, lt: usize) -> Result<NameAddr<'a>> {
        let ustart = lt + 1;
        let gt = value
            .get(ustart..)
            .and_then(|t| memchr::memchr(b'>', t))
            .map(|p| ustart + p)
            .ok_or(bad(value.len()))?;
        let uri_raw = value.get(ustart..gt).unwrap_or_default();
        // The common shape holds none of the bytes refused here: one pass instead of two.
        let uri = match Uri::parse_common(uri_raw) {
            Some(uri) => uri,
            None => {
                if let Some(p) = uri_raw
                    .iter()
                    .position(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'<'))
                {
                    return Err(bad(ustart + p));
                }
                Uri::parse(uri_raw).map_err(|e| e.offset(ustart))?
            }
        };
        let rest = value.get(gt + 1..).unwrap_or_default();
        let params = Params::parse(rest).map_err(|e| e.offset(gt + 1))?;
        Ok(NameAddr {
            raw: value,
            display,
            uri,
            uri_raw,
            angle: true,
            params,
        })
    }

    /// The display name without quotes and quoted-pair backslashes (`None` if there is none).
    pub fn display_unquoted(&self) -> Option<Cow<'a, [u8]>> {
        let d = self.display?;
        if d.len() >= 2 && d.first() == Some(&b'"') && d.last() == Some(&b'"') {
            Some(unquote(d.get(1..d.len() - 1).unwrap_or_default()))
        } else {
            Some(Cow::Borrowed(d))
        }
    }

    /// The `tag` parameter value (From/To).
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.params.value(b"tag")
    }

    /// A header parameter by name (case-insensitive): outer `None` absent, inner `None` a flag.
    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        self.params.get(name)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::wire::uri::{Host, Scheme};
    use proptest::prelude::*;

    fn p(s: &[u8]) -> NameAddr<'_> {
        NameAddr::parse(s).unwrap()
    }
    fn e(s: &[u8]) -> ParseError {
        NameAddr::parse(s).unwrap_err()
    }

    #[test]
    fn wsinv_values() {
        let n = p(b"sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n");
        assert!(!n.angle);
        assert_eq!(n.display, None);
        assert_eq!(n.uri_raw, b"sip:vivekg@chair-dnrc.example.com");
        assert_eq!(n.tag(), Some(&b"1918181833n"[..]));
        let n = p(
            b"\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8",
        );
        assert_eq!(n.display, Some(&b"\"J Rosenberg \\\\\\\"\""[..]));
        assert_eq!(&*n.display_unquoted().unwrap(), b"J Rosenberg \\\"");
        assert!(n.angle);
        assert_eq!(n.uri.host, Host::Name(b"example.com"));
        assert_eq!(n.tag(), Some(&b"98asjd8"[..]));
        let n = p(b"\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33");
        assert_eq!(&*n.display_unquoted().unwrap(), b"Quoted string \"\"");
        assert_eq!(n.param(b"newparam"), Some(Some(&b"newvalue"[..])));
        assert_eq!(n.param(b"secondparam"), Some(None));
        assert_eq!(n.param(b"q"), Some(Some(&b"0.33"[..])));
        let n = p(b"<sip:services.example.com;lr;unknownwith=value;unknown-no-value>");
        assert!(n.uri.lr());
        assert!(n.params.is_empty());
    }

    #[test]
    fn intmeth_values() {
        let n = p(b"\"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>");
        assert_eq!(
            &*n.display_unquoted().unwrap(),
            b"BEL:\x07 NUL:\x00 DEL:\x7f"
        );
        assert_eq!(
            n.uri.user,
            Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
        );
        let n = p(b"token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"\xd1\x80\xd0\xb0\";tag=_token~1'+`*%!-.");
        assert_eq!(n.display, Some(&b"token1~` token2'+_ token3*%!.-"[..]));
        assert_eq!(n.tag(), Some(&b"_token~1'+`*%!-."[..]));
        assert_eq!(
            n.param(b"FROMPARAM''~+*_!.-%"),
            Some(Some(&b"\"\xd1\x80\xd0\xb0\""[..]))
        );
    }

    #[test]
    fn lwsdisp_and_esc02() {
        let n = p(b"caller<sip:caller@example.com>;tag=323");
        assert_eq!(n.display, Some(&b"caller"[..]));
        assert_eq!(n.uri.user, Some(&b"caller"[..]));
        assert_eq!(n.tag(), Some(&b"323"[..]));
        let n = p(b"\"caller\"<sip:caller@example.com>");
        assert_eq!(&*n.display_unquoted().unwrap(), b"caller");
        let n = p(b"\"%Z%45\" <sip:resource@example.com>;tag=f232jadfj23");
        assert_eq!(&*n.display_unquoted().unwrap(), b"%Z%45");
        assert_eq!(n.tag(), Some(&b"f232jadfj23"[..]));
        let n = p(b"<sip:I%20have%20spaces@example.net>;tag=938");
        assert_eq!(n.display, None);
        assert_eq!(&*n.uri.user_unescaped().unwrap(), b"I have spaces");
    }

    #[test]
    fn contact_params_vs_uri_params() {
        // cparam01: unknownparam is a header (contact) parameter
        let n = p(b"sip:+19725552222@gw1.example.net;unknownparam");
        assert!(!n.angle);
        assert_eq!(n.uri_raw, b"sip:+19725552222@gw1.example.net");
        assert!(n.uri.params.is_empty());
        assert_eq!(n.param(b"unknownparam"), Some(None));
        // cparam02: inside <> it is a URI parameter
        let n = p(b"<sip:+19725552222@gw1.example.net;unknownparam>");
        assert_eq!(n.uri.param(b"unknownparam"), Some(None));
        assert!(n.params.is_empty());
        // regescrt: escaped headers inside <>
        let n = p(b"<sip:user@example.com?Route=%3Csip:sip.example.com%3E>");
        assert_eq!(n.uri.headers, Some(&b"Route=%3Csip:sip.example.com%3E"[..]));
        // unksm2
        let n = p(b"isbn:2983792873");
        assert_eq!(n.uri.scheme, Scheme::Other);
        let n = p(b"<http://www.example.com>;tag=3234233");
        assert_eq!(n.uri.opaque, b"//www.example.com");
        assert_eq!(n.tag(), Some(&b"3234233"[..]));
        // RFC 5118 Contact
        let n = p(b"\"Caller\" <sip:caller@[2001:db8::1]>");
        assert_eq!(n.uri.host, Host::V6("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn rejected() {
        // regbadct
        assert_eq!(
            e(b"sip:user@example.com?Route=%3Csip:sip.example.com%3E"),
            ParseError::new(ErrorKind::BadNameAddr, 20)
        );
        // badaspec
        assert_eq!(
            e(b"\"Watson, Thomas\" < sip:t.watson@example.org >"),
            ParseError::new(ErrorKind::BadNameAddr, 18)
        );
        // baddn
        assert_eq!(
            e(b"Bell, Alexander <sip:a.g.bell@example.com>;tag=43"),
            ParseError::new(ErrorKind::BadNameAddr, 4)
        );
        assert_eq!(
            e(b"Watson, Thomas <sip:t.watson@example.org>").kind,
            ErrorKind::BadNameAddr
        );
        // quotbal
        assert_eq!(
            e(b"\"Mr. J. User <sip:j.user@example.com>"),
            ParseError::new(ErrorKind::UnterminatedQuote, 0)
        );
        // badinv01 Contact
        assert_eq!(
            e(b"\"Joe\" <sip:joe@example.org>;;;;"),
            ParseError::new(ErrorKind::BadParam, 28)
        );
        assert_eq!(e(b"").kind, ErrorKind::BadNameAddr);
        assert_eq!(e(b"<sip:a@b").kind, ErrorKind::BadNameAddr);
        assert_eq!(e(b"\"x\" sip:a@b").kind, ErrorKind::BadNameAddr);
        assert_eq!(e(b"<sip:a@b> junk").kind, ErrorKind::BadParam);
        assert_eq!(e(b"sip:a@b junk").kind, ErrorKind::BadNameAddr);
        assert_eq!(
            e(b"<sip:a@b;x>;y=\"open").kind,
            ErrorKind::UnterminatedQuote
        );
        assert_eq!(e(b"<sip:a@exa mple.com>").kind, ErrorKind::BadNameAddr);
        assert_eq!(
            e(b"<sip:a@h:99999>"),
            ParseError::new(ErrorKind::BadPort, 9)
        );
        assert_eq!(
            e(b"sip:a@b\r\n c"),
            ParseError::new(ErrorKind::BadNameAddr, 7)
        );
        assert_eq!(e(b"abc;x <sip:a@b>").kind, ErrorKind::BadUri);
        // a '<' inside a quoted header parameter of an addr-spec
        let n = p(b"sip:a@b;x=\"<y>\"");
        assert!(!n.angle);
        assert_eq!(n.param(b"x"), Some(Some(&b"\"<y>\""[..])));
    }

    #[test]
    fn literals_are_corpus_bytes() {
        for (file, lit) in [
            ("rfc4475/wsinv.dat", &b"sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n"[..]),
            ("rfc4475/wsinv.dat", b"\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8"),
            ("rfc4475/wsinv.dat", b"\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33"),
            ("rfc4475/wsinv.dat", b"<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"),
            ("rfc4475/intmeth.dat", b"\"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>"),
            ("rfc4475/intmeth.dat", b"token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"\xd1\x80\xd0\xb0"),
            ("rfc4475/lwsdisp.dat", b"caller<sip:caller@example.com>;tag=323"),
            ("rfc4475/esc02.dat", b"\"%Z%45\" <sip:resource@example.com>;tag=f232jadfj23"),
            ("rfc4475/cparam01.dat", b"sip:+19725552222@gw1.example.net;unknownparam"),
            ("rfc4475/cparam02.dat", b"<sip:+19725552222@gw1.example.net;unknownparam>"),
            ("rfc4475/regescrt.dat", b"<sip:user@example.com?Route=%3Csip:sip.example.com%3E>"),
            ("rfc4475/regbadct.dat", b"sip:user@example.com?Route=%3Csip:sip.example.com%3E"),
            ("rfc4475/badaspec.dat", b"\"Watson, Thomas\" < sip:t.watson@example.org >"),
            ("rfc4475/variants/baddn.terminated.dat", b"Bell, Alexander <sip:a.g.bell@example.com>;tag=43"),
            ("rfc4475/quotbal.dat", b"\"Mr. J. User <sip:j.user@example.com>"),
            ("rfc4475/badinv01.dat", b"\"Joe\" <sip:joe@example.org>;;;;"),
            ("rfc4475/unksm2.dat", b"<http://www.example.com>;tag=3234233"),
        ] {
            crate::wire::chars::corpus::assert_in(file, lit);
        }
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(n) = NameAddr::parse(&data) {
                let _ = n.display_unquoted();
                let _ = n.tag();
            }
        }

        #[test]
        fn generated_roundtrip(
            display in proptest::option::of(prop_oneof![
                "[a-zA-Z0-9.!%*_+`'~-]{1,8}( [a-zA-Z0-9]{1,6}){0,2}",
                "\"([a-zA-Z0-9 ,;<>@:]|\\\\\")*\"",
            ]),
            angle in any::<bool>(),
            user in "[a-z0-9]{1,8}",
            host in "[a-z]{1,8}\\.(com|net|org)",
            uparams in "(;[a-z]{1,4}(=[a-z0-9]{1,4})?){0,2}",
            hparams in proptest::collection::vec(("[a-z]{1,6}", proptest::option::of(prop_oneof!["[a-zA-Z0-9.-]{1,6}", "\"[a-z ,;]{0,6}\""])), 0..3),
            sp in "( |\r\n )?",
        ) {
            let angle = angle || display.is_some() || !uparams.is_empty();
            let uri = format!("sip:{user}@{host}{uparams}");
            let mut s = String::new();
            if let Some(d) = &display { s.push_str(d); s.push_str(&sp); }
            if angle { s.push('<'); s.push_str(&uri); s.push('>'); } else { s.push_str(&uri); }
            for (n, v) in &hparams {
                s.push_str(&sp); s.push(';'); s.push_str(&sp); s.push_str(n);
                if let Some(v) = v { s.push('='); s.push_str(v); }
            }
            let n = NameAddr::parse(s.as_bytes()).unwrap();
            prop_assert_eq!(n.display, display.as_deref().map(str::as_bytes));
            prop_assert_eq!(n.angle, angle);
            prop_assert_eq!(n.uri_raw, uri.as_bytes());
            prop_assert_eq!(n.uri.user, Some(user.as_bytes()));
            prop_assert_eq!(n.uri.params.raw(), uparams.as_bytes());
            let got: Vec<_> = n.params.iter().map(|p| (p.name.to_vec(), p.value.map(<[u8]>::to_vec))).collect();
            let want: Vec<_> = hparams.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_ref().map(|v| v.as_bytes().to_vec()))).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn structured_never_panics(s in "[\"<> ;=a-z:@,?\\\\]{0,30}") {
            let _ = NameAddr::parse(s.as_bytes());
        }
    }
}
