//! Byte classes and small scanners shared by the value sub-parsers (RFC 3261 §25.1 basic rules).
//!
//! - `token`, `unreserved`, `user-unreserved`, `param-unreserved`, `hnv-unreserved`: RFC 3261 §25.1.
//! - LWS = `[*WSP CRLF] 1*WSP`; a fold (CRLF or bare LF followed by SP/HTAB) counts as LWS.
//! - `quoted-string` = `SWS DQUOTE *(qdtext / quoted-pair) DQUOTE`, quoted-pair = `"\" (%x00-09 /
//!   %x0B-0C / %x0E-7F)`.
//!
//! Invariants: bytes are bytes (no UTF-8 assumption); nothing here allocates except [`unquote`] when a
//! quoted-pair is actually present; no function panics on any input or position (a position past the end
//! is treated as the end).

use std::borrow::Cow;

use super::error::{ErrorKind, ParseError, Result};

/// `alphanum` = ALPHA / DIGIT.
#[inline]
pub fn is_alphanum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// `token` characters: alphanum / `-` `.` `!` `%` `*` `_` `+` `` ` `` `'` `~`.
#[inline]
pub fn is_token(b: u8) -> bool {
    is_alphanum(b)
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// `WSP`: SP or HTAB.
#[inline]
pub fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `unreserved` = alphanum / mark, mark = `-` `_` `.` `!` `~` `*` `'` `(` `)`.
#[inline]
pub fn is_unreserved(b: u8) -> bool {
    is_alphanum(b)
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

/// `user-unreserved` = `&` `=` `+` `$` `,` `;` `?` `/`.
#[inline]
pub fn is_user_unreserved(b: u8) -> bool {
    matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
}

/// Characters allowed unescaped in a URI password: unreserved / `&` `=` `+` `$` `,`.
#[inline]
pub fn is_password_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',')
}

