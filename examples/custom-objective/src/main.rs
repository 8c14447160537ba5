//! Trains the Huber objective of this crate with dprox: in the simulator, and with `--cluster` also
//! as a real gRPC cluster in this process, checking that both give the same metrics.
//!
//! ```text
//! dprox-example-custom-objective [CONFIG] [--cluster] [--out DIR] [--delta D]
//! ```
//!
//! CONFIG defaults to this crate's `huber.toml`, DIR to `runs/custom-objective` (the simulator
//! writes to `DIR/sim`, the cluster to `DIR/cluster`), D (the Huber threshold) to 1.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use dprox_config::Prepared;
use dprox_eval::Summary;
use dprox_example_custom_objective::Huber;
use dprox_example_custom_objective::cluster::{COMPARED_COLUMNS, compare_metrics, run_in_process};

struct Args {
    config: PathBuf,
    out: PathBuf,
    delta: f64,
    cluster: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        config: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("huber.toml"),
        out: PathBuf::from("runs/custom-objective"),
        delta: 1.0,
        cluster: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--cluster" => args.cluster = true,
            "--out" => args.out = it.next().context("--out needs a folder")?.into(),
            "--delta" => {
                let d = it.next().context("--delta needs a number")?;
                args.delta = d.parse().with_context(|| format!("--delta {d}: not a number"))?;
            }
            "-h" | "--help" => {
                println!(
                    "usage: dprox-example-custom-objective [CONFIG] [--cluster] [--out DIR] [--delta D]"
                );
                std::process::exit(0);
            }
            flag if flag.starts_with('-') => bail!("unknown option {flag} (see --help)"),
            path => args.config = path.into(),
        }
    }
    Ok(args)
}

fn report(what: &str, s: &Summary, dir: &std::path::Path) {
    let last = s.last.as_ref();
    println!(
        "{what}: {} iterations, objective {:.6} consensus {:.3e} bytes {} in {:.2} s -> {}",
        s.iterations,
        last.map_or(f64::NAN, |r| r.eval.objective),
        last.map_or(f64::NAN, |r| r.eval.consensus_error),
        s.bytes_sent,
        s.wall_time_s,
        dir.display()
    );
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let run = Prepared::from_file(&args.config).with_context(|| format!("{}", args.config.display()))?;
    for w in &run.warnings {
        eprintln!("warning: {w}");
    }
    // The one line that makes dprox train this crate's objective instead of a built-in model.
    let run = Arc::new(run.with_objective(Huber::factory(args.delta)?)?);
    println!(
        "{}: {} on {} nodes, Huber regression (delta = {}), {} parameters",
        run.name,
        run.config.run.algorithm,
        run.n(),
        args.delta,
        run.dim
    );

    let sim_dir = args.out.join("sim");
    let simulated = dprox_sim::simulate(&run, Some(&sim_dir), |_| {})?;
    report("simulator", &simulated, &sim_dir);

    if args.cluster {
        let cluster_dir = args.out.join("cluster");
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let summary = runtime.block_on(run_in_process(run.clone(), Some(cluster_dir.clone())))?;
        report("cluster", &summary, &cluster_dir);
        let differences = compare_metrics(&sim_dir.join("metrics.csv"), &cluster_dir.join("metrics.csv"))?;
        if !differences.is_empty() {
            bail!("the cluster's metrics differ from the simulator's:\n  {}", differences.join("\n  "));
        }
        println!("the cluster's metrics.csv equals the simulator's on {}", COMPARED_COLUMNS.join(", "));
    }
    Ok(())
}
