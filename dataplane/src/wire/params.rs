//! `;name[=value]` parameter lists (RFC 3261 §25.1: `generic-param`, `uri-parameter`, `via-params`,
//! `contact-params`).
//!
//! Two flavours share one type:
//! - header parameters ([`Params::parse`]): `*( SEMI generic-param )` where SEMI = `SWS ";" SWS` and
//!   EQUAL = `SWS "=" SWS`, so LWS (including folds) is allowed around `;` and `=`. A value is a
//!   `token`, a `host` (which may be a bracketed IPv6 reference or contain `:`) or a `quoted-string`.
//! - URI parameters ([`Params::parse_uri`]): `*( ";" pname [ "=" pvalue ] )`, no white space,
//!   pname/pvalue = `1*paramchar` (param-unreserved / unreserved / `%HH`).
//!
//! Invariants: a `Params` only exists for text that validated; `raw` is either empty or starts at the
//! first `;`; names and values borrow from it (values keep their quotes); iterating never fails.

use super::chars::{hex_val, is_token, parse_quoted_string, skip_lws};
use super::error::{ErrorKind, ParseError, Result};

/// One parameter: `name` and its raw value (`None` for a flag parameter such as `;lr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'a> {
    /// The parameter name as written (compare case-insensitively).
    pub name: &'a [u8],
    /// The value as written: quotes kept, escapes not decoded. `None` when there is no `=`.
    pub value: Option<&'a [u8]>,
}

/// A validated parameter list, kept as its raw text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'a> {
    raw: &'a [u8],
}

/// True for bytes allowed in an unquoted header parameter value (token plus the `host` extras).
#[inline]
fn is_hvalue(b: u8) -> bool {
    is_token(b) || matches!(b, b':' | b'[' | b']')
}

/// `paramchar` bytes including `%` (escapes are validated separately), as a table.
static URI_PCHAR: [bool; 256] = {
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
                    | b'['
                    | b']'
                    | b'/'
                    | b':'
                    | b'&'
                    | b'+'
                    | b'$'
                    | b'%'
            );
        b += 1;
    }
    t
};

/// Checks `%HH` escapes in `s` (positions relative to `base`).
pub(crate) fn check_escapes(s: &[u8], base: usize) -> Result<()> {
    let mut i = 0;
    while let Some(p) = s.get(i..).and_then(|t| memchr::memchr(b'%', t)) {
        let at = i + p;
        let ok = s.get(at + 1).and_then(|&b| hex_val(b)).is_some()
            && s.get(at + 2).and_then(|&b| hex_val(b)).is_some();
        if !ok {
            return Err(ParseError::new(ErrorKind::BadEscape, base + at));
        }
        i = at + 3;
    }
    Ok(())
}

impl<'a> Params<'a> {
    /// An empty list.
    pub const EMPTY: Params<'static> = Params { raw: b"" };

