//! Script module `jabber`: SIMPLE-Jabber gateway (SER 0.8.11's XJAB). SIP users with a Jabber
//! account in the `jusers` table talk to the XMPP network through the gateway: their MESSAGEs
//! become XMPP messages from their Jabber identity, XMPP messages to that identity come back as
//! SIP MESSAGEs, and their watchers' subscriptions (`pa`'s `handle_subscription("jabber")`) follow
//! the XMPP presence of the Jabber user watched. Needs `tm` loaded as well.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `jab_send_message` | - | request | send the MESSAGE to the Jabber network |
//! | `jab_join_jconf` | - | request | join a Jabber conference (XMPP MUC) |
//! | `jab_exit_jconf` | - | request | leave a Jabber conference |
//! | `jab_go_online` | - | request | go online in the Jabber network |
//! | `jab_go_offline` | - | request | go offline in the Jabber network |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `db_url` | string | `""` (the server's default database) |
//! | `jaddress` | string | `"127.0.0.1"` (the XMPP server: TCP address, and its domain for a `jab_id` without `@`) |
//! | `jport` | int | `5222` |
//! | `workers` | int | `2` (with `max_jobs`: at most `workers * max_jobs` open Jabber connections) |
//! | `max_jobs` | int | `10` |
//! | `cache_time` | int | `600` (seconds an idle connection stays open) |
//! | `delay_time` | int | `90` (seconds a message waits for its connection to log in; at most 30, as the script is parked meanwhile) |
//! | `sleep_time` | int | `20` (seconds between checks for idle connections) |
//! | `check_time` | int | `20` (seconds between reconnect attempts of an on-line user's lost connection) |
//! | `aliases` | string | unset (`N;alias1=<delim1>;...`: other IM domains, SER's format) |
//! | `proxy` | string | unset (where the gateway's SIP MESSAGEs go; default: this server) |
//! | `registrar` | string | unset (accepted, no effect: SER's error notices are the script's replies here) |
//! | `jdomain` | string | unset (`jabber.sipserver.com=<delim>`, delim default `*`) |
//! | `tls_ca` | string | `/etc/ssl/certs/ca-certificates.crt` (not SER's: CA certificates, PEM, for the Jabber server's certificate under STARTTLS) |
//!
//! Addresses (SER's rules): a SIP destination `user<delim>jabber_server@jdomain` is the Jabber
//! user `user@jabber_server`; `nick<delim>room<delim>conference_server@jdomain` (for a conference
//! the nick may be left out: the SIP user name is used) is the MUC room
//! `room@conference_server` with that nickname. At an `aliases` domain the user part keeps its
//! form, its delimiters changed to the alias's. Back from XMPP, `user@server/resource` is
//! `sip:user<delim>server@jdomain`.
//!
//! Accounts: `jusers` (SER's `sip_jab` schema: `juid`, `jab_id`, `jab_passwd`, `sip_id`, `type`)
//! maps the SIP user (`sip_id` = `user@host` of the From URI, also tried with `sip:`) to the
//! Jabber login; rows of `type` other than 0 (SER's IM transports) are ignored. A `jab_id` of the
//! form `user@domain` logs in at that domain, a bare one at `jaddress`.
//!
//! - `jab_send_message()` on a MESSAGE to `jdomain` (request URI, body text): true once the XMPP
//!   message was written on the user's connection (opened and logged in first when needed) — the
//!   script answers 202 then. False (the script sends its error reply) when the request is not a
//!   MESSAGE to `jdomain` or has no body, the user has no Jabber account, the database is down,
//!   the Jabber server cannot be reached or refuses the login, or the gateway is full. A message
//!   to a conference (three-part address) goes as a `groupchat` message and needs the room joined.
//! - `jab_go_online()` (usually on a REGISTER) opens the connection and sends available presence;
//!   a lost connection of an on-line user is re-opened every `check_time` seconds.
//!   `jab_go_offline()` sends unavailable presence and closes it.
//! - `jab_join_jconf()` / `jab_exit_jconf()`: the To URI names the room; joins (MUC presence to
//!   `room@server/nick`) or leaves it.
//! - An XMPP `message` (chat, normal or groupchat, with a body) to the user's connection is sent
//!   statefully (tm) as a MESSAGE, From the translated XMPP sender, To and request URI the SIP
//!   user, to `proxy` or else this server's own address so the script routes it
//!   (`lookup("location")` finds the user's contact). XMPP `presence` updates what watchers of
//!   that Jabber user get from pa.
//!
//! Differences from SER: answers come from the script's reply on the function's result instead
//! of MESSAGEs from `registrar` explaining the error; SASL PLAIN login instead of the old
//! `jabber:iq:auth`, under STARTTLS whenever the server offers it (the server's certificate
//! checked against `tls_ca` for the Jabber domain; SER spoke plaintext only).
//! All network I/O is done by the controlplane (`controlplane::modules::jabber`); the shard only
//! hands the commands over as jobs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::offload::{Job, JobResult};
use crate::script::env::{ActionResult, Env, ResumeFn};
use crate::script::ir::{Arg, Program, Proto};
use crate::script::{Ctx, FunctionDecl, ModuleConfig, ModuleDecl, ParamDecl, RouteKinds};
use crate::ser_log;
use crate::shard::log::{L_DBG, L_ERR, L_WARN};
use crate::wire::uri::Uri;
use crate::wire::Method;

