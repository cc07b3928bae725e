//! Single-valued scalar headers and small lists (RFC 3261 §25.1): numbers (Max-Forwards, Expires,
//! Content-Length), Call-ID, Content-Type (`media-type`), option-tag / method lists (Require,
//! Proxy-Require, Supported, Unsupported, Allow) and the status code of a status line.
//!
//! Invariants: numbers are `1*DIGIT` only (no sign, no white space inside; leading zeros accepted) and
//! overflow is an error, never a wrap; every result borrows from the input; nothing panics.

use super::chars::{is_token, skip_lws, split_commas, SplitCommas};
use super::error::{ErrorKind, ParseError, Result};
use super::params::Params;

/// Strict decimal `1*DIGIT` as `u32`. Errors (`BadHeaderValue`): empty, a non-digit (at its offset), or
/// a value above `u32::MAX`.
pub fn parse_u32(value: &[u8]) -> Result<u32> {
    if value.is_empty() {
        return Err(ParseError::new(ErrorKind::BadHeaderValue, 0));
    }
    let mut n: u32 = 0;
    for (i, &b) in value.iter().enumerate() {
        if !b.is_ascii_digit() {
            return Err(ParseError::new(ErrorKind::BadHeaderValue, i));
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u32::from(b - b'0')))
            .ok_or(ParseError::new(ErrorKind::BadHeaderValue, i))?;
    }
    Ok(n)
}

fn with_kind<T>(r: Result<T>, kind: ErrorKind) -> Result<T> {
    r.map_err(|e| ParseError::new(kind, e.at))
}

/// Max-Forwards: `1*DIGIT` in 0..=255 (`BadMaxForwards`).
pub fn max_forwards(value: &[u8]) -> Result<u8> {
    let n = with_kind(parse_u32(value), ErrorKind::BadMaxForwards)?;
    u8::try_from(n).map_err(|_| ParseError::new(ErrorKind::BadMaxForwards, 0))
}

/// Expires (header or parameter): delta-seconds as `u32` (`BadExpires`; above `u32::MAX` is an error —
/// the caller may choose to fall back to a default, RFC 4475 §3.1.2.4).
pub fn expires(value: &[u8]) -> Result<u32> {
    with_kind(parse_u32(value), ErrorKind::BadExpires)
}

/// Content-Length: `1*DIGIT` as `usize` (`BadContentLength` for a sign, words or overflow).
pub fn content_length(value: &[u8]) -> Result<usize> {
    if value.is_empty() {
        return Err(ParseError::new(ErrorKind::BadContentLength, 0));
    }
    let mut n: usize = 0;
    for (i, &b) in value.iter().enumerate() {
        if !b.is_ascii_digit() {
            return Err(ParseError::new(ErrorKind::BadContentLength, i));
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(usize::from(b - b'0')))
            .ok_or(ParseError::new(ErrorKind::BadContentLength, i))?;
    }
    Ok(n)
}

/// Bytes of a Call-ID `word`: alphanum and `-.!%*_+`'~()<>:\"/[]?{}`.
fn is_word(b: u8) -> bool {
    is_token(b)
        || matches!(
            b,
            b'(' | b')'
                | b'<'
                | b'>'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'{'
                | b'}'
        )
}

/// Call-ID: `word [ "@" word ]`, no white space inside; `%` is a literal byte. Returns the value itself.
/// Errors: `BadCallId` (empty, a second `@`, an empty word, a byte outside `word`).
pub fn call_id(value: &[u8]) -> Result<&[u8]> {
    let bad = |at| ParseError::new(ErrorKind::BadCallId, at);
    if value.is_empty() {
        return Err(bad(0));
    }
    let mut at_seen = false;
    for (i, &b) in value.iter().enumerate() {
        if b == b'@' {
            if at_seen || i == 0 || i + 1 == value.len() {
                return Err(bad(i));
            }
            at_seen = true;
        } else if !is_word(b) {
            return Err(bad(i));
        }
    }
    Ok(value)
}

/// A Content-Type value: `m-type SLASH m-subtype *( SEMI m-parameter )`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaType<'a> {
    /// The type (`application`), as written.
    pub ty: &'a [u8],
    /// The subtype (`sdp`), as written.
    pub subty: &'a [u8],
    /// The parameters (`;charset=…`).
    pub params: Params<'a>,
}

impl MediaType<'_> {
    /// True if type and subtype match, case-insensitively.
    pub fn is(&self, ty: &[u8], subty: &[u8]) -> bool {
        self.ty.eq_ignore_ascii_case(ty) && self.subty.eq_ignore_ascii_case(subty)
    }
}

