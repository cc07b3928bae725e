//! Module domain run from scripts: is_from_local / is_uri_host_local against the domain table
//! (multi-domain hosting), read once through an offloaded select and cached.
#![allow(clippy::unwrap_used)]

#[path = "support/auth_env.rs"]
mod auth_env;
#[path = "support/script.rs"]
mod support;

use auth_env::*;
use dataplane::offload::Job;
use support::{ctx_from, program};

fn cfg(mode: i32) -> String {
    format!(
        r#"
loadmodule "modules/sl/sl.so"
loadmodule "modules/domain/domain.so"
modparam("domain", "db_mode", {mode})
route {{
    if (is_uri_host_local()) {{
        if (is_from_local()) {{ sl_send_reply("200", "local to local"); break; }};
        sl_send_reply("200", "inbound"); break;
    }};
    if (is_from_local()) {{ sl_send_reply("200", "outbound"); break; }};
    sl_send_reply("403", "relaying denied");
}}
"#
    )
}

fn call(e: &mut AuthEnv, ruri: &str, from: &str) -> String {
    let m = msg(request_with("INVITE", ruri, from, "x@y", &[]));
    e.run(&mut ctx_from(m, "192.168.1.20:5060"));
    e.last_reply().reason.clone()
}

#[test]
fn served_domains_from_the_domain_table() {
    let mut e = AuthEnv::new(program(&cfg(0)));
    e.row("domain", &[("domain", "a.example")]);
    e.row("domain", &[("domain", "B.Example")]);
    assert_eq!(
        call(&mut e, "sip:x@A.EXAMPLE", "u@b.example"),
        "local to local"
    );
    assert_eq!(
        call(&mut e, "sip:x@a.example", "u@elsewhere.org"),
        "inbound"
    );
    assert_eq!(
        call(&mut e, "sip:x@elsewhere.org", "u@b.example"),
        "outbound"
    );
    assert_eq!(
        call(&mut e, "sip:x@elsewhere.org", "u@other.org"),
        "relaying denied"
    );
    assert_eq!(e.db_jobs(), 1, "the table is read once");
    assert_eq!(
        e.jobs[0],
        Job::Db {
            url: String::new(),
            table: "domain".into(),
            keys: vec![],
            columns: vec!["domain".into()]
        }
    );
    // db_mode 0: re-read after cache_ttl
    e.advance(61);
    call(&mut e, "sip:x@a.example", "u@b.example");
    assert_eq!(e.db_jobs(), 2);
}

#[test]
fn db_mode_1_keeps_the_table_until_reloaded() {
    let mut e = AuthEnv::new(program(&cfg(1)));
    e.row("domain", &[("domain", "a.example")]);
    assert_eq!(call(&mut e, "sip:x@a.example", "u@z.org"), "inbound");
    e.row("domain", &[("domain", "z.org")]);
    e.advance(3600);
    assert_eq!(call(&mut e, "sip:x@a.example", "u@z.org"), "inbound");
    e.services.auth.domains_changed();
    assert_eq!(call(&mut e, "sip:x@a.example", "u@z.org"), "local to local");
    assert_eq!(e.db_jobs(), 2);
}
