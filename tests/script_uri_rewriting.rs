//! URI rewriting core actions against `tests/data/scripts/uri-rewriting-expected.tsv` (every
//! row), the alias script, rewrite-and-forward (`forward(uri:host, uri:port)`) and exec-dset
//! (exec_dset, emulated by a fake that suspends on an exec job and resumes with the command's
//! output). The Admin Guide's Table 2-2 and Examples 2-8, 2-10 and 6-2 get the same checks when a
//! reference copy of its scripts is beside the repository.
#![allow(clippy::unwrap_used)]

#[path = "support/seed.rs"]
mod seed;
#[macro_use]
#[path = "support/skip.rs"]
mod skip;
#[path = "support/script.rs"]
mod support;

use std::path::Path;

use bytes::Bytes;
use controlplane::cfg::compile_file;
use dataplane::offload::{Job, JobResult};
use dataplane::script::env::{ActionResult, Env};
use dataplane::script::ir::Arg;
use dataplane::script::{exec, resume, Ctx, Outcome};
use support::*;

/// Rows of the TSV: (case, input_uri, actions, expected).
fn rows(tsv: &Path) -> Vec<(String, String, String, String)> {
    let text = std::fs::read_to_string(tsv).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[0].to_string(),
                f[1].to_string(),
                f[2].to_string(),
                f[3].to_string(),
            )
        })
        .collect()
}

/// exec_dset stand-in: suspends with the exec job; the resume function parses the output as SER
/// does (first line = new request URI, further lines = more branches).
fn fake_exec_dset(ctx: &mut Ctx, _: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let Some(Arg::Str(cmd)) = args.first() else {
        return ActionResult::Ret(-1);
    };
    ctx.suspend_with(
        Job::Exec {
            command: cmd.clone(),
            env: Vec::new(),
            stdin: None,
            time_to_kill: None,
        },
        exec_dset_done,
    )
}

fn exec_dset_done(ctx: &mut Ctx, _: &mut dyn Env, _args: &[Arg], r: JobResult) -> ActionResult {
    let JobResult::Exec { status: 0, stdout } = r else {
        return ActionResult::Ret(-1);
    };
    let mut first = true;
    for line in stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if first {
            ctx.set_uri(line);
            first = false;
        } else {
            ctx.append_branch(line);
        }
    }
    ActionResult::from_bool(!first)
}

fn run_rows_case(case: &str, input: &str, actions: &str) -> (Ctx, MockEnv, Outcome) {
    let uri = if input == "(any)" {
        "sip:nobody@example.com"
    } else {
        input
    };
    let mut env = MockEnv::new().fake("exec_dset", fake_exec_dset);
    let mut src = String::new();
    if actions.contains("exec_dset") {
        src.push_str("loadmodule \"modules/exec/exec.so\"\n");
    }
    if actions.contains("sl_send_reply") {
        src.push_str("loadmodule \"modules/sl/sl.so\"\n");
        env = env.fake("sl_send_reply", ok);
    }
    let sep = if actions.trim_end().ends_with(';') {
        ""
    } else {
        ";"
    };
    src.push_str(&format!("route{{ {actions}{sep} }}\n"));
    let p = program(&src);
    let mut c = ctx(request("INVITE", uri));
    let mut out = exec(&p, &mut c, &mut env);
    if let Outcome::Suspended(Job::Exec { command, .. }) = &out {
        assert_eq!(command, "echo sip:2234@foo.bar; echo > /dev/null", "{case}");
        // The command prints one URI (the second echo goes to /dev/null).
        out = resume(
            &p,
            &mut c,
            &mut env,
            JobResult::Exec {
                status: 0,
                stdout: Bytes::from_static(b"sip:2234@foo.bar\n"),
            },
        );
    }
    (c, env, out)
}

#[test]
fn every_row_of_the_expected_table() {
    expected_table(&seed::script("uri-rewriting-expected.tsv"));
}

/// The Admin Guide's own table and examples, when a reference copy is beside the repository.
#[test]
fn admin_guide_examples_rewrite_as_documented() {
    let Some(dir) = seed::admin_guide_dir() else {
        skip!(unavailable: seed::NO_ADMIN_GUIDE, "no Admin Guide scripts to check");
    };
    let f = dir.join("fragments");
    expected_table(&f.join("uri-rewriting-expected.tsv"));
    table_reverts(&f.join("tab2-2-uri-rewriting.cfg"));
    alias_script(&f.join("ex6-2-uri-action-aliases.cfg"));
    rewrite_and_forward(&f.join("ex2-08-rewriting-uris.cfg"));
    exec_dset_script(&f.join("ex2-10-uri-rewriting-exercise.cfg"));
}

