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
    /// Also serve the live status page (`/`) and its JSON (`/api/status`) over HTTP on this
    /// address (port 0 picks a free port; `status page: http://ADDR/` is printed second).
    #[arg(long, value_name = "HOST:PORT")]
    pub http_addr: Option<String>,
    /// Seconds the status page stays up after the run ends, so viewers see the final state.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub http_linger_s: f64,
    /// Serve Prometheus metrics (`GET /metrics`) on this address (also served on `--http-addr`).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = dprox_telemetry::LogFormat::Text)]
    pub log_format: dprox_telemetry::LogFormat,
}

/// Parses and serves until the run is over; prints `listening on ADDR` on stdout first, then,
/// with `--http-addr`, `status page: http://ADDR/` (what `dprox launch` reads).
pub fn main(args: Args) -> anyhow::Result<()> {
    dprox_telemetry::init_tracing(args.log_format);
    anyhow::ensure!(
        args.http_linger_s.is_finite() && args.http_linger_s >= 0.0,
        "--http-linger-s must be a number of seconds >= 0, not {}",
        args.http_linger_s
    );
    let run = Arc::new(dprox_config::Prepared::from_file(&args.config)?);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let http = match &args.http_addr {
            Some(a) => Some(
                tokio::net::TcpListener::bind(a).await.with_context(|| format!("binding --http-addr {a}"))?,
            ),
            None => None,
        };
        println!("listening on {}", listener.local_addr()?);
        if let Some(h) = &http {
            println!("status page: http://{}/", h.local_addr()?);
        }
        use std::io::Write;
        std::io::stdout().flush()?;
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let opts = crate::Options {
            out: args.out.clone(),
            secret: args.secret.clone(),
            http,
            // `GET /metrics` next to the status page.
            http_routes: Some(dprox_telemetry::router(dprox_telemetry::install())),
            http_linger: std::time::Duration::from_secs_f64(args.http_linger_s),
        };
        let metrics = match &args.metrics_addr {
            Some(a) => Some(dprox_telemetry::Endpoint::start(a).await?),
            None => None,
        };
        let summary = crate::run(run, opts, listener, shutdown).await;
        if let Some(m) = metrics {
            m.stop().await;
        }
        let summary = summary?;
        eprintln!("run {} completed: {} iterations", summary.name, summary.iterations);
        Ok(())
    })
}
