//! Interpreter semantics: return values (0 stops), `break`, nested `route()`, the recursion limit,
//! `drop`, flags, the destination-set limit, `len_gt`, logging thresholds, the operands and
//! operators of conditions (`=~` case-insensitive, networks, `myself`), suspension and resumption.
#![allow(clippy::unwrap_used)]

#[path = "support/script.rs"]
mod support;

use std::net::IpAddr;

use dataplane::offload::{DnsQuery, Job, JobResult};
use dataplane::script::ctx::MAX_BRANCHES;
use dataplane::script::env::{level, ActionResult, Env};
use dataplane::script::ir::{Arg, Proto};
use dataplane::script::{exec, resume, Ctx, Outcome};
use support::*;

const TM: &str = "loadmodule \"modules/tm/tm.so\"\n";

fn run(src: &str, method: &str, uri: &str) -> (Ctx, MockEnv, Outcome) {
    run_env(src, method, uri, MockEnv::new())
}

fn run_env(src: &str, method: &str, uri: &str, mut env: MockEnv) -> (Ctx, MockEnv, Outcome) {
    let p = program_dbg(src);
    let mut c = ctx(request(method, uri));
    let o = exec(&p, &mut c, &mut env);
    (c, env, o)
}

fn flags(c: &Ctx) -> Vec<u32> {
    (0..32).filter(|&n| c.is_flag_set(n)).collect()
}

#[test]
fn zero_stops_the_whole_script() {
    let env = MockEnv::new().fake("t_newtran", stop);
    let (c, _, o) = run_env(
        &format!("{TM} route{{ setflag(1); route(1); setflag(3); }} route[1]{{ t_newtran(); setflag(2); }}"),
        "INVITE",
        "sip:a@b",
        env,
    );
    assert_eq!(o, Outcome::Done(0));
    assert_eq!(flags(&c), [1]);
}

#[test]
fn break_leaves_route_0() {
    let (c, _, o) = run(
        "route{ setflag(1); break; setflag(2); }",
        "INVITE",
        "sip:a@b",
    );
    assert_eq!(o, Outcome::Done(1));
    assert_eq!(flags(&c), [1]);
}

#[test]
fn break_in_a_sub_route_returns_to_the_caller() {
    let (c, _, o) = run(
        "route{ route(1); setflag(3); } route[1]{ setflag(1); if (method==\"INVITE\") { break; }; setflag(2); }",
        "INVITE",
        "sip:a@b",
    );
    assert_eq!(o, Outcome::Done(1));
    assert_eq!(flags(&c), [1, 3]);
}

#[test]
fn nested_routes_return_in_order() {
    let src = "route{ route(1); if (route(3)) { setflag(9); }; setflag(8); }
        route[1]{ setflag(1); route(2); setflag(3); }
        route[2]{ setflag(2); }
        route[3]{ isflagset(30); }";
    let (c, _, o) = run(src, "INVITE", "sip:a@b");
    assert_eq!(o, Outcome::Done(1));
    assert_eq!(flags(&c), [1, 2, 3, 8]);
}

#[test]
fn recursion_limit_logs_and_yields_minus_one() {
    let src = "route{ if (!route(1)) { setflag(2); }; setflag(1); } route[1]{ route(1); }";
    let (c, env, o) = run(src, "INVITE", "sip:a@b");
    assert_eq!(o, Outcome::Done(1));
    assert_eq!(flags(&c), [1, 2], "the -1 propagates up as the last value");
    let errs: Vec<_> = env
        .logs
        .iter()
        .filter(|(_, l)| l.contains("too many recursive routing table lookups"))
        .collect();
    assert_eq!(errs.len(), 1, "{:?}", env.logs);
    assert_eq!(errs[0].0, level::ERR);
    assert!(errs[0].1.contains("deeper than 100"));
}

#[test]
fn runaway_programs_are_cut_off() {
    let src = "route{ route(1); } route[1]{ route(1); route(1); }";
    let (_, env, o) = run(src, "INVITE", "sip:a@b");
    assert_eq!(o, Outcome::Done(-1));
    assert!(env.log_text().contains("cut off"), "{:?}", env.logs.last());
}

#[test]
fn drop_ends_everything() {
    let (c, _, o) = run(
        "route{ route(1); setflag(2); } route[1]{ setflag(1); drop; }",
        "INVITE",
        "sip:a@b",
    );
    assert_eq!(o, Outcome::Dropped);
    assert_eq!(flags(&c), [1]);
}

