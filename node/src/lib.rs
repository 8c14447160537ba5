//! A dprox peer: the sans-IO core of `dprox-core` driven over gRPC gossip.
//!
//! [`run`] registers with the coordinator, receives its neighbours, their addresses and its
//! mixing weights, then loops: compute the gradient, hand it to the [`dprox_core::Node`], push each
//! outgoing message to every neighbour, feed arriving messages back in, and report its iterate to
//! the coordinator at evaluation points. Synchronisation is per neighbour: the node waits only for
//! its neighbours' messages of the current exchange (early ones are kept by the core), and a
//! neighbour that is dead or too slow ends the run with an error naming it.
//!
//! # Layout
//! - [`run`]: the node (mini-redis style: listener and shutdown come from the caller, so tests and
//!   users embedding a custom objective start nodes in-process on 127.0.0.1:0).
//! - `links`: one sender task per neighbour (FIFO, shaping, byte counters).
//! - `telemetry`: the node's Prometheus series (recorded through the `metrics` facade; the
//!   `--metrics-addr` endpoint of [`cli`] serves them).
//! - [`cli`]: the `dprox-node` command line.

pub mod cli;
mod links;
mod telemetry;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dprox_compress::Encoder;
use dprox_config::Prepared;
use dprox_core::{BatchSampler, CoreError, Node, Phase};
use dprox_objective::{Batch, Objective};
use dprox_transport::{Auth, GossipService, Inbound, PayloadPool, TransportError, pb};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::task::AbortOnDropHandle;

use links::Links;

/// How to reach the run.
#[derive(Clone, Debug)]
pub struct Options {
    /// This node's id.
    pub id: usize,
    /// The coordinator's host:port.
    pub coordinator: String,
    /// Folder for this node's metrics file (`nodes/node-ID.csv`).
    pub out: Option<PathBuf>,
    /// Cluster secret.
    pub secret: String,
}

/// What a completed node did.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Iterations completed.
    pub iterations: u64,
    /// Encoded payload bytes sent (to all neighbours).
    pub payload_bytes: u64,
    /// Bytes including protobuf and gRPC framing.
    pub framed_bytes: u64,
    /// Seconds from the start signal to the end.
    pub elapsed_s: f64,
}

/// Why a node stopped early. Every variant names the node or peer at fault.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The coordinator refused or could not be reached.
    #[error("coordinator at {address}: {message}")]
    Coordinator {
        /// Its address.
        address: String,
        /// What happened.
        message: String,
    },
    /// The core refused an input.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A message could not be delivered to a neighbour.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Neighbours did not send in time.
    #[error("node {node}: no {exchange} message of iteration {iteration} from {} within {timeout_s} s", describe_missing(.missing))]
    Timeout {
        /// This node.
        node: usize,
        /// Iteration waited on.
        iteration: u64,
        /// Exchange waited on.
        exchange: String,
        /// The neighbours (id, address) that did not send.
        missing: Vec<(usize, String)>,
        /// The timeout.
        timeout_s: f64,
    },
    /// The coordinator aborted the run (another node failed).
    #[error("run aborted by the coordinator: {0}")]
    Aborted(String),
    /// The shutdown signal arrived.
    #[error("node {0}: shut down before the run completed")]
    Shutdown(usize),
    /// Local I/O (metrics file, listener).
    #[error("{0}")]
    Io(String),
}

fn describe_missing(m: &[(usize, String)]) -> String {
    m.iter().map(|(id, a)| format!("node {id} ({a})")).collect::<Vec<_>>().join(", ")
}

