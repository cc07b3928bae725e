//! `/ui/permissions`: the permissions module's rule files (hosts.allow-style allow and deny
//! files), edited in the page.
//!
//! The files listed are the ones the running program reads: its `default_allow_file` and
//! `default_deny_file` and every pair its `allow_routing`/`allow_register` calls name, relative
//! names taken from the config file's directory ([`dataplane::modules::permissions::rule_files`]).
//! A program without the module lists none.
//!
//! | action | what happens |
//! |---|---|
//! | Check | the text is parsed by the module's own parser; the first error is shown as `file:line:col: why` |
//! | Save and reload | the same check; with an error nothing is written. Otherwise the file is replaced atomically (as `/ui/config` does; the old one kept as `FILE.bak`) and the server reloaded through the `reload` command, which reads the rule files again, so the next request is decided by the new rules |
//!
//! Only a file of the running program's list can be written (the form names it; any other path
//! is refused). Both actions need an administrator's session and its CSRF token; saves are
//! serialised.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use dataplane::modules::permissions::check;
use minijinja::context;
use serde::Serialize;

use super::config::save_atomically;
use super::pages::{Ctx, Params};
use super::Web;

pub(super) const TEMPLATES: &[(&str, &str)] = &[(
    "permissions.html",
    include_str!("templates/permissions.html"),
)];

/// The largest rule file the page takes (the UI's 64 KiB body limit bounds it anyway).
pub const MAX_RULES: usize = 60 * 1024;

/// Saves and their reloads one at a time (two administrators cannot interleave them).
static SAVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn routes() -> Router<Arc<Web>> {
    Router::new().route("/ui/permissions", get(page).post(act))
}

/// One rule file as the page shows it.
#[derive(Serialize, Debug)]
struct Shown {
    path: String,
    text: String,
    /// "N rule(s)", "does not exist (no rules)", or the parser's error.
    status: String,
    ok: bool,
    /// The file this POST was about (its outcome is shown with it).
    current: bool,
    outcome: Option<String>,
    /// The outcome is good news (checked clean).
    outcome_ok: bool,
}

