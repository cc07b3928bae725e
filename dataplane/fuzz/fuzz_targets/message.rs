//! Fuzz `Message::parse` and everything reachable from a parsed message: every accessor, the
//! syntax gate, edits and the writer. Asserts: no panic; no-edit write is byte-identical;
//! edit → write → parse shows the edit.
#![no_main]

use bytes::Bytes;
use dataplane::wire::{HeaderId, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::parse(Bytes::copy_from_slice(data)) else {
        return;
    };
    let _ = m.check();
    if let Some(Ok(u)) = m.request_uri() {
        let _ = u.user_unescaped();
        let _ = (u.transport(), u.lr(), u.maddr());
    }
    for v in m.vias().take(100) {
        if let Ok(v) = v {
            let _ = (v.via.branch(), v.via.received_ip(), v.via.rport(), v.via.ttl());
        }
    }
    if let Ok(f) = m.from() {
        let _ = (f.tag(), f.display_unquoted());
    }
    let _ = m.to().map(|t| t.tag());
    let _ = (m.call_id(), m.cseq(), m.max_forwards(), m.expires(), m.content_type());
    let _ = m.contact_is_star();
    for c in m.contacts().take(100).flatten() {
        let _ = (c.value.expires(), c.value.q());
    }
    let _ = m.routes().take(100).count();
    let _ = m.record_routes().take(100).count();
    for a in m.authorization().chain(m.proxy_authorization()).take(20).flatten() {
        let _ = (a.value.username(), a.value.nonce(), a.value.response(), a.value.qop());
    }
    let _ = m.require().chain(m.proxy_require()).chain(m.supported()).take(100).count();

    // No edits: identical bytes.
    let mut out = Vec::new();
    m.write_to(&mut out);
    assert_eq!(&out[..], &data[..m.len()]);

    // Edits come back after a re-parse.
    let mut e = m.clone();
    e.insert_header_top(b"Via", b"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKfuzz");
    if let Some(h) = e.header(HeaderId::MaxForwards) {
        let i = h.index;
        let _ = e.replace_header_value(i, b"69");
    }
    e.set_body(b"fuzz");
    let again = Message::parse(e.to_bytes()).expect("an edited valid message parses");
    assert_eq!(again.body(), b"fuzz");
    assert_eq!(
        again.header_value(HeaderId::Via),
        Some(&b"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKfuzz"[..])
    );
});
