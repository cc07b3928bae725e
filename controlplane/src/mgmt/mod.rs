//! Management: one command registry, three front ends.
//!
//! - [`Registry`]: name → handler. A handler takes the parameter lines and returns a [`Reply`]:
//!   SER's status code and reason, the body lines, and (optionally) the same data structured for
//!   JSON. Lookup ignores case (SER used `strcasecmp`). `which` is answered by the registry itself.
//! - [`fifo`]: SER 0.8.11's FIFO server protocol (`fifo`, `fifo_mode`, `-i`), byte-compatible with
//!   serctl, serweb's `write2fifo` and the Admin Guide's shell examples.
//! - [`jsonrpc`]: JSON-RPC 2.0 over a unix stream socket (one JSON value per line) and over HTTP.
//! - [`http`]: axum server with `POST /rpc`, `GET /metrics` (Prometheus text), `/health`, `/ready`;
//!   bound to loopback unless configured, and then only with a bearer token.
//! - [`core`]: the core command set (ps, which, arg, pwd, version, uptime, print).
//! - Module commands (t_stats, ul_*, sl_stats…) are declared by the modules
//!   ([`dataplane::command::CommandDecl`] in their `ModuleDecl`) and registered with
//!   [`Registry::register_module`]: served, and listed by `which`, only while the running program
//!   loads their module.
//!
//! Invariants: the registry is built before the front ends start and never changes afterwards
//! (shared as `Arc<Registry>`); handlers never run on a shard; a sync handler runs on tokio's
//! blocking pool (it may compile a config), an async one (t_uac_dlg waits for a final reply) as a
//! task. Every request gets exactly one reply, also for unknown commands and bad parameters.

pub mod core;
pub mod fifo;
pub mod http;
pub mod jsonrpc;
pub mod metrics;

use std::sync::Arc;

use dataplane::command::{CommandDecl, Handler as ModuleHandler, Host};
use serde_json::json;

pub use dataplane::command::{bad_params, not_available, Framing, Reply, ReplyFuture};

type SyncFn = dyn Fn(&[String]) -> Reply + Send + Sync;
type AsyncFn = dyn Fn(Vec<String>) -> ReplyFuture + Send + Sync;

#[derive(Clone)]
enum Handler {
    Sync(Arc<SyncFn>),
    Async(Arc<AsyncFn>),
    Which,
}

/// One registered command.
#[derive(Clone)]
pub struct Command {
    pub name: &'static str,
    /// One line for `help`-style listings (JSON-RPC `system.listMethods` callers).
    pub help: &'static str,
    pub framing: Framing,
    /// The module that exports it (`None`: the core's and the integrator's own).
    pub module: Option<&'static str>,
    handler: Handler,
}

/// Whether a module is loaded by the running program (asked per request: a reload may change it).
pub type LoadedFn = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The commands every front end serves.
#[derive(Clone, Default)]
pub struct Registry {
    commands: Vec<Command>,
    loaded: Option<LoadedFn>,
}

impl Registry {
    /// An empty registry (see [`core::register`] for the core set, including `which`).
    pub fn new() -> Registry {
        Registry::default()
    }

    fn add(&mut self, c: Command) -> Result<(), String> {
        if self.lookup(c.name).is_some() {
            // SER: "attempt to register synonyms".
            return Err(format!("management command '{}' registered twice", c.name));
        }
        self.commands.push(c);
        Ok(())
    }

    /// Registers a command whose parameters are lines up to the empty line.
    pub fn register<F>(
        &mut self,
        name: &'static str,
        help: &'static str,
        f: F,
    ) -> Result<(), String>
    where
        F: Fn(&[String]) -> Reply + Send + Sync + 'static,
    {
        self.register_framed(name, help, Framing::Lines, f)
    }

    /// Registers a sync command with a given FIFO framing.
    pub fn register_framed<F>(
        &mut self,
        name: &'static str,
        help: &'static str,
        framing: Framing,
        f: F,
    ) -> Result<(), String>
    where
        F: Fn(&[String]) -> Reply + Send + Sync + 'static,
    {
        self.add(Command {
            name,
            help,
            framing,
            module: None,
            handler: Handler::Sync(Arc::new(f)),
        })
    }

    /// Registers a command that waits for something (a transaction's final reply, a DB answer).
    pub fn register_async<F>(
        &mut self,
        name: &'static str,
        help: &'static str,
        framing: Framing,
        f: F,
    ) -> Result<(), String>
    where
        F: Fn(Vec<String>) -> ReplyFuture + Send + Sync + 'static,
    {
        self.add(Command {
            name,
            help,
            framing,
            module: None,
            handler: Handler::Async(Arc::new(f)),
        })
    }

    /// Registers `which` (the list of commands).
    pub fn register_which(&mut self) -> Result<(), String> {
        self.add(Command {
            name: "which",
            help: "list available commands",
            framing: Framing::Lines,
            module: None,
            handler: Handler::Which,
        })
    }