/// Declaration of module `jabber`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "jabber",
    aliases: &[],
    depends: &["tm"],
    functions: &[
        FunctionDecl::new(
            "jab_send_message",
            &[],
            RouteKinds::REQUEST,
            "send the MESSAGE to the Jabber network",
        )
        .implemented_by(jab_send_message),
        FunctionDecl::new(
            "jab_join_jconf",
            &[],
            RouteKinds::REQUEST,
            "join a Jabber conference",
        )
        .implemented_by(jab_join_jconf),
        FunctionDecl::new(
            "jab_exit_jconf",
            &[],
            RouteKinds::REQUEST,
            "leave a Jabber conference",
        )
        .implemented_by(jab_exit_jconf),
        FunctionDecl::new(
            "jab_go_online",
            &[],
            RouteKinds::REQUEST,
            "go online in the Jabber network",
        )
        .implemented_by(jab_go_online),
        FunctionDecl::new(
            "jab_go_offline",
            &[],
            RouteKinds::REQUEST,
            "go offline in the Jabber network",
        )
        .implemented_by(jab_go_offline),
    ],
    params: &[
        ParamDecl::str("db_url", ""),
        ParamDecl::str("jaddress", "127.0.0.1"),
        ParamDecl::int("jport", 5222),
        ParamDecl::int("workers", 2),
        ParamDecl::int("max_jobs", 10),
        ParamDecl::int("cache_time", 600),
        ParamDecl::int("delay_time", 90),
        ParamDecl::int("sleep_time", 20),
        ParamDecl::int("check_time", 20),
        ParamDecl::str_unset("aliases"),
        ParamDecl::str_unset("proxy"),
        ParamDecl::str_unset("registrar"),
        ParamDecl::str_unset("jdomain"),
        ParamDecl::str("tls_ca", DEFAULT_TLS_CA),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "SIMPLE-Jabber gateway",
    config: Some(resolve_config),
    commands: &[],
};

/// Parameters accepted but without effect here (`ser -c` says so): the gateway's error
/// notices from `registrar` are replaced by the script's reply.
pub const NOT_IMPLEMENTED_PARAMS: &[&str] = &["registrar"];

