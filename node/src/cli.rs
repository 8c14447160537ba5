//! Command-line entry point shared by `dprox-node` and `dprox node`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

/// Arguments of a node.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The run config / topology file (TOML), the same file the coordinator reads.
    pub config: PathBuf,
    /// This node's id.
    #[arg(long)]
    pub id: usize,
    /// The coordinator's host:port (default: [cluster] coordinator in the config).
    #[arg(long)]
    pub coordinator: Option<String>,
    /// Address to serve gossip on (default: the [[nodes]] address, else 127.0.0.1:0).
    #[arg(long)]
    pub listen: Option<String>,
    /// Folder for this node's own metrics (nodes/node-ID.csv).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Cluster secret (or env DPROX_SECRET).
    #[arg(long, env = "DPROX_SECRET", default_value = "", hide_env_values = true)]
    pub secret: String,
    /// Log as JSON lines.
    #[arg(long)]
    pub log_json: bool,
}

/// Loads the config, builds the node's objective, and runs it to the end of the run.
pub fn main(args: Args) -> anyhow::Result<()> {
    init_tracing(args.log_json);
    let run = Arc::new(dprox_config::Prepared::from_file(&args.config)?);
    anyhow::ensure!(args.id < run.n(), "--id {} is not a node of the {}-node topology", args.id, run.n());
    let coordinator = args
        .coordinator
        .clone()
        .or_else(|| run.config.cluster.coordinator.clone())
        .context("no coordinator address: pass --coordinator HOST:PORT or set [cluster] coordinator")?;
    let listen = args
        .listen
        .clone()
        .or_else(|| run.node_address(args.id).map(String::from))
        .unwrap_or("127.0.0.1:0".into());
    let objective = run.objective(args.id)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("binding {listen}"))?;
        let opts =
            crate::Options { id: args.id, coordinator, out: args.out.clone(), secret: args.secret.clone() };
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let outcome = crate::run(run, objective, opts, listener, shutdown).await?;
        tracing::info!(iterations = outcome.iterations, payload = outcome.payload_bytes, "done");
        Ok(())
    })
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        let _ = b.json().try_init();
    } else {
        let _ = b.try_init();
    }
}