/// `param-unreserved` = `[` `]` `/` `:` `&` `+` `$`.
#[inline]
pub fn is_param_unreserved(b: u8) -> bool {
    matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

/// `hnv-unreserved` = `[` `]` `/` `?` `:` `+` `$` (URI header names and values).
#[inline]
pub fn is_hnv_unreserved(b: u8) -> bool {
    matches!(b, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$')
}

/// `HEXDIG` (either case).
#[inline]
pub fn is_hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

/// The value of one hex digit, `None` if `b` is not one.
#[inline]
pub fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Skips linear white space starting at `pos`: SP/HTAB, and CRLF or bare LF when followed by SP/HTAB
/// (a fold). Returns the first position that is not LWS (at most `input.len()`).
pub fn skip_lws(input: &[u8], mut pos: usize) -> usize {
    loop {
        match input.get(pos) {
            Some(b' ') | Some(b'\t') => pos += 1,
            Some(b'\r') if input.get(pos + 1) == Some(&b'\n') => match input.get(pos + 2) {
                Some(b' ') | Some(b'\t') => pos += 3,
                _ => return pos,
            },
            Some(b'\n') => match input.get(pos + 1) {
                Some(b' ') | Some(b'\t') => pos += 2,
                _ => return pos,
            },
            _ => return pos.min(input.len()),
        }
    }
}

/// True if `input[pos..]` starts with LWS (see [`skip_lws`]).
#[inline]
pub fn at_lws(input: &[u8], pos: usize) -> bool {
    skip_lws(input, pos) > pos
}

/// Removes leading LWS and trailing SP/HTAB/CR/LF.
pub fn trim_lws(s: &[u8]) -> &[u8] {
    let start = skip_lws(s, 0);
    let mut end = s.len();
    while end > start {
        match s.get(end - 1) {
            Some(b' ' | b'\t' | b'\r' | b'\n') => end -= 1,
            _ => break,
        }
    }
    s.get(start..end).unwrap_or_default()
}

/// ASCII case-insensitive equality (header names, parameter names, schemes).
#[inline]
pub fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Parses a quoted string whose opening `"` is at `input[pos]`. Returns the inner bytes (between the
/// quotes, quoted-pairs left as they are) and the position just after the closing quote.
///
/// A backslash escapes any byte except CR and LF (so raw NUL, BEL and DEL are accepted after it).
/// Errors: no `"` at `pos` → `BadHeaderValue`; no closing quote → `UnterminatedQuote` (at the opening
/// quote).
pub fn parse_quoted_string(input: &[u8], pos: usize) -> Result<(&[u8], usize)> {
    if input.get(pos) != Some(&b'"') {
        return Err(ParseError::new(
            ErrorKind::BadHeaderValue,
            pos.min(input.len()),
        ));
    }
    let start = pos + 1;
    let mut i = start;
    while let Some(&b) = input.get(i) {
        match b {
            b'"' => {
                let inner = input.get(start..i).unwrap_or_default();
                return Ok((inner, i + 1));
            }
            b'\\' => match input.get(i + 1) {
                Some(b'\r') | Some(b'\n') | None => {
                    return Err(ParseError::new(ErrorKind::UnterminatedQuote, pos))
                }
                Some(_) => i += 2,
            },
            _ => i += 1,
        }
    }
    Err(ParseError::new(ErrorKind::UnterminatedQuote, pos))
}

/// Removes the backslash of each quoted-pair in the inner text of a quoted string. Borrows when there is
/// no backslash.
pub fn unquote(inner: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'\\', inner).is_none() {
        return Cow::Borrowed(inner);
    }
    let mut out = Vec::with_capacity(inner.len());
    let mut it = inner.iter();
    while let Some(&b) = it.next() {
        if b == b'\\' {
            if let Some(&n) = it.next() {
                out.push(n);
            }
        } else {
            out.push(b);
        }
    }
    Cow::Owned(out)
}

/// The offset of `inner` inside `outer`, if `inner` is a sub-slice of it.
pub fn offset_in(outer: &[u8], inner: &[u8]) -> Option<usize> {
    let o = outer.as_ptr() as usize;
    let i = inner.as_ptr() as usize;
    let off = i.checked_sub(o)?;
    if off.checked_add(inner.len())? <= outer.len() {
        Some(off)
    } else {
        None
    }
}

/// Iterator returned by [`split_commas`].
#[derive(Debug, Clone)]
pub struct SplitCommas<'a> {
    s: &'a [u8],
    pos: usize,
    done: bool,
}

/// Splits a header value on commas that are not inside a quoted string or `<...>`. Yields each element
/// trimmed of LWS, with its start and end offsets in `value`. Empty elements (`a,,b`, a trailing comma,
/// or an empty value) are yielded as empty slices; the caller decides whether they are errors.
pub fn split_commas(value: &[u8]) -> SplitCommas<'_> {
    SplitCommas {
        s: value,
        pos: 0,
        done: false,
    }
}

