//! Property tests of the wire layer's writer: parse → write with no edits is byte-identical, and
//! parse → edit → write → parse shows exactly the edits (and nothing else changed).
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use dataplane::wire::{HeaderId, Message};
use proptest::prelude::*;

/// Header names in the shapes senders use: long and compact forms in any case, unknown names.
fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Via".to_string()),
        Just("v".to_string()),
        Just("ViA".to_string()),
        Just("To".to_string()),
        Just("t".to_string()),
        Just("From".to_string()),
        Just("f".to_string()),
        Just("Call-ID".to_string()),
        Just("i".to_string()),
        Just("CSeq".to_string()),
        Just("Contact".to_string()),
        Just("m".to_string()),
        Just("Route".to_string()),
        Just("Subject".to_string()),
        "X-[A-Za-z0-9-]{1,12}",
        "[A-Za-z][A-Za-z0-9!%*_+`'~.-]{0,20}",
    ]
    .prop_filter("Content-Length is written by the generator", |n| {
        HeaderId::from_name(n.as_bytes()) != HeaderId::ContentLength
    })
}

/// A header value: printable text, maybe folded over several lines, maybe empty.
fn header_value() -> impl Strategy<Value = String> {
    prop::collection::vec("[ -~&&[^\\\\]]{0,30}", 1..3).prop_map(|parts| {
        let parts: Vec<String> = parts.iter().map(|p| p.trim().to_string()).collect();
        parts.join("\r\n ")
    })
}

fn message() -> impl Strategy<Value = (Vec<(String, String)>, Vec<u8>, bool)> {
    (
        prop::collection::vec((header_name(), header_value()), 0..20),
        prop::collection::vec(any::<u8>(), 0..200),
        any::<bool>(),
    )
}

fn render(headers: &[(String, String)], body: &[u8], request: bool) -> Vec<u8> {
    let mut m: Vec<u8> = if request {
        b"INVITE sip:bob@biloxi.example.com;transport=udp SIP/2.0\r\n".to_vec()
    } else {
        b"SIP/2.0 200 OK\r\n".to_vec()
    };
    for (n, v) in headers {
        m.extend_from_slice(n.as_bytes());
        m.extend_from_slice(b": ");
        m.extend_from_slice(v.as_bytes());
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    m.extend_from_slice(body);
    m
}

fn written(m: &Message) -> Bytes {
    let mut out = bytes::BytesMut::new();
    m.write_to(&mut out);
    out.freeze()
}

proptest! {
    #[test]
    fn no_edits_writes_identical_bytes((headers, body, request) in message()) {
        let raw = render(&headers, &body, request);
        let m = Message::parse(Bytes::from(raw.clone())).unwrap();
        prop_assert_eq!(&written(&m)[..], &raw[..]);
        prop_assert_eq!(m.header_count(), headers.len() + 1);
        prop_assert_eq!(m.body(), &body[..]);
    }

    #[test]
    fn edits_come_back_after_reparse(
        (headers, body, request) in message(),
        new_value in "[a-z0-9.;=]{1,20}",
        new_body in prop::collection::vec(any::<u8>(), 0..50),
        pick in any::<prop::sample::Index>(),
        delete in any::<bool>(),
    ) {
        let raw = render(&headers, &body, request);
        let mut m = Message::parse(Bytes::from(raw)).unwrap();
        // Any header but Content-Length, which set_body below owns.
        let n = m.header_count() - 1;
        let target = if n == 0 { usize::MAX } else { pick.index(n) };
        let target_name = m.headers().nth(target).map(|h| h.name.to_vec()).unwrap_or_default();
        m.insert_header_top(b"X-Top", new_value.as_bytes());
        m.append_header(b"X-Bottom", b"1");
        if target != usize::MAX {
            if delete {
                m.delete_header(target).unwrap();
            } else {
                m.replace_header_value(target, new_value.as_bytes()).unwrap();
            }
        }
        if request {
            m.set_request_uri(b"sip:carol@10.0.0.9:5070").unwrap();
        }
        m.set_body(&new_body);
        let out = written(&m);
        prop_assert_eq!(out.len(), m.written_len());
        let again = Message::parse(out).unwrap();

        let names: Vec<Vec<u8>> = again.headers().map(|h| h.name.to_vec()).collect();
        prop_assert_eq!(&names[0][..], b"X-Top");
        prop_assert_eq!(again.header_value_by_name(b"X-Top"), Some(new_value.as_bytes()));
        prop_assert_eq!(again.header_value_by_name(b"X-Bottom"), Some(&b"1"[..]));
        prop_assert_eq!(again.body(), &new_body[..]);
        if request {
            prop_assert_eq!(again.request_uri_bytes(), Some(&b"sip:carol@10.0.0.9:5070"[..]));
        }
        // Every original header is still there, in order, except the deleted/replaced one.
        let orig: Vec<(Vec<u8>, Vec<u8>)> = m.headers().map(|h| (h.name.to_vec(), h.value.to_vec())).collect();
        let now: Vec<(Vec<u8>, Vec<u8>)> = again.headers().map(|h| (h.name.to_vec(), h.value.to_vec())).collect();
        let mut expect: Vec<(Vec<u8>, Vec<u8>)> = vec![(b"X-Top".to_vec(), new_value.as_bytes().to_vec())];
        for (i, (name, value)) in orig.into_iter().enumerate() {
            if HeaderId::from_name(&name) == HeaderId::ContentLength {
                expect.push((name, new_body.len().to_string().into_bytes()));
                continue;
            }
            if i == target {
                if !delete {
                    expect.push((target_name.clone(), new_value.as_bytes().to_vec()));
                }
                continue;
            }
            expect.push((name, value));
        }
        expect.push((b"X-Bottom".to_vec(), b"1".to_vec()));
        prop_assert_eq!(now, expect);
    }

    #[test]
    fn arbitrary_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(m) = Message::parse(Bytes::from(raw)) {
            let _ = written(&m);
            let _ = m.headers().count();
        }
    }
}
