//! The boundary between the interpreter and the outside world: the [`Env`] trait, what actions
//! return ([`ActionResult`]), and the signatures of module function implementations ([`ModuleFn`],
//! [`ResumeFn`]).
//!
//! Invariants: nothing behind `Env` blocks. An action that needs an answer it does not have yet
//! returns [`ActionResult::Suspend`] with a [`Job`]; the shard parks the [`Ctx`] and calls
//! [`super::exec::resume`] with the job's result. The shard implements `Env` (sockets, timers, the
//! DNS cache); tests implement it with a recording mock.

use std::net::IpAddr;
use std::time::Instant;

use super::ctx::Ctx;
use super::ir::{Arg, Program, Proto};
use super::myself::Myself;
use super::{FunctionId, ModuleId};
use crate::offload::{Job, JobResult};
use crate::services::Services;

/// SER's log levels (`log(level, "…")` prints when `level <= debug`).
pub mod level {
    /// L_ALERT.
    pub const ALERT: i32 = -3;
    /// L_CRIT.
    pub const CRIT: i32 = -2;
    /// L_ERR.
    pub const ERR: i32 = -1;
    /// L_WARN.
    pub const WARN: i32 = 1;
    /// L_NOTICE.
    pub const NOTICE: i32 = 2;
    /// L_INFO.
    pub const INFO: i32 = 3;
    /// L_DBG (the level of `log("…")` without a level).
    pub const DBG: i32 = 4;
}

/// What one action (core action, module function, test) gives back to the interpreter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionResult {
    /// A value for `ret`: positive = true/success, negative = false/failure, **0 = stop the script**.
    Ret(i32),
    /// The action needs a job done first; the script resumes after this instruction with the job's
    /// result (see [`Ctx::suspend_with`] to post-process it).
    Suspend(Job),
    /// End the script run now, as `drop` does (in a failure_route: do not relay).
    Drop,
}

impl ActionResult {
    /// `Ret(1)` for true, `Ret(-1)` for false.
    pub fn from_bool(b: bool) -> ActionResult {
        ActionResult::Ret(if b { 1 } else { -1 })
    }
}

/// A module function implementation: the message context, the environment, and the arguments as
/// the compiler fixed them up (see the function's [`super::ArgKind`]s).
pub type ModuleFn = fn(&mut Ctx, &mut dyn Env, &[Arg]) -> ActionResult;

/// What an action that suspended runs when its job's answer arrives (set with
/// [`Ctx::suspend_with`]): the context, the environment, the arguments of the call that suspended
/// (as fixed up at compile time) and the job's result. Its result becomes `ret` (it may suspend
/// again).
pub type ResumeFn = fn(&mut Ctx, &mut dyn Env, &[Arg], JobResult) -> ActionResult;

/// The host of a [`Target`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetHost<'a> {
    /// A literal address: no DNS needed.
    Ip(IpAddr),
    /// A host name, to be resolved (RFC 3263: NAPTR/SRV when no port is given, else A/AAAA).
    Name(&'a [u8]),
}

/// Where `forward`/`send` sends the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// Where the current request URI ([`Ctx::uri`]) points, RFC 3263 rules on its host, port and
    /// `transport` parameter (what `t_relay` and a URI-driven forward use).
    Uri,
    /// An explicit host (`forward(10.0.0.1, 5060)`), or `uri:host`/`uri:port` already taken from the
    /// current request URI by the interpreter.
    Host {
        /// Host.
        host: TargetHost<'a>,
        /// Port; `None` = not given (SRV, else 5060).
        port: Option<u16>,
    },
}

