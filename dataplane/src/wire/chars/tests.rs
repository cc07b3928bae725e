//! Tests of the byte classes and scanners.
#![allow(clippy::unwrap_used)]

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
fn class_table_matches_abnf() {
    for b in 0..=255u8 {
        let alnum = b.is_ascii_alphanumeric();
        assert_eq!(is_alphanum(b), alnum, "{b}");
        assert_eq!(is_token(b), alnum || b"-.!%*_+`'~".contains(&b), "{b}");
        let unres = alnum || b"-_.!~*'()".contains(&b);
        assert_eq!(is_unreserved(b), unres, "{b}");
        assert_eq!(is_user_unreserved(b), b"&=+$,;?/".contains(&b), "{b}");
        assert_eq!(is_password_char(b), unres || b"&=+$,".contains(&b), "{b}");
        assert_eq!(is_param_unreserved(b), b"[]/:&+$".contains(&b), "{b}");
        assert_eq!(is_hnv_unreserved(b), b"[]/?:+$".contains(&b), "{b}");
    }
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

#[test]
fn literals_are_corpus_bytes() {
    for (file, lit) in [
        (
            "rfc4475/wsinv.dat",
            &b"\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>"[..],
        ),
        (
            "rfc4475/intmeth.dat",
            &b"\"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\" <sip:"[..],
        ),
        ("rfc4475/badinv01.dat", &b"SIP/2.0/UDP 192.0.2.15;;,;,,"[..]),
        (
            "rfc4475/quotbal.dat",
            &b"\"Mr. J. User <sip:j.user@example.com>"[..],
        ),
    ] {
        crate::wire::chars::corpus::assert_in(file, lit);
    }
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
