//! Modules auth + auth_db run from scripts: challenges, digest checks against the subscriber
//! table (answered by a fake storage layer), nonces, replay and failure throttling — checked on
//! the replies the script sends and the selects it hands to the controlplane.
#![allow(clippy::unwrap_used)]

#[path = "support/auth_env.rs"]
mod auth_env;
#[path = "support/script.rs"]
mod support;

use std::sync::Arc;

use auth_env::*;
use dataplane::auth::digest::{Algorithm, Qop};
use dataplane::offload::Job;
use dataplane::script::Outcome;
use dataplane::services::Services;
use support::{ctx_from, program};

const MODS: &str = r#"
loadmodule "modules/sl/sl.so"
loadmodule "modules/auth/auth.so"
loadmodule "modules/auth_db/auth_db.so"
"#;

/// The HowTo 3.1 registrar (plain passwords), with a 200 standing in for save().
fn registrar(extra_params: &str, qop: &str) -> String {
    format!(
        r#"{MODS}
modparam("auth_db", "calculate_ha1", yes)
modparam("auth_db", "password_column", "password")
{extra_params}
route {{
    if (method == "REGISTER") {{
        if (!www_authorize("mydomain.com", "subscriber")) {{
            www_challenge("mydomain.com", "{qop}");
            break;
        }};
        sl_send_reply("200", "OK");
        break;
    }};
    sl_send_reply("403", "Forbidden");
}}
"#
    )
}

fn env_with_alice(cfg: &str) -> AuthEnv {
    let mut e = AuthEnv::new(program(cfg));
    e.row(
        "subscriber",
        &[
            ("username", "alice"),
            ("domain", "mydomain.com"),
            ("password", "wonderland"),
        ],
    );
    e
}

const SRC: &str = "192.168.1.20:5060";

fn register(env: &mut AuthEnv, auth: Option<String>, src: &str) -> Outcome {
    let extra: Vec<String> = auth
        .into_iter()
        .map(|a| format!("Authorization: {a}"))
        .collect();
    let m = msg(request_with(
        "REGISTER",
        "sip:mydomain.com",
        "alice@mydomain.com",
        "alice@mydomain.com",
        &extra,
    ));
    let mut c = ctx_from(m, src);
    env.run(&mut c)
}

/// Sends an unauthenticated REGISTER and returns the challenge's WWW-Authenticate values.
fn challenge(env: &mut AuthEnv) -> Vec<String> {
    register(env, None, SRC);
    let r = env.last_reply();
    assert_eq!((r.code, r.reason.as_str()), (401, "Unauthorized"));
    r.header_values("WWW-Authenticate")
}

fn client<'a>(nonce: &'a str, password: &'a str) -> Client<'a> {
    Client {
        user: "alice",
        password,
        realm: "mydomain.com",
        nonce,
        uri: "sip:mydomain.com",
        method: "REGISTER",
        alg: None,
        qop: None,
        body: "",
    }
}

#[test]
fn register_is_challenged_then_accepted_and_the_answer_is_cached() {
    let mut env = env_with_alice(&registrar("", "0"));
    let ch = challenge(&mut env);
    assert_eq!(ch.len(), 1);
    assert!(
        ch[0].starts_with("Digest realm=\"mydomain.com\", nonce=\""),
        "{}",
        ch[0]
    );
    assert!(
        !ch[0].contains("qop") && !ch[0].contains("stale"),
        "{}",
        ch[0]
    );
    let nonce = challenge_param(&ch[0], "nonce").unwrap();
    assert_eq!(nonce.len(), 48);
    assert_eq!(env.db_jobs(), 0, "no credentials, no lookup");

    register(
        &mut env,
        Some(client(&nonce, "wonderland").header_value()),
        SRC,
    );
    assert_eq!(env.last_reply().code, 200);
    // one select, as the contract says: default DB, subscriber table, username + realm
    assert_eq!(
        env.jobs,
        vec![Job::Db {
            url: String::new(),
            table: "subscriber".into(),
            keys: vec![
                ("username".into(), "alice".into()),
                ("domain".into(), "mydomain.com".into())
            ],
            columns: vec!["password".into()],
        }]
    );
    // the next registration is answered from the cache
    register(
        &mut env,
        Some(client(&nonce, "wonderland").header_value()),
        SRC,
    );
    assert_eq!(env.last_reply().code, 200);
    assert_eq!(env.db_jobs(), 1);
    // until management says alice changed
    env.services
        .auth
        .credentials_changed("alice", "mydomain.com");
    register(
        &mut env,
        Some(client(&nonce, "wonderland").header_value()),
        SRC,
    );
    assert_eq!(env.last_reply().code, 200);
    assert_eq!(env.db_jobs(), 2);
    // or the TTL ran out
    env.advance(61);
    let nonce = challenge_param(&challenge(&mut env)[0], "nonce").unwrap();
    register(
        &mut env,
        Some(client(&nonce, "wonderland").header_value()),
        SRC,
    );
    assert_eq!(env.last_reply().code, 200);
    assert_eq!(env.db_jobs(), 3);
}

