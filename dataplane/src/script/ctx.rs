//! [`Ctx`]: everything one script run knows about one message — the message itself (with its edit
//! list), where it came from, the current request URI ("new_uri" in SER), the destination set, the
//! 32 script flags, and the interpreter's saved position while it waits for a job.
//!
//! Invariants:
//! - The received Request-URI is never modified here: [`Ctx::uri`] is the rewritten one when there is
//!   one, else the received one; [`Ctx::revert_uri`] forgets the rewrite. [`Ctx::commit_uri`] records
//!   the current URI as an edit of the message (what a forward does just before writing).
//! - A request has at most `max_branches` branches (SER's MAX_BRANCHES, 12 by default): the current
//!   URI is branch 0, so the destination set holds at most `max_branches - 1` more URIs (SER's
//!   `nr_branches == MAX_BRANCHES - 1` check), each shorter than [`MAX_URI_SIZE`].
//! - Buffers are inline (`SmallVec`) for typical sizes: building a `Ctx` and rewriting a URI do not
//!   allocate.

use std::net::SocketAddr;

use smallvec::SmallVec;

use super::env::{level, ActionResult, Env, ResumeFn};
use super::ir::{Proto, RouteId, RouteKind};
use crate::offload::Job;
use crate::wire::{EditError, Message};

/// SER's MAX_BRANCHES: the default number of branches of a request, the request URI included.
pub const MAX_BRANCHES: usize = 12;

/// SER's MAX_URI_SIZE: a URI appended to the destination set must be shorter.
pub const MAX_URI_SIZE: usize = 1024;

/// An owned URI (inline up to 128 bytes).
pub type UriBuf = SmallVec<[u8; 128]>;

/// The additional branches of a request (`append_branch`, `lookup` with several contacts…).
#[derive(Debug, Clone)]
pub struct DestinationSet {
    branches: SmallVec<[UriBuf; 2]>,
    max: usize,
}

impl DestinationSet {
    /// An empty set holding at most `max` URIs (besides the request URI).
    pub fn new(max: usize) -> DestinationSet {
        DestinationSet {
            branches: SmallVec::new(),
            max,
        }
    }
    /// Appends a branch; `false` (nothing appended) when the set is full.
    pub fn push(&mut self, uri: &[u8]) -> bool {
        if self.branches.len() >= self.max {
            return false;
        }
        self.branches.push(UriBuf::from_slice(uri));
        true
    }
    /// The branches, in the order appended.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.branches.iter().map(|b| &b[..])
    }
    /// Number of branches.
    pub fn len(&self) -> usize {
        self.branches.len()
    }
    /// True when there is no branch.
    pub fn is_empty(&self) -> bool {
        self.branches.is_empty()
    }
    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }
    /// Forgets every branch.
    pub fn clear(&mut self) {
        self.branches.clear();
    }
}

/// One active route block: which one, and the index of the instruction being run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame {
    pub route: RouteId,
    pub pc: u32,
}

/// Where the interpreter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunState {
    /// No run started, or the last one ended.
    Idle,
    /// Waiting for a job's result.
    Suspended,
}

/// The destination of a `forward`/`send` that waits for a DNS answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTarget {
    /// Port given (or taken from the URI); `None` = default.
    pub port: Option<u16>,
    /// Transport forced by the action (`forward_tcp`…).
    pub proto: Option<crate::script::ir::Proto>,
    /// `send` (as is) rather than `forward` (with our Via).
    pub send: bool,
}

/// Per-message state of modules, one slot per type: the interpreter never looks inside. A module
/// keeps what it knows about the message being run here (tm its transaction and the armed
/// failure_route, auth the credentials that passed, registrar a `save` waiting for the database),
/// across suspensions too; the slots are dropped with the context. Nothing is allocated for a
/// message whose modules keep nothing.
#[derive(Default)]
pub struct ModuleState(SmallVec<[Box<dyn std::any::Any + Send>; 2]>);

impl std::fmt::Debug for ModuleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ModuleState({} slots)", self.0.len())
    }
}

