//! Script module `vm`: the voicemail interface — hands a transaction to a media application
//! (voicemail, conference, echo) through its FIFO, and the application answers the transaction
//! through ser's FIFO command `t_reply`. Also answers to `modparam("voicemail", ...)`.
//! Needs `tm` loaded as well (call `t_newtran` first).
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `vm` | Str, Str | request | hand the transaction to the media application: fifo, action |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `db_url` | string | `""` (the server's default database; a plain directory is a dbtext database, as in SER) |
//! | `email_column` | string | `"email_address"` |
//! | `subscriber_table` | string | `"subscriber"` |
//! | `user_column` | string | `"username"` |
//! | `domain_column` | string | `"domain"` |
//! | `use_domain` | int | `0` (1: the user is looked up with the Request-URI's host as domain) |
//!
//! What goes to the FIFO, one line each (SER 0.8.11's vm): the action, the Request-URI's user,
//! the user's email address (looked up in `subscriber_table` for every action but `bye`; empty
//! when the user has none), the address the request came in on, the caller's Contact URI (its
//! From URI without one), From, To, Call-ID, the From tag, the To tag, the CSeq number, the
//! transaction's `hash:label`, the Route header (empty without one) and, when the request has
//! one, its body. The FIFO is opened without blocking: when no application reads it, `vm`
//! returns false at once (the script then answers 500, as vm-ser.cfg does). When the
//! application does not answer within tm's `fr_timer`, the caller gets a 408 (SER's blind UAC).
//!
//! The application answers with the FIFO command `t_reply` (SER's `vm_reply` is the same
//! command): `:t_reply:<reply fifo>`, then the lines code, reason, `hash:label`, To tag, header
//! lines ended by `.`, body lines ended by `.`.

use crate::offload::{Job, JobResult};
use crate::script::env::{ActionResult, Env};
use crate::script::ir::{Arg, Program};
use crate::script::{
    ArgKind::*, Ctx, FunctionDecl, ModuleConfig, ModuleDecl, ParamDecl, RouteKinds,
};
use crate::ser_log;
use crate::shard::log::{L_DBG, L_ERR, L_WARN};
use crate::wire::HeaderId;

/// Declaration of module `vm`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "vm",
    aliases: &["voicemail"],
    depends: &["tm"],
    functions: &[FunctionDecl::new(
        "vm",
        &[Str, Str],
        RouteKinds::REQUEST,
        "hand the transaction to the media application: fifo, action",
    )
    .implemented_by(vm)],
    params: &[
        ParamDecl::str("db_url", ""),
        ParamDecl::str("email_column", "email_address"),
        ParamDecl::str("subscriber_table", "subscriber"),
        ParamDecl::str("user_column", "username"),
        ParamDecl::str("domain_column", "domain"),
        ParamDecl::int("use_domain", 0),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "voicemail interface: hands transactions to a media server through its FIFO",
    config: Some(resolve_config),
    commands: &[],
};

/// vm's settings, resolved once per loaded program.
#[derive(Debug, Clone)]
pub struct VmConfig {
    db_url: String,
    email_column: String,
    subscriber_table: String,
    user_column: String,
    domain_column: String,
    use_domain: bool,
}

impl VmConfig {
    fn resolve(program: Option<&Program>) -> VmConfig {
        let s = |n: &str, d: &str| {
            super::param(program, &MODULE, n)
                .and_then(|p| p.str())
                .unwrap_or(d)
                .to_string()
        };
        // SER's example gives a dbtext directory (a plain path): the controlplane opens it as one.
        let db_url = s("db_url", "");
        VmConfig {
            db_url,
            email_column: s("email_column", "email_address"),
            subscriber_table: s("subscriber_table", "subscriber"),
            user_column: s("user_column", "username"),
            domain_column: s("domain_column", "domain"),
            use_domain: super::param(program, &MODULE, "use_domain")
                .and_then(|p| p.int())
                .unwrap_or(0)
                != 0,
        }
    }
}

fn resolve_config(program: &Program) -> ModuleConfig {
    std::sync::Arc::new(VmConfig::resolve(Some(program)))
}

fn arg(args: &[Arg], i: usize) -> &str {
    match args.get(i) {
        Some(Arg::Str(s)) => s,
        _ => "",
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The lines for the media server; `Err` says what the request lacks.
fn lines(ctx: &Ctx, action: &str, email: &str, trans_id: &str) -> Result<Vec<u8>, &'static str> {
    let msg = &ctx.msg;
    let from = msg.from().map_err(|_| "no usable From header")?;
    let to = msg.to().map_err(|_| "no usable To header")?;
    let call_id = msg.call_id().map_err(|_| "no Call-ID")?;
    let cseq = msg.cseq().map_err(|_| "no usable CSeq")?;
    let ruri = crate::wire::uri::Uri::parse(ctx.uri()).map_err(|_| "bad Request-URI")?;
    let contact = msg
        .contacts()
        .find_map(Result::ok)
        .map(|c| c.value.addr.uri_raw)
        .unwrap_or(from.uri_raw);
    let route = msg.header_value(HeaderId::Route).unwrap_or_default();
    let dst = ctx.dst.ip().to_string();
    let num = cseq.num.to_string();
    let fields: [&[u8]; 13] = [
        action.as_bytes(),
        ruri.user.unwrap_or_default(),
        email.as_bytes(),
        dst.as_bytes(),
        contact,
        from.raw,
        to.raw,
        call_id,
        from.tag().unwrap_or_default(),
        to.tag().unwrap_or_default(),
        num.as_bytes(),
        trans_id.as_bytes(),
        route,
    ];
    let mut out = Vec::new();
    for f in fields {
        out.extend_from_slice(f);
        out.push(b'\n');
    }
    let body = msg.body();
    if !body.is_empty() {
        out.extend_from_slice(body);
        out.push(b'\n');
    }
    Ok(out)
}

fn trans_id(ctx: &Ctx, env: &mut dyn Env) -> Option<String> {
    env.transaction_id(ctx)
}

fn vm(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    if trans_id(ctx, env).is_none() {
        ser_log!(
            L_ERR,
            "ERROR: vm: no transaction for this request (call t_newtran first)"
        );
        return ActionResult::Ret(-1);
    }
    if arg(args, 1) == "bye" {
        return write(ctx, env, args, "");
    }
    let cfg = crate::script::config(&*env, VmConfig::resolve);
    let Ok(ruri) = crate::wire::uri::Uri::parse(ctx.uri()) else {
        ser_log!(L_ERR, "ERROR: vm: the Request-URI cannot be parsed");
        return ActionResult::Ret(-1);
    };
    let mut keys = vec![(cfg.user_column.clone(), text(ruri.user.unwrap_or_default()))];
    if cfg.use_domain {
        keys.push((cfg.domain_column.clone(), text(ruri.host_raw)));
    }
    let job = Job::Db {
        url: cfg.db_url.clone(),
        table: cfg.subscriber_table.clone(),
        keys,
        columns: vec![cfg.email_column.clone()],
    };
    ctx.suspend_with(job, after_email)
}

fn after_email(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg], r: JobResult) -> ActionResult {
    let email = match r {
        JobResult::Rows(rows) => rows
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next().flatten())
            .unwrap_or_default(),
        JobResult::Failed(why) => {
            ser_log!(L_WARN, "vm: email lookup failed: {why}");
            String::new()
        }
        _ => String::new(),
    };
    if email.is_empty() {
        ser_log!(
            L_DBG,
            "vm: no email address for the user of {}",
            text(ctx.uri())
        );
    }
    write(ctx, env, args, &email)
}

