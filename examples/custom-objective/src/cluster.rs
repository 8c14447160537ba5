//! A real cluster in this process: the coordinator and every node of a run, started through
//! `dprox_coordinator::run` and `dprox_node::run` (what the `dprox-coordinator` and `dprox-node`
//! binaries wrap) on 127.0.0.1:0 and talking gRPC over loopback; and the check that its
//! `metrics.csv` equals the simulator's.
//!
//! Why in-process: a custom objective lives in this program, not in the `dprox-node` binary, so
//! the program starts the nodes itself and hands each its objective. On several machines, the
//! same program would run one `dprox_node::run` per host, with the coordinator's address.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dprox_config::{ConfigError, Prepared};
use dprox_coordinator::CoordinatorError;
use dprox_eval::Summary;
use dprox_node::NodeError;
use tokio::net::TcpListener;

/// Why an in-process cluster run did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A loopback listener could not be bound.
    #[error("binding 127.0.0.1:0: {0}")]
    Bind(#[from] std::io::Error),
    /// A node's objective could not be built.
    #[error(transparent)]
    Config(#[from] ConfigError),
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
    /// A task panicked or was cancelled.
    #[error("a cluster task did not finish: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Runs `run` as a cluster of one coordinator and `run.n()` nodes in this process, each node with
/// its objective from `run.objective(id)` (so with the program's own when `run` was given one by
/// `Prepared::with_objective`). With `out`, the coordinator writes `metrics.csv` and
/// `summary.json` there and each node `nodes/node-ID.csv`. Returns the coordinator's summary.
pub async fn run_in_process(run: Arc<Prepared>, out: Option<PathBuf>) -> Result<Summary, ClusterError> {
    // Everything that can fail before the run is done first, so that no task is left behind.
    let objectives = (0..run.n()).map(|id| run.objective(id)).collect::<Result<Vec<_>, _>>()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let coordinator_address = listener.local_addr()?.to_string();
    let mut listeners = Vec::with_capacity(run.n());
    for _ in 0..run.n() {
        listeners.push(TcpListener::bind("127.0.0.1:0").await?);
    }

    let opts = dprox_coordinator::Options { out: out.clone(), ..Default::default() };
    let coordinator =
        tokio::spawn(dprox_coordinator::run(run.clone(), opts, listener, std::future::pending()));
    let nodes: Vec<_> = objectives
        .into_iter()
        .zip(listeners)
        .enumerate()
        .map(|(id, (objective, listener))| {
            let opts = dprox_node::Options {
                id,
                coordinator: coordinator_address.clone(),
                out: out.clone(),
                secret: String::new(),
            };
            let shutdown = std::future::pending::<()>();
            tokio::spawn(dprox_node::run(run.clone(), objective, opts, listener, shutdown))
        })
        .collect();

    // A failing node makes the coordinator abort the run, so every task ends; report the node.
    let mut failure = None;
    for (id, node) in nodes.into_iter().enumerate() {
        if let Err(source) = node.await? {
            failure.get_or_insert(ClusterError::Node { id, source });
        }
    }
    let summary = coordinator.await?;
    match failure {
        Some(f) => Err(f),
        None => Ok(summary?),
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
pub fn compare_metrics(simulated: &Path, cluster: &Path) -> std::io::Result<Vec<String>> {
    let (a, b) = (read_columns(simulated)?, read_columns(cluster)?);
    let mut differences = Vec::new();
    if a.len() != b.len() {
        differences.push(format!("{} rows simulated, {} in the cluster", a.len(), b.len()));
    }
    for (ra, rb) in a.iter().zip(&b) {
        for ((column, x), y) in COMPARED_COLUMNS.iter().zip(ra).zip(rb) {
            if x != y {
                differences.push(format!("iter {}: {column} {x} simulated, {y} in the cluster", ra[0]));
            }
        }
    }
    Ok(differences)
}

/// The [`COMPARED_COLUMNS`] cells of each row of a `metrics.csv`.
fn read_columns(path: &Path) -> std::io::Result<Vec<Vec<String>>> {
    let text = std::fs::read_to_string(path)?;
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
