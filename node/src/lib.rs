//! A dprox peer: the sans-IO core of `dprox-core` driven over gossip with its neighbours.
//!
//! A node registers with the coordinator, receives its neighbours, their addresses and its mixing
//! weights, then loops: compute the gradient, hand it to the [`dprox_core::Node`], push each
//! outgoing message to every neighbour, feed arriving messages back in, and report its iterate to
//! the coordinator at evaluation points. Synchronisation is per neighbour: the node waits only for
//! its neighbours' messages of the current exchange (early ones are kept by the core), and a
//! neighbour that is dead or too slow ends the run with an error naming it.
//!
//! # Layout
//! - [`run`]: a node over gRPC (mini-redis style: listener and shutdown come from the caller, so
//!   tests and programs embedding a custom objective start nodes in-process on 127.0.0.1:0).
//! - [`peer`]: [`Peer`], the driver: one method per step (register, gradient, exchange, report,
//!   deliver, finish), generic over its side effects.
//! - [`gossip`]: the [`Gossip`] trait; [`GrpcGossip`] (server, one sender task per neighbour,
//!   shaping, byte counters) and [`MemoryNetwork`] (in one process).
//! - [`coordinator`]: the [`CoordinatorLink`] trait; [`GrpcCoordinator`] and
//!   [`MemoryCoordinator`].
//! - `registration`, `heartbeat`: the calls to the coordinator outside the loop.
//! - `record`: the node's own metrics file; `telemetry`: its Prometheus series.
//! - [`cli`]: the `dprox node` command line.
//!
//! The drivers' clock is tokio's, so a node over [`MemoryNetwork`] and [`MemoryCoordinator`] runs
//! in virtual time (`tokio::time::pause`): its timeouts, probes and aborts are tested without a
//! socket or a sleep (`node/tests/virtual_time.rs`).

pub mod address;
pub mod cli;
pub mod coordinator;
pub mod gossip;
mod heartbeat;
pub mod peer;
mod record;
mod registration;
mod telemetry;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use dprox_core::{CoreError, Exchange};
use dprox_objective::Objective;
use dprox_prepare::Prepared;
use dprox_transport::TransportError;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use coordinator::{CoordinatorLink, GrpcCoordinator, LinkError, MemoryCoordinator};
pub use gossip::{Gossip, GrpcGossip, MemoryGossip, MemoryNetwork, PeerAddr};
pub use heartbeat::Control;
pub use peer::{Faults, Parts, Peer, Start};

/// How to reach the run.
#[derive(Clone, Debug)]
pub struct Options {
    /// This node's id.
    pub id: usize,
    /// The coordinator's host:port.
    pub coordinator: String,
    /// Folder for this node's metrics file (`nodes/node-ID.csv`).
    pub out: Option<PathBuf>,
    /// Cluster secret (presented at registration; what protects a run without TLS).
    pub secret: String,
    /// How the node's links are secured (mutual TLS, or plaintext with `--insecure`).
    pub security: dprox_net::Security,
    /// How the node enters the run.
    pub start: Start,
    /// Who enacts its scheduled faults.
    pub faults: Faults,
    /// The gossip address registered for peers to dial (None: the listener's own address).
    pub advertise: Option<String>,
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
    /// The iteration the node left the run at (a scheduled leave or crash), if it did.
    pub left_at: Option<u64>,
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
    /// A message could not be delivered to a neighbour, or the gossip could not start.
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
        exchange: Exchange,
        /// The neighbours that did not send.
        missing: Vec<PeerAddr>,
        /// The timeout.
        timeout_s: f64,
    },
    /// The last messages could not be delivered before the node had to go.
    #[error("node {node}: the last messages were not delivered within {timeout_s} s")]
    Undelivered {
        /// This node.
        node: usize,
        /// The message timeout.
        timeout_s: f64,
    },
    /// The coordinator aborted the run (another node failed).
    #[error("run aborted by the coordinator: {0}")]
    Aborted(String),
    /// The shutdown signal arrived.
    #[error("node {0}: shut down before the run completed")]
    Shutdown(usize),
    /// The coordinator formed an epoch without this node (it was declared lost: silent for
    /// longer than `[cluster] timeout_s`, or unreachable by a neighbour).
    #[error(
        "node {node}: the run went on without this node (declared lost at iteration {iteration}); restart it with --join to take part again"
    )]
    Excluded {
        /// This node.
        node: usize,
        /// Its iteration.
        iteration: u64,
    },
    /// A checkpoint or leave state could not be written or read.
    #[error("node {node}: {message}")]
    Checkpoint {
        /// This node.
        node: usize,
        /// What went wrong.
        message: String,
    },
    /// The node's metrics file could not be written.
    #[error("{}: {source}", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

fn describe_missing(m: &[PeerAddr]) -> String {
    m.iter().map(|p| format!("node {} ({})", p.id, p.address)).collect::<Vec<_>>().join(", ")
}

/// Runs node `opts.id` of `run` with `objective` (its local f_i) over gRPC, serving gossip on
/// `listener`, until the run completes, fails, or `shutdown` resolves.
pub async fn run(
    run: Arc<Prepared>,
    objective: Box<dyn Objective>,
    opts: Options,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Outcome, NodeError> {
    let shared_memory = run.config().cluster.shared_memory;
    let mut gossip = GrpcGossip::serve(opts.id, run.dim(), listener, opts.security.clone(), shared_memory)?;
    if let Some(a) = &opts.advertise {
        gossip = gossip.advertising(a);
    }
    let coordinator = GrpcCoordinator::new(&opts.coordinator, run.dim(), &opts.security)
        .map_err(|e| NodeError::Coordinator { address: opts.coordinator.clone(), message: e.to_string() })?
        .with_secret(&opts.secret);
    let parts = Parts {
        id: opts.id,
        run,
        objective,
        gossip,
        coordinator,
        out: opts.out,
        start: opts.start,
        faults: opts.faults,
    };
    let peer = Peer::register(parts).await?;
    let token = cancel_on(shutdown);
    let outcome = peer.run(token.clone()).await;
    token.cancel(); // (ends the task that watches `shutdown`)
    outcome
}

/// A token cancelled when `shutdown` resolves (by a task that lives as long as the future).
pub fn cancel_on(shutdown: impl Future<Output = ()> + Send + 'static) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown => t.cancel(),
            _ = t.cancelled() => {}
        }
    });
    token
}
