//! The routing script as the dataplane sees it: the module registry types and the compiled IR.
//!
//! - [`ir`]: what `controlplane::cfg` lowers `ser.cfg` to — a [`ir::Program`] of flat instruction
//!   vectors, resolved module calls, pre-compiled regexes and typed options. No names are looked up
//!   while a message runs.
//! - This file: the static declaration types every script module fills in (`modules/<name>.rs`):
//!   [`ModuleDecl`], [`FunctionDecl`], [`ParamDecl`], [`ArgKind`], [`RouteKinds`].
//!
//! Invariants: declaration tables are `'static` and never change at run time; a module is identified
//! by its index in [`crate::modules::ALL`] ([`ModuleId`]), a function by its index in its module's
//! `functions` table ([`FunctionId`]). The compiler resolves names to these ids once. A function's
//! implementation is the [`FunctionDecl::imp`] pointer ([`env::ModuleFn`]); `None` means "declared but
//! not implemented in this build": calling it logs that once and yields -1. A module's parameters
//! are resolved into its own typed settings once per loaded program ([`ModuleDecl::config`],
//! [`ModuleConfigs`], read with [`config`]); [`crate::modules::param`] is for that resolution, never for a
//! message.
//!
//! The interpreter: [`ctx`] (per-message state), [`mod@env`] (the boundary to I/O and what actions
//! return), [`mod@exec`] (`exec`/`resume` over the IR), [`uri_ops`] (request-URI rewriting), [`myself`] (SER's check_self).

pub mod ctx;
pub mod env;
pub mod exec;
pub mod ir;
pub mod myself;
pub mod uri_ops;

pub use ctx::Ctx;
pub use env::{ActionResult, Env, ModuleFn, ResumeFn, Target, TargetHost};
pub use exec::{exec, exec_route, resume, unimplemented_calls, Outcome};
pub use myself::Myself;

/// Index of a module in [`crate::modules::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleId(pub u16);

/// Index of a function in its module's [`ModuleDecl::functions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionId(pub u16);

/// The kinds of route block a script entry point can be; a set of them says where a function may be
/// called. (SER 0.8.11 had REQUEST_ROUTE and FAILURE_ROUTE; ONREPLY is for onreply_route blocks.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteKinds(u8);

impl RouteKinds {
    /// `route{}` and `route[n]{}`.
    pub const REQUEST: RouteKinds = RouteKinds(1);
    /// `failure_route[n]{}` (armed by `t_on_failure`).
    pub const FAILURE: RouteKinds = RouteKinds(2);
    /// `onreply_route[n]{}`.
    pub const ONREPLY: RouteKinds = RouteKinds(4);
    /// Request and failure routes: what most of tm, textops and exec allow.
    pub const REQUEST_FAILURE: RouteKinds = RouteKinds(1 | 2);
    /// Everywhere.
    pub const ANY: RouteKinds = RouteKinds(1 | 2 | 4);

    /// Union of two sets.
    pub const fn union(self, other: RouteKinds) -> RouteKinds {
        RouteKinds(self.0 | other.0)
    }
    /// True if every kind in `other` is in `self`.
    pub const fn contains(self, other: RouteKinds) -> bool {
        self.0 & other.0 == other.0
    }
    /// True if no kind is in the set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The empty set.
    pub const fn empty() -> RouteKinds {
        RouteKinds(0)
    }
}

/// How the compiler fixes up one argument (all module arguments are quoted strings in the script;
/// core actions also take bare numbers, addresses and host names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// Kept as a string.
    Str,
    /// A decimal integer (quoted or not).
    Int,
    /// A SIP status code, 100–699.
    StatusCode,
    /// A POSIX-extended regular expression, case-insensitive, compiled at load time.
    Regex,
    /// As [`ArgKind::Regex`] but `^`/`$` match at line boundaries and `.` stops at a newline
    /// (REG_NEWLINE: textops works on the whole header).
    RegexMultiLine,
    /// A host name or address.
    Host,
    /// A port number, 1–65535.
    Port,
    /// The number of a `failure_route[n]` block, which must exist (`t_on_failure("1")`).
    FailureRoute,
    /// The number of an `onreply_route[n]` block, which must exist (`t_on_reply("1")`).
    OnReplyRoute,
}

/// Why a function may not be used in some route kind (shown in the error message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restriction {
    /// e.g. "stateless reply; use t_reply".
    pub reason: &'static str,
}

/// One function a module exports to the script.
#[derive(Debug, Clone, Copy)]
pub struct FunctionDecl {
    /// The name used in the script.
    pub name: &'static str,
    /// Fix-up of each argument; `args.len()` is the maximum arity.
    pub args: &'static [ArgKind],
    /// Minimum number of arguments (equal to `args.len()` unless trailing ones are optional).
    pub min_args: u8,
    /// Route kinds where the function may be called.
    pub routes: RouteKinds,
    /// Said in the error when the function is used where `routes` forbids it.
    pub restriction: Option<Restriction>,
    /// One line for documentation tables and `--help`-style listings.
    pub doc: &'static str,
    /// The implementation; `None` until the module's issue provides it.
    pub imp: Option<env::ModuleFn>,
}