    /// Registers the commands `module` declares, answered with `host`. They are served only while
    /// `loaded(module)` says the running program loads it (see [`Registry::set_loaded`]), as SER
    /// registered a module's FIFO commands in its `mod_init`.
    pub fn register_module(
        &mut self,
        module: &'static str,
        commands: &'static [CommandDecl],
        host: &Arc<dyn Host>,
    ) -> Result<(), String> {
        for c in commands {
            let h = Arc::clone(host);
            let handler = match c.handler {
                ModuleHandler::Sync(f) => Handler::Sync(Arc::new(move |p: &[String]| f(&*h, p))),
                ModuleHandler::Async(f) => {
                    Handler::Async(Arc::new(move |p: Vec<String>| f(Arc::clone(&h), p)))
                }
            };
            self.add(Command {
                name: c.name,
                help: c.help,
                framing: c.framing,
                module: Some(module),
                handler,
            })?;
        }
        Ok(())
    }

    /// How to tell whether a module is loaded now (without it, every module command is served).
    pub fn set_loaded(&mut self, loaded: LoadedFn) {
        self.loaded = Some(loaded);
    }

    fn is_served(&self, c: &Command) -> bool {
        match (c.module, &self.loaded) {
            (Some(m), Some(loaded)) => loaded(m),
            _ => true,
        }
    }

    /// `None` when `name` can be called now; otherwise the one-line refusal: SER's
    /// `500 command 'x' not available`, naming the module when it is one whose module the
    /// running program does not load.
    pub fn refusal(&self, name: &str) -> Option<Reply> {
        match self.lookup(name) {
            None => Some(not_available(name)),
            Some(c) if !self.is_served(c) => Some(Reply::status(
                500,
                format!(
                    "command '{name}' not available: module {} is not loaded",
                    c.module.unwrap_or("?")
                ),
            )),
            Some(_) => None,
        }
    }

    /// The command called `name` (any case).
    pub fn lookup(&self, name: &str) -> Option<&Command> {
        self.commands
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// Command names as `which` lists them: the last registered first, as SER's list did (so the
    /// core set ends the list: `ps`, `which`, `arg`, `pwd`, `version`, `uptime`, `print`); module
    /// commands only while their module is loaded.
    pub fn names(&self) -> Vec<&'static str> {
        self.commands().map(|c| c.name).collect()
    }

    /// The commands served now, in `which` order.
    pub fn commands(&self) -> impl Iterator<Item = &Command> {
        self.commands.iter().rev().filter(|c| self.is_served(c))
    }

    /// How the FIFO reads `name`'s parameters (unknown commands: lines).
    pub fn framing(&self, name: &str) -> Framing {
        self.lookup(name).map_or(Framing::Lines, |c| c.framing)
    }

    /// Runs `name` with `params`. Unknown, or its module not loaded: the one-line
    /// [`Registry::refusal`]. A sync handler runs on the blocking pool when called inside a tokio
    /// runtime.
    pub async fn call(&self, name: &str, params: Vec<String>) -> Reply {
        if let Some(r) = self.refusal(name) {
            return r;
        }
        let Some(c) = self.lookup(name) else {
            return not_available(name);
        };
        match &c.handler {
            Handler::Which => Reply::ok(self.names().iter().map(|s| s.to_string()).collect())
                .with_data(json!(self.names())),
            Handler::Async(f) => f(params).await,
            Handler::Sync(f) => {
                let f = Arc::clone(f);
                if tokio::runtime::Handle::try_current().is_ok() {
                    match tokio::task::spawn_blocking(move || f(&params)).await {
                        Ok(r) => r,
                        Err(e) => Reply::status(500, format!("command failed: {e}")),
                    }
                } else {
                    f(&params)
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::future::Future;

    fn block<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn unknown_command_is_500_as_ser_wrote_it() {
        let r = Registry::new();
        let reply = block(r.call("foobar", vec![]));
        assert_eq!(reply.to_fifo(), "500 command 'foobar' not available\n");
    }

    #[test]
    fn lookup_ignores_case_and_synonyms_are_refused() {
        let mut r = Registry::new();
        r.register("print", "", |p| Reply::ok(p.to_vec())).unwrap();
        assert!(r.register("PRINT", "", |_| Reply::ok(vec![])).is_err());
        let reply = block(r.call("Print", vec!["hello".into()]));
        assert_eq!(reply.to_fifo(), "200 ok\nhello\n");
    }

    #[test]
    fn which_lists_last_registered_first() {
        let mut r = Registry::new();
        r.register("print", "", |_| Reply::ok(vec![])).unwrap();
        r.register_which().unwrap();
        r.register("ul_stats", "", |_| Reply::ok(vec![])).unwrap();
        let reply = block(r.call("which", vec![]));
        assert_eq!(reply.to_fifo(), "200 ok\nul_stats\nwhich\nprint\n");
        assert_eq!(reply.to_json(), json!(["ul_stats", "which", "print"]));
    }

    #[test]
    fn async_handlers_are_awaited() {
        let mut r = Registry::new();
        r.register_async("t_uac_dlg", "", Framing::UacDlg, |p| {
            Box::pin(async move { Reply::status(202, format!("{} lines", p.len())) })
        })
        .unwrap();
        assert_eq!(r.framing("T_UAC_DLG"), Framing::UacDlg);
        let reply = block(r.call("t_uac_dlg", vec!["a".into(), "b".into()]));
        assert_eq!((reply.code, reply.reason.as_str()), (202, "2 lines"));
    }
}