/// Where the CA certificates that vouch for the Jabber server under STARTTLS are by default
/// (Debian's bundle).
pub const DEFAULT_TLS_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The accounts table (SER's `sip_jab.jusers`).
pub const JUSERS: &str = "jusers";

/// The gateway's settings, resolved once per loaded program; every job carries them, so the
/// controlplane always works with the running program's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JabberSettings {
    pub db_url: String,
    pub jaddress: String,
    pub jport: u16,
    /// `workers * max_jobs`: open connections at most.
    pub max_connections: usize,
    pub cache_time: u64,
    pub delay_time: u64,
    pub sleep_time: u64,
    pub check_time: u64,
    /// The SIP domain of Jabber addresses (`jdomain` before `=`), lower-cased; empty when unset.
    pub jdomain: String,
    pub delim: char,
    /// Other IM domains and their delimiters (`None`: the user part is kept).
    pub aliases: Vec<(String, Option<char>)>,
    /// Where the gateway's SIP requests go (`sip:host:port`), when set.
    pub proxy: Option<String>,
    /// PEM file of the CA certificates the Jabber server's certificate must chain to (STARTTLS).
    pub tls_ca: String,
}

impl JabberSettings {
    /// The settings of `program` (defaults without one).
    pub fn resolve(program: Option<&Program>) -> JabberSettings {
        let s = |n: &str| {
            super::param(program, &MODULE, n)
                .and_then(|p| p.str())
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let i = |n: &str, d: i64| {
            super::param(program, &MODULE, n)
                .and_then(|p| p.int())
                .unwrap_or(d)
        };
        let u = |n: &str, d: i64| u64::try_from(i(n, d)).unwrap_or(0);
        let (jdomain, delim) = match s("jdomain") {
            Some(j) => match j.split_once('=') {
                Some((d, c)) => (d.trim().to_ascii_lowercase(), c.trim().chars().next()),
                None => (j.to_ascii_lowercase(), None),
            },
            None => (String::new(), None),
        };
        let aliases = s("aliases").map(|a| parse_aliases(&a)).unwrap_or_default();
        let proxy = s("proxy").and_then(|p| {
            // SER's form: "ip:port hostname:port"; the first is used.
            let first = p.split_whitespace().next()?.to_string();
            Some(if first.starts_with("sip:") {
                first
            } else {
                format!("sip:{first}")
            })
        });
        let workers = usize::try_from(i("workers", 2)).unwrap_or(0).max(1);
        let max_jobs = usize::try_from(i("max_jobs", 10)).unwrap_or(0).max(1);
        JabberSettings {
            db_url: s("db_url")
                .filter(|u| u.contains("://"))
                .unwrap_or_default(),
            jaddress: s("jaddress").unwrap_or_else(|| "127.0.0.1".into()),
            jport: u16::try_from(i("jport", 5222)).unwrap_or(5222),
            max_connections: workers.saturating_mul(max_jobs),
            cache_time: u("cache_time", 600).max(1),
            delay_time: u("delay_time", 90).max(1),
            sleep_time: u("sleep_time", 20).max(1),
            check_time: u("check_time", 20).max(1),
            jdomain,
            delim: delim.unwrap_or('*'),
            aliases,
            proxy,
            tls_ca: s("tls_ca").unwrap_or_else(|| DEFAULT_TLS_CA.into()),
        }
    }

    /// Whether `host` (a SIP URI's) is the Jabber domain or an alias.
    pub fn is_jabber_host(&self, host: &str) -> bool {
        let h = host.to_ascii_lowercase();
        (!self.jdomain.is_empty() && h == self.jdomain) || self.aliases.iter().any(|(a, _)| *a == h)
    }

    /// SIP destination (`user`, `host` of the URI) → Jabber address (S2J): the JID, and for a
    /// conference (three-part user) the nickname.
    pub fn to_jid(&self, user: &str, host: &str) -> Option<(String, Option<String>)> {
        let h = host.to_ascii_lowercase();
        if let Some((_, d)) = self.aliases.iter().find(|(a, _)| *a == h) {
            let u = match d {
                Some(c) => user.replace(self.delim, &c.to_string()),
                None => user.to_string(),
            };
            return Some((format!("{u}@{h}"), None));
        }
        if self.jdomain.is_empty() || h != self.jdomain {
            return None;
        }
        let parts: Vec<&str> = user.split(self.delim).collect();
        match parts.as_slice() {
            [u, server] if !u.is_empty() && !server.is_empty() => {
                Some((format!("{u}@{server}"), None))
            }
            [nick, room, server] if !room.is_empty() && !server.is_empty() => Some((
                format!("{room}@{server}"),
                Some(nick.to_string()).filter(|n| !n.is_empty()),
            )),
            _ => None,
        }
    }

    /// Jabber address → SIP URI (J2S): `user@server/res` → `sip:user<delim>server@jdomain`
    /// (at an alias domain, the alias's delimiters become ours, the domain stays).
    pub fn to_sip(&self, jid: &str) -> String {
        let bare = jid.split('/').next().unwrap_or(jid);
        let (user, server) = bare.split_once('@').unwrap_or(("", bare));
        let s = server.to_ascii_lowercase();
        if let Some((a, d)) = self.aliases.iter().find(|(a, _)| *a == s) {
            let u = match d {
                Some(c) => user.replace(*c, &self.delim.to_string()),
                None => user.to_string(),
            };
            return format!("sip:{u}@{a}");
        }
        if user.is_empty() {
            format!("sip:{server}@{}", self.jdomain)
        } else {
            format!("sip:{user}{}{server}@{}", self.delim, self.jdomain)
        }
    }

    /// A groupchat sender `room@server/nick` → `sip:nick<delim>room<delim>server@jdomain`.
    pub fn room_to_sip(&self, from: &str) -> String {
        let (bare, nick) = from.split_once('/').unwrap_or((from, ""));
        let (room, server) = bare.split_once('@').unwrap_or((bare, ""));
        let d = self.delim;
        format!("sip:{nick}{d}{room}{d}{server}@{}", self.jdomain)
    }
}

/// SER's `aliases`: `N;alias1=<delim1>;...;aliasN=<delimN>;` (a delimiter is optional).
fn parse_aliases(s: &str) -> Vec<(String, Option<char>)> {
    let mut it = s.split(';').map(str::trim);
    let n: usize = it.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    it.filter(|a| !a.is_empty())
        .take(n)
        .map(|a| match a.split_once('=') {
            Some((d, c)) => (d.trim().to_ascii_lowercase(), c.trim().chars().next()),
            None => (a.to_ascii_lowercase(), None),
        })
        .collect()
}

fn resolve_config(program: &Program) -> ModuleConfig {
    Arc::new(JabberSettings::resolve(Some(program)))
}

/// What the gateway is asked to do for one SIP user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JabberOp {
    /// Send a message to `to` (a JID; a room for `groupchat`).
    Message {
        to: String,
        body: String,
        groupchat: bool,
    },
    /// Log in and send available presence; stay connected (reconnect) until offline.
    GoOnline,
    /// Unavailable presence, then close.
    GoOffline,
    /// Join the MUC `room` as `nick`.
    Join { room: String, nick: String },
    /// Leave it.
    Exit { room: String, nick: String },
    /// Ask for the presence of `jid` (a watcher subscribed to it through pa).
    Watch { jid: String },
}

