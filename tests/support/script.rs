//! Helpers for the interpreter tests: compile a script, craft requests, and a recording [`MockEnv`].
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;
use controlplane::cfg::compile_str;
use dataplane::modules;
use dataplane::script::env::{ActionResult, Env, ModuleFn, Target, TargetHost};
use dataplane::script::ir::{Program, Proto};
use dataplane::script::{Ctx, FunctionId, ModuleId};
use dataplane::wire::Message;

/// Compiles script text or panics with the rendered diagnostics.
pub fn program(src: &str) -> Program {
    compile_str("test.cfg", src)
        .unwrap_or_else(|d| panic!("{}", d.render()))
        .program
}

/// Same, with `debug` raised so that every log line reaches the Env.
pub fn program_dbg(src: &str) -> Program {
    let mut p = program(src);
    p.options.debug = 9;
    p
}

/// A minimal but complete request.
pub fn request_bytes(method: &str, uri: &str) -> Vec<u8> {
    format!(
        "{method} {uri} SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 {method}\r\n\
Contact: <sip:alice@192.168.1.20>\r\n\
Content-Length: 0\r\n\
\r\n"
    )
    .into_bytes()
}

pub fn request(method: &str, uri: &str) -> Message {
    Message::parse(Bytes::from(request_bytes(method, uri))).unwrap()
}

pub const SRC: &str = "192.168.1.20:5060";
pub const DST: &str = "10.0.0.1:5060";

/// A context for `msg` from [`SRC`] to [`DST`] over UDP.
pub fn ctx(msg: Message) -> Ctx {
    Ctx::new(msg, SRC.parse().unwrap(), DST.parse().unwrap(), Proto::Udp)
}

pub fn ctx_from(msg: Message, src: &str) -> Ctx {
    Ctx::new(msg, src.parse().unwrap(), DST.parse().unwrap(), Proto::Udp)
}

/// One call the interpreter made on the Env.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    Forward {
        host: String,
        port: Option<u16>,
        proto: Option<Proto>,
        /// The request URI at the time of the forward.
        uri: String,
    },
    Send {
        host: String,
        port: Option<u16>,
        proto: Option<Proto>,
    },
}

fn target_text(t: &Target<'_>) -> (String, Option<u16>) {
    match t {
        Target::Uri => ("<uri>".into(), None),
        Target::Host { host, port } => (
            match host {
                TargetHost::Ip(ip) => ip.to_string(),
                TargetHost::Name(n) => String::from_utf8_lossy(n).into_owned(),
            },
            *port,
        ),
    }
}

/// Records forwards, sends and log lines; binds fake module functions; answers DNS from a map.
pub struct MockEnv {
    pub sent: Vec<Sent>,
    pub logs: Vec<(i32, String)>,
    pub fakes: HashMap<(ModuleId, FunctionId), ModuleFn>,
    /// Used for every module function without a fake of its own, when set.
    pub fake_all: Option<ModuleFn>,
    pub dns: HashMap<String, Vec<IpAddr>>,
    /// Handed out by `Env::myself` when set.
    pub myself: Option<dataplane::script::Myself>,
    pub forward_ret: i32,
    start: Instant,
}

impl Default for MockEnv {
    fn default() -> Self {
        MockEnv {
            sent: Vec::new(),
            logs: Vec::new(),
            fakes: HashMap::new(),
            fake_all: None,
            dns: HashMap::new(),
            myself: None,
            forward_ret: 1,
            start: Instant::now(),
        }
    }
}

impl MockEnv {
    pub fn new() -> MockEnv {
        MockEnv::default()
    }
    /// Binds `f` as the implementation of the module function `name`.
    /// The fake bound to `(module, function)`, else the catch-all one.
    pub fn bound_fake(&self, module: ModuleId, function: FunctionId) -> Option<ModuleFn> {
        self.fakes
            .get(&(module, function))
            .copied()
            .or(self.fake_all)
    }

    pub fn fake(mut self, name: &str, f: ModuleFn) -> MockEnv {
        let (m, fid) = find_function(name);
        self.fakes.insert((m, fid), f);
        self
    }
    pub fn log_text(&self) -> String {
        self.logs
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Module and function id of a function name.
pub fn find_function(name: &str) -> (ModuleId, FunctionId) {
    for (i, m) in modules::ALL.iter().enumerate() {
        if let Some((fid, _)) = m.function(name) {
            return (ModuleId(i as u16), fid);
        }
    }
    panic!("no module function {name}")
}

impl Env for MockEnv {
    fn forward(
        &mut self,
        ctx: &mut Ctx,
        target: &Target<'_>,
        proto: Option<Proto>,
    ) -> ActionResult {
        let (host, port) = target_text(target);
        self.sent.push(Sent::Forward {
            host,
            port,
            proto,
            uri: String::from_utf8_lossy(ctx.uri()).into_owned(),
        });
        ActionResult::Ret(self.forward_ret)
    }
    fn send(&mut self, _ctx: &mut Ctx, target: &Target<'_>, proto: Option<Proto>) -> ActionResult {
        let (host, port) = target_text(target);
        self.sent.push(Sent::Send { host, port, proto });
        ActionResult::Ret(1)
    }
    fn log(&mut self, level: i32, msg: &[u8]) {
        self.logs
            .push((level, String::from_utf8_lossy(msg).into_owned()));
    }
    fn now(&self) -> Instant {
        self.start
    }
    fn call(
        &mut self,
        module: ModuleId,
        function: FunctionId,
        ctx: &mut Ctx,
        args: &[dataplane::script::ir::Arg],
    ) -> Option<ActionResult> {
        let f = self.bound_fake(module, function)?;
        Some(f(ctx, self, args))
    }
    fn myself(&self) -> Option<&dataplane::script::Myself> {
        self.myself.as_ref()
    }
    fn host_has_addr(&mut self, name: &str, ip: IpAddr) -> Option<bool> {
        self.dns.get(name).map(|a| a.contains(&ip))
    }
}

/// Fake that always succeeds.
pub fn ok(_: &mut Ctx, _: &mut dyn Env, _: &[dataplane::script::ir::Arg]) -> ActionResult {
    ActionResult::Ret(1)
}

/// Fake that always fails.
pub fn fail(_: &mut Ctx, _: &mut dyn Env, _: &[dataplane::script::ir::Arg]) -> ActionResult {
    ActionResult::Ret(-1)
}

/// Fake that stops the script (returns 0).
pub fn stop(_: &mut Ctx, _: &mut dyn Env, _: &[dataplane::script::ir::Arg]) -> ActionResult {
    ActionResult::Ret(0)
}

pub fn uri_string(c: &Ctx) -> String {
    String::from_utf8_lossy(c.uri()).into_owned()
}

pub fn branches(c: &Ctx) -> Vec<String> {
    c.dset()
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect()
}

#[allow(unused)]
pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}
