//! Tests of URI parsing and comparison.
#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;

fn p(s: &[u8]) -> Uri<'_> {
    Uri::parse(s).unwrap()
}
fn e(s: &[u8]) -> ParseError {
    Uri::parse(s).unwrap_err()
}

#[test]
fn ipv4_parser_agrees_with_std() {
    for t in [
        "1.2.3.4",
        "0.0.0.0",
        "255.255.255.255",
        "256.1.1.1",
        "01.2.3.4",
        "1.2.3",
        "1.2.3.4.5",
        "1..3.4",
        "",
        "1.2.3.4.",
        "999.1.1.1",
        "1.2.3.a",
        "0.1.10.100",
    ] {
        assert_eq!(parse_v4(t.as_bytes()), t.parse().ok(), "{t}");
    }
}

proptest! {
    #[test]
    fn ipv4_parser_agrees_with_std_on_any_digits_and_dots(t in "[0-9.]{0,20}") {
        prop_assert_eq!(parse_v4(t.as_bytes()), t.parse().ok());
    }
}

#[test]
fn plain_sip() {
    let u = p(b"sip:vivekg@chair-dnrc.example.com;unknownparam");
    assert_eq!(u.scheme, Scheme::Sip);
    assert_eq!(u.scheme_raw, b"sip");
    assert_eq!(u.user, Some(&b"vivekg"[..]));
    assert_eq!(u.password, None);
    assert_eq!(u.host, Host::Name(b"chair-dnrc.example.com"));
    assert_eq!(u.port, None);
    assert_eq!(u.params.raw(), b";unknownparam");
    assert_eq!(u.param(b"UNKNOWNPARAM"), Some(None));
    assert_eq!(u.headers, None);
    assert_eq!(u.opaque, b"vivekg@chair-dnrc.example.com;unknownparam");
    let u = p(b"sips:alice:secret@192.0.2.4:5061;transport=TCP;lr;maddr=239.255.255.1;user=phone");
    assert_eq!(u.scheme, Scheme::Sips);
    assert_eq!(u.password, Some(&b"secret"[..]));
    assert_eq!(u.host, Host::V4(Ipv4Addr::new(192, 0, 2, 4)));
    assert_eq!(u.port, Some(5061));
    assert_eq!(u.host_port_raw(), b"192.0.2.4:5061");
    assert_eq!(u.transport(), Some(&b"TCP"[..]));
    assert!(u.lr());
    assert_eq!(u.maddr(), Some(&b"239.255.255.1"[..]));
    assert_eq!(u.user_param(), Some(&b"phone"[..]));
    let u = p(b"SIP:services.example.com;lr;unknownwith=value;unknown-no-value");
    assert_eq!(u.scheme, Scheme::Sip);
    assert_eq!(u.user, None);
    assert_eq!(u.host_port_raw(), b"services.example.com");
    assert!(u.lr());
}

