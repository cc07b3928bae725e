//! The compiled routing script: what `controlplane::cfg` produces and the interpreter walks.
//!
//! # Shape
//! A [`Program`] holds every route block (`route`, `route[n]`, `failure_route[n]`, `onreply_route[n]`)
//! as a [`RouteBlock`]: a flat vector of [`Insn`] with jumps, no nesting. `if`/`else` and the
//! short-circuit `&&`/`||`/`!` of conditions are already turned into [`Insn::JumpIf`]/[`Insn::Jump`].
//! Everything a name used to stand for is resolved: module calls carry ([`ModuleId`], [`FunctionId`])
//! and fixed-up [`Arg`]s, regexes are compiled, addresses parsed, `route(n)` and `t_on_failure("n")`
//! point at a [`RouteId`]. Global options are the typed [`CoreOptions`]; module parameters are typed
//! values per loaded module ([`LoadedModule`]). The program is immutable, `Send + Sync`, and shared
//! through an `Arc` (one `Arc` taken per message, so a reload never changes a message mid-flight).
//!
//! # Execution model (implemented by [`mod@super::exec`])
//! State of one script run: a stack of frames `(RouteId, pc)` and one register `ret: i32`, the value
//! of the last action or test. SER semantics:
//! - Every action returns an `i32`: positive = success/true, negative = failure/false, **zero = stop**:
//!   the whole script run ends (like `drop`; SER 0.8 used it for "handled, e.g. retransmission absorbed").
//! - A condition is true when `ret > 0`. [`Insn::Test`] sets `ret` to `1` or `-1`; an action used as a
//!   condition (`if (!lookup("location"))`) is the same [`Insn::Core`]/[`Insn::Call`] as a statement.
//! - [`Insn::JumpIf`] jumps when `(ret > 0) == when`; [`Insn::Jump`] always jumps. Targets are indices
//!   into the same block's `code`; a target equal to `code.len()` means "end of block".
//! - [`Insn::Route`] pushes a frame for the callee; falling off the end of a block (or [`Insn::Break`])
//!   pops the frame and continues in the caller after the call. Popping the last frame ends the run.
//!   [`Insn::Drop`] ends the whole run (in a failure_route it also means "do not relay"). Nesting depth
//!   is limited to [`MAX_ROUTE_DEPTH`]; exceeding it is a run-time error (-1, logged).
//! - Each instruction is atomic. One that needs the DB, DNS or a process (a module [`Insn::Call`],
//!   or an [`Insn::Test`] against a [`Value::Host`], which needs a DNS answer) may return `Suspend(job)`: the frame stack and `pc` are saved in the message context, and when
//!   the job's answer arrives the result is written to `ret` and execution resumes at `pc + 1`. No
//!   instruction keeps state across a suspension, which is why conditions are flattened into jumps.

use std::net::IpAddr;

use regex_automata::meta::Regex;

use super::{FunctionId, ModuleId, RouteKinds};

/// Nesting limit for `route(n)` calls (SER's ROUTE_MAX_REC_LEV was 100).
pub const MAX_ROUTE_DEPTH: usize = 100;

/// Value of `max_len` in `len_gt(max_len)`: SER 0.8.11's BUF_SIZE (the guide says 3040; the source had
/// 65535, which is what this follows).
pub const BUF_SIZE: u32 = 65535;

/// Index into [`Program::routes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteId(pub u32);

/// The kind of a route block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// `route{}` / `route[n]{}`.
    Request,
    /// `failure_route[n]{}`.
    Failure,
    /// `onreply_route[n]{}`.
    OnReply,
}

impl RouteKind {
    /// The one-element [`RouteKinds`] set.
    pub fn kinds(self) -> RouteKinds {
        match self {
            RouteKind::Request => RouteKinds::REQUEST,
            RouteKind::Failure => RouteKinds::FAILURE,
            RouteKind::OnReply => RouteKinds::ONREPLY,
        }
    }
    /// Keyword in the script.
    pub fn keyword(self) -> &'static str {
        match self {
            RouteKind::Request => "route",
            RouteKind::Failure => "failure_route",
            RouteKind::OnReply => "onreply_route",
        }
    }
}

