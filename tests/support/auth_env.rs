//! Helpers for the authentication tests: an [`AuthEnv`] that records replies, owns the shared
//! services, runs on a clock the test moves, and answers `Job::Db` selects from in-memory tables
//! (what the controlplane's storage layer will answer); and a digest client.
//! Include after `support/script.rs` (as `mod support`).
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::auth::digest::{self, Algorithm, Qop, ResponseInput};
use dataplane::offload::{Job, JobResult};
use dataplane::script::env::{ActionResult, Env, ModuleFn, Target};
use dataplane::script::ir::{Program, Proto};
use dataplane::script::{exec, resume, Ctx, FunctionId, ModuleId, Outcome};
use dataplane::services::Services;

use super::support::MockEnv;

/// One reply the script sent.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub reason: String,
    /// Extra header lines (`ctx.reply_headers` at the time of the reply).
    pub headers: String,
}

impl Reply {
    /// Values of the extra header `name` (case-insensitive).
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }
}

/// A table row: column → value.
pub type Row = HashMap<String, Option<String>>;

pub struct AuthEnv {
    pub inner: MockEnv,
    pub services: Arc<Services>,
    pub program: Arc<Program>,
    pub replies: Vec<Reply>,
    pub now: Instant,
    /// Tables the fake database answers from.
    pub tables: HashMap<String, Vec<Row>>,
    /// Every job the script suspended on.
    pub jobs: Vec<Job>,
    /// When set, every DB job fails with this message.
    pub db_down: Option<String>,
}

impl AuthEnv {
    pub fn new(program: Program) -> AuthEnv {
        AuthEnv::with_services(program, Arc::new(Services::default()))
    }

    pub fn with_services(program: Program, services: Arc<Services>) -> AuthEnv {
        AuthEnv {
            inner: MockEnv::new(),
            services,
            program: Arc::new(program),
            replies: Vec::new(),
            now: Instant::now(),
            tables: HashMap::new(),
            jobs: Vec::new(),
            db_down: None,
        }
    }

    /// Adds a row to `table`.
    pub fn row(&mut self, table: &str, cols: &[(&str, &str)]) {
        self.tables.entry(table.to_owned()).or_default().push(
            cols.iter()
                .map(|(c, v)| ((*c).to_owned(), Some((*v).to_owned())))
                .collect(),
        );
    }

    pub fn advance(&mut self, secs: u64) {
        self.now += Duration::from_secs(secs);
    }

    pub fn fake(mut self, name: &str, f: ModuleFn) -> AuthEnv {
        self.inner = self.inner.fake(name, f);
        self
    }

    fn answer(&self, job: &Job) -> JobResult {
        if let Some(e) = &self.db_down {
            return JobResult::Failed(e.clone());
        }
        match job {
            Job::Db {
                table,
                keys,
                columns,
                ..
            } => {
                let rows = self.tables.get(table).cloned().unwrap_or_default();
                JobResult::Rows(
                    rows.iter()
                        .filter(|r| {
                            keys.iter()
                                .all(|(k, v)| r.get(k).cloned().flatten().as_deref() == Some(v))
                        })
                        .map(|r| {
                            columns
                                .iter()
                                .map(|c| r.get(c).cloned().flatten())
                                .collect()
                        })
                        .collect(),
                )
            }
            other => JobResult::Failed(format!("not a select: {other:?}")),
        }
    }

    /// Runs the main route on `ctx`, answering every DB job, at most 8 suspensions.
    pub fn run(&mut self, ctx: &mut Ctx) -> Outcome {
        let p = self.program.clone();
        let mut out = exec(&p, ctx, self);
        for _ in 0..8 {
            let Outcome::Suspended(job) = out else { break };
            let r = self.answer(&job);
            self.jobs.push(job);
            out = resume(&p, ctx, self, r);
        }
        out
    }

    pub fn last_reply(&self) -> &Reply {
        self.replies.last().expect("a reply")
    }

    pub fn db_jobs(&self) -> usize {
        self.jobs
            .iter()
            .filter(|j| matches!(j, Job::Db { .. }))
            .count()
    }
}