/// The challenge with its nonce masked out.
fn shape(r: &Reply) -> (u16, String, Vec<String>) {
    let vals = r
        .header_values("WWW-Authenticate")
        .into_iter()
        .map(|v| {
            let n = challenge_param(&v, "nonce").unwrap();
            v.replace(&n, "NONCE")
        })
        .collect();
    (r.code, r.reason.clone(), vals)
}

#[test]
fn wrong_password_and_unknown_user_get_identical_replies() {
    let mut env = env_with_alice(&registrar("", "1"));
    let nonce = challenge_param(&challenge(&mut env)[0], "nonce").unwrap();
    let q = Some((1, "abcd", Qop::Auth));
    register(
        &mut env,
        Some(
            Client {
                qop: q,
                ..client(&nonce, "guess")
            }
            .header_value(),
        ),
        SRC,
    );
    let wrong = shape(env.last_reply());
    register(
        &mut env,
        Some(
            Client {
                user: "mallory",
                qop: q,
                ..client(&nonce, "guess")
            }
            .header_value(),
        ),
        SRC,
    );
    let unknown = shape(env.last_reply());
    assert_eq!(wrong, unknown);
    assert_eq!(wrong.0, 401);
    assert_eq!(
        wrong.2,
        vec!["Digest realm=\"mydomain.com\", nonce=\"NONCE\", qop=\"auth\"".to_owned()]
    );
}

#[test]
fn qop_auth_nonce_count_replay_is_refused() {
    let mut env = env_with_alice(&registrar("", "1"));
    let nonce = challenge_param(&challenge(&mut env)[0], "nonce").unwrap();
    let with_nc = |nc| {
        Client {
            qop: Some((nc, "0a4f113b", Qop::Auth)),
            ..client(&nonce, "wonderland")
        }
        .header_value()
    };
    register(&mut env, Some(with_nc(1)), SRC);
    assert_eq!(env.last_reply().code, 200);
    register(&mut env, Some(with_nc(1)), SRC);
    assert_eq!(env.last_reply().code, 401, "replayed nc");
    register(&mut env, Some(with_nc(2)), SRC);
    assert_eq!(env.last_reply().code, 200);
    // auth-int covers the body (empty here)
    let h = Client {
        qop: Some((3, "x", Qop::AuthInt)),
        ..client(&nonce, "wonderland")
    }
    .header_value();
    register(&mut env, Some(h), SRC);
    assert_eq!(env.last_reply().code, 200);
}