/// `[n]` or `[NAME]` of a route block; `route{}` is `Num(0)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteLabel {
    /// `route[3]`.
    Num(u32),
    /// `route[NAME]`.
    Name(String),
}

impl std::fmt::Display for RouteLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteLabel::Num(n) => write!(f, "{n}"),
            RouteLabel::Name(s) => f.write_str(s),
        }
    }
}

/// The whole compiled script.
#[derive(Debug)]
pub struct Program {
    /// Global options.
    pub options: CoreOptions,
    /// Loaded modules, in `loadmodule` order, with their parameter values.
    pub modules: Vec<LoadedModule>,
    /// All route blocks.
    pub routes: Vec<RouteBlock>,
    /// `route{}` / `route[0]{}`, entered for every request; `None` if the script has none.
    pub main_route: Option<RouteId>,
    /// The directory of the config file it was compiled from (`None`: compiled from text, or a
    /// file in the working directory): where modules look for relative file names.
    pub config_dir: Option<std::path::PathBuf>,
}

impl Program {
    /// The block with this id.
    pub fn route(&self, id: RouteId) -> &RouteBlock {
        &self.routes[id.0 as usize]
    }
    /// Find a block by kind and label (for tests and management; not for the hot path).
    pub fn find_route(&self, kind: RouteKind, label: &RouteLabel) -> Option<RouteId> {
        self.routes
            .iter()
            .position(|r| r.kind == kind && &r.label == label)
            .map(|i| RouteId(i as u32))
    }
    /// Parameters of a loaded module, if it is loaded.
    pub fn module(&self, id: ModuleId) -> Option<&LoadedModule> {
        self.modules.iter().find(|m| m.id == id)
    }
    /// Every call of a function of module `id` in the script, in block order (what a module
    /// resolves at load from its own calls, e.g. registrar's table names; not for the hot path).
    pub fn calls_of(&self, id: ModuleId) -> impl Iterator<Item = &ModuleCall> + '_ {
        self.routes.iter().flat_map(move |b| {
            b.code.iter().filter_map(move |i| match i {
                Insn::Call(c) if c.module == id => Some(c),
                _ => None,
            })
        })
    }
}

/// A loaded module and its parameter values.
#[derive(Debug, Clone)]
pub struct LoadedModule {
    /// Which module.
    pub id: ModuleId,
    /// The path given to `loadmodule` (for messages).
    pub path: String,
    /// One value per entry of the module's `params` table, defaults filled in.
    pub params: Vec<ParamValue>,
}

/// A typed module parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    /// Integer.
    Int(i64),
    /// String.
    Str(String),
    /// Not set and no default.
    Unset,
}

/// One route block.
#[derive(Debug)]
pub struct RouteBlock {
    /// Request, failure or onreply.
    pub kind: RouteKind,
    /// `[n]` / `[NAME]`.
    pub label: RouteLabel,
    /// Flat instruction vector.
    pub code: Vec<Insn>,
}

/// One instruction; see the module docs for the execution model.
#[derive(Debug, Clone)]
pub enum Insn {
    /// A core action; its result goes to `ret`.
    Core(CoreAction),
    /// A module function; its result goes to `ret`; may suspend.
    Call(ModuleCall),
    /// A pure test of the message; sets `ret` to 1 (true) or -1 (false).
    Test(Test),
    /// Jump to `to` when `(ret > 0) == when`.
    JumpIf {
        /// Condition polarity.
        when: bool,
        /// Target index in the block.
        to: u32,
    },
    /// Unconditional jump.
    Jump(u32),
    /// `route(n)`: call another request block.
    Route(RouteId),
    /// `break`: leave the current block, return to the caller.
    Break,
    /// `drop`: end the run (in failure_route: do not relay).
    Drop,
}