fn expected_table(tsv: &Path) {
    let rows = rows(tsv);
    assert_eq!(rows.len(), 10);
    for (case, input, actions, expected) in rows {
        let (c, env, out) = run_rows_case(&case, &input, &actions);
        assert!(matches!(out, Outcome::Done(r) if r > 0), "{case}: {out:?}");
        let (uri, branch) = match expected.split_once(" + branch ") {
            Some((u, b)) => (u.to_string(), Some(b.to_string())),
            None => (expected.clone(), None),
        };
        assert_eq!(uri_string(&c), uri, "{case}");
        match branch {
            Some(b) => assert_eq!(branches(&c), vec![b], "{case}"),
            None => assert!(c.dset().is_empty(), "{case}"),
        }
        assert!(env.logs.is_empty(), "{case}: {:?}", env.logs);
    }
}

#[test]
fn table_script_reverts_between_actions() {
    table_reverts(&seed::script("uri-rewriting.cfg"));
}

fn table_reverts(f: &Path) {
    let p = compile_file(f).unwrap().program;
    let mut env = MockEnv::new();
    let mut c = ctx(request("INVITE", "sip:12345@foo.bar:6060"));
    assert_eq!(exec(&p, &mut c, &mut env), Outcome::Done(1));
    // Everything was reverted except the last row (strip(2)).
    assert_eq!(uri_string(&c), "sip:345@foo.bar:6060");
}

#[test]
fn every_alias_rewrites_its_part() {
    let cases = [
        (
            "rewritehost",
            "\"192.168.0.10\"",
            "sip:12345@192.168.0.10:6060",
        ),
        ("sethost", "\"192.168.0.10\"", "sip:12345@192.168.0.10:6060"),
        ("seth", "\"192.168.0.10\"", "sip:12345@192.168.0.10:6060"),
        (
            "rewritehostport",
            "\"192.168.0.10:3040\"",
            "sip:12345@192.168.0.10:3040",
        ),
        (
            "sethostport",
            "\"192.168.0.10:3040\"",
            "sip:12345@192.168.0.10:3040",
        ),
        (
            "sethp",
            "\"192.168.0.10:3040\"",
            "sip:12345@192.168.0.10:3040",
        ),
        ("rewriteuser", "\"alice\"", "sip:alice@foo.bar:6060"),
        ("setuser", "\"alice\"", "sip:alice@foo.bar:6060"),
        ("setu", "\"alice\"", "sip:alice@foo.bar:6060"),
        (
            "rewriteuserpass",
            "\"alice:pw\"",
            "sip:alice:pw@foo.bar:6060",
        ),
        ("setuserpass", "\"alice:pw\"", "sip:alice:pw@foo.bar:6060"),
        ("setup", "\"alice:pw\"", "sip:alice:pw@foo.bar:6060"),
        ("rewriteport", "\"1234\"", "sip:12345@foo.bar:1234"),
        ("setport", "\"1234\"", "sip:12345@foo.bar:1234"),
        ("setp", "\"1234\"", "sip:12345@foo.bar:1234"),
        ("rewriteuri", "\"sip:alice@foo.bar\"", "sip:alice@foo.bar"),
        ("seturi", "\"sip:alice@foo.bar\"", "sip:alice@foo.bar"),
        ("prefix", "\"9\"", "sip:912345@foo.bar:6060"),
        ("strip", "2", "sip:345@foo.bar:6060"),
    ];
    for (name, arg, expected) in cases {
        let p = program(&format!("route{{ {name}({arg}); }}"));
        let mut env = MockEnv::new();
        let mut c = ctx(request("INVITE", "sip:12345@foo.bar:6060"));
        exec(&p, &mut c, &mut env);
        assert_eq!(uri_string(&c), expected, "{name}");
        // revert_uri goes back to the received URI.
        let p = program(&format!("route{{ {name}({arg}); revert_uri(); }}"));
        let mut c = ctx(request("INVITE", "sip:12345@foo.bar:6060"));
        exec(&p, &mut c, &mut env);
        assert_eq!(uri_string(&c), "sip:12345@foo.bar:6060", "{name}");
        assert!(!c.uri_rewritten());
    }
}

#[test]
fn alias_script_runs_to_its_branch() {
    alias_script(&seed::script("uri-action-aliases.cfg"));
}

fn alias_script(f: &Path) {
    let p = compile_file(f).unwrap().program;
    let mut env = MockEnv::new();
    let mut c = ctx(request("INVITE", "sip:12345@foo.bar:6060"));
    assert_eq!(exec(&p, &mut c, &mut env), Outcome::Done(1));
    assert_eq!(uri_string(&c), "sip:12345@foo.bar:6060");
    assert_eq!(branches(&c), ["sip:b@foo.bar"]);
}

