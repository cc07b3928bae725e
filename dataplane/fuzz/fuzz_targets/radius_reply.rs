//! Fuzz the RADIUS reply parser (what a server, or anyone who can send to the client's socket,
//! hands to `decode_reply`): no panic; an accepted reply has the identifier and a code that
//! answer the request, and well-formed attributes that re-encode within the packet's length.
//! The first input byte picks the request kind and whether a Message-Authenticator is required.
#![no_main]

use dataplane::radius::codec::{decode_reply, encode, ACCESS_REQUEST, ACCOUNTING_REQUEST};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, reply)) = data.split_first() else {
        return;
    };
    let code = if mode & 1 == 0 { ACCESS_REQUEST } else { ACCOUNTING_REQUEST };
    let id = reply.get(1).copied().unwrap_or(0);
    let Ok(req) = encode(code, id, &[(1, b"fuzz".to_vec())], b"secret", [7; 16]) else {
        return;
    };
    if let Ok((rcode, attrs)) = decode_reply(reply, &req, b"secret", mode & 2 != 0) {
        assert_eq!(reply[1], id);
        assert!(matches!(rcode, 2 | 3 | 5));
        let total: usize = attrs.iter().map(|(_, v)| v.len() + 2).sum();
        assert!(20 + total <= reply.len());
        assert!(attrs.iter().all(|(_, v)| v.len() <= 253));
    }
});