impl<'a> Iterator for SplitCommas<'a> {
    type Item = (&'a [u8], usize, usize);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let s = self.s;
        let begin = self.pos;
        let mut i = begin;
        let mut in_quote = false;
        let mut in_angle = false;
        let cut = loop {
            match s.get(i) {
                None => {
                    self.done = true;
                    break s.len();
                }
                Some(&b) => {
                    if in_quote {
                        if b == b'\\' {
                            i += 1;
                        } else if b == b'"' {
                            in_quote = false;
                        }
                    } else if b == b'"' {
                        in_quote = true;
                    } else if b == b'<' {
                        in_angle = true;
                    } else if b == b'>' {
                        in_angle = false;
                    } else if b == b',' && !in_angle {
                        break i;
                    }
                    i += 1;
                }
            }
        };
        let cut = cut.min(s.len());
        self.pos = cut + 1;
        let seg = s.get(begin..cut).unwrap_or_default();
        let trimmed = trim_lws(seg);
        let start = begin + offset_in(seg, trimmed).unwrap_or(0);
        let end = start + trimmed.len();
        Some((trimmed, start, end))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn classes() {
        for b in b"aZ09-.!%*_+`'~" {
            assert!(is_token(*b), "{}", *b as char);
        }
        for b in b" \t\"(),/:;<=>?@[\\]{}" {
            assert!(!is_token(*b), "{}", *b as char);
        }
        assert!(is_unreserved(b'(') && !is_unreserved(b'%'));
        assert!(is_user_unreserved(b'?') && !is_user_unreserved(b'@'));
        assert!(is_param_unreserved(b'[') && !is_param_unreserved(b';'));
        assert!(is_hex(b'f') && is_hex(b'F') && !is_hex(b'g'));
        assert_eq!(hex_val(b'c'), Some(12));
        assert!(is_ws(b'\t') && !is_ws(b'\n'));
    }

    #[test]
    fn lws_and_folds() {
        assert_eq!(skip_lws(b"  \r\n \tx", 0), 6);
        assert_eq!(skip_lws(b" \n x", 0), 3);
        // CRLF not followed by WSP is not LWS
        assert_eq!(skip_lws(b" \r\nx", 0), 1);
        assert_eq!(skip_lws(b"", 5), 0);
        assert_eq!(skip_lws(b"ab", 9), 2);
        assert_eq!(trim_lws(b" \r\n  abc \r\n"), b"abc");
        assert_eq!(trim_lws(b"   "), b"");
        assert!(eq_ignore_case(b"MaX-fOrWaRdS", b"max-forwards"));
    }

    #[test]
    fn quoted_strings() {
        // wsinv From display name: "J Rosenberg \\\""
        let v = b"\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>";
        let (inner, end) = parse_quoted_string(v, 0).unwrap();
        assert_eq!(inner, b"J Rosenberg \\\\\\\"");
        assert_eq!(end, 18);
        assert_eq!(&*unquote(inner), b"J Rosenberg \\\"");
        // intmeth To display name with raw BEL, NUL, DEL after backslash
        let v = b"\"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\" <sip:x@example.com>";
        let (inner, end) = parse_quoted_string(v, 0).unwrap();
        assert_eq!(inner, b"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f");
        assert_eq!(v.get(end), Some(&b' '));
        assert_eq!(&*unquote(inner), b"BEL:\x07 NUL:\x00 DEL:\x7f");
        assert!(matches!(unquote(b"plain"), Cow::Borrowed(_)));
        // quotbal
        let e = parse_quoted_string(b"\"Mr. J. User <sip:j.user@example.com>", 0).unwrap_err();
        assert_eq!(e, ParseError::new(ErrorKind::UnterminatedQuote, 0));
        let e = parse_quoted_string(b"\"abc\\", 0).unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnterminatedQuote);
        let e = parse_quoted_string(b"abc", 1).unwrap_err();
        assert_eq!(e, ParseError::new(ErrorKind::BadHeaderValue, 1));
    }

    #[test]
    fn commas() {
        let v = b"a, \"x,y\" <sip:a,b>;p=1 ,\r\n c";
        let parts: Vec<_> = split_commas(v).collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], (&b"a"[..], 0, 1));
        assert_eq!(parts[1].0, b"\"x,y\" <sip:a,b>;p=1");
        assert_eq!(parts[1].1, 3);
        assert_eq!(&v[parts[1].1..parts[1].2], parts[1].0);
        assert_eq!(parts[2].0, b"c");
        assert_eq!(&v[parts[2].1..parts[2].2], b"c");
        // empty elements are reported (badinv01 Via tail)
        let parts: Vec<_> = split_commas(b"SIP/2.0/UDP 192.0.2.15;;,;,,")
            .map(|p| p.0)
            .collect();
        assert_eq!(
            parts,
            vec![&b"SIP/2.0/UDP 192.0.2.15;;"[..], b";", b"", b""]
        );
        let parts: Vec<_> = split_commas(b"").collect();
        assert_eq!(parts, vec![(&b""[..], 0, 0)]);
        // escaped quote inside a quoted string does not end it
        let parts: Vec<_> = split_commas(b"\"a\\\",b\" <sip:x>, y")
            .map(|p| p.0)
            .collect();
        assert_eq!(parts, vec![&b"\"a\\\",b\" <sip:x>"[..], b"y"]);
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..64), pos in 0usize..80) {
            let _ = skip_lws(&data, pos);
            let _ = trim_lws(&data);
            let _ = parse_quoted_string(&data, pos);
            for (v, s, e) in split_commas(&data) {
                prop_assert_eq!(&data[s..e], v);
            }
            let _ = unquote(&data);
        }
    }
}
