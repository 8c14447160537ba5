//! A whole simulated run: iterate, evaluate on schedule, record `metrics.csv` and `summary.json`.

use std::path::Path;
use std::time::Instant;

use dprox_eval::{MetricsRow, Recorder, Summary};
use dprox_prepare::Prepared;

use crate::simulation::{SimError, Simulation};

/// What the observer of a run is told.
#[derive(Debug)]
pub enum Event<'a> {
    /// An iteration finished.
    Iteration(u64),
    /// A metrics row was computed (iteration 0, every `eval_every`, and the last).
    Row(&'a MetricsRow),
}

/// Runs `run` to completion. With `out` set, writes `metrics.csv` (row by row, flushed) and
/// `summary.json` there; a run that fails midway still leaves every row it computed and a summary
/// whose `status` is `failed` with the reason.
pub fn simulate(
    run: &Prepared,
    out: Option<&Path>,
    mut observe: impl FnMut(Event<'_>),
) -> Result<Summary, SimError> {
    let start = Instant::now();
    let mut recorder = Recorder::create(out, run.header())?;
    let result = iterate(run, &mut recorder, start, &mut observe);
    let summary = recorder
        .finish(result.as_ref().map(|_| ()).map_err(ToString::to_string), start.elapsed().as_secs_f64())?;
    result.map(|_| summary)
}

/// The iterations, with a row at 0, every `eval_every` and the last.
fn iterate(
    run: &Prepared,
    recorder: &mut Recorder,
    start: Instant,
    observe: &mut impl FnMut(Event<'_>),
) -> Result<(), SimError> {
    let mut sim = Simulation::new(run)?;
    let total = run.config().run.iterations;
    let every = run.config().run.eval_every;
    let record = |sim: &mut Simulation, recorder: &mut Recorder, observe: &mut dyn FnMut(Event<'_>)| {
        let row = MetricsRow {
            iter: sim.iteration(),
            eval: sim.evaluate(),
            bytes_sent: sim.bytes_sent(),
            sim_time_s: sim.sim_time(),
            wall_time_s: start.elapsed().as_secs_f64(),
        };
        recorder.row(&row)?;
        observe(Event::Row(&row));
        Ok::<(), SimError>(())
    };
    record(&mut sim, recorder, observe)?;
    while sim.iteration() < total {
        let stepped = sim.step();
        recorder.progress(sim.iteration(), sim.bytes_sent(), sim.sim_time());
        stepped?;
        observe(Event::Iteration(sim.iteration()));
        if sim.iteration() % every == 0 || sim.iteration() == total {
            record(&mut sim, recorder, observe)?;
        }
    }
    Ok(())
}
