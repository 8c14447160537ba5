//! [`Peer`], the node's driver: it registers with the coordinator, then runs the sans-IO core of
//! `dprox-core` one named step at a time (gradient, exchange, report), and finishes. Its side
//! effects go through the [`Gossip`] and [`CoordinatorLink`] traits and its clock is tokio's, so
//! the same code runs over gRPC and, in tests, in memory on a virtual clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use dprox_compress::Encoder;
use dprox_core::{BatchSampler, Node, Phase};
use dprox_objective::{Batch, Objective};
use dprox_prepare::Prepared;
use dprox_transport::{LinkShape, TransportError, pb};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::coordinator::CoordinatorLink;
use crate::gossip::{Gossip, GossipEvent, Outbound, PeerAddr, Session};
use crate::record::NodeRecord;
use crate::telemetry::Telemetry;
use crate::{NodeError, Outcome, heartbeat, registration};

/// A neighbour that has sent nothing for this long is probed, and again every this long.
pub const PROBE_AFTER: Duration = Duration::from_secs(1);

/// What a node is made of, before it registers.
pub struct Parts<G, C> {
    /// This node's id.
    pub id: usize,
    /// The run.
    pub run: Arc<Prepared>,
    /// Its local objective f_i.
    pub objective: Box<dyn Objective>,
    /// Its gossip, already serving at [`Gossip::address`].
    pub gossip: G,
    /// Its link to the coordinator.
    pub coordinator: C,
    /// Folder for its own metrics file (`nodes/node-ID.csv`), if any.
    pub out: Option<std::path::PathBuf>,
}

/// Seconds since the start signal, and how they were spent.
#[derive(Clone, Copy, Debug)]
struct Timing {
    started: Instant,
    /// Computing gradients (the emulated slowdown included).
    compute_s: f64,
    /// Waiting for neighbours' messages.
    wait_s: f64,
}

/// A registered node, training. Call order: [`Peer::register`], then [`Peer::run`] (which steps
/// until the last iteration and finishes, whatever the outcome).
pub struct Peer<G: Gossip, C: CoordinatorLink> {
    /// This node's id.
    id: usize,
    /// The run it belongs to.
    run: Arc<Prepared>,
    /// Its local objective and the gradient buffer it fills.
    objective: Box<dyn Objective>,
    grad: Vec<f32>,
    /// The minibatch of each iteration.
    sampler: BatchSampler,
    /// The algorithm's state machine.
    core: Node,
    /// The neighbours and their addresses (for errors that name them).
    peers: Vec<PeerAddr>,
    gossip: G,
    coordinator: C,
    /// Encodes outgoing messages into `buf` (zstd index blocks when configured).
    encoder: Encoder,
    buf: Vec<u8>,
    telemetry: Telemetry,
    record: NodeRecord,
    timing: Timing,
    /// The minibatch loss of the latest gradient.
    loss: Option<f64>,
    /// Extra wait after each gradient, as a multiple of its compute time: a node emulates its
    /// `[[nodes]] speed` relative to the fastest node.
    slowdown: f64,
    /// Iterations completed, read by the heartbeat.
    progress: Arc<AtomicU64>,
    /// The coordinator's abort, set by the heartbeat.
    abort: watch::Receiver<String>,
    heartbeat: AbortOnDropHandle<()>,
}

