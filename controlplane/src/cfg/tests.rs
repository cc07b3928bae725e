//! Compiler tests across phases: semantics of the lowered jumps, checks, hints, warnings.

use dataplane::script::ir::{
    CmpOp, CoreAction, Insn, Operand, Program, Proto, RouteId, RouteKind, RouteLabel, Value,
};

use super::{compile_str, Compiled, Diagnostics};

fn ok(src: &str) -> Compiled {
    compile_str("t.cfg", src).unwrap_or_else(|d| panic!("{}", d.render()))
}

fn err(src: &str) -> Diagnostics {
    match compile_str("t.cfg", src) {
        Ok(_) => panic!("compiled: {src}"),
        Err(d) => d,
    }
}

fn first(src: &str) -> String {
    let d = err(src);
    let e = &d.errors[0];
    format!("{}:{} {}", e.line, e.col, e.message)
}

/// A toy interpreter for the jump structure: `isflagset(n)` reads `flags`, `log` records, `route`
/// calls, `break` returns. Enough to check that conditions are lowered with the right semantics.
fn run(p: &Program, id: RouteId, flags: u32, out: &mut Vec<String>) {
    let code = &p.route(id).code;
    let mut pc = 0usize;
    let mut ret = 1i32;
    while pc < code.len() {
        match &code[pc] {
            Insn::Core(CoreAction::IsFlagSet(n)) => {
                ret = if flags & (1 << n) != 0 { 1 } else { -1 }
            }
            Insn::Core(CoreAction::Log { message, .. }) => {
                out.push(message.clone());
                ret = 1
            }
            Insn::Core(_) | Insn::Call(_) | Insn::Test(_) => ret = 1,
            Insn::JumpIf { when, to } => {
                if (ret > 0) == *when {
                    pc = *to as usize;
                    continue;
                }
            }
            Insn::Jump(to) => {
                pc = *to as usize;
                continue;
            }
            Insn::Route(r) => run(p, *r, flags, out),
            Insn::Break | Insn::Drop => return,
        }
        pc += 1;
    }
}

fn eval(cond: &str, flags: u32) -> bool {
    let c = ok(&format!(
        "route {{ if ({cond}) {{ log(\"T\"); }} else {{ log(\"F\"); }}; }}"
    ));
    let mut out = Vec::new();
    run(
        &c.program,
        c.program.main_route.unwrap_or(RouteId(0)),
        flags,
        &mut out,
    );
    assert_eq!(out.len(), 1, "{cond}: {out:?}");
    out[0] == "T"
}

#[test]
fn conditions_short_circuit_with_c_precedence() {
    type F = fn(bool, bool, bool) -> bool;
    let cases: &[(&str, F)] = &[
        ("isflagset(1) || isflagset(2) && isflagset(3)", |a, b, c| {
            a || (b && c)
        }),
        ("isflagset(1) && isflagset(2) || isflagset(3)", |a, b, c| {
            (a && b) || c
        }),
        ("!isflagset(1) && isflagset(2)", |a, b, _| !a && b),
        (
            "!(isflagset(1) && isflagset(2)) || isflagset(3)",
            |a, b, c| !(a && b) || c,
        ),
        (
            "not isflagset(1) or isflagset(2) and not isflagset(3)",
            |a, b, c| !a || (b && !c),
        ),
        ("(isflagset(1) | isflagset(2)) & isflagset(3)", |a, b, c| {
            (a || b) && c
        }),
        (
            "!!isflagset(1) && !(isflagset(2) || !isflagset(3))",
            |a, b, c| a && !b && c, // = a && !(b || !c)
        ),
        ("isflagset(1)", |a, _, _| a),
    ];
    for (src, f) in cases {
        for flags in 0..8u32 {
            let (a, b, c) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
            assert_eq!(eval(src, flags << 1), f(a, b, c), "{src} with {a} {b} {c}");
        }
    }
}

#[test]
fn if_else_chains_and_sub_routes_run_in_order() {
    let c = ok("route {\n if (isflagset(1)) { log(\"one\"); } else if (isflagset(2)) { log(\"two\"); route(5); } else log(\"none\");\n log(\"end\");\n}\nroute[5] { log(\"five\"); break; log(\"dead\"); }\n");
    assert_eq!(c.warnings.len(), 1);
    assert_eq!(c.warnings[0].message, "unreachable code after 'break'");
    let main = c.program.main_route.unwrap();
    let mut out = Vec::new();
    run(&c.program, main, 1 << 2, &mut out);
    assert_eq!(out, ["two", "five", "end"]);
    out.clear();
    run(&c.program, main, 0, &mut out);
    assert_eq!(out, ["none", "end"]);
}

