//! Module group run from scripts, and the Admin Guide's PSTN gateway guard (pstn.cfg, Example
//! 3-8): users in groups local / ld / int calling local, long-distance and international
//! numbers are relayed or refused with 403 as the script says.
#![allow(clippy::unwrap_used)]

#[path = "support/auth_env.rs"]
mod auth_env;
#[path = "support/seed.rs"]
mod seed;
#[path = "support/script.rs"]
mod support;

use auth_env::*;
use dataplane::offload::Job;
use dataplane::script::Outcome;
use support::{ctx_from, fail, ok, program};

const SRC: &str = "192.168.1.20:5060";

#[test]
fn is_user_in_reads_each_source_and_caches_answers() {
    let p = program(
        r#"
loadmodule "modules/sl/sl.so"
loadmodule "modules/group/group.so"
route {
    if (is_user_in("Request-URI", "voicemail")) { sl_send_reply("200", "ruri"); break; };
    if (is_user_in("to", "vip")) { sl_send_reply("200", "to"); break; };
    if (is_user_in("FROM", "blocked")) { sl_send_reply("403", "from"); break; };
    if (is_user_in("Credentials", "x")) { sl_send_reply("500", "no creds"); break; };
    sl_send_reply("404", "none");
}
"#,
    );
    let mut e = AuthEnv::new(p);
    e.row("grp", &[("username", "vm"), ("grp", "voicemail")]);
    e.row("grp", &[("username", "boss"), ("grp", "vip")]);
    e.row("grp", &[("username", "spam"), ("grp", "blocked")]);
    let run = |e: &mut AuthEnv, ruri: &str, from: &str, to: &str| {
        let m = msg(request_with("INVITE", ruri, from, to, &[]));
        e.run(&mut ctx_from(m, SRC));
        let r = e.last_reply();
        (r.code, r.reason.clone())
    };
    assert_eq!(
        run(&mut e, "sip:vm@a.com", "x@a.com", "y@a.com"),
        (200, "ruri".into())
    );
    assert_eq!(
        run(&mut e, "sip:y@a.com", "x@a.com", "boss@a.com"),
        (200, "to".into())
    );
    assert_eq!(
        run(&mut e, "sip:y@a.com", "spam@b.com", "y@a.com"),
        (403, "from".into())
    );
    let jobs = e.db_jobs();
    assert_eq!(
        run(&mut e, "sip:y@a.com", "x@a.com", "y@a.com"),
        (404, "none".into())
    );
    assert!(
        e.inner.log_text().contains("no authorized credentials"),
        "{}",
        e.inner.log_text()
    );
    // select shape: username + group, no domain without use_domain
    assert!(e.jobs.iter().any(|j| matches!(j, Job::Db { table, keys, columns, .. }
        if table == "grp"
            && keys == &[("username".to_owned(), "boss".to_owned()), ("grp".to_owned(), "vip".to_owned())]
            && columns == &["grp"])));
    // answers (and negative ones) are cached
    assert_eq!(
        run(&mut e, "sip:y@a.com", "x@a.com", "y@a.com"),
        (404, "none".into())
    );
    // (y's "no" for the Request-URI and To sources was cached by the calls before; x is new)
    assert_eq!(e.db_jobs(), jobs + 1);
    e.services.auth.groups_changed();
    assert_eq!(
        run(&mut e, "sip:y@a.com", "x@a.com", "y@a.com"),
        (404, "none".into())
    );
    assert_eq!(e.db_jobs(), jobs + 4);
}

#[test]
fn use_domain_and_custom_columns() {
    let p = program(
        r#"
loadmodule "modules/sl/sl.so"
loadmodule "modules/group/group.so"
modparam("group", "use_domain", 1)
modparam("group", "table", "groups")
modparam("group", "user_column", "u")
modparam("group", "domain_column", "d")
modparam("group", "group_column", "g")
route {
    if (is_user_in("From", "ld")) { sl_send_reply("200", "in"); break; };
    sl_send_reply("403", "out");
}
"#,
    );
    let mut e = AuthEnv::new(p);
    e.row("groups", &[("u", "alice"), ("d", "a.com"), ("g", "ld")]);
    for (from, code) in [("alice@a.com", 200), ("alice@b.com", 403)] {
        let m = msg(request_with("INVITE", "sip:1@gw", from, "1@gw", &[]));
        e.run(&mut ctx_from(m, SRC));
        assert_eq!(e.last_reply().code, code, "{from}");
    }
}