/// A resolved module function call.
#[derive(Debug, Clone)]
pub struct ModuleCall {
    /// Module.
    pub module: ModuleId,
    /// Its declaration (what the interpreter calls, without a registry lookup).
    pub decl: &'static super::ModuleDecl,
    /// Function in that module.
    pub function: FunctionId,
    /// Fixed-up arguments.
    pub args: Vec<Arg>,
}

/// A fixed-up argument.
#[derive(Debug, Clone)]
pub enum Arg {
    /// Kept as text.
    Str(String),
    /// Integer.
    Int(i64),
    /// Status code 100–699.
    StatusCode(u16),
    /// Compiled regex.
    Regex(Regex),
    /// Port.
    Port(u16),
    /// A route block (for `t_on_failure`).
    Route(RouteId),
}

/// Transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS.
    Tls,
    /// SCTP (a transport the shard may receive on; no script keyword names it yet).
    Sctp,
}

/// Host argument of `forward`/`send`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostArg {
    /// A literal address (no DNS).
    Ip(IpAddr),
    /// A host name (resolved by DNS when used).
    Name(String),
    /// `uri:host`: host of the current request URI.
    UriHost,
}

/// Port argument of `forward`/`send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortArg {
    /// Not given: SRV/5060 rules.
    Default,
    /// A number.
    Num(u16),
    /// `uri:port`: port of the current request URI (5060 if absent).
    UriPort,
}

/// Built-in actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreAction {
    /// `forward`, `forward_udp`, `forward_tcp`: stateless forward. `proto` None = as the URI says.
    Forward {
        /// Forced transport.
        proto: Option<Proto>,
        /// Destination host.
        host: HostArg,
        /// Destination port.
        port: PortArg,
    },
    /// `send`: send the message as is.
    Send {
        /// Forced transport.
        proto: Option<Proto>,
        /// Destination host.
        host: HostArg,
        /// Destination port.
        port: PortArg,
    },
    /// `log([level,] msg)`; printed when `level <= debug`.
    Log {
        /// Level (4 when omitted).
        level: i32,
        /// Text.
        message: String,
    },
    /// `setflag(n)`.
    SetFlag(u32),
    /// `resetflag(n)`.
    ResetFlag(u32),
    /// `isflagset(n)`.
    IsFlagSet(u32),
    /// `rewritehost`/`sethost`/`seth`.
    RewriteHost(String),
    /// `rewritehostport`/`sethostport`/`sethp`.
    RewriteHostPort(String),
    /// `rewriteuser`/`setuser`/`setu`.
    RewriteUser(String),
    /// `rewriteuserpass`/`setuserpass`/`setup`.
    RewriteUserPass(String),
    /// `rewriteport`/`setport`/`setp`.
    RewritePort(String),
    /// `rewriteuri`/`seturi`.
    RewriteUri(String),
    /// `revert_uri()`.
    RevertUri,
    /// `prefix("s")`.
    Prefix(String),
    /// `strip(n)`.
    Strip(u32),
    /// `append_branch(["uri"])`; `None` appends the current URI.
    AppendBranch(Option<String>),
    /// `len_gt(n)` / `len_gt(max_len)`.
    LenGt(u32),
}

/// The left-hand side of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operand {
    /// Request method.
    Method,
    /// Current request URI.
    Uri,
    /// Source address.
    SrcIp,
    /// Address the message was received on.
    DstIp,
    /// Source port.
    SrcPort,
    /// Local port.
    DstPort,
    /// Transport protocol.
    Proto,
    /// Address family of the source.
    Af,
    /// Message length.
    MsgLen,
}

/// Comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `=~`
    Match,
    /// `>`
    Gt,
    /// `<`
    Lt,
    /// `>=`
    Ge,
    /// `<=`
    Le,
}

/// An IP network `addr/prefix` (a plain address has the full prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    /// Network address (host bits as written).
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl IpNet {
    /// True if `ip` is inside the network (families must agree).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrFamily {
    /// IPv4 (`inet`).
    Inet,
    /// IPv6 (`inet6`).
    Inet6,
}

