//! The interpreter: runs a compiled [`Program`] over a [`Ctx`], talking to the world through an
//! [`Env`]. See [`super::ir`] for the execution model; in short:
//!
//! - `ret` holds the value of the last action or test: positive = true, negative = false, and **0
//!   stops the whole run** ([`Outcome::Done`]`(0)`).
//! - `route(n)` pushes a frame; falling off a block or `break` pops it (in `route[0]`: the run ends).
//!   The caller sees what SER's `route()` returned: the callee's last value if negative, else 1
//!   (so after `break` always 1). Nesting beyond [`MAX_ROUTE_DEPTH`] logs an error and the `route()`
//!   call yields -1.
//! - Where this follows the IR's model rather than SER 0.8.11's code: in SER a 0 (and `drop`, which
//!   was the same action as `break`) only ended the current block — `route()` turned it into 1 and
//!   the caller went on; here 0 and `drop` end the whole run, as the IR documents.
//! - `drop` (or an action answering [`ActionResult::Drop`]) ends the run: [`Outcome::Dropped`].
//! - An action answering [`ActionResult::Suspend`] ends this call with [`Outcome::Suspended`]; the
//!   frames and `pc` stay in the `Ctx` and [`resume`] continues at `pc + 1` once the job's result is
//!   in `ret`.
//!
//! Tests (`if (…)` conditions), as SER's route.c: `method`/`uri` `==` compare case-insensitively,
//! `=~` uses the pre-compiled case-insensitive regex; `uri` is the current request URI;
//! `uri==myself` is SER's check_self (host and port — 5060 when absent — equal a `listen` address
//! or the address the message arrived on, or an `alias`, whose port is optional); `src_ip==myself`
//! ignores the port. Deliberate differences from SER 0.8.11, each for a reason: `src_ip==name`
//! (unquoted) resolves the name and looks for the address among its A/AAAA records (SER
//! reverse-resolved the address; the forward lookup is what the documents' examples mean and is
//! cacheable); `src_ip=~"re"` matches the address text (SER matched its reverse-DNS names, one
//! blocking lookup per message); a quoted address (`src_ip=="10.0.0.1"`) is compared as an address.
//! URI rewrites keep the scheme as written (SER always wrote `sip:`), and `rewriteport("")` removes
//! the port (SER left a dangling `:`).
//!
//! Invariants: nothing here panics on any message or program (bad indices end the block, a runaway
//! program is cut off after [`MAX_STEPS`] instructions); no name is looked up and no regex compiled
//! while a message runs; the hot path does not allocate (URIs and the destination set are inline).

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use smallvec::SmallVec;

use super::ctx::{Ctx, Frame, RunState};
use super::env::{level, ActionResult, Env, Target, TargetHost};
use super::ir::{
    AddrFamily, CmpOp, CoreAction, HostArg, Insn, ModuleCall, Operand, PortArg, Program, RouteId,
    Test, Value, MAX_ROUTE_DEPTH,
};
use super::myself;
use super::uri_ops::{self, UriPart};

use crate::offload::{DnsQuery, Job, JobResult};
use crate::wire::uri::Host;

/// Most instructions one run may execute (across suspensions of one call): a guard against runaway
/// recursion patterns such as `route[1]{ route(1); route(1); }`.
pub const MAX_STEPS: u32 = 100_000;

/// How a call to [`exec`] / [`resume`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The run ended: it fell off (or `break` left) the entry block, or an action returned 0
    /// (`Done(0)`). The value is the last `ret`.
    Done(i32),
    /// `drop`: the run ended and the message must not be relayed.
    Dropped,
    /// Waiting for this job; call [`resume`] with its result.
    Suspended(Job),
}

/// Runs the main route (`route{}` / `route[0]`) for the request in `ctx`.
pub fn exec(program: &Program, ctx: &mut Ctx, env: &mut dyn Env) -> Outcome {
    match program.main_route {
        Some(r) => exec_route(program, r, ctx, env),
        None => Outcome::Done(1),
    }
}

