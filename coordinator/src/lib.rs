//! The dprox coordinator: it validates the topology file, registers the nodes, hands each one its
//! neighbours, their addresses and its mixing weights, starts the run when all are in, watches
//! heartbeats, collects each node's iterate at evaluation points and turns them into the same
//! `metrics.csv` / `summary.json` as the simulator. It is never in the gossip path.
//!
//! # Layout
//! - `state`: the bookkeeping, without I/O (time is an argument), unit-tested.
//! - `service`: the gRPC service over it.
//! - [`status`]: the run's status (the JSON of `GET /api/status`), a pure function of the state.
//! - `web`: the optional HTTP server: the live status page, `/api/status`, and the `/metrics` hook.
//! - [`run`]: serve until the run is over (mini-redis style: the caller passes the listeners and
//!   the shutdown future, so tests bind 127.0.0.1:0).

pub mod cli;
mod service;
pub mod state;
pub mod status;
mod web;

use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dprox_config::Prepared;
use dprox_eval::{Evaluator, MetricsRow, MetricsWriter, Summary, write_json};
use dprox_transport::pb;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::task::AbortOnDropHandle;

use service::{Complete, CoordinatorService, Shared};
use state::{RunState, State};

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
    Evaluation(String),
    /// Serving or writing failed.
    #[error("{0}")]
    Io(String),
}

/// The run's metrics at an evaluation point, for Prometheus (names in `dprox_telemetry::names`).
fn publish(row: &MetricsRow, contributions: impl Iterator<Item = f64>) {
    use dprox_telemetry::names;
    metrics::gauge!(names::OBJECTIVE).set(row.eval.objective);
    metrics::gauge!(names::CONSENSUS_ERROR).set(row.eval.consensus_error);
    if let Some(a) = row.eval.test_accuracy {
        metrics::gauge!(names::TEST_ACCURACY).set(a);
    }
    metrics::gauge!(names::EVAL_ITERATION).set(row.iter as f64);
    metrics::gauge!(names::RUN_BYTES_SENT).set(row.bytes_sent as f64);
    for (i, c) in contributions.enumerate() {
        metrics::gauge!(names::CONSENSUS_CONTRIBUTION, "node" => i.to_string()).set(c);
    }
}

/// Registered nodes and how long since each was heard from.
fn publish_health(state: &State, now: Instant) {
    use dprox_telemetry::names;
    let registered = state.registered.iter().filter(|r| r.is_some()).count();
    metrics::gauge!(names::NODES_REGISTERED).set(registered as f64);
    for (i, (seen, _)) in state.heartbeat.iter().enumerate() {
        let age = now.saturating_duration_since(*seen).as_secs_f64();
        metrics::gauge!(names::HEARTBEAT_AGE_SECONDS, "node" => i.to_string()).set(age);
    }
}