#[test]
fn operands_and_operators_lower_to_typed_tests() {
    let c = ok("route {\n if (method!=\"ACK\" && src_port>=1024 && proto==udp && af==inet6 && msg:len<max_len && dst_ip==::1 && src_ip==10.0.0.0/8 && !dst_ip==myself && src_ip==backup.foo.bar) { break; };\n}\n");
    let tests: Vec<_> = c.program.routes[0]
        .code
        .iter()
        .filter_map(|i| match i {
            Insn::Test(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(tests.len(), 9);
    assert!(matches!(&tests[0].value, Value::Str(s) if s == "ACK") && tests[0].op == CmpOp::Ne);
    assert!(tests[1].operand == Operand::SrcPort && tests[1].op == CmpOp::Ge);
    assert!(matches!(tests[2].value, Value::Proto(Proto::Udp)));
    assert!(matches!(tests[4].value, Value::Int(65535)));
    assert!(matches!(&tests[5].value, Value::Net(n) if n.prefix == 128));
    assert!(matches!(&tests[6].value, Value::Net(n) if n.prefix == 8));
    assert!(matches!(tests[7].value, Value::Myself));
    assert!(matches!(&tests[8].value, Value::Host(h) if h == "backup.foo.bar"));
}

#[test]
fn bad_comparisons_are_errors() {
    assert_eq!(
        first("route { if (src_port=~\"5\") { break; }; }"),
        "1:21 cannot compare src_port =~ \"5\""
    );
    assert_eq!(
        first("route { if (uri==5060) { break; }; }"),
        "1:16 cannot compare uri == number 5060"
    );
    assert!(first("route { if (method=~\"(INV\") { break; }; }").contains("unmatched '('"));
}

#[test]
fn unknown_function_suggests_the_closest_name() {
    let d = err("loadmodule \"tm.so\"\nroute { t_rellay(); }\n");
    assert_eq!(d.errors[0].message, "unknown function 't_rellay'");
    assert_eq!(d.errors[0].hint.as_deref(), Some("did you mean `t_relay`?"));
    let d = err("route { rewritehots(\"a\"); }\n");
    assert_eq!(
        d.errors[0].hint.as_deref(),
        Some("did you mean `rewritehost`?")
    );
    let d = err("route { frobnicate(); }\n");
    assert_eq!(d.errors[0].hint, None);
}

#[test]
fn unloaded_module_is_reported_once_at_first_use() {
    let d = err("route { t_newtran(); t_relay(); t_reply(\"404\", \"x\"); sl_send_reply(\"404\", \"x\"); }\n");
    let msgs: Vec<&str> = d.errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        msgs,
        [
            "t_newtran is exported by module tm, which is not loaded (first use)",
            "sl_send_reply is exported by module sl, which is not loaded (first use)",
        ]
    );
}

#[test]
fn module_argument_fixups() {
    let pre = "loadmodule \"sl.so\"\nloadmodule \"tm.so\"\nloadmodule \"textops.so\"\n";
    assert_eq!(
        first(&format!("{pre}route {{ sl_send_reply(\"99\", \"x\"); }}")),
        "4:23 sl_send_reply: invalid status code \"99\" (must be a number 100-699)"
    );
    assert_eq!(
        first(&format!("{pre}route {{ t_relay_to_udp(\"h\", \"50x\"); }}")),
        "4:29 t_relay_to_udp: invalid port \"50x\" (must be 1-65535)"
    );
    assert_eq!(
        first(&format!("{pre}route {{ search(\"a[\"); }}")),
        "4:16 invalid regular expression: unterminated '[' bracket expression"
    );
    assert_eq!(
        first(&format!("{pre}route {{ t_on_failure(\"3\"); t_relay(); }}")),
        "4:22 t_on_failure(3) arms failure_route[3], which is not defined"
    );
    assert_eq!(
        first(&format!("{pre}route {{ setflag(32); }}")),
        "4:17 setflag: expected a number 0-31, found number 32"
    );
}

#[test]
fn failure_route_restrictions_follow_route_calls() {
    let src = "loadmodule \"sl.so\"\nloadmodule \"tm.so\"\nroute { t_on_failure(\"1\"); t_relay(); }\nroute[2] { sl_send_reply(\"500\", \"x\"); }\nfailure_route[1] { route(2); forward(10.0.0.1, 5060); t_relay(); }\n";
    let d = err(src);
    let got: Vec<String> = d
        .errors
        .iter()
        .map(|e| format!("{}:{} {}", e.line, e.col, e.message))
        .collect();
    assert_eq!(
        got,
        [
            "4:12 sl_send_reply is not allowed in failure_route (stateless reply; use t_reply)",
            "5:30 forward is not allowed in failure_route (stateless forwarding; use t_relay)",
        ]
    );
    assert_eq!(
        d.errors[0].hint.as_deref(),
        Some("route[2] is called from failure_route[1]")
    );
}

#[test]
fn deprecated_names_warn_and_resolve() {
    let c = ok("loadmodule \"tm.so\"\nloadmodule \"acc.so\"\nmodparam(\"acc\", \"acc_flag\", 1)\nroute { t_relay_to(\"10.0.0.1\", \"5060\"); acc_request(\"404 Not Found\"); }\n");
    let msgs: Vec<&str> = c.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    assert!(msgs[0].contains("acc_flag"));
    assert!(msgs[1].starts_with("t_relay_to is deprecated"));
    assert!(msgs[2].starts_with("acc_request is deprecated"));
    let d = err("loadmodule \"exec.so\"\nroute { exec_uri(\"x\"); }\n");
    assert_eq!(d.errors[0].message, "exec_uri is no longer available");
    let d =
        err("loadmodule \"auth.so\"\nmodparam(\"auth\", \"db_url\", \"x\")\nroute { break; }\n");
    assert!(d.errors[0]
        .hint
        .as_deref()
        .unwrap_or("")
        .contains("auth_db"));
}

#[test]
fn modules_and_options_are_checked() {
    assert_eq!(
        first("loadmodule \"/usr/lib/ser/modules/tmm.so\"\nroute { break; }"),
        "1:12 unknown module 'tmm' (loadmodule \"/usr/lib/ser/modules/tmm.so\")"
    );
    assert_eq!(
        first("loadmodule \"modules/im/im.so\"\nroute { break; }"),
        "1:12 module im is obsolete: it was replaced by tm"
    );
    let d = err("chidren=4\nroute { break; }");
    assert_eq!(
        d.errors[0].hint.as_deref(),
        Some("did you mean `children`?")
    );
    assert_eq!(
        first("fork=maybe\nroute { break; }"),
        "1:6 fork takes yes or no, found 'maybe'"
    );
    assert_eq!(
        first(
            "loadmodule \"usrloc.so\"\nmodparam(\"usrloc\", \"db_mode\", \"2\")\nroute { break; }"
        ),
        "2:31 parameter 'db_mode' of module usrloc takes an integer (or yes/no), found \"2\""
    );
    assert_eq!(
        first("modparam(\"usrloc\", \"db_mode\", 2)\nroute { break; }"),
        "1:10 modparam: module usrloc is not loaded"
    );
    let c = ok("loadmodule \"modules/vm/vm.so\"\nloadmodule \"tm.so\"\nmodparam(\"voicemail\", \"db_url\", \"/x\")\nlisten=udp:10.0.0.1:5070\nlisten=[::1]\nport=5080\nchildren=2\nfork=off\nmhomed=1\nroute { break; }");
    let o = &c.program.options;
    assert_eq!(o.listen[0].proto, Some(Proto::Udp));
    assert_eq!(o.listen[0].port, Some(5070));
    assert_eq!(o.listen[1].host, "::1");
    assert_eq!(
        (o.port, o.children, o.fork, o.mhomed),
        (5080, 2, false, true)
    );
}

#[test]
fn named_routes_onreply_and_reply_route() {
    let c = ok(
        "route { route(AUTH); }\nroute[AUTH] { log(\"x\"); }\nonreply_route[1] { log(\"r\"); }\n",
    );
    let id = c
        .program
        .find_route(RouteKind::Request, &RouteLabel::Name("AUTH".into()))
        .unwrap();
    assert!(matches!(c.program.routes[0].code[0], Insn::Route(r) if r == id));
    assert!(c
        .program
        .find_route(RouteKind::OnReply, &RouteLabel::Num(1))
        .is_some());
    assert_eq!(
        first("route { break; }\nreply_route[1] { log(\"x\"); }"),
        "2:1 reply_route was renamed failure_route in 0.8.11"
    );
    assert_eq!(
        first("route { break; }\nroute[1] { break; }\nroute[1] { break; }"),
        "3:1 route[1] is defined twice (first at line 2:1)"
    );
}

#[test]
fn missing_module_dependency_is_a_warning_at_its_loadmodule() {
    let c = ok("loadmodule \"registrar.so\"\nroute { break; }");
    let w: Vec<String> = c
        .warnings
        .iter()
        .map(|w| format!("{}:{} {}", w.line, w.col, w.message))
        .collect();
    assert!(
        w.contains(&"1:12 module registrar needs module usrloc, which is not loaded".to_string()),
        "{w:?}"
    );
}

/// Every script-visible name in the shared checklist is known to the compiler with the documented
/// arity (old names through their `Renamed` entries).
#[test]
fn checklist_names_are_all_declared() {
    use super::check::core_action;
    use super::lower::OPTION_NAMES;
    use dataplane::modules;

    // The users' checklist is a reference copy beside the repository, not part of it.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/seed-checklist.tsv" // optional: absent in a fresh clone
    );
    let Ok(tsv) = std::fs::read_to_string(path) else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipped: checklist_names_are_all_declared: no {path} (an optional reference copy)"
        );
        return;
    };
    let mut missing = Vec::new();
    let mut counted = 0;
    for row in tsv.lines().skip(1) {
        let f: Vec<&str> = row.split('\t').collect();
        let (kind, name, module, args) = (f[0], f[1], f[2], f.get(3).copied().unwrap_or(""));
        let arity: Vec<usize> = args
            .split('|')
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        let ok = match kind {
            "core-option" => {
                OPTION_NAMES.contains(&name) || name == "loadmodule" || name == "modparam"
            }
            "core-action" => {
                name == "if"
                    || name == "else"
                    || core_action(name)
                        .is_some_and(|c| arity.iter().all(|n| (c.min..=c.max).contains(n)))
            }
            "module" => {
                modules::by_name(name).is_some() || modules::REMOVED.iter().any(|(n, _)| *n == name)
            }
            "module-function" => modules::by_name(module).is_some_and(|(_, m)| {
                let f = m.function(name).map(|(_, f)| f).or_else(|| {
                    m.renamed_functions
                        .iter()
                        .find(|r| r.old == name)
                        .and_then(|r| r.new)
                        .and_then(|n| m.function(n).map(|(_, f)| f))
                });
                match f {
                    Some(f) => arity
                        .iter()
                        .all(|n| (f.min_args as usize..=f.max_args()).contains(n)),
                    // dropped names (exec_uri, exec_user) are declared as Renamed without a successor
                    None => m.renamed_functions.iter().any(|r| r.old == name),
                }
            }),
            "module-param" => modules::by_name(module).is_some_and(|(_, m)| {
                m.param(name).is_some() || m.renamed_params.iter().any(|r| r.old == name)
            }),
            _ => continue,
        };
        counted += 1;
        if !ok {
            missing.push(format!("{kind} {name} ({module}, {args})"));
        }
    }
    assert!(counted > 150, "only {counted} rows checked");
    assert!(missing.is_empty(), "not declared: {missing:#?}");
}

