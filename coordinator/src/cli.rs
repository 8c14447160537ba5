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
    /// TLS files, --insecure, the cluster secret.
    #[command(flatten)]
    pub security: dprox_net::SecurityArgs,
    /// File holding a bearer token the status page, `/api/status` and `/metrics` on
    /// `--http-addr` then require (`Authorization: Bearer TOKEN`, or `?token=TOKEN` in the
    /// page's URL); else the DPROX_HTTP_TOKEN environment variable; open when neither is set.
    #[arg(long, value_name = "FILE")]
    pub http_token_file: Option<PathBuf>,
    /// Also serve the live status page (`/`) and its JSON (`/api/status`) over HTTP on this
    /// address (port 0 picks a free port; `status page: http://ADDR/` is printed second).
    #[arg(long, value_name = "HOST:PORT")]
    pub http_addr: Option<String>,
    /// Seconds the status page stays up after the run ends, so viewers see the final state.
    #[arg(long, default_value = "2", value_name = "SECONDS", value_parser = parse_seconds)]
    pub http_linger_s: std::time::Duration,
    /// Serve Prometheus metrics (`GET /metrics`) on this address (also served on `--http-addr`).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = dprox_telemetry::LogFormat::Text)]
    pub log_format: dprox_telemetry::LogFormat,
    /// Resume the run in `--out` from its last complete checkpoint.
    #[arg(long, requires = "out")]
    pub resume: bool,
}

/// The status page's bearer token: the file's first line, else DPROX_HTTP_TOKEN, else none.
fn http_token(file: Option<&std::path::Path>) -> anyhow::Result<Option<String>> {
    let token = match file {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("reading --http-token-file {}", p.display()))?
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
        None => std::env::var("DPROX_HTTP_TOKEN").unwrap_or_default(),
    };
    Ok((!token.is_empty()).then_some(token))
}

/// A flag's number of seconds: a number >= 0 that a [`std::time::Duration`] can hold (what
/// `--http-linger-s` takes here and in `dprox launch`).
pub fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if v.is_nan() || v < 0.0 {
        return Err(format!("must be a number of seconds >= 0, not {s}"));
    }
    std::time::Duration::try_from_secs_f64(v)
        .map_err(|_| format!("{s} seconds is more than a duration can hold"))
}

/// Parses and serves until the run is over (a registered objective of `objectives` for
/// `[model] kind = "custom"`); prints `listening on ADDR` on stdout first, then,
/// with `--http-addr`, `status page: http://ADDR/` (what `dprox launch` reads).
pub fn main(args: Args, objectives: &dprox_prepare::Objectives) -> anyhow::Result<()> {
    dprox_telemetry::init_tracing(args.log_format);
    let run = Arc::new(dprox_prepare::Prepared::from_file(&args.config)?.with_registered(objectives)?);
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
        let shutdown = dprox_telemetry::stop_requested();
        let opts = crate::Options {
            out: args.out.clone(),
            secret: args.security.secret()?,
            security: args.security.security(dprox_net::Peer::Coordinator)?,
            http_token: http_token(args.http_token_file.as_deref())?,
            http,
            // `GET /metrics` next to the status page.
            http_routes: Some(dprox_telemetry::router(dprox_telemetry::install())),
            http_linger: args.http_linger_s,
            resume: args.resume,
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
        eprintln!("run {} completed: {} iterations", summary.run.name, summary.iterations);
        Ok(())
    })
}
