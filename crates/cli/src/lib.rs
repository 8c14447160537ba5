//! `dprox`: the command-line tool, as a library, so that a program embedding dprox with its own
//! objectives gets every command in one call ([`main_with`]).
//!
//! - `dprox sim CONFIG.toml --out DIR`: a simulated cluster, with a progress bar and a summary;
//!   writes `DIR/metrics.csv`, `DIR/summary.json` and the config as it ran (`DIR/config.toml`).
//! - `dprox launch CONFIG.toml --out DIR`: the same run as a cluster of processes on this machine.
//! - `dprox check-config CONFIG.toml`: validates a config, loads its data and prints the topology
//!   facts (nodes, edges, degrees, spectral gap), the partition and the model size.
//! - `dprox plot DIR... --out FILE.png|.svg`: the runs' metrics side by side.
//! - `dprox eval MODEL CONFIG`: a saved model's objective and test accuracy on a config's data.
//! - `dprox certs DIR --config CONFIG`: the TLS certificates of a cluster.
//! - `dprox deploy compose|kubernetes|slurm CONFIG --out DIR`: a cluster on real infrastructure.
//! - `dprox status URL [--watch]`: a running coordinator's status as a table.
//! - `dprox node` and `dprox coordinator`: what `launch` starts (also for clusters by hand).
//!
//! # Layout
//! - [`main_with`]: parse the command line and run a command; `sim`, `check`, `launch`,
//!   `status`, `plot`: one module per command; `run_args`: the config and overrides that `sim`
//!   and `launch` share; `report`: the summary printed at the end; `metrics_server`: the
//!   simulator's Prometheus endpoint.
//!
//! ```no_run
//! // A program with its own objective (see examples/custom-objective):
//! // `[model] kind = "custom", name = "huber"` selects it in any config.
//! # fn huber(_: dprox_prepare::Part, _: std::sync::Arc<dprox_data::Dataset>, _: dprox_objective::Shape)
//! #     -> Box<dyn dprox_objective::Objective> { unimplemented!() }
//! fn main() {
//!     dprox_cli::main_with(dprox_prepare::Objectives::new().with("huber", huber));
//! }
//! ```

mod certs;
mod check;
mod deploy;
mod eval;
mod launch;
mod metrics_server;
mod plot;
mod report;
mod run_args;
mod sim;
mod status;

use std::io::IsTerminal;

use clap::{Parser, Subcommand};
use dprox_prepare::Objectives;

pub use launch::exit_with_launcher;

#[derive(Parser)]
#[command(version, about = "Decentralized proximal stochastic gradient methods")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate the cluster a config describes, on a virtual clock.
    Sim(sim::Args),
    /// Validate a config and print the facts of its topology, data and model.
    CheckConfig(check::Args),
    /// Start the coordinator and every node as separate processes on this machine (loopback),
    /// and gather the metrics into DIR like `sim` does.
    Launch(launch::Args),
    /// Make a cluster's TLS certificates: a CA, and a key and certificate per node, for the
    /// coordinator and for an operator.
    Certs(certs::Args),
    /// Write the files that run a config's cluster on Docker Compose, Kubernetes or Slurm.
    #[command(subcommand)]
    Deploy(deploy::Target),
    /// Evaluate a saved model (a run's model.safetensors) on a config's data: objective and
    /// test accuracy.
    Eval(eval::Args),
    /// Show a running coordinator's status (served with `--http-addr`) as a table.
    Status(status::Args),
    /// Plot the metrics of run folders side by side into one PNG or SVG figure.
    Plot(plot::Args),
    /// Run one node (what `launch` starts; also `dprox-node`).
    Node(dprox_node::cli::Args),
    /// Run the coordinator (what `launch` starts; also `dprox-coordinator`).
    Coordinator(dprox_coordinator::cli::Args),
}

/// The stock `dprox` command: [`main_with`] without custom objectives.
pub fn main() -> ! {
    main_with(Objectives::new())
}

/// Runs the `dprox` command line of a program whose custom objectives are `objectives`: every
/// command (`sim`, `launch`, `node`, `coordinator`, `check-config`, ...) builds
/// `[model] kind = "custom", name = "NAME"` from the factory registered as NAME. `launch` starts
/// this same program for its nodes and coordinator, so they have the objectives too. Exits the
/// process: 0 on success, 1 with the error on stderr.
pub fn main_with(objectives: Objectives) -> ! {
    let cli = Cli::parse_from(std::env::args_os());
    if matches!(cli.command, Command::Sim(_)) && std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        // The simulator computes the nodes' gradients in parallel (one rayon thread per core);
        // GEMM threads inside each gradient would fight them (2 cores, LeNet: 3.44 s against
        // 2.56 s with one GEMM thread). Matrix products split rows, not sums, so the numbers do
        // not depend on it.
        // SAFETY: no other thread exists yet (tracing and the runtimes start below).
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("MATMUL_NUM_THREADS", "1")
        };
    }
    // `node` and `coordinator` set up logging themselves (they take --log-format).
    if !matches!(cli.command, Command::Node(_) | Command::Coordinator(_)) {
        dprox_telemetry::init_tracing(dprox_telemetry::LogFormat::Text);
    } else {
        exit_with_launcher();
    }
    let result = match cli.command {
        Command::Sim(args) => sim::run(&args, &objectives),
        Command::CheckConfig(args) => check::run(&args, &objectives),
        Command::Launch(args) => launch::run(&args, &objectives),
        Command::Eval(args) => eval::run(&args, &objectives),
        Command::Certs(args) => certs::run(&args),
        Command::Deploy(target) => deploy::run(&target),
        Command::Status(args) => status::run(args),
        Command::Plot(args) => plot::run(args),
        Command::Node(args) => dprox_node::cli::main(args, &objectives),
        Command::Coordinator(args) => dprox_coordinator::cli::main(args, &objectives),
    };
    if let Err(e) = result {
        eprintln!("error: {}", describe(&e));
        std::process::exit(1);
    }
    std::process::exit(0)
}

/// An error and its causes, each said once: a layer whose message already contains its cause's
/// (`data: file.csv: not found` over `file.csv: not found`) is not followed by it again.
pub fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// A progress bar on stderr, hidden when quiet or when stderr is not a terminal.
pub(crate) fn progress_bar(total: u64, quiet: bool) -> indicatif::ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} it  {per_sec}  eta {eta}  {msg}",
        )
        .expect("static template"),
    );
    bar
}

/// The name a value has in the config file (`ring`, `softmax`, ...).
pub(crate) fn serde_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn describe_says_each_cause_once() {
        let e = anyhow::anyhow!("file.csv: not found")
            .context("data: file.csv: not found")
            .context("preparing run.toml");
        assert_eq!(super::describe(&e), "preparing run.toml: data: file.csv: not found");
    }
}
