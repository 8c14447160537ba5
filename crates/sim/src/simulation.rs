//! n nodes in one process, driving the same core as the cluster node, on a virtual clock.

use dprox_compress::Encoder;
use dprox_core::{BatchSampler, Cluster, CoreError, Delivery, Node, Outbox, Receivers};
use dprox_eval::{Evaluation, Evaluator, OutputError};
use dprox_objective::{Batch, Objective};
use dprox_prepare::{Part, Placement, PrepareError, Prepared};
use rayon::prelude::*;

use crate::clock::{Clock, InLink};
use crate::membership::Membership;

/// Why a simulation stopped.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The config could not be turned into a run.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    /// A node's state machine refused an input (a non-finite gradient, a diverged iterate).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// An output file could not be written.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] dprox_eval::checkpoint::CheckpointError),
    /// `--resume` found no intact checkpoint.
    #[error("no checkpoint to resume from in {}", dir.display())]
    NoCheckpoint {
        /// Where checkpoints were looked for.
        dir: std::path::PathBuf,
    },
    /// `model.safetensors` could not be written.
    #[error(transparent)]
    Model(#[from] dprox_eval::model::ModelError),
    /// Fewer nodes than `[cluster] min_nodes` would be left.
    #[error("iteration {iteration}: only {live} node(s) would be left, fewer than cluster.min_nodes = {min}")]
    TooFewNodes {
        /// The iteration of the change.
        iteration: u64,
        /// Nodes that would be left.
        live: usize,
        /// The minimum.
        min: usize,
    },
}

/// A simulated cluster: the nodes, their objectives and minibatch samplers, the virtual clock and
/// the byte counters. Deterministic: the same [`Prepared`] run gives the same iterates, bytes and
/// simulated times on every call, whatever the number of threads.
pub struct Simulation<'a> {
    pub(crate) run: &'a Prepared,
    pub(crate) cluster: Cluster,
    /// Who takes part, and the fault schedule still to come (see `membership`).
    pub(crate) members: Membership,
    objectives: Vec<Box<dyn Objective>>,
    pub(crate) samplers: Vec<BatchSampler>,
    grads: Vec<Vec<f32>>,
    test: Option<Box<dyn Objective>>,
    evaluator: Evaluator,
    pub(crate) clock: Clock,
    /// Seconds of compute per sample on each node.
    secs_per_sample: Vec<f64>,
    batch_len: Vec<usize>,
    /// Per node: the minibatch size used, or why its gradient was refused.
    outcome: Vec<Result<usize, CoreError>>,
    compute: Vec<f64>,
    /// Bytes node i sends to each neighbour in exchange s of the current iteration.
    sent: Vec<Vec<u64>>,
    stages: usize,
    pub(crate) bytes_sent: u64,
    encoder: Option<(Encoder, Vec<u8>)>,
    /// Applies each round's messages, receivers side by side.
    receivers: OnThePool,
    pub(crate) iteration: u64,
}

/// A round's senders and receivers served side by side on the rayon pool (the mixing and proximal steps of
/// five LeNet nodes were a twentieth of a simulated run, on one thread). Each node's result goes
/// to its own slot, so the error reported is the lowest node's, as in a delivery in order.
#[derive(Debug, Default)]
struct OnThePool {
    results: Vec<Result<(), CoreError>>,
}

impl Receivers for OnThePool {
    fn each(
        &mut self,
        nodes: &mut [Node],
        apply: &(dyn Fn(usize, &mut Node) -> Result<(), CoreError> + Sync),
    ) -> Result<(), CoreError> {
        self.results.resize_with(nodes.len(), || Ok(()));
        nodes
            .par_iter_mut()
            .zip(self.results.par_iter_mut())
            .enumerate()
            .for_each(|(i, (node, result))| *result = apply(i, node));
        self.results.iter_mut().map(|r| std::mem::replace(r, Ok(()))).find(Result::is_err).unwrap_or(Ok(()))
    }

    /// The senders side by side too: copying their payloads into the outboxes was the main
    /// thread's share of a two-thread LeNet run (3.6% of its samples, the pool waiting).
    fn each_sender(
        &mut self,
        nodes: &mut [Node],
        outboxes: &mut [Outbox],
        collect: &(dyn Fn(usize, &mut Node, &mut Outbox) + Sync),
    ) {
        nodes
            .par_iter_mut()
            .zip(outboxes.par_iter_mut())
            .enumerate()
            .for_each(|(i, (node, outbox))| collect(i, node, outbox));
    }
}

impl std::fmt::Debug for Simulation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("iteration", &self.iteration)
            .field("nodes", &self.objectives.len())
            .finish()
    }
}

