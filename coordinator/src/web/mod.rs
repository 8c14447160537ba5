//! The coordinator's HTTP side: a live status page for people and its JSON for programs.
//!
//! - `GET /`: `index.html`, one self-contained page (inline CSS and JS, no external resources, so
//!   it works on a cluster without internet) that polls `api/status` every 500 ms and draws the
//!   topology and the objective and consensus-error curves.
//! - `GET /api/status`: [`crate::status::Status`] as JSON (what `dprox status` reads).
//! - Anything in [`crate::Options::http_routes`] is merged in: that is where `/metrics` goes.
//!
//! It only reads the coordinator's state (one lock per request, released before serialising), so
//! a page left open cannot slow the run down.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;

use crate::shared::Shared;

/// The page, compiled in: the binary is all a cluster needs.
const PAGE: &str = include_str!("index.html");

/// The routes of the status server over `shared`, with `extra` merged in.
///
/// `/metrics` hook: the Prometheus render is not mounted here; the embedder passes a router with
/// `GET /metrics` as `extra` (through `Options::http_routes`). Merging panics if `extra` also
/// routes `/` or `/api/status`.
pub(crate) fn router(shared: Arc<Shared>, extra: Option<Router>) -> Router {
    let app = Router::new().route("/", get(index)).route("/api/status", get(status)).with_state(shared);
    match extra {
        Some(extra) => app.merge(extra),
        None => app,
    }
}

// Both answers change every moment: tell browsers and proxies never to reuse them.
async fn index() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE))
}

async fn status(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(shared.status()))
}
