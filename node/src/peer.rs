//! [`Peer`], the node's driver: it registers with the coordinator, then runs the sans-IO core of
//! `dprox-core` one named step at a time (gradient, exchange, report, checkpoint, membership
//! change), and finishes. Its side effects go through the [`Gossip`] and [`CoordinatorLink`]
//! traits and its clock is tokio's, so the same code runs over gRPC and, in tests, in memory on a
//! virtual clock.
//!
//! # Layout
//! - this file: the driver's parts, registration, the loop, and the steps of an iteration.
//! - `exchange`: waiting for the neighbours' messages (timeouts, probes, freezes).
//! - `membership`: planned changes (leave, crash, pause), losses, joining, starting an epoch.
//! - `checkpoint`: the node's checkpoint files, and resuming from them.

mod checkpoint;
mod exchange;
mod membership;
mod pace;

pub use pace::Pace;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use dprox_compress::Encoder;
use dprox_core::{BatchSampler, BatchSize, Node};
use dprox_objective::{Batch, Objective};
use dprox_prepare::{Change, Prepared};
use dprox_transport::{Inbound, LinkShape, pb};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::coordinator::CoordinatorLink;
use crate::gossip::{Gossip, Outbound, PeerAddr};
use crate::heartbeat::{self, Control, Progress};
use crate::record::NodeRecord;
use crate::telemetry::Telemetry;
use crate::{NodeError, Outcome, registration};

pub use exchange::{PROBE_AFTER, STRIKES};

/// How a node enters the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// With the others, at iteration 0.
    Fresh,
    /// Into a running cluster (a restarted or new node): admitted at the next epoch.
    Join,
    /// Resuming the run from its last complete checkpoint.
    Resume,
}

/// Who enacts this node's scheduled crash and pause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Faults {
    /// `dprox launch`: the node says so on stdout (`dprox-fault crash T`, `dprox-fault pause S
    /// T`) and the launcher kills it (SIGKILL) or stops it (SIGSTOP, then SIGCONT).
    Launcher,
    /// The node itself: a crash ends its driver, a pause sleeps.
    InProcess,
}

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
    /// The run folder: its metrics file (`nodes/node-ID.csv`), checkpoints, leave state.
    pub out: Option<PathBuf>,
    /// How it enters the run.
    pub start: Start,
    /// Who enacts its scheduled faults.
    pub faults: Faults,
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
    /// The run it belongs to, and the run folder.
    run: Arc<Prepared>,
    out: Option<PathBuf>,
    /// Its local objective and the gradient buffer it fills.
    objective: Box<dyn Objective>,
    grad: Vec<f32>,
    /// The minibatch of each iteration (its position is the iteration: batch t at iteration t).
    sampler: BatchSampler,
    /// The algorithm's state machine.
    core: Node,
    /// The neighbours in the current epoch and their addresses (for errors that name them).
    peers: Vec<PeerAddr>,
    gossip: G,
    coordinator: C,
    /// The run's id and token (for the gossip sessions of later epochs).
    run_id: String,
    token: Bytes,
    /// Encodes outgoing messages (zstd index blocks when configured)...
    encoder: Encoder,
    /// ...into buffers that come back once every link has sent them.
    buffers: dprox_transport::SendBuffers,
    telemetry: Telemetry,
    record: NodeRecord,
    timing: Timing,
    /// The minibatch loss of the latest gradient.
    loss: Option<f64>,
    /// How the node paces its gradients to emulate the configured hardware (`[[nodes]] speed`,
    /// or the simulator's compute model when shaped).
    pace: Pace,
    /// Iteration and epoch, read by the heartbeat.
    progress: Progress,
    /// The coordinator's abort or freeze, set by the heartbeat (and reset after a sync).
    control: watch::Receiver<Control>,
    control_tx: Arc<watch::Sender<Control>>,
    heartbeat: AbortOnDropHandle<()>,
    /// Iterations at which a scheduled change starts an epoch (every member syncs there).
    planned: BTreeSet<u64>,
    /// This node's own scheduled faults.
    own_faults: Vec<Change>,
    faults: Faults,
    /// The iteration of the last epoch start (so a boundary syncs once).
    synced_at: Option<u64>,
    /// Messages of epochs the node has not started yet (bounded).
    future: Vec<Inbound>,
    /// Refused messages of this epoch, by sender.
    strikes: exchange::Strikes,
    /// Bytes sent before this process (restored from a checkpoint), (payload, framed).
    offset: (u64, u64),
}

