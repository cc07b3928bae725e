//! Every script of the repository (the operator examples, the test scripts, the shipped ser.cfg)
//! compiles without errors, and the lowered IR says what the script says. The Admin Guide's own
//! scripts are compiled too when a reference copy is beside the repository.
#![allow(clippy::unwrap_used)]

#[path = "support/seed.rs"]
mod seed;
#[macro_use]
#[path = "support/skip.rs"]
mod skip;

use std::path::Path;

use std::sync::Arc;

use controlplane::cfg::{compile_file, compile_str, Compiled};
use dataplane::modules;
use dataplane::script::ir::{
    Arg, CmpOp, CoreAction, HostArg, Insn, IpNet, Operand, ParamValue, PortArg, Program, RouteKind,
    RouteLabel, Value,
};

fn compile(p: &Path) -> Compiled {
    compile_file(p).unwrap_or_else(|d| panic!("{}", d.render()))
}

fn compile_text(name: &str, src: &str) -> Compiled {
    compile_str(name, src).unwrap_or_else(|d| panic!("{}", d.render()))
}

fn param(p: &Program, module: &str, name: &str) -> ParamValue {
    let (id, decl) = modules::by_name(module).unwrap();
    let (idx, _) = decl.param(name).unwrap();
    p.module(id).unwrap().params[idx].clone()
}

fn main_code(p: &Program) -> &[Insn] {
    &p.route(p.main_route.unwrap()).code
}

fn calls<'p>(code: &'p [Insn], module: &str, function: &str) -> Vec<&'p [Arg]> {
    let (mid, decl) = modules::by_name(module).unwrap();
    let (fid, _) = decl.function(function).unwrap();
    code.iter()
        .filter_map(|i| match i {
            Insn::Call(c) if c.module == mid && c.function == fid => Some(&c.args[..]),
            _ => None,
        })
        .collect()
}

