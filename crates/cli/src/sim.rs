//! `dprox sim`: the run a config describes, simulated on a virtual clock in this process.

use std::path::PathBuf;

use anyhow::Context;
use dprox_prepare::Objectives;
use dprox_sim::Event;

use crate::metrics_server;
use crate::run_args::RunArgs;

/// `dprox sim`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    run: RunArgs,
    /// Output folder: metrics.csv, summary.json and the config as it ran.
    #[arg(long)]
    out: PathBuf,
    /// Print nothing but the final summary line.
    #[arg(long, short)]
    quiet: bool,
    /// Continue the run in `--out` from its last complete checkpoint (`[run] checkpoint_every`):
    /// the rows computed up to it are kept, and the result equals the uninterrupted run's.
    #[arg(long)]
    resume: bool,
    /// Serve Prometheus metrics (`GET /metrics`) on this address while the run lasts (port 0
    /// picks one; the URL is printed on stderr). Off by default.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,
}

/// Prepares the run, simulates it with a progress bar, and prints the summary.
pub fn run(args: &Args, objectives: &Objectives) -> anyhow::Result<()> {
    let run = args.run.prepare(objectives)?;
    let out = &args.out;
    let server = args.metrics_addr.as_deref().map(metrics_server::MetricsServer::start).transpose()?;
    if let Some(s) = &server {
        eprintln!("metrics endpoint: http://{}/metrics", s.addr);
    }
    let gauges = server.as_ref().map(|_| metrics_server::SimGauges::new(run.n()));
    for w in run.warnings() {
        eprintln!("warning: {w}");
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // The config as it runs (overrides applied, data paths resolved): `dprox sim OUT/config.toml`
    // repeats the run from anywhere. (Resuming from OUT/config.toml itself leaves it as it is.)
    if args.resume {
        crate::run_args::check_resume(&run, out)?;
    } else {
        run.write_config(&out.join("config.toml"))
            .with_context(|| format!("writing the config into {}", out.display()))?;
    }
    let total = run.config().run.iterations;
    let bar = crate::progress_bar(total, args.quiet);
    if !args.quiet {
        eprintln!(
            "simulating {}: {} on {} ({} nodes, spectral gap {:.3e}), {} parameters, {} iterations",
            run.name(),
            run.config().run.algorithm,
            crate::serde_name(&run.config().topology.kind),
            run.n(),
            run.facts().spectral_gap,
            run.dim(),
            total
        );
    }
    let result = dprox_sim::simulate_with(&run, Some(out), args.resume, |e| match e {
        Event::Iteration(t) => {
            bar.set_position(t);
            if let Some(g) = &gauges {
                g.iteration(t);
            }
        }
        Event::Row(r) => {
            if let Some(g) = &gauges {
                g.row(r);
            }
            bar.set_message(crate::report::progress_message(r));
        }
    });
    bar.finish_and_clear();
    let summary =
        result.with_context(|| format!("the run stopped; what it computed is in {}", out.display()))?;
    crate::report::print_summary(&summary, out, args.quiet);
    Ok(())
}