/// Runs one route block (a failure_route or onreply_route armed elsewhere, or a request block).
pub fn exec_route(program: &Program, route: RouteId, ctx: &mut Ctx, env: &mut dyn Env) -> Outcome {
    let Some(block) = program.routes.get(route.0 as usize) else {
        log(
            ctx,
            env,
            level::ERR,
            format_args!("ERROR: no route block #{}", route.0),
        );
        return Outcome::Done(-1);
    };
    ctx.set_route_kind(block.kind);
    ctx.debug = program.options.debug;
    ctx.frames.clear();
    ctx.frames.push(Frame { route, pc: 0 });
    ctx.ret = 1;
    ctx.state = RunState::Idle;
    ctx.on_resume = None;
    run(program, ctx, env)
}

/// Continues a suspended run with the result of its job: the suspending action's resume function
/// (if it set one with [`Ctx::suspend_with`]) or [`JobResult::ret`] gives `ret`, and the script goes
/// on after that action. `program` must be the one the run started with (keep its `Arc` with the
/// parked `Ctx`).
pub fn resume(program: &Program, ctx: &mut Ctx, env: &mut dyn Env, result: JobResult) -> Outcome {
    if ctx.state != RunState::Suspended {
        log(
            ctx,
            env,
            level::ERR,
            format_args!("BUG: resume: the script is not waiting for a job"),
        );
        return Outcome::Done(-1);
    }
    ctx.state = RunState::Idle;
    let r = match ctx.on_resume.take() {
        Some(f) => {
            // The suspended call's own arguments (borrowed from the program, not cloned).
            let args: &[super::ir::Arg] = match current_insn(program, ctx) {
                Some(Insn::Call(c)) => &c.args,
                _ => &[],
            };
            f(ctx, env, args, result)
        }
        None => match current_insn(program, ctx) {
            Some(Insn::Test(t)) => ActionResult::from_bool(test_resumed(t, ctx, &result)),
            _ => ActionResult::Ret(result.ret()),
        },
    };
    match settle(ctx, r) {
        Some(o) => o,
        None => run(program, ctx, env),
    }
}