fn random_token() -> Vec<u8> {
    use std::io::Read;
    let mut t = vec![0u8; 16];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut t)).is_err() {
        let mut s =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
                as u64
                ^ std::process::id() as u64;
        for c in t.chunks_mut(8) {
            c.copy_from_slice(&dprox_rng::splitmix64(&mut s).to_le_bytes());
        }
    }
    t
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
    let n = run.n();
    // The objectives phi(xbar) is evaluated with, on the CPU whatever the nodes' devices, built
    // before anything is served: a run that could not be evaluated fails now, not after training.
    let evaluation = {
        let run = run.clone();
        tokio::task::spawn_blocking(move || -> Result<_, dprox_config::ConfigError> {
            let objectives = (0..run.n()).map(|i| run.objective_on_cpu(i)).collect::<Result<Vec<_>, _>>()?;
            Ok((objectives, run.test_objective_on_cpu()?))
        })
        .await
        .map_err(|e| CoordinatorError::Io(e.to_string()))?
        .map_err(|e| CoordinatorError::Evaluation(e.to_string()))?
    };
    let token = random_token();
    let run_id =
        format!("{}-{}", run.name, token[..4].iter().map(|b| format!("{b:02x}")).collect::<String>());
    let (complete_tx, mut complete_rx) = mpsc::unbounded_channel::<Complete>();
    let shared = Arc::new(Shared {
        state: Arc::new(Mutex::new(State::new(n, run.dim, Instant::now()))),
        info: status::RunInfo::of(&run, run_id.clone()),
        edges: status::edges_of(&run),
        run: run.clone(),
        run_id: run_id.clone(),
        token,
        secret: opts.secret.clone(),
        started: watch::channel(false).0,
        over: watch::channel(false).0,
        complete: Mutex::new(Some(complete_tx)),
        last_row: Arc::new(Mutex::new(String::new())),
        start: Arc::new(Mutex::new(None)),
    });
    let io = |e: std::io::Error| CoordinatorError::Io(e.to_string());
    let mut writer = match &opts.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(io)?;
            Some(MetricsWriter::create(&dir.join("metrics.csv")).map_err(io)?)
        }
        None => None,
    };

    // The evaluator: complete iterations arrive in order; objectives are built once. It holds no
    // reference to `shared` (which owns the sender of its channel), so the channel closes.
    let (eval_run, eval_start, eval_last_row) = (run.clone(), shared.start.clone(), shared.last_row.clone());
    let eval_state = shared.state.clone();
    let evaluator = tokio::task::spawn_blocking(move || -> Result<Option<MetricsRow>, String> {
        let run = &eval_run;
        let (mut objectives, mut test) = evaluation;
        let mut ev = Evaluator::new(run.dim, run.config.regularizer, run.config.optimizer.lr);
        let mut last = None;
        while let Some(c) = complete_rx.blocking_recv() {
            let xs: Vec<&[f32]> = c.reports.iter().map(|r| r.x.as_slice()).collect();
            let eval = ev.evaluate(&xs, &mut objectives, test.as_mut());
            let start = *eval_start.lock().unwrap();
            let row = MetricsRow {
                iter: c.iteration,
                eval,
                bytes_sent: c.reports.iter().map(|r| r.payload).sum(),
                sim_time_s: c.reports.iter().map(|r| r.elapsed).fold(0.0, f64::max),
                wall_time_s: start.map_or(0.0, |s| s.elapsed().as_secs_f64()),
            };
            if let Some(w) = writer.as_mut() {
                w.write(&row).map_err(|e| e.to_string())?;
            }
            *eval_last_row.lock().unwrap() = row.to_csv();
            publish(&row, ev.consensus_contributions());
            eval_state.lock().unwrap().record_point(status::CurvePoint {
                iteration: row.iter,
                time_s: row.wall_time_s,
                objective: row.eval.objective,
                consensus_error: row.eval.consensus_error,
                test_accuracy: row.eval.test_accuracy,
                bytes_sent: row.bytes_sent,
            });
            last = Some(row);
        }
        Ok(last)
    });

    // Liveness: a node silent for 10 heartbeats is declared dead, and a run whose nodes do not
    // all register in time is given up.
    let live = shared.clone();
    let limit = Duration::from_secs_f64(run.config.cluster.heartbeat_s * 10.0);
    let register_limit = Duration::from_secs_f64(run.config.cluster.register_timeout_s);
    let watchdog = tokio::spawn(async move {
        const PERIOD: Duration = Duration::from_millis(200);
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut last, mut skipped) = (Instant::now(), false);
        loop {
            tick.tick().await;
            // When this process itself stalled (a loaded machine), the heartbeats that arrived
            // meanwhile may not be handled yet: judge liveness on the next tick instead (one
            // tick, not every late one, so that a machine that stays loaded is still watched).
            let punctual = last.elapsed() < 5 * PERIOD || skipped;
            skipped = !punctual;
            last = Instant::now();
            let aborted = {
                let mut state = live.state.lock().unwrap();
                publish_health(&state, Instant::now());
                (punctual && state.check_liveness(Instant::now(), limit))
                    || state.check_registration(Instant::now(), register_limit)
            };
            if aborted {
                live.note_over();
            }
        }
    });

    // The shutdown signal is needed twice (to stop serving gRPC, and to cut the HTTP linger
    // short), so a task turns the caller's future into a watch.
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let _forward = AbortOnDropHandle::new(tokio::spawn(async move {
        shutdown.await;
        shutdown_tx.send_replace(true);
    }));
    let shutdown_signal = move || {
        let mut rx = shutdown_rx.clone();
        // (As below: the watch's read guard must not live across an await.)
        async move {
            let _ = rx.wait_for(|&v| v).await.map(drop);
        }
    };
    let http = match opts.http {
        Some(listener) => {
            let app = web::router(shared.clone(), opts.http_routes);
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            });
            Some((stop_tx, AbortOnDropHandle::new(tokio::spawn(serve.into_future()))))
        }
        None => None,
    };

    let mut over = shared.over.subscribe();
    let mut shutdown = Box::pin(shutdown_signal());
    let server_shared = shared.clone();
    let stop = async move {
        tokio::select! {
            // (The watch's read guard must not outlive this line: it is not Send, and holding it
            // would block the writer.)
            _ = async { over.wait_for(|&v| v).await.is_ok() } => {
                // Let nodes read the abort in their next heartbeat before the server goes away.
                let aborted = matches!(server_shared.state.lock().unwrap().state, RunState::Aborted(_));
                if aborted {
                    tokio::time::sleep(Duration::from_secs_f64(server_shared.run.config.cluster.heartbeat_s * 2.0)).await;
                }
            }
            _ = &mut shutdown => {}
        }
    };
    let svc = pb::coordinator_server::CoordinatorServer::new(CoordinatorService(shared.clone()))
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server =
        tokio::spawn(tonic::transport::Server::builder().add_service(svc).serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async move {
                let _ = stopped_rx.await;
            },
        ));
    // Serve until the run is over; then shut down gracefully, but do not wait more than a few
    // seconds for clients (a status poller, a wedged node) to hang up.
    let served = tokio::select! {
        r = &mut server => r,
        _ = stop => {
            let _ = stopped_tx.send(());
            match tokio::time::timeout(Duration::from_secs(3), &mut server).await {
                Ok(r) => r,
                Err(_) => {
                    server.abort();
                    Ok(Ok(()))
                }
            }
        }
    };
    let served = served.map_err(|e| CoordinatorError::Io(e.to_string()))?;
    watchdog.abort();
    // Close the evaluator's channel and wait for the rows in flight.
    let state = shared.state.lock().unwrap().state.clone();
    drop(shared.complete.lock().unwrap().take());
    let last =
        evaluator.await.map_err(|e| CoordinatorError::Io(e.to_string()))?.map_err(CoordinatorError::Io)?;
    served.map_err(|e| CoordinatorError::Io(e.to_string()))?;
    let (status, error) = match &state {
        RunState::Completed => ("completed", None),
        RunState::Aborted(e) => ("failed", Some(e.clone())),
        _ => ("failed", Some("shut down before the run completed".to_string())),
    };
    let summary = Summary {
        name: run.name.clone(),
        algorithm: run.config.run.algorithm.to_string(),
        status: status.into(),
        error: error.clone(),
        nodes: n,
        edges: run.graph.num_edges(),
        spectral_gap: run.facts.spectral_gap,
        dim: run.dim,
        iterations: last.as_ref().map_or(0, |r| r.iter),
        bytes_sent: last.as_ref().map_or(0, |r| r.bytes_sent),
        sim_time_s: last.as_ref().map_or(0.0, |r| r.sim_time_s),
        wall_time_s: last.as_ref().map_or(0.0, |r| r.wall_time_s),
        last,
        config: serde_json::to_value(&run.config).unwrap_or_default(),
    };
    if let Some(dir) = &opts.out {
        write_json(&dir.join("summary.json"), &summary).map_err(io)?;
    }
    if let Some((stop, mut server)) = http {
        tokio::select! {
            _ = tokio::time::sleep(opts.http_linger) => {}
            _ = shutdown_signal() => {}
        }
        let _ = stop.send(());
        // Graceful, but a browser holding a keep-alive connection must not keep us here (the
        // handle aborts the server when the wait runs out).
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut server).await;
    }
    match state {
        RunState::Completed => Ok(summary),
        RunState::Aborted(e) => Err(CoordinatorError::Aborted(e)),
        _ => Err(CoordinatorError::Shutdown),
    }
}
