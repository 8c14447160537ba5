//! A whole simulated run: iterate, evaluate on schedule, write `metrics.csv` and `summary.json`.

use std::path::Path;
use std::time::Instant;

use dprox_config::Prepared;
use dprox_eval::{MetricsRow, MetricsWriter, Summary, write_json};

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
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| SimError::Io { path, source }
    };
    let mut writer = match out {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            let p = dir.join("metrics.csv");
            Some(MetricsWriter::create(&p).map_err(io(&p))?)
        }
        None => None,
    };
    let mut summary = Summary {
        name: run.name.clone(),
        algorithm: run.config.run.algorithm.to_string(),
        status: "completed".into(),
        error: None,
        nodes: run.n(),
        edges: run.graph.num_edges(),
        spectral_gap: run.facts.spectral_gap,
        dim: run.dim,
        iterations: 0,
        last: None,
        bytes_sent: 0,
        sim_time_s: 0.0,
        wall_time_s: 0.0,
        config: serde_json::to_value(&run.config).unwrap_or_default(),
    };
    let result = (|| -> Result<(), SimError> {
        let mut sim = Simulation::new(run)?;
        let total = run.config.run.iterations;
        let every = run.config.run.eval_every;
        let mut record = |sim: &mut Simulation| -> Result<MetricsRow, SimError> {
            let row = MetricsRow {
                iter: sim.iteration(),
                eval: sim.evaluate(),
                bytes_sent: sim.bytes_sent(),
                sim_time_s: sim.sim_time(),
                wall_time_s: start.elapsed().as_secs_f64(),
            };
            if let (Some(w), Some(dir)) = (writer.as_mut(), out) {
                w.write(&row).map_err(io(&dir.join("metrics.csv")))?;
            }
            Ok(row)
        };
        let row = record(&mut sim)?;
        observe(Event::Row(&row));
        summary.last = Some(row);
        while sim.iteration() < total {
            let stepped = sim.step();
            summary.iterations = sim.iteration();
            summary.bytes_sent = sim.bytes_sent();
            summary.sim_time_s = sim.sim_time();
            stepped?;
            observe(Event::Iteration(sim.iteration()));
            if sim.iteration() % every == 0 || sim.iteration() == total {
                let row = record(&mut sim)?;
                observe(Event::Row(&row));
                summary.last = Some(row);
            }
        }
        Ok(())
    })();
    summary.wall_time_s = start.elapsed().as_secs_f64();
    if let Err(e) = &result {
        summary.status = "failed".into();
        summary.error = Some(e.to_string());
    }
    if let Some(dir) = out {
        let p = dir.join("summary.json");
        write_json(&p, &summary).map_err(io(&p))?;
    }
    result.map(|_| summary)
}
