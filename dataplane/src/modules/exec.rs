//! Script module `exec`: execute external programs (SER 0.8.11's exec).
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `exec_msg` | Str | request, failure | `/bin/sh -c cmd` with the request on standard input; true on exit 0 |
//! | `exec_dset` | Str | request, failure | `cmd '<current URI>'`; its output lines become the new Request-URI and branches |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `time_to_kill` | int | `0`: seconds a program may run before it is killed (and the call is false); 0 = the runner's bound (60 s) |
//! | `setvars` | int | `1`: pass the request in environment variables (0: none) |
//!
//! The program runs in the controlplane's exec pool (bounded; a full pool is a logged false at
//! once), never on the shard: the script suspends and resumes when the program ends. Its
//! environment (with `setvars`): every header as `SIP_HF_<NAME>` (the name upper-cased,
//! non-alphanumerics as `_`, known headers by their full name also when written compactly,
//! `Call-ID` as `SIP_HF_CALLID`, repeated headers joined with `,`), `SIP_TID` (32 hex digits
//! naming the transaction), `SIP_DID` (the To tag, empty in a dialog-creating request),
//! `SIP_SRCIP`, `SIP_RURI` (the current Request-URI), `SIP_ORURI` (the one received; also as
//! 0.8.11's `SIP_ORUI`), `SIP_USER`, `SIP_OUSER` (their user parts), and the Admin Guide's names
//! `SRCIP` and `URI_USER`.
//!
//! `exec_dset`: the first non-empty output line replaces the Request-URI, each further one is
//! appended as a branch (the destination set is replaced); every line must be a SIP URI, else the
//! call fails and nothing changes. Standard output is read up to 64 KiB.

use md5::{Digest, Md5};

use crate::offload::{Job, JobResult};
use crate::script::ctx::UriBuf;
use crate::script::env::{ActionResult, Env};
use crate::script::ir::{Arg, Program};
use crate::script::{
    ArgKind::*, Ctx, FunctionDecl, ModuleConfig, ModuleDecl, ParamDecl, Renamed, RouteKinds,
};
use crate::ser_log;
use crate::shard::log::{L_DBG, L_ERR};
use crate::wire::{HeaderId, Message};

/// Declaration of module `exec`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "exec",
    aliases: &[],
    depends: &[],
    functions: &[
        FunctionDecl::new(
            "exec_msg",
            &[Str],
            RouteKinds::REQUEST_FAILURE,
            "run a shell command with the request on standard input; false on non-zero exit",
        )
        .implemented_by(exec_msg),
        FunctionDecl::new(
            "exec_dset",
            &[Str],
            RouteKinds::REQUEST_FAILURE,
            "run a command with the URI appended; its output replaces the destination set",
        )
        .implemented_by(exec_dset),
    ],
    params: &[
        ParamDecl::int("time_to_kill", 0),
        ParamDecl::int("setvars", 1),
    ],
    renamed_functions: &[
        Renamed {
            old: "exec_uri",
            new: None,
            note: "exec_uri was obsoleted by exec_dset",
        },
        Renamed {
            old: "exec_user",
            new: None,
            note: "exec_user was obsoleted by exec_dset (use the user variable)",
        },
    ],
    renamed_params: &[],
    doc: "execute external programs",
    config: Some(resolve_config),
    commands: &[],
};

/// exec's settings, resolved once per loaded program.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    time_to_kill: Option<std::time::Duration>,
    setvars: bool,
}

impl ExecConfig {
    fn resolve(program: Option<&Program>) -> ExecConfig {
        let int = |n: &str| super::param(program, &MODULE, n).and_then(|p| p.int());
        ExecConfig {
            time_to_kill: int("time_to_kill")
                .filter(|&s| s > 0)
                .map(|s| std::time::Duration::from_secs(s as u64)),
            setvars: int("setvars").unwrap_or(1) != 0,
        }
    }
}

fn resolve_config(program: &Program) -> ModuleConfig {
    std::sync::Arc::new(ExecConfig::resolve(Some(program)))
}

// ------------------------------------------------------------------------------------- environment