/// Parses a Content-Type (`BadContentType`). LWS is allowed around `/`.
pub fn media_type(value: &[u8]) -> Result<MediaType<'_>> {
    let bad = |at| ParseError::new(ErrorKind::BadContentType, at);
    let tok = |pos: usize| {
        let mut end = pos;
        while value.get(end).is_some_and(|&b| is_token(b)) {
            end += 1;
        }
        if end == pos {
            Err(bad(pos))
        } else {
            Ok((value.get(pos..end).unwrap_or_default(), end))
        }
    };
    let (ty, pos) = tok(skip_lws(value, 0))?;
    let pos = skip_lws(value, pos);
    if value.get(pos) != Some(&b'/') {
        return Err(bad(pos));
    }
    let (subty, pos) = tok(skip_lws(value, pos + 1))?;
    let params = Params::parse(value.get(pos..).unwrap_or_default())
        .map_err(|e| bad(pos.saturating_add(e.at)))?;
    Ok(MediaType { ty, subty, params })
}

/// Iterator returned by [`token_list`].
#[derive(Debug, Clone)]
pub struct TokenList<'a> {
    inner: SplitCommas<'a>,
}

impl<'a> Iterator for TokenList<'a> {
    type Item = Result<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        let (v, start, _) = self.inner.next()?;
        if v.is_empty() {
            return Some(Err(ParseError::new(ErrorKind::BadTokenList, start)));
        }
        if let Some(p) = v.iter().position(|&b| !is_token(b)) {
            return Some(Err(ParseError::new(ErrorKind::BadTokenList, start + p)));
        }
        Some(Ok(v))
    }
}

/// Splits a comma-separated token list (Require, Proxy-Require, Supported, Unsupported, Allow). Empty
/// elements and non-tokens yield `BadTokenList` with the offset in `value`.
pub fn token_list(value: &[u8]) -> TokenList<'_> {
    TokenList {
        inner: split_commas(value),
    }
}

