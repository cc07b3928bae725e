//! Fuzz the URI parser and its helpers: no panic, and a parsed URI's parts are views of the input.
#![no_main]

use dataplane::wire::uri::{unescape, uri_eq, Uri};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = unescape(data);
    if let Ok(u) = Uri::parse(data) {
        assert_eq!(u.raw, data);
        let _ = (u.user_unescaped(), u.transport(), u.lr(), u.maddr(), u.user_param());
        let _ = u.host_port_raw();
        for p in u.params.iter() {
            let _ = p;
        }
        assert!(uri_eq(&u, &u), "URI equality is reflexive");
    }
});
