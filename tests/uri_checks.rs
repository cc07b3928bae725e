//! Module uri run from scripts: check_to, check_from and is_user compare the authenticated
//! username with the request (Admin Guide 3.2.11: nobody registers or calls as somebody else);
//! does_uri_exist asks the subscriber table.
#![allow(clippy::unwrap_used)]

#[path = "support/auth_env.rs"]
mod auth_env;
#[path = "support/script.rs"]
mod support;

use auth_env::*;
use dataplane::offload::Job;
use support::{ctx_from, program};

const SRC: &str = "192.168.1.20:5060";

/// A registrar that refuses a REGISTER whose To user is not the authenticated one.
const REGISTRAR: &str = r#"
loadmodule "modules/sl/sl.so"
loadmodule "modules/auth/auth.so"
loadmodule "modules/auth_db/auth_db.so"
loadmodule "modules/uri/uri.so"
modparam("auth_db", "calculate_ha1", yes)
modparam("auth_db", "password_column", "password")
modparam("auth", "secret", "s3cret")
route {
    if (method == "REGISTER") {
        if (!www_authorize("mydomain.com", "subscriber")) {
            www_challenge("mydomain.com", "0");
            break;
        };
        if (!check_to()) {
            sl_send_reply("403", "Use your own identity");
            break;
        };
        sl_send_reply("200", "OK");
        break;
    };
    if (!proxy_authorize("mydomain.com", "subscriber")) {
        proxy_challenge("mydomain.com", "0");
        break;
    };
    if (!check_from()) {
        sl_send_reply("403", "From is not you");
        break;
    };
    if (is_user("alice")) {
        sl_send_reply("200", "Hello alice");
        break;
    };
    sl_send_reply("200", "Hello someone");
}
"#;

fn env() -> AuthEnv {
    let mut e = AuthEnv::new(program(REGISTRAR));
    for (u, p) in [("alice", "wonderland"), ("bob", "builder")] {
        e.row(
            "subscriber",
            &[("username", u), ("domain", "mydomain.com"), ("password", p)],
        );
    }
    e
}

fn nonce(env: &mut AuthEnv, method: &str) -> String {
    let m = msg(request_with(
        method,
        "sip:mydomain.com",
        "x@mydomain.com",
        "x@mydomain.com",
        &[],
    ));
    env.run(&mut ctx_from(m, SRC));
    let r = env.last_reply();
    let v = r
        .header_values("WWW-Authenticate")
        .into_iter()
        .chain(r.header_values("Proxy-Authenticate"))
        .next()
        .unwrap();
    challenge_param(&v, "nonce").unwrap()
}

fn send(
    env: &mut AuthEnv,
    method: &str,
    user: &str,
    pw: &str,
    from: &str,
    to: &str,
) -> (u16, String) {
    let n = nonce(env, method);
    let ruri = if method == "REGISTER" {
        "sip:mydomain.com"
    } else {
        "sip:carol@mydomain.com"
    };
    let h = Client {
        user,
        password: pw,
        realm: "mydomain.com",
        nonce: &n,
        uri: ruri,
        method,
        alg: None,
        qop: None,
        body: "",
    }
    .header_value();
    let name = if method == "REGISTER" {
        "Authorization"
    } else {
        "Proxy-Authorization"
    };
    let m = msg(request_with(
        method,
        ruri,
        from,
        to,
        &[format!("{name}: {h}")],
    ));
    env.run(&mut ctx_from(m, SRC));
    let r = env.last_reply();
    (r.code, r.reason.clone())
}

#[test]
fn check_to_refuses_registering_alice_with_bobs_credentials() {
    let mut e = env();
    // bob's valid credentials, To alice
    assert_eq!(
        send(
            &mut e,
            "REGISTER",
            "bob",
            "builder",
            "bob@mydomain.com",
            "alice@mydomain.com"
        ),
        (403, "Use your own identity".into())
    );
    // bob registering bob
    assert_eq!(
        send(
            &mut e,
            "REGISTER",
            "bob",
            "builder",
            "bob@mydomain.com",
            "bob@mydomain.com"
        )
        .0,
        200
    );
}

#[test]
fn check_from_and_is_user() {
    let mut e = env();
    assert_eq!(
        send(
            &mut e,
            "INVITE",
            "bob",
            "builder",
            "alice@mydomain.com",
            "carol@mydomain.com"
        ),
        (403, "From is not you".into())
    );
    assert_eq!(
        send(
            &mut e,
            "INVITE",
            "alice",
            "wonderland",
            "alice@mydomain.com",
            "carol@mydomain.com"
        ),
        (200, "Hello alice".into())
    );
    assert_eq!(
        send(
            &mut e,
            "INVITE",
            "bob",
            "builder",
            "bob@mydomain.com",
            "carol@mydomain.com"
        ),
        (200, "Hello someone".into())
    );
}

#[test]
fn without_authorized_credentials_the_checks_are_false() {
    let p = program(
        r#"
loadmodule "modules/sl/sl.so"
loadmodule "modules/uri/uri.so"
route {
    if (check_to() || check_from() || is_user("alice")) { sl_send_reply("500", "wrong"); break; };
    sl_send_reply("200", "no identity");
}
"#,
    );
    let mut e = AuthEnv::new(p);
    let m = msg(request_with(
        "REGISTER",
        "sip:mydomain.com",
        "alice@mydomain.com",
        "alice@mydomain.com",
        &[],
    ));
    let mut c = ctx_from(m, SRC);
    e.run(&mut c);
    assert_eq!(e.last_reply().reason, "no identity");
}

#[test]
fn does_uri_exist_asks_the_subscriber_table_once() {
    let p = program(
        r#"
loadmodule "modules/sl/sl.so"
loadmodule "modules/uri/uri.so"
route {
    if (does_uri_exist()) { sl_send_reply("200", "exists"); break; };
    sl_send_reply("404", "Not Found");
}
"#,
    );
    let mut e = AuthEnv::new(p);
    e.row(
        "subscriber",
        &[("username", "alice"), ("domain", "mydomain.com")],
    );
    for (uri, code) in [
        ("sip:alice@mydomain.com", 200),
        ("sip:alice@mydomain.com", 200),
        ("sip:eve@mydomain.com", 404),
    ] {
        let m = msg(request_with("INVITE", uri, "x@y", "z@w", &[]));
        e.run(&mut ctx_from(m, SRC));
        assert_eq!(e.last_reply().code, code, "{uri}");
    }
    assert_eq!(e.db_jobs(), 2, "the second alice is cached");
    assert!(matches!(&e.jobs[0], Job::Db { table, .. } if table == "subscriber"));
}
