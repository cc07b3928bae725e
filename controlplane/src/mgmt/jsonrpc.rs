//! JSON-RPC 2.0 over the command [`Registry`]: the method is the FIFO command name, `params` an
//! array of its parameter lines (numbers and booleans are taken as their text; absent = none).
//!
//! - success (2xx): `result` is the command's structured data, or its body lines;
//! - a command's error status: `error.code` -32000, `error.message` the reason, `error.data`
//!   `{"status": <SER code>, "lines": [...]}`;
//! - unknown method -32601, bad request -32600, unparseable JSON -32700, params not an array of
//!   scalars -32602; batches (arrays) are answered with an array; notifications (no `id`) get
//!   no response.
//!
//! The unix socket ([`serve_unix`]) carries one JSON value per line each way; its file mode is the
//! access control (default 0660). The HTTP transport is in [`super::http`].

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dataplane::ser_log;
use dataplane::shard::log::{L_DBG, L_INFO};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::Registry;

/// Largest request accepted (bytes).
pub const MAX_REQUEST: usize = 1 << 20;

fn error(id: Value, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut e = json!({"code": code, "message": message});
    if let (Some(d), Some(obj)) = (data, e.as_object_mut()) {
        obj.insert("data".into(), d);
    }
    json!({"jsonrpc": "2.0", "error": e, "id": id})
}

fn params_of(v: Option<&Value>) -> Result<Vec<String>, ()> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err(()),
            })
            .collect(),
        Some(_) => Err(()),
    }
}

/// Answers one request object; None for a notification.
pub async fn handle_one(reg: &Registry, req: &Value) -> Option<Value> {
    let Some(obj) = req.as_object() else {
        return Some(error(Value::Null, -32600, "Invalid Request", None));
    };
    let id = obj.get("id").cloned();
    let reply_id = id.clone().unwrap_or(Value::Null);
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Some(error(reply_id, -32600, "Invalid Request", None));
    }
    let Some(method) = obj.get("method").and_then(Value::as_str) else {
        return Some(error(reply_id, -32600, "Invalid Request", None));
    };
    let Ok(params) = params_of(obj.get("params")) else {
        return Some(error(
            reply_id,
            -32602,
            "Invalid params: an array of strings is expected",
            None,
        ));
    };
    let response = if let Some(refused) = reg.refusal(method) {
        // A module command whose module is not loaded says so in `data`.
        let why = (reg.lookup(method).is_some()).then(|| json!({"reason": refused.reason}));
        error(reply_id, -32601, "Method not found", why)
    } else {
        let r = reg.call(method, params).await;
        if r.is_success() {
            json!({"jsonrpc": "2.0", "result": r.to_json(), "id": reply_id})
        } else {
            error(
                reply_id,
                -32000,
                &r.reason,
                Some(json!({"status": r.code, "lines": r.body})),
            )
        }
    };
    id.map(|_| response)
}

/// Answers a request text (one object or a batch); None when nothing is to be sent back.
pub async fn handle_text(reg: &Registry, text: &[u8]) -> Option<Value> {
    let v: Value = match serde_json::from_slice(text) {
        Ok(v) => v,
        Err(_) => return Some(error(Value::Null, -32700, "Parse error", None)),
    };
    match v {
        Value::Array(items) if items.is_empty() => {
            Some(error(Value::Null, -32600, "Invalid Request", None))
        }
        Value::Array(items) => {
            let mut out = Vec::new();
            for it in &items {
                if let Some(r) = handle_one(reg, it).await {
                    out.push(r);
                }
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        v => handle_one(reg, &v).await,
    }
}

/// Binds the unix socket at `path` with file mode `mode` (a stale socket file is replaced; any
/// other file is an error).
pub fn bind_unix(path: &Path, mode: u32) -> io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.file_type().is_socket() {
            std::fs::remove_file(path)?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
    }
    let l = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))?;
    Ok(l)
}

/// Serves JSON-RPC on `listener` until the task is dropped.
pub async fn serve_unix(
    listener: tokio::net::UnixListener,
    path: PathBuf,
    reg: Arc<Registry>,
) -> io::Result<()> {
    ser_log!(L_INFO, "JSON-RPC on unix socket {}", path.display());
    loop {
        let (stream, _) = listener.accept().await?;
        let reg = Arc::clone(&reg);
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut r = BufReader::new(r);
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = match (&mut r)
                    .take(MAX_REQUEST as u64 + 1)
                    .read_until(b'\n', &mut line)
                    .await
                {
                    Ok(n) => n,
                    Err(e) => {
                        ser_log!(L_DBG, "jsonrpc: read: {e}");
                        return;
                    }
                };
                if n == 0 {
                    return;
                }
                if line.len() > MAX_REQUEST {
                    let e = error(Value::Null, -32600, "request too large", None);
                    let _ = w.write_all(format!("{e}\n").as_bytes()).await;
                    return;
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if let Some(resp) = handle_text(&reg, &line).await {
                    if w.write_all(format!("{resp}\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::Reply;
    use super::*;

    fn reg() -> Registry {
        let mut r = Registry::new();
        r.register("print", "", |p| {
            Reply::ok(vec![p.first().cloned().unwrap_or_default()])
        })
        .unwrap();
        r.register("ul_show_contact", "", |_| {
            Reply::status(404, "AOR not found")
        })
        .unwrap();
        r
    }

    fn call(text: &str) -> Option<Value> {
        let r = reg();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(handle_text(&r, text.as_bytes()))
    }

    #[test]
    fn success_error_and_unknown() {
        assert_eq!(
            call(r#"{"jsonrpc":"2.0","method":"print","params":["hi"],"id":1}"#),
            Some(json!({"jsonrpc":"2.0","result":["hi"],"id":1}))
        );
        assert_eq!(
            call(
                r#"{"jsonrpc":"2.0","method":"ul_show_contact","params":["location","x"],"id":"a"}"#
            ),
            Some(
                json!({"jsonrpc":"2.0","error":{"code":-32000,"message":"AOR not found","data":{"status":404,"lines":[]}},"id":"a"})
            )
        );
        assert_eq!(
            call(r#"{"jsonrpc":"2.0","method":"foobar","id":2}"#).unwrap()["error"]["code"],
            json!(-32601)
        );
    }

    #[test]
    fn malformed_batches_and_notifications() {
        assert_eq!(call("{").unwrap()["error"]["code"], json!(-32700));
        assert_eq!(call("[]").unwrap()["error"]["code"], json!(-32600));
        assert_eq!(
            call(r#"{"method":"print","id":1}"#).unwrap()["error"]["code"],
            json!(-32600)
        );
        assert_eq!(
            call(r#"{"jsonrpc":"2.0","method":"print","params":{"a":1},"id":1}"#).unwrap()["error"]
                ["code"],
            json!(-32602)
        );
        assert_eq!(
            call(r#"{"jsonrpc":"2.0","method":"print","params":["x"]}"#),
            None
        );
        let b = call(r#"[{"jsonrpc":"2.0","method":"print","params":[5],"id":1},{"jsonrpc":"2.0","method":"print"},{"jsonrpc":"2.0","method":"nope","id":3}]"#).unwrap();
        assert_eq!(b.as_array().unwrap().len(), 2);
        assert_eq!(b[0]["result"], json!(["5"]));
    }
}