/// `(module, function)` names of every module function the program calls that has no
/// implementation in this build (for a start-up warning). Each pair once, in program order.
/// Functions an [`Env`] runs itself ([`Env::call`]) are listed too: the caller filters them.
pub fn unimplemented_calls(program: &Program) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    for block in &program.routes {
        for insn in &block.code {
            if let Insn::Call(c) = insn {
                if let Some((m, f)) = decl(c) {
                    if f.imp.is_none() && !out.contains(&(m.name, f.name)) {
                        out.push((m.name, f.name));
                    }
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------- the loop

fn current_insn<'p>(program: &'p Program, ctx: &Ctx) -> Option<&'p Insn> {
    let f = ctx.frames.last()?;
    program
        .routes
        .get(f.route.0 as usize)?
        .code
        .get(f.pc as usize)
}

fn advance(ctx: &mut Ctx) {
    if let Some(f) = ctx.frames.last_mut() {
        f.pc = f.pc.saturating_add(1);
    }
}

/// Applies an action's result. `None`: keep running (pc advanced); `Some`: the call ends.
fn settle(ctx: &mut Ctx, r: ActionResult) -> Option<Outcome> {
    match r {
        ActionResult::Ret(0) => {
            ctx.ret = 0;
            finish(ctx);
            Some(Outcome::Done(0))
        }
        ActionResult::Ret(v) => {
            ctx.ret = v;
            advance(ctx);
            None
        }
        ActionResult::Suspend(job) => {
            ctx.state = RunState::Suspended;
            Some(Outcome::Suspended(job))
        }
        ActionResult::Drop => {
            finish(ctx);
            Some(Outcome::Dropped)
        }
    }
}

fn finish(ctx: &mut Ctx) {
    ctx.frames.clear();
    ctx.state = RunState::Idle;
    ctx.on_resume = None;
}

fn run(program: &Program, ctx: &mut Ctx, env: &mut dyn Env) -> Outcome {
    let mut steps: u32 = 0;
    // The current frame lives in locals (`code`, `pc`) and is written back to `ctx.frames` only
    // when another frame is pushed or the run suspends.
    'frames: loop {
        let Some(&Frame { route, mut pc }) = ctx.frames.last() else {
            finish(ctx);
            return Outcome::Done(ctx.ret);
        };
        let code: &[Insn] = program
            .routes
            .get(route.0 as usize)
            .map_or(&[], |b| &b.code[..]);
        loop {
            let Some(insn) = code.get(pc as usize) else {
                // Fell off the end of the block (or a bad jump target): back to the caller, which
                // sees SER's `ret < 0 ? ret : 1`.
                ctx.frames.pop();
                if !ctx.frames.is_empty() && ctx.ret > 0 {
                    ctx.ret = 1;
                }
                continue 'frames;
            };
            steps += 1;
            if steps > MAX_STEPS {
                log(
                    ctx,
                    env,
                    level::ERR,
                    format_args!(
                        "ERROR: script run cut off after {MAX_STEPS} instructions (runaway route() calls?)"
                    ),
                );
                finish(ctx);
                ctx.ret = -1;
                return Outcome::Done(-1);
            }
            let r = match insn {
                Insn::Jump(to) => {
                    pc = *to;
                    continue;
                }
                Insn::JumpIf { when, to } => {
                    pc = if (ctx.ret > 0) == *when { *to } else { pc + 1 };
                    continue;
                }
                Insn::Break => {
                    // SER: break is 0 for the block, and route() turns a 0 into 1 for the caller.
                    ctx.frames.pop();
                    if !ctx.frames.is_empty() {
                        ctx.ret = 1;
                    }
                    continue 'frames;
                }
                Insn::Drop => {
                    finish(ctx);
                    return Outcome::Dropped;
                }
                Insn::Route(id) => {
                    pc += 1;
                    if ctx.frames.len() >= MAX_ROUTE_DEPTH {
                        log(
                            ctx,
                            env,
                            level::ERR,
                            format_args!(
                                "WARNING: too many recursive routing table lookups (route() nested deeper than {MAX_ROUTE_DEPTH}), giving up"
                            ),
                        );
                        ctx.ret = -1;
                        continue;
                    }
                    set_pc(ctx, pc);
                    ctx.frames.push(Frame { route: *id, pc: 0 });
                    continue 'frames;
                }
                Insn::Core(a) => core(a, ctx, env),
                Insn::Call(c) => call(c, ctx, env),
                Insn::Test(t) => test(program, t, ctx, env),
            };
            match r {
                ActionResult::Ret(0) => {
                    ctx.ret = 0;
                    finish(ctx);
                    return Outcome::Done(0);
                }
                ActionResult::Ret(v) => {
                    ctx.ret = v;
                    pc += 1;
                }
                ActionResult::Suspend(job) => {
                    // `pc` stays on the suspending instruction; resume() moves past it.
                    set_pc(ctx, pc);
                    ctx.state = RunState::Suspended;
                    return Outcome::Suspended(job);
                }
                ActionResult::Drop => {
                    finish(ctx);
                    return Outcome::Dropped;
                }
            }
        }
    }
}

fn set_pc(ctx: &mut Ctx, to: u32) {
    if let Some(f) = ctx.frames.last_mut() {
        f.pc = to;
    }
}

// ---------------------------------------------------------------------------------------- logging

/// Formats into a stack buffer (truncating) and hands the line to the Env if `level` passes.
fn log(ctx: &Ctx, env: &mut dyn Env, lvl: i32, args: std::fmt::Arguments<'_>) {
    if !ctx.log_enabled(lvl) {
        return;
    }
    let mut buf = [0u8; 256];
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    let _ = cur.write_fmt(args);
    let n = cur.position() as usize;
    env.log(lvl, buf.get(..n).unwrap_or_default());
}

// ---------------------------------------------------------------------------------------- modules

fn decl(c: &ModuleCall) -> Option<(&'static super::ModuleDecl, &'static super::FunctionDecl)> {
    Some((c.decl, c.decl.functions.get(c.function.0 as usize)?))
}

/// One bit per (module, function): "not implemented" already logged.
static WARNED: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];

