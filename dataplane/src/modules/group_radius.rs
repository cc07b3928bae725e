//! Script module `group_radius`: group membership checks by a RADIUS server.
//!
//! `radius_is_user_in(source, group)` sends an Access-Request with `User-Name` (the user named
//! by `source`, as module `group` reads it: `Request-URI`, `To`, `From` or `Credentials`;
//! `user@domain` with `use_domain`), `Sip-Group` = `group` and `Service-Type` = `Group-Check`
//! (12), and suspends the script until the server answers: Access-Accept is true (1),
//! Access-Reject false (-1). A server that does not answer (or an unusable `radius_config`,
//! logged at load) is false too, with a log line: the script's own branch handles it.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `radius_is_user_in` | Str, Str | request | true if the user is in the group (RADIUS) |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `radius_config` | string | `"/usr/local/etc/radiusclient/radiusclient.conf"` |
//! | `use_domain` | int | `0` |

use std::sync::Arc;

use crate::auth::str_arg;
use crate::offload::JobResult;
use crate::radius::{Loaded, Value, ACCESS_ACCEPT, ACCESS_REQUEST};
use crate::script::env::{level, ActionResult, Env};
use crate::script::ir::{Arg, Program};
use crate::script::{ArgKind::*, Ctx, FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};

const ATTRS: &[&str] = &["User-Name", "Sip-Group", "Service-Type"];

/// group_radius's settings, resolved (and `radius_config` read) once per loaded program.
#[derive(Debug, Clone)]
pub struct GroupRadiusConfig {
    radius: Loaded,
    use_domain: bool,
}

impl GroupRadiusConfig {
    fn resolve(program: Option<&Program>) -> GroupRadiusConfig {
        let param = |n| super::param(program, &MODULE, n);
        let path = param("radius_config").and_then(|p| p.str()).unwrap_or("");
        GroupRadiusConfig {
            radius: match program {
                Some(_) => crate::radius::load_logged("group_radius", path, ATTRS),
                None => Err("group_radius: no program loaded".into()),
            },
            use_domain: param("use_domain").and_then(|p| p.int()).unwrap_or(0) != 0,
        }
    }
}

fn resolve_config(program: &Program) -> crate::script::ModuleConfig {
    Arc::new(GroupRadiusConfig::resolve(Some(program)))
}

fn fail(ctx: &Ctx, env: &mut dyn Env, why: &str) -> ActionResult {
    if ctx.log_enabled(level::ERR) {
        env.log(
            level::ERR,
            format!("ERROR: radius_is_user_in: {why}").as_bytes(),
        );
    }
    ActionResult::Ret(-1)
}

fn radius_is_user_in(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let cfg = crate::script::config(&*env, GroupRadiusConfig::resolve);
    let radius = match &cfg.radius {
        Ok(r) => Arc::clone(r),
        Err(e) => {
            let e = e.clone();
            return fail(ctx, env, &e);
        }
    };
    let (user, domain) = match super::group::identity(ctx, str_arg(args, 0)) {
        Ok(x) => x,
        Err(e) => return fail(ctx, env, e),
    };
    let t = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let name = if cfg.use_domain {
        format!("{}@{}", t(&user), t(&domain))
    } else {
        t(&user)
    };
    let group_check = radius
        .dict
        .value("Service-Type", "Group-Check")
        .unwrap_or(12);
    let mut attrs = Vec::new();
    let d = &radius.dict;
    let built = d
        .push(&mut attrs, "User-Name", Value::Text(&name))
        .and_then(|_| d.push(&mut attrs, "Sip-Group", Value::Text(str_arg(args, 1))))
        .and_then(|_| d.push(&mut attrs, "Service-Type", Value::Int(group_check)));
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

/// Declaration of module `group_radius`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "group_radius",
    aliases: &[],
    depends: &[],
    functions: &[FunctionDecl::new(
        "radius_is_user_in",
        &[Str, Str],
        RouteKinds::REQUEST,
        "true if the user is in the group (RADIUS)",
    )
    .implemented_by(radius_is_user_in)],
    params: &[
        ParamDecl::str(
            "radius_config",
            "/usr/local/etc/radiusclient/radiusclient.conf",
        ),
        ParamDecl::int("use_domain", 0),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "group membership checks via RADIUS",
    config: Some(resolve_config),
    commands: &[],
};