    /// Parses header parameters. `raw` is empty, or (after optional LWS) starts with `;`. LWS is allowed
    /// around `;` and `=`. Errors (`BadParam`, or `UnterminatedQuote`) carry offsets into `raw`.
    pub fn parse(raw: &'a [u8]) -> Result<Params<'a>> {
        Params::parse_visit(raw, |_, _, _| {})
    }

    /// [`Params::parse`], handing each parameter to `visit` as it is validated: its name, its
    /// value (quotes kept, as [`Params::iter`] gives it) and the offset in `raw` of the value (of
    /// the name when there is none). A caller that classifies parameters (Via) needs no second
    /// pass over the list.
    pub fn parse_visit(
        raw: &'a [u8],
        mut visit: impl FnMut(&'a [u8], Option<&'a [u8]>, usize),
    ) -> Result<Params<'a>> {
        let start = skip_lws(raw, 0);
        let body = raw.get(start..).unwrap_or_default();
        let mut pos = start;
        loop {
            pos = skip_lws(raw, pos);
            match raw.get(pos) {
                None => break,
                Some(b';') => pos += 1,
                Some(_) => return Err(ParseError::new(ErrorKind::BadParam, pos)),
            }
            pos = skip_lws(raw, pos);
            let name_start = pos;
            while raw.get(pos).is_some_and(|&b| is_token(b)) {
                pos += 1;
            }
            if pos == name_start {
                return Err(ParseError::new(ErrorKind::BadParam, pos));
            }
            let name = raw.get(name_start..pos).unwrap_or_default();
            let after_name = skip_lws(raw, pos);
            if raw.get(after_name) == Some(&b'=') {
                pos = skip_lws(raw, after_name + 1);
                let vstart = pos;
                if raw.get(pos) == Some(&b'"') {
                    let (_, end) = parse_quoted_string(raw, pos)?;
                    pos = end;
                } else {
                    while raw.get(pos).is_some_and(|&b| is_hvalue(b)) {
                        pos += 1;
                    }
                    if pos == vstart {
                        return Err(ParseError::new(ErrorKind::BadParam, pos));
                    }
                }
                visit(name, raw.get(vstart..pos), vstart);
            } else {
                visit(name, None, name_start);
            }
        }
        // trailing LWS is not part of raw
        let mut end = raw.len();
        while end > start && matches!(raw.get(end - 1), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            end -= 1;
        }
        let body = body.get(..end - start).unwrap_or(body);
        Ok(Params { raw: body })
    }

    /// Parses URI parameters: `raw` is empty or starts with `;`; no white space; names and values are
    /// `paramchar`s with valid `%HH` escapes. Errors: `BadParam`, `BadEscape`.
    pub fn parse_uri(raw: &'a [u8]) -> Result<Params<'a>> {
        let mut pos = 0;
        let mut escapes = false;
        while pos < raw.len() {
            if raw.get(pos) != Some(&b';') {
                return Err(ParseError::new(ErrorKind::BadParam, pos));
            }
            pos += 1;
            let name_start = pos;
            while let Some(&b) = raw.get(pos) {
                if !URI_PCHAR[b as usize] {
                    break;
                }
                escapes |= b == b'%';
                pos += 1;
            }
            if pos == name_start {
                return Err(ParseError::new(ErrorKind::BadParam, pos));
            }
            if raw.get(pos) == Some(&b'=') {
                pos += 1;
                let vstart = pos;
                while let Some(&b) = raw.get(pos) {
                    if !URI_PCHAR[b as usize] {
                        break;
                    }
                    escapes |= b == b'%';
                    pos += 1;
                }
                if pos == vstart {
                    return Err(ParseError::new(ErrorKind::BadParam, pos));
                }
            }
        }
        // Escapes are rare: validate them in a second pass only when one was seen.
        if escapes {
            check_escapes(raw, 0)?;
        }
        Ok(Params { raw })
    }

    /// The raw text, from the first `;` (empty if there are no parameters).
    /// A list known to be valid already (it was parsed before; see `wire::cache`).
    pub(crate) fn validated(raw: &'a [u8]) -> Params<'a> {
        Params { raw }
    }

    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// True if there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The parameters in order.
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter {
            raw: self.raw,
            pos: 0,
        }
    }

    /// Looks a parameter up by name (case-insensitive). Outer `None`: absent; inner `None`: a flag.
    pub fn get(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        self.iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value)
    }

    /// True if a parameter of that name (case-insensitive) is present.
    pub fn has(&self, name: &[u8]) -> bool {
        self.get(name).is_some()
    }

    /// The value of a parameter, `None` if absent or a flag.
    pub fn value(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.get(name).flatten()
    }
}

impl<'a> IntoIterator for Params<'a> {
    type Item = Param<'a>;
    type IntoIter = ParamIter<'a>;
    fn into_iter(self) -> ParamIter<'a> {
        self.iter()
    }
}