fn call(c: &ModuleCall, ctx: &mut Ctx, env: &mut dyn Env) -> ActionResult {
    let Some((m, f)) = decl(c) else {
        log(
            ctx,
            env,
            level::ERR,
            format_args!(
                "BUG: call of unknown module function {}/{}",
                c.module.0, c.function.0
            ),
        );
        return ActionResult::Ret(-1);
    };
    if let Some(r) = env.call(c.module, c.function, ctx, &c.args) {
        return r;
    }
    match f.imp {
        Some(imp) => imp(ctx, env, &c.args),
        None => {
            let first = match (WARNED.get(c.module.0 as usize), c.function.0) {
                (Some(w), bit @ 0..=63) => {
                    let mask = 1u64 << bit;
                    // A plain load first: the read-modify-write only happens once per function.
                    w.load(Ordering::Relaxed) & mask == 0
                        && w.fetch_or(mask, Ordering::Relaxed) & mask == 0
                }
                _ => true,
            };
            if first {
                log(
                    ctx,
                    env,
                    level::ERR,
                    format_args!(
                        "ERROR: function `{}` (module {}) is not implemented in this build",
                        f.name, m.name
                    ),
                );
            }
            ActionResult::Ret(-1)
        }
    }
}

// ---------------------------------------------------------------------------------------- core actions

fn core(a: &CoreAction, ctx: &mut Ctx, env: &mut dyn Env) -> ActionResult {
    use ActionResult::Ret;
    match a {
        CoreAction::Forward { proto, host, port } | CoreAction::Send { proto, host, port } => {
            let is_send = matches!(a, CoreAction::Send { .. });
            // uri:host / uri:port come from the current URI, copied out so `ctx` can be lent.
            let mut host_buf: SmallVec<[u8; 64]> = SmallVec::new();
            let (uri_host, uri_port) = match (host, port) {
                (HostArg::UriHost, _) | (_, PortArg::UriPort) => {
                    match uri_ops::sip_host_port(ctx.uri()) {
                        Some((h, port)) => {
                            let h = match h {
                                Host::V4(a) => Some(IpAddr::V4(a)),
                                Host::V6(a) => Some(IpAddr::V6(a)),
                                Host::Name(n) => {
                                    host_buf.extend_from_slice(n);
                                    None
                                }
                            };
                            // No port in the URI: none given, so RFC 3263 (SRV) decides.
                            (h, port)
                        }
                        None => {
                            log(
                                ctx,
                                env,
                                level::ERR,
                                format_args!(
                                    "ERROR: {}: bad request URI for uri:host/uri:port",
                                    if is_send { "send" } else { "forward" }
                                ),
                            );
                            return Ret(-1);
                        }
                    }
                }
                _ => (None, None),
            };
            let th = match host {
                HostArg::Ip(ip) => TargetHost::Ip(*ip),
                HostArg::Name(n) => TargetHost::Name(n.as_bytes()),
                HostArg::UriHost => match uri_host {
                    Some(ip) => TargetHost::Ip(ip),
                    None => TargetHost::Name(&host_buf),
                },
            };
            let port = match port {
                PortArg::Default => None,
                PortArg::Num(n) => Some(*n),
                PortArg::UriPort => uri_port,
            };
            let target = Target::Host { host: th, port };
            if is_send {
                env.send(ctx, &target, *proto)
            } else {
                env.forward(ctx, &target, *proto)
            }
        }
        CoreAction::Log { level: l, message } => {
            if ctx.log_enabled(*l) {
                env.log(*l, message.as_bytes());
            }
            Ret(1)
        }
        CoreAction::SetFlag(n) => flag_result(ctx, env, "setflag", *n, Ctx::set_flag),
        CoreAction::ResetFlag(n) => flag_result(ctx, env, "resetflag", *n, Ctx::reset_flag),
        CoreAction::IsFlagSet(n) => ActionResult::from_bool(ctx.is_flag_set(*n)),
        CoreAction::RewriteHost(v) => rewrite(ctx, env, "rewritehost", UriPart::Host, v),
        CoreAction::RewriteHostPort(v) => {
            rewrite(ctx, env, "rewritehostport", UriPart::HostPort, v)
        }
        CoreAction::RewriteUser(v) => rewrite(ctx, env, "rewriteuser", UriPart::User, v),
        CoreAction::RewriteUserPass(v) => {
            rewrite(ctx, env, "rewriteuserpass", UriPart::UserPass, v)
        }
        CoreAction::RewritePort(v) => rewrite(ctx, env, "rewriteport", UriPart::Port, v),
        CoreAction::RewriteUri(v) => {
            ctx.set_uri(v.as_bytes());
            Ret(1)
        }
        CoreAction::RevertUri => {
            ctx.revert_uri();
            Ret(1)
        }
        CoreAction::Prefix(p) => match uri_ops::prefix_user(ctx.uri(), p.as_bytes()) {
            Ok(u) => {
                ctx.set_uri(&u);
                Ret(1)
            }
            Err(e) => uri_error(ctx, env, "prefix", e),
        },
        CoreAction::Strip(n) => match uri_ops::strip_user(ctx.uri(), *n as usize) {
            Ok((u, too_long)) => {
                if too_long {
                    log(
                        ctx,
                        env,
                        level::WARN,
                        format_args!(
                            "WARNING: strip({n}): too long strip asked; deleting username"
                        ),
                    );
                }
                ctx.set_uri(&u);
                Ret(1)
            }
            Err(e) => uri_error(ctx, env, "strip", e),
        },
        CoreAction::AppendBranch(uri) => {
            Ret(ctx.append_branch_checked(env, uri.as_deref().map(str::as_bytes)))
        }
        // SER's action.c compares `msg->len >= n`: a message of exactly n bytes is "greater".
        CoreAction::LenGt(n) => ActionResult::from_bool(ctx.msg.len() >= *n as usize),
    }
}

