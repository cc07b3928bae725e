//! `/ui/config`: the running script (the file `ser -f` was started with), edited in the page.
//!
//! | action | what happens |
//! |---|---|
//! | Check | the text is compiled by the compiler `ser -c` uses ([`crate::cfg::compile_str`], the file's name in the messages); the diagnostics are shown as `ser -c` prints them (`file:line:col`, the message, the source line with a caret) |
//! | Save and reload | the same check; with an error nothing is written and the running script stays. Otherwise the file is replaced atomically (a temporary file in its directory, synced, renamed over it; the old one kept as `FILE.bak`) and the server reloaded through the `reload` command, as SIGHUP and `serctl fifo reload` do |
//!
//! The script is edited in a text area, or a file is uploaded (`/ui/config/upload`,
//! `multipart/form-data`, the same two actions on the file's text). Both actions need an administrator's session and its CSRF token, like
//! every POST of the web UI. Saves are serialised, so two administrators cannot interleave a write
//! and a reload. A reload that fails after the write (a file the script names went away in
//! between) puts the old file back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use minijinja::context;
use serde::Serialize;

use super::pages::{Ctx, Params};
use super::Web;
use crate::cfg::{compile_str, Diagnostic};

pub(super) const TEMPLATES: &[(&str, &str)] =
    &[("config.html", include_str!("templates/config.html"))];

const NO_FILE: &str = "this server does not say which file it runs";

/// The largest script the page takes (a form body is larger by its URL-encoding).
pub const MAX_SCRIPT: usize = 1024 * 1024;

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/ui/config", get(page).post(act))
        .route("/ui/config/upload", post(upload))
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
    let target = canonical(path);
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

/// What a POST found, shown above the script.
#[derive(Default)]
struct Outcome {
    message: Option<String>,
    ok: bool,
    errors: Vec<Shown>,
    warnings: Vec<Shown>,
}

impl Outcome {
    fn failed(message: String, errors: Vec<Shown>, warnings: Vec<Shown>) -> Outcome {
        Outcome {
            message: Some(message),
            ok: false,
            errors,
            warnings,
        }
    }
}

fn show(w: &Web, ctx: &Ctx, status: StatusCode, path: &Path, text: &str, o: Outcome) -> Response {
    let mut r = w.page(
        "config.html",
        ctx,
        "config",
        context! {
            path => path.display().to_string(), script => text, outcome => o.message, ok => o.ok,
            errors => o.errors, warnings => o.warnings,
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
        return w.error_page(&ctx, "config", NO_FILE);
    };
    match std::fs::read(&sf.path) {
        Ok(b) => {
            let text = String::from_utf8_lossy(&b);
            show(
                &w,
                &ctx,
                StatusCode::OK,
                &sf.path,
                &text,
                Outcome::default(),
            )
        }
        Err(e) => w.error_page(
            &ctx,
            "config",
            &format!("cannot read {}: {e}", sf.path.display()),
        ),
    }
}

async fn act(State(w): State<Arc<Web>>, headers: HeaderMap, Form(f): Form<Params>) -> Response {
    run(&w, &headers, &f).await
}

/// The upload form: its fields as the text area's form has them (the file's text as `script`).
async fn upload(State(w): State<Arc<Web>>, headers: HeaderMap, body: Bytes) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(mut f) = multipart(ct, &body) else {
        return (
            StatusCode::BAD_REQUEST,
            "expected a multipart/form-data upload\n",
        )
            .into_response();
    };
    if let Some(file) = f.remove("file") {
        f.insert("script".into(), file);
    }
    run(&w, &headers, &f).await
}

/// Position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The fields of a `multipart/form-data` body (RFC 7578): name → value, a file's content as
/// text. `None` when it is not one (no boundary, a part without its headers or its end).
fn multipart(content_type: &str, body: &[u8]) -> Option<Params> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let boundary = params
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    if boundary.is_empty() || boundary.len() > 70 {
        return None;
    }
    let delim = format!("--{boundary}");
    let next = format!("\r\n{delim}");
    let mut out = Params::new();
    let mut rest = body.get(find(body, delim.as_bytes())? + delim.len()..)?;
    loop {
        if rest.starts_with(b"--") {
            return Some(out);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let head_end = find(rest, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&rest[..head_end]);
        let after = &rest[head_end + 4..];
        let end = find(after, next.as_bytes())?;
        let name = head
            .split("\r\n")
            .find(|l| {
                l.split_once(':')
                    .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case("content-disposition"))
            })
            .and_then(|l| {
                l.split(';')
                    .find_map(|p| p.trim().strip_prefix("name="))
                    .map(|n| n.trim_matches('"').to_string())
            })?;
        out.insert(name, String::from_utf8_lossy(&after[..end]).into_owned());
        rest = &after[end + next.len()..];
    }
}

