//! A whole simulated run: iterate, evaluate on schedule, record `metrics.csv` and `summary.json`,
//! checkpoint every `[run] checkpoint_every` iterations, and resume from the last checkpoint.

use std::path::{Path, PathBuf};
use std::time::Instant;

use dprox_core::Node;
use dprox_eval::{MetricsRow, Recorder, Summary, checkpoint};
use dprox_prepare::Prepared;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::membership::Membership;
use crate::simulation::{SimError, Simulation};

/// What the observer of a run is told.
#[derive(Debug)]
pub enum Event<'a> {
    /// An iteration finished.
    Iteration(u64),
    /// A metrics row was computed (iteration 0, every `eval_every`, and the last).
    Row(&'a MetricsRow),
}

/// A simulation at the start of an iteration: what a checkpoint holds.
#[derive(Serialize, Deserialize)]
struct SimState {
    iteration: u64,
    nodes: Vec<dprox_core::NodeState>,
    members: Membership,
    clock: Clock,
    bytes_sent: u64,
    /// The run's summary so far, as JSON (it flattens its header, which bincode cannot encode).
    summary: String,
}

/// Runs `run` to completion. With `out` set, writes `metrics.csv` (row by row, flushed) and
/// `summary.json` there; a run that fails midway still leaves every row it computed and a summary
/// whose `status` is `failed` with the reason.
pub fn simulate(
    run: &Prepared,
    out: Option<&Path>,
    observe: impl FnMut(Event<'_>),
) -> Result<Summary, SimError> {
    simulate_with(run, out, false, observe)
}

/// As [`simulate`]; with `resume`, continues the run in `out` from its last complete checkpoint
/// (`out/checkpoints/`), keeping the rows computed up to it: the result equals the uninterrupted
/// run's, bit for bit, clocks aside.
pub fn simulate_with(
    run: &Prepared,
    out: Option<&Path>,
    resume: bool,
    mut observe: impl FnMut(Event<'_>),
) -> Result<Summary, SimError> {
    let start = Instant::now();
    let (mut sim, mut recorder) = match (resume, out) {
        (true, Some(dir)) => resumed(run, dir)?,
        (true, None) => return Err(SimError::NoCheckpoint { dir: PathBuf::from("(no --out folder)") }),
        (false, _) => (Simulation::new(run)?, Recorder::create(out, run.header())?),
    };
    let mut result = iterate(&mut sim, &mut recorder, start, &mut observe);
    if let Some(dir) = out {
        // The model so far, whatever the outcome; a model that cannot be written fails a run
        // that otherwise completed.
        let saved = run.save_model(&dir.join("model.safetensors"), &sim.average());
        if let (Err(e), Ok(())) = (saved, &result) {
            result = Err(SimError::Model(e));
        }
    }
    let outcome = result.as_ref().map(|_| ()).map_err(ToString::to_string);
    let summary = recorder.finish(outcome, start.elapsed().as_secs_f64())?;
    result.map(|_| summary)
}

/// The iterations, with a row at 0 (unless resumed), every `eval_every` and the last, and a
/// checkpoint every `checkpoint_every`.
fn iterate(
    sim: &mut Simulation<'_>,
    recorder: &mut Recorder,
    start: Instant,
    observe: &mut impl FnMut(Event<'_>),
) -> Result<(), SimError> {
    let cfg = &sim.run.config().run;
    let (total, every, ckpt) = (cfg.iterations, cfg.eval_every, cfg.checkpoint_every);
    let record = |sim: &mut Simulation<'_>, recorder: &mut Recorder, observe: &mut dyn FnMut(Event<'_>)| {
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
    if sim.iteration() == 0 {
        record(sim, recorder, observe)?;
    }
    while sim.iteration() < total {
        let stepped = sim.step();
        recorder.progress(sim.iteration(), sim.bytes_sent(), sim.sim_time());
        let live = sim.members.live();
        for e in sim.members.take_events() {
            recorder.event(e, live);
        }
        stepped?;
        observe(Event::Iteration(sim.iteration()));
        let t = sim.iteration();
        if t.is_multiple_of(every) || t == total {
            record(sim, recorder, observe)?;
        }
        if ckpt > 0
            && t.is_multiple_of(ckpt)
            && t < total
            && let Some(dir) = recorder.dir().map(Path::to_path_buf)
        {
            save(sim, recorder, &dir, start)?;
        }
    }
    Ok(())
}

/// Writes the simulation's state at this iteration boundary into `dir/checkpoints/`, keeps the
/// two latest, and makes the summary on disk say where to resume from.
fn save(
    sim: &mut Simulation<'_>,
    recorder: &mut Recorder,
    dir: &Path,
    start: Instant,
) -> Result<(), SimError> {
    let t = sim.iteration();
    for (i, node) in sim.cluster.nodes().iter().enumerate() {
        if sim.members.active()[i] {
            sim.members.saved[i] = Some(node.state());
        }
    }
    let state = SimState {
        iteration: t,
        nodes: sim.cluster.nodes().iter().map(Node::state).collect(),
        members: sim.members.clone(),
        clock: sim.clock.clone(),
        bytes_sent: sim.bytes_sent,
        summary: serde_json::to_string(recorder.summary()).expect("a summary serialises"),
    };
    let folder = dir.join("checkpoints");
    checkpoint::write(&folder.join(format!("sim-{t:012}.ckpt")), &state)?;
    for old in checkpoints(&folder).into_iter().rev().skip(2) {
        let _ = std::fs::remove_file(old.1);
    }
    let command = format!("dprox sim {} --out {} --resume", dir.join("config.toml").display(), dir.display());
    recorder.checkpointed(t, command, start.elapsed().as_secs_f64())?;
    Ok(())
}

/// The simulation checkpoints in `folder`, ascending by iteration.
fn checkpoints(folder: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let t = name.strip_prefix("sim-")?.strip_suffix(".ckpt")?.parse().ok()?;
            Some((t, e.path()))
        })
        .collect();
    v.sort();
    v
}

/// The simulation and recorder of the run in `dir`, from its last intact checkpoint.
fn resumed<'a>(run: &'a Prepared, dir: &Path) -> Result<(Simulation<'a>, Recorder), SimError> {
    let folder = dir.join("checkpoints");
    let mut found = None;
    for (_, path) in checkpoints(&folder).into_iter().rev() {
        match checkpoint::read::<SimState>(&path) {
            Ok(state) => {
                found = Some(state);
                break;
            }
            Err(e) => tracing::warn!("skipping a damaged checkpoint: {e}"),
        }
    }
    let state = found.ok_or_else(|| SimError::NoCheckpoint { dir: folder.clone() })?;
    let mut sim = Simulation::new(run)?;
    for (i, st) in state.nodes.into_iter().enumerate() {
        sim.cluster.replace(i, Node::restore(run.node_config(i), st)?);
    }
    for i in 0..run.n() {
        sim.cluster.set_active(i, state.members.active()[i]);
        sim.samplers[i].seek(state.iteration);
    }
    sim.members = state.members;
    sim.clock = state.clock;
    sim.bytes_sent = state.bytes_sent;
    sim.iteration = state.iteration;
    let summary: Summary = serde_json::from_str(&state.summary).map_err(|e| SimError::NoCheckpoint {
        dir: PathBuf::from(format!("{} (its summary: {e})", folder.display())),
    })?;
    let recorder = Recorder::resume(dir, summary, state.iteration)?;
    tracing::info!("resuming {} from its checkpoint at iteration {}", run.name(), state.iteration);
    Ok((sim, recorder))
}
