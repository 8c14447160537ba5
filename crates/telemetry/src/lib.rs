//! What the dprox processes tell their operators: structured logs, metrics, and the HTTP endpoint
//! Prometheus scrapes.
//!
//! The algorithm core stays free of all this: the node's runtime loop, the coordinator and the
//! simulator's driver record the metrics through the `metrics` facade (a no-op until a recorder
//! is installed), using the names in [`names`] so that the dashboards in `deploy/` and the tests
//! agree on them.
//!
//! # Layout
//! - [`names`]: every metric name, its labels and its meaning ([`names::describe`] registers the
//!   help texts).
//! - [`LogFormat`] and [`init_tracing`]: human-readable or JSON-lines logs on stderr.
//! - [`install`], [`router`] and [`serve`]: the process-wide Prometheus recorder and a
//!   `GET /metrics` endpoint on a listener the caller binds (port 0 in tests).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use dprox_telemetry::{install, names, router, serve};
//! let handle = install();
//! metrics::gauge!(names::ITERATION, "node" => "0").set(7.0);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let addr = listener.local_addr().unwrap();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(serve(listener, router(handle.clone()), async { stopped.await.ok(); }));
//! assert!(handle.render().contains("dprox_iteration{node=\"0\"} 7"));
//! # let _ = addr;
//! stop.send(()).unwrap();
//! server.await.unwrap().unwrap();
//! # }
//! ```

pub mod names;

use std::future::Future;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// How logs are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Sets up `tracing` on stderr in `format`, filtered by `RUST_LOG` (default `info`). Calling it
/// again (tests, embedded use) keeps the first set-up.
pub fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => b.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => b.json().try_init(),
    };
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle) and
/// registers the help texts of [`names`]. Durations are histograms with buckets from 100 us to
/// 60 s; everything else is a counter or a gauge.
///
/// If another recorder was installed first (a program embedding dprox), the returned handle
/// renders an empty page and the metrics go to that recorder.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), names::SECONDS_BUCKETS)
                .expect("the bucket list is not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            names::describe();
            handle
        })
        .clone()
}

/// `GET /metrics` in the Prometheus text format. Merge other routes into it (the coordinator
/// adds its status page).
pub fn router(handle: PrometheusHandle) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move {
                // Without the exporter's own HTTP listener nothing else drains the histograms'
                // pending samples: do it on each scrape.
                handle.run_upkeep();
                (
                    [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                    handle.render(),
                )
            }
        }),
    )
}

/// A `/metrics` endpoint running on a task of the current runtime (what `--metrics-addr` starts).
#[derive(Debug)]
pub struct Endpoint {
    /// The address it serves on.
    pub addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    /// The server (its upkeep inside); aborted when the endpoint is dropped or stop gives up.
    task: tokio_util::task::AbortOnDropHandle<std::io::Result<()>>,
}

impl Endpoint {
    /// Binds `addr` (port 0 picks a free port), installs the recorder, serves `/metrics` there
    /// and logs `metrics endpoint: http://ADDR/metrics` (with the address as the `address`
    /// field, which tests read from JSON logs).
    pub async fn start(addr: &str) -> std::io::Result<Endpoint> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("binding the metrics address {addr}: {e}")))?;
        let bound = listener.local_addr()?;
        tracing::info!(address = %bound, "metrics endpoint: http://{bound}/metrics");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = install();
        // Histogram samples wait in the recorder until an upkeep drains them; without a scraper
        // that would be memory growing with the run, so drain them every few seconds anyway.
        let upkeep = {
            let handle = handle.clone();
            tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    handle.run_upkeep();
                }
            }))
        };
        // The upkeep lives as long as this task, however it ends (served out, or aborted).
        let task = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
            let _upkeep = upkeep;
            serve(listener, router(handle), async {
                let _ = stopped.await;
            })
            .await
        }));
        Ok(Endpoint { addr: bound, stop, task })
    }

    /// Stops serving: lets the requests in flight finish for up to a second, then closes. (The
    /// graceful shutdown alone waits for every request in flight, and a client that stalls in
    /// the middle of one would keep the process from ever exiting.)
    pub async fn stop(mut self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), &mut self.task).await;
    }
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    dprox_net::http::serve(listener, router, dprox_net::limits::HTTP, "metrics", shutdown).await
}

/// Resolves when the process is asked to stop: Ctrl-C (SIGINT) or SIGTERM (what `docker stop`,
/// Kubernetes and Slurm send).
pub async fn stop_requested() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