async fn run(w: &Web, headers: &HeaderMap, f: &Params) -> Response {
    let ctx = match w.action(headers, f) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let Some(sf) = w.script.as_ref() else {
        return w.error_page(&ctx, "config", NO_FILE);
    };
    let path = sf.path.as_path();
    let Some(text) = f.get("script").map(|s| normalize(s)) else {
        return (StatusCode::BAD_REQUEST, "no script in the form\n").into_response();
    };
    if text.len() > MAX_SCRIPT {
        let msg = format!("the script is larger than {MAX_SCRIPT} bytes; nothing was saved");
        let o = Outcome::failed(msg, Vec::new(), Vec::new());
        return show(w, &ctx, StatusCode::PAYLOAD_TOO_LARGE, path, "", o);
    }
    let save = f.get("op").map(String::as_str) == Some("save");
    let (errors, warnings) = check(path, &text);
    if !errors.is_empty() {
        let n = errors.len();
        let (status, msg) = if save {
            let msg = format!("{n} error(s): nothing was saved, the running script stays");
            (StatusCode::UNPROCESSABLE_ENTITY, msg)
        } else {
            (StatusCode::OK, format!("{n} error(s)"))
        };
        let o = Outcome::failed(msg, errors, warnings);
        return show(w, &ctx, status, path, &text, o);
    }
    if !save {
        let o = Outcome {
            message: Some(format!("no errors, {} warning(s)", warnings.len())),
            ok: true,
            errors,
            warnings,
        };
        return show(w, &ctx, StatusCode::OK, path, &text, o);
    }
    let _one_at_a_time = sf.lock.lock().await;
    if let Err(e) = save_atomically(path, &text) {
        let msg = format!("cannot write {}: {e}; nothing was changed", path.display());
        let o = Outcome::failed(msg, errors, warnings);
        return show(w, &ctx, StatusCode::INTERNAL_SERVER_ERROR, path, &text, o);
    }
    let reply = w.registry.call("reload", Vec::new()).await;
    if !reply.is_success() {
        // It compiled here but not in the reload (a file it names went away in between): the
        // old file goes back as it was.
        let restored = std::fs::rename(backup_of(path), canonical(path));
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
        let o = Outcome::failed(msg, errors, warnings);
        return show(w, &ctx, StatusCode::INTERNAL_SERVER_ERROR, path, &text, o);
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

/// The file a save replaces: `path`, a symbolic link followed.
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Where [`save_atomically`] keeps the old file.
fn backup_of(path: &Path) -> PathBuf {
    let mut s = canonical(path).into_os_string();
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

    #[test]
    fn multipart_fields_and_files() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\ntok\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a;b.cfg\"\r\n\
Content-Type: application/octet-stream\r\n\r\nroute {\r\n}\n\r\n--XyZ--\r\n";
        let f = multipart("multipart/form-data; boundary=XyZ", body).unwrap();
        assert_eq!(f["csrf"], "tok");
        assert_eq!(f["file"], "route {\r\n}\n");
        assert!(multipart("multipart/form-data; boundary=XyZ", &body[..60]).is_none());
        assert!(multipart("application/x-www-form-urlencoded", body).is_none());
        assert!(multipart("multipart/form-data", body).is_none());
        for n in 0..body.len() {
            let _ = multipart("multipart/form-data; boundary=XyZ", &body[..n]);
        }
    }

    #[test]
    fn the_page_escapes_what_it_shows() {
        let (env, _) = super::super::templates(None).unwrap();
        let evil = "<script>alert(1)</script>";
        let (errors, warnings) = check(Path::new(evil), &format!("route {{\n {evil}\n}}\n"));
        assert!(!errors.is_empty());
        let html = env
            .get_template("config.html")
            .unwrap()
            .render(context! {
                user => evil, csrf => evil, path => evil, script => evil, outcome => evil,
                ok => false, errors => errors, warnings => warnings,
            })
            .unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }
}