#[test]
fn intmeth_and_semiuri_userinfo() {
    let s: &[u8] = b"sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com";
    let u = p(s);
    assert_eq!(
        u.user,
        Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
    );
    assert_eq!(
        u.password,
        Some(&b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"[..])
    );
    assert_eq!(u.host, Host::Name(b"example.com"));
    assert!(u.params.is_empty());
    let u = p(b"sip:user;par=u%40example.net@example.com");
    assert_eq!(u.user, Some(&b"user;par=u%40example.net"[..]));
    assert_eq!(&*u.user_unescaped().unwrap(), b"user;par=u@example.net");
    assert_eq!(u.host, Host::Name(b"example.com"));
    assert!(u.params.is_empty());
}

#[test]
fn escapes() {
    // esc01
    let u = p(b"sip:sips%3Auser%40example.com@example.net");
    assert_eq!(u.user, Some(&b"sips%3Auser%40example.com"[..]));
    assert_eq!(&*u.user_unescaped().unwrap(), b"sips:user@example.com");
    assert_eq!(u.host, Host::Name(b"example.net"));
    let u = p(b"sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31");
    assert_eq!(&*u.user_unescaped().unwrap(), b"caller");
    assert_eq!(
        u.params.get(b"n%61me"),
        Some(Some(&b"v%61lue%25%34%31"[..]))
    );
    assert_eq!(&*unescape(b"v%61lue%25%34%31"), b"value%41");
    assert_eq!(&*unescape(b"%2541"), b"%41");
    assert!(matches!(unescape(b"plain"), Cow::Borrowed(_)));
    assert_eq!(&*unescape(b"bad%zz%4"), b"bad%zz%4");
    let u = p(b"sip:I%20have%20spaces@example.net");
    assert_eq!(&*u.user_unescaped().unwrap(), b"I have spaces");
    // escnull: the NUL is kept, the user is not cut
    let u = p(b"sip:null-%00-null@example.com");
    assert_eq!(&*u.user_unescaped().unwrap(), b"null-\0-null");
    assert_eq!(
        &*p(b"sip:%00%00@host5.example.com").user_unescaped().unwrap(),
        b"\0\0"
    );
    assert_eq!(
        e(b"sip:a%4@example.com"),
        ParseError::new(ErrorKind::BadEscape, 5)
    );
    assert_eq!(
        e(b"sip:a%G1@example.com"),
        ParseError::new(ErrorKind::BadEscape, 5)
    );
    assert_eq!(
        e(b"sip:example.com;a=%"),
        ParseError::new(ErrorKind::BadEscape, 18)
    );
}

#[test]
fn headers_part() {
    // regescrt
    let u = p(b"sip:user@example.com?Route=%3Csip:sip.example.com%3E");
    assert_eq!(u.headers, Some(&b"Route=%3Csip:sip.example.com%3E"[..]));
    assert_eq!(u.host, Host::Name(b"example.com"));
    assert!(u.params.is_empty());
    let u = p(b"sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com");
    assert_eq!(u.transport(), Some(&b"tcp"[..]));
    assert_eq!(u.headers, Some(&b"to=sip:bob%40biloxi.com"[..]));
    assert_eq!(e(b"sip:a@b?").kind, ErrorKind::BadUri);
}

#[test]
fn bad_uris() {
    // ltgtruri / lwsruri
    assert_eq!(
        e(b"<sip:user@example.com>"),
        ParseError::new(ErrorKind::BadUri, 0)
    );
    assert_eq!(
        e(b"sip:user@example.com; lr"),
        ParseError::new(ErrorKind::BadUri, 21)
    );
    assert_eq!(e(b"sip:"), ParseError::new(ErrorKind::BadUri, 4));
    assert_eq!(e(b"sip:user@"), ParseError::new(ErrorKind::BadUri, 9));
    assert_eq!(e(b"sip:@example.com").kind, ErrorKind::BadUri);
    assert_eq!(e(b"nocolon").kind, ErrorKind::BadUri);
    assert_eq!(e(b"1sip:x").kind, ErrorKind::BadUri);
    assert_eq!(e(b":x").kind, ErrorKind::BadUri);
    assert_eq!(e(b"sip:a@b@c").kind, ErrorKind::BadHost);
    assert_eq!(e(b"sip:a@exa_mple..com").kind, ErrorKind::BadHost);
    assert_eq!(e(b"sip:a@-x.com").kind, ErrorKind::BadHost);
    assert_eq!(e(b"sip:a@1.2.3").kind, ErrorKind::BadHost);
    assert_eq!(e(b"sip:a@256.1.1.1").kind, ErrorKind::BadHost);
    assert_eq!(e(b"sip:a@h:65536"), ParseError::new(ErrorKind::BadPort, 8));
    assert_eq!(e(b"sip:a@h:"), ParseError::new(ErrorKind::BadPort, 8));
    assert_eq!(e(b"sip:a@h:99999999999999999999").kind, ErrorKind::BadPort);
    assert_eq!(e(b"sip:a@h:5x").kind, ErrorKind::BadHost);
    assert_eq!(e(b"sip:a@h;;").kind, ErrorKind::BadParam);
    assert_eq!(e(b"sip:a\x80@h").kind, ErrorKind::BadUri);
    assert_eq!(e(b"sip:a\"@h").kind, ErrorKind::BadUri);
    assert_eq!(e(b"sip:a@h:5060:5060").kind, ErrorKind::BadHost);
    // trailing dot on a FQDN is fine
    assert_eq!(p(b"sip:a@example.com.").host, Host::Name(b"example.com."));
    assert_eq!(p(b"sip:a@h:0").port, Some(0));
    assert_eq!(p(b"sip:a@h:65535").port, Some(65535));
}

#[test]
fn rfc5118_ipv6() {
    // ipv6-good
    let u = p(b"sip:[2001:db8::10]");
    assert_eq!(u.host, Host::V6("2001:db8::10".parse().unwrap()));
    assert_eq!(u.host_raw, b"[2001:db8::10]");
    assert_eq!(u.port, None);
    let u = p(b"sip:caller@[2001:db8::1]");
    assert_eq!(u.host, Host::V6("2001:db8::1".parse().unwrap()));
    // ipv6-bad
    assert_eq!(
        e(b"sip:2001:db8::10"),
        ParseError::new(ErrorKind::BadHost, 4)
    );
    // port-ambiguous: all of it is the address
    let u = p(b"sip:[2001:db8::10:5070]");
    assert_eq!(u.host, Host::V6("2001:db8::10:5070".parse().unwrap()));
    assert_eq!(u.port, None);
    // port-unambiguous
    let u = p(b"sip:[2001:db8::10]:5070");
    assert_eq!(u.host, Host::V6("2001:db8::10".parse().unwrap()));
    assert_eq!(u.port, Some(5070));
    assert_eq!(u.host_port_raw(), b"[2001:db8::10]:5070");
    // ipv4-mapped
    let u = p(b"sip:ted@[::ffff:192.0.2.2]");
    assert_eq!(
        u.host,
        Host::V6(Ipv4Addr::new(192, 0, 2, 2).to_ipv6_mapped())
    );
    // 2 colons (correct) and 3 colons (tolerated, §4.10)
    let good: Ipv6Addr = "2001:db8::192.0.2.1".parse().unwrap();
    assert_eq!(p(b"sip:user@[2001:db8::192.0.2.1]").host, Host::V6(good));
    let u = p(b"sip:user@[2001:db8:::192.0.2.1]");
    assert_eq!(u.host, Host::V6(good));
    assert_eq!(u.host_raw, b"[2001:db8:::192.0.2.1]");
    assert_eq!(e(b"sip:[2001:db8::10").kind, ErrorKind::BadHost);
    assert_eq!(e(b"sip:[zz::1]").kind, ErrorKind::BadHost);
    assert_eq!(e(b"sip:[1::::2]").kind, ErrorKind::BadHost);
    assert_eq!(e(b"sip:[::1]x").kind, ErrorKind::BadHost);
}

#[test]
fn tel_and_other_schemes() {
    let u = p(b"tel:+1-201-555-0123;phone-context=example.com");
    assert_eq!(u.scheme, Scheme::Tel);
    assert_eq!(u.user, Some(&b"+1-201-555-0123"[..]));
    assert_eq!(u.param(b"phone-context"), Some(Some(&b"example.com"[..])));
    assert_eq!(e(b"tel:").kind, ErrorKind::BadUri);
    assert_eq!(e(b"tel:+1 555").kind, ErrorKind::BadUri);
    for (s, scheme, opaque) in [
        (
            &b"nobodyKnowsThisScheme:totallyopaquecontent"[..],
            &b"nobodyKnowsThisScheme"[..],
            &b"totallyopaquecontent"[..],
        ),
        (
            b"soap.beep://192.0.2.103:3002",
            b"soap.beep",
            b"//192.0.2.103:3002",
        ),
        (b"isbn:2983792873", b"isbn", b"2983792873"),
        (b"http://www.example.com", b"http", b"//www.example.com"),
        (b"name:John_Smith", b"name", b"John_Smith"),
    ] {
        let u = p(s);
        assert_eq!(u.scheme, Scheme::Other);
        assert_eq!(u.scheme_raw, scheme);
        assert_eq!(u.opaque, opaque);
        assert_eq!(u.user, None);
        assert_eq!(u.host_port_raw(), b"");
    }
    assert_eq!(e(b"isbn:").kind, ErrorKind::BadUri);
}

fn eq(a: &[u8], b: &[u8]) -> bool {
    let r = uri_eq(&p(a), &p(b));
    assert_eq!(r, uri_eq(&p(b), &p(a)), "symmetry");
    r
}

#[test]
fn rfc3261_19_1_4_equality() {
    assert!(eq(
        b"sip:%61lice@atlanta.com;transport=TCP",
        b"sip:alice@AtLanTa.CoM;Transport=tcp"
    ));
    assert!(eq(
        b"sip:carol@chicago.com",
        b"sip:carol@chicago.com;newparam=5"
    ));
    assert!(eq(
        b"sip:carol@chicago.com",
        b"sip:carol@chicago.com;security=on"
    ));
    assert!(eq(
        b"sip:carol@chicago.com;newparam=5",
        b"sip:carol@chicago.com;security=on"
    ));
    assert!(eq(
        b"sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        b"sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"
    ));
    assert!(eq(
        b"sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        b"sip:alice@atlanta.com?priority=urgent&subject=project%20x"
    ));
    assert!(!eq(
        b"SIP:ALICE@AtLanTa.CoM;Transport=udp",
        b"sip:alice@AtLanTa.CoM;Transport=UDP"
    ));
    assert!(!eq(b"sip:bob@biloxi.com", b"sip:bob@biloxi.com:5060"));
    assert!(!eq(
        b"sip:bob@biloxi.com",
        b"sip:bob@biloxi.com;transport=udp"
    ));
    assert!(!eq(
        b"sip:bob@biloxi.com",
        b"sip:bob@biloxi.com:6000;transport=tcp"
    ));
    assert!(!eq(
        b"sip:carol@chicago.com",
        b"sip:carol@chicago.com?Subject=next%20meeting"
    ));
    assert!(!eq(b"sip:bob@phone21.boxesbybob.com", b"sip:bob@192.0.2.4"));
    assert!(!eq(
        b"sip:carol@chicago.com;security=on",
        b"sip:carol@chicago.com;security=off"
    ));
    // scheme and escapes in the user part
    assert!(!eq(b"sip:alice@atlanta.com", b"sips:alice@atlanta.com"));
    assert!(eq(b"sip:%41@h", b"sip:A@h"));
    assert!(!eq(b"sip:value%2541@h", b"sip:valueA@h"));
    assert!(eq(b"sip:[2001:db8::1]", b"sip:[2001:DB8:0::1]"));
    assert!(!eq(b"sip:a:pw@h", b"sip:a@h"));
    assert!(!eq(b"sip:h;lr", b"sip:h;lr=on"));
    assert!(eq(b"tel:+1-555", b"TEL:+1-555"));
    assert!(eq(b"sip:h;d=1;d", b"sip:h;d=1"));
    assert!(eq(b"sip:h;%6Cr", b"sip:h;lr"));
    assert!(!eq(b"sip:h;%6Cr=1", b"sip:h;lr=2"));
    assert!(!eq(b"sip:h;%74ransport=tcp", b"sip:h"));
    assert!(eq(b"sip:h;%74ransport=tcp", b"sip:h;transport=TCP"));
    assert!(!eq(b"tel:+1-555", b"sip:+1-555@h"));
}

#[test]
fn literals_are_corpus_bytes() {
    for (file, lit) in [
        ("rfc4475/wsinv.dat", &b"sip:vivekg@chair-dnrc.example.com;unknownparam"[..]),
        ("rfc4475/intmeth.dat", b"sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com"),
        ("rfc4475/semiuri.dat", b"sip:user;par=u%40example.net@example.com"),
        ("rfc4475/esc01.dat", b"sip:sips%3Auser%40example.com@example.net"),
        ("rfc4475/esc01.dat", b"sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31"),
        ("rfc4475/esc01.dat", b"sip:I%20have%20spaces@example.net"),
        ("rfc4475/escnull.dat", b"sip:null-%00-null@example.com"),
        ("rfc4475/escnull.dat", b"sip:%00%00@host5.example.com"),
        ("rfc4475/regescrt.dat", b"sip:user@example.com?Route=%3Csip:sip.example.com%3E"),
        ("rfc4475/ltgtruri.dat", b"<sip:user@example.com>"),
        ("rfc4475/lwsruri.dat", b"sip:user@example.com; lr"),
        ("rfc4475/unkscm.dat", b"nobodyKnowsThisScheme:totallyopaquecontent"),
        ("rfc4475/novelsc.dat", b"soap.beep://192.0.2.103:3002"),
        ("rfc4475/unksm2.dat", b"isbn:2983792873"),
        ("rfc5118/ipv6-good.dat", b"sip:[2001:db8::10]"),
        ("rfc5118/ipv6-bad.dat", b"sip:2001:db8::10"),
        ("rfc5118/port-ambiguous.dat", b"sip:[2001:db8::10:5070]"),
        ("rfc5118/port-unambiguous.dat", b"sip:[2001:db8::10]:5070"),
        ("rfc5118/ipv4-mapped-ipv6.dat", b"sip:ted@[::ffff:192.0.2.2]"),
        ("rfc5118/ipv6-bug-abnf-3-colons.dat", b"sip:user@[2001:db8:::192.0.2.1]"),
        ("rfc5118/ipv6-correct-abnf-2-colons.dat", b"sip:user@[2001:db8::192.0.2.1]"),
    ] {
        crate::wire::chars::corpus::assert_in(file, lit);
    }
}

proptest! {
    #[test]
    fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(u) = Uri::parse(&data) {
            let _ = u.host_port_raw();
            let _ = u.user_unescaped();
            prop_assert!(uri_eq(&u, &u));
        }
    }

    #[test]
    fn sip_never_panics(rest in "[a-z0-9@:;=?&%.\\[\\]-]{0,40}") {
        let s = format!("sip:{rest}");
        let _ = Uri::parse(s.as_bytes());
    }

    #[test]
    fn generated_sip_roundtrip(
        sips in any::<bool>(),
        user in proptest::option::of("[a-zA-Z0-9_.!~*'()&=+$,;?/-]{1,12}"),
        pw in proptest::option::of("[a-zA-Z0-9&=+$,]{0,8}"),
        host in prop_oneof![
            "[a-z][a-z0-9-]{0,8}[a-z0-9](\\.[a-z][a-z0-9]{0,5}){0,3}",
            any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_string()),
            any::<[u16; 8]>().prop_map(|o| format!("[{}]", Ipv6Addr::from(o))),
        ],
        port in proptest::option::of(any::<u16>()),
        params in proptest::collection::vec(("[a-z]{1,6}", proptest::option::of("[a-zA-Z0-9:&+$-]{1,6}")), 0..4),
        headers in proptest::option::of("[a-z]{1,5}=[a-zA-Z0-9:]{0,6}"),
    ) {
        let mut s = String::from(if sips { "sips:" } else { "sip:" });
        if let Some(u) = &user {
            s.push_str(u);
            if let Some(p) = &pw { s.push(':'); s.push_str(p); }
            s.push('@');
        }
        s.push_str(&host);
        if let Some(p) = port { s.push_str(&format!(":{p}")); }
        let mut praw = String::new();
        for (n, v) in &params {
            praw.push(';'); praw.push_str(n);
            if let Some(v) = v { praw.push('='); praw.push_str(v); }
        }
        s.push_str(&praw);
        if let Some(h) = &headers { s.push('?'); s.push_str(h); }
        let u = Uri::parse(s.as_bytes()).unwrap();
        prop_assert_eq!(u.scheme, if sips { Scheme::Sips } else { Scheme::Sip });
        prop_assert_eq!(u.user, user.as_deref().map(str::as_bytes));
        prop_assert_eq!(u.password, if user.is_some() { pw.as_deref().map(str::as_bytes) } else { None });
        prop_assert_eq!(u.host_raw, host.as_bytes());
        prop_assert_eq!(u.port, port);
        prop_assert_eq!(u.params.raw(), praw.as_bytes());
        let got: Vec<_> = u.params.iter().map(|p| (p.name.to_vec(), p.value.map(<[u8]>::to_vec))).collect();
        let want: Vec<_> = params.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_ref().map(|v| v.as_bytes().to_vec()))).collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(u.headers, headers.as_deref().map(str::as_bytes));
        prop_assert!(uri_eq(&u, &u));
    }
}

