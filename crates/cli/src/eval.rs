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
    /// Also write the config's test split to this file (safetensors: `features`, samples x
    /// features, as the model sees them; `labels`, one class index per sample as f32), so that
    /// another tool (NumPy, PyTorch) can check the accuracy on exactly the same samples.
    #[arg(long, value_name = "FILE")]
    pub write_test: Option<PathBuf>,
}

/// The most values `--write-test` writes (dense), 1 GB of f32.
const MAX_TEST_VALUES: usize = 250_000_000;

/// Writes the test split of `run` as safetensors at `path`.
fn write_test(run: &dprox_prepare::Prepared, path: &std::path::Path) -> anyhow::Result<()> {
    use dprox_data::Features;
    let test = run.test_data().context("--write-test: the config has no test split")?;
    let (m, d) = (test.len(), test.num_features());
    anyhow::ensure!(
        m.saturating_mul(d) <= MAX_TEST_VALUES,
        "--write-test: the test split has {m} x {d} values, more than {MAX_TEST_VALUES}"
    );
    let mut values = vec![0.0f32; m * d + m];
    match &test.features {
        Features::Dense(a) => values[..m * d].iter_mut().zip(a.iter()).for_each(|(v, &a)| *v = a),
        Features::Sparse(s) => {
            for r in 0..m {
                let (idx, val) = s.row(r);
                for (&j, &v) in idx.iter().zip(val) {
                    values[r * d + j as usize] = v;
                }
            }
        }
    }
    values[m * d..].copy_from_slice(&test.targets);
    let layout = [
        dprox_objective::TensorLayout { name: "features".into(), shape: vec![m, d], offset: 0 },
        dprox_objective::TensorLayout { name: "labels".into(), shape: vec![m], offset: m * d },
    ];
    let metadata = [("run".to_string(), run.name().to_string()), ("split".to_string(), "test".to_string())];
    dprox_eval::model::save(path, &layout, &values, metadata.into_iter().collect())?;
    Ok(())
}

/// Loads the model (its tensors must be the config's model's, by name and shape), evaluates it
/// on every node's data and the test set, on the CPU, and prints the figures.
pub fn run(args: &Args, objectives: &Objectives) -> anyhow::Result<()> {
    let config = RunArgs { config: args.config.clone(), algorithm: None, iterations: None };
    let run = config.prepare(objectives)?;
    let x = run.load_model(&args.model).with_context(|| format!("loading {}", args.model.display()))?;
    let mut nodes =
        (0..run.n()).map(|i| run.objective(Part::Node(i), Placement::Cpu)).collect::<Result<Vec<_>, _>>()?;
    let mut test = run.test_objective(Placement::Cpu)?;
    let mut evaluator = Evaluator::new(run.dim(), run.config().regularizer, run.config().optimizer.lr);
    let e = evaluator.evaluate(&[&x], &mut nodes, test.as_mut());
    if let Some(path) = &args.write_test {
        write_test(&run, path).with_context(|| format!("writing {}", path.display()))?;
    }
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