impl FunctionDecl {
    /// A function whose arguments are all required.
    pub const fn new(
        name: &'static str,
        args: &'static [ArgKind],
        routes: RouteKinds,
        doc: &'static str,
    ) -> FunctionDecl {
        FunctionDecl {
            name,
            args,
            min_args: args.len() as u8,
            routes,
            restriction: None,
            doc,
            imp: None,
        }
    }
    /// Maximum number of arguments.
    pub const fn max_args(&self) -> usize {
        self.args.len()
    }
    /// Same declaration, with fewer required arguments.
    pub const fn min(mut self, min_args: u8) -> FunctionDecl {
        self.min_args = min_args;
        self
    }
    /// Same declaration, implemented by `f`.
    pub const fn implemented_by(mut self, f: env::ModuleFn) -> FunctionDecl {
        self.imp = Some(f);
        self
    }
    /// Same declaration, with the reason shown when used in a forbidden route kind.
    pub const fn restricted(mut self, reason: &'static str) -> FunctionDecl {
        self.restriction = Some(Restriction { reason });
        self
    }
}

/// Type of a module parameter. SER's lexer turns `yes`/`no` into 1/0, so booleans are [`ParamType::Int`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// Integer (also `yes`/`no`/`on`/`off`/`true`/`false`).
    Int,
    /// Quoted string.
    Str,
}

/// Default of a module parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamDefault {
    /// Integer default.
    Int(i64),
    /// String default.
    Str(&'static str),
    /// No default (unset).
    None,
}

/// One parameter settable with `modparam`.
#[derive(Debug, Clone, Copy)]
pub struct ParamDecl {
    /// Name used in `modparam("module", "name", value)`.
    pub name: &'static str,
    /// Value type.
    pub ty: ParamType,
    /// Value when the script does not set it.
    pub default: ParamDefault,
}

impl ParamDecl {
    /// Integer parameter.
    pub const fn int(name: &'static str, default: i64) -> ParamDecl {
        ParamDecl {
            name,
            ty: ParamType::Int,
            default: ParamDefault::Int(default),
        }
    }
    /// String parameter.
    pub const fn str(name: &'static str, default: &'static str) -> ParamDecl {
        ParamDecl {
            name,
            ty: ParamType::Str,
            default: ParamDefault::Str(default),
        }
    }
    /// String parameter without default.
    pub const fn str_unset(name: &'static str) -> ParamDecl {
        ParamDecl {
            name,
            ty: ParamType::Str,
            default: ParamDefault::None,
        }
    }
}

/// A name the documents use that 0.8.11 renamed or dropped.
#[derive(Debug, Clone, Copy)]
pub struct Renamed {
    /// The old name.
    pub old: &'static str,
    /// The new name in the same module, accepted as an alias with a warning; `None`: rejected.
    pub new: Option<&'static str>,
    /// What to tell the user.
    pub note: &'static str,
}

/// A script module: what `loadmodule` makes available.
#[derive(Debug)]
pub struct ModuleDecl {
    /// Base name of the shared object in SER (`tm` for `…/tm.so`).
    pub name: &'static str,
    /// Other names `modparam` accepts (vm registers as "voicemail").
    pub aliases: &'static [&'static str],
    /// Modules that must be loaded too (checked with a warning).
    pub depends: &'static [&'static str],
    /// Exported script functions.
    pub functions: &'static [FunctionDecl],
    /// Parameters.
    pub params: &'static [ParamDecl],
    /// Old function names.
    pub renamed_functions: &'static [Renamed],
    /// Old parameter names.
    pub renamed_params: &'static [Renamed],
    /// One line describing the module.
    pub doc: &'static str,
    /// The module's settings from its parameters, resolved once per loaded program (see
    /// [`ModuleConfigs`]); `None` for a module without settings worth resolving.
    pub config: Option<ConfigFn>,
    /// The management commands it exports (FIFO and JSON-RPC), served while a program that
    /// loads it runs.
    pub commands: &'static [crate::command::CommandDecl],
}

impl ModuleDecl {
    /// Function by script name.
    pub fn function(&self, name: &str) -> Option<(FunctionId, &'static FunctionDecl)> {
        self.functions
            .iter()
            .position(|f| f.name == name)
            .map(|i| (FunctionId(i as u16), &self.functions[i]))
    }
    /// Parameter by name.
    pub fn param(&self, name: &str) -> Option<(usize, &'static ParamDecl)> {
        self.params
            .iter()
            .position(|p| p.name == name)
            .map(|i| (i, &self.params[i]))
    }
    /// True if `name` is this module's name or one of its aliases.
    pub fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.aliases.contains(&name)
    }
}