/// A [`Job::Jabber`]: `op` for the SIP user `sip_id` whose Jabber login is `jab_id`/`passwd`.
/// Answered `Rows(vec![])` when done (the message written, the login done), else `Failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JabberJob {
    pub op: JabberOp,
    /// `user@host` of the SIP user.
    pub sip_id: String,
    pub jab_id: String,
    pub passwd: String,
    /// Where the XMPP messages for this user are sent as SIP (`proxy`, else this server).
    pub home: String,
    pub settings: Arc<JabberSettings>,
}

/// The XMPP presence of Jabber users as the gateway's connections see it (bare JID, lower-case →
/// available). Shared by every shard (`Services::store`); written by the controlplane.
#[derive(Default)]
pub struct Presences {
    map: Mutex<HashMap<String, bool>>,
}

impl Presences {
    /// Records `jid`'s presence; true when it changed.
    pub fn set(&self, jid: &str, open: bool) -> bool {
        let k = bare(jid);
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(k, open) != Some(open)
    }

    /// Whether `jid` is available (unknown = not).
    pub fn open(&self, jid: &str) -> bool {
        let m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&bare(jid)).copied().unwrap_or(false)
    }
}

/// The bare JID of `jid`, lower-cased (resource dropped).
pub fn bare(jid: &str) -> String {
    jid.split('/').next().unwrap_or(jid).to_ascii_lowercase()
}