/// `SIP_HF_` + the header's name as exec names it.
fn header_var(id: HeaderId, written: &[u8]) -> String {
    let name: &[u8] = match id {
        HeaderId::CallId => b"CALLID",
        HeaderId::Other => written,
        known => known.name().as_bytes(),
    };
    let mut v = String::with_capacity(7 + name.len());
    v.push_str("SIP_HF_");
    for &b in name {
        v.push(if b.is_ascii_alphanumeric() {
            b.to_ascii_uppercase() as char
        } else {
            '_'
        });
    }
    v
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn user_of(uri: &[u8]) -> String {
    crate::wire::uri::Uri::parse(uri)
        .ok()
        .and_then(|u| u.user.map(text))
        .unwrap_or_default()
}

/// 32 hex digits naming the transaction: the same for a retransmission of the request.
fn transaction_id(msg: &Message) -> String {
    let mut h = Md5::new();
    if let Ok(v) = msg.top_via() {
        h.update(v.branch().unwrap_or_default());
    }
    h.update(msg.call_id().unwrap_or_default());
    if let Ok(c) = msg.cseq() {
        h.update(c.num.to_string().as_bytes());
    }
    if let Ok(f) = msg.from() {
        h.update(f.tag().unwrap_or_default());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The environment of a program run for the request in `ctx`.
fn environment(ctx: &Ctx) -> Vec<(String, String)> {
    let msg = &ctx.msg;
    let mut env: Vec<(String, String)> = Vec::new();
    for f in msg.headers() {
        let name = header_var(f.id, f.name);
        let value = text(f.value);
        match env.iter_mut().find(|(k, _)| *k == name) {
            Some((_, v)) => {
                v.push(',');
                v.push_str(&value);
            }
            None => env.push((name, value)),
        }
    }
    let ruri = text(ctx.uri());
    let oruri = text(ctx.original_uri());
    let src = ctx.src.ip().to_string();
    let did = msg
        .to()
        .ok()
        .and_then(|t| t.tag().map(text))
        .unwrap_or_default();
    let user = user_of(ctx.uri());
    let ouser = user_of(ctx.original_uri());
    env.extend([
        ("SIP_TID".into(), transaction_id(msg)),
        ("SIP_DID".into(), did),
        ("SIP_SRCIP".into(), src.clone()),
        ("SRCIP".into(), src),
        ("SIP_RURI".into(), ruri),
        ("SIP_ORURI".into(), oruri.clone()),
        ("SIP_ORUI".into(), oruri),
        ("SIP_USER".into(), user.clone()),
        ("URI_USER".into(), user),
        ("SIP_OUSER".into(), ouser),
    ]);
    env
}

fn job(ctx: &Ctx, env: &dyn Env, command: String, stdin: Option<bytes::Bytes>) -> Job {
    let cfg = crate::script::config(env, ExecConfig::resolve);
    Job::Exec {
        command,
        env: if cfg.setvars {
            environment(ctx)
        } else {
            Vec::new()
        },
        stdin,
        time_to_kill: cfg.time_to_kill,
    }
}

fn command(args: &[Arg]) -> Option<&str> {
    match args.first() {
        Some(Arg::Str(s)) => Some(s),
        _ => None,
    }
}

// ------------------------------------------------------------------------------------- functions

fn exec_msg(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let Some(cmd) = command(args) else {
        return ActionResult::Ret(-1);
    };
    // The request as received (SER handed the program its receive buffer).
    let stdin = ctx.msg.buffer().slice(..ctx.msg.len());
    let j = job(ctx, &*env, cmd.to_string(), Some(stdin));
    ctx.suspend_with(j, exec_msg_done)
}

fn exec_msg_done(_: &mut Ctx, _: &mut dyn Env, args: &[Arg], r: JobResult) -> ActionResult {
    let cmd = command(args).unwrap_or_default();
    match r {
        JobResult::Exec { status: 0, .. } => ActionResult::Ret(1),
        JobResult::Exec { status, .. } => {
            ser_log!(L_DBG, "exec_msg: {cmd:?} exited with {status}");
            ActionResult::Ret(-1)
        }
        JobResult::Failed(why) => {
            ser_log!(L_ERR, "ERROR: exec_msg: {why}");
            ActionResult::Ret(-1)
        }
        _ => ActionResult::Ret(-1),
    }
}

fn exec_dset(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let Some(cmd) = command(args) else {
        return ActionResult::Ret(-1);
    };
    // SER appended the URI as it was; it comes from the network, so here it is one quoted
    // word: the shell never reads `;`, `$(…)` or backticks of a Request-URI as commands.
    let line = format!("{cmd} {}", shell_quote(&String::from_utf8_lossy(ctx.uri())));
    let j = job(ctx, &*env, line, None);
    ctx.suspend_with(j, exec_dset_done)
}

/// `s` as one single-quoted shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The URIs of a program's output: one per non-empty line; `Err` names the first bad one.
fn output_uris(out: &[u8]) -> Result<Vec<UriBuf>, String> {
    let mut uris = Vec::new();
    for line in out.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        match crate::wire::uri::Uri::parse(line) {
            Ok(u)
                if matches!(
                    u.scheme,
                    crate::wire::uri::Scheme::Sip | crate::wire::uri::Scheme::Sips
                ) =>
            {
                uris.push(UriBuf::from_slice(line))
            }
            _ => {
                return Err(format!(
                    "not a SIP URI: {:?}",
                    String::from_utf8_lossy(line)
                ))
            }
        }
    }
    Ok(uris)
}

fn exec_dset_done(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg], r: JobResult) -> ActionResult {
    let cmd = command(args).unwrap_or_default();
    let stdout = match r {
        JobResult::Exec { status: 0, stdout } => stdout,
        JobResult::Exec { status, .. } => {
            ser_log!(L_DBG, "exec_dset: {cmd:?} exited with {status}");
            return ActionResult::Ret(-1);
        }
        JobResult::Failed(why) => {
            ser_log!(L_ERR, "ERROR: exec_dset: {why}");
            return ActionResult::Ret(-1);
        }
        _ => return ActionResult::Ret(-1),
    };
    let uris = match output_uris(&stdout) {
        Ok(u) if !u.is_empty() => u,
        Ok(_) => {
            ser_log!(L_ERR, "ERROR: exec_dset: {cmd:?} printed no URI");
            return ActionResult::Ret(-1);
        }
        Err(e) => {
            ser_log!(L_ERR, "ERROR: exec_dset: {cmd:?}: {e}");
            return ActionResult::Ret(-1);
        }
    };
    ctx.set_uri(&uris[0]);
    ctx.clear_branches();
    for u in &uris[1..] {
        if ctx.append_branch_checked(env, Some(u)) < 0 {
            return ActionResult::Ret(-1);
        }
    }
    ActionResult::Ret(1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn header_variables_are_named_as_exec_names_them() {
        assert_eq!(header_var(HeaderId::CallId, b"i"), "SIP_HF_CALLID");
        assert_eq!(
            header_var(HeaderId::MaxForwards, b"Max-Forwards"),
            "SIP_HF_MAX_FORWARDS"
        );
        assert_eq!(header_var(HeaderId::From, b"f"), "SIP_HF_FROM");
        assert_eq!(header_var(HeaderId::CSeq, b"CSEQ"), "SIP_HF_CSEQ");
        assert_eq!(
            header_var(HeaderId::Other, b"X-Foo.bar"),
            "SIP_HF_X_FOO_BAR"
        );
    }

    #[test]
    fn the_uri_is_one_shell_word() {
        assert_eq!(shell_quote("sip:a@b;x=$(id)"), "'sip:a@b;x=$(id)'");
        assert_eq!(shell_quote("sip:o'hara@b"), "'sip:o'\\''hara@b'");
    }

    #[test]
    fn dset_output_must_be_sip_uris() {
        let u = output_uris(b"sip:a@x\n\nsip:b@y\r\n").unwrap();
        assert_eq!(u.len(), 2);
        assert!(output_uris(b"sip:a@x\nhello world\n").is_err());
        assert!(output_uris(b"").unwrap().is_empty());
    }
}