fn write(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg], email: &str) -> ActionResult {
    let Some(id) = trans_id(ctx, env) else {
        return ActionResult::Ret(-1);
    };
    let data = match lines(ctx, arg(args, 1), email, &id) {
        Ok(d) => d,
        Err(why) => {
            ser_log!(L_ERR, "ERROR: vm: {why}");
            return ActionResult::Ret(-1);
        }
    };
    let job = Job::WriteFifo {
        path: arg(args, 0).to_string(),
        data: data.into(),
    };
    ctx.suspend_with(job, written)
}

fn written(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg], r: JobResult) -> ActionResult {
    match r {
        JobResult::Rows(_) => {
            // If the media server never answers, the caller gets a 408 (SER's t_addblind).
            if !env.add_blind(ctx) {
                ser_log!(L_WARN, "vm: the transaction is gone: no timeout for it");
            }
            ActionResult::Ret(1)
        }
        JobResult::Failed(why) => {
            ser_log!(L_ERR, "ERROR: vm: {why}");
            ActionResult::Ret(-1)
        }
        _ => ActionResult::Ret(-1),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::script::ir::Proto;

    #[test]
    fn the_lines_are_sers() {
        let raw = "INVITE sip:bob@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK1\r\n\
                   From: <sip:alice@x>;tag=a1\r\nTo: <sip:bob@x>\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\n\
                   Contact: <sip:alice@10.0.0.2:5062>\r\nContent-Length: 3\r\n\r\nv=0";
        let msg = crate::wire::Message::parse(bytes::Bytes::from(raw)).unwrap();
        let ctx = Ctx::new(
            msg,
            "10.0.0.2:5062".parse().unwrap(),
            "10.0.0.1:5060".parse().unwrap(),
            Proto::Udp,
        );
        let got = lines(&ctx, "voicemail", "bob@x", "512:7").unwrap();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "voicemail\nbob\nbob@x\n10.0.0.1\nsip:alice@10.0.0.2:5062\n<sip:alice@x>;tag=a1\n\
             <sip:bob@x>\nc1\na1\n\n7\n512:7\n\nv=0\n"
        );
    }
}
