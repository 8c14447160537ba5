//! The files a run leaves behind: `metrics.csv` (one row per evaluation) and `summary.json`, and
//! the [`Recorder`] that writes them for the simulator and the coordinator alike.

use std::io::Write;
use std::path::{Path, PathBuf};

use dprox_core::Algorithm;
use serde::{Deserialize, Serialize};

use crate::metrics::Evaluation;

/// One row of `metrics.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

/// A float that JSON wrote as `null` (serde_json writes NaN and infinities so) reads back as NaN.
pub(crate) fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// What a run is, known before it starts (the first fields of `summary.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunHeader {
    /// Run name.
    pub name: String,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Number of nodes.
    pub nodes: usize,
    /// Number of edges of the graph.
    pub edges: usize,
    /// 1 - rho of the mixing matrix.
    pub spectral_gap: f64,
    /// Parameters per model.
    pub dim: usize,
    /// The config that produced the run.
    pub config: serde_json::Value,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// It reached its last iteration with at least `[cluster] min_nodes` nodes.
    Completed,
    /// It stopped early; `error` in the summary says why (and `resume`, where to go on from).
    Failed,
    /// It has not ended: the summary a running run keeps on disk at each checkpoint, so that a
    /// run whose coordinator was killed says where to resume from.
    Interrupted,
}

/// What happened to the membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A node left as scheduled (keeping its state).
    Leave,
    /// A node's process was killed as scheduled.
    Crash,
    /// A node was lost without notice (found unreachable, or silent too long).
    Lost,
    /// A node took part again after leaving or crashing.
    Rejoin,
    /// A node paused (no membership change).
    Pause,
    /// A link went down.
    LinkDown,
    /// A link came back.
    LinkUp,
}

/// A membership change, as `summary.json` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MembershipEvent {
    /// The iteration the change took effect at (the new epoch's first).
    pub iteration: u64,
    /// The node (for a link, its lower end).
    pub node: usize,
    /// The link's other end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<usize>,
    /// What happened.
    pub kind: EventKind,
    /// The epoch the change started.
    pub epoch: u64,
}

/// Where an unfinished run goes on from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resume {
    /// The iteration of the last complete checkpoint.
    pub iteration: u64,
    /// The command that continues the run.
    pub command: String,
}

/// `summary.json`: what ran, how it ended, and the final metrics. Written by [`Recorder::finish`];
/// read back with [`Summary::read`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// What ran.
    #[serde(flatten)]
    pub run: RunHeader,
    /// How it ended.
    pub status: RunStatus,
    /// Why the run failed (the rows computed before it are in metrics.csv).
    pub error: Option<String>,
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
    /// The membership changes, in order.
    #[serde(default)]
    pub events: Vec<MembershipEvent>,
    /// The nodes taking part at the end.
    #[serde(default)]
    pub live_nodes: usize,
    /// Where to resume from, when the run has a checkpoint and did not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
}

impl Summary {
    /// Reads a `summary.json`.
    pub fn read(path: &Path) -> Result<Summary, OutputError> {
        let text = std::fs::read_to_string(path).map_err(|e| OutputError::at(path, e))?;
        serde_json::from_str(&text).map_err(|e| OutputError::at(path, std::io::Error::other(e)))
    }
}

/// An output file could not be written (or read back).
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct OutputError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub source: std::io::Error,
}

impl OutputError {
    fn at(path: &Path, source: std::io::Error) -> OutputError {
        OutputError { path: path.to_path_buf(), source }
    }
}

/// The outputs of one run: `metrics.csv` row by row (flushed, so a run that fails midway keeps
/// every row), and `summary.json` at the end, whatever the end. Without a folder it only keeps
/// the summary (for callers that want the figures and no files).
#[derive(Debug)]
pub struct Recorder {
    dir: Option<PathBuf>,
    metrics: Option<MetricsWriter>,
    summary: Summary,
}

