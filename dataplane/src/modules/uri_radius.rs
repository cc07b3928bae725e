//! Script module `uri_radius`: does the Request-URI name a known user, asked of a RADIUS server.
//!
//! `radius_does_uri_exist()` sends an Access-Request with `User-Name` = `user@host` of the
//! current Request-URI and `Service-Type` = `Call-Check` (10), and suspends the script until the
//! server answers: Access-Accept is true (1), Access-Reject false (-1). A server that does not
//! answer (or an unusable `radius_config`, logged at load) is false too, with a log line.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `radius_does_uri_exist` | - | request | true if the request URI exists (RADIUS) |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `radius_config` | string | `"/usr/local/etc/radiusclient/radiusclient.conf"` |

use std::sync::Arc;

use crate::auth::uri_user_host;
use crate::offload::JobResult;
use crate::radius::{Loaded, Value, ACCESS_ACCEPT, ACCESS_REQUEST};
use crate::script::env::{level, ActionResult, Env};
use crate::script::ir::{Arg, Program};
use crate::script::{Ctx, FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};

const ATTRS: &[&str] = &["User-Name", "Service-Type"];

/// uri_radius's settings, resolved (and `radius_config` read) once per loaded program.
#[derive(Debug, Clone)]
pub struct UriRadiusConfig {
    radius: Loaded,
}

impl UriRadiusConfig {
    fn resolve(program: Option<&Program>) -> UriRadiusConfig {
        let path = super::param(program, &MODULE, "radius_config")
            .and_then(|p| p.str())
            .unwrap_or("");
        UriRadiusConfig {
            radius: match program {
                Some(_) => crate::radius::load_logged("uri_radius", path, ATTRS),
                None => Err("uri_radius: no program loaded".into()),
            },
        }
    }
}

fn resolve_config(program: &Program) -> crate::script::ModuleConfig {
    Arc::new(UriRadiusConfig::resolve(Some(program)))
}

fn fail(ctx: &Ctx, env: &mut dyn Env, why: &str) -> ActionResult {
    if ctx.log_enabled(level::ERR) {
        env.log(
            level::ERR,
            format!("ERROR: radius_does_uri_exist: {why}").as_bytes(),
        );
    }
    ActionResult::Ret(-1)
}

fn radius_does_uri_exist(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg]) -> ActionResult {
    let cfg = crate::script::config(&*env, UriRadiusConfig::resolve);
    let radius = match &cfg.radius {
        Ok(r) => Arc::clone(r),
        Err(e) => {
            let e = e.clone();
            return fail(ctx, env, &e);
        }
    };
    let Some((user, host)) = uri_user_host(ctx.uri()) else {
        return fail(ctx, env, "bad Request-URI");
    };
    let name = format!(
        "{}@{}",
        String::from_utf8_lossy(&user),
        String::from_utf8_lossy(&host)
    );
    let call_check = radius
        .dict
        .value("Service-Type", "Call-Check")
        .unwrap_or(10);
    let mut attrs = Vec::new();
    let d = &radius.dict;
    let built = d
        .push(&mut attrs, "User-Name", Value::Text(&name))
        .and_then(|_| d.push(&mut attrs, "Service-Type", Value::Int(call_check)));
    if let Err(e) = built {
        return fail(ctx, env, &e);
    }
    ctx.suspend_with(
        crate::offload::Job::Radius(radius.request(ACCESS_REQUEST, attrs)),
        resume,
    )
}

fn resume(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg], result: JobResult) -> ActionResult {
    match result {
        JobResult::Radius { code, .. } => ActionResult::from_bool(code == ACCESS_ACCEPT),
        JobResult::Failed(e) => fail(ctx, env, &e),
        other => fail(ctx, env, &format!("BUG: unexpected answer {other:?}")),
    }
}

/// Declaration of module `uri_radius`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "uri_radius",
    aliases: &[],
    depends: &[],
    functions: &[FunctionDecl::new(
        "radius_does_uri_exist",
        &[],
        RouteKinds::REQUEST,
        "true if the request URI exists (RADIUS)",
    )
    .implemented_by(radius_does_uri_exist)],
    params: &[ParamDecl::str(
        "radius_config",
        "/usr/local/etc/radiusclient/radiusclient.conf",
    )],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "RADIUS variant of uri",
    config: Some(resolve_config),
    commands: &[],
};