#[test]
fn flags_set_reset_test() {
    let src = "route{ setflag(0); setflag(31); setflag(5); resetflag(5);
        if (isflagset(0) && !isflagset(5) && isflagset(31)) { setflag(7); }; }";
    let (c, _, _) = run(src, "INVITE", "sip:a@b");
    assert_eq!(flags(&c), [0, 7, 31]);
    assert_eq!(c.flags(), 1 | 1 << 7 | 1 << 31);
}

#[test]
fn if_else_and_boolean_operators() {
    let src = "route{
        if (method==\"INVITE\" and not uri=~\"^sip:x\") { setflag(1); } else { setflag(2); };
        if (method==\"BYE\" || method==\"ACK\") { setflag(3); } else if (method==\"INVITE\") { setflag(4); };
        if (!(method==\"INVITE\") | src_port==5060) { setflag(5); };
    }";
    let (c, _, _) = run(src, "INVITE", "sip:a@b");
    assert_eq!(flags(&c), [1, 4, 5]);
    let (c, _, _) = run(src, "ACK", "sip:x@b");
    assert_eq!(flags(&c), [2, 3, 5]);
}

#[test]
fn regex_match_is_case_insensitive() {
    // Admin Guide Example 2-6: "FOO.BAR" and "FoO.bAr" match.
    let src =
        "route{ if (uri=~\"@foo\\.bar\") { setflag(1); }; if (method=~\"^inv\") { setflag(2); };
        if (uri==\"SIP:A@FOO.BAR\") { setflag(3); }; if (method==\"invite\") { setflag(4); }; }";
    for uri in ["sip:a@FOO.BAR", "sip:a@FoO.bAr"] {
        let (c, _, _) = run(src, "INVITE", uri);
        assert_eq!(flags(&c), [1, 2, 3, 4], "{uri}");
    }
    let (c, _, _) = run(src, "INVITE", "sip:a@foo-bar");
    assert_eq!(flags(&c), [2, 4]);
}

#[test]
fn uri_operand_is_the_current_uri() {
    let src = "route{ rewritehost(\"other.net\"); if (uri=~\"other\\.net\") { setflag(1); };
        revert_uri(); if (uri=~\"other\\.net\") { setflag(2); }; }";
    let (c, _, _) = run(src, "INVITE", "sip:a@b.com");
    assert_eq!(flags(&c), [1]);
}

#[test]
fn ip_networks_addresses_ports_proto_af_len() {
    let src = "route{
        if (src_ip==10.0.0.0/8) { setflag(1); };
        if (src_ip==192.168.0.0/16) { setflag(2); };
        if (src_ip==192.168.1.20) { setflag(3); };
        if (dst_ip==10.0.0.1) { setflag(4); };
        if (src_ip==\"192.168.1.20\") { setflag(5); };
        if (src_port==5060) { setflag(6); };
        if (dst_port==5070) { setflag(7); };
        if (proto==udp) { setflag(8); };
        if (proto==tcp) { setflag(9); };
        if (af==inet) { setflag(10); };
        if (af==inet6) { setflag(11); };
        if (msg:len > 100) { setflag(12); };
        if (msg:len >= max_len) { setflag(13); };
        if (src_ip=~\"^192\\.168\\.\") { setflag(14); };
        if (src_ip!=192.168.0.0/16) { setflag(15); };
    }";
    let (c, _, _) = run(src, "INVITE", "sip:a@b");
    assert_eq!(flags(&c), [2, 3, 4, 5, 6, 8, 10, 12, 14]);
    let p = program(src);
    let mut env = MockEnv::new();
    let mut c = Ctx::new(
        request("INVITE", "sip:a@b"),
        addr("[2001:db8::7]:5070"),
        addr("[2001:db8::1]:5070"),
        Proto::Tcp,
    );
    exec(&p, &mut c, &mut env);
    assert_eq!(flags(&c), [7, 9, 11, 12, 15]);
    let mut c = ctx_from(request("INVITE", "sip:a@b"), "10.200.3.4:5060");
    exec(&p, &mut c, &mut env);
    assert_eq!(flags(&c), [1, 4, 6, 8, 10, 12, 15]);
}

#[test]
fn myself_matches_listen_addresses_and_aliases() {
    let src = "alias=\"foo.bar\"\nalias=\"sales.foo.bar:5070\"\nlisten=udp:192.0.2.5:5080\n
        route{ if (uri==myself) { setflag(1); } else { setflag(2); }; if (src_ip==myself) { setflag(3); }; }";
    let cases = [
        ("sip:a@foo.bar", true),
        ("sip:a@FOO.BAR:5090", true),
        ("sip:a@sales.foo.bar:5070", true),
        ("sip:a@sales.foo.bar", false),
        ("sip:a@marketing.foo.bar", false),
        ("sip:a@10.0.0.1", true),
        ("sip:a@10.0.0.1:5070", false),
        ("sip:a@192.0.2.5:5080", true),
        ("sip:a@192.0.2.5", false),
        ("tel:+123", false),
    ];
    let p = program(src);
    // Both paths: options read per test, and the set the shard prepares once.
    let prepared = dataplane::script::Myself::from_options(&p.options);
    for myself in [None, Some(prepared)] {
        for (uri, mine) in cases {
            let mut env = MockEnv::new();
            env.myself = myself.clone();
            let (c, _, _) = run_env(src, "INVITE", uri, env);
            assert_eq!(c.is_flag_set(1), mine, "{uri} {myself:?}");
            assert!(!c.is_flag_set(3), "{uri}");
        }
        let mut env = MockEnv::new();
        env.myself = myself.clone();
        let mut c = ctx_from(request("INVITE", "sip:a@b"), "192.0.2.5:5060");
        exec(&p, &mut c, &mut env);
        assert!(c.is_flag_set(3));
    }
}

#[test]
fn myself_script() {
    let src = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scripts/myself.cfg"),
    )
    .unwrap();
    let env = MockEnv::new().fake("t_relay", ok);
    let (_, env, _) = run_env(&src, "INVITE", "sip:a@sales.foo.bar", env);
    assert_eq!(env.log_text(), "request for served domain");
    let env = MockEnv::new().fake("t_relay", ok);
    let (_, env, _) = run_env(&src, "INVITE", "sip:a@marketing.foo.bar", env);
    assert_eq!(env.log_text(), "request for outbound domain");
}

#[test]
fn src_ip_against_a_host_name_suspends_for_dns_unless_cached() {
    let src =
        "route{ if (src_ip==backup.foo.bar) { setflag(1); } else { setflag(2); }; setflag(3); }";
    let p = program(src);
    // Not cached: suspend with a DNS job, resume with the answer.
    let mut env = MockEnv::new();
    let mut c = ctx(request("INVITE", "sip:a@b"));
    let o = exec(&p, &mut c, &mut env);
    assert_eq!(
        o,
        Outcome::Suspended(Job::Dns {
            name: "backup.foo.bar".into(),
            query: DnsQuery::Addrs
        })
    );
    let ip: IpAddr = "192.168.1.20".parse().unwrap();
    let o = resume(&p, &mut c, &mut env, JobResult::Addrs(vec![ip]));
    assert_eq!(o, Outcome::Done(1));
    assert_eq!(flags(&c), [1, 3]);
    // A failed lookup is "not equal".
    let mut c = ctx(request("INVITE", "sip:a@b"));
    exec(&p, &mut c, &mut env);
    resume(&p, &mut c, &mut env, JobResult::Failed("NXDOMAIN".into()));
    assert_eq!(flags(&c), [2, 3]);
    // Cached: no suspension.
    env.dns.insert("backup.foo.bar".into(), vec![ip]);
    let mut c = ctx(request("INVITE", "sip:a@b"));
    assert_eq!(exec(&p, &mut c, &mut env), Outcome::Done(1));
    assert_eq!(flags(&c), [1, 3]);
}

#[test]
fn src_ip_against_a_quoted_name_uses_reverse_dns() {
    let src = "route{ if (src_ip==\"pc33.Atlanta.com\") { setflag(1); }; setflag(2); }";
    let p = program(src);
    let mut env = MockEnv::new();
    let mut c = ctx(request("INVITE", "sip:a@b"));
    let ip: IpAddr = "192.168.1.20".parse().unwrap();
    assert_eq!(
        exec(&p, &mut c, &mut env),
        Outcome::Suspended(Job::Dns {
            name: "192.168.1.20".into(),
            query: DnsQuery::Reverse(ip)
        })
    );
    let names = vec!["host.example".to_string(), "PC33.atlanta.com".to_string()];
    assert_eq!(
        resume(&p, &mut c, &mut env, JobResult::Names(names)),
        Outcome::Done(1)
    );
    assert_eq!(flags(&c), [1, 2]);
}

fn suspending(ctx: &mut Ctx, _: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let name = match args.first() {
        Some(Arg::Str(s)) => s.clone(),
        _ => "?".into(),
    };
    ctx.set_flag(20);
    ActionResult::Suspend(Job::Db {
        url: String::new(),
        table: name,
        keys: vec![],
        columns: vec![],
    })
}

fn suspending_then(ctx: &mut Ctx, _: &mut dyn Env, _: &[Arg]) -> ActionResult {
    ctx.suspend_with(
        Job::Dns {
            name: "x".into(),
            query: DnsQuery::Srv,
        },
        |ctx, _, _, r| {
            ctx.set_flag(21);
            match r {
                JobResult::Addrs(a) if a.len() == 2 => ActionResult::Ret(7),
                _ => ActionResult::Ret(-1),
            }
        },
    )
}

#[test]
fn suspension_resumes_after_the_instruction_with_the_result_in_ret() {
    let src =
        "loadmodule \"modules/usrloc/usrloc.so\"\nloadmodule \"modules/registrar/registrar.so\"\n
        route{ setflag(1); route(1); setflag(9); }
        route[1]{ if (lookup(\"location\")) { setflag(2); } else { setflag(3); }; setflag(4); }";
    let p = program(src);
    let mut env = MockEnv::new().fake("lookup", suspending);
    let mut c = ctx(request("INVITE", "sip:a@b"));
    let o = exec(&p, &mut c, &mut env);
    assert_eq!(
        o,
        Outcome::Suspended(Job::Db {
            url: String::new(),
            table: "location".into(),
            keys: vec![],
            columns: vec![]
        })
    );
    assert!(c.is_suspended());
    assert_eq!(flags(&c), [1, 20]);
    let o = resume(&p, &mut c, &mut env, JobResult::Rows(vec![]));
    assert_eq!(o, Outcome::Done(1));
    assert_eq!(
        flags(&c),
        [1, 3, 4, 9, 20],
        "empty rows: -1, the else branch"
    );
    assert!(!c.is_suspended());

    // With a resume function: its value becomes ret.
    let mut env = MockEnv::new().fake("lookup", suspending_then);
    let mut c = ctx(request("INVITE", "sip:a@b"));
    assert!(matches!(
        exec(&p, &mut c, &mut env),
        Outcome::Suspended(Job::Dns { .. })
    ));
    let ips = vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
    assert_eq!(
        resume(&p, &mut c, &mut env, JobResult::Addrs(ips)),
        Outcome::Done(1)
    );
    assert_eq!(flags(&c), [1, 2, 4, 9, 21]);
}

#[test]
fn resume_without_suspension_is_an_error_not_a_panic() {
    let p = program("route{ setflag(1); }");
    let mut env = MockEnv::new();
    let mut c = ctx(request("INVITE", "sip:a@b"));
    assert_eq!(
        resume(&p, &mut c, &mut env, JobResult::Addrs(vec![])),
        Outcome::Done(-1)
    );
    assert!(env.log_text().contains("not waiting"));
}

#[test]
fn append_branch_and_its_limit() {
    let src = "route{ append_branch(); append_branch(\"sip:b@foo.bar\"); rewriteuser(\"c\"); append_branch(); }";
    let (c, _, _) = run(src, "INVITE", "sip:a@foo.bar");
    assert_eq!(
        branches(&c),
        ["sip:a@foo.bar", "sip:b@foo.bar", "sip:c@foo.bar"]
    );
    // 12 branches with the request URI: the 12th append fails with SER's error.
    let mut src = String::from("route{ ");
    for i in 0..MAX_BRANCHES - 1 {
        src.push_str(&format!("append_branch(\"sip:{i}@x\"); "));
    }
    src.push_str("if (!append_branch(\"sip:last@x\")) { setflag(1); }; }");
    let (c, env, _) = run(&src, "INVITE", "sip:a@foo.bar");
    assert_eq!(c.dset().len(), 11);
    assert!(c.is_flag_set(1));
    assert!(
        env.log_text()
            .contains("ERROR: append_branch: max nr of branches exceeded (too many branches)"),
        "{:?}",
        env.logs
    );
    // A smaller configured limit: 2 branches = the request URI + 1.
    let p = program_dbg(
        "route{ append_branch(\"sip:1@x\"); if (!append_branch(\"sip:2@x\")) { setflag(1); }; }",
    );
    let mut env = MockEnv::new();
    let mut c = ctx(request("INVITE", "sip:a@b")).with_max_branches(2);
    exec(&p, &mut c, &mut env);
    assert!(c.is_flag_set(1));
}

#[test]
fn append_branch_rejects_a_too_long_uri() {
    let long = format!("sip:{}@x", "a".repeat(1100));
    let (c, env, _) = run(
        &format!("route{{ if (!append_branch(\"{long}\")) {{ setflag(1); }}; }}"),
        "INVITE",
        "sip:a@b",
    );
    assert!(c.is_flag_set(1));
    assert!(c.dset().is_empty());
    assert!(env.log_text().contains("too long uri"));
}

#[test]
fn len_gt() {
    let src = "route{ if (len_gt(100)) { setflag(1); }; if (len_gt(max_len)) { setflag(2); }; if (len_gt(100000)) { setflag(3); }; }";
    let (c, _, _) = run(src, "INVITE", "sip:a@b");
    assert_eq!(flags(&c), [1]);
    // SER compares with >=: a message of exactly n bytes counts as longer.
    let n = request_bytes("INVITE", "sip:a@b").len();
    for (arg, want) in [(n - 1, true), (n, true), (n + 1, false)] {
        let (c, _, _) = run(
            &format!("route{{ if (len_gt({arg})) {{ setflag(1); }}; }}"),
            "INVITE",
            "sip:a@b",
        );
        assert_eq!(c.is_flag_set(1), want, "len_gt({arg}) on {n} bytes");
    }
}

#[test]
fn route_call_value_is_sers() {
    // break in the callee: the call is true; a negative last value: false; positive: 1.
    let src = "loadmodule \"modules/tm/tm.so\"\n
        route{ if (route(1)) { setflag(1); }; if (!route(2)) { setflag(2); }; if (route(3)) { setflag(3); }; }
        route[1]{ isflagset(30); break; }
        route[2]{ isflagset(30); }
        route[3]{ t_newtran(); }";
    let env = MockEnv::new().fake("t_newtran", |_, _, _| ActionResult::Ret(7));
    let (c, _, o) = run_env(src, "INVITE", "sip:a@b", env);
    assert_eq!(flags(&c), [1, 2, 3]);
    assert_eq!(o, Outcome::Done(1));
}

#[test]
fn log_levels_follow_the_debug_threshold() {
    let src =
        "debug=3\nroute{ log(\"dbg\"); log(1, \"warn\"); log(3, \"info\"); log(-1, \"err\"); }";
    let p = program(src);
    let mut env = MockEnv::new();
    let mut c = ctx(request("INVITE", "sip:a@b"));
    exec(&p, &mut c, &mut env);
    assert_eq!(
        env.logs,
        [
            (1, "warn".to_string()),
            (3, "info".to_string()),
            (-1, "err".to_string())
        ]
    );
}

#[test]
fn forward_variants_reach_the_env() {
    let src = "route{ forward(10.1.2.3, 5070); forward_tcp(\"gw.example.com\"); forward_udp(uri:host, uri:port);
        send(192.0.2.9); forward(uri:host); }";
    let (_, env, o) = run(src, "INVITE", "sip:bob@[2001:db8::9]:5090;transport=tcp");
    assert_eq!(o, Outcome::Done(1));
    let uri = "sip:bob@[2001:db8::9]:5090;transport=tcp".to_string();
    assert_eq!(
        env.sent,
        [
            Sent::Forward {
                host: "10.1.2.3".into(),
                port: Some(5070),
                proto: None,
                uri: uri.clone()
            },
            Sent::Forward {
                host: "gw.example.com".into(),
                port: None,
                proto: Some(Proto::Tcp),
                uri: uri.clone()
            },
            Sent::Forward {
                host: "2001:db8::9".into(),
                port: Some(5090),
                proto: Some(Proto::Udp),
                uri: uri.clone()
            },
            Sent::Send {
                host: "192.0.2.9".into(),
                port: None,
                proto: None
            },
            Sent::Forward {
                host: "2001:db8::9".into(),
                port: None,
                proto: None,
                uri
            },
        ]
    );
    // A failing forward is false.
    let mut env = MockEnv::new();
    env.forward_ret = -1;
    let (c, _, _) = run_env(
        "route{ if (!forward(10.0.0.9)) { setflag(1); }; }",
        "INVITE",
        "sip:a@b",
        env,
    );
    assert!(c.is_flag_set(1));
}

#[test]
fn every_declared_function_is_implemented() {
    // SER 0.8.11's modules are all built now: a declaration without an implementation would be
    // a function that only logs "not implemented in this build" and fails.
    let missing: Vec<(&str, &str)> = dataplane::modules::ALL
        .iter()
        .flat_map(|m| m.functions.iter().map(move |f| (m, f)))
        .filter(|(_, f)| f.imp.is_none())
        .map(|(m, f)| (m.name, f.name))
        .collect();
    assert!(missing.is_empty(), "{missing:?}");
    let p =
        program(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ser.cfg")).unwrap());
    assert!(dataplane::script::unimplemented_calls(&p).is_empty());
}