#[test]
fn expired_nonce_is_challenged_with_stale_true() {
    let mut env = env_with_alice(&registrar(r#"modparam("auth", "nonce_expire", 30)"#, "0"));
    let nonce = challenge_param(&challenge(&mut env)[0], "nonce").unwrap();
    env.advance(31);
    register(
        &mut env,
        Some(client(&nonce, "wonderland").header_value()),
        SRC,
    );
    let r = env.last_reply();
    assert_eq!(r.code, 401);
    let ch = r.header_values("WWW-Authenticate");
    assert!(ch[0].ends_with(", stale=true"), "{}", ch[0]);
    assert_eq!(env.db_jobs(), 0, "an expired nonce needs no lookup");
    // the fresh nonce works
    let fresh = challenge_param(&ch[0], "nonce").unwrap();
    register(
        &mut env,
        Some(client(&fresh, "wonderland").header_value()),
        SRC,
    );
    assert_eq!(env.last_reply().code, 200);
}

#[test]
fn nonces_survive_a_restart_and_work_on_a_second_server_with_the_same_secret() {
    let cfg = registrar(r#"modparam("auth", "secret", "alsdkhglaksdhfkloiwr")"#, "0");
    let mut a = env_with_alice(&cfg);
    let nonce = challenge_param(&challenge(&mut a)[0], "nonce").unwrap();
    // another process: fresh services, same secret
    let mut b = env_with_alice(&cfg);
    b.services = Arc::new(Services::default());
    register(
        &mut b,
        Some(client(&nonce, "wonderland").header_value()),
        SRC,
    );
    assert_eq!(b.last_reply().code, 200);
    // a server with another secret refuses it, without stale
    let mut c = env_with_alice(&registrar(r#"modparam("auth", "secret", "other")"#, "0"));
    register(
        &mut c,
        Some(client(&nonce, "wonderland").header_value()),
        SRC,
    );
    assert_eq!(c.last_reply().code, 401);
    assert!(!c.last_reply().headers.contains("stale"));
    // without a secret, a restart (new random secret) invalidates nonces
    let mut d = env_with_alice(&registrar("", "0"));
    let n2 = challenge_param(&challenge(&mut d)[0], "nonce").unwrap();
    let mut d2 = env_with_alice(&registrar("", "0"));
    register(&mut d2, Some(client(&n2, "wonderland").header_value()), SRC);
    assert_eq!(d2.last_reply().code, 401);
}

#[test]
fn sha256_is_offered_first_and_verified() {
    let mut env = env_with_alice(&registrar(
        r#"modparam("auth", "algorithms", "SHA-256, MD5")"#,
        "1",
    ));
    let ch = challenge(&mut env);
    assert_eq!(ch.len(), 2);
    assert!(
        ch[0].ends_with("qop=\"auth\", algorithm=SHA-256"),
        "{}",
        ch[0]
    );
    assert!(ch[1].ends_with("algorithm=MD5"), "{}", ch[1]);
    let nonce = challenge_param(&ch[0], "nonce").unwrap();
    for (i, alg) in [Algorithm::Sha256, Algorithm::Md5].into_iter().enumerate() {
        let h = Client {
            alg: Some(alg),
            qop: Some((i as u32 + 1, "c", Qop::Auth)),
            ..client(&nonce, "wonderland")
        }
        .header_value();
        register(&mut env, Some(h), SRC);
        assert_eq!(env.last_reply().code, 200, "{alg:?}");
    }
    // an algorithm not offered is refused
    let h = Client {
        alg: Some(Algorithm::Md5Sess),
        qop: Some((9, "c", Qop::Auth)),
        ..client(&nonce, "wonderland")
    }
    .header_value();
    register(&mut env, Some(h), SRC);
    assert_eq!(env.last_reply().code, 401);
}

#[test]
fn stored_ha1_and_ha1b_columns() {
    let cfg = format!(
        r#"{MODS}
route {{
    if (!www_authorize("mydomain.com", "subscriber")) {{
        www_challenge("mydomain.com", "0");
        break;
    }};
    sl_send_reply("200", "OK");
}}
"#
    );
    let mut env = AuthEnv::new(program(&cfg));
    let ha1 = dataplane::auth::digest::ha1(Algorithm::Md5, b"alice", b"mydomain.com", b"pw");
    let ha1b = dataplane::auth::digest::ha1(
        Algorithm::Md5,
        b"alice@mydomain.com",
        b"mydomain.com",
        b"pw",
    );
    let ha1 = String::from_utf8(ha1.as_bytes().to_ascii_uppercase()).unwrap();
    let ha1b = String::from_utf8(ha1b.as_bytes().to_vec()).unwrap();
    env.row(
        "subscriber",
        &[
            ("username", "alice"),
            ("domain", "mydomain.com"),
            ("ha1", &ha1),
            ("ha1b", &ha1b),
        ],
    );
    let nonce = challenge_param(&challenge(&mut env)[0], "nonce").unwrap();
    register(&mut env, Some(client(&nonce, "pw").header_value()), SRC);
    assert_eq!(env.last_reply().code, 200);
    match &env.jobs[0] {
        Job::Db { columns, .. } => assert_eq!(columns, &["ha1", "ha1b"]),
        j => panic!("{j:?}"),
    }
    let h = Client {
        user: "alice@mydomain.com",
        ..client(&nonce, "pw")
    }
    .header_value();
    register(&mut env, Some(h), SRC);
    assert_eq!(env.last_reply().code, 200, "user@domain uses ha1b");
    // stored MD5 HA1 cannot answer SHA-256
    assert_eq!(env.db_jobs(), 1);
}

#[test]
fn repeated_failures_from_one_source_are_throttled() {
    let mut env = env_with_alice(&registrar(
        r#"modparam("auth", "fail_limit", 3)
modparam("auth", "fail_window", 60)"#,
        "0",
    ));
    let nonce = challenge_param(&challenge(&mut env)[0], "nonce").unwrap();
    for _ in 0..3 {
        register(&mut env, Some(client(&nonce, "guess").header_value()), SRC);
        assert_eq!(env.last_reply().code, 401);
    }
    let out = register(
        &mut env,
        Some(client(&nonce, "wonderland").header_value()),
        SRC,
    );
    assert_eq!(out, Outcome::Done(0), "the script stops");
    let r = env.last_reply();
    assert_eq!((r.code, r.reason.as_str()), (503, "Service Unavailable"));
    assert_eq!(r.header_values("Retry-After"), vec!["60".to_owned()]);
    // another source is not affected
    register(
        &mut env,
        Some(client(&nonce, "wonderland").header_value()),
        "10.1.1.1:5060",
    );
    assert_eq!(env.last_reply().code, 200);
    // the window ends
    env.advance(61);
    let nonce = challenge_param(&challenge(&mut env)[0], "nonce").unwrap();
    register(
        &mut env,
        Some(client(&nonce, "wonderland").header_value()),
        SRC,
    );
    assert_eq!(env.last_reply().code, 200);

    let mut env = env_with_alice(&registrar(
        r#"modparam("auth", "fail_limit", 1)
modparam("auth", "fail_reply", 403)"#,
        "0",
    ));
    let nonce = challenge_param(&challenge(&mut env)[0], "nonce").unwrap();
    register(&mut env, Some(client(&nonce, "guess").header_value()), SRC);
    register(&mut env, Some(client(&nonce, "guess").header_value()), SRC);
    let r = env.last_reply();
    assert_eq!((r.code, r.headers.as_str()), (403, ""));
}

#[test]
fn malformed_or_incomplete_credentials_get_400() {
    let mut env = env_with_alice(&registrar("", "0"));
    for bad in [
        "Digest username=\"alice\", realm=\"mydomain.com\", nonce=\"abc",
        "Digest username=\"alice\", realm=\"mydomain.com\", uri=\"sip:x\", response=\"00\"",
        "Digest username=\"alice\", realm=\"mydomain.com\", nonce=\"n\", uri=\"sip:x\", response=\"00\", qop=auth",
    ] {
        let out = register(&mut env, Some(bad.to_owned()), SRC);
        assert_eq!(out, Outcome::Done(0), "{bad}");
        assert_eq!(env.last_reply().code, 400, "{bad}");
    }
    // credentials for another realm are no credentials: challenge
    let other = "Digest username=\"alice\", realm=\"elsewhere\", nonce=\"n\", uri=\"sip:x\", response=\"00\"";
    register(&mut env, Some(other.to_owned()), SRC);
    assert_eq!(env.last_reply().code, 401);
}

#[test]
fn database_failure_is_500_and_not_cached() {
    let mut env = env_with_alice(&registrar("", "0"));
    let nonce = challenge_param(&challenge(&mut env)[0], "nonce").unwrap();
    env.db_down = Some("connection refused".into());
    register(
        &mut env,
        Some(client(&nonce, "wonderland").header_value()),
        SRC,
    );
    // SER's auth_db: a failed query is 500 and ends the script, never a new challenge (401).
    assert_eq!(env.last_reply().code, 500);
    assert_eq!(
        env.replies.len(),
        2,
        "one reply: no challenge after the 500"
    );
    assert!(
        env.inner.log_text().contains("connection refused"),
        "{}",
        env.inner.log_text()
    );
    env.db_down = None;
    register(
        &mut env,
        Some(client(&nonce, "wonderland").header_value()),
        SRC,
    );
    assert_eq!(env.last_reply().code, 200);
}

#[test]
fn empty_realm_is_the_request_uri_host_for_register_and_the_from_host_otherwise() {
    let cfg = format!(
        r#"{MODS}
modparam("auth_db", "calculate_ha1", 1)
modparam("auth_db", "password_column", "password")
route {{
    if (method == "REGISTER") {{
        if (!www_authorize("", "subscriber")) {{ www_challenge("", "0"); break; }};
    }} else {{
        if (!proxy_authorize("", "subscriber")) {{ proxy_challenge("", "0"); break; }};
    }};
    sl_send_reply("200", "OK");
}}
"#
    );
    let mut env = env_with_alice(&cfg);
    let ch = challenge(&mut env);
    assert_eq!(challenge_param(&ch[0], "realm").unwrap(), "mydomain.com");
    let m = msg(request_with(
        "INVITE",
        "sip:bob@b.example",
        "alice@a.example",
        "bob@b.example",
        &[],
    ));
    env.run(&mut ctx_from(m, SRC));
    let r = env.last_reply();
    assert_eq!(
        (r.code, r.reason.as_str()),
        (407, "Proxy Authentication Required")
    );
    let pa = r.header_values("Proxy-Authenticate");
    assert_eq!(challenge_param(&pa[0], "realm").unwrap(), "a.example");
}

#[test]
fn proxy_authorize_then_consume_credentials_removes_them_before_forwarding() {
    let cfg = format!(
        r#"{MODS}
modparam("auth_db", "calculate_ha1", 1)
modparam("auth_db", "password_column", "password")
route {{
    if (!proxy_authorize("mydomain.com", "subscriber")) {{
        proxy_challenge("mydomain.com", "1");
        break;
    }};
    consume_credentials();
    forward("10.0.0.9", 5060);
}}
"#
    );
    let mut env = env_with_alice(&cfg);
    let invite = |extra: &[String]| {
        msg(request_with(
            "INVITE",
            "sip:bob@mydomain.com",
            "alice@mydomain.com",
            "bob@mydomain.com",
            extra,
        ))
    };
    env.run(&mut ctx_from(invite(&[]), SRC));
    let pa = env.last_reply().header_values("Proxy-Authenticate");
    let nonce = challenge_param(&pa[0], "nonce").unwrap();
    let h = Client {
        method: "INVITE",
        uri: "sip:bob@mydomain.com",
        qop: Some((1, "c0ffee", Qop::Auth)),
        ..client(&nonce, "wonderland")
    }
    .header_value();
    let mut c = ctx_from(
        invite(&[
            format!("Proxy-Authorization: {h}"),
            "Authorization: Digest username=\"x\", realm=\"upstream\"".into(),
        ]),
        SRC,
    );
    let out = env.run(&mut c);
    assert_eq!(out, Outcome::Done(1));
    assert_eq!(env.inner.sent.len(), 1, "forwarded");
    let written = String::from_utf8(c.msg.to_bytes().to_vec()).unwrap();
    assert!(!written.contains("Proxy-Authorization"), "{written}");
    assert!(
        written.contains("Authorization: Digest username=\"x\""),
        "others stay: {written}"
    );
}

#[test]
fn column_names_table_and_db_url_come_from_the_parameters() {
    let cfg = format!(
        r#"{MODS}
modparam("auth_db", "db_url", "sql://ser:heslo@localhost/ser")
modparam("auth_db", "user_column", "user_id")
modparam("auth_db", "domain_column", "realm_id")
modparam("auth_db", "password_column", "pw_hash")
modparam("auth_db", "password_column_2", "pw_hash_b")
modparam("auth_db", "cache_ttl", 0)
route {{
    if (!www_authorize("mydomain.com", "users")) {{
        www_challenge("mydomain.com", "0");
        break;
    }};
    sl_send_reply("200", "OK");
}}
"#
    );
    let mut env = AuthEnv::new(program(&cfg));
    let ha1 = dataplane::auth::digest::ha1(Algorithm::Md5, b"alice", b"mydomain.com", b"pw");
    let ha1 = String::from_utf8(ha1.as_bytes().to_vec()).unwrap();
    env.row(
        "users",
        &[
            ("user_id", "alice"),
            ("realm_id", "mydomain.com"),
            ("pw_hash", &ha1),
        ],
    );
    let nonce = challenge_param(&challenge(&mut env)[0], "nonce").unwrap();
    for _ in 0..2 {
        register(&mut env, Some(client(&nonce, "pw").header_value()), SRC);
        assert_eq!(env.last_reply().code, 200);
    }
    assert_eq!(env.db_jobs(), 2, "cache_ttl 0: the DB is asked every time");
    assert_eq!(
        env.jobs[0],
        Job::Db {
            url: "sql://ser:heslo@localhost/ser".into(),
            table: "users".into(),
            keys: vec![
                ("user_id".into(), "alice".into()),
                ("realm_id".into(), "mydomain.com".into())
            ],
            columns: vec!["pw_hash".into(), "pw_hash_b".into()],
        }
    );
}
