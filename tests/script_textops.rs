//! Module textops, run from scripts: search, search_append, replace, replace_all, append_hf,
//! append_urihf, append_to_reply — checked on the message as written (edits applied).
#![allow(clippy::unwrap_used)]

#[path = "support/seed.rs"]
mod seed;
#[macro_use]
#[path = "support/skip.rs"]
mod skip;
#[path = "support/script.rs"]
mod support;

use controlplane::cfg::compile_file;
use dataplane::script::ir::RouteKind;
use dataplane::script::{exec, exec_route, Ctx, Outcome};
use support::*;

const TEXTOPS: &str = "loadmodule \"modules/textops/textops.so\"\n";

fn run(body: &str, msg: &str) -> (Ctx, String) {
    let p = program_dbg(&format!("{TEXTOPS}route{{ {body} }}"));
    let mut env = MockEnv::new();
    let mut c = ctx(request("INVITE", msg));
    exec(&p, &mut c, &mut env);
    let out = String::from_utf8(c.msg.to_bytes().to_vec()).unwrap();
    (c, out)
}

#[test]
fn search_is_true_false_and_case_insensitive() {
    let (c, _) = run(
        "if (search(\"^from: .*@ATLANTA\\.com\")) { setflag(1); };
         if (search(\"^X-None:\")) { setflag(2); };
         if (search(\"^(Contact|m): .*@(192\\.168\\.|10\\.|172\\.16)\")) { setflag(3); };",
        "sip:bob@biloxi.com",
    );
    assert!(c.is_flag_set(1));
    assert!(!c.is_flag_set(2));
    assert!(c.is_flag_set(3), "Example 2-4: private IP in Contact");
}

#[test]
fn append_hf_adds_lines_after_the_last_header() {
    let (_, out) = run(
        "append_hf(\"P-hint: USRLOC\\r\\n\"); append_hf(\"X-Two: 2\\r\\n\");",
        "sip:bob@biloxi.com",
    );
    assert!(
        out.ends_with("Content-Length: 0\r\nP-hint: USRLOC\r\nX-Two: 2\r\n\r\n"),
        "{out}"
    );
}

#[test]
fn replace_first_and_all() {
    // As SER 0.8.11: the start line is never rewritten; the first match after it is.
    let (_, out) = run("replace(\"biloxi\", \"example\");", "sip:bob@biloxi.com");
    assert!(
        out.starts_with("INVITE sip:bob@biloxi.com SIP/2.0\r\n"),
        "{out}"
    );
    assert!(out.contains("To: Bob <sip:bob@example.com>"), "{out}");
    let (_, out) = run(
        "replace_all(\"bob@\", \"robert@\"); search_append(\"invite\", \"-X\");",
        "sip:bob@biloxi.com",
    );
    assert!(
        out.starts_with("INVITE sip:bob@biloxi.com SIP/2.0\r\n"),
        "{out}"
    );
    assert!(out.contains("To: Bob <sip:robert@biloxi.com>"), "{out}");
    assert!(out.contains("CSeq: 314159 INVITE-X\r\n"), "{out}");
    let (c, out) = run(
        "if (replace_all(\"ATLANTA\", \"chicago\")) { setflag(1); }; if (!replace_all(\"nowhere\", \"x\")) { setflag(2); };",
        "sip:bob@biloxi.com",
    );
    assert!(c.is_flag_set(1) && c.is_flag_set(2));
    assert!(!out.contains("atlanta"), "{out}");
    assert!(out.contains("From: Alice <sip:alice@chicago.com>;tag=1928301774"));
    assert!(out.contains("Call-ID: a84b4c76e66710@pc33.chicago.com"));
}

#[test]
fn search_append_inserts_after_the_match() {
    let (_, out) = run(
        "search_append(\"^Max-Forwards: 70\", \"0\");",
        "sip:bob@biloxi.com",
    );
    assert!(out.contains("Max-Forwards: 700\r\n"), "{out}");
}

#[test]
fn append_urihf_uses_the_original_request_uri() {
    let (_, out) = run(
        "rewriteuri(\"sip:6000@192.168.10.10\"); append_urihf(\"CC-Diversion: \", \"\\r\\n\");",
        "sip:bob@biloxi.com",
    );
    assert!(
        out.ends_with("CC-Diversion: sip:bob@biloxi.com\r\n\r\n"),
        "{out}"
    );
}

#[test]
fn append_to_reply_collects_header_lines() {
    let (c, out) = run(
        "append_to_reply(\"Contact: <sip:x@y>\\r\\n\");",
        "sip:bob@biloxi.com",
    );
    assert_eq!(&c.reply_headers[..], b"Contact: <sip:x@y>\r\n");
    assert!(!out.contains("sip:x@y"), "the request is not changed");
}

#[test]
fn routing_history_labels() {
    routing_labels(&seed::script("routing-labels.cfg"));
}

/// The Admin Guide's Example 3-6 and ccdiversion.cfg, when a reference copy is beside the
/// repository.
#[test]
fn admin_guide_textops_examples() {
    let Some(dir) = seed::admin_guide_dir() else {
        skip!(unavailable: seed::NO_ADMIN_GUIDE, "no Admin Guide scripts to check");
    };
    routing_labels(&dir.join("fragments/ex3-06-routing-history-labels.cfg"));
    diversion(&dir.join("ccdiversion.cfg"));
}

fn routing_labels(f: &std::path::Path) {
    let p = compile_file(f).unwrap().program;
    // lookup and t_relay are not implemented in this build: fakes that succeed stand in.
    let mut env = MockEnv::new().fake("lookup", ok).fake("t_relay", ok);
    let mut c = ctx(request("INVITE", "sip:bob@domain.foo"));
    assert_eq!(exec(&p, &mut c, &mut env), Outcome::Done(1));
    assert!(c.msg.to_bytes().ends_with(b"P-hint: USRLOC\r\n\r\n"));
    let mut c = ctx(request("INVITE", "sip:bob@elsewhere.net"));
    exec(&p, &mut c, &mut env);
    assert!(c.msg.to_bytes().ends_with(b"P-hint: OUTBOUND\r\n\r\n"));
}

#[test]
fn voicemail_diversion_failure_route() {
    diversion(&seed::example("voicemail-diversion.cfg"));
}

fn diversion(f: &std::path::Path) {
    let p = compile_file(f).unwrap().program;
    let fr = p
        .routes
        .iter()
        .position(|r| r.kind == RouteKind::Failure)
        .unwrap();
    let mut env = MockEnv::new().fake("t_relay", ok);
    let mut c = ctx(request("INVITE", "sip:bob@biloxi.com"));
    let o = exec_route(
        &p,
        dataplane::script::ir::RouteId(fr as u32),
        &mut c,
        &mut env,
    );
    assert_eq!(o, Outcome::Done(1));
    assert_eq!(c.route_kind(), RouteKind::Failure);
    assert_eq!(branches(&c), ["sip:6000@192.168.10.10"]);
    assert!(c
        .msg
        .to_bytes()
        .ends_with(b"CC-Diversion: sip:bob@biloxi.com\r\n\r\n"));
}
