//! Script module `enum`: ENUM: E.164 number resolution (RFC 3761).
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `enum_query` | Str (optional) | request | rewrite the Request-URI from the ENUM record: suffix (default `domain_suffix`) |
//! | `is_from_user_e164` | - | request | true if the From user is an E.164 number |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `domain_suffix` | string | `"e164.arpa."` |
//!
//! `enum_query`: the Request-URI's user must be an E.164 number (`+` and 2–15 digits, as SER's
//! `is_e164`), else false at once. Its digits, reversed and dot-separated under the suffix
//! (`+4412345` → `5.4.3.2.1.4.4.e164.arpa.`), are looked up as NAPTR by the controlplane's
//! resolver (a job: the shard never waits on DNS); the `E2U+sip` records with flag `u` are tried
//! in order/preference order and the first whose regexp matches the number gives the new
//! Request-URI (see `controlplane::modules::enum`). No usable record, a DNS failure or a result
//! that is not a valid SIP URI: false, the Request-URI unchanged, the reason logged.

use crate::offload::{Job, JobResult};
use crate::script::env::{level, ActionResult, Env};
use crate::script::ir::{Arg, Program};
use crate::script::{
    ArgKind::*, Ctx, FunctionDecl, ModuleConfig, ModuleDecl, ParamDecl, RouteKinds,
};
use crate::wire::uri::Uri;

/// Declaration of module `enum`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "enum",
    aliases: &[],
    depends: &[],
    functions: &[
        FunctionDecl::new(
            "enum_query",
            &[Str],
            RouteKinds::REQUEST,
            "rewrite the request URI from the ENUM record: suffix (optional)",
        )
        .min(0)
        .implemented_by(enum_query),
        FunctionDecl::new(
            "is_from_user_e164",
            &[],
            RouteKinds::REQUEST,
            "true if the From user is an E.164 number",
        )
        .implemented_by(is_from_user_e164),
    ],
    params: &[ParamDecl::str("domain_suffix", "e164.arpa.")],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "ENUM: E.164 number resolution",
    config: Some(resolve_config),
    commands: &[],
};

/// enum's settings, resolved once per loaded program.
#[derive(Debug, Clone)]
struct EnumConfig {
    suffix: String,
}

impl EnumConfig {
    fn resolve(program: Option<&Program>) -> EnumConfig {
        let suffix = super::param(program, &MODULE, "domain_suffix")
            .and_then(|p| p.str())
            .unwrap_or("e164.arpa.")
            .to_string();
        EnumConfig { suffix }
    }
}

fn resolve_config(program: &Program) -> ModuleConfig {
    std::sync::Arc::new(EnumConfig::resolve(Some(program)))
}

fn log(ctx: &Ctx, env: &mut dyn Env, lvl: i32, msg: String) {
    if ctx.log_enabled(lvl) {
        env.log(lvl, msg.as_bytes());
    }
}

/// SER's `is_e164`: `+` followed by 2 to 15 digits.
pub fn is_e164(user: &[u8]) -> bool {
    match user.split_first() {
        Some((b'+', digits)) => {
            (2..=15).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    }
}

/// The ENUM domain of `number` (`+` and digits) under `suffix`.
pub fn enum_domain(number: &[u8], suffix: &str) -> String {
    let mut d = String::with_capacity(number.len() * 2 + suffix.len() + 1);
    for &b in number.iter().rev().filter(|b| b.is_ascii_digit()) {
        d.push(b as char);
        d.push('.');
    }
    d.push_str(suffix.trim_start_matches('.'));
    if !d.ends_with('.') {
        d.push('.');
    }
    d
}

fn enum_query(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let cfg = crate::script::config(&*env, EnumConfig::resolve);
    let suffix = match args.first() {
        Some(Arg::Str(s)) if !s.is_empty() => s.to_string(),
        _ => cfg.suffix.clone(),
    };
    let user = match Uri::parse(ctx.uri()) {
        Ok(u) => u.user.unwrap_or_default().to_vec(),
        Err(_) => {
            log(
                ctx,
                env,
                level::ERR,
                "enum_query: the Request-URI cannot be parsed".into(),
            );
            return ActionResult::Ret(-1);
        }
    };
    if !is_e164(&user) {
        log(
            ctx,
            env,
            level::DBG,
            format!(
                "enum_query: {:?} is not an E.164 number",
                String::from_utf8_lossy(&user)
            ),
        );
        return ActionResult::Ret(-1);
    }
    let job = Job::EnumQuery {
        number: String::from_utf8_lossy(&user).into_owned(),
        domain: enum_domain(&user, &suffix),
    };
    ctx.suspend_with(job, after_query)
}

fn after_query(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg], r: JobResult) -> ActionResult {
    match r {
        JobResult::Names(names) => {
            let Some(uri) = names.into_iter().next() else {
                log(ctx, env, level::WARN, "enum_query: empty answer".into());
                return ActionResult::Ret(-1);
            };
            if Uri::parse(uri.as_bytes()).is_err() {
                log(
                    ctx,
                    env,
                    level::WARN,
                    format!("enum_query: the ENUM rewrite {uri:?} is not a valid URI"),
                );
                return ActionResult::Ret(-1);
            }
            ctx.set_uri(uri.as_bytes());
            ActionResult::Ret(1)
        }
        JobResult::Failed(why) => {
            log(ctx, env, level::NOTICE, format!("enum_query: {why}"));
            ActionResult::Ret(-1)
        }
        _ => ActionResult::Ret(-1),
    }
}

fn is_from_user_e164(ctx: &mut Ctx, _env: &mut dyn Env, _args: &[Arg]) -> ActionResult {
    let ok = ctx
        .msg
        .from()
        .is_ok_and(|f| f.uri.user.is_some_and(is_e164));
    ActionResult::from_bool(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_numbers_and_domains() {
        assert!(is_e164(b"+4412345"));
        assert!(is_e164(b"+12"));
        assert!(!is_e164(b"+1"));
        assert!(!is_e164(b"4412345"));
        assert!(!is_e164(b"+44a2345"));
        assert!(!is_e164(b"+1234567890123456"));
        assert_eq!(
            enum_domain(b"+4412345", "e164.arpa."),
            "5.4.3.2.1.4.4.e164.arpa."
        );
        assert_eq!(enum_domain(b"+12", "e164.example"), "2.1.e164.example.");
    }
}