#[test]
fn unused_blocks_are_warnings() {
    let c = ok("loadmodule \"tm.so\"\nroute { t_relay(); }\nroute[3] { break; }\nfailure_route[4] { t_relay(); }\n");
    let w: Vec<String> = c
        .warnings
        .iter()
        .map(|w| format!("{}:{} {}", w.line, w.col, w.message))
        .collect();
    assert_eq!(
        w,
        [
            "3:1 route[3] is never called",
            "4:1 failure_route[4] is never armed"
        ]
    );
}

mod never_panics {
    use proptest::prelude::*;

    /// A script of the repository (ser.cfg, examples/).
    fn seed(name: &str) -> String {
        let p = format!("{}/../{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {p}: {e}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn on_script_like_noise(src in "[a-z_(){};=!~&|<>:/.,\"' 0-9\n\\[\\]#*-]{0,200}") {
            let _ = super::compile_str("noise.cfg", &src);
        }

        #[test]
        fn on_mutilated_seed_configs(which in 0usize..4, cut in 0usize..4000, len in 0usize..40, ins in "[{}();\"'/*#]{0,3}") {
            let name = ["ser.cfg", "examples/pstn-gateway.cfg", "examples/serial-forking.cfg", "examples/registrar.cfg"][which];
            let src = seed(name);
            let chars: Vec<char> = src.chars().collect();
            let at = cut.min(chars.len());
            let end = (at + len).min(chars.len());
            let m: String = chars[..at].iter().chain(ins.chars().collect::<Vec<_>>().iter()).chain(chars[end..].iter()).collect();
            if let Err(d) = super::compile_str(name, &m) {
                prop_assert!(!d.errors.is_empty());
                let _ = d.render();
            }
        }
    }
}