/// The command being prepared for one message, between its jobs.
#[derive(Debug)]
struct Pending {
    op: JabberOp,
    sip_id: String,
    home: String,
    then: Option<ResumeFn>,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// This server as the next hop of the gateway's requests (the script routes them).
fn ourselves(ctx: &Ctx) -> String {
    match ctx.proto {
        Proto::Udp => format!("sip:{}", ctx.dst),
        _ => format!("sip:{};transport=tcp", ctx.dst),
    }
}

/// `user@host` of the From URI.
fn sip_id(ctx: &Ctx) -> Option<(String, String)> {
    let from = ctx.msg.from().ok()?;
    let uri = Uri::parse(from.uri_raw).ok()?;
    let user = text(&uri.user_unescaped()?);
    Some((format!("{user}@{}", text(uri.host_raw)), user))
}

/// Looks up the Jabber account of the From user, then hands `op` to the gateway; `then` (when
/// given) turns the gateway's answer into the action's value, else true/false. Used by pa too.
pub fn start(
    ctx: &mut Ctx,
    env: &mut dyn Env,
    op: JabberOp,
    then: Option<ResumeFn>,
) -> ActionResult {
    let cfg = crate::script::config(&*env, JabberSettings::resolve).into_owned();
    let Some((sip_id, _)) = sip_id(ctx) else {
        ser_log!(L_ERR, "ERROR: jabber: the From URI has no user");
        return ActionResult::Ret(-1);
    };
    let home = cfg.proxy.clone().unwrap_or_else(|| ourselves(ctx));
    // sip_id is looked up as `user@host`, then as `sip:user@host` (see after_account).
    let job = Job::Db {
        url: cfg.db_url,
        table: JUSERS.into(),
        keys: vec![("sip_id".into(), sip_id.clone())],
        columns: vec!["jab_id".into(), "jab_passwd".into(), "type".into()],
    };
    ctx.module_state.set(Pending {
        op,
        sip_id,
        home,
        then,
    });
    ctx.suspend_with(job, after_account)
}

/// The first account row of type 0 (Jabber itself).
fn account(rows: &[Vec<Option<String>>]) -> Option<(String, String)> {
    rows.iter().find_map(|r| {
        let t = r.get(2).cloned().flatten().unwrap_or_default();
        if !matches!(t.trim(), "" | "0") {
            return None;
        }
        let id = r
            .first()
            .cloned()
            .flatten()
            .filter(|s| !s.trim().is_empty())?;
        Some((
            id.trim().to_string(),
            r.get(1).cloned().flatten().unwrap_or_default(),
        ))
    })
}

fn after_account(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg], r: JobResult) -> ActionResult {
    let rows = match r {
        JobResult::Rows(rows) => rows,
        JobResult::Failed(why) => {
            ser_log!(
                L_ERR,
                "ERROR: jabber: the Jabber accounts cannot be read: {why}"
            );
            return fail(
                ctx,
                env,
                args,
                format!("the Jabber accounts cannot be read: {why}"),
            );
        }
        _ => return fail(ctx, env, args, "the Jabber accounts cannot be read".into()),
    };
    let Some(p) = ctx.module_state.get::<Pending>() else {
        return ActionResult::Ret(-1);
    };
    match account(&rows) {
        Some((jab_id, passwd)) => gateway(ctx, env, jab_id, passwd),
        None if !p.sip_id.starts_with("sip:") => {
            // SER's tools wrote sip_id with and without the scheme: try the other spelling.
            let cfg = crate::script::config(&*env, JabberSettings::resolve).into_owned();
            let sip = format!("sip:{}", p.sip_id);
            if let Some(p) = ctx.module_state.get_mut::<Pending>() {
                p.sip_id.clone_from(&sip);
            }
            let job = Job::Db {
                url: cfg.db_url,
                table: JUSERS.into(),
                keys: vec![("sip_id".into(), sip)],
                columns: vec!["jab_id".into(), "jab_passwd".into(), "type".into()],
            };
            ctx.suspend_with(job, after_account)
        }
        None => {
            ser_log!(
                L_WARN,
                "jabber: {} has no Jabber account (table {JUSERS})",
                p.sip_id.trim_start_matches("sip:")
            );
            fail(ctx, env, args, "no Jabber account".into())
        }
    }
}

