//! The RPC console: the management commands the running program serves (the registry's `which`
//! list, with each command's help and module, so module commands show only while their module is
//! loaded), and a form that runs one with parameters, as `serctl fifo NAME PARAM...` would. The
//! reply (status, body lines, and the structured JSON form when the command has one) is shown
//! through the template, so it is escaped like every other value.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use minijinja::context;
use serde::Serialize;

use super::pages::{Ctx, Params};
use super::Web;

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/ui/rpc", get(console))
        .route("/ui/rpc/run", post(run))
}

#[derive(Serialize)]
struct CommandRow {
    name: &'static str,
    help: &'static str,
    module: &'static str,
}

#[derive(Serialize)]
struct Outcome {
    code: u16,
    reason: String,
    ok: bool,
    body: Vec<String>,
    json: String,
}

fn commands(w: &Web) -> Vec<CommandRow> {
    w.registry
        .commands()
        .map(|c| CommandRow {
            name: c.name,
            help: c.help,
            module: c.module.unwrap_or("core"),
        })
        .collect()
}

/// Parameters as typed: one a line (a FIFO request's lines), trailing empty lines dropped.
fn params_of(text: &str) -> Vec<String> {
    let mut p: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect();
    while p.last().is_some_and(|l| l.is_empty()) {
        p.pop();
    }
    p
}

fn show(w: &Web, ctx: &Ctx, cmd: &str, params: &str, outcome: Option<Outcome>) -> Response {
    w.page(
        "rpc.html",
        ctx,
        "rpc",
        context! { commands => commands(w), cmd => cmd, params => params, outcome => outcome },
    )
}

async fn console(
    State(w): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Response {
    let ctx = match w.session(&headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let cmd = q.get("cmd").map(String::as_str).unwrap_or("");
    show(&w, &ctx, cmd, "", None)
}

async fn run(State(w): State<Arc<Web>>, headers: HeaderMap, Form(f): Form<Params>) -> Response {
    let ctx = match w.action(&headers, &f) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let cmd = f.get("cmd").map(|s| s.trim()).unwrap_or("");
    let params = f.get("params").map(String::as_str).unwrap_or("");
    if cmd.is_empty() {
        return show(&w, &ctx, cmd, params, None);
    }
    let reply = w.registry.call(cmd, params_of(params)).await;
    let json = reply
        .data
        .as_ref()
        .and_then(|d| serde_json::to_string_pretty(d).ok())
        .unwrap_or_default();
    let outcome = Outcome {
        code: reply.code,
        ok: reply.is_success(),
        reason: reply.reason,
        body: reply.body,
        json,
    };
    show(&w, &ctx, cmd, params, Some(outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_lines_without_the_trailing_empty_ones() {
        assert_eq!(params_of("a\r\nb\n\n"), vec!["a", "b"]);
        assert_eq!(params_of("\nb"), vec!["", "b"]);
        assert!(params_of("").is_empty());
    }
}