#[test]
fn rewriting_keeps_parameters_headers_and_scheme() {
    let p = program("route{ rewritehost(\"example.net\"); prefix(\"00\"); strip(1); }");
    let mut env = MockEnv::new();
    let mut c = ctx(request(
        "INVITE",
        "SIPS:Bob:secret@[2001:db8::1]:05060;transport=tcp;lr?Subject=x",
    ));
    exec(&p, &mut c, &mut env);
    assert_eq!(
        uri_string(&c),
        "SIPS:0Bob:secret@example.net:05060;transport=tcp;lr?Subject=x"
    );
}

#[test]
fn rewriting_a_non_sip_uri_fails_and_keeps_it() {
    let p = program("route{ if (!rewriteuser(\"x\")) { setflag(1); }; }");
    let mut env = MockEnv::new();
    let mut c = ctx(request("INVITE", "tel:+1-201-555-0123"));
    exec(&p, &mut c, &mut env);
    assert!(c.is_flag_set(1));
    assert_eq!(uri_string(&c), "tel:+1-201-555-0123");
    assert!(
        env.log_text().contains("rewriteuser: not a SIP URI"),
        "{:?}",
        env.logs
    );
}

#[test]
fn strip_longer_than_the_user_deletes_it_with_a_warning() {
    let mut p = program("route{ strip(10); }");
    p.options.debug = 3;
    let mut env = MockEnv::new();
    let mut c = ctx(request("INVITE", "sip:123@foo.bar"));
    exec(&p, &mut c, &mut env);
    assert_eq!(uri_string(&c), "sip:foo.bar");
    assert!(env.log_text().contains("too long strip"));
}

#[test]
fn rewrite_and_forward_goes_to_the_rewritten_uri() {
    rewrite_and_forward(&seed::script("rewrite-and-forward.cfg"));
}

fn rewrite_and_forward(f: &Path) {
    let p = compile_file(f).unwrap().program;
    let mut env = MockEnv::new();
    let mut c = ctx(request("INVITE", "sip:DAN@FOO.BAR"));
    assert_eq!(exec(&p, &mut c, &mut env), Outcome::Done(1));
    assert_eq!(
        env.sent,
        [Sent::Forward {
            host: "somewherelse.com".into(),
            // The URI has no port: none is given, and RFC 3263 (SRV) decides.
            port: None,
            proto: None,
            uri: "sip:bla@somewherelse.com".into()
        }]
    );
    // Not matching: nothing sent, URI untouched.
    let mut env = MockEnv::new();
    let mut c = ctx(request("INVITE", "sip:bob@foo.bar"));
    exec(&p, &mut c, &mut env);
    assert!(env.sent.is_empty());
    assert_eq!(uri_string(&c), "sip:bob@foo.bar");
}

#[test]
fn exec_dset_script_with_exec_emulated() {
    exec_dset_script(&seed::script("exec-dset.cfg"));
}

fn exec_dset_script(f: &Path) {
    let p = compile_file(f).unwrap().program;
    let mut env = MockEnv::new().fake("exec_dset", fake_exec_dset);
    let mut c = ctx(request("INVITE", "sip:someone@iptel.org"));
    let out = exec(&p, &mut c, &mut env);
    assert!(
        matches!(out, Outcome::Suspended(Job::Exec { .. })),
        "{out:?}"
    );
    assert!(c.is_suspended());
    assert!(env.sent.is_empty(), "nothing runs while suspended");
    let out = resume(
        &p,
        &mut c,
        &mut env,
        JobResult::Exec {
            status: 0,
            stdout: Bytes::from_static(b"sip:2234@foo.bar\n"),
        },
    );
    assert_eq!(out, Outcome::Done(1));
    assert_eq!(uri_string(&c), "sip:134@foo.bar");
    assert_eq!(
        env.sent,
        [Sent::Forward {
            host: "foo.bar".into(),
            // The URI has no port: none is given, and RFC 3263 (SRV) decides.
            port: None,
            proto: None,
            uri: "sip:134@foo.bar".into()
        }]
    );
}

#[test]
fn commit_uri_records_the_rewrite_on_the_message() {
    let p = program("route{ rewriteuser(\"carol\"); }");
    let mut env = MockEnv::new();
    let mut c = ctx(request("INVITE", "sip:bob@biloxi.com"));
    exec(&p, &mut c, &mut env);
    c.commit_uri().unwrap();
    let out = c.msg.to_bytes();
    assert!(out.starts_with(b"INVITE sip:carol@biloxi.com SIP/2.0\r\n"));
    assert_eq!(c.original_uri(), b"sip:bob@biloxi.com");
}