fn flag_result(
    ctx: &mut Ctx,
    env: &mut dyn Env,
    name: &str,
    n: u32,
    f: fn(&mut Ctx, u32) -> bool,
) -> ActionResult {
    if f(ctx, n) {
        ActionResult::Ret(1)
    } else {
        log(
            ctx,
            env,
            level::ERR,
            format_args!("ERROR: {name}({n}): flags are 0-31"),
        );
        ActionResult::Ret(-1)
    }
}

fn rewrite(ctx: &mut Ctx, env: &mut dyn Env, name: &str, part: UriPart, v: &str) -> ActionResult {
    match uri_ops::rewrite(ctx.uri(), part, v.as_bytes()) {
        Ok(u) => {
            ctx.set_uri(&u);
            ActionResult::Ret(1)
        }
        Err(e) => uri_error(ctx, env, name, e),
    }
}

fn uri_error(ctx: &Ctx, env: &mut dyn Env, name: &str, e: uri_ops::UriOpError) -> ActionResult {
    log(
        ctx,
        env,
        level::ERR,
        format_args!("ERROR: {name}: {e}, request URI left unchanged"),
    );
    ActionResult::Ret(-1)
}

// ---------------------------------------------------------------------------------------- tests

fn test(program: &Program, t: &Test, ctx: &mut Ctx, env: &mut dyn Env) -> ActionResult {
    let negate = t.op == CmpOp::Ne;
    let hit = match t.operand {
        Operand::Method => {
            let m = method(ctx);
            str_cmp(&t.value, m)
        }
        Operand::Uri => match &t.value {
            Value::Myself => match uri_ops::sip_host_port(ctx.uri()) {
                Some((host, port)) => {
                    let port = port.unwrap_or(5060);
                    match env.myself() {
                        Some(m) => m.host_is_mine(&host, port, ctx.dst),
                        None => myself::host_in_options(&program.options, &host, port, ctx.dst),
                    }
                }
                None => false,
            },
            v => str_cmp(v, ctx.uri()),
        },
        Operand::SrcIp | Operand::DstIp => {
            let ip = if t.operand == Operand::SrcIp {
                ctx.src.ip()
            } else {
                ctx.dst.ip()
            };
            match &t.value {
                Value::Net(n) => n.contains(ip),
                Value::Myself => match env.myself() {
                    Some(m) => m.ip_is_mine(ip, ctx.dst),
                    None => myself::ip_in_options(&program.options, ip, ctx.dst),
                },
                Value::Host(name) => match env.host_has_addr(name, ip) {
                    Some(b) => b,
                    None => {
                        return ActionResult::Suspend(Job::Dns {
                            name: name.clone(),
                            query: DnsQuery::Addrs,
                        })
                    }
                },
                // A quoted address is compared as an address; any other text is a name, which
                // SER compared with the reverse-DNS names of the address.
                Value::Str(s) => match s.parse::<IpAddr>() {
                    Ok(a) => a == ip,
                    Err(_) => match env.ip_has_name(s, ip) {
                        Some(b) => b,
                        None => {
                            return ActionResult::Suspend(Job::Dns {
                                name: ip.to_string(),
                                query: DnsQuery::Reverse(ip),
                            })
                        }
                    },
                },
                Value::Regex(r) => {
                    let text = ip_text(ip);
                    r.is_match(&text[..])
                }
                _ => false,
            }
        }
        Operand::SrcPort => int_cmp(t.op, &t.value, i64::from(ctx.src.port())),
        Operand::DstPort => int_cmp(t.op, &t.value, i64::from(ctx.dst.port())),
        Operand::MsgLen => int_cmp(t.op, &t.value, ctx.msg.len() as i64),
        Operand::Proto => matches!(t.value, Value::Proto(p) if p == ctx.proto),
        Operand::Af => match t.value {
            Value::Af(AddrFamily::Inet) => ctx.src.is_ipv4(),
            Value::Af(AddrFamily::Inet6) => ctx.src.is_ipv6(),
            _ => false,
        },
    };
    // int_cmp already applied the operator.
    let int_operand = matches!(
        t.operand,
        Operand::SrcPort | Operand::DstPort | Operand::MsgLen
    );
    ActionResult::from_bool(if negate && !int_operand { !hit } else { hit })
}