impl ModuleState {
    /// The slot of type `T`.
    pub fn get<T: std::any::Any + Send>(&self) -> Option<&T> {
        self.0.iter().find_map(|b| b.downcast_ref::<T>())
    }
    /// The slot of type `T`, to change.
    pub fn get_mut<T: std::any::Any + Send>(&mut self) -> Option<&mut T> {
        self.0.iter_mut().find_map(|b| b.downcast_mut::<T>())
    }
    /// The slot of type `T`, made (default) when missing.
    pub fn get_or_default<T: std::any::Any + Send + Default>(&mut self) -> &mut T {
        let i = match self.0.iter().position(|b| b.is::<T>()) {
            Some(i) => i,
            None => {
                self.0.push(Box::new(T::default()));
                self.0.len() - 1
            }
        };
        // Invariant: slot `i` holds a `T` (found by type, or just pushed).
        self.0[i]
            .downcast_mut::<T>()
            .expect("slot found or made for this type")
    }
    /// Stores `v` in the slot of its type, replacing what was there.
    pub fn set<T: std::any::Any + Send>(&mut self, v: T) {
        match self.get_mut::<T>() {
            Some(slot) => *slot = v,
            None => self.0.push(Box::new(v)),
        }
    }
    /// Drops every slot.
    pub fn clear(&mut self) {
        self.0.clear();
    }
    /// Takes the slot of type `T` out.
    pub fn take<T: std::any::Any + Send>(&mut self) -> Option<T> {
        let i = self.0.iter().position(|b| b.is::<T>())?;
        self.0.swap_remove(i).downcast::<T>().ok().map(|b| *b)
    }
}

/// The per-message context of a script run.
#[derive(Debug)]
pub struct Ctx {
    /// The message being routed; edits are recorded on it.
    pub msg: Message,
    /// Where it came from.
    pub src: SocketAddr,
    /// The local address it was received on.
    pub dst: SocketAddr,
    /// The transport it arrived over.
    pub proto: Proto,
    /// Header fields to add to a reply ser generates for this request (`append_to_reply`): complete
    /// `Name: value\r\n` lines.
    pub reply_headers: SmallVec<[u8; 64]>,
    /// A `forward`/`send` waiting for DNS: what to send to once the name resolves (set by the shard's
    /// environment when it suspends, taken when the answer arrives).
    pub pending_target: Option<PendingTarget>,
    /// The last internal error of an action, as the status a reply to it carries (SER's
    /// `ser_error`, which `sl_reply_error` answers with).
    pub last_error: Option<(u16, &'static str)>,
    /// The next hop when it is not the request URI (SER 0.9's `dst_uri`): `loose_route` sets it to
    /// the top Route when that is a loose router. Forwarding to the request URI (`t_relay`,
    /// a URI-driven forward) must send there instead, leaving the Request-URI as it is.
    pub dst_uri: Option<UriBuf>,
    /// What the modules keep about this message ([`ModuleState`]).
    pub module_state: ModuleState,
    new_uri: Option<UriBuf>,
    dset: DestinationSet,
    flags: u32,
    kind: RouteKind,
    /// `debug` of the running program (log threshold), set when a run starts.
    pub(crate) debug: i32,
    pub(crate) frames: SmallVec<[Frame; 8]>,
    pub(crate) ret: i32,
    pub(crate) state: RunState,
    pub(crate) on_resume: Option<ResumeFn>,
}

impl Ctx {
    /// Makes this context what [`Ctx::new`] would make for the message already in `self.msg`
    /// (a shard keeps one context and parses each request into it). Every field is named, so
    /// a new one cannot be forgotten here.
    pub fn reset(&mut self, src: SocketAddr, dst: SocketAddr, proto: Proto) {
        let Ctx {
            msg: _,
            src: s,
            dst: d,
            proto: p,
            reply_headers,
            pending_target,
            last_error,
            dst_uri,
            module_state,
            new_uri,
            dset,
            flags,
            kind,
            debug,
            frames,
            ret,
            state,
            on_resume,
        } = self;
        *s = src;
        *d = dst;
        *p = proto;
        reply_headers.clear();
        *pending_target = None;
        *last_error = None;
        *dst_uri = None;
        module_state.clear();
        *new_uri = None;
        *dset = DestinationSet::new(MAX_BRANCHES - 1);
        *flags = 0;
        *kind = RouteKind::Request;
        *debug = 0;
        frames.clear();
        *ret = 1;
        *state = RunState::Idle;
        *on_resume = None;
    }

    /// A context for a message received from `src` on local address `dst` over `proto`.
    #[inline]
    pub fn new(msg: Message, src: SocketAddr, dst: SocketAddr, proto: Proto) -> Ctx {
        Ctx {
            msg,
            src,
            dst,
            proto,
            reply_headers: SmallVec::new(),
            pending_target: None,
            last_error: None,
            dst_uri: None,
            module_state: ModuleState::default(),
            new_uri: None,
            dset: DestinationSet::new(MAX_BRANCHES - 1),
            flags: 0,
            kind: RouteKind::Request,
            debug: 0,
            frames: SmallVec::new(),
            ret: 1,
            state: RunState::Idle,
            on_resume: None,
        }
    }

    /// Same context with another branch limit (SER's MAX_BRANCHES: the request URI included, so the
    /// destination set takes `max - 1` URIs).
    pub fn with_max_branches(mut self, max: usize) -> Ctx {
        self.dset.max = max.saturating_sub(1);
        self
    }

    // ------------------------------------------------------------------ request URI

