//! Command-line entry point shared by `dprox-node` and `dprox node`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use dprox_prepare::{Objectives, Part, Placement, Prepared};

/// Arguments of a node.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The run config / topology file (TOML), the same file the coordinator reads.
    pub config: PathBuf,
    /// This node's id (else DPROX_NODE_ID, JOB_COMPLETION_INDEX or SLURM_PROCID).
    #[arg(long)]
    pub id: Option<usize>,
    /// The coordinator's host:port (default: [cluster] coordinator in the config).
    #[arg(long)]
    pub coordinator: Option<String>,
    /// Address to serve gossip on (default: the [[nodes]] address, else 127.0.0.1:0).
    #[arg(long)]
    pub listen: Option<String>,
    /// The gossip address peers dial, registered with the coordinator (default: the [[nodes]]
    /// address, else the listening address, else this host's name with the listening port).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Folder for this node's own metrics (nodes/node-ID.csv).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// TLS files, --insecure, the cluster secret.
    #[command(flatten)]
    pub security: dprox_net::SecurityArgs,
    /// Serve Prometheus metrics (`GET /metrics`) on this address; port 0 picks a free port.
    /// The address is logged as `metrics endpoint` once bound.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = dprox_telemetry::LogFormat::Text)]
    pub log_format: dprox_telemetry::LogFormat,
    /// Join a running cluster (a restarted node, or one started late): admitted at the next
    /// membership epoch, with the state it left with, its latest checkpoint, or its new
    /// neighbours' average model.
    #[arg(long, conflicts_with = "resume")]
    pub join: bool,
    /// Resume the run from its last complete checkpoint in `--out` (the coordinator resumes too).
    #[arg(long)]
    pub resume: bool,
    /// Seconds to stay up after the run, serving `--metrics-addr` (a last scrape sees the
    /// final values; in a deployment, the coordinator exits first).
    #[arg(long, default_value = "0", value_name = "SECONDS", value_parser = parse_seconds)]
    pub linger_s: std::time::Duration,
}

/// A number of seconds >= 0 that a [`std::time::Duration`] can hold.
fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    std::time::Duration::try_from_secs_f64(v).map_err(|_| format!("{s} is not a number of seconds >= 0"))
}

/// Worker threads of the node's runtime (set by `dprox launch`; all cores when absent).
pub const THREADS_ENV: &str = "DPROX_THREADS";

/// The node's runtime: [`THREADS_ENV`] worker threads when set (the launcher gives each local
/// process its share of the cores; the gradient's GEMM reads the same share from
/// MATMUL_NUM_THREADS), else one per core. A share of one thread is a current-thread runtime: the
/// node's loop, its gradients, its gossip server and its links then run on one thread, so a
/// received message reaches the loop without waking another thread (on a machine whose cores the
/// nodes share, 8-13% less CPU per launched run). Gradients run inline there and hold up the
/// server meanwhile; the senders wait, and nothing times out on a gradient shorter than
/// `[cluster] timeout_s`.
fn runtime(id: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let threads = std::env::var(THREADS_ENV).ok().and_then(|v| v.parse::<usize>().ok()).filter(|&n| n > 0);
    let gemm = std::env::var("MATMUL_NUM_THREADS").unwrap_or_else(|_| "all physical cores".into());
    let runtime = threads.map_or("one per core".into(), |n| n.to_string());
    tracing::info!(node = id, "threads: {runtime} for the runtime, {gemm} for GEMM");
    let mut builder = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if let Some(n) = threads.filter(|&n| n > 1) {
        builder.worker_threads(n);
    }
    builder.enable_all().build()
}

/// Loads the config, builds the node's objective (a registered one of `objectives` for
/// `[model] kind = "custom"`), and runs it to the end of the run.
pub fn main(args: Args, objectives: &Objectives) -> anyhow::Result<()> {
    dprox_telemetry::init_tracing(args.log_format);
    let run = Arc::new(Prepared::from_file(&args.config)?.with_registered(objectives)?);
    let (id, source) =
        crate::address::node_id(args.id, |v| std::env::var(v).ok()).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(id < run.n(), "{source}: {id} is not a node of the {}-node topology", run.n());
    tracing::info!(node = id, "node id {id} from {source}");
    let coordinator = args
        .coordinator
        .clone()
        .or_else(|| run.config().cluster.coordinator.clone())
        .context("no coordinator address: pass --coordinator HOST:PORT or set [cluster] coordinator")?;
    let listen = args
        .listen
        .clone()
        .or_else(|| run.node_address(id).map(String::from))
        .unwrap_or("127.0.0.1:0".into());
    let objective = run.objective(Part::Node(id), Placement::Configured)?;
    let rt = runtime(id)?;
    rt.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("binding {listen}"))?;
        let bound = listener.local_addr()?;
        let advertise = crate::address::advertised(
            args.advertise.as_deref(),
            run.node_address(id),
            bound,
            crate::address::hostname,
        )
        .map_err(anyhow::Error::msg)?;
        tracing::info!(node = id, "gossip on {bound}, reached at {advertise}");
        let metrics = match &args.metrics_addr {
            Some(a) => Some(dprox_telemetry::Endpoint::start(a).await?),
            None => None,
        };
        let start = match (args.join, args.resume) {
            (true, _) => crate::Start::Join,
            (_, true) => crate::Start::Resume,
            _ => crate::Start::Fresh,
        };
        // Under `dprox launch` the launcher enacts this node's scheduled crash and pause.
        let faults = match std::env::var_os("DPROX_LAUNCHER_PID") {
            Some(_) => crate::Faults::Launcher,
            None => crate::Faults::InProcess,
        };
        let opts = crate::Options {
            id,
            coordinator,
            out: args.out.clone(),
            secret: args.security.secret()?,
            security: args.security.security(dprox_net::Peer::Node(id))?,
            start,
            faults,
            advertise: Some(advertise),
        };
        let shutdown = dprox_telemetry::stop_requested();
        let outcome = crate::run(run, objective, opts, listener, shutdown).await;
        if outcome.is_ok() && !args.linger_s.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(args.linger_s) => {}
                _ = dprox_telemetry::stop_requested() => {}
            }
        }
        if let Some(m) = metrics {
            m.stop().await;
        }
        let outcome = outcome?;
        tracing::info!(iterations = outcome.iterations, payload = outcome.payload_bytes, "done");
        Ok(())
    })
}