impl<G: Gossip, C: CoordinatorLink> Peer<G, C> {
    /// Registers with the coordinator (its reply is the start signal, or for a joining node its
    /// admission), builds the core (fresh, from a checkpoint, or joining with a model), connects
    /// the gossip links and starts the heartbeat.
    pub async fn register(parts: Parts<G, C>) -> Result<Peer<G, C>, NodeError> {
        let Parts { id, run, mut objective, gossip, mut coordinator, out, start, faults } = parts;
        let flags = (start == Start::Join, start == Start::Resume);
        let pace = Pace::of(&run, id, objective.flops_per_sample());
        let reply =
            registration::register(id, &run, objective.as_mut(), &gossip, &mut coordinator, flags, pace)
                .await?;
        let control_tx = Arc::new(watch::channel(Control::Running).0);
        let progress = Progress::default();
        let every = Duration::from_secs_f64(run.config().cluster.heartbeat_s);
        let heartbeat =
            heartbeat::spawn(coordinator.clone(), id, progress.clone(), every, control_tx.clone());
        let schedule = run.schedule();
        let mut peer = Peer {
            sampler: BatchSampler::new(
                run.config().run.seed,
                id,
                objective.num_samples(),
                batch_size(&run, id, &reply),
            ),
            grad: vec![0.0; run.dim()],
            telemetry: Telemetry::new(id, &[]),
            record: NodeRecord::create(out.as_deref(), id, start != Start::Fresh)?,
            encoder: run.config().compression.zstd.map(Encoder::with_zstd).unwrap_or_default(),
            buffers: Default::default(),
            timing: Timing { started: Instant::now(), compute_s: 0.0, wait_s: 0.0 },
            loss: None,
            core: Node::new(run.node_config(id))?,
            peers: Vec::new(),
            run_id: reply.run_id.clone(),
            token: reply.token.clone(),
            pace,
            control: control_tx.subscribe(),
            control_tx,
            heartbeat,
            planned: schedule.iter().filter(|c| c.changes_membership()).map(|c| c.iteration).collect(),
            own_faults: schedule.into_iter().filter(|c| c.node == id && c.peer.is_none()).collect(),
            synced_at: None,
            future: Vec::new(),
            strikes: Default::default(),
            offset: (0, 0),
            progress,
            faults,
            id,
            run,
            out,
            objective,
            gossip,
            coordinator,
        };
        peer.enter(start, &reply).await?;
        Ok(peer)
    }