    /// The current request URI: the rewritten one, else the received one (empty for a reply).
    pub fn uri(&self) -> &[u8] {
        match &self.new_uri {
            Some(u) => u,
            None => self.original_uri(),
        }
    }

    /// The Request-URI as received.
    pub fn original_uri(&self) -> &[u8] {
        self.msg.request_uri_bytes().unwrap_or_default()
    }

    /// True when the script rewrote the request URI (and did not revert it).
    pub fn uri_rewritten(&self) -> bool {
        self.new_uri.is_some()
    }

    /// Replaces the current request URI.
    pub fn set_uri(&mut self, uri: &[u8]) {
        match &mut self.new_uri {
            Some(b) => {
                b.clear();
                b.extend_from_slice(uri);
            }
            None => self.new_uri = Some(UriBuf::from_slice(uri)),
        }
    }

    /// Goes back to the received request URI (`revert_uri`).
    pub fn revert_uri(&mut self) {
        self.new_uri = None;
    }

    /// Records the current request URI as an edit of the message, when it was rewritten (the shard
    /// calls this before writing a forwarded request).
    pub fn commit_uri(&mut self) -> Result<(), EditError> {
        match &self.new_uri {
            Some(u) => self.msg.set_request_uri(u),
            None => Ok(()),
        }
    }

    // ------------------------------------------------------------------ destination set

    /// The destination set (without the current URI).
    pub fn dset(&self) -> &DestinationSet {
        &self.dset
    }

    /// Appends a branch; `false` when the set is full (the caller logs "too many branches").
    pub fn append_branch(&mut self, uri: &[u8]) -> bool {
        self.dset.push(uri)
    }

    /// [`Ctx::append_branch`] with SER's checks and error lines (`None` = the current URI): -1 and a
    /// log line when the set is full or the URI too long. What `append_branch()` and modules
    /// (`lookup`, `exec_dset`) use.
    pub fn append_branch_checked(&mut self, env: &mut dyn Env, uri: Option<&[u8]>) -> i32 {
        let cur: UriBuf;
        let uri = match uri {
            Some(u) => u,
            None => {
                cur = UriBuf::from_slice(self.uri());
                &cur
            }
        };
        let err: Option<&str> = if self.dset.len() >= self.dset.max {
            Some("ERROR: append_branch: max nr of branches exceeded (too many branches)")
        } else if uri.len() > MAX_URI_SIZE - 1 {
            Some("ERROR: append_branch: too long uri")
        } else if uri.is_empty() {
            Some("ERROR: append_branch: no URI to append")
        } else {
            None
        };
        match err {
            Some(e) => {
                if self.log_enabled(level::ERR) {
                    env.log(level::ERR, e.as_bytes());
                }
                -1
            }
            None => {
                self.dset.push(uri);
                1
            }
        }
    }

    /// Empties the destination set.
    pub fn clear_branches(&mut self) {
        self.dset.clear();
    }

    // ------------------------------------------------------------------ flags

    /// All 32 flags, bit n = flag n.
    pub fn flags(&self) -> u32 {
        self.flags
    }
    /// Whether flag `n` (0–31) is set; `false` for any other `n`.
    pub fn is_flag_set(&self, n: u32) -> bool {
        n < 32 && self.flags & (1 << n) != 0
    }
    /// Sets flag `n`; `false` when `n` is not 0–31.
    pub fn set_flag(&mut self, n: u32) -> bool {
        if n >= 32 {
            return false;
        }
        self.flags |= 1 << n;
        true
    }
    /// Resets flag `n`; `false` when `n` is not 0–31.
    pub fn reset_flag(&mut self, n: u32) -> bool {
        if n >= 32 {
            return false;
        }
        self.flags &= !(1 << n);
        true
    }

    // ------------------------------------------------------------------ run state

    /// The kind of route block being run (or last run).
    pub fn route_kind(&self) -> RouteKind {
        self.kind
    }
    pub(crate) fn set_route_kind(&mut self, kind: RouteKind) {
        self.kind = kind;
    }

    /// The value of the last action or test.
    pub fn ret(&self) -> i32 {
        self.ret
    }

    /// True while the run waits for a job's result.
    pub fn is_suspended(&self) -> bool {
        self.state == RunState::Suspended
    }

    /// True when a log line at `level` passes the program's `debug` threshold.
    pub fn log_enabled(&self, level: i32) -> bool {
        level <= self.debug
    }

    /// Suspends the current action with `job`; when its result arrives, `then` turns it into the
    /// action's value (e.g. exec_dset parses the command's output into the destination set).
    pub fn suspend_with(&mut self, job: Job, then: ResumeFn) -> ActionResult {
        self.on_resume = Some(then);
        ActionResult::Suspend(job)
    }
}