/// Iterator over a validated [`Params`].
#[derive(Debug, Clone)]
pub struct ParamIter<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = Param<'a>;

    fn next(&mut self) -> Option<Param<'a>> {
        let raw = self.raw;
        let mut pos = skip_lws(raw, self.pos);
        if raw.get(pos) != Some(&b';') {
            self.pos = raw.len();
            return None;
        }
        pos = skip_lws(raw, pos + 1);
        let name_start = pos;
        while raw
            .get(pos)
            .is_some_and(|&b| !matches!(b, b'=' | b';' | b' ' | b'\t' | b'\r' | b'\n'))
        {
            pos += 1;
        }
        let name = raw.get(name_start..pos).unwrap_or_default();
        let after = skip_lws(raw, pos);
        let mut value = None;
        if raw.get(after) == Some(&b'=') {
            pos = skip_lws(raw, after + 1);
            let vstart = pos;
            if raw.get(pos) == Some(&b'"') {
                pos = parse_quoted_string(raw, pos).map_or(raw.len(), |(_, e)| e);
            } else {
                while raw
                    .get(pos)
                    .is_some_and(|&b| !matches!(b, b';' | b' ' | b'\t' | b'\r' | b'\n'))
                {
                    pos += 1;
                }
            }
            value = raw.get(vstart..pos);
        }
        self.pos = pos;
        Some(Param { name, value })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::wire::chars::{is_param_unreserved, is_unreserved};
    use proptest::prelude::*;

    fn list<'a>(p: &Params<'a>) -> Vec<(&'a [u8], Option<&'a [u8]>)> {
        p.iter().map(|p| (p.name, p.value)).collect()
    }

    #[test]
    fn uri_pchar_table_is_the_grammar() {
        for b in 0..=255u8 {
            assert_eq!(
                URI_PCHAR[b as usize],
                is_param_unreserved(b) || is_unreserved(b) || b == b'%',
                "byte {b:#x}"
            );
        }
    }

    #[test]
    fn header_params_with_lws() {
        // wsinv To: ` ;   tag    = 1918181833n`
        let p = Params::parse(b" ;   tag    = 1918181833n").unwrap();
        assert_eq!(p.raw(), b";   tag    = 1918181833n");
        assert_eq!(list(&p), vec![(&b"tag"[..], Some(&b"1918181833n"[..]))]);
        // wsinv From, folded: `\r\n  ;\r\n  tag = 98asjd8`
        let p = Params::parse(b"\r\n  ;\r\n  tag = 98asjd8").unwrap();
        assert_eq!(p.get(b"TAG"), Some(Some(&b"98asjd8"[..])));
        // wsinv m: ` ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33`
        let p = Params::parse(b" ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33")
            .unwrap();
        assert_eq!(
            list(&p),
            vec![
                (&b"newparam"[..], Some(&b"newvalue"[..])),
                (b"secondparam", None),
                (b"q", Some(b"0.33")),
            ]
        );
        assert_eq!(p.get(b"secondparam"), Some(None));
        assert!(p.has(b"Q") && !p.has(b"x"));
        assert_eq!(p.value(b"secondparam"), None);
        // intmeth From param with quoted UTF-8 value and token-char name
        let v = b";fromParam''~+*_!.-%=\"\xd1\x80\xd0\xb0\";tag=_token~1'+`*%!-.";
        let p = Params::parse(v).unwrap();
        assert_eq!(
            list(&p),
            vec![
                (
                    &b"fromParam''~+*_!.-%"[..],
                    Some(&b"\"\xd1\x80\xd0\xb0\""[..])
                ),
                (b"tag", Some(b"_token~1'+`*%!-.")),
            ]
        );
        // received with an IPv6 reference (RFC 5118 §4.5)
        let p = Params::parse(b";received=[2001:db8::9:255];branch=z9hG4bKas3-111").unwrap();
        assert_eq!(p.value(b"received"), Some(&b"[2001:db8::9:255]"[..]));
        assert!(Params::parse(b"").unwrap().is_empty());
    }

    #[test]
    fn header_param_errors() {
        // badinv01 Contact params `;;;;`
        assert_eq!(
            Params::parse(b";;;;").unwrap_err(),
            ParseError::new(ErrorKind::BadParam, 1)
        );
        assert_eq!(Params::parse(b";a=").unwrap_err().kind, ErrorKind::BadParam);
        assert_eq!(
            Params::parse(b";a=b,c").unwrap_err(),
            ParseError::new(ErrorKind::BadParam, 4)
        );
        assert_eq!(Params::parse(b"x;a").unwrap_err().kind, ErrorKind::BadParam);
        assert_eq!(
            Params::parse(b";a=\"open").unwrap_err(),
            ParseError::new(ErrorKind::UnterminatedQuote, 3)
        );
        assert_eq!(Params::parse(b";").unwrap_err().kind, ErrorKind::BadParam);
    }

    #[test]
    fn uri_params() {
        // esc01 Contact URI params
        let p = Params::parse_uri(b";%6C%72;n%61me=v%61lue%25%34%31").unwrap();
        assert_eq!(
            list(&p),
            vec![
                (&b"%6C%72"[..], None),
                (b"n%61me", Some(&b"v%61lue%25%34%31"[..]))
            ]
        );
        let p = Params::parse_uri(b";lr;unknownwith=value;unknown-no-value").unwrap();
        assert_eq!(p.get(b"LR"), Some(None));
        assert_eq!(p.get(b"unknownwith"), Some(Some(&b"value"[..])));
        assert_eq!(
            Params::parse_uri(b"; lr").unwrap_err(),
            ParseError::new(ErrorKind::BadParam, 1)
        );
        assert_eq!(
            Params::parse_uri(b";a=%4").unwrap_err(),
            ParseError::new(ErrorKind::BadEscape, 3)
        );
        assert_eq!(
            Params::parse_uri(b";;").unwrap_err().kind,
            ErrorKind::BadParam
        );
        assert_eq!(
            Params::parse_uri(b";a=").unwrap_err().kind,
            ErrorKind::BadParam
        );
    }

    #[test]
    fn literals_are_corpus_bytes() {
        for (file, lit) in [
            ("rfc4475/wsinv.dat", &b" ;   tag    = 1918181833n"[..]),
            ("rfc4475/wsinv.dat", b"\r\n  ;\r\n  tag = 98asjd8"),
            (
                "rfc4475/wsinv.dat",
                b" ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33",
            ),
            (
                "rfc4475/intmeth.dat",
                b";fromParam''~+*_!.-%=\"\xd1\x80\xd0\xb0",
            ),
            ("rfc4475/esc01.dat", b";%6C%72;n%61me=v%61lue%25%34%31"),
            ("rfc4475/badinv01.dat", b">;;;;"),
        ] {
            crate::wire::chars::corpus::assert_in(file, lit);
        }
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = Params::parse(&data) {
                for x in p.iter() { prop_assert!(!x.name.is_empty()); }
            }
            if let Ok(p) = Params::parse_uri(&data) {
                for x in p.iter() { prop_assert!(!x.name.is_empty()); }
            }
        }

        #[test]
        fn roundtrip(names in proptest::collection::vec("[a-z][a-z0-9.-]{0,6}", 0..5),
                     vals in proptest::collection::vec(proptest::option::of("[a-zA-Z0-9]{1,6}"), 5)) {
            let mut s = String::new();
            for (n, v) in names.iter().zip(vals.iter()) {
                s.push_str(" ;");
                s.push_str(n);
                if let Some(v) = v { s.push_str(" = "); s.push_str(v); }
            }
            let p = Params::parse(s.as_bytes()).unwrap();
            let got: Vec<_> = p.iter().map(|x| (x.name.to_vec(), x.value.map(|v| v.to_vec()))).collect();
            let want: Vec<_> = names.iter().zip(vals.iter())
                .map(|(n, v)| (n.as_bytes().to_vec(), v.as_ref().map(|v| v.as_bytes().to_vec()))).collect();
            prop_assert_eq!(got, want);
        }
    }
}