/// Runs node `opts.id` of `run` with `objective` (its local f_i), serving gossip on `listener`,
/// until the run completes, fails, or `shutdown` resolves.
pub async fn run(
    run: Arc<Prepared>,
    mut objective: Box<dyn Objective>,
    opts: Options,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<Outcome, NodeError> {
    let id = opts.id;
    let address = listener.local_addr().map_err(|e| NodeError::Io(e.to_string()))?.to_string();
    let coord_err = |m: String| NodeError::Coordinator { address: opts.coordinator.clone(), message: m };

    // Serve gossip first, so that the address we register already answers.
    let (auth_tx, auth_rx) = watch::channel::<Option<Auth>>(None);
    let (in_tx, mut in_rx) = mpsc::channel::<Inbound>(1024);
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let pool = PayloadPool::default();
    let svc = GossipService::new(run.dim, auth_rx, in_tx, Duration::from_secs(30))
        .with_pool(pool.clone())
        .with_node_metrics(id)
        .into_server();
    let mut server = AbortOnDropHandle::new(tokio::spawn(
        dprox_transport::server().add_service(svc).serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async move {
                let _ = stop_rx.wait_for(|&s| s).await;
            },
        ),
    ));

    let channel =
        dprox_transport::endpoint(&opts.coordinator).map_err(|e| coord_err(e.to_string()))?.connect_lazy();
    let mut coord = pb::coordinator_client::CoordinatorClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let throughput = measure_throughput(objective.as_mut(), run.dim);
    let request = pb::RegisterRequest {
        id: id as u32,
        address: address.clone(),
        device: objective.device(),
        dim: run.dim as u64,
        throughput,
        secret: opts.secret.clone(),
    };
    // The coordinator may still be starting: retry "unavailable" for a while.
    let deadline = Instant::now() + Duration::from_secs(30);
    let reply = loop {
        match coord.register(request.clone()).await {
            Ok(r) => break r.into_inner(),
            Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => return Err(coord_err(format!("registration of node {id} refused: {}", s.message()))),
        }
    };
    let started = Instant::now();
    let peers: Vec<(usize, String)> =
        reply.peers.iter().map(|p| (p.id as usize, p.address.clone())).collect();
    auth_tx.send_replace(Some(Auth {
        run_id: reply.run_id.clone(),
        token: reply.token.to_vec(),
        peers: peers.iter().map(|p| p.0).collect(),
    }));
    let mut cfg = run.node_config(id);
    cfg.row = reply.row.iter().map(|w| (w.peer as usize, w.w)).collect();
    let mut node = Node::new(cfg)?;
    tracing::info!(node = id, %address, peers = ?peers.iter().map(|p| p.0).collect::<Vec<_>>(), run = %reply.run_id, "started");

    let iteration = Arc::new(AtomicU64::new(0));
    let (abort_tx, mut abort_rx) = watch::channel(String::new());
    let heartbeat = AbortOnDropHandle::new(tokio::spawn(heartbeat_loop(
        coord.clone(),
        id,
        iteration.clone(),
        Duration::from_secs_f64(run.config.cluster.heartbeat_s),
        abort_tx,
    )));
    let (err_tx, mut err_rx) = mpsc::unbounded_channel::<TransportError>();
    let mut links = Links::new(&run, id, &peers, reply.run_id.clone(), reply.token.clone(), err_tx)?;
    let mut encoder = run.config.compression.zstd.map(Encoder::with_zstd).unwrap_or_default();
    let mut metrics = NodeMetrics::create(opts.out.as_deref(), id)?;

    let outcome = async {
        let total = run.config.run.iterations;
        let every = run.config.run.eval_every;
        let timeout = Duration::from_secs_f64(run.config.cluster.timeout_s);
        let mut sampler = BatchSampler::new(run.config.run.seed, id, objective.num_samples(), run.batch_size(id));
        let mut grad = vec![0.0f32; run.dim];
        let (mut compute_s, mut wait_s) = (0.0f64, 0.0f64);
        // The minibatch loss of the latest gradient, for the coordinator's status page.
        let mut loss = None;
        let mut shutdown = std::pin::pin!(shutdown);
        let mut telemetry = telemetry::Telemetry::new(id, &node.peers().collect::<Vec<_>>());
        let mut report = async |node: &Node, links: &Links, compute_s: f64, wait_s: f64, loss: Option<f64>| -> Result<(), NodeError> {
            let t = node.iteration();
            // One reading of the counters (the sender tasks keep adding framed bytes), so the
            // totals are exactly the sum of the per-link figures.
            let per_peer = links.per_peer();
            let payload = per_peer.iter().map(|l| l.payload_bytes).sum();
            let framed = per_peer.iter().map(|l| l.framed_bytes).sum();
            let elapsed = started.elapsed().as_secs_f64();
            metrics.row(t, elapsed, compute_s, wait_s, payload, framed)?;
            let x = node.params().iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
            let req = pb::ReportRequest {
                id: id as u32,
                iteration: t,
                x: x.into(),
                payload_bytes: payload,
                framed_bytes: framed,
                elapsed_s: elapsed,
                compute_s,
                wait_s,
                links: per_peer,
                loss,
            };
            // Bounded, generously: a report carries the whole parameter vector.
            let limit = timeout.max(Duration::from_secs(120));
            let reply = tokio::time::timeout(limit, coord.clone().report(req))
                .await
                .map_err(|_| coord_err(format!("no answer to the report of iteration {t} within {} s", limit.as_secs_f64())))?;
            reply.map_err(|s| coord_err(format!("report refused: {}", s.message())))?;
            Ok(())
        };
        report(&node, &links, 0.0, 0.0, loss).await?;
        let fault = fault_exit_at(id);
        const PROBE_AFTER: Duration = Duration::from_secs(1);
        while node.iteration() < total {
            if fault == Some(node.iteration()) {
                tracing::error!(node = id, iteration = node.iteration(), "DPROX_FAULT_EXIT_AT: exiting abruptly");
                std::process::exit(3);
            }
            let t0 = Instant::now();
            let batch = sampler.next_batch();
            let batch = batch.map_or(Batch::Full, Batch::Indices);
            loss = Some(tokio::task::block_in_place(|| objective.loss_grad(node.params(), batch, &mut grad)));
            let dt = t0.elapsed().as_secs_f64();
            compute_s += dt;
            telemetry.gradient(loss.unwrap_or(f64::NAN), dt);
            node.handle_gradient(&grad)?;
            telemetry.observe(&node);
            links.flush(&mut node, &mut encoder);
            let mut last_progress = Instant::now();
            // When to check that the neighbours we still wait for exist: a second after the last
            // progress, then every second. (A deadline, not a guard on an interval: a guard is
            // read only when `select!` starts, so an idle wait would never probe.)
            let mut probe_at = last_progress + PROBE_AFTER;
            while node.phase() != Phase::NeedGradient {
                let w0 = Instant::now();
                // Biased: an abort or a shutdown first (rarely ready, and a node whose messages
                // are always queued must still see them), then a message already here before
                // any timer, so a neighbour that delivered its last message and left is never
                // taken for dead.
                tokio::select! {
                    biased;
                    _ = abort_rx.changed() => return Err(NodeError::Aborted(abort_rx.borrow().clone())),
                    _ = &mut shutdown => return Err(NodeError::Shutdown(id)),
                    Some(e) = err_rx.recv() => return Err(e.into()),
                    m = in_rx.recv() => {
                        let m = m.ok_or(NodeError::Shutdown(id))?;
                        apply(m, &mut node, &mut telemetry, &pool, &mut links, &mut encoder)?;
                        last_progress = Instant::now();
                        probe_at = last_progress + PROBE_AFTER;
                    }
                    _ = tokio::time::sleep_until((last_progress + timeout).into()) => {
                        let Phase::Exchanging(ex) = node.phase() else { unreachable!() };
                        telemetry.timed_out();
                        let missing = node
                            .missing_peers()
                            .into_iter()
                            .map(|j| (j, peers.iter().find(|p| p.0 == j).map(|p| p.1.clone()).unwrap_or_default()))
                            .collect();
                        return Err(NodeError::Timeout {
                            node: id,
                            iteration: node.iteration(),
                            exchange: ex.to_string(),
                            missing,
                            timeout_s: timeout.as_secs_f64(),
                        });
                    }
                    _ = tokio::time::sleep_until(probe_at.into()) => {
                        // Waiting a while: make sure the neighbours we wait for still exist, so a
                        // dead one fails the run at once instead of after the timeout.
                        let missing = node.missing_peers();
                        if let Some((peer, address, message)) = links.probe(&missing).await {
                            // Its last message may have come in while we probed (it finished and
                            // left): apply what is here before deciding that it is gone.
                            while let Ok(m) = in_rx.try_recv() {
                                apply(m, &mut node, &mut telemetry, &pool, &mut links, &mut encoder)?;
                                last_progress = Instant::now();
                            }
                            if let Phase::Exchanging(exchange) = node.phase()
                                && node.missing_peers().contains(&peer)
                            {
                                return Err(TransportError::PeerGone { peer, address, iteration: node.iteration(), exchange, message }.into());
                            }
                        }
                        probe_at = Instant::now() + PROBE_AFTER;
                    }
                }
                wait_s += w0.elapsed().as_secs_f64();
            }
            iteration.store(node.iteration(), Ordering::Relaxed);
            if node.iteration() % every == 0 || node.iteration() == total {
                report(&node, &links, compute_s, wait_s, loss).await?;
            }
        }
        // Every message we sent must be delivered before we go: neighbours may still need them.
        // A neighbour that takes them in no longer than the message timeout allows, an abort or
        // a shutdown ends the wait.
        tokio::select! {
            r = tokio::time::timeout(timeout, links.close()) => r.map_err(|_| {
                NodeError::Io(format!(
                    "the last messages were not delivered within {} s",
                    timeout.as_secs_f64()
                ))
            })??,
            _ = abort_rx.changed() => return Err(NodeError::Aborted(abort_rx.borrow().clone())),
            _ = &mut shutdown => return Err(NodeError::Shutdown(id)),
        }
        if let Ok(e) = err_rx.try_recv() {
            return Err(e.into());
        }
        let (payload, framed) = links.bytes();
        Ok(Outcome {
            iterations: node.iteration(),
            payload_bytes: payload,
            framed_bytes: framed,
            elapsed_s: started.elapsed().as_secs_f64(),
        })
    }
    .await;

    let error = match &outcome {
        Ok(_) => String::new(),
        Err(e) => {
            metrics::counter!(dprox_telemetry::names::ERRORS, "node" => id.to_string(), "kind" => "fatal")
                .increment(1);
            e.to_string()
        }
    };
    // Best effort, and bounded: a coordinator that is gone or wedged must not keep the node.
    let finish = pb::FinishRequest { id: id as u32, iteration: iteration.load(Ordering::Relaxed), error };
    let _ = tokio::time::timeout(Duration::from_secs(10), coord.finish(finish)).await;
    drop(heartbeat);
    let _ = stop_tx.send(true);
    // Graceful, but bounded: a peer that died mid-stream must not keep this process alive (the
    // handle aborts the server when the wait runs out).
    let _ = tokio::time::timeout(Duration::from_secs(3), &mut server).await;
    outcome
}

