#![allow(clippy::unwrap_used)]

use super::*;

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

#[test]
fn parses_request_line_headers_and_body() {
    let m = Message::parse(Bytes::from_static(INVITE)).unwrap();
    assert!(m.is_request());
    assert_eq!(m.method(), Method::Invite);
    assert_eq!(m.request_uri_bytes(), Some(&b"sip:bob@biloxi.com"[..]));
    assert_eq!(m.header_count(), 9);
    assert_eq!(
        m.header_value(HeaderId::CallId),
        Some(&b"a84b4c76e66710@pc33.atlanta.com"[..])
    );
    assert_eq!(m.header_value(HeaderId::MaxForwards), Some(&b"70"[..]));
    assert_eq!(m.body(), b"v=0\n");
    assert_eq!(m.content_length(), Some(4));
    assert_eq!(m.len(), INVITE.len());
}

#[test]
fn parses_status_line() {
    let m = Message::parse(Bytes::from_static(
        b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nContent-Length: 0\r\n\r\n",
    ))
    .unwrap();
    assert_eq!(m.status(), Some(180));
    assert_eq!(m.reason(), Some(&b"Ringing"[..]));
    let m = Message::parse(Bytes::from_static(b"SIP/2.0 100 \r\nl: 0\r\n\r\n")).unwrap();
    assert_eq!(m.reason(), Some(&b""[..]));
}

#[test]
fn folded_values_and_space_before_colon() {
    let m = Message::parse(Bytes::from_static(
        b"OPTIONS sip:x@y SIP/2.0\r\nTO :\r\n sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\r\nSubject:\r\nl: 0\r\n\r\n",
    ))
    .unwrap();
    assert_eq!(
        m.header_value(HeaderId::To),
        Some(&b"sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n"[..])
    );
    assert_eq!(m.header_value(HeaderId::Subject), Some(&b""[..]));
}

#[test]
fn bare_lf_and_leading_crlf() {
    let m = Message::parse(Bytes::from_static(
        b"\r\n\r\nBYE sip:a@b SIP/2.0\nCall-ID: x\n\n",
    ))
    .unwrap();
    assert_eq!(m.method(), Method::Bye);
    assert_eq!(m.header_value(HeaderId::CallId), Some(&b"x"[..]));
    assert_eq!(m.body(), b"");
}

#[test]
fn errors_have_kinds_and_positions() {
    let e = |s: &'static [u8]| Message::parse(Bytes::from_static(s)).unwrap_err();
    assert_eq!(e(b"").kind, ErrorKind::Empty);
    assert_eq!(
        e(b"INVITE sip:a@b SIP/7.0\r\n\r\n").kind,
        ErrorKind::UnsupportedVersion
    );
    assert_eq!(
        e(b"INVITE sip:a@b SIP/2.0 \r\n\r\n").kind,
        ErrorKind::BadStartLine
    );
    assert_eq!(
        e(b"INVITE  sip:a@b SIP/2.0\r\n\r\n").kind,
        ErrorKind::BadUri
    );
    assert_eq!(
        e(b"INVITE sip:a@b SIP/2.0\r\nVia x\r\n\r\n"),
        ParseError::new(ErrorKind::BadHeaderLine, 28)
    );
    assert_eq!(
        e(b"INVITE sip:a@b SIP/2.0\r\nl: 10\r\n\r\nabc").kind,
        ErrorKind::BodyTooShort
    );
    assert_eq!(
        e(b"INVITE sip:a@b SIP/2.0\r\nl: -1\r\n\r\n").kind,
        ErrorKind::BadContentLength
    );
    assert_eq!(
        e(b"INVITE sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nab").kind,
        ErrorKind::MultipleContentLength
    );
    assert_eq!(
        e(b"INVITE sip:a@b SIP/2.0\r\nTo: a\r\n").kind,
        ErrorKind::Incomplete
    );
    assert_eq!(
        e(b"SIP/2.0 4294967301 x\r\n\r\n").kind,
        ErrorKind::BadStatusCode
    );
}