/// Ends the command before the gateway: `then` hears `why` (pa tells "no Jabber account" from a
/// database fault by it), else the action is false.
fn fail(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg], why: String) -> ActionResult {
    match ctx.module_state.take::<Pending>().and_then(|p| p.then) {
        Some(then) => then(ctx, env, args, JobResult::Failed(why)),
        None => ActionResult::Ret(-1),
    }
}

fn gateway(ctx: &mut Ctx, env: &mut dyn Env, jab_id: String, passwd: String) -> ActionResult {
    let Some(p) = ctx.module_state.take::<Pending>() else {
        return ActionResult::Ret(-1);
    };
    let settings = crate::script::config(&*env, JabberSettings::resolve).into_owned();
    let job = Job::Jabber(Box::new(JabberJob {
        op: p.op,
        sip_id: p.sip_id.trim_start_matches("sip:").to_string(),
        jab_id,
        passwd,
        home: p.home,
        settings: Arc::new(settings),
    }));
    ctx.suspend_with(job, p.then.unwrap_or(after_gateway))
}

fn after_gateway(_ctx: &mut Ctx, _env: &mut dyn Env, _args: &[Arg], r: JobResult) -> ActionResult {
    match r {
        JobResult::Rows(_) => ActionResult::Ret(1),
        JobResult::Failed(why) => {
            ser_log!(L_ERR, "ERROR: jabber: {why}");
            ActionResult::Ret(-1)
        }
        _ => ActionResult::Ret(-1),
    }
}

/// The request URI's user and host.
fn ruri_parts(ctx: &Ctx) -> Option<(String, String)> {
    let u = Uri::parse(ctx.uri()).ok()?;
    Some((text(&u.user_unescaped()?), text(u.host_raw)))
}

/// The To URI's user and host (the conference commands name the room there).
fn to_parts(ctx: &Ctx) -> Option<(String, String)> {
    let to = ctx.msg.to().ok()?;
    let u = Uri::parse(to.uri_raw).ok()?;
    Some((text(&u.user_unescaped()?), text(u.host_raw)))
}

fn jab_send_message(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg]) -> ActionResult {
    if ctx.msg.method() != Method::Message {
        ser_log!(L_ERR, "ERROR: jabber: jab_send_message: not a MESSAGE");
        return ActionResult::Ret(-1);
    }
    let cfg = crate::script::config(&*env, JabberSettings::resolve).into_owned();
    let Some((user, host)) = ruri_parts(ctx) else {
        return ActionResult::Ret(-1);
    };
    let Some((to, nick)) = cfg.to_jid(&user, &host) else {
        ser_log!(
            L_DBG,
            "jabber: {user}@{host} is not a Jabber destination (jdomain {})",
            cfg.jdomain
        );
        return ActionResult::Ret(-1);
    };
    let body = ctx.msg.body();
    if body.is_empty() {
        ser_log!(
            L_ERR,
            "ERROR: jabber: jab_send_message: the MESSAGE has no body"
        );
        return ActionResult::Ret(-1);
    }
    let body = text(body);
    start(
        ctx,
        env,
        JabberOp::Message {
            to,
            body,
            groupchat: nick.is_some(),
        },
        None,
    )
}