/// Applies a received message: the core's update, the node's metrics, the payload back to the
/// pool, and whatever the core now has to send.
fn apply(
    m: Inbound,
    node: &mut Node,
    telemetry: &mut telemetry::Telemetry,
    pool: &PayloadPool,
    links: &mut Links,
    encoder: &mut Encoder,
) -> Result<(), NodeError> {
    telemetry.received(node, &m);
    node.handle_message(m.from, m.iteration, m.exchange, &m.payload)?;
    telemetry.observe(node);
    pool.give(m.payload);
    links.flush(node, encoder);
    Ok(())
}

/// Fault injection for tests: `DPROX_FAULT_EXIT_AT=ID:ITER` makes node ID exit abruptly (as if
/// killed) when it reaches iteration ITER.
fn fault_exit_at(id: usize) -> Option<u64> {
    let v = std::env::var("DPROX_FAULT_EXIT_AT").ok()?;
    let (node, iter) = v.split_once(':')?;
    (node.parse::<usize>().ok()? == id).then(|| iter.parse().ok())?
}

/// Gradient samples per second on a small batch, reported at registration (informational).
fn measure_throughput(objective: &mut dyn Objective, dim: usize) -> f64 {
    let n = objective.num_samples().min(64);
    if n == 0 {
        return 0.0;
    }
    let idx: Vec<usize> = (0..n).collect();
    let x = vec![0.0f32; dim];
    let mut g = vec![0.0f32; dim];
    let t = Instant::now();
    objective.loss_grad(&x, Batch::Indices(&idx), &mut g);
    n as f64 / t.elapsed().as_secs_f64().max(1e-9)
}

