//! Command-line entry point shared by `dprox-coordinator` and `dprox coordinator`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

/// Arguments of the coordinator.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The run config / topology file (TOML).
    pub config: PathBuf,
    /// Address to serve on (port 0 picks a free port; the chosen address is printed first).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Output folder for metrics.csv and summary.json.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Cluster secret the nodes must present (or env DPROX_SECRET).
    #[arg(long, env = "DPROX_SECRET", default_value = "", hide_env_values = true)]
    pub secret: String,
    /// Log as JSON lines.
    #[arg(long)]
    pub log_json: bool,
}

/// Parses and serves until the run is over; prints `listening on ADDR` on stdout first.
pub fn main(args: Args) -> anyhow::Result<()> {
    init_tracing(args.log_json);
    let run = Arc::new(dprox_config::Prepared::from_file(&args.config)?);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        println!("listening on {}", listener.local_addr()?);
        use std::io::Write;
        std::io::stdout().flush()?;
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let opts = crate::Options { out: args.out.clone(), secret: args.secret.clone() };
        let summary = crate::run(run, opts, listener, shutdown).await?;
        eprintln!("run {} completed: {} iterations", summary.name, summary.iterations);
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
