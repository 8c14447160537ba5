//! The dprox coordinator: it validates the topology file, registers the nodes, hands each one its
//! neighbours, their addresses and its mixing weights, starts the run when all are in, watches
//! heartbeats, collects each node's iterate at evaluation points and turns them into the same
//! `metrics.csv` / `summary.json` as the simulator. It is never in the gossip path.
//!
//! # Layout
//! - [`run`]: serve until the run is over (mini-redis style: the caller passes the listeners and
//!   the shutdown future, so tests bind 127.0.0.1:0), then write the summary.
//! - [`state`]: the bookkeeping, without I/O (time is an argument), unit-tested.
//! - `shared`: what each call (register, heartbeat, report, finish, status) does to the state.
//! - `service`: the gRPC service over it (messages and error codes only).
//! - `evaluator`: complete evaluation iterations to metrics rows (the run's `Recorder`).
//! - `watchdog`: dead nodes, late joiners and a registration deadline.
//! - `resume`: where a resumed run picks up ([`resume_point`], for `dprox launch --resume`).
//! - `model`: `model.safetensors`, the run's average model.
//! - [`status`]: the run's status (the JSON of `GET /api/status`), a pure function of the state.
//! - `web`: the optional HTTP server: the live status page, `/api/status`, and the `/metrics` hook.
//! - [`cli`]: the `dprox coordinator` command line.

pub mod cli;
mod evaluator;
mod model;
mod resume;
mod service;
mod shared;
pub mod state;
pub mod status;
mod watchdog;
mod web;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dprox_eval::{OutputError, Recorder, Summary};
use dprox_prepare::{PrepareError, Prepared};
use dprox_transport::pb;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::AbortOnDropHandle;

pub use resume::{ResumePoint, resume_point};
use service::CoordinatorService;
use shared::Shared;
use state::{Membership, RunState};

/// How the coordinator runs.
#[derive(Debug, Default)]
pub struct Options {
    /// Where to write metrics.csv and summary.json.
    pub out: Option<PathBuf>,
    /// Cluster secret nodes must present to register (none when empty).
    pub secret: String,
    /// Serve the live status page (`GET /`) and its JSON (`GET /api/status`, see [`status`]) on
    /// this listener; none when absent. A listener rather than an address so that tests bind
    /// 127.0.0.1:0 and know the port before the run starts.
    pub http: Option<TcpListener>,
    /// Extra routes merged into the HTTP server, e.g. `GET /metrics` (ignored without `http`).
    pub http_routes: Option<axum::Router>,
    /// How long the HTTP server outlives the run, so that pollers (the page, `dprox status
    /// --watch`) see its final state and last curve point; cut short by the shutdown future.
    pub http_linger: Duration,
    /// Resume the run in `out` from its last complete checkpoint.
    pub resume: bool,
    /// How the gRPC server is secured (mutual TLS, or plaintext with `--insecure`).
    pub security: dprox_net::Security,
    /// A bearer token the HTTP endpoints require (none: open).
    pub http_token: Option<String>,
}

