//! The evaluator: complete evaluation iterations arrive in order of iteration; each becomes a
//! metrics row (phi(xbar), consensus, accuracy on the CPU objectives), recorded in `metrics.csv`,
//! on the status page's curve and as Prometheus gauges.

use std::sync::Arc;

use dprox_eval::{Evaluator, MetricsRow, OutputError, Recorder};
use dprox_objective::Objective;
use dprox_prepare::{Part, Placement, PrepareError, Prepared};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::shared::{Complete, Shared};
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

/// Starts the evaluator; it returns the recorder once the channel closes (the run is over).
pub(crate) fn spawn(
    shared: &Arc<Shared>,
    mut objectives: Objectives,
    mut complete: mpsc::UnboundedReceiver<Complete>,
    mut recorder: Recorder,
) -> JoinHandle<Result<Recorder, OutputError>> {
    // The task holds no reference to `shared` (which owns the sender of its channel), only to the
    // parts it writes, so the channel closes when the run is over.
    let (run, state) = (shared.run.clone(), shared.state.clone());
    let weak = Arc::downgrade(shared);
    tokio::task::spawn_blocking(move || {
        let mut ev = Evaluator::new(run.dim(), run.config().regularizer, run.config().optimizer.lr);
        while let Some(c) = complete.blocking_recv() {
            let xs: Vec<&[f32]> = c.reports.iter().map(|r| r.x.as_slice()).collect();
            let eval = ev.evaluate(&xs, &mut objectives.nodes, objectives.test.as_mut());
            let start = weak.upgrade().and_then(|s| *s.start.lock().expect("not poisoned"));
            let row = MetricsRow {
                iter: c.iteration,
                eval,
                bytes_sent: c.reports.iter().map(|r| r.sent.payload_bytes).sum(),
                sim_time_s: c.reports.iter().map(|r| r.elapsed).fold(0.0, f64::max),
                wall_time_s: start.map_or(0.0, |s| s.elapsed().as_secs_f64()),
            };
            recorder.row(&row)?;
            if let Some(s) = weak.upgrade() {
                *s.last_row.lock().expect("not poisoned") = row.to_csv();
            }
            publish(&row, ev.consensus_contributions());
            state.lock().expect("not poisoned").record_point(CurvePoint {
                iteration: row.iter,
                time_s: row.wall_time_s,
                objective: row.eval.objective,
                consensus_error: row.eval.consensus_error,
                test_accuracy: row.eval.test_accuracy,
                bytes_sent: row.bytes_sent,
            });
        }
        Ok(recorder)
    })
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
