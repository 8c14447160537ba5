//! `dprox`: the command-line tool. Thin: parse arguments, load the config, call the libraries.
//!
//! - `dprox sim CONFIG.toml --out DIR`: a simulated cluster, with a progress bar and a summary;
//!   writes `DIR/metrics.csv`, `DIR/summary.json` and a copy of the config.
//! - `dprox check-config CONFIG.toml`: validates a config, loads its data and prints the topology
//!   facts (nodes, edges, degrees, spectral gap), the partition and the model size.
//! - `dprox plot DIR... --out FILE.png|.svg`: the runs' metrics side by side (see [`plot`]).
//! - `dprox status URL [--watch]`: a running coordinator's status as a table (see [`status`]).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use dprox_config::Prepared;
use dprox_sim::Event;

// mimalloc keeps large message buffers mapped between messages; glibc's malloc hands them back
// to the kernel and page-faults them in again (measured: 2x on 4-40 MB gossip messages).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod launch;
mod metrics_server;
mod plot;
mod report;
mod status;

#[derive(Parser)]
#[command(name = "dprox", version, about = "Decentralized proximal stochastic gradient methods")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate the cluster a config describes, on a virtual clock.
    Sim {
        /// The run config (TOML).
        config: PathBuf,
        /// Output folder for metrics.csv and summary.json.
        #[arg(long)]
        out: PathBuf,
        /// Override run.algorithm (dproxsgt, cdproxsgt, dpsgd, choco, allreduce).
        #[arg(long)]
        algorithm: Option<String>,
        /// Override run.iterations.
        #[arg(long)]
        iterations: Option<u64>,
        /// Print nothing but the final summary line.
        #[arg(long, short)]
        quiet: bool,
        /// Serve Prometheus metrics (`GET /metrics`) on this address while the run lasts (port 0
        /// picks one; the URL is printed on stderr). Off by default.
        #[arg(long, value_name = "HOST:PORT")]
        metrics_addr: Option<String>,
    },
    /// Validate a config and print the facts of its topology, data and model.
    CheckConfig {
        /// The run config (TOML).
        config: PathBuf,
    },
    /// Start the coordinator and every node as separate processes on this machine (loopback),
    /// and gather the metrics into DIR like `sim` does.
    Launch(launch::Args),
    /// Show a running coordinator's status (served with `--http-addr`) as a table.
    Status(status::Args),
    /// Plot the metrics of run folders side by side into one PNG or SVG figure.
    Plot(plot::Args),
    /// Run one node (what `launch` starts; also `dprox-node`).
    Node(dprox_node::cli::Args),
    /// Run the coordinator (what `launch` starts; also `dprox-coordinator`).
    Coordinator(dprox_coordinator::cli::Args),
}