impl<G: Gossip, C: CoordinatorLink> Peer<G, C> {
    /// Registers with the coordinator (its reply is the start signal), builds the core with the
    /// neighbours and mixing row it hands out, connects the gossip links and starts the heartbeat.
    pub async fn register(parts: Parts<G, C>) -> Result<Peer<G, C>, NodeError> {
        let Parts { id, run, mut objective, mut gossip, mut coordinator, out } = parts;
        let reply = registration::register(id, &run, objective.as_mut(), &gossip, &mut coordinator).await?;
        let started = Instant::now();
        let mut cfg = run.node_config(id);
        cfg.row = reply.row.iter().map(|w| (w.peer as usize, w.w)).collect();
        let core = Node::new(cfg)?;
        let peers: Vec<PeerAddr> =
            reply.peers.iter().map(|p| PeerAddr { id: p.id as usize, address: p.address.clone() }).collect();
        let session = Session {
            run_id: reply.run_id.clone(),
            token: reply.token.clone(),
            shapes: peers.iter().map(|p| link_shape(&run, id, p.id)).collect(),
            peers: peers.clone(),
            seed: run.config().run.seed,
        };
        gossip.connect(&session)?;
        tracing::info!(node = id, address = %gossip.address(), peers = ?peers.iter().map(|p| p.id).collect::<Vec<_>>(), run = %reply.run_id, "started");
        let progress = Arc::new(AtomicU64::new(0));
        let (abort_tx, abort) = watch::channel(String::new());
        let every = Duration::from_secs_f64(run.config().cluster.heartbeat_s);
        let heartbeat = heartbeat::spawn(coordinator.clone(), id, progress.clone(), every, abort_tx);
        let slowdown = slowdown(&run, id);
        Ok(Peer {
            sampler: BatchSampler::new(
                run.config().run.seed,
                id,
                objective.num_samples(),
                run.batch_size(id),
            ),
            grad: vec![0.0; run.dim()],
            telemetry: Telemetry::new(id, &core.peers().collect::<Vec<_>>()),
            record: NodeRecord::create(out.as_deref(), id)?,
            encoder: run.config().compression.zstd.map(Encoder::with_zstd).unwrap_or_default(),
            buf: Vec::new(),
            timing: Timing { started, compute_s: 0.0, wait_s: 0.0 },
            loss: None,
            id,
            run,
            objective,
            core,
            peers,
            gossip,
            coordinator,
            slowdown,
            progress,
            abort,
            heartbeat,
        })
    }