/// A status code: exactly three digits in 100..=699 (`BadStatusCode`).
pub fn status_code(value: &[u8]) -> Result<u16> {
    let bad = |at| ParseError::new(ErrorKind::BadStatusCode, at);
    let [a, b, c] = value else {
        return Err(bad(0));
    };
    if let Some(p) = [a, b, c].iter().position(|d| !d.is_ascii_digit()) {
        return Err(bad(p));
    }
    let n = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
    if !(100..=699).contains(&n) {
        return Err(bad(0));
    }
    Ok(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(kind: ErrorKind, at: usize) -> ParseError {
        ParseError::new(kind, at)
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u32(b"0"), Ok(0));
        assert_eq!(parse_u32(b"4294967295"), Ok(u32::MAX));
        assert_eq!(
            parse_u32(b"4294967296"),
            Err(err(ErrorKind::BadHeaderValue, 9))
        );
        assert_eq!(parse_u32(b""), Err(err(ErrorKind::BadHeaderValue, 0)));
        assert_eq!(parse_u32(b"1 2"), Err(err(ErrorKind::BadHeaderValue, 1)));
        // wsinv leading zeros, intmeth 255, scalar02 300, zeromf 0
        assert_eq!(max_forwards(b"0068"), Ok(68));
        assert_eq!(max_forwards(b"255"), Ok(255));
        assert_eq!(max_forwards(b"0"), Ok(0));
        assert_eq!(max_forwards(b"300"), Err(err(ErrorKind::BadMaxForwards, 0)));
        assert_eq!(max_forwards(b"-1"), Err(err(ErrorKind::BadMaxForwards, 0)));
        // scalar02
        let big = b"10000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";
        assert_eq!(expires(big).unwrap_err().kind, ErrorKind::BadExpires);
        assert_eq!(
            expires(b"280297596632815").unwrap_err().kind,
            ErrorKind::BadExpires
        );
        assert_eq!(expires(b"3600"), Ok(3600));
        assert_eq!(expires(b"4294967295"), Ok(u32::MAX));
        // ncl / clerr / content-length words
        assert_eq!(
            content_length(b"-999"),
            Err(err(ErrorKind::BadContentLength, 0))
        );
        assert_eq!(
            content_length(b"five"),
            Err(err(ErrorKind::BadContentLength, 0))
        );
        assert_eq!(content_length(b"9999"), Ok(9999));
        assert_eq!(content_length(b"0"), Ok(0));
        assert_eq!(
            content_length(b""),
            Err(err(ErrorKind::BadContentLength, 0))
        );
        assert_eq!(
            content_length(b"99999999999999999999999").unwrap_err().kind,
            ErrorKind::BadContentLength
        );
    }

    #[test]
    fn call_ids() {
        let v: &[u8] = b"intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{";
        assert_eq!(call_id(v), Ok(v));
        assert_eq!(
            call_id(b"wsinv.ndaksdj@192.0.2.1"),
            Ok(&b"wsinv.ndaksdj@192.0.2.1"[..])
        );
        assert_eq!(
            call_id(b"semiuri.0ha0isndaksdj"),
            Ok(&b"semiuri.0ha0isndaksdj"[..])
        );
        assert_eq!(call_id(b""), Err(err(ErrorKind::BadCallId, 0)));
        assert_eq!(call_id(b"a@b@c"), Err(err(ErrorKind::BadCallId, 3)));
        assert_eq!(call_id(b"a b"), Err(err(ErrorKind::BadCallId, 1)));
        assert_eq!(call_id(b"@b"), Err(err(ErrorKind::BadCallId, 0)));
        assert_eq!(call_id(b"a@"), Err(err(ErrorKind::BadCallId, 1)));
        assert_eq!(call_id(b"a;b"), Err(err(ErrorKind::BadCallId, 1)));
    }

    #[test]
    fn media_types() {
        let m = media_type(b"application/sdp").unwrap();
        assert_eq!((m.ty, m.subty), (&b"application"[..], &b"sdp"[..]));
        assert!(m.is(b"APPLICATION", b"SDP"));
        assert!(m.params.is_empty());
        let m = media_type(b"multipart/mixed;boundary=7a9cbec02ceef655").unwrap();
        assert_eq!(m.params.value(b"boundary"), Some(&b"7a9cbec02ceef655"[..]));
        let m = media_type(b"text/plain ; charset = \"utf-8\"").unwrap();
        assert_eq!(m.params.value(b"CHARSET"), Some(&b"\"utf-8\""[..]));
        let m = media_type(b"application / unknownformat").unwrap();
        assert_eq!(m.subty, b"unknownformat");
        assert_eq!(
            media_type(b"application"),
            Err(err(ErrorKind::BadContentType, 11))
        );
        assert_eq!(
            media_type(b"application/"),
            Err(err(ErrorKind::BadContentType, 12))
        );
        assert_eq!(media_type(b"/sdp"), Err(err(ErrorKind::BadContentType, 0)));
        assert_eq!(media_type(b"a/b;;"), Err(err(ErrorKind::BadContentType, 4)));
        assert_eq!(media_type(b"a/b c"), Err(err(ErrorKind::BadContentType, 4)));
    }

    #[test]
    fn token_lists() {
        // bext01
        let v: &[u8] = b"noProxiesSupportThis, norDoAnyProxiesSupportThis";
        let t: Vec<_> = token_list(v).map(|r| r.unwrap()).collect();
        assert_eq!(
            t,
            vec![&b"noProxiesSupportThis"[..], b"norDoAnyProxiesSupportThis"]
        );
        let t: Vec<_> = token_list(b"INVITE,ACK ,\r\n BYE")
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(t, vec![&b"INVITE"[..], b"ACK", b"BYE"]);
        let r: Vec<_> = token_list(b"a,,b").collect();
        assert_eq!(r[1], Err(err(ErrorKind::BadTokenList, 2)));
        let r: Vec<_> = token_list(b"a, b c").collect();
        assert_eq!(r[1], Err(err(ErrorKind::BadTokenList, 4)));
        let r: Vec<_> = token_list(b"").collect();
        assert_eq!(r, vec![Err(err(ErrorKind::BadTokenList, 0))]);
    }

    #[test]
    fn status_codes() {
        assert_eq!(status_code(b"100"), Ok(100));
        assert_eq!(status_code(b"699"), Ok(699));
        assert_eq!(status_code(b"200"), Ok(200));
        assert_eq!(status_code(b"099"), Err(err(ErrorKind::BadStatusCode, 0)));
        assert_eq!(status_code(b"700"), Err(err(ErrorKind::BadStatusCode, 0)));
        // bigcode
        assert_eq!(
            status_code(b"4294967301"),
            Err(err(ErrorKind::BadStatusCode, 0))
        );
        assert_eq!(status_code(b"20"), Err(err(ErrorKind::BadStatusCode, 0)));
        assert_eq!(status_code(b"2a0"), Err(err(ErrorKind::BadStatusCode, 1)));
    }

    #[test]
    fn literals_are_corpus_bytes() {
        for (file, lit) in [
            ("rfc4475/intmeth.dat", &b"intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"[..]),
            ("rfc4475/scalar02.dat", b"Expires: 10000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\r\n"),
            ("rfc4475/scalar02.dat", b"Max-Forwards: 300"),
            ("rfc4475/wsinv.dat", b"MaX-fOrWaRdS: 0068"),
            ("rfc4475/ncl.dat", b"Content-Length: -999"),
            ("rfc4475/bext01.dat", b"noProxiesSupportThis, norDoAnyProxiesSupportThis"),
            ("rfc4475/invut.dat", b"application/unknownformat"),
            ("rfc4475/bigcode.dat", b"SIP/2.0 4294967301 "),
        ] {
            crate::wire::chars::corpus::assert_in(file, lit);
        }
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse_u32(&data);
            let _ = max_forwards(&data);
            let _ = expires(&data);
            let _ = content_length(&data);
            let _ = call_id(&data);
            let _ = media_type(&data);
            for r in token_list(&data) { let _ = r; }
            let _ = status_code(&data);
        }

        #[test]
        fn u32_roundtrip(n in any::<u32>(), zeros in 0usize..4) {
            let s = format!("{}{}", "0".repeat(zeros), n);
            prop_assert_eq!(parse_u32(s.as_bytes()), Ok(n));
            prop_assert_eq!(content_length(s.as_bytes()), Ok(n as usize));
        }
    }
}
