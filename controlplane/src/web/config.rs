//! `/ui/config`: the running script (the file `ser -f` was started with), edited in the page.
//!
//! | action | what happens |
//! |---|---|
//! | Check | the text is compiled by the compiler `ser -c` uses ([`crate::cfg::compile_str`], the file's name in the messages); the diagnostics are shown as `ser -c` prints them (`file:line:col`, the message, the source line with a caret) |
//! | Save and reload | the same check; with an error nothing is written and the running script stays. Otherwise the file is replaced atomically (a temporary file in its directory, synced, renamed over it; the old one kept as `FILE.bak`) and the server reloaded through the `reload` command, as SIGHUP and `serctl fifo reload` do |
//!
//! The script is edited in a text area. Both actions need an administrator's session and its CSRF token, like
//! every POST of the web UI. Saves are serialised, so two administrators cannot interleave a write
//! and a reload. A reload that fails after the write (a file the script names went away in
//! between) puts the old file back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use minijinja::context;
use serde::Serialize;

use super::pages::{Ctx, Params};
use super::Web;
use crate::cfg::{compile_str, Diagnostic};

pub(super) const TEMPLATES: &[(&str, &str)] =
    &[("config.html", include_str!("templates/config.html"))];

/// The largest script the page takes (a form body is larger by its URL-encoding).
pub const MAX_SCRIPT: usize = 1024 * 1024;

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/ui/config", get(page).post(act))
        // The UI's 64 KiB body limit is too small for a long script (inner layers win).
        .layer(DefaultBodyLimit::max(3 * MAX_SCRIPT + 4096))
}

/// The script file of the running server, and the lock that serialises saves.
pub struct ScriptFile {
    pub path: PathBuf,
    lock: tokio::sync::Mutex<()>,
}

impl ScriptFile {
    pub fn new(path: PathBuf) -> ScriptFile {
        ScriptFile {
            path,
            lock: tokio::sync::Mutex::new(()),
        }
    }
}

/// One diagnostic as the page shows it.
#[derive(Serialize, Debug)]
struct Shown {
    error: bool,
    /// `file:line:col` (only `file` for a message about the whole file).
    at: String,
    message: String,
    /// What `ser -c` prints for it: the location line, the source line, the caret, the hint.
    text: String,
}

fn shown(d: &Diagnostic) -> Shown {
    Shown {
        error: d.severity == crate::cfg::Severity::Error,
        at: if d.line == 0 {
            d.file.clone()
        } else {
            format!("{}:{}:{}", d.file, d.line, d.col)
        },
        message: d.message.clone(),
        text: d.render(),
    }
}

/// What a check found: errors (none: it compiles) and warnings.
fn check(path: &Path, text: &str) -> (Vec<Shown>, Vec<Shown>) {
    match compile_str(&path.display().to_string(), text) {
        Ok(c) => (Vec::new(), c.warnings.iter().map(shown).collect()),
        Err(d) => (
            d.errors.iter().map(shown).collect(),
            d.warnings.iter().map(shown).collect(),
        ),
    }
}

/// Browsers send a text area's lines with CRLF; the file keeps LF.
fn normalize(text: &str) -> String {
    text.replace("\r\n", "\n")
}