    /// Trains to the last iteration, then tells the coordinator how it ended (whatever the
    /// outcome) and stops serving. `shutdown` ends the run early.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<Outcome, NodeError> {
        let result = self.train(&shutdown).await;
        self.finish(result).await
    }

    async fn train(&mut self, shutdown: &CancellationToken) -> Result<Outcome, NodeError> {
        let total = self.run.config().run.iterations;
        let every = self.run.config().run.eval_every;
        self.report().await?;
        while self.core.iteration() < total {
            self.gradient_step().await?;
            self.await_exchange(shutdown).await?;
            self.progress.store(self.core.iteration(), Ordering::Relaxed);
            if self.core.iteration().is_multiple_of(every) || self.core.iteration() == total {
                self.report().await?;
            }
        }
        self.deliver_last(shutdown).await
    }

    /// Step 1: the minibatch gradient at x_i, handed to the core; its messages go out.
    async fn gradient_step(&mut self) -> Result<(), NodeError> {
        let t0 = Instant::now();
        let batch = self.sampler.next_batch().map_or(Batch::Full, Batch::Indices);
        let (objective, x, grad) = (&mut self.objective, self.core.params(), &mut self.grad);
        let loss = blocking(|| objective.loss_grad(x, batch, grad));
        let dt = t0.elapsed();
        if self.slowdown > 0.0 {
            tokio::time::sleep(dt.mul_f64(self.slowdown)).await;
        }
        self.timing.compute_s += t0.elapsed().as_secs_f64();
        self.telemetry.gradient(loss, dt.as_secs_f64());
        self.loss = Some(loss);
        self.core.handle_gradient(&self.grad)?;
        self.telemetry.observe(&self.core);
        self.send_ready();
        Ok(())
    }

    /// Step 2: applies neighbours' messages until the iteration's exchanges are complete. Fails
    /// on the coordinator's abort, on shutdown, on a failed delivery, on a neighbour that a probe
    /// finds gone, and after `[cluster] timeout_s` without any message.
    async fn await_exchange(&mut self, shutdown: &CancellationToken) -> Result<(), NodeError> {
        let timeout = self.timeout();
        let mut last_progress = Instant::now();
        // A deadline, not a guard on an interval: a guard is read only when `select!` starts, so
        // an idle wait would never probe.
        let mut probe_at = last_progress + PROBE_AFTER;
        while self.core.phase() != Phase::NeedGradient {
            let w0 = Instant::now();
            // Biased: an abort or a shutdown first (rarely ready, and a node whose messages are
            // always queued must still see them), then a message already here before any timer,
            // so a neighbour that delivered its last message and left is never taken for dead.
            tokio::select! {
                biased;
                _ = self.abort.changed() => return Err(NodeError::Aborted(self.abort.borrow().clone())),
                _ = shutdown.cancelled() => return Err(NodeError::Shutdown(self.id)),
                event = self.gossip.next() => {
                    self.handle(event)?;
                    last_progress = Instant::now();
                    probe_at = last_progress + PROBE_AFTER;
                }
                _ = tokio::time::sleep_until(last_progress + timeout) => return Err(self.timed_out()),
                _ = tokio::time::sleep_until(probe_at) => {
                    self.probe_missing().await?;
                    probe_at = Instant::now() + PROBE_AFTER;
                }
            }
            self.timing.wait_s += w0.elapsed().as_secs_f64();
        }
        Ok(())
    }

    /// Applies one gossip event: a message to the core (its replies go out), or a failed send.
    fn handle(&mut self, event: Option<GossipEvent>) -> Result<(), NodeError> {
        match event {
            Some(GossipEvent::Message(m)) => {
                self.telemetry.received(&self.core, &m);
                let applied = self.core.handle_message(m.from, m.iteration, m.exchange, &m.payload);
                self.gossip.recycle(m.payload);
                applied?;
                self.telemetry.observe(&self.core);
                self.send_ready();
                Ok(())
            }
            Some(GossipEvent::SendFailed(e)) => Err(e.into()),
            None => Err(NodeError::Shutdown(self.id)),
        }
    }

    /// Checks that the neighbours still awaited exist: one that a probe cannot reach fails the
    /// run at once, instead of after the timeout.
    async fn probe_missing(&mut self) -> Result<(), NodeError> {
        let missing = self.core.missing_peers();
        let Some(down) = self.gossip.probe(&missing).await else { return Ok(()) };
        // Its last message may have come in while we probed (it finished and left): apply what
        // is here before deciding that it is gone.
        while let Some(event) = self.gossip.try_next() {
            self.handle(Some(event))?;
        }
        match self.core.phase() {
            Phase::Exchanging(exchange) if self.core.missing_peers().contains(&down.peer) => {
                Err(NodeError::Transport(TransportError::PeerGone {
                    peer: down.peer,
                    address: down.address,
                    iteration: self.core.iteration(),
                    exchange,
                    message: down.reason,
                }))
            }
            _ => Ok(()),
        }
    }

    /// The error for neighbours that sent nothing within the timeout, naming them.
    fn timed_out(&self) -> NodeError {
        self.telemetry.timed_out();
        let exchange = match self.core.phase() {
            Phase::Exchanging(ex) => ex,
            Phase::NeedGradient => unreachable!("only waited on while exchanging"),
        };
        let address =
            |j: usize| self.peers.iter().find(|p| p.id == j).map(|p| p.address.clone()).unwrap_or_default();
        NodeError::Timeout {
            node: self.id,
            iteration: self.core.iteration(),
            exchange,
            missing: self
                .core
                .missing_peers()
                .into_iter()
                .map(|j| PeerAddr { id: j, address: address(j) })
                .collect(),
            timeout_s: self.timeout().as_secs_f64(),
        }
    }

    /// Encodes every message the core has ready, once, and queues it for every neighbour.
    fn send_ready(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            self.buf.clear();
            self.encoder.encode(t.payload, &mut self.buf);
            let message = Outbound {
                iteration: t.iteration,
                exchange: t.exchange,
                data: Bytes::copy_from_slice(&self.buf),
            };
            self.gossip.send(message);
        }
    }

    /// Step 3, at evaluation points: the node's iterate and counters to the coordinator (and a
    /// row of its own metrics file).
    async fn report(&mut self) -> Result<(), NodeError> {
        let t = self.core.iteration();
        // One reading of the counters, so the totals are exactly the sum of the per-link figures.
        let links = self.gossip.traffic();
        let payload_bytes = links.iter().map(|l| l.payload_bytes).sum();
        let framed_bytes = links.iter().map(|l| l.framed_bytes).sum();
        let elapsed_s = self.timing.started.elapsed().as_secs_f64();
        let Timing { compute_s, wait_s, .. } = self.timing;
        self.record.row(t, elapsed_s, compute_s, wait_s, payload_bytes, framed_bytes)?;
        let x = self.core.params().iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
        let req = pb::ReportRequest {
            id: self.id as u32,
            iteration: t,
            x: x.into(),
            payload_bytes,
            framed_bytes,
            elapsed_s,
            compute_s,
            wait_s,
            links,
            loss: self.loss,
        };
        // Bounded, generously: a report carries the whole parameter vector.
        let limit = self.timeout().max(Duration::from_secs(120));
        match tokio::time::timeout(limit, self.coordinator.report(req)).await {
            Err(_) => Err(self.coordinator_error(format!(
                "no answer to the report of iteration {t} within {} s",
                limit.as_secs_f64()
            ))),
            Ok(Err(e)) => Err(self.coordinator_error(format!("report refused: {e}"))),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Step 4: every message sent must be delivered before the node goes (neighbours may still
    /// need them); bounded by the message timeout, cut short by an abort or a shutdown.
    async fn deliver_last(&mut self, shutdown: &CancellationToken) -> Result<Outcome, NodeError> {
        let timeout = self.timeout();
        tokio::select! {
            r = tokio::time::timeout(timeout, self.gossip.flush()) => {
                r.map_err(|_| NodeError::Undelivered { node: self.id, timeout_s: timeout.as_secs_f64() })??;
            }
            _ = self.abort.changed() => return Err(NodeError::Aborted(self.abort.borrow().clone())),
            _ = shutdown.cancelled() => return Err(NodeError::Shutdown(self.id)),
        }
        let links = self.gossip.traffic();
        Ok(Outcome {
            iterations: self.core.iteration(),
            payload_bytes: links.iter().map(|l| l.payload_bytes).sum(),
            framed_bytes: links.iter().map(|l| l.framed_bytes).sum(),
            elapsed_s: self.timing.started.elapsed().as_secs_f64(),
        })
    }

    /// Step 5: tells the coordinator how the run ended here (bounded: a coordinator that is gone
    /// or wedged must not keep the node), stops the heartbeat and the gossip server.
    async fn finish(mut self, result: Result<Outcome, NodeError>) -> Result<Outcome, NodeError> {
        let error = match &result {
            Ok(_) => String::new(),
            Err(e) => {
                metrics::counter!(dprox_telemetry::names::ERRORS, "node" => self.id.to_string(), "kind" => "fatal").increment(1);
                e.to_string()
            }
        };
        let req = pb::FinishRequest { id: self.id as u32, iteration: self.core.iteration(), error };
        let _ = tokio::time::timeout(Duration::from_secs(10), self.coordinator.finish(req)).await;
        drop(self.heartbeat);
        self.gossip.shutdown().await;
        result
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.run.config().cluster.timeout_s)
    }

    fn coordinator_error(&self, message: String) -> NodeError {
        NodeError::Coordinator { address: self.coordinator.address(), message }
    }
}

/// Runs a gradient computation: on a multi-threaded runtime, as blocking work (other tasks, the
/// gossip server, go on meanwhile); on a current-thread runtime (tests in virtual time), inline.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The shaping of the link from `id` to `peer`, when the run shapes links.
fn link_shape(run: &Prepared, id: usize, peer: usize) -> Option<LinkShape> {
    // Saturating: an absurd latency in a config is a very long wait, not a panic.
    let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX);
    run.link_shape(id, peer).map(|c| LinkShape {
        latency: secs(c.latency_s),
        bytes_per_s: c.bytes_per_s,
        loss: c.loss,
        retransmit: secs((4.0 * c.latency_s).max(0.01)),
    })
}

/// How much node `id` slows itself down to emulate its `[[nodes]] speed`: a node of speed s in a
/// run whose fastest node has speed s_max waits (s_max / s - 1) times its compute time after each
/// gradient, so that its gradients take s_max / s times as long as they would at full speed.
pub fn slowdown(run: &Prepared, id: usize) -> f64 {
    let fastest = (0..run.n()).map(|i| run.speed(i)).fold(0.0, f64::max);
    let factor = fastest / run.speed(id) - 1.0;
    if factor > 0.0 {
        tracing::info!(
            node = id,
            speed = run.speed(id),
            "emulating [[nodes]] speed: {factor:.2}x extra time after each gradient"
        );
    }
    factor.max(0.0)
}
