//! Serving an HTTP router (the status page, `/api/status`, `/metrics`) so that no client can hold
//! the server: at most [`Limits::max_connections`] connections (more are closed at once), request
//! headers within [`Limits::handshake_timeout`], every connection closed after
//! [`Limits::max_connection_age`] (an idle keep-alive connection with it), and an accept loop that
//! waits out file-descriptor exhaustion. HTTP/1.1 only: browsers and Prometheus speak it.

use std::future::Future;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;

use crate::limits::Limits;
use crate::listener::incoming;

/// How long requests in flight may finish once `shutdown` resolves.
const DRAIN: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` under `limits` until `shutdown` resolves; `what` names the
/// server in the log.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    what: &'static str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut conns = incoming(listener, limits, what, false);
    // Connections being served; dropped (aborted) when the server ends.
    let mut tasks = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while tasks.try_join_next().is_some() {}
        let conn = tokio::select! {
            c = conns.next() => c,
            _ = &mut shutdown => break,
        };
        let Some(Ok(conn)) = conn else { break };
        let service = TowerToHyperService::new(router.clone());
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(limits.handshake_timeout);
        let age = limits.max_connection_age.unwrap_or(Duration::MAX);
        tasks.spawn(async move {
            let served = builder.serve_connection(TokioIo::new(conn), service);
            let _ = tokio::time::timeout(age, served).await;
        });
    }
    let _ = tokio::time::timeout(DRAIN, async { while tasks.join_next().await.is_some() {} }).await;
    Ok(())
}

/// `router` requiring `token` (when there is one) on every request: as `Authorization: Bearer
/// TOKEN`, or as `token=TOKEN` in the query (for a page opened in a browser). Anything else is
/// answered 401, without saying more.
pub fn with_bearer(router: axum::Router, token: Option<String>) -> axum::Router {
    let Some(token) = token else { return router };
    let token = std::sync::Arc::new(token);
    router.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let token = token.clone();
            async move {
                if presents(&req, &token) {
                    next.run(req).await
                } else {
                    use axum::response::IntoResponse;
                    (
                        axum::http::StatusCode::UNAUTHORIZED,
                        [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                        "unauthorized\n",
                    )
                        .into_response()
                }
            }
        },
    ))
}

/// Whether `req` carries `token` in its Authorization header or its query.
fn presents(req: &axum::extract::Request, token: &str) -> bool {
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let query =
        req.uri().query().into_iter().flat_map(|q| q.split('&')).find_map(|kv| kv.strip_prefix("token="));
    [header, query].into_iter().flatten().any(|given| same(given.as_bytes(), token.as_bytes()))
}

/// Equality in time independent of where the two differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