fn jab_go_online(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg]) -> ActionResult {
    start(ctx, env, JabberOp::GoOnline, None)
}

fn jab_go_offline(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg]) -> ActionResult {
    start(ctx, env, JabberOp::GoOffline, None)
}

/// The room of the To URI and the nickname (the SIP user's name when the address has none).
fn room(ctx: &Ctx, env: &dyn Env) -> Option<(String, String)> {
    let cfg = crate::script::config(env, JabberSettings::resolve).into_owned();
    let (user, host) = to_parts(ctx)?;
    let parts = user.split(cfg.delim).count();
    // Two parts at jdomain name a room without a nickname here (not a Jabber user).
    let (room, nick) = if parts == 2 {
        let (r, s) = user.split_once(cfg.delim)?;
        (format!("{r}@{s}"), None)
    } else {
        cfg.to_jid(&user, &host).filter(|(_, n)| n.is_some())?
    };
    let nick = nick.or_else(|| sip_id(ctx).map(|(_, u)| u))?;
    Some((room, nick))
}

fn jab_join_jconf(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg]) -> ActionResult {
    let Some((room, nick)) = room(ctx, &*env) else {
        ser_log!(
            L_ERR,
            "ERROR: jabber: jab_join_jconf: the To URI names no conference"
        );
        return ActionResult::Ret(-1);
    };
    start(ctx, env, JabberOp::Join { room, nick }, None)
}

fn jab_exit_jconf(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg]) -> ActionResult {
    let Some((room, nick)) = room(ctx, &*env) else {
        ser_log!(
            L_ERR,
            "ERROR: jabber: jab_exit_jconf: the To URI names no conference"
        );
        return ActionResult::Ret(-1);
    };
    start(ctx, env, JabberOp::Exit { room, nick }, None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn settings() -> JabberSettings {
        let mut s = JabberSettings::resolve(None);
        s.jdomain = "jabber.x.org".into();
        s.aliases = parse_aliases("2;msn.x.org=%;aim.x.org;");
        s
    }

    #[test]
    fn addresses_translate_both_ways() {
        let s = settings();
        assert_eq!(
            s.to_jid("bob*xmpp.test", "Jabber.X.org"),
            Some(("bob@xmpp.test".into(), None))
        );
        assert_eq!(
            s.to_jid("me*room*conf.test", "jabber.x.org"),
            Some(("room@conf.test".into(), Some("me".into())))
        );
        assert_eq!(s.to_jid("bob", "jabber.x.org"), None);
        assert_eq!(s.to_jid("bob*x", "other.org"), None);
        assert_eq!(
            s.to_jid("u*hotmail.com", "msn.x.org"),
            Some(("u%hotmail.com@msn.x.org".into(), None))
        );
        assert_eq!(
            s.to_sip("bob@xmpp.test/res"),
            "sip:bob*xmpp.test@jabber.x.org"
        );
        assert_eq!(
            s.to_sip("u%hotmail.com@msn.x.org"),
            "sip:u*hotmail.com@msn.x.org"
        );
        assert_eq!(
            s.room_to_sip("room@conf.test/me"),
            "sip:me*room*conf.test@jabber.x.org"
        );
    }

    #[test]
    fn accounts_of_other_types_are_skipped() {
        let rows = vec![
            vec![Some("icq1".into()), Some("p".into()), Some("2".into())],
            vec![Some("alice@x".into()), None, Some("0".into())],
        ];
        assert_eq!(account(&rows), Some(("alice@x".into(), String::new())));
        assert_eq!(account(&[]), None);
    }

    #[test]
    fn presence_changes_are_reported_once() {
        let p = Presences::default();
        assert!(p.set("Bob@X/res", true));
        assert!(!p.set("bob@x", true));
        assert!(p.open("bob@x/other"));
        assert!(p.set("bob@x", false));
        assert!(!p.open("bob@x"));
    }
}