/// pstn.cfg as shipped, with the modules other issues implement (tm, rr, acc) stubbed: t_relay
/// answers 200 "relayed" so that the test sees where the call went.
fn relayed(
    ctx: &mut dataplane::script::Ctx,
    env: &mut dyn dataplane::script::Env,
    _: &[dataplane::script::ir::Arg],
) -> dataplane::script::ActionResult {
    let uri = String::from_utf8_lossy(ctx.uri()).into_owned();
    env.reply(ctx, 299, format!("relayed to {uri}").as_bytes());
    dataplane::script::ActionResult::Ret(1)
}

#[test]
fn pstn_cfg_gateway_access_control_by_group() {
    let text = seed::example_text("pstn-gateway.cfg");
    let mut e = AuthEnv::new(program(&text))
        .fake("t_relay", relayed)
        .fake("loose_route", fail)
        .fake("record_route", ok);
    let users = [("loc", "local"), ("dist", "ld"), ("intl", "int")];
    for (u, g) in users {
        e.row(
            "subscriber",
            &[("username", u), ("domain", "gateway"), ("password", "pw")],
        );
        e.row("grp", &[("username", u), ("grp", g)]);
    }
    e.row(
        "subscriber",
        &[
            ("username", "nobody"),
            ("domain", "gateway"),
            ("password", "pw"),
        ],
    );
    e.row("grp", &[("username", "1234"), ("grp", "free-pstn")]);

    let call = |e: &mut AuthEnv, user: Option<&str>, number: &str| -> (u16, String) {
        let ruri = format!("sip:{number}@gw.example.com");
        let invite = |extra: &[String]| {
            msg(request_with(
                "INVITE",
                &ruri,
                "caller@example.com",
                &format!("{number}@gw.example.com"),
                extra,
            ))
        };
        e.run(&mut ctx_from(invite(&[]), SRC));
        if let Some(user) = user {
            let r = e.last_reply().clone();
            assert_eq!(r.code, 407, "{r:?}");
            let ch = r.header_values("Proxy-Authenticate");
            assert!(!ch[0].contains("qop"), "qop 0: {}", ch[0]);
            let nonce = challenge_param(&ch[0], "nonce").unwrap();
            let h = Client {
                user,
                password: "pw",
                realm: "gateway",
                nonce: &nonce,
                uri: &ruri,
                method: "INVITE",
                alg: None,
                qop: None,
                body: "",
            }
            .header_value();
            let out = e.run(&mut ctx_from(
                invite(&[format!("Proxy-Authorization: {h}")]),
                SRC,
            ));
            assert!(matches!(out, Outcome::Done(_)), "{out:?}");
        }
        let r = e.last_reply();
        (r.code, r.reason.clone())
    };
    let relayed = |n: &str| (299, format!("relayed to sip:{n}@192.168.0.10:5060"));
    // local group: local numbers only
    assert_eq!(call(&mut e, Some("loc"), "0123456"), relayed("0123456"));
    assert_eq!(
        call(&mut e, Some("loc"), "00123456"),
        (403, " no permission for LD ".into())
    );
    // ld group
    assert_eq!(call(&mut e, Some("dist"), "00123456"), relayed("00123456"));
    assert_eq!(
        call(&mut e, Some("dist"), "000123456"),
        (403, "International permissions needed".into())
    );
    assert_eq!(
        call(&mut e, Some("dist"), "0123456"),
        (403, "No permission for local calls".into())
    );
    // int group
    assert_eq!(
        call(&mut e, Some("intl"), "000123456"),
        relayed("000123456")
    );
    // no group at all; interplanetary numbers
    assert_eq!(
        call(&mut e, Some("nobody"), "0123456"),
        (403, "No permission for local calls".into())
    );
    assert_eq!(call(&mut e, Some("intl"), "123"), (403, "Forbidden".into()));
    // free destinations need no authentication
    assert_eq!(call(&mut e, None, "1234"), relayed("1234"));
    assert_eq!(call(&mut e, None, "7001"), relayed("7001"));
    // a wrong password is challenged again
    let ruri = "sip:0123456@gw.example.com";
    let bad = "Digest username=\"loc\", realm=\"gateway\", nonce=\"0000000000000000000000000000000000000000000000ff\", uri=\"sip:0123456@gw.example.com\", response=\"00000000000000000000000000000000\"";
    let m = msg(request_with(
        "INVITE",
        ruri,
        "caller@example.com",
        "0123456@gw.example.com",
        &[format!("Proxy-Authorization: {bad}")],
    ));
    e.run(&mut ctx_from(m, SRC));
    assert_eq!(e.last_reply().code, 407);
}
