//! Fuzz the Authorization / Proxy-Authorization parser and what auth_db does with its values: no
//! panic; every value is a view of the input; writing the parameters back out and parsing again
//! gives the same parameters (Digest); the nonce check and the response comparison accept any bytes.
#![no_main]

use dataplane::auth::digest::{self, Algorithm, Qop, ResponseInput};
use dataplane::auth::nonce::NonceKey;
use dataplane::wire::digest::Credentials;
use libfuzzer_sys::fuzz_target;

fn inside(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    inner.is_empty() || (i >= o && i + inner.len() <= o + outer.len())
}

fuzz_target!(|data: &[u8]| {
    let Ok(c) = Credentials::parse(data) else {
        return;
    };
    assert!(inside(data, c.scheme) && inside(data, c.params));
    let mut again = c.scheme.to_vec();
    let params: Vec<(&[u8], &[u8])> = c.iter().collect();
    for (i, (n, v)) in params.iter().enumerate() {
        assert!(inside(data, n) && inside(data, v));
        again.extend_from_slice(if i == 0 { b" " } else { b", " });
        again.extend_from_slice(n);
        again.push(b'=');
        again.extend_from_slice(v);
    }
    // (Only for Digest: another scheme's `a= =` written back as `a==` reads as a token68.)
    if c.is_digest() {
        let c2 = Credentials::parse(&again).expect("parameters written back parse");
        let params2: Vec<(&[u8], &[u8])> = c2.iter().collect();
        assert_eq!(params, params2);
    }
    let realm = c.realm().unwrap_or_default();
    let nonce = c.nonce().unwrap_or_default();
    let _ = NonceKey::new(b"fuzz").check(nonce, realm, 1_000_000);
    let alg = c.algorithm().and_then(Algorithm::parse).unwrap_or(Algorithm::Md5);
    let qop = c.qop().map_or(Some(Qop::None), Qop::parse).unwrap_or(Qop::Auth);
    let ha1 = digest::ha1(alg, c.username().unwrap_or_default(), realm, b"pw");
    let want = digest::response(&ResponseInput {
        alg,
        ha1: ha1.as_bytes(),
        nonce,
        nc: c.nc().unwrap_or_default(),
        cnonce: c.cnonce().unwrap_or_default(),
        qop,
        method: b"REGISTER",
        uri: c.uri().unwrap_or_default(),
        body: data,
    });
    let _ = digest::response_matches(&want, c.response().unwrap_or_default());
    let _ = digest::Hex::from_hex(c.response().unwrap_or_default());
});