impl<'a> Simulation<'a> {
    /// Builds the nodes, objectives and clock of `run`.
    pub fn new(run: &'a Prepared) -> Result<Simulation<'a>, SimError> {
        let n = run.n();
        // Objectives first: for `kind = "custom"` without `Prepared::with_objective`, their error
        // says what to do, where the core would only see an empty x^0.
        let objectives = (0..n)
            .map(|i| run.objective(Part::Node(i), Placement::Configured))
            .collect::<Result<Vec<_>, _>>()?;
        let configs: Vec<_> = (0..n).map(|i| run.node_config(i)).collect();
        let cluster = Cluster::new(configs)?;
        let samplers = (0..n)
            .map(|i| {
                BatchSampler::new(run.config().run.seed, i, objectives[i].num_samples(), run.batch_size(i))
            })
            .collect();
        let secs_per_sample =
            (0..n).map(|i| run.compute_secs_per_sample(i, objectives[i].flops_per_sample())).collect();
        let links = cluster
            .nodes()
            .iter()
            .map(|node| {
                node.peers()
                    .map(|j| {
                        let cost = run.link(j, node.id());
                        InLink { from: j, latency_s: cost.latency_s, bytes_per_s: cost.bytes_per_s }
                    })
                    .collect()
            })
            .collect();
        let stages = run.config().run.algorithm.exchanges().len();
        let zstd = run.config().compression.zstd;
        Ok(Simulation {
            members: Membership::new(run),
            run,
            cluster,
            samplers,
            grads: vec![vec![0.0; run.dim()]; n],
            test: run.test_objective(Placement::Configured)?,
            evaluator: Evaluator::new(run.dim(), run.config().regularizer, run.config().optimizer.lr),
            clock: Clock::new(links),
            secs_per_sample,
            batch_len: vec![0; n],
            receivers: OnThePool::default(),
            outcome: (0..n).map(|_| Ok(0)).collect(),
            compute: vec![0.0; n],
            sent: vec![vec![0; stages]; n],
            stages,
            bytes_sent: 0,
            encoder: zstd.map(|l| (Encoder::with_zstd(l), Vec::new())),
            iteration: 0,
            objectives,
        })
    }

    /// Iterations completed.
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// Simulated seconds so far (when the slowest node finished its last iteration).
    pub fn sim_time(&self) -> f64 {
        self.clock.now()
    }

    /// Total encoded payload bytes sent by all nodes so far.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    /// The nodes' state machines.
    pub fn nodes(&self) -> &[Node] {
        self.cluster.nodes()
    }

    /// One iteration on every live node: the scheduled membership changes of this iteration,
    /// the gradients (in parallel), then the exchanges.
    pub fn step(&mut self) -> Result<(), SimError> {
        self.apply_schedule()?;
        // Gradients in parallel; each node's outcome goes to its own preallocated slot, so the
        // step allocates nothing.
        let active = self.members.active();
        self.cluster
            .nodes_mut()
            .par_iter_mut()
            .zip(self.objectives.par_iter_mut())
            .zip(self.samplers.par_iter_mut())
            .zip(self.grads.par_iter_mut())
            .zip(self.outcome.par_iter_mut())
            .for_each(|((((node, obj), sampler), g), outcome)| {
                if !active[node.id()] {
                    *outcome = Ok(0);
                    return;
                }
                let batch = sampler.next_batch();
                let len = batch.map_or(obj.num_samples(), |b| b.len());
                let batch = batch.map_or(Batch::Full, Batch::Indices);
                obj.loss_grad(node.params(), batch, g);
                *outcome = node.handle_gradient(g).map(|_| len);
            });
        for (i, outcome) in self.outcome.iter_mut().enumerate() {
            match std::mem::replace(outcome, Ok(0)) {
                Ok(len) => self.batch_len[i] = len,
                Err(e) => return Err(e.into()),
            }
        }
        let stages = self.stages;
        let (sent, bytes_sent, encoder) = (&mut self.sent, &mut self.bytes_sent, &mut self.encoder);
        let algorithm = self.cluster.nodes()[0].algorithm();
        self.cluster.exchange_with(Delivery::Ascending, &mut self.receivers, |m| {
            let size = match encoder {
                Some((enc, buf)) => {
                    buf.clear();
                    enc.encode(m.transmit.payload, buf);
                    buf.len()
                }
                None => m.transmit.payload.encoded_len(),
            } as u64;
            let stage = algorithm.exchanges().iter().position(|&e| e == m.transmit.exchange).unwrap_or(0);
            debug_assert!(stage < stages);
            sent[m.from][stage] = size;
            *bytes_sent += size * m.recipients as u64;
        })?;
        for i in 0..self.compute.len() {
            self.compute[i] = self.batch_len[i] as f64 * self.secs_per_sample[i];
        }
        match self.run.mixing_schedule() {
            Some(s) => {
                let t = self.iteration;
                self.clock.advance_over(&self.compute, &self.sent, |i, from| {
                    s.pairing(i, t).is_some_and(|p| p.from == from)
                })
            }
            None => self.clock.advance(&self.compute, &self.sent),
        }
        self.iteration += 1;
        Ok(())
    }

    /// The contract metrics of the current iterates: xbar over the live nodes, the objective
    /// over every node's data.
    pub fn evaluate(&mut self) -> Evaluation {
        let active = self.members.active();
        let xs: Vec<&[f32]> =
            self.cluster.nodes().iter().filter(|n| active[n.id()]).map(|n| n.params()).collect();
        self.evaluator.evaluate(&xs, &mut self.objectives, self.test.as_mut())
    }

    /// The nodes taking part now, ascending.
    pub fn live_nodes(&self) -> Vec<usize> {
        (0..self.run.n()).filter(|&i| self.members.active()[i]).collect()
    }

    /// The live nodes' average model now (summed in f64 in node order, as an evaluation sums
    /// it: at an evaluated iteration it is the row's x̄).
    pub fn average(&self) -> Vec<f32> {
        let live: Vec<&Node> = self
            .cluster
            .nodes()
            .iter()
            .zip(self.members.active())
            .filter(|&(_, &a)| a)
            .map(|(n, _)| n)
            .collect();
        let mut sum = vec![0.0f64; self.run.dim()];
        for node in &live {
            for (s, &v) in sum.iter_mut().zip(node.params()) {
                *s += v as f64;
            }
        }
        sum.iter().map(|&s| (s / live.len().max(1) as f64) as f32).collect()
    }

    /// The average model of the last evaluation.
    pub fn xbar(&self) -> &[f32] {
        self.evaluator.xbar()
    }
}