proptest! {
    // The one-pass parser answers only for URIs the general parser accepts, with the same fields.
    #[test]
    fn fast_path_agrees_with_general_parser(
        t in "(sip|SIP|sips|Sip|tel|sipx)?:?[a-z0-9@.:;=%?_!~&$,+\\-\\[\\] ]{0,32}"
    ) {
        let input = t.as_bytes();
        if let Some(fast) = fast::parse(input) {
            let general = Uri::parse_general(input);
            prop_assert_eq!(Ok(fast), general);
        }
    }

    #[test]
    fn fast_host_agrees_with_general_host(t in "[<a-z0-9._\\-]{0,20}[:;>]?[0-9]{0,3}") {
        let s = t.as_bytes();
        if let Some((h, end)) = fast::host(s) {
            let general = parse_host(s).ok().map(|(g, raw, e)| (g, raw.len(), e));
            prop_assert_eq!(Some((h, end, end)), general);
        }
    }
}

#[test]
fn fast_path_takes_the_common_shapes() {
    for u in [
        &b"sip:service@127.0.0.1:5070"[..],
        b"sip:alice@atlanta.example.com",
        b"SIPS:bench17@client.bench.test:5062;transport=udp;lr",
        b"sip:10.0.0.1",
        b"sip:a.b.",
        b"sip:u-1_x.y!~*'()&=+$,@h",
    ] {
        assert!(fast::parse(u).is_some(), "{}", String::from_utf8_lossy(u));
        assert_eq!(fast::parse(u).map(Ok), Some(Uri::parse_general(u)));
    }
    for u in [
        &b"sip:al%41ice@host"[..],
        b"sip:alice:pw@host",
        b"sip:[::1]:5060",
        b"sip:host?subject=x",
        b"sip:01.2.3.4",
        b"sip:1.2.3.4.",
        b"sip:a..b",
        b"sip:-a",
        b"sip:a-.b",
        b"sip:2001:db8::1",
        b"sip:@host",
        b"tel:+1234",
    ] {
        assert!(fast::parse(u).is_none(), "{}", String::from_utf8_lossy(u));
    }
}