/// The outside world as the interpreter and module functions see it. Nothing here may block.
pub trait Env {
    /// Stateless forward (`forward`, `forward_udp`, `forward_tcp`) of `ctx.msg` to `target`, with
    /// `proto` forced or (`None`) chosen by the URI / RFC 3263. The request goes out with
    /// [`Ctx::uri`] as its Request-URI (see [`Ctx::commit_uri`]). Returns `Ret(1)` on success,
    /// `Ret(-1)` on failure, or `Suspend` for a DNS job.
    fn forward(&mut self, ctx: &mut Ctx, target: &Target<'_>, proto: Option<Proto>)
        -> ActionResult;

    /// `send`: send the message as it is (no Via added, Request-URI untouched) to `target`.
    fn send(&mut self, ctx: &mut Ctx, target: &Target<'_>, proto: Option<Proto>) -> ActionResult;

    /// Write one log line at SER level `level` (see [`level`]); the interpreter has already checked
    /// it against the `debug` threshold.
    fn log(&mut self, level: i32, msg: &[u8]);

    /// The current time (the shard's clock; tests use virtual time).
    fn now(&self) -> Instant;

    /// Runs a module function itself instead of its declaration's `imp`: for state the
    /// environment owns (the shard runs tm's functions over its transaction table; tests run
    /// fakes). `None`: the declaration's `imp` runs. Asked for every module call, so an
    /// implementation answers `None` at once for the modules it does not handle.
    fn call(
        &mut self,
        _module: ModuleId,
        _function: FunctionId,
        _ctx: &mut Ctx,
        _args: &[Arg],
    ) -> Option<ActionResult> {
        None
    }

    /// The `hash:label` of the request's transaction for a party outside ser (vm's media server
    /// answers through the FIFO's `t_reply` with it); `None` without a transaction table.
    fn transaction_id(&self, _ctx: &Ctx) -> Option<String> {
        None
    }

    /// SER's `t_addblind`: someone outside the script will answer the request's transaction
    /// (through the FIFO's `t_reply`); without an answer within `fr_timer` it gets a 408.
    fn add_blind(&mut self, _ctx: &Ctx) -> bool {
        false
    }

    /// Our names and addresses (`myself`), parsed once from the running program's options; `None`
    /// makes the interpreter read the options on each `myself` test. Must describe the same program
    /// as the one being run.
    fn myself(&self) -> Option<&Myself> {
        None
    }

    /// Answer "is `ip` one of the addresses of `name`?" from a DNS cache, without blocking:
    /// `Some(answer)` when known, `None` to make the interpreter suspend with a DNS [`Job`].
    fn host_has_addr(&mut self, _name: &str, _ip: IpAddr) -> Option<bool> {
        None
    }

    /// Answer "is `name` one of the reverse-DNS names of `ip`?" from a cache, without blocking:
    /// `Some(answer)` when known, `None` to suspend with a reverse DNS [`Job`]. Default: as
    /// [`Env::host_has_addr`] (environments with one table of names serve both).
    fn ip_has_name(&mut self, name: &str, ip: IpAddr) -> Option<bool> {
        self.host_has_addr(name, ip)
    }

    /// Send a stateless reply to the request in `ctx` (module `sl`): the shard builds it as RFC 3261
    /// §8.2.6 says (3xx replies list the destination set as Contacts) and sends it back. Default: not
    /// possible here (`Ret(-1)`).
    fn reply(&mut self, _ctx: &mut Ctx, _code: u16, _reason: &[u8]) -> ActionResult {
        ActionResult::Ret(-1)
    }

    /// State shared by all shards (location bindings, credentials, the DB write queue). Default:
    /// none (module functions that need it fail).
    fn services(&self) -> Option<&Services> {
        None
    }

    /// The loaded modules' settings, resolved once for the program being run (see
    /// [`super::config`]). Default: none (modules resolve them from [`Env::program`] per call).
    fn configs(&self) -> Option<&super::ModuleConfigs> {
        None
    }

    /// The program being run (module parameters: see [`super::config`]). Default: none
    /// (modules use their parameters' defaults).
    fn program(&self) -> Option<&Program> {
        None
    }

    /// What every shard shares, for a module that starts transactions of its own (msilo's
    /// deliveries go out through `Shared::uac`, and their completions reach the services from
    /// another shard's thread). Default: none (such functions fail).
    fn shared(&self) -> Option<&crate::proxy::shared::Shared> {
        None
    }
}