impl Recorder {
    /// Creates `out` (when given) and its `metrics.csv` for the run `header` describes.
    pub fn create(out: Option<&Path>, header: RunHeader) -> Result<Recorder, OutputError> {
        let metrics = match out {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| OutputError::at(dir, e))?;
                let p = dir.join("metrics.csv");
                Some(MetricsWriter::create(&p).map_err(|e| OutputError::at(&p, e))?)
            }
            None => None,
        };
        let summary = Summary {
            live_nodes: header.nodes,
            run: header,
            status: RunStatus::Completed,
            error: None,
            iterations: 0,
            last: None,
            bytes_sent: 0,
            sim_time_s: 0.0,
            wall_time_s: 0.0,
            events: Vec::new(),
            resume: None,
        };
        Ok(Recorder { dir: out.map(Path::to_path_buf), metrics, summary })
    }

    /// Continues the run whose summary was `summary` when it checkpointed at iteration `upto`:
    /// `metrics.csv` in `out` keeps its rows up to `upto` (later ones, computed after the
    /// checkpoint by the interrupted run, are dropped) and grows from there.
    pub fn resume(out: &Path, summary: Summary, upto: u64) -> Result<Recorder, OutputError> {
        let p = out.join("metrics.csv");
        let text = std::fs::read_to_string(&p).map_err(|e| OutputError::at(&p, e))?;
        let mut kept = String::new();
        for (k, line) in text.lines().enumerate() {
            let iter = line.split(',').next().and_then(|v| v.parse::<u64>().ok());
            if k == 0 || iter.is_some_and(|i| i <= upto) {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        std::fs::write(&p, kept).map_err(|e| OutputError::at(&p, e))?;
        let file = std::fs::OpenOptions::new().append(true).open(&p).map_err(|e| OutputError::at(&p, e))?;
        let metrics = Some(MetricsWriter { file: std::io::BufWriter::new(file) });
        Ok(Recorder { dir: Some(out.to_path_buf()), metrics, summary: Summary { resume: None, ..summary } })
    }

    /// The nodes taking part at the end.
    pub fn set_live(&mut self, live_nodes: usize) {
        self.summary.live_nodes = live_nodes;
    }

    /// Records a membership change (and the number of live nodes after it).
    pub fn event(&mut self, e: MembershipEvent, live_nodes: usize) {
        self.summary.events.push(e);
        self.summary.live_nodes = live_nodes;
    }

    /// A checkpoint at `iteration` is complete: the summary on disk says, until the run ends,
    /// that it can be resumed from there with `command`.
    pub fn checkpointed(
        &mut self,
        iteration: u64,
        command: String,
        wall_time_s: f64,
    ) -> Result<(), OutputError> {
        self.summary.resume = Some(Resume { iteration, command });
        let Some(dir) = &self.dir else { return Ok(()) };
        let p = dir.join("summary.json");
        let interrupted = Summary {
            status: RunStatus::Interrupted,
            error: Some(format!("the run was interrupted after its checkpoint at iteration {iteration}")),
            wall_time_s,
            ..self.summary.clone()
        };
        write_json(&p, &interrupted).map_err(|e| OutputError::at(&p, e))
    }

    /// The run folder, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Appends `row` to `metrics.csv`; the summary's figures follow it.
    pub fn row(&mut self, row: &MetricsRow) -> Result<(), OutputError> {
        if let (Some(w), Some(dir)) = (self.metrics.as_mut(), &self.dir) {
            w.write(row).map_err(|e| OutputError::at(&dir.join("metrics.csv"), e))?;
        }
        self.progress(row.iter, row.bytes_sent, row.sim_time_s);
        self.summary.last = Some(row.clone());
        Ok(())
    }

    /// Progress between evaluation points: iterations done, bytes sent, simulated time (what the
    /// summary reports if the run stops before the next row).
    pub fn progress(&mut self, iterations: u64, bytes_sent: u64, sim_time_s: f64) {
        self.summary.iterations = iterations;
        self.summary.bytes_sent = bytes_sent;
        self.summary.sim_time_s = sim_time_s;
    }

    /// The summary so far.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Ends the run: `outcome` is `Err(reason)` for a run that stopped early. Writes
    /// `summary.json` and returns the summary.
    pub fn finish(mut self, outcome: Result<(), String>, wall_time_s: f64) -> Result<Summary, OutputError> {
        self.summary.wall_time_s = wall_time_s;
        match outcome {
            Ok(()) => self.summary.resume = None,
            Err(e) => {
                self.summary.status = RunStatus::Failed;
                self.summary.error = Some(e);
            }
        }
        if let Some(dir) = &self.dir {
            let p = dir.join("summary.json");
            write_json(&p, &self.summary).map_err(|e| OutputError::at(&p, e))?;
        }
        Ok(self.summary)
    }
}
