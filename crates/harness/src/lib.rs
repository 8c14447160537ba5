//! A dprox cluster in one process: the coordinator and nodes of a run, started through
//! `dprox_coordinator::run` and `dprox_node::run` (what `dprox coordinator` and `dprox node` wrap)
//! on 127.0.0.1:0, talking real gRPC over loopback. Tests use it, and so can a program that
//! embeds a custom objective and wants a real cluster without starting processes.
//!
//! # Layout
//! - [`InProcess`]: start a run's coordinator and some or all of its nodes; [`Started`] joins them.
//! - [`compare_metrics`]: two `metrics.csv` files, cell for cell on every column but the clocks.
//!
//! ```no_run
//! # async fn demo(run: std::sync::Arc<dprox_prepare::Prepared>) -> Result<(), dprox_harness::ClusterError> {
//! let summary = dprox_harness::InProcess::new(run).run().await?;
//! println!("{} iterations", summary.iterations);
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dprox_coordinator::CoordinatorError;
use dprox_eval::Summary;
use dprox_node::{NodeError, Outcome};
use dprox_objective::Objective;
use dprox_prepare::{Part, Placement, PrepareError, Prepared};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Why an in-process cluster run did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A loopback listener could not be bound.
    #[error("binding 127.0.0.1:0: {0}")]
    Bind(#[from] std::io::Error),
    /// A node's objective could not be built.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    /// A node stopped with an error (the first one to fail).
    #[error("node {id}: {source}")]
    Node {
        /// The node.
        id: usize,
        /// Why it stopped.
        source: NodeError,
    },
    /// The coordinator stopped without a completed run.
    #[error("coordinator: {0}")]
    Coordinator(#[from] CoordinatorError),
    /// The TLS files could not be used.
    #[error(transparent)]
    Tls(#[from] dprox_net::TlsError),
}

/// How each node's objective is built.
type ObjectiveOf = dyn Fn(usize) -> Result<Box<dyn Objective>, PrepareError> + Send + Sync;

/// A run to start in this process.
pub struct InProcess {
    run: Arc<Prepared>,
    out: Option<PathBuf>,
    secret: String,
    objective: Box<ObjectiveOf>,
    /// The cluster's TLS files (none: plaintext).
    tls: Option<PathBuf>,
}

/// A started cluster: the coordinator's address and tasks to join.
pub struct Started {
    /// The coordinator's gRPC address.
    pub coordinator: String,
    coordinator_task: JoinHandle<Result<Summary, CoordinatorError>>,
    nodes: Vec<(usize, JoinHandle<Result<Outcome, NodeError>>)>,
}

impl InProcess {
    /// The run `run`, each node with `run.objective(node, Placement::Configured)` (the program's
    /// own when `run` was given one).
    pub fn new(run: Arc<Prepared>) -> InProcess {
        let r = run.clone();
        InProcess {
            run,
            out: None,
            secret: String::new(),
            objective: Box::new(move |id| r.objective(Part::Node(id), Placement::Configured)),
            tls: None,
        }
    }

    /// Every link is mutual TLS with the certificates in `dir` (as `dprox certs` makes them).
    pub fn tls(mut self, dir: &Path) -> InProcess {
        self.tls = Some(dir.to_path_buf());
        self
    }

    /// The security of `peer`: TLS with the files of [`InProcess::tls`], else plaintext.
    fn security(&self, peer: dprox_net::Peer) -> Result<dprox_net::Security, ClusterError> {
        match &self.tls {
            Some(dir) => Ok(dprox_net::Security::load(dir, peer)?),
            None => Ok(dprox_net::Security::Insecure),
        }
    }

    /// The coordinator writes `metrics.csv` and `summary.json` into `dir`, each node
    /// `nodes/node-ID.csv`.
    pub fn out(mut self, dir: &Path) -> InProcess {
        self.out = Some(dir.to_path_buf());
        self
    }

    /// The cluster secret the nodes present and the coordinator requires.
    pub fn secret(mut self, secret: &str) -> InProcess {
        self.secret = secret.to_string();
        self
    }

    /// Builds node i's objective with `f` instead (e.g. on the CPU, standing in for a GPU).
    pub fn objectives(
        mut self,
        f: impl Fn(usize) -> Result<Box<dyn Objective>, PrepareError> + Send + Sync + 'static,
    ) -> InProcess {
        self.objective = Box::new(f);
        self
    }

    /// Starts the coordinator and the nodes `ids` (the others may be started elsewhere, or
    /// never: the coordinator then gives up after `[cluster] register_timeout_s`).
    pub async fn start(self, ids: impl IntoIterator<Item = usize>) -> Result<Started, ClusterError> {
        // Everything that can fail before the run is done first, so that no task is left behind.
        let ids: Vec<usize> = ids.into_iter().collect();
        let objectives = ids.iter().map(|&id| (self.objective)(id)).collect::<Result<Vec<_>, _>>()?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let coordinator = listener.local_addr()?.to_string();
        let mut listeners = Vec::with_capacity(ids.len());
        for _ in &ids {
            listeners.push(TcpListener::bind("127.0.0.1:0").await?);
        }
        let securities =
            ids.iter().map(|&id| self.security(dprox_net::Peer::Node(id))).collect::<Result<Vec<_>, _>>()?;
        let opts = dprox_coordinator::Options {
            out: self.out.clone(),
            secret: self.secret.clone(),
            security: self.security(dprox_net::Peer::Coordinator)?,
            ..Default::default()
        };
        let pending = std::future::pending::<()>();
        let coordinator_task =
            tokio::spawn(dprox_coordinator::run(self.run.clone(), opts, listener, pending));
        let nodes = ids
            .into_iter()
            .zip(objectives.into_iter().zip(listeners).zip(securities))
            .map(|(id, ((objective, listener), security))| {
                let opts = dprox_node::Options {
                    id,
                    coordinator: coordinator.clone(),
                    out: self.out.clone(),
                    secret: self.secret.clone(),
                    security,
                    start: dprox_node::Start::Fresh,
                    faults: dprox_node::Faults::InProcess,
                    advertise: None,
                };
                let node =
                    dprox_node::run(self.run.clone(), objective, opts, listener, std::future::pending());
                (id, tokio::spawn(node))
            })
            .collect();
        Ok(Started { coordinator, coordinator_task, nodes })
    }

    /// Starts every node, waits for the end, and returns the coordinator's summary, or the first
    /// node's error (a failing node makes the coordinator abort the run, so every task ends).
    pub async fn run(self) -> Result<Summary, ClusterError> {
        let n = self.run.n();
        let (nodes, summary) = self.start(0..n).await?.join().await;
        if let Some((id, Err(source))) = nodes.into_iter().find(|(_, r)| r.is_err()) {
            return Err(ClusterError::Node { id, source });
        }
        Ok(summary?)
    }
}

impl Started {
    /// Waits for every node and the coordinator: each node's outcome, and the coordinator's.
    pub async fn join(self) -> (Vec<(usize, Result<Outcome, NodeError>)>, Result<Summary, CoordinatorError>) {
        let mut outcomes = Vec::new();
        for (id, task) in self.nodes {
            outcomes.push((id, task.await.expect("a node task does not panic")));
        }
        (outcomes, self.coordinator_task.await.expect("the coordinator task does not panic"))
    }
}

/// The `metrics.csv` columns a cluster reproduces exactly: all but the two clocks
/// (`sim_time_s`, `wall_time_s`).
pub const COMPARED_COLUMNS: [&str; 8] = [
    "iter",
    "objective",
    "consensus_error",
    "test_accuracy",
    "density",
    "bytes_sent",
    "loss",
    "grad_mapping",
];

/// Compares two `metrics.csv` files cell by cell, as text, on [`COMPARED_COLUMNS`]. Both are
/// written with shortest round-trip float formatting, so equal text is equal bits. Returns the
/// differences in words; empty when the runs agree.
pub fn compare_metrics(a: &Path, b: &Path) -> std::io::Result<Vec<String>> {
    let (ra, rb) = (read_columns(a)?, read_columns(b)?);
    let mut differences = Vec::new();
    if ra.len() != rb.len() {
        differences.push(format!("{} rows in {}, {} in {}", ra.len(), a.display(), rb.len(), b.display()));
    }
    for (x, y) in ra.iter().zip(&rb) {
        for ((column, u), v) in COMPARED_COLUMNS.iter().zip(x).zip(y) {
            if u != v {
                differences.push(format!("iter {}: {column} {u} in the first, {v} in the second", x[0]));
            }
        }
    }
    Ok(differences)
}

/// The [`COMPARED_COLUMNS`] cells of each row of a `metrics.csv`.
fn read_columns(path: &Path) -> std::io::Result<Vec<Vec<String>>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let mut lines = text.lines().filter(|l| !l.is_empty());
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let missing = |c: &str| std::io::Error::other(format!("{}: no column {c}", path.display()));
    let at = COMPARED_COLUMNS
        .iter()
        .map(|c| header.iter().position(|h| h == c).ok_or_else(|| missing(c)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(lines
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            at.iter().map(|&k| cells.get(k).copied().unwrap_or_default().to_string()).collect()
        })
        .collect())
}