/// Replaces `path` by `text` atomically, the old content kept in `path.bak`. A symbolic link is
/// followed (its target is replaced, the link stays). Nothing is changed when any step fails.
pub fn save_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| std::io::Error::other("the script path has no file name"))?;
    let tmp = dir.join(format!(".{name}.web-{}.tmp", std::process::id()));
    let bak = dir.join(format!("{name}.bak"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        // The new file gets the old one's permissions (a script may hold database passwords).
        if let Ok(m) = std::fs::metadata(&target) {
            f.set_permissions(m.permissions())?;
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        if target.exists() {
            std::fs::copy(&target, &bak)?;
        }
        std::fs::rename(&tmp, &target)?;
        // The rename itself survives a crash once the directory is synced.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    };
    let r = write();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

#[allow(clippy::too_many_arguments)]
fn show(
    w: &Web,
    ctx: &Ctx,
    status: StatusCode,
    path: &Path,
    text: &str,
    outcome: Option<(&str, bool)>,
    errors: Vec<Shown>,
    warnings: Vec<Shown>,
) -> Response {
    let mut r = w.page(
        "config.html",
        ctx,
        "config",
        context! {
            path => path.display().to_string(), script => text,
            outcome => outcome.map(|(m, _)| m), ok => outcome.is_some_and(|(_, ok)| ok),
            errors => errors, warnings => warnings,
        },
    );
    *r.status_mut() = status;
    r
}

async fn page(State(w): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let ctx = match w.session(&headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let Some(sf) = w.script.as_ref() else {
        return w.error_page(
            &ctx,
            "config",
            "this server does not say which file it runs",
        );
    };
    match std::fs::read(&sf.path) {
        Ok(b) => show(
            &w,
            &ctx,
            StatusCode::OK,
            &sf.path,
            &String::from_utf8_lossy(&b),
            None,
            Vec::new(),
            Vec::new(),
        ),
        Err(e) => w.error_page(
            &ctx,
            "config",
            &format!("cannot read {}: {e}", sf.path.display()),
        ),
    }
}

async fn act(State(w): State<Arc<Web>>, headers: HeaderMap, Form(f): Form<Params>) -> Response {
    let ctx = match w.action(&headers, &f) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let Some(sf) = w.script.as_ref() else {
        return w.error_page(
            &ctx,
            "config",
            "this server does not say which file it runs",
        );
    };
    let path = sf.path.as_path();
    let text = normalize(f.get("script").map(String::as_str).unwrap_or(""));
    if text.len() > MAX_SCRIPT {
        let msg = format!("the script is larger than {MAX_SCRIPT} bytes; nothing was saved");
        return show(
            &w,
            &ctx,
            StatusCode::PAYLOAD_TOO_LARGE,
            path,
            "",
            Some((&msg, false)),
            vec![],
            vec![],
        );
    }
    let save = f.get("op").map(String::as_str) == Some("save");
    let (errors, warnings) = check(path, &text);
    if !errors.is_empty() {
        let (status, msg) = if save {
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "{} error(s): nothing was saved, the running script stays",
                    errors.len()
                ),
            )
        } else {
            (StatusCode::OK, format!("{} error(s)", errors.len()))
        };
        return show(
            &w,
            &ctx,
            status,
            path,
            &text,
            Some((&msg, false)),
            errors,
            warnings,
        );
    }
    if !save {
        let msg = format!("no errors, {} warning(s)", warnings.len());
        return show(
            &w,
            &ctx,
            StatusCode::OK,
            path,
            &text,
            Some((&msg, true)),
            errors,
            warnings,
        );
    }
    let _one_at_a_time = sf.lock.lock().await;
    if let Err(e) = save_atomically(path, &text) {
        let msg = format!("cannot write {}: {e}; nothing was changed", path.display());
        return show(
            &w,
            &ctx,
            StatusCode::INTERNAL_SERVER_ERROR,
            path,
            &text,
            Some((&msg, false)),
            errors,
            warnings,
        );
    }
    let reply = w.registry.call("reload", Vec::new()).await;
    if !reply.is_success() {
        // The file compiled here but not in the reload: put the old one back.
        let bak = backup_of(path);
        let restored = std::fs::read(&bak)
            .and_then(|old| save_atomically(path, &String::from_utf8_lossy(&old)));
        let msg = format!(
            "saved, but the reload failed ({} {}): {}; the running script stays{}",
            reply.code,
            reply.reason,
            reply.body.join("\n"),
            match restored {
                Ok(()) => ", the old file was put back".to_string(),
                Err(e) => format!(", and the old file could not be put back: {e}"),
            }
        );
        return show(
            &w,
            &ctx,
            StatusCode::INTERNAL_SERVER_ERROR,
            path,
            &text,
            Some((&msg, false)),
            errors,
            warnings,
        );
    }
    w.flash(
        &ctx,
        format!(
            "saved {} (the old one is {}) and reloaded: {}",
            path.display(),
            backup_of(path).display(),
            reply.reason
        ),
    );
    Redirect::to("/ui/config").into_response()
}

/// Where [`save_atomically`] keeps the old file.
fn backup_of(path: &Path) -> PathBuf {
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut s = target.into_os_string();
    s.push(".bak");
    PathBuf::from(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ser-web-config-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_save_keeps_the_old_file_and_leaves_no_temporary() {
        let d = dir("save");
        let p = d.join("ser.cfg");
        std::fs::write(&p, "old\n").unwrap();
        save_atomically(&p, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new\n");
        assert_eq!(std::fs::read_to_string(backup_of(&p)).unwrap(), "old\n");
        let names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_link_stays_a_link() {
        let d = dir("link");
        let real = d.join("real.cfg");
        std::fs::write(&real, "old\n").unwrap();
        let link = d.join("ser.cfg");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        save_atomically(&link, "new\n").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new\n");
        assert_eq!(
            std::fs::read_to_string(d.join("real.cfg.bak")).unwrap(),
            "old\n"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_check_reports_what_ser_c_reports() {
        let p = Path::new("/etc/ser/ser.cfg");
        let (errors, _) = check(p, "route {\n  foo_bar();\n}\n");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].at.starts_with("/etc/ser/ser.cfg:2:"),
            "{errors:?}"
        );
        assert!(errors[0].text.contains("foo_bar();"));
        assert!(errors[0].text.contains('^'));
        let (errors, _) = check(p, "route {\n  break;\n}\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(normalize("a\r\nb\r\n"), "a\nb\n");
    }
}
