//! The files a run leaves behind: `metrics.csv` (one row per evaluation) and `summary.json`.

use std::io::Write;
use std::path::Path;

use crate::metrics::Evaluation;

/// One row of `metrics.csv`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MetricsRow {
    /// Iterations completed.
    pub iter: u64,
    /// The metrics of xbar.
    #[serde(flatten)]
    pub eval: Evaluation,
    /// Encoded gossip payload bytes sent by all nodes so far.
    pub bytes_sent: u64,
    /// Simulated wall clock (simulator) or the slowest node's elapsed time (cluster), seconds.
    pub sim_time_s: f64,
    /// Real elapsed time, seconds.
    pub wall_time_s: f64,
}

/// The `metrics.csv` header, in column order.
pub const METRICS_HEADER: &str = "iter,objective,consensus_error,test_accuracy,density,bytes_sent,sim_time_s,wall_time_s,loss,grad_mapping";

impl MetricsRow {
    /// The row as CSV (shortest round-trip float formatting; empty test_accuracy when none).
    pub fn to_csv(&self) -> String {
        let e = &self.eval;
        format!(
            "{},{},{},{},{},{},{},{},{},{}",
            self.iter,
            e.objective,
            e.consensus_error,
            e.test_accuracy.map(|a| a.to_string()).unwrap_or_default(),
            e.density,
            self.bytes_sent,
            self.sim_time_s,
            self.wall_time_s,
            e.loss,
            e.grad_mapping
        )
    }
}

/// Writes `metrics.csv` row by row, flushing each, so that a run that fails midway keeps every
/// row it computed.
#[derive(Debug)]
pub struct MetricsWriter {
    file: std::io::BufWriter<std::fs::File>,
}

impl MetricsWriter {
    /// Creates `path` and writes the header.
    pub fn create(path: &Path) -> std::io::Result<MetricsWriter> {
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(file, "{METRICS_HEADER}")?;
        file.flush()?;
        Ok(MetricsWriter { file })
    }

    /// Appends one row.
    pub fn write(&mut self, row: &MetricsRow) -> std::io::Result<()> {
        writeln!(self.file, "{}", row.to_csv())?;
        self.file.flush()
    }
}

/// Reads a `metrics.csv` back (for comparisons and plots). Empty cells become NaN.
pub fn read_metrics(path: &Path) -> std::io::Result<Vec<std::collections::BTreeMap<String, f64>>> {
    let text = std::fs::read_to_string(path)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    Ok(lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            header
                .iter()
                .zip(l.split(','))
                .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(f64::NAN)))
                .collect()
        })
        .collect())
}

/// Writes `value` as pretty JSON to `path`, atomically (a temporary file renamed into place).
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    // Written beside it and renamed into place: whoever watches for the file never reads half.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text + "\n")?;
    std::fs::rename(&tmp, path)
}

/// `summary.json`: what ran, how it ended, and the final metrics.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    /// Run name.
    pub name: String,
    /// Algorithm.
    pub algorithm: String,
    /// `completed`, or `failed` with `error` set.
    pub status: String,
    /// Why the run failed (the rows computed before it are in metrics.csv).
    pub error: Option<String>,
    /// Number of nodes.
    pub nodes: usize,
    /// Number of edges of the graph.
    pub edges: usize,
    /// 1 - rho of the mixing matrix.
    pub spectral_gap: f64,
    /// Parameters per model.
    pub dim: usize,
    /// Iterations completed.
    pub iterations: u64,
    /// The last metrics row.
    pub last: Option<MetricsRow>,
    /// Total encoded gossip payload bytes sent by all nodes.
    pub bytes_sent: u64,
    /// Simulated (or slowest node's) seconds.
    pub sim_time_s: f64,
    /// Real seconds.
    pub wall_time_s: f64,
    /// The config that produced the run.
    pub config: serde_json::Value,
}
