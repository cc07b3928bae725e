//! CSeq values (RFC 3261 §20.16, §25.1): `CSeq = 1*DIGIT LWS Method`.
//!
//! Invariants: the number is any 32-bit unsigned value (RFC 3261 §8.1.1.5: only the *initial*
//! value a UAC picks must be below 2^31, and later requests count up from it); larger values, such
//! as those above 2^32 in RFC 4475 scalar02/scalarlg, are `BadCSeq`. Leading zeros are accepted (`0009`); the
//! LWS between number and method may be folded; the method is a `token` and borrows from the input
//! (`%` is a literal byte there, RFC 4475 esc02).

use super::chars::{is_token, skip_lws};
use super::error::{ErrorKind, ParseError, Result};

/// A parsed CSeq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number (≤ 2^32-1).
    pub num: u32,
    /// The method, as written (methods are case-sensitive).
    pub method: &'a [u8],
}

/// The largest CSeq number: "the sequence number value MUST be expressible as a 32-bit unsigned
/// integer" (RFC 3261 §8.1.1.5).
pub const MAX_CSEQ: u32 = u32::MAX;

impl<'a> CSeq<'a> {
    /// Parses a CSeq value. Errors are `BadCSeq` with an offset into `value`.
    pub fn parse(value: &'a [u8]) -> Result<CSeq<'a>> {
        let bad = |at| ParseError::new(ErrorKind::BadCSeq, at);
        let start = skip_lws(value, 0);
        let mut pos = start;
        let mut num: u32 = 0;
        while let Some(&b) = value.get(pos) {
            if !b.is_ascii_digit() {
                break;
            }
            num = num
                .checked_mul(10)
                // Overflowing u32 is the MAX_CSEQ bound.
                .and_then(|n| n.checked_add(u32::from(b - b'0')))
                .ok_or(bad(start))?;
            pos += 1;
        }
        if pos == start {
            return Err(bad(start));
        }
        let mstart = skip_lws(value, pos);
        if mstart == pos {
            return Err(bad(pos));
        }
        let mut mend = mstart;
        while value.get(mend).is_some_and(|&b| is_token(b)) {
            mend += 1;
        }
        if mend == mstart {
            return Err(bad(mstart));
        }
        let tail = skip_lws(value, mend);
        if tail < value.len() {
            return Err(bad(mend));
        }
        Ok(CSeq {
            num,
            method: value.get(mstart..mend).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(at: usize) -> ParseError {
        ParseError::new(ErrorKind::BadCSeq, at)
    }

    #[test]
    fn corpus_values() {
        // wsinv: leading zeros and a fold
        assert_eq!(
            CSeq::parse(b"0009\r\n  INVITE"),
            Ok(CSeq {
                num: 9,
                method: b"INVITE"
            })
        );
        // intmeth
        let c = CSeq::parse(b"139122385 !interesting-Method0123456789_*+`.%indeed'~").unwrap();
        assert_eq!(c.num, 139122385);
        assert_eq!(c.method, b"!interesting-Method0123456789_*+`.%indeed'~");
        // esc02
        assert_eq!(
            CSeq::parse(b"29344 RE%47IST%45R").unwrap().method,
            b"RE%47IST%45R"
        );
        // lwsruri: 2^31 - 2^24 is fine
        assert_eq!(CSeq::parse(b"2130706432 INVITE").unwrap().num, 2130706432);
        assert_eq!(CSeq::parse(b"2147483647 ACK").unwrap().num, (1 << 31) - 1);
        // scalar02 / scalarlg
        assert_eq!(CSeq::parse(b"36893488147419103232 REGISTER"), Err(err(0)));
        // Only the initial value must be < 2^31: a dialog's later requests may pass it.
        assert_eq!(CSeq::parse(b"2147483648 INVITE").unwrap().num, 1 << 31);
        assert_eq!(CSeq::parse(b"4294967295 BYE").unwrap().num, u32::MAX);
        assert_eq!(CSeq::parse(b"4294967296 INVITE"), Err(err(0)));
    }

    #[test]
    fn malformed() {
        assert_eq!(CSeq::parse(b""), Err(err(0)));
        assert_eq!(CSeq::parse(b"INVITE"), Err(err(0)));
        assert_eq!(CSeq::parse(b"1INVITE"), Err(err(1)));
        assert_eq!(CSeq::parse(b"1 "), Err(err(2)));
        assert_eq!(CSeq::parse(b"1 INVITE x"), Err(err(8)));
        assert_eq!(CSeq::parse(b"1 INV@TE"), Err(err(5)));
        assert_eq!(CSeq::parse(b"-1 INVITE"), Err(err(0)));
        assert_eq!(CSeq::parse(b"1 <INVITE>"), Err(err(2)));
        assert_eq!(CSeq::parse(b"8 INVITE  ").unwrap().method, b"INVITE");
    }

    #[test]
    fn literals_are_corpus_bytes() {
        for (file, lit) in [
            ("rfc4475/wsinv.dat", &b"cseq: 0009\r\n  INVITE"[..]),
            (
                "rfc4475/intmeth.dat",
                b"139122385 !interesting-Method0123456789_*+`.%indeed'~",
            ),
            ("rfc4475/esc02.dat", b"29344 RE%47IST%45R"),
            ("rfc4475/lwsruri.dat", b"2130706432 INVITE"),
            ("rfc4475/scalar02.dat", b"36893488147419103232 REGISTER"),
        ] {
            crate::wire::chars::corpus::assert_in(file, lit);
        }
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = CSeq::parse(&data);
        }

        #[test]
        fn roundtrip(n in 0u32..=MAX_CSEQ, m in "[A-Za-z!%*_+`'~.-]{1,10}") {
            let s = format!("{n} {m}");
            let c = CSeq::parse(s.as_bytes()).unwrap();
            prop_assert_eq!(c.num, n);
            prop_assert_eq!(c.method, m.as_bytes());
        }
    }
}