/// A module's settings, typed by the module, resolved from a program's parameters.
pub type ModuleConfig = std::sync::Arc<dyn std::any::Any + Send + Sync>;

/// How a module resolves its settings from a program (called once per load, never per message).
pub type ConfigFn = fn(&ir::Program) -> ModuleConfig;

/// The resolved settings of the loaded modules of one program: what a module function reads
/// instead of looking its parameters up by name while a message runs. Found by type (each module
/// has its own config type); a handful of entries, compared by `TypeId`.
#[derive(Clone, Default)]
pub struct ModuleConfigs {
    entries: Box<[ModuleConfig]>,
    /// The completion hooks of the loaded modules ([`crate::modules::COMPLETION_HOOKS`]); empty
    /// when no loaded module has one, and then transactions do not report their completion at all.
    completion: Box<[CompletionFn]>,
}

impl std::fmt::Debug for ModuleConfigs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ModuleConfigs({} entries)", self.entries.len())
    }
}

impl ModuleConfigs {
    /// Settings resolved by the modules' [`ConfigFn`]s.
    pub fn new(entries: Vec<ModuleConfig>) -> ModuleConfigs {
        ModuleConfigs {
            entries: entries.into(),
            completion: Box::default(),
        }
    }

    /// Same settings, with the loaded modules' completion hooks.
    pub fn with_completion(mut self, hooks: Vec<CompletionFn>) -> ModuleConfigs {
        self.completion = hooks.into();
        self
    }

    /// The completion hooks of the loaded modules (see [`Completion`]).
    pub fn completion_hooks(&self) -> &[CompletionFn] {
        &self.completion
    }

    /// Whether a loaded module wants to hear when transactions complete: what the transaction
    /// layer asks once per transaction it creates.
    pub fn wants_completion(&self) -> bool {
        !self.completion.is_empty()
    }

    /// The settings of type `T`, when a loaded module resolved them.
    pub fn get<T: std::any::Any>(&self) -> Option<&T> {
        self.entries.iter().find_map(|e| e.downcast_ref::<T>())
    }
}

/// A module's settings for the program `env` runs: the ones resolved at load (borrowed), or —
/// where the environment has none, as in tests and tools — resolved now from `env.program()`.
pub fn config<'e, T: std::any::Any + Clone>(
    env: &'e dyn Env,
    resolve: impl FnOnce(Option<&ir::Program>) -> T,
) -> std::borrow::Cow<'e, T> {
    match env.configs().and_then(ModuleConfigs::get::<T>) {
        Some(c) => std::borrow::Cow::Borrowed(c),
        None => std::borrow::Cow::Owned(resolve(env.program())),
    }
}

/// A module parameter value borrowed from the program (or a static default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamRef<'a> {
    /// Integer.
    Int(i64),
    /// String.
    Str(&'a str),
    /// Not set and no default.
    Unset,
}

impl<'a> ParamRef<'a> {
    /// The integer value (a string that is a number counts, as SER's `yes`/`no` flags are ints).
    pub fn int(self) -> Option<i64> {
        match self {
            ParamRef::Int(i) => Some(i),
            ParamRef::Str(s) => s.trim().parse().ok(),
            ParamRef::Unset => None,
        }
    }
    /// The string value.
    pub fn str(self) -> Option<&'a str> {
        match self {
            ParamRef::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A stateful transaction that has completed: its first final reply went upstream (after any
/// failure_route, so this is the final outcome of serial forking). Also given for a 183
/// (Session Progress) sent upstream before that (`code` 183: early media, not the outcome;
/// a hook that wants only outcomes skips `code < 200`). What a module's completion
/// hook ([`CompletionFn`], listed in [`crate::modules::COMPLETION_HOOKS`]) is given; the hook
/// parses what it needs from the bytes (nothing is parsed for it in advance).
#[derive(Debug, Clone, Copy)]
pub struct Completion<'a> {
    /// The request as routed (script edits applied, Request-URI as received).
    pub request: &'a bytes::Bytes,
    /// The request as sent on the branch whose reply won, when one did (its Request-URI is the
    /// outbound one); `None` for a reply ser made itself (`t_reply`, 408, 500).
    pub branch: Option<&'a bytes::Bytes>,
    /// The final status sent upstream.
    pub code: u16,
    /// The reply as sent upstream.
    pub reply: &'a bytes::Bytes,
    /// The script flags of the transaction (as the failure_route left them, when one ran).
    pub flags: u32,
    /// Where the request came from.
    pub src: std::net::SocketAddr,
}

/// A module's completion hook: called on the shard for every completed transaction while the
/// module is loaded. It must not block (post to [`crate::services::Services::db`] or log).
pub type CompletionFn = fn(&Completion<'_>, &ModuleConfigs, Option<&crate::services::Services>);
