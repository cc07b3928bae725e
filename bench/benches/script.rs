//! The interpreter on the default `ser.cfg` (repo root) route[0], the 900-byte INVITE of
//! `ser_bench::INVITE` (R-URI `sip:bob@biloxi.example.com`, not ours), a no-op Env. Only `exec` is
//! timed: `<name>` reruns one `Ctx`; `<name>_fresh_ctx` builds a new one (a clone of the parsed
//! message) per run in the untimed setup, so it also pays the cache misses of touching it.
//! - `ser_cfg_as_built`: module functions are not implemented yet, so `mf_process_maxfwd_header`
//!   yields -1 and the script takes the 483 branch: 3 instructions + the "not implemented" path.
//! - `ser_cfg_modules_ok`: every module function is a no-op returning 1 except `loose_route` (-1),
//!   so the whole main path runs: mf_process_maxfwd_header, len_gt(max_len), record_route,
//!   loose_route, `uri==myself` (R-URI parse, listen/alias check), t_relay.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use dataplane::modules;
use dataplane::script::env::{ActionResult, Env, Target};
use dataplane::script::ir::{Arg, Program, Proto};
use dataplane::script::{exec, Ctx, FunctionId, ModuleId, Myself, Outcome};
use dataplane::wire::Message;
use ser_bench::INVITE;

struct NoopEnv {
    now: Instant,
    myself: Myself,
    modules_ok: bool,
    loose_route: (ModuleId, FunctionId),
}

fn ok(_: &mut Ctx, _: &mut dyn Env, _: &[Arg]) -> ActionResult {
    ActionResult::Ret(1)
}
fn fail(_: &mut Ctx, _: &mut dyn Env, _: &[Arg]) -> ActionResult {
    ActionResult::Ret(-1)
}

impl Env for NoopEnv {
    fn forward(&mut self, _: &mut Ctx, _: &Target<'_>, _: Option<Proto>) -> ActionResult {
        ActionResult::Ret(1)
    }
    fn send(&mut self, _: &mut Ctx, _: &Target<'_>, _: Option<Proto>) -> ActionResult {
        ActionResult::Ret(1)
    }
    fn log(&mut self, _: i32, _: &[u8]) {}
    fn now(&self) -> Instant {
        self.now
    }
    fn myself(&self) -> Option<&Myself> {
        Some(&self.myself)
    }
    fn call(
        &mut self,
        m: ModuleId,
        f: FunctionId,
        ctx: &mut Ctx,
        args: &[dataplane::script::ir::Arg],
    ) -> Option<ActionResult> {
        if !self.modules_ok {
            None
        } else if (m, f) == self.loose_route {
            Some(fail(ctx, self, args))
        } else {
            Some(ok(ctx, self, args))
        }
    }
}

fn program() -> Program {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../ser.cfg");
    match controlplane::cfg::compile_file(std::path::Path::new(path)) {
        Ok(c) => c.program,
        Err(d) => panic!("{}", d.render()),
    }
}

fn script(c: &mut Criterion) {
    let p = program();
    let msg = Message::parse(Bytes::from_static(INVITE)).expect("sample parses");
    let src: SocketAddr = "192.0.2.101:5060".parse().expect("addr");
    let dst: SocketAddr = "192.0.2.1:5060".parse().expect("addr");
    let (rr, rr_decl) = modules::by_name("rr").expect("rr");
    let (lr, _) = rr_decl.function("loose_route").expect("loose_route");
    let loose_route = (rr, lr);
    let mut g = c.benchmark_group("script");
    for (name, modules_ok, expect) in [
        ("ser_cfg_as_built", false, Outcome::Done(-1)),
        ("ser_cfg_modules_ok", true, Outcome::Done(1)),
    ] {
        let mut env = NoopEnv {
            now: Instant::now(),
            myself: Myself::from_options(&p.options),
            modules_ok,
            loose_route,
        };
        let mut check = Ctx::new(msg.clone(), src, dst, Proto::Udp);
        assert_eq!(exec(&p, &mut check, &mut env), expect, "{name}");
        // Script time only: the same Ctx runs again (this path neither edits the message nor
        // rewrites the URI, and every run starts from a reset frame stack).
        g.bench_function(name, |b| {
            b.iter(|| exec(&p, black_box(&mut check), &mut env))
        });
        // Per message: a fresh Ctx (clone of the parsed message, untimed) for every run.
        g.bench_function(format!("{name}_fresh_ctx"), |b| {
            b.iter_batched_ref(
                || Ctx::new(msg.clone(), src, dst, Proto::Udp),
                |ctx| exec(&p, ctx, &mut env),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, script);
criterion_main!(benches);
