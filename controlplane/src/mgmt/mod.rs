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
//! - [`format`]: the module commands' output shapes (t_stats, t_hash, ul_*, sl_stats) as pure
//!   functions over plain structs, and the `t_uac_dlg` parameter parser.
//!
//! Invariants: the registry is built before the front ends start and never changes afterwards
//! (shared as `Arc<Registry>`); handlers never run on a shard; a sync handler runs on tokio's
//! blocking pool (it may compile a config), an async one (t_uac_dlg waits for a final reply) as a
//! task. Every request gets exactly one reply, also for unknown commands and bad parameters.

pub mod core;
pub mod fifo;
pub mod format;
pub mod http;
pub mod jsonrpc;
pub mod metrics;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{json, Value};

/// A command's answer, as SER's FIFO server gave it: a status line and body lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// 200..299 is success (SER's convention, like SIP).
    pub code: u16,
    pub reason: String,
    /// Body lines, without line ends.
    pub body: Vec<String>,
    /// The same data for JSON-RPC, when the command has a structured form; otherwise JSON-RPC
    /// returns the body lines.
    pub data: Option<Value>,
}

impl Reply {
    /// `200 ok` with these body lines.
    pub fn ok(body: Vec<String>) -> Reply {
        Reply {
            code: 200,
            reason: "ok".into(),
            body,
            data: None,
        }
    }

    /// An error (or any status) without body.
    pub fn status(code: u16, reason: impl Into<String>) -> Reply {
        Reply {
            code,
            reason: reason.into(),
            body: Vec::new(),
            data: None,
        }
    }

    /// Adds the structured form for JSON-RPC.
    pub fn with_data(mut self, data: Value) -> Reply {
        self.data = Some(data);
        self
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// The reply as the FIFO server writes it: `"<code> <reason>\n"` then each body line + `\n`.
    pub fn to_fifo(&self) -> String {
        let mut s = format!("{} {}\n", self.code, self.reason);
        for l in &self.body {
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    /// The JSON-RPC `result` of a successful reply.
    pub fn to_json(&self) -> Value {
        match &self.data {
            Some(d) => d.clone(),
            None => json!(self.body),
        }
    }
}

/// How a command's parameters are delimited in a FIFO request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One parameter per line, up to the empty line that ends every request.
    Lines,
    /// `t_uac_dlg`: method, request URI, outbound proxy (or `.`), header lines ended by `.` (or an
    /// empty line), body lines ended by `.`. The handler gets the three lines, the header lines,
    /// a `.` line, then the body lines.
    UacDlg,
    /// `t_reply` (and SER vm's `vm_reply`): code, reason, `hash:label`, To tag, then header lines
    /// and body lines as for [`Framing::UacDlg`] (the handler gets the four lines, the header
    /// lines, a `.` line, then the body lines).
    TReply,
}

/// Future returned by an async handler.
pub type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;
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
    handler: Handler,
}

/// The commands every front end serves.
#[derive(Clone, Default)]
pub struct Registry {
    commands: Vec<Command>,
}

/// The reply to an unknown command, exactly as SER 0.8.11 wrote it.
pub fn not_available(name: &str) -> Reply {
    Reply::status(500, format!("command '{name}' not available"))
}

/// `400` for a bad parameter list (missing lines, a bad number).
pub fn bad_params(what: impl Into<String>) -> Reply {
    Reply::status(400, what)
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
            handler: Handler::Async(Arc::new(f)),
        })
    }

    /// Registers `which` (the list of commands).
    pub fn register_which(&mut self) -> Result<(), String> {
        self.add(Command {
            name: "which",
            help: "list available commands",
            framing: Framing::Lines,
            handler: Handler::Which,
        })
    }

    /// The command called `name` (any case).
    pub fn lookup(&self, name: &str) -> Option<&Command> {
        self.commands
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// Command names as `which` lists them: the last registered first, as SER's list did (so the
    /// core set ends the list: `ps`, `which`, `arg`, `pwd`, `version`, `uptime`, `print`).
    pub fn names(&self) -> Vec<&'static str> {
        self.commands.iter().rev().map(|c| c.name).collect()
    }

    /// The commands, in `which` order.
    pub fn commands(&self) -> impl Iterator<Item = &Command> {
        self.commands.iter().rev()
    }

    /// How the FIFO reads `name`'s parameters (unknown commands: lines).
    pub fn framing(&self, name: &str) -> Framing {
        self.lookup(name).map_or(Framing::Lines, |c| c.framing)
    }

    /// Runs `name` with `params`. Unknown: `500 command 'x' not available`. A sync handler runs
    /// on the blocking pool when called inside a tokio runtime.
    pub async fn call(&self, name: &str, params: Vec<String>) -> Reply {
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
