//! Every script of the repository (examples, test scripts, ser.cfg) — and the Admin Guide's 16
//! complete scripts and 35 fragments when a reference copy is beside the repository — runs
//! without panicking: its main route on an INVITE, a REGISTER, an OPTIONS and an old phone's
//! bare-LF REGISTER, and every other block directly — once as built (unimplemented functions
//! return -1), once with every module function succeeding, once with every one failing.
//! Suspensions are answered with a failure.
#![allow(clippy::unwrap_used)]

#[path = "support/seed.rs"]
mod seed;
#[macro_use]
#[path = "support/skip.rs"]
mod skip;
#[path = "support/script.rs"]
mod support;

use bytes::Bytes;
use controlplane::cfg::compile_file;
use dataplane::offload::JobResult;
use dataplane::script::env::ModuleFn;
use dataplane::script::ir::{Program, RouteId, RouteKind};
use dataplane::script::{exec, exec_route, resume, Ctx, Outcome};
use dataplane::wire::Message;
use support::*;

fn messages() -> Vec<Message> {
    let mut v = vec![
        request("INVITE", "sip:bob@10.0.0.1"),
        request("INVITE", "sip:+12125551212@gw.example.com;user=phone"),
        request("REGISTER", "sip:10.0.0.1"),
        request("OPTIONS", "sip:carol@chicago.com"),
        request("ACK", "sip:0049301234@iptel.org"),
    ];
    let reg = std::fs::read(seed::data_dir().join("messages/register-lf.sip")).unwrap();
    v.push(Message::parse(Bytes::from(reg)).unwrap());
    v
}

fn reply() -> Message {
    Message::parse(Bytes::from_static(
        b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    ))
    .unwrap()
}

/// Runs to completion, answering every job with a failure.
fn finish(p: &Program, c: &mut Ctx, env: &mut MockEnv, mut o: Outcome) -> Outcome {
    for _ in 0..16 {
        match o {
            Outcome::Suspended(_) => {
                o = resume(p, c, env, JobResult::Failed("test".into()));
            }
            done => return done,
        }
    }
    panic!("still suspended after 16 resumptions");
}

#[test]
fn every_script_of_the_repository_runs_on_every_message() {
    let files = seed::own_scripts();
    assert!(files.len() >= 13, "{files:?}");
    run_all(&files);
}

#[test]
fn every_admin_guide_script_runs_on_every_message() {
    let Some(dir) = seed::admin_guide_dir() else {
        skip!(unavailable: seed::NO_ADMIN_GUIDE, "no Admin Guide scripts to run");
    };
    let mut files = seed::cfg_files(&dir);
    files.extend(seed::cfg_files(&dir.join("fragments")));
    assert_eq!(files.len(), 51);
    run_all(&files);
}

fn run_all(files: &[std::path::PathBuf]) {
    let modes: [(&str, Option<ModuleFn>); 3] = [
        ("as built", None),
        ("all ok", Some(ok)),
        ("all fail", Some(fail)),
    ];
    let mut runs = 0;
    for f in files {
        let mut p = compile_file(f).unwrap().program;
        p.options.debug = 9;
        for (mode, fake) in modes {
            for m in messages() {
                let mut env = MockEnv::new();
                env.fake_all = fake;
                let mut c = ctx(m);
                let o = exec(&p, &mut c, &mut env);
                let o = finish(&p, &mut c, &mut env, o);
                assert!(!c.is_suspended(), "{} ({mode})", f.display());
                assert!(
                    !matches!(o, Outcome::Done(-1)) || !env.log_text().contains("cut off"),
                    "{} ({mode}) ran away",
                    f.display()
                );
                runs += 1;
            }
            for (i, block) in p.routes.iter().enumerate() {
                let m = if block.kind == RouteKind::OnReply {
                    reply()
                } else {
                    request("INVITE", "sip:bob@10.0.0.1")
                };
                let mut env = MockEnv::new();
                env.fake_all = fake;
                let mut c = ctx(m);
                let o = exec_route(&p, RouteId(i as u32), &mut c, &mut env);
                finish(&p, &mut c, &mut env, o);
                assert_eq!(c.route_kind(), block.kind);
                runs += 1;
            }
        }
    }
    assert!(runs > files.len() * 3 * 6);
}

#[test]
fn default_ser_cfg_as_built_and_with_modules() {
    let p = compile_file(&seed::example("registrar.cfg"))
        .unwrap()
        .program;
    // As built: mf_process_maxfwd_header is not implemented (-1), so the script answers 483 (also
    // not implemented) and breaks.
    let mut env = MockEnv::new();
    let mut c = ctx(request("INVITE", "sip:bob@10.0.0.1"));
    assert_eq!(exec(&p, &mut c, &mut env), Outcome::Done(-1));
    // Module functions succeeding except loose_route: a REGISTER for us (uri==myself) ends at save().
    let mut env = MockEnv::new().fake("loose_route", fail).fake("save", saved);
    env.fake_all = Some(ok);
    let mut c = ctx(request("REGISTER", "sip:10.0.0.1"));
    assert_eq!(exec(&p, &mut c, &mut env), Outcome::Done(1));
    assert!(c.is_flag_set(30));
    // An INVITE for elsewhere reaches t_relay, not save.
    let mut c = ctx(request("INVITE", "sip:bob@elsewhere.net"));
    assert_eq!(exec(&p, &mut c, &mut env), Outcome::Done(1));
    assert!(!c.is_flag_set(30));
}

fn saved(
    c: &mut Ctx,
    _: &mut dyn dataplane::script::Env,
    _: &[dataplane::script::ir::Arg],
) -> dataplane::script::ActionResult {
    c.set_flag(30);
    dataplane::script::ActionResult::Ret(1)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
    /// Whatever Request-URI a parsable request carries, the URI actions, `uri` tests and forwards
    /// of the test scripts never panic.
    #[test]
    fn uri_handling_never_panics(uri in "(sip|sips|tel|SIP|x):[a-zA-Z0-9@:;.?=\\[\\]%+_-]{0,40}") {
        static PROGRAMS: std::sync::OnceLock<Vec<Program>> = std::sync::OnceLock::new();
        let programs = PROGRAMS.get_or_init(|| {
            let mut v: Vec<Program> = [
                seed::script("uri-action-aliases.cfg"),
                seed::script("myself.cfg"),
                seed::script("rewrite-and-forward.cfg"),
                seed::script("numbering-plan.cfg"),
                seed::example("registrar.cfg"),
            ]
            .iter()
            .map(|f| compile_file(f).unwrap().program)
            .collect();
            v.push(program("route{ prefix(\"9\"); strip(3); rewritehostport(\"h:1\"); append_branch(); forward(uri:host, uri:port); send(uri:host); if (uri==myself) { drop; }; }"));
            v
        });
        let bytes = request_bytes("INVITE", &uri);
        let Ok(msg) = Message::parse(Bytes::from(bytes)) else { return Ok(()); };
        for p in programs {
            let mut env = MockEnv::new();
            env.fake_all = Some(ok);
            let mut c = ctx(msg.clone());
            let o = exec(p, &mut c, &mut env);
            finish(p, &mut c, &mut env, o);
        }
    }
}