fn main() {
    let cli = Cli::parse();
    // `node` and `coordinator` set up logging themselves (they take --log-format).
    if !matches!(cli.command, Command::Node(_) | Command::Coordinator(_)) {
        dprox_telemetry::init_tracing(dprox_telemetry::LogFormat::Text);
    } else {
        launch::exit_with_launcher();
    }
    let result = match cli.command {
        Command::Sim { config, out, algorithm, iterations, quiet, metrics_addr } => {
            sim(&config, &out, algorithm.as_deref(), iterations, quiet, metrics_addr.as_deref())
        }
        Command::CheckConfig { config } => check(&config),
        Command::Launch(args) => launch_and_report(&args),
        Command::Status(args) => status::run(args),
        Command::Plot(args) => plot::run(args),
        Command::Node(args) => dprox_node::cli::main(args),
        Command::Coordinator(args) => dprox_coordinator::cli::main(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn prepare(path: &Path, algorithm: Option<&str>, iterations: Option<u64>) -> anyhow::Result<Prepared> {
    let mut config = dprox_config::load(path)?;
    if let Some(a) = algorithm {
        config.run.algorithm = serde_json::from_value(serde_json::Value::String(a.into())).map_err(|_| {
            anyhow::anyhow!(
                "--algorithm: unknown algorithm `{a}` (dproxsgt, cdproxsgt, dpsgd, choco, allreduce)"
            )
        })?;
    }
    if let Some(t) = iterations {
        config.run.iterations = t;
    }
    let name = config.run.name.clone().unwrap_or_else(|| {
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        match algorithm {
            Some(a) => format!("{stem}-{a}"),
            None => stem,
        }
    });
    Ok(Prepared::new(config, path.parent().unwrap_or(Path::new(".")), name)?)
}

fn sim(
    path: &Path,
    out: &Path,
    algorithm: Option<&str>,
    iterations: Option<u64>,
    quiet: bool,
    metrics_addr: Option<&str>,
) -> anyhow::Result<()> {
    let run = prepare(path, algorithm, iterations)?;
    let server = metrics_addr.map(metrics_server::MetricsServer::start).transpose()?;
    if let Some(s) = &server {
        eprintln!("metrics endpoint: http://{}/metrics", s.addr);
    }
    let gauges = server.as_ref().map(|_| metrics_server::SimGauges::new(run.n()));
    for w in &run.warnings {
        eprintln!("warning: {w}");
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // Keep the config next to its results (unless it already is that file: copying a file onto
    // itself would truncate it). Command-line overrides are recorded in summary.json.
    let copy = out.join("config.toml");
    let same = matches!((path.canonicalize(), copy.canonicalize()), (Ok(a), Ok(b)) if a == b);
    if !same {
        std::fs::copy(path, &copy).with_context(|| format!("copying the config into {}", out.display()))?;
    }
    let total = run.config.run.iterations;
    let bar = progress_bar(total, quiet);
    if !quiet {
        eprintln!(
            "simulating {}: {} on {} ({} nodes, spectral gap {:.4}), {} parameters, {} iterations",
            run.name,
            run.config.run.algorithm,
            topology_name(&run),
            run.n(),
            run.facts.spectral_gap,
            run.dim,
            total
        );
    }
    let result = dprox_sim::simulate(&run, Some(out), |e| match e {
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
            bar.set_message(format!(
                "objective {:.5}  consensus {:.2e}{}",
                r.eval.objective,
                r.eval.consensus_error,
                r.eval.test_accuracy.map(|a| format!("  test acc {:.2}%", 100.0 * a)).unwrap_or_default()
            ))
        }
    });
    bar.finish_and_clear();
    let summary =
        result.with_context(|| format!("the run stopped; what it computed is in {}", out.display()))?;
    report::print_summary(&summary, out, quiet);
    Ok(())
}

/// The name a value has in the config file (`ring`, `softmax`, ...).
fn serde_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
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

fn launch_and_report(args: &launch::Args) -> anyhow::Result<()> {
    let out = &args.out;
    let result = launch::launch(args);
    let summary: Option<serde_json::Value> =
        std::fs::read_to_string(out.join("summary.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
    result.with_context(|| format!("the cluster run failed; what it computed is in {}", out.display()))?;
    let s = summary.context("the coordinator wrote no summary.json")?;
    let last = &s["last"];
    println!(
        "{} {}: {} nodes, {} iterations, objective {:.6} consensus {:.3e} test_accuracy {} bytes {} in {:.2} s",
        s["name"].as_str().unwrap_or(""),
        s["algorithm"].as_str().unwrap_or(""),
        s["nodes"],
        s["iterations"],
        last["objective"].as_f64().unwrap_or(f64::NAN),
        last["consensus_error"].as_f64().unwrap_or(f64::NAN),
        last["test_accuracy"].as_f64().map(|a| format!("{a:.4}")).unwrap_or_else(|| "-".into()),
        s["bytes_sent"],
        s["wall_time_s"].as_f64().unwrap_or(0.0),
    );
    Ok(())
}

fn topology_name(run: &Prepared) -> String {
    serde_name(&run.config.topology.kind)
}

fn check(path: &Path) -> anyhow::Result<()> {
    let run = prepare(path, None, None)?;
    println!("{}: valid", path.display());
    for w in &run.warnings {
        println!("warning: {w}");
    }
    println!("\ntopology: {} ({} weights)", topology_name(&run), weights_name(&run));
    println!("{}", run.facts);
    println!(
        "degrees: {}",
        (0..run.n()).map(|i| run.graph.degree(i).to_string()).collect::<Vec<_>>().join(" ")
    );
    println!("\nmodel: {}, {} parameters", serde_name(&run.config.model.kind), run.dim);
    println!(
        "data: {} features, {} classes, {} training samples, {} test samples",
        run.shape.features,
        run.shape.classes.map(|c| c.to_string()).unwrap_or_else(|| "no".into()),
        run.node_data.iter().map(|d| d.len()).sum::<usize>(),
        run.test.as_ref().map_or(0, |t| t.len())
    );
    for (i, s) in run.node_stats().iter().enumerate() {
        let classes: Vec<String> = s
            .class_counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(k, c)| format!("{k}:{c}"))
            .collect();
        println!(
            "  node {i}: {} samples{}  speed {}",
            s.samples,
            if classes.is_empty() { String::new() } else { format!("; classes {}", classes.join(" ")) },
            run.speed(i)
        );
    }
    Ok(())
}

fn weights_name(run: &Prepared) -> String {
    serde_name(&run.config.topology.weights)
}