/// The right-hand side of a comparison, already in the form the operand needs.
#[derive(Debug, Clone)]
pub enum Value {
    /// A string (method name, URI, or a quoted address compared as text).
    Str(String),
    /// A compiled, case-insensitive regex.
    Regex(Regex),
    /// An address or network.
    Net(IpNet),
    /// A host name (compared after DNS resolution).
    Host(String),
    /// `myself`: one of our names, addresses or aliases.
    Myself,
    /// A number.
    Int(i64),
    /// A protocol.
    Proto(Proto),
    /// An address family.
    Af(AddrFamily),
}

/// A leaf condition: `operand op value`.
#[derive(Debug, Clone)]
pub struct Test {
    /// Left side.
    pub operand: Operand,
    /// Operator.
    pub op: CmpOp,
    /// Right side.
    pub value: Value,
}

/// A `listen=` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    /// `udp:`/`tcp:` prefix, if given.
    pub proto: Option<Proto>,
    /// Address or host name.
    pub host: String,
    /// `:port`, if given (otherwise the `port` option applies).
    pub port: Option<u16>,
}

/// Every global option of SER 0.8.11 with its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreOptions {
    /// `debug`: log threshold (0).
    pub debug: i32,
    /// `fork` (yes).
    pub fork: bool,
    /// `log_stderror` (no).
    pub log_stderror: bool,
    /// `listen` (repeatable; empty = all IPv4 interfaces).
    pub listen: Vec<ListenAddr>,
    /// `alias` (repeatable).
    pub alias: Vec<String>,
    /// `dns` (no).
    pub dns: bool,
    /// `rev_dns` (no).
    pub rev_dns: bool,
    /// `port` (5060).
    pub port: u16,
    /// `maxbuffer` (4 MiB, as Kamailio operators set it; the kernel caps it at net.core.rmem_max).
    pub maxbuffer: u32,
    /// `children` (8).
    pub children: u32,
    /// `check_via` (no).
    pub check_via: bool,
    /// `syn_branch` (yes).
    pub syn_branch: bool,
    /// `memlog` (L_DBG = 4).
    pub memlog: i32,
    /// `sip_warning` (yes).
    pub sip_warning: bool,
    /// `fifo` (none).
    pub fifo: Option<String>,
    /// `fifo_mode` (0660).
    pub fifo_mode: u32,
    /// `server_signature` (yes).
    pub server_signature: bool,
    /// `reply_to_via` (no).
    pub reply_to_via: bool,
    /// `user`/`uid` (none).
    pub user: Option<String>,
    /// `group`/`gid` (none).
    pub group: Option<String>,
    /// `mhomed` (no).
    pub mhomed: bool,
}

impl Default for CoreOptions {
    fn default() -> Self {
        CoreOptions {
            debug: 0,
            fork: true,
            log_stderror: false,
            listen: Vec::new(),
            alias: Vec::new(),
            dns: false,
            rev_dns: false,
            port: 5060,
            maxbuffer: 4 * 1024 * 1024,
            children: 8,
            check_via: false,
            syn_branch: true,
            memlog: 4,
            sip_warning: true,
            fifo: None,
            fifo_mode: 0o660,
            server_signature: true,
            reply_to_via: false,
            user: None,
            group: None,
            mhomed: false,
        }
    }
}

#[allow(dead_code)]
fn _program_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Program>();
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ipnet_contains() {
        let n = IpNet {
            addr: "192.168.0.0".parse().unwrap(),
            prefix: 16,
        };
        assert!(n.contains("192.168.4.5".parse().unwrap()));
        assert!(!n.contains("192.169.0.1".parse().unwrap()));
        let all = IpNet {
            addr: "0.0.0.0".parse().unwrap(),
            prefix: 0,
        };
        assert!(all.contains("10.0.0.1".parse().unwrap()));
        let v6 = IpNet {
            addr: "fe80::".parse().unwrap(),
            prefix: 10,
        };
        assert!(v6.contains("fe80::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
    }
}
