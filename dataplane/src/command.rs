//! Management commands a module exports (SER's FIFO commands, also served over JSON-RPC): what a
//! [`crate::script::ModuleDecl`] lists in `commands`, and what their handlers see.
//!
//! - [`CommandDecl`]: name, parameter description, help line, FIFO framing and handler. A module's
//!   commands are served only while a program that loads the module runs (SER registered them
//!   in the module's `mod_init`): `which` lists them then, and a call otherwise is refused with
//!   one line naming the module.
//! - [`Host`]: what a handler reaches of the running proxy — the state every shard shares
//!   ([`Shared`]: the program, the location store, tm's counters, sl's counters) and the
//!   blocking services of the controlplane (a database job, DNS), implemented by the integrator.
//! - [`Reply`]: SER's status code and reason, body lines, and the same data for JSON-RPC.
//!
//! Invariants: handlers never run on a shard. A sync handler runs on a management thread and may
//! block (a database job through [`Host::db_job`]); an async one returns a future that waits (a
//! transaction's final reply) without holding a thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::offload::{Job, JobResult};
use crate::proxy::shared::Shared;
use crate::txn::table::{UacRequest, UacResult};

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

    /// Replaces the body lines.
    pub fn with_body(mut self, body: Vec<String>) -> Reply {
        self.body = body;
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

/// The reply to an unknown command, exactly as SER 0.8.11 wrote it.
pub fn not_available(name: &str) -> Reply {
    Reply::status(500, format!("command '{name}' not available"))
}

/// `400` for a bad parameter list (missing lines, a bad number).
pub fn bad_params(what: impl Into<String>) -> Reply {
    Reply::status(400, what)
}

/// Parameter `i` as a number, or a 400 naming it.
pub fn number_param<T: std::str::FromStr>(p: &[String], i: usize, what: &str) -> Result<T, Reply> {
    let v = p
        .get(i)
        .ok_or_else(|| bad_params(format!("missing parameter: {what}")))?;
    v.trim()
        .parse()
        .map_err(|_| bad_params(format!("bad {what}: '{v}'")))
}

/// Parameter `i` (a non-empty line), or a 400 naming it.
pub fn text_param<'a>(p: &'a [String], i: usize, what: &str) -> Result<&'a str, Reply> {
    match p.get(i).map(|s| s.trim()) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(bad_params(format!("missing parameter: {what}"))),
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

/// Future of a DNS lookup done by the host.
pub type HopFuture = Pin<Box<dyn Future<Output = Result<Option<String>, String>> + Send>>;

/// Future of a request sent statefully by the host: its final answer, or why there is none (no
/// shard took it, the answer was lost).
pub type UacFuture = Pin<Box<dyn Future<Output = Result<UacResult, String>> + Send>>;

/// What a command handler reaches of the running proxy (implemented by the integrator over its
/// shared state and the controlplane's runtimes).
pub trait Host: Send + Sync {
    /// The state the shards share: the running program (`program.load()`) with its modules'
    /// settings, the services (location store, credential caches, the DB write queue), tm's and
    /// sl's counters.
    fn shared(&self) -> &Shared;

    /// Runs a database job and waits for its answer (bounded in time). Blocks: for sync handlers
    /// only, which never run on a shard.
    fn db_job(&self, job: Job) -> JobResult;

    /// Where a request to `uri` goes when its host is a name: `sip:IP:PORT;transport=…` of the
    /// first RFC 3263 target; `None` when the URI already names an address.
    fn resolve_hop(&self, uri: String) -> HopFuture;

    /// Sends `req` statefully through a shard (its `done` is replaced) and waits for its final
    /// answer.
    fn t_uac(&self, req: UacRequest) -> UacFuture;
    /// Hands an answer for an existing server transaction to its shard (its `done` is replaced)
    /// and waits until the shard says whether it went out: `Err((status, why))` otherwise.
    fn t_reply(&self, r: crate::proxy::shared::ExternalReply) -> TReplyFuture;
}

/// Future of [`Host::t_reply`].
pub type TReplyFuture = Pin<Box<dyn Future<Output = Result<(), (u16, String)>> + Send>>;

/// A command's handler.
#[derive(Clone, Copy)]
pub enum Handler {
    /// Answers from the parameter lines; may block (it runs on a management thread).
    Sync(fn(&dyn Host, &[String]) -> Reply),
    /// Waits for something (a transaction's final reply) without holding a thread.
    Async(fn(Arc<dyn Host>, Vec<String>) -> ReplyFuture),
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Handler::Sync(_) => "Sync",
            Handler::Async(_) => "Async",
        })
    }
}

/// One management command a module exports.
#[derive(Debug, Clone, Copy)]
pub struct CommandDecl {
    /// The FIFO / JSON-RPC method name (`t_stats`).
    pub name: &'static str,
    /// Its parameter lines, for listings (`table, user`; empty: none).
    pub args: &'static str,
    /// One line saying what it does.
    pub help: &'static str,
    /// How the FIFO reads its parameters.
    pub framing: Framing,
    pub handler: Handler,
}

impl CommandDecl {
    /// A command taking parameter lines, answered at once.
    pub const fn sync(
        name: &'static str,
        args: &'static str,
        help: &'static str,
        f: fn(&dyn Host, &[String]) -> Reply,
    ) -> CommandDecl {
        CommandDecl {
            name,
            args,
            help,
            framing: Framing::Lines,
            handler: Handler::Sync(f),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked() {
        let p = vec!["location".to_string(), " x ".to_string()];
        assert_eq!(text_param(&p, 0, "table").unwrap(), "location");
        assert_eq!(
            text_param(&p, 2, "contact").unwrap_err().reason,
            "missing parameter: contact"
        );
        assert_eq!(
            number_param::<u32>(&p, 1, "expires").unwrap_err().to_fifo(),
            "400 bad expires: ' x '\n"
        );
    }

    #[test]
    fn every_module_command_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for m in crate::modules::ALL {
            for c in m.commands {
                assert!(seen.insert(c.name), "{} declared twice", c.name);
                assert!(!c.help.is_empty(), "{}", c.name);
            }
        }
    }
}
