//! The HTTP management endpoint (axum): `POST /rpc` (JSON-RPC 2.0, see [`super::jsonrpc`]),
//! `GET /metrics` (Prometheus text), `GET /health` (the process answers) and `GET /ready` (the
//! shards run and the proxy is not stopping: 200, else 503).
//!
//! Access: bound to a loopback address unless configured otherwise; on any other address a token
//! is required ([`check_bind`] refuses to start without one) and `/rpc` and `/metrics` then need
//! `Authorization: Bearer <token>` (compared in constant time). `/health` and `/ready` reveal
//! nothing and stay open for probes. The web UI ([`crate::web`], `/ui/…`), when configured, has
//! its own login and sessions.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use dataplane::ser_log;
use dataplane::shard::log::L_INFO;

use super::metrics::{render, Sources};
use super::{jsonrpc, Registry};

/// What the HTTP handlers share.
pub struct HttpState {
    pub registry: Arc<Registry>,
    pub sources: Sources,
    pub token: Option<String>,
    pub ready: Arc<AtomicBool>,
    /// The web UI (`/ui/…`), when configured.
    pub web: Option<Arc<crate::web::Web>>,
}

/// Refuses a non-loopback bind without a token.
pub fn check_bind(addr: &SocketAddr, token: Option<&str>) -> Result<(), String> {
    if addr.ip().is_loopback() || token.is_some_and(|t| !t.is_empty()) {
        Ok(())
    } else {
        Err(format!(
            "http management on {addr} (not loopback) needs a token (--http-token or SER_HTTP_TOKEN)"
        ))
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(st: &HttpState, headers: &HeaderMap) -> bool {
    let Some(token) = &st.token else {
        return true;
    };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| same(t.trim().as_bytes(), token.as_bytes()))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "unauthorized\n",
    )
        .into_response()
}

async fn rpc(State(st): State<Arc<HttpState>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&st, &headers) {
        return unauthorized();
    }
    if body.len() > jsonrpc::MAX_REQUEST {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request too large\n").into_response();
    }
    match jsonrpc::handle_text(&st.registry, &body).await {
        Some(v) => ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response(),
        // Only notifications: nothing to return.
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn metrics(State(st): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    if !authorized(&st, &headers) {
        return unauthorized();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        render(&st.sources),
    )
        .into_response()
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready(State(st): State<Arc<HttpState>>) -> Response {
    if st.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// The routes.
pub fn router(st: Arc<HttpState>) -> Router {
    let web = st.web.clone();
    let r = Router::new()
        .route("/rpc", post(rpc))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(st);
    match web {
        Some(w) => r.merge(crate::web::router(w)),
        None => r,
    }
}

/// Serves on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, st: Arc<HttpState>) -> std::io::Result<()> {
    if let Ok(a) = listener.local_addr() {
        ser_log!(
            L_INFO,
            "HTTP management (JSON-RPC /rpc, /metrics, /health, /ready) on {a}"
        );
    }
    // The peer address is what the web UI's login throttle counts by.
    axum::serve(
        listener,
        router(st).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_without_token_other_addresses_with() {
        let lo: SocketAddr = "127.0.0.1:9090".parse().unwrap_or_else(|_| unreachable!());
        let any: SocketAddr = "0.0.0.0:9090".parse().unwrap_or_else(|_| unreachable!());
        assert!(check_bind(&lo, None).is_ok());
        assert!(check_bind(&any, None).is_err());
        assert!(check_bind(&any, Some("")).is_err());
        assert!(check_bind(&any, Some("s3cret")).is_ok());
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"ab", b"abc"));
    }
}
