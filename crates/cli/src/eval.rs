//! `dprox eval MODEL CONFIG`: the objective and test accuracy of a saved model
//! (`model.safetensors`) on a config's data, computed as a run's metrics rows compute them.

use std::path::PathBuf;

use anyhow::Context;
use dprox_eval::Evaluator;
use dprox_prepare::{Objectives, Part, Placement};

use crate::run_args::RunArgs;

/// `dprox eval`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model file (a run folder's `model.safetensors`).
    pub model: PathBuf,
    /// The config whose data and model it is evaluated on (a run folder's `config.toml`).
    pub config: PathBuf,
    /// Print the evaluation as one JSON object instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// Loads the model (its tensors must be the config's model's, by name and shape), evaluates it
/// on every node's data and the test set, on the CPU, and prints the figures.
pub fn run(args: &Args, objectives: &Objectives) -> anyhow::Result<()> {
    let config = RunArgs { config: args.config.clone(), algorithm: None, iterations: None };
    let run = config.prepare(objectives)?;
    let x = run.load_model(&args.model).with_context(|| format!("loading {}", args.model.display()))?;
    let mut nodes = (0..run.n())
        .map(|i| run.objective(Part::Node(i), Placement::Cpu))
        .collect::<Result<Vec<_>, _>>()?;
    let mut test = run.test_objective(Placement::Cpu)?;
    let mut evaluator = Evaluator::new(run.dim(), run.config().regularizer, run.config().optimizer.lr);
    let e = evaluator.evaluate(&[&x], &mut nodes, test.as_mut());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&e)?);
        return Ok(());
    }
    println!("model          {} ({} parameters)", args.model.display(), run.dim());
    println!("objective      {:.6}   (loss {:.6})", e.objective, e.loss);
    println!("grad mapping   {:.3e}", e.grad_mapping);
    match e.test_accuracy {
        Some(a) => println!("test accuracy  {:.2}%  ({a})", 100.0 * a),
        None => println!("test accuracy  - (the config has no test set, or the model is no classifier)"),
    }
    println!("density        {:.4}", e.density);
    Ok(())
}