#[test]
fn lenient_parse_keeps_headers_for_a_reply() {
    let raw = b"INVITE sip:a@b SIP/7.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: x\r\n\r\n";
    let (m, e) = Message::parse_lenient(Bytes::from_static(raw), &Limits::default()).unwrap();
    assert_eq!(e.unwrap().kind, ErrorKind::UnsupportedVersion);
    assert_eq!(m.method(), Method::Other);
    assert_eq!(m.header_value(HeaderId::CallId), Some(&b"x"[..]));
    let (m, e) = Message::parse_lenient(
        Bytes::from_static(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n"),
        &Limits::default(),
    )
    .unwrap();
    assert!(e.is_none());
    assert_eq!(m.method(), Method::Options);
    for (raw, kind) in [
        (
            &b"INVITE sip:a@b SIP/2.0\r\nCall-ID: x\r\nl: 99\r\n\r\nv=0"[..],
            ErrorKind::BodyTooShort,
        ),
        (
            &b"INVITE sip:a@b SIP/2.0\r\nCall-ID: x\r\nl: -9\r\n\r\n"[..],
            ErrorKind::BadContentLength,
        ),
        (
            &b"INVITE sip:a@b SIP/2.0\r\nCall-ID: x\r\nl: 1\r\nl: 2\r\n\r\nab"[..],
            ErrorKind::MultipleContentLength,
        ),
        (
            &b"INVITE sip:a@b SIP/2.0\r\nCall-ID: x\r\nl: 0\r\n"[..],
            ErrorKind::Incomplete,
        ),
    ] {
        let (m, e) = Message::parse_lenient(Bytes::from_static(raw), &Limits::default()).unwrap();
        assert_eq!(e.unwrap().kind, kind);
        assert_eq!(m.header_value(HeaderId::CallId), Some(&b"x"[..]));
        assert_eq!(m.len(), raw.len());
        // Strict parsing refuses all of them.
        assert_eq!(
            Message::parse(Bytes::from_static(raw)).unwrap_err().kind,
            kind
        );
    }
    // Status lines are not guessed at.
    assert!(Message::parse_lenient(
        Bytes::from_static(b"SIP/2.0 99 x\r\n\r\n"),
        &Limits::default()
    )
    .is_err());
}

#[test]
fn limits() {
    let lim = Limits {
        max_headers: 2,
        ..Limits::default()
    };
    let r = Message::parse_with(
        Bytes::from_static(b"BYE sip:a@b SIP/2.0\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n"),
        &lim,
    );
    assert_eq!(r.unwrap_err().kind, ErrorKind::TooManyHeaders);
    let lim = Limits {
        max_size: 10,
        ..Limits::default()
    };
    let r = Message::parse_with(Bytes::from_static(b"BYE sip:a@b SIP/2.0\r\n\r\n"), &lim);
    assert_eq!(r.unwrap_err().kind, ErrorKind::TooLarge);
    let lim = Limits {
        stream: true,
        ..Limits::default()
    };
    let r = Message::parse_with(Bytes::from_static(b"BYE sip:a@b SIP/2.0\r\n\r\n"), &lim);
    assert_eq!(r.unwrap_err().kind, ErrorKind::MissingHeader);
}

#[test]
fn datagram_trailing_octets_are_not_part_of_the_message() {
    let m = Message::parse(Bytes::from_static(
        b"REGISTER sip:a SIP/2.0\r\nl: 0\r\n\r\nINVITE junk",
    ))
    .unwrap();
    assert_eq!(m.body(), b"");
    assert_eq!(m.as_bytes(), b"REGISTER sip:a SIP/2.0\r\nl: 0\r\n\r\n");
}

proptest::proptest! {
    #[test]
    fn the_word_scan_finds_what_the_byte_scan_finds(
        s in proptest::collection::vec(
            proptest::prop_oneof![30 => 0x21u8..0x7f, 1 => proptest::prelude::any::<u8>()],
            0..60,
        )
    ) {
        let slow = s.iter().position(|&c| c <= b' ' || c == 0x7f);
        proptest::prop_assert_eq!(first_ctl_or_space(&s), slow);
    }
}
