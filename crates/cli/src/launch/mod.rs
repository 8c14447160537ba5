//! `dprox launch`: the coordinator and every node as separate processes on this machine.
//!
//! - `procs`: starting the processes, with their log files; they die with the launcher.
//! - `cluster`: the run while it goes: progress, the fault schedule enacted on the processes
//!   (SIGKILL, SIGSTOP/SIGCONT, restarts with `--join`), nodes that die, the coordinator's end.

mod cluster;
mod procs;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use dprox_eval::Summary;
use dprox_prepare::Objectives;

use crate::run_args::RunArgs;
pub use procs::exit_with_launcher;

/// SIGINT (Ctrl-C) and SIGTERM, caught from before the first process starts: a signal that
/// arrives while the cluster is starting is acted on, not fatal to the launcher alone.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers; needs a runtime context.
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }
}

/// `dprox launch`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    run: RunArgs,
    /// Output folder: metrics.csv, summary.json, the config as it ran, nodes/, logs/.
    #[arg(long)]
    pub out: PathBuf,
    /// Print nothing but the final summary line (and the status page's address, if any).
    #[arg(long, short)]
    pub quiet: bool,
    /// Resume the run in `--out` from its last complete checkpoint (`[run] checkpoint_every`):
    /// the coordinator and the nodes taking part then restart from it, and the result equals
    /// the uninterrupted run's.
    #[arg(long)]
    pub resume: bool,
    /// Plaintext gRPC between the processes (logged as a warning). By default the launcher makes
    /// the run's certificates in `OUT/tls/` and every link is mutual TLS.
    #[arg(long)]
    pub insecure: bool,
    /// Serve the coordinator's live status page on this address (port 0 picks one; the URL
    /// is printed on stderr). Off by default.
    #[arg(long, value_name = "HOST:PORT")]
    pub http_addr: Option<String>,
    /// Seconds the status page stays up after the run ends, so that viewers see the final
    /// state (the coordinator's default is 2).
    #[arg(long, value_name = "SECONDS", requires = "http_addr", value_parser = dprox_coordinator::cli::parse_seconds)]
    pub http_linger_s: Option<Duration>,
    /// Serve Prometheus metrics: the coordinator on 127.0.0.1:PORT, node i on PORT + 1 + i
    /// (the targets of deploy/prometheus/prometheus.yml for PORT = 9400). Off by default.
    #[arg(long, value_name = "PORT")]
    pub metrics_port: Option<u16>,
    /// Threads of each node process (its runtime and its gradient's GEMM). Default: its share
    /// of this machine's cores, at least 1 (2 cores and 5 nodes: 1 each), so that the local
    /// processes do not fight over them.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads_per_process: Option<u16>,
}

/// Prepares the run (a bad config fails here, with its own message, before anything is created
/// or started), writes the config as it runs into the run folder (or, resuming, checks it is the
/// same), starts the cluster on loopback, shows progress, waits for the end and prints the
/// summary line.
pub fn run(args: &Args, objectives: &Objectives) -> anyhow::Result<()> {
    let run = args.run.prepare(objectives)?;
    let n = run.n();
    if let Some(p) = args.metrics_port {
        anyhow::ensure!(
            usize::from(p) + n <= 65535,
            "--metrics-port {p}: the {n} nodes need ports {} to {}, past 65535",
            usize::from(p) + 1,
            usize::from(p) + n
        );
    }
    let out = &args.out;
    // Every process reads the config as it runs (overrides applied, data paths resolved).
    let config = out.join("config.toml");
    let resume = if args.resume {
        crate::run_args::check_resume(&run, out)?;
        Some(dprox_coordinator::resume_point(out)?)
    } else {
        std::fs::create_dir_all(out.join("logs"))
            .with_context(|| format!("creating {}", out.join("logs").display()))?;
        run.write_config(&config).with_context(|| format!("writing {}", config.display()))?;
        None
    };
    let security = security(args, n)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let mut signals = {
        let _context = rt.enter();
        Signals::install()?
    };
    let result = (|| {
        // Stops whatever still runs when dropped.
        let mut cluster =
            cluster::Cluster::start(args, &config, n, &security, run.schedule(), resume.as_ref())?;
        if !args.quiet {
            let (how, started) = match &resume {
                Some(r) => {
                    (format!("resumed at iteration {} with", r.iteration), r.live.len() + r.rejoining.len())
                }
                None => ("launched".into(), n),
            };
            eprintln!(
                "{how} coordinator at {} and {started} nodes; logs in {}",
                cluster.addr,
                out.join("logs").display()
            );
        }
        let bar = crate::progress_bar(run.config().run.iterations, args.quiet);
        if let Some(r) = &resume {
            bar.set_position(r.iteration);
        }
        let result = rt.block_on(cluster.watch(bar.clone(), &mut signals));
        bar.finish_and_clear();
        result
    })();
    result.with_context(|| format!("the cluster run failed; what it computed is in {}", out.display()))?;
    let summary = Summary::read(&out.join("summary.json")).context("the coordinator wrote no summary")?;
    println!("{} in {:.2} s", crate::report::summary_line(&summary, true), summary.wall_time_s);
    Ok(())
}

/// The run's security: mutual TLS with certificates made in `OUT/tls/` (kept on resume), or
/// plaintext with a random secret for the registrations (`--insecure`).
fn security(args: &Args, n: usize) -> anyhow::Result<procs::Secured> {
    if args.insecure {
        tracing::warn!("--insecure: the cluster's gRPC runs in plaintext on loopback");
        let mut secret = [0u8; 16];
        getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("drawing the run's secret: {e}"))?;
        let secret = secret.iter().map(|b| format!("{b:02x}")).collect();
        return Ok(procs::Secured::Insecure { secret });
    }
    let dir = args.out.join("tls");
    dprox_net::certs::make(&dir, n)
        .with_context(|| format!("making the run's certificates in {}", dir.display()))?;
    let operator = dprox_net::Security::load(&dir, dprox_net::Peer::Operator)?;
    Ok(procs::Secured::Tls { dir, operator })
}