    /// Trains to the last iteration, then tells the coordinator how it ended (whatever the
    /// outcome) and stops serving. `shutdown` ends the run early.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<Outcome, NodeError> {
        let result = self.train(&shutdown).await;
        self.finish(result).await
    }

    async fn train(&mut self, shutdown: &CancellationToken) -> Result<Outcome, NodeError> {
        let total = self.run.config().run.iterations;
        if self.core.iteration() == 0 && self.core.epoch() == 0 {
            self.report().await?;
        }
        while self.core.iteration() < total {
            let t = self.core.iteration();
            if let Some(outcome) = self.own_fault(t).await? {
                return Ok(outcome);
            }
            if self.planned.contains(&t) && self.synced_at != Some(t) {
                self.sync(true, shutdown).await?;
                continue;
            }
            self.gradient_step().await?;
            match self.await_exchange(shutdown).await? {
                exchange::Waited::Done => self.end_of_iteration().await?,
                exchange::Waited::Interrupted(why) => self.reconfigure(why, shutdown).await?,
            }
        }
        self.deliver_last(shutdown).await
    }

    /// Step 1: the minibatch gradient at x_i, handed to the core; its messages go out.
    async fn gradient_step(&mut self) -> Result<(), NodeError> {
        let t0 = Instant::now();
        let batch = self.sampler.next_batch();
        let samples = batch.map_or(self.objective.num_samples(), |b| b.len());
        let batch = batch.map_or(Batch::Full, Batch::Indices);
        let (objective, x, grad) = (&mut self.objective, self.core.params(), &mut self.grad);
        let loss = blocking(|| objective.loss_grad(x, batch, grad));
        let dt = t0.elapsed();
        let wait = self.pace.wait_after(dt, samples);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        self.timing.compute_s += t0.elapsed().as_secs_f64();
        self.telemetry.gradient(loss, dt.as_secs_f64());
        self.loss = Some(loss);
        self.core.handle_gradient(&self.grad)?;
        self.telemetry.observe(&self.core);
        self.send_ready();
        Ok(())
    }

    /// Encodes every message the core has ready, once, and queues it for its recipients.
    fn send_ready(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            // Straight into the buffer the links share (sized for the plain encoding; zstd is
            // kept only when smaller), not through a copy.
            let mut buf = self.buffers.take(t.payload.encoded_len());
            self.encoder.encode(t.payload, &mut buf);
            let data = self.buffers.share(buf);
            self.gossip.send(Outbound {
                to: t.to,
                epoch: t.epoch,
                iteration: t.iteration,
                exchange: t.exchange,
                data,
            });
        }
    }

    /// Step 3, after an iteration: the iteration count for the heartbeat, the report at
    /// evaluation points, and the checkpoint when one was taken.
    async fn end_of_iteration(&mut self) -> Result<(), NodeError> {
        let t = self.core.iteration();
        self.progress.iteration.store(t, Ordering::Relaxed);
        let (total, every) = (self.run.config().run.iterations, self.run.config().run.eval_every);
        if t.is_multiple_of(every) || t == total {
            self.report().await?;
        }
        self.save_checkpoint().await
    }

    /// The node's iterate and counters to the coordinator (and a row of its own metrics file).
    async fn report(&mut self) -> Result<(), NodeError> {
        let t = self.core.iteration();
        let links = self.gossip.traffic();
        let (payload_bytes, framed_bytes) = self.totals();
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

    /// (payload, framed) bytes this node has sent in the run, over every epoch.
    fn totals(&self) -> (u64, u64) {
        let (p, f) = self.gossip.totals();
        (self.offset.0 + p, self.offset.1 + f)
    }

    /// Step 4: every message sent must be delivered before the node goes (neighbours may still
    /// need them); bounded by the message timeout, cut short by an abort or a shutdown.
    async fn deliver_last(&mut self, shutdown: &CancellationToken) -> Result<Outcome, NodeError> {
        self.flush(shutdown).await?;
        Ok(self.outcome(None))
    }

    async fn flush(&mut self, shutdown: &CancellationToken) -> Result<(), NodeError> {
        let timeout = self.timeout();
        tokio::select! {
            r = tokio::time::timeout(timeout, self.gossip.flush()) => {
                r.map_err(|_| NodeError::Undelivered { node: self.id, timeout_s: timeout.as_secs_f64() })??;
            }
            _ = self.control.changed() => return Err(self.controlled()),
            _ = shutdown.cancelled() => return Err(NodeError::Shutdown(self.id)),
        }
        Ok(())
    }

    fn outcome(&self, left_at: Option<u64>) -> Outcome {
        let (payload_bytes, framed_bytes) = self.totals();
        Outcome {
            iterations: self.core.iteration(),
            payload_bytes,
            framed_bytes,
            elapsed_s: self.timing.started.elapsed().as_secs_f64(),
            left_at,
        }
    }

    /// The error for what the control channel says (an abort; a freeze outside a wait).
    fn controlled(&self) -> NodeError {
        match &*self.control.borrow() {
            Control::Abort(why) => NodeError::Aborted(why.clone()),
            _ => NodeError::Aborted("the coordinator stopped the run".into()),
        }
    }

    /// Step 5: tells the coordinator how the run ended here (bounded: a coordinator that is gone
    /// or wedged must not keep the node), stops the heartbeat and the gossip server.
    async fn finish(mut self, result: Result<Outcome, NodeError>) -> Result<Outcome, NodeError> {
        let left = matches!(&result, Ok(o) if o.left_at.is_some());
        let error = match &result {
            Ok(_) => String::new(),
            Err(e) => {
                metrics::counter!(dprox_telemetry::names::ERRORS, "node" => self.id.to_string(), "kind" => "fatal").increment(1);
                e.to_string()
            }
        };
        if !left {
            let req = pb::FinishRequest { id: self.id as u32, iteration: self.core.iteration(), error };
            let _ = tokio::time::timeout(Duration::from_secs(10), self.coordinator.finish(req)).await;
        }
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

/// Node `id`'s minibatch size: the coordinator's when it sets one (balanced by the throughputs
/// the nodes measured), else the run config's.
fn batch_size(run: &Prepared, id: usize, reply: &pb::RegisterReply) -> BatchSize {
    if reply.batch_size == 0 {
        return run.batch_size(id);
    }
    tracing::info!(
        node = id,
        batch = reply.batch_size,
        "minibatch size set by the coordinator (balanced by measured throughput)"
    );
    BatchSize::Samples(reply.batch_size as usize)
}