impl Env for AuthEnv {
    fn forward(
        &mut self,
        ctx: &mut Ctx,
        target: &Target<'_>,
        proto: Option<Proto>,
    ) -> ActionResult {
        self.inner.forward(ctx, target, proto)
    }
    fn send(&mut self, ctx: &mut Ctx, target: &Target<'_>, proto: Option<Proto>) -> ActionResult {
        self.inner.send(ctx, target, proto)
    }
    fn log(&mut self, level: i32, msg: &[u8]) {
        self.inner.log(level, msg)
    }
    fn now(&self) -> Instant {
        self.now
    }
    fn call(
        &mut self,
        module: ModuleId,
        function: FunctionId,
        ctx: &mut Ctx,
        args: &[dataplane::script::ir::Arg],
    ) -> Option<ActionResult> {
        // The inner environment's fakes, run with this one (as the interpreter would).
        let f = self.inner.bound_fake(module, function)?;
        Some(f(ctx, self, args))
    }
    fn myself(&self) -> Option<&dataplane::script::Myself> {
        self.inner.myself()
    }
    fn host_has_addr(&mut self, name: &str, ip: IpAddr) -> Option<bool> {
        self.inner.host_has_addr(name, ip)
    }
    fn reply(&mut self, ctx: &mut Ctx, code: u16, reason: &[u8]) -> ActionResult {
        self.replies.push(Reply {
            code,
            reason: String::from_utf8_lossy(reason).into_owned(),
            headers: String::from_utf8_lossy(&ctx.reply_headers).into_owned(),
        });
        ActionResult::Ret(1)
    }
    fn services(&self) -> Option<&Services> {
        Some(&self.services)
    }
    fn program(&self) -> Option<&Program> {
        Some(&self.program)
    }
}

/// A parameter of a challenge value (`Digest realm="x", nonce="y"`), unquoted.
pub fn challenge_param(value: &str, name: &str) -> Option<String> {
    let c = dataplane::wire::digest::Credentials::parse(value.as_bytes()).ok()?;
    c.param(name.as_bytes())
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// What a digest client puts in its answer.
#[derive(Debug, Clone)]
pub struct Client<'a> {
    pub user: &'a str,
    pub password: &'a str,
    pub realm: &'a str,
    pub nonce: &'a str,
    pub uri: &'a str,
    pub method: &'a str,
    pub alg: Option<Algorithm>,
    /// (nc, cnonce, qop) when qop is used.
    pub qop: Option<(u32, &'a str, Qop)>,
    pub body: &'a str,
}

impl Client<'_> {
    /// The Authorization / Proxy-Authorization value.
    pub fn header_value(&self) -> String {
        let alg = self.alg.unwrap_or(Algorithm::Md5);
        let ha1 = digest::ha1(
            alg,
            self.user.as_bytes(),
            self.realm.as_bytes(),
            self.password.as_bytes(),
        );
        let (nc, cnonce, qop) = match self.qop {
            Some((nc, c, q)) => (format!("{nc:08x}"), c, q),
            None => (String::new(), "", Qop::None),
        };
        let r = digest::response(&ResponseInput {
            alg,
            ha1: ha1.as_bytes(),
            nonce: self.nonce.as_bytes(),
            nc: nc.as_bytes(),
            cnonce: cnonce.as_bytes(),
            qop,
            method: self.method.as_bytes(),
            uri: self.uri.as_bytes(),
            body: self.body.as_bytes(),
        });
        let mut v = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\"",
            self.user,
            self.realm,
            self.nonce,
            self.uri,
            String::from_utf8_lossy(r.as_bytes())
        );
        if let Some(a) = self.alg {
            v.push_str(&format!(", algorithm={}", a.name()));
        }
        if let Some((_, c, q)) = self.qop {
            let q = if q == Qop::AuthInt {
                "auth-int"
            } else {
                "auth"
            };
            v.push_str(&format!(", qop={q}, nc={nc}, cnonce=\"{c}\""));
        }
        v
    }
}

/// A request with extra header lines (each `Name: value`), From `from_user@from_host`,
/// To `to_user@to_host`.
pub fn request_with(method: &str, ruri: &str, from: &str, to: &str, extra: &[String]) -> Vec<u8> {
    let mut s = format!(
        "{method} {ruri} SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: <sip:{to}>\r\n\
From: <sip:{from}>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 {method}\r\n\
Contact: <sip:x@192.168.1.20>\r\n"
    );
    for e in extra {
        s.push_str(e);
        s.push_str("\r\n");
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s.into_bytes()
}

pub fn msg(bytes: Vec<u8>) -> dataplane::wire::Message {
    dataplane::wire::Message::parse(bytes::Bytes::from(bytes)).unwrap()
}