fn read(path: &Path) -> Shown {
    let p = path.display().to_string();
    let (text, status, ok) = match std::fs::read(path) {
        Ok(b) => {
            let text = String::from_utf8_lossy(&b).into_owned();
            match check(&p, &text) {
                Ok(n) => (text, format!("{n} rule(s)"), true),
                Err(e) => (text, format!("{e} (checks using it fail)"), false),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            (String::new(), "does not exist (no rules)".into(), true)
        }
        Err(e) => (String::new(), format!("cannot read: {e}"), false),
    };
    Shown {
        path: p,
        text,
        status,
        ok,
        current: false,
        outcome: None,
        outcome_ok: false,
    }
}

/// Browsers send a text area's lines with CRLF; the file keeps LF.
fn normalize(text: &str) -> String {
    text.replace("\r\n", "\n")
}

fn show(w: &Web, ctx: &Ctx, status: StatusCode, files: Vec<Shown>) -> Response {
    let mut r = w.page(
        "permissions.html",
        ctx,
        "permissions",
        context! { files => files },
    );
    *r.status_mut() = status;
    r
}

fn files(w: &Web) -> Vec<PathBuf> {
    w.settings().permission_files
}

async fn page(State(w): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let ctx = match w.session(&headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let shown = files(&w).iter().map(|p| read(p)).collect();
    show(&w, &ctx, StatusCode::OK, shown)
}

/// The page with `path`'s text area holding `text` and `outcome` next to it.
fn answer(
    w: &Web,
    ctx: &Ctx,
    status: StatusCode,
    path: &Path,
    text: &str,
    ok: bool,
    outcome: String,
) -> Response {
    let shown = files(w)
        .iter()
        .map(|p| {
            let mut s = read(p);
            if p == path {
                s.text = text.to_string();
                s.current = true;
                s.outcome_ok = ok;
                s.outcome = Some(outcome.clone());
            }
            s
        })
        .collect();
    show(w, ctx, status, shown)
}

async fn act(State(w): State<Arc<Web>>, headers: HeaderMap, Form(f): Form<Params>) -> Response {
    let ctx = match w.action(&headers, &f) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let Some(path) = f.get("file").and_then(|name| {
        files(&w)
            .into_iter()
            .find(|p| p.as_os_str() == name.as_str())
    }) else {
        let mut r = w.error_page(
            &ctx,
            "permissions",
            "that is not a rule file of the running program: nothing was written",
        );
        *r.status_mut() = StatusCode::FORBIDDEN;
        return r;
    };
    let Some(text) = f.get("rules").map(|s| normalize(s)) else {
        return (StatusCode::BAD_REQUEST, "no rules in the form\n").into_response();
    };
    if text.len() > MAX_RULES {
        let msg = format!("the file is larger than {MAX_RULES} bytes; nothing was saved");
        return answer(
            &w,
            &ctx,
            StatusCode::PAYLOAD_TOO_LARGE,
            &path,
            "",
            false,
            msg,
        );
    }
    let save = f.get("op").map(String::as_str) == Some("save");
    let n = match check(&path.display().to_string(), &text) {
        Ok(n) => n,
        Err(e) => {
            let (status, msg) = if save {
                let msg = format!("{e}: nothing was saved, the running rules stay");
                (StatusCode::UNPROCESSABLE_ENTITY, msg)
            } else {
                (StatusCode::OK, e)
            };
            return answer(&w, &ctx, status, &path, &text, false, msg);
        }
    };
    if !save {
        let msg = format!("no errors, {n} rule(s)");
        return answer(&w, &ctx, StatusCode::OK, &path, &text, true, msg);
    }
    let _one_at_a_time = SAVE.lock().await;
    let existed = path.exists();
    if let Err(e) = save_atomically(&path, &text) {
        let msg = format!("cannot write {}: {e}; nothing was changed", path.display());
        return answer(
            &w,
            &ctx,
            StatusCode::INTERNAL_SERVER_ERROR,
            &path,
            &text,
            false,
            msg,
        );
    }
    let reply = w.registry.call("reload", Vec::new()).await;
    if !reply.is_success() {
        // The script no longer loads (changed on disk in between): the rules written would
        // only take effect at some later reload, so the old file goes back.
        let target = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        let restored = if existed {
            let mut bak = target.clone().into_os_string();
            bak.push(".bak");
            std::fs::rename(PathBuf::from(bak), &target)
        } else {
            std::fs::remove_file(&target)
        };
        let msg = format!(
            "saved, but the reload failed ({} {}): {}; the running rules stay{}",
            reply.code,
            reply.reason,
            reply.body.join("\n"),
            match restored {
                Ok(()) => ", the old file was put back".to_string(),
                Err(e) => format!(", and the old file could not be put back: {e}"),
            }
        );
        return answer(
            &w,
            &ctx,
            StatusCode::INTERNAL_SERVER_ERROR,
            &path,
            &text,
            false,
            msg,
        );
    }
    w.flash(
        &ctx,
        format!(
            "saved {} ({n} rule(s)) and reloaded: {}",
            path.display(),
            reply.reason
        ),
    );
    Redirect::to("/ui/permissions").into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_what_it_shows() {
        let (env, _) = super::super::templates(None).unwrap();
        let evil = "<script>alert(1)</script>";
        let err = check(evil, &format!("ALL : {evil}\n")).unwrap_err();
        assert!(err.starts_with(&format!("{evil}:1:7:")), "{err}");
        let files = vec![Shown {
            path: evil.into(),
            text: evil.into(),
            status: evil.into(),
            ok: false,
            current: true,
            outcome: Some(err),
            outcome_ok: false,
        }];
        let html = env
            .get_template("permissions.html")
            .unwrap()
            .render(context! { user => evil, csrf => evil, files => files })
            .unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert_eq!(normalize("a\r\nb\r\n"), "a\nb\n");
    }

    #[test]
    fn the_files_are_the_ones_the_program_reads() {
        use dataplane::modules::permissions::rule_files;
        let files = |src: &str| {
            let mut p = crate::cfg::compile_str("t.cfg", src).unwrap().program;
            p.config_dir = Some(PathBuf::from("/etc/ser"));
            rule_files(&p)
        };
        let src = r#"loadmodule "permissions.so"
modparam("permissions", "allow_suffix", ".ok")
route {
    if (allow_routing() && allow_register("reg") && allow_routing("/abs/a", "b.deny")) {
        break;
    };
    if (allow_register("reg")) { break; };
}
"#;
        let want: Vec<PathBuf> = [
            "/etc/ser/permissions.allow",
            "/etc/ser/permissions.deny",
            "/etc/ser/reg.ok",
            "/etc/ser/reg.deny",
            "/abs/a",
            "/etc/ser/b.deny",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(files(src), want);
        assert!(files("route {\n    break;\n}\n").is_empty());
    }
}