fn all_compile(files: &[std::path::PathBuf]) {
    let mut failures = Vec::new();
    for f in files {
        match compile_file(f) {
            Ok(c) => assert!(
                c.program.main_route.is_some(),
                "{}: no main route",
                f.display()
            ),
            Err(d) => failures.push(d.render()),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_script_of_the_repository_compiles() {
    let files = seed::own_scripts();
    // Five examples, fifteen test scripts (acc.cfg, exec.cfg, exec_s5.cfg, exec_s5b.cfg,
    // vm-ser.cfg are the Admin Guide's; msilo.cfg is the msilo README's; jabber.cfg is
    // module_jabber's, sms.cfg module_sms's), ser.cfg.
    assert_eq!(files.len(), 21, "scripts found: {files:?}");
    all_compile(&files);
}

#[test]
fn every_admin_guide_script_compiles() {
    let Some(dir) = seed::admin_guide_dir() else {
        skip!(unavailable: seed::NO_ADMIN_GUIDE, "no Admin Guide scripts to compile");
    };
    let mut files = seed::cfg_files(&dir);
    files.extend(seed::cfg_files(&dir.join("fragments")));
    assert_eq!(files.len(), 16 + 35, "seed configs found");
    all_compile(&files);
}

#[test]
fn ser_cfg_lowers_to_the_expected_program() {
    let c = compile(&seed::example("registrar.cfg"));
    let p = &c.program;
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(!p.options.check_via && !p.options.dns && !p.options.rev_dns);
    assert_eq!(p.options.fifo.as_deref(), Some("/tmp/ser_fifo"));
    assert_eq!(p.options.port, 5060, "default kept");
    assert_eq!(p.options.children, 8, "default kept");
    let names: Vec<&str> = p.modules.iter().map(|m| modules::get(m.id).name).collect();
    assert_eq!(names, ["sl", "tm", "rr", "maxfwd", "usrloc", "registrar"]);
    assert_eq!(param(p, "usrloc", "db_mode"), ParamValue::Int(0));
    assert_eq!(param(p, "rr", "enable_full_lr"), ParamValue::Int(1));
    assert_eq!(param(p, "tm", "fr_timer"), ParamValue::Int(30), "default");
    let code = main_code(p);
    // First instruction: mf_process_maxfwd_header("10"), fixed up to the integer 10.
    let mf = calls(code, "maxfwd", "mf_process_maxfwd_header");
    assert_eq!(mf.len(), 1);
    assert!(matches!(mf[0], [Arg::Int(10)]));
    assert!(matches!(code[0], Insn::Call(_)));
    // `if (!mf...)` jumps over the then-branch when the call returns true.
    assert!(matches!(code[1], Insn::JumpIf { when: true, .. }));
    let replies = calls(code, "sl", "sl_send_reply");
    let codes: Vec<u16> = replies
        .iter()
        .map(|a| match a[0] {
            Arg::StatusCode(c) => c,
            _ => panic!(),
        })
        .collect();
    assert_eq!(codes, [483, 513, 404]);
    assert!(code.contains_core(&CoreAction::LenGt(dataplane::script::ir::BUF_SIZE)));
    assert!(code.iter().any(|i| matches!(i, Insn::Test(t) if t.operand == Operand::Uri && matches!(t.value, Value::Myself))));
    // Every jump target is inside the block (or its end).
    for r in &p.routes {
        for i in &r.code {
            if let Insn::JumpIf { to, .. } | Insn::Jump(to) = i {
                assert!(*to as usize <= r.code.len());
            }
        }
    }
}

trait CodeExt {
    fn contains_core(&self, a: &CoreAction) -> bool;
}
impl CodeExt for [Insn] {
    fn contains_core(&self, a: &CoreAction) -> bool {
        self.iter().any(|i| matches!(i, Insn::Core(x) if x == a))
    }
}

#[test]
fn onr_cfg_failure_routes_resolve() {
    let c = compile(&seed::example("serial-forking.cfg"));
    let p = &c.program;
    let f1 = p
        .find_route(RouteKind::Failure, &RouteLabel::Num(1))
        .unwrap();
    let f2 = p
        .find_route(RouteKind::Failure, &RouteLabel::Num(2))
        .unwrap();
    let arms = calls(main_code(p), "tm", "t_on_failure");
    assert!(matches!(arms[0], [Arg::Route(id)] if *id == f1));
    let arms = calls(&p.route(f1).code, "tm", "t_on_failure");
    assert!(matches!(arms[0], [Arg::Route(id)] if *id == f2));
    assert_eq!(param(p, "tm", "fr_inv_timer"), ParamValue::Int(15));
    assert_eq!(param(p, "tm", "fr_timer"), ParamValue::Int(10));
    assert!(p
        .route(f1)
        .code
        .contains_core(&CoreAction::AppendBranch(Some(
            "sip:nonsense@iptel.org".into()
        ))));
}

#[test]
fn route_calls_resolve_to_block_ids() {
    let c = compile_text(
        "route-call.cfg",
        "route{ if (method==\"INVITE\") route(1); break; }\nroute[1] { break; }\n",
    );
    let p = &c.program;
    let r1 = p
        .find_route(RouteKind::Request, &RouteLabel::Num(1))
        .unwrap();
    assert!(main_code(p)
        .iter()
        .any(|i| matches!(i, Insn::Route(id) if *id == r1)));
    let c = compile_text(
        "route-block.cfg",
        "route[0] {\n    route(2);\n}\n\nroute[2] {\n    forward(\"host.foo.bar\", 5060);\n}\n",
    );
    let p = &c.program;
    let r2 = p
        .find_route(RouteKind::Request, &RouteLabel::Num(2))
        .unwrap();
    assert!(matches!(main_code(p), [Insn::Route(id)] if *id == r2));
    assert!(matches!(
        &p.route(r2).code[..],
        [Insn::Core(CoreAction::Forward { host: HostArg::Name(h), port: PortArg::Num(5060), proto: None })] if h == "host.foo.bar"
    ));
}

#[test]
fn options_and_operands_are_typed() {
    let p = compile_text(
        "options.cfg",
        "fork=no\nlisten=192.168.2.16\nlog_stderror=yes\ndebug=3\nroute{ log(1, \"x\\n\"); }\n",
    )
    .program;
    assert_eq!(p.options.debug, 3);
    assert!(p.options.log_stderror);
    assert_eq!(p.options.listen[0].host, "192.168.2.16");
    let p = compile(&seed::script("myself.cfg")).program;
    assert_eq!(p.options.alias, ["foo.bar", "sales.foo.bar"]);
    let p = compile_text(
        "src-ip.cfg",
        "route{\n if (src_ip==192.168.2.15) { log(1, \"net\\n\"); };\n if (src_ip==\"192.168.2.15\") { log(1, \"string\\n\"); };\n}\n",
    )
    .program;
    let tests: Vec<_> = main_code(&p)
        .iter()
        .filter_map(|i| match i {
            Insn::Test(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(tests.len(), 2);
    assert!(matches!(
        tests[0].value,
        Value::Net(IpNet { prefix: 32, .. })
    ));
    assert!(matches!(&tests[1].value, Value::Str(s) if s == "192.168.2.15"));
    assert_eq!(tests[0].op, CmpOp::Eq);
    let p = compile_text(
        "domain-regex.cfg",
        "route{\n if (uri=~\"^sip:(.+@)?(192\\.168\\.0\\.10|(sip\\.)?foo\\.bar)([:;\\?].*)?$\") { log(1, \"ours\"); break; };\n}\n",
    )
    .program;
    let re = main_code(&p)
        .iter()
        .find_map(|i| match i {
            Insn::Test(t) => match &t.value {
                Value::Regex(r) => Some(r.clone()),
                _ => None,
            },
            _ => None,
        })
        .unwrap();
    assert!(re.is_match("sip:joe@FoO.bAr"), "case-insensitive as in SER");
    let p = compile_text(
        "modparam.cfg",
        "loadmodule \"modules/sl/sl.so\"\nloadmodule \"modules/mysql/mysql.so\"\nloadmodule \"modules/auth/auth.so\"\nloadmodule \"modules/auth_db/auth_db.so\"\nmodparam(\"auth_db\", \"db_url\",\"sql://ser:secret@dbhost/ser\")\nroute{ break; }\n",
    )
    .program;
    assert_eq!(
        param(&p, "auth_db", "db_url"),
        ParamValue::Str("sql://ser:secret@dbhost/ser".into())
    );
    let p = compile_text(
        "yes.cfg",
        "loadmodule \"/usr/lib/ser/modules/usrloc.so\"\nloadmodule \"/usr/lib/ser/modules/auth.so\"\nloadmodule \"/usr/lib/ser/modules/auth_db.so\"\nmodparam (\"usrloc\", \"db_mode\", 2)\nmodparam (\"auth_db\", \"calculate_ha1\", yes)\nroute{ break; }\n",
    )
    .program;
    assert_eq!(
        param(&p, "auth_db", "calculate_ha1"),
        ParamValue::Int(1),
        "yes = 1"
    );
    assert_eq!(param(&p, "usrloc", "db_mode"), ParamValue::Int(2));
}

#[test]
fn program_is_shareable() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    let p = Arc::new(compile(&seed::example("pstn-gateway.cfg")).program);
    send_sync(&p);
    let q = Arc::clone(&p);
    std::thread::spawn(move || assert!(q.main_route.is_some()))
        .join()
        .unwrap();
}

#[test]
fn all_errors_of_a_script_are_reported_with_warnings_apart() {
    let src = "loadmodule \"modules/sl/sl.so\"\n\
               modparam(\"sl\", \"nope\", 1)\n\
               route {\n\
               \tsl_send_reply(\"404\");\n\
               \tt_relay();\n\
               \tt_relay();\n\
               \troute(7);\n\
               \tbreak;\n\
               \tlog(\"never\");\n\
               }\n";
    let d = compile_str("multi.cfg", src).unwrap_err();
    let got: Vec<String> = d
        .errors
        .iter()
        .map(|e| format!("{}:{} {}", e.line, e.col, e.message))
        .collect();
    assert_eq!(
        got,
        [
            "2:16 module sl has no parameter 'nope'",
            "4:2 sl_send_reply takes 2 arguments, 1 given",
            "5:2 t_relay is exported by module tm, which is not loaded (first use)",
            "7:2 route(7) calls route[7], which is not defined",
        ]
    );
    assert_eq!(d.warnings.len(), 1);
    assert_eq!(d.warnings[0].message, "unreachable code after 'break'");
    assert_eq!(
        d.errors[2].hint.as_deref(),
        Some("add loadmodule \"tm.so\"")
    );
}