/// Why the coordinator stopped without a completed run.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The run was aborted: a node failed or went silent.
    #[error("run aborted: {0}")]
    Aborted(String),
    /// Shut down before the run completed.
    #[error("shut down before the run completed")]
    Shutdown,
    /// The objectives to evaluate the run with could not be built.
    #[error("cannot evaluate the run: {0}")]
    Evaluation(#[from] PrepareError),
    /// An output file could not be written.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The gRPC server failed.
    #[error("serving the coordinator: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// `resume` found no complete checkpoint to resume from.
    #[error("{0}")]
    Resume(String),
    /// The TLS material could not be used.
    #[error(transparent)]
    Tls(#[from] dprox_net::TlsError),
}

/// Serves the coordinator of `run` on `listener` (and, with `opts.http`, its status page) until
/// the run completes, is aborted, or `shutdown` resolves. Returns the run's summary (also written
/// to `opts.out`).
pub async fn run(
    run: Arc<Prepared>,
    opts: Options,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Summary, CoordinatorError> {
    // Built before anything is served: a run that could not be evaluated fails now, not after
    // training.
    let objectives = evaluator::Objectives::build(&run).await?;
    let (membership, resume_at, recorder) = match (opts.resume, &opts.out) {
        (true, Some(out)) => resume::resumed(&run, out)?,
        (true, None) => return Err(CoordinatorError::Resume("resuming needs the run folder (--out)".into())),
        (false, out) => (Membership::new(&run), None, Recorder::create(out.as_deref(), run.header())?),
    };
    let (shared, jobs) = Shared::new(run.clone(), &opts.secret, membership, resume_at);
    if opts.out.is_none() {
        shared.checkpoint_written.store(u64::MAX, std::sync::atomic::Ordering::Release);
    }
    shared.state().note_events(&recorder.summary().events);
    let evaluation = evaluator::spawn(&shared, objectives, jobs, recorder);
    let watchdog = watchdog::spawn(shared.clone());
    let shutdown = Shutdown::forward(shutdown);
    let http = opts.http.map(|l| {
        Http::serve(
            l,
            dprox_net::http::with_bearer(
                web::router(shared.clone(), opts.http_routes),
                opts.http_token.clone(),
            ),
        )
    });
    serve(listener, &shared, &opts.security, &shutdown).await?;
    drop(watchdog);
    let state = shared.state().state.clone();
    shared.close_evaluation();
    let mut recorder = evaluation.await.expect("the evaluator does not panic")?;
    recorder.set_live(shared.state().membership.live.len());
    if let Some(out) = &opts.out {
        model::write(&run, &out.join("model.safetensors"), &shared.xbar.lock().expect("not poisoned"));
    }
    let started = *shared.start.lock().expect("not poisoned");
    let wall = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    let outcome = match &state {
        RunState::Completed => Ok(()),
        RunState::Aborted(e) => Err(e.clone()),
        _ => Err("shut down before the run completed".to_string()),
    };
    let summary = recorder.finish(outcome, wall)?;
    if let Some(http) = http {
        http.linger(opts.http_linger, &shutdown).await;
    }
    match state {
        RunState::Completed => Ok(summary),
        RunState::Aborted(e) => Err(CoordinatorError::Aborted(e)),
        _ => Err(CoordinatorError::Shutdown),
    }
}

/// Serves gRPC until the run is over (after an abort, long enough for the nodes to read it in
/// their heartbeats) or the shutdown; then stops gracefully, waiting at most a few seconds for
/// clients (a status poller, a wedged node) to hang up.
async fn serve(
    listener: TcpListener,
    shared: &Arc<Shared>,
    security: &dprox_net::Security,
    shutdown: &Shutdown,
) -> Result<(), CoordinatorError> {
    let tls = security.is_tls();
    let max = dprox_net::limits::coordinator_message_bytes(shared.run.dim());
    let svc =
        pb::coordinator_server::CoordinatorServer::new(CoordinatorService { shared: shared.clone(), tls })
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let limits = dprox_net::limits::COORDINATOR;
    let incoming = dprox_net::incoming(listener, limits, "coordinator", tls);
    let mut builder = security.server(&limits).map_err(CoordinatorError::Tls)?;
    let mut server =
        tokio::spawn(builder.add_service(svc).serve_with_incoming_shutdown(incoming, async move {
            let _ = stop_rx.await;
        }));
    let mut over = shared.over.subscribe();
    let linger_after_abort = Duration::from_secs_f64(shared.run.config().cluster.heartbeat_s * 2.0);
    let stop = async {
        tokio::select! {
            _ = async { over.wait_for(|&v| v).await.map(drop) } => {
                // Let nodes read the abort in their next heartbeat before the server goes away.
                let aborted = matches!(shared.state().state, RunState::Aborted(_));
                if aborted {
                    tokio::time::sleep(linger_after_abort).await;
                }
            }
            _ = shutdown.wait() => {}
        }
    };
    let served = tokio::select! {
        r = &mut server => r,
        _ = stop => {
            let _ = stop_tx.send(());
            match tokio::time::timeout(Duration::from_secs(3), &mut server).await {
                Ok(r) => r,
                Err(_) => {
                    server.abort();
                    Ok(Ok(()))
                }
            }
        }
    };
    served.expect("the gRPC server task does not panic")?;
    Ok(())
}

/// The caller's shutdown future, turned into a watch: it is needed twice (to stop serving gRPC,
/// and to cut the HTTP linger short).
struct Shutdown {
    rx: watch::Receiver<bool>,
    _forward: AbortOnDropHandle<()>,
}

impl Shutdown {
    fn forward(shutdown: impl Future<Output = ()> + Send + 'static) -> Shutdown {
        let (tx, rx) = watch::channel(false);
        let forward = tokio::spawn(async move {
            shutdown.await;
            tx.send_replace(true);
        });
        Shutdown { rx, _forward: AbortOnDropHandle::new(forward) }
    }

    async fn wait(&self) {
        let mut rx = self.rx.clone();
        // (The watch's read guard must not live across an await.)
        let _ = rx.wait_for(|&v| v).await.map(drop);
    }
}

/// The HTTP server (status page, `/api/status`, `/metrics`).
struct Http {
    stop: tokio::sync::oneshot::Sender<()>,
    server: AbortOnDropHandle<std::io::Result<()>>,
}

impl Http {
    fn serve(listener: TcpListener, app: axum::Router) -> Http {
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serve =
            dprox_net::http::serve(listener, app, dprox_net::limits::HTTP, "status page", async move {
                let _ = stop_rx.await;
            });
        Http { stop, server: AbortOnDropHandle::new(tokio::spawn(serve)) }
    }

    /// Keeps serving for `linger` (cut short by the shutdown), then stops; a browser holding a
    /// keep-alive connection does not keep us here (the handle aborts the server after a second).
    async fn linger(mut self, linger: Duration, shutdown: &Shutdown) {
        tokio::select! {
            _ = tokio::time::sleep(linger) => {}
            _ = shutdown.wait() => {}
        }
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut self.server).await;
    }
}