async fn heartbeat_loop(
    mut coord: pb::coordinator_client::CoordinatorClient<tonic::transport::Channel>,
    id: usize,
    iteration: Arc<AtomicU64>,
    every: Duration,
    abort: watch::Sender<String>,
) {
    let mut tick = tokio::time::interval(every);
    let mut failures = 0;
    loop {
        tick.tick().await;
        let req = pb::HeartbeatRequest { id: id as u32, iteration: iteration.load(Ordering::Relaxed) };
        // An answer slower than a few beats counts as a failure, like no answer.
        let reply = tokio::time::timeout(every.max(Duration::from_secs(1)) * 5, coord.heartbeat(req)).await;
        match reply.unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("no answer to a heartbeat"))) {
            Ok(r) => {
                failures = 0;
                let r = r.into_inner();
                if !r.abort.is_empty() {
                    let _ = abort.send(r.abort);
                    return;
                }
            }
            Err(s) => {
                failures += 1;
                if failures >= 10 {
                    let _ = abort.send(format!("the coordinator stopped answering: {}", s.message()));
                    return;
                }
            }
        }
    }
}

/// This node's own metrics file, `nodes/node-ID.csv`.
struct NodeMetrics {
    file: Option<std::fs::File>,
}

impl NodeMetrics {
    fn create(out: Option<&std::path::Path>, id: usize) -> Result<NodeMetrics, NodeError> {
        let io = |e: std::io::Error| NodeError::Io(e.to_string());
        let Some(dir) = out else { return Ok(NodeMetrics { file: None }) };
        let dir = dir.join("nodes");
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut f = std::fs::File::create(dir.join(format!("node-{id}.csv"))).map_err(io)?;
        use std::io::Write;
        writeln!(f, "iter,elapsed_s,compute_s,wait_s,payload_bytes,framed_bytes").map_err(io)?;
        Ok(NodeMetrics { file: Some(f) })
    }

    fn row(
        &mut self,
        t: u64,
        elapsed: f64,
        compute: f64,
        wait: f64,
        payload: u64,
        framed: u64,
    ) -> Result<(), NodeError> {
        use std::io::Write;
        if let Some(f) = &mut self.file {
            writeln!(f, "{t},{elapsed},{compute},{wait},{payload},{framed}")
                .map_err(|e| NodeError::Io(e.to_string()))?;
        }
        Ok(())
    }
}