/// A test that suspended for DNS, evaluated with the answer: `src_ip == host.name` (addresses of the
/// name, a forward lookup) or `src_ip == "host.name"` (names of the address, a reverse lookup, as
/// SER's comp_ip did).
fn test_resumed(t: &Test, ctx: &Ctx, result: &JobResult) -> bool {
    let ip = if t.operand == Operand::DstIp {
        ctx.dst.ip()
    } else {
        ctx.src.ip()
    };
    let hit = match (result, &t.value) {
        (JobResult::Addrs(a), _) => a.contains(&ip),
        (JobResult::Names(n), Value::Str(s)) => n.iter().any(|n| n.eq_ignore_ascii_case(s)),
        _ => false,
    };
    if t.op == CmpOp::Ne {
        !hit
    } else {
        hit
    }
}

fn method(ctx: &Ctx) -> &[u8] {
    if ctx.msg.is_request() {
        ctx.msg.method_bytes()
    } else {
        // A reply (onreply_route): the method of its CSeq.
        ctx.msg.cseq().map(|c| c.method).unwrap_or_default()
    }
}

fn str_cmp(v: &Value, s: &[u8]) -> bool {
    match v {
        Value::Str(x) => x.as_bytes().eq_ignore_ascii_case(s),
        Value::Regex(r) => r.is_match(s),
        _ => false,
    }
}

fn int_cmp(op: CmpOp, v: &Value, x: i64) -> bool {
    let Value::Int(n) = v else { return false };
    let n = *n;
    match op {
        CmpOp::Eq | CmpOp::Match => x == n,
        CmpOp::Ne => x != n,
        CmpOp::Gt => x > n,
        CmpOp::Lt => x < n,
        CmpOp::Ge => x >= n,
        CmpOp::Le => x <= n,
    }
}

fn ip_text(ip: IpAddr) -> SmallVec<[u8; 48]> {
    let mut buf = [0u8; 48];
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cur, "{ip}");
    let n = cur.position() as usize;
    SmallVec::from_slice(buf.get(..n).unwrap_or_default())
}
