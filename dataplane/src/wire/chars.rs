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

// Byte classes as bits of one 256-entry table, so each class test is one load and one mask.
const ALNUM: u8 = 1;
const TOKEN: u8 = 2;
const UNRESERVED: u8 = 4;
const USER_UNRESERVED: u8 = 8;
const PASSWORD: u8 = 16;
const PARAM_UNRESERVED: u8 = 32;
const HNV_UNRESERVED: u8 = 64;

const fn set(mut t: [u8; 256], chars: &[u8], bit: u8) -> [u8; 256] {
    let mut i = 0;
    while i < chars.len() {
        t[chars[i] as usize] |= bit;
        i += 1;
    }
    t
}

const fn build() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() {
            t[b] = ALNUM | TOKEN | UNRESERVED | PASSWORD;
        }
        b += 1;
    }
    let t = set(t, b"-.!%*_+`'~", TOKEN);
    let t = set(t, b"-_.!~*'()", UNRESERVED | PASSWORD);
    let t = set(t, b"&=+$,;?/", USER_UNRESERVED);
    let t = set(t, b"&=+$,", PASSWORD);
    let t = set(t, b"[]/:&+$", PARAM_UNRESERVED);
    set(t, b"[]/?:+$", HNV_UNRESERVED)
}

static CLASS: [u8; 256] = build();

#[inline]
fn class(b: u8) -> u8 {
    CLASS[b as usize]
}

/// `alphanum` = ALPHA / DIGIT.
#[inline]
pub fn is_alphanum(b: u8) -> bool {
    class(b) & ALNUM != 0
}

/// `token` characters: alphanum / `-` `.` `!` `%` `*` `_` `+` `` ` `` `'` `~`.
#[inline]
pub fn is_token(b: u8) -> bool {
    class(b) & TOKEN != 0
}

/// `WSP`: SP or HTAB.
#[inline]
pub fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `unreserved` = alphanum / mark, mark = `-` `_` `.` `!` `~` `*` `'` `(` `)`.
#[inline]
pub fn is_unreserved(b: u8) -> bool {
    class(b) & UNRESERVED != 0
}

/// `user-unreserved` = `&` `=` `+` `$` `,` `;` `?` `/`.
#[inline]
pub fn is_user_unreserved(b: u8) -> bool {
    class(b) & USER_UNRESERVED != 0
}

/// Characters allowed unescaped in a URI password: unreserved / `&` `=` `+` `$` `,`.
#[inline]
pub fn is_password_char(b: u8) -> bool {
    class(b) & PASSWORD != 0
}

/// `param-unreserved` = `[` `]` `/` `:` `&` `+` `$`.
#[inline]
pub fn is_param_unreserved(b: u8) -> bool {
    class(b) & PARAM_UNRESERVED != 0
}

/// `hnv-unreserved` = `[` `]` `/` `?` `:` `+` `$` (URI header names and values).
#[inline]
pub fn is_hnv_unreserved(b: u8) -> bool {
    class(b) & HNV_UNRESERVED != 0
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
#[inline]
pub fn skip_lws(input: &[u8], mut pos: usize) -> usize {
    // Fast path: most positions are not white space at all.
    match input.get(pos) {
        Some(b' ' | b'\t' | b'\r' | b'\n') => {}
        Some(_) => return pos,
        None => return input.len(),
    }
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
        // Jump between the bytes that matter (',', '"', '<') with memchr3 instead of looking at
        // every byte: most values have no comma at all.
        let mut i = begin;
        let cut = loop {
            let Some(rel) = s
                .get(i..)
                .and_then(|t| memchr::memchr3(b',', b'"', b'<', t))
            else {
                self.done = true;
                break s.len();
            };
            let at = i + rel;
            match s[at] {
                b',' => break at,
                b'"' => {
                    // Skip the quoted string, honouring quoted-pairs; unterminated runs to the end.
                    let mut j = at + 1;
                    loop {
                        match s.get(j..).and_then(|t| memchr::memchr2(b'"', b'\\', t)) {
                            None => {
                                j = s.len();
                                break;
                            }
                            Some(r) if s[j + r] == b'\\' => j += r + 2,
                            Some(r) => {
                                j += r + 1;
                                break;
                            }
                        }
                    }
                    i = j;
                }
                _ => {
                    // '<': a comma inside <...> does not split.
                    i = match s.get(at..).and_then(|t| memchr::memchr(b'>', t)) {
                        Some(r) => at + r + 1,
                        None => s.len(),
                    };
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
mod tests;

#[cfg(test)]
pub(crate) mod corpus;
