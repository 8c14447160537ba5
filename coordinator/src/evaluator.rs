//! The evaluator, owner of the run's record: complete evaluation iterations arrive in order of
//! iteration; each becomes a metrics row (phi(xbar), consensus, accuracy on the CPU objectives),
//! recorded in `metrics.csv`, on the status page's curve and as Prometheus gauges. Membership
//! events and checkpoints come through the same queue, so they are recorded in order with the
//! rows.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use dprox_eval::{Evaluator, MetricsRow, OutputError, Recorder, checkpoint};
use dprox_objective::Objective;
use dprox_prepare::{Part, Placement, PrepareError, Prepared};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::shared::{Complete, CoordinatorCheckpoint, Job, Shared};
use crate::state::State;
use crate::status::CurvePoint;

/// The objectives phi(xbar) is evaluated with: every node's and the test set's, on the CPU
/// whatever the nodes' devices.
pub(crate) struct Objectives {
    nodes: Vec<Box<dyn Objective>>,
    test: Option<Box<dyn Objective>>,
}

impl Objectives {
    /// Builds them (blocking work: it may load every node's data onto the CPU objectives).
    pub(crate) async fn build(run: &Arc<Prepared>) -> Result<Objectives, PrepareError> {
        let run = run.clone();
        tokio::task::spawn_blocking(move || {
            let nodes = (0..run.n())
                .map(|i| run.objective(Part::Node(i), Placement::Cpu))
                .collect::<Result<_, _>>()?;
            Ok(Objectives { nodes, test: run.test_objective(Placement::Cpu)? })
        })
        .await
        .expect("building the objectives does not panic")
    }
}

/// A thread pool on every core of this machine, if one can be started.
fn every_core() -> Option<rayon::ThreadPool> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores > rayon::current_num_threads())
        .then(|| rayon::ThreadPoolBuilder::new().num_threads(cores).build().ok())?
}

/// The evaluator's working set.
struct Work {
    objectives: Objectives,
    evaluator: Evaluator,
    recorder: Recorder,
    state: Arc<Mutex<State>>,
    shared: Weak<Shared>,
    /// The run's last iteration: its row is evaluated once every node is done.
    last: u64,
}

/// Starts the evaluator; it returns the recorder once the channel closes (the run is over).
pub(crate) fn spawn(
    shared: &Arc<Shared>,
    objectives: Objectives,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    recorder: Recorder,
) -> JoinHandle<Result<Recorder, OutputError>> {
    // The task holds no strong reference to `shared` (which owns the sender of its channel), so
    // the channel closes when the run is over.
    let run = shared.run.clone();
    let evaluator = Evaluator::new(run.dim(), run.config().regularizer, run.config().optimizer.lr);
    let last = run.config().run.iterations;
    let (state, shared) = (shared.state.clone(), Arc::downgrade(shared));
    let mut w = Work { objectives, evaluator, recorder, state, shared, last };
    tokio::task::spawn_blocking(move || {
        while let Some(job) = jobs.blocking_recv() {
            match job {
                Job::Row(c) => w.row(c)?,
                Job::Event(e, live) => w.recorder.event(e, live),
                Job::Checkpoint(c) => w.checkpoint(*c)?,
            }
        }
        Ok(w.recorder)
    })
}

impl Work {
    /// A metrics row of the complete iteration `c`.
    fn row(&mut self, c: Complete) -> Result<(), OutputError> {
        let xs: Vec<&[f32]> = c.reports.iter().map(|r| r.x.as_slice()).collect();
        let (evaluator, objectives) = (&mut self.evaluator, &mut self.objectives);
        let mut evaluate = || evaluator.evaluate(&xs, &mut objectives.nodes, objectives.test.as_mut());
        // During the run the evaluator keeps to its share of the cores (the nodes have the
        // rest); the last row comes once every node is done, so it takes them all (the same
        // bits on any number of threads).
        let eval = match (c.iteration >= self.last).then(every_core).flatten() {
            Some(pool) => pool.install(evaluate),
            None => evaluate(),
        };
        let start = self.shared.upgrade().and_then(|s| *s.start.lock().expect("not poisoned"));
        let row = MetricsRow {
            iter: c.iteration,
            eval,
            bytes_sent: c.reports.iter().map(|r| r.sent.payload_bytes).sum::<u64>() + c.retired.0,
            sim_time_s: c.reports.iter().map(|r| r.elapsed).fold(0.0, f64::max),
            wall_time_s: start.map_or(0.0, |s| s.elapsed().as_secs_f64()),
        };
        self.recorder.row(&row)?;
        if let Some(s) = self.shared.upgrade() {
            *s.last_row.lock().expect("not poisoned") = row.to_csv();
            *s.xbar.lock().expect("not poisoned") = self.evaluator.xbar().to_vec();
        }
        publish(&row, self.evaluator.consensus_contributions());
        self.state.lock().expect("not poisoned").record_point(CurvePoint {
            iteration: row.iter,
            time_s: row.wall_time_s,
            objective: row.eval.objective,
            consensus_error: row.eval.consensus_error,
            test_accuracy: row.eval.test_accuracy,
            bytes_sent: row.bytes_sent,
        });
        Ok(())
    }

    /// The coordinator's checkpoint: its membership and the record so far; the summary on disk
    /// then says where to resume from.
    fn checkpoint(&mut self, mut c: CoordinatorCheckpoint) -> Result<(), OutputError> {
        let Some(dir) = self.recorder.dir().map(PathBuf::from) else { return Ok(()) };
        let t = c.iteration;
        c.summary = serde_json::to_string(self.recorder.summary()).expect("a summary serialises");
        let folder = dir.join("checkpoints").join("coordinator");
        if let Err(e) = checkpoint::write(&folder.join(format!("iter-{t:012}.ckpt")), &c) {
            tracing::error!("the coordinator's checkpoint of iteration {t} could not be written: {e}");
            return Ok(());
        }
        for old in checkpoints(&folder).into_iter().rev().skip(2) {
            let _ = std::fs::remove_file(old.1);
        }
        if let Some(s) = self.shared.upgrade() {
            s.checkpoint_written.store(t, std::sync::atomic::Ordering::Release);
        }
        let command =
            format!("dprox launch {} --out {} --resume", dir.join("config.toml").display(), dir.display());
        let wall = self
            .shared
            .upgrade()
            .and_then(|s| *s.start.lock().expect("not poisoned"))
            .map_or(0.0, |s| s.elapsed().as_secs_f64());
        tracing::info!(iteration = t, "checkpoint complete");
        self.recorder.checkpointed(t, command, wall)
    }
}

/// The coordinator's checkpoints in `folder`, ascending by iteration.
pub(crate) fn checkpoints(folder: &std::path::Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let t = name.strip_prefix("iter-")?.strip_suffix(".ckpt")?.parse().ok()?;
            Some((t, e.path()))
        })
        .collect();
    v.sort();
    v
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
