//! `dprox launch`: the coordinator and every node as separate processes on this machine.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dprox_eval::Summary;
use dprox_prepare::Objectives;
use dprox_transport::pb;

use crate::run_args::RunArgs;

struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

/// The processes `launch` started; whatever still runs when it is dropped is killed, so that no
/// early return (a failed start, an error, a signal) leaves part of a cluster behind.
#[derive(Default)]
struct Procs(Vec<Proc>);

impl Drop for Procs {
    fn drop(&mut self) {
        for p in &mut self.0 {
            if p.child.try_wait().ok().flatten().is_none() {
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
        }
    }
}

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

/// Set by `launch` on every process it starts: its own pid. A process that finds it has another
/// parent (the launcher was killed without a chance to stop it) exits instead of living on.
const LAUNCHER_PID: &str = "DPROX_LAUNCHER_PID";

/// In a node or coordinator started by `launch`: exits this process, with a line on stderr (its
/// log), once the launcher is gone. `launch` stops its processes itself on completion, on
/// Ctrl-C, on SIGTERM and on any failure; this covers SIGKILL and crashes of the launcher, which
/// would otherwise leave a cluster running with nobody to read its results.
pub fn exit_with_launcher() {
    let Some(pid) = std::env::var(LAUNCHER_PID).ok().and_then(|v| v.parse::<u32>().ok()) else {
        return;
    };
    std::thread::spawn(move || {
        loop {
            if std::os::unix::process::parent_id() != pid {
                eprintln!("error: the launcher (pid {pid}) is gone; stopping");
                std::process::exit(1);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
}

/// The last lines of a log file, for error reports.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
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
}

/// Prepares the run (a bad config fails here, with its own message, before anything is created
/// or started), writes the config as it runs into the run folder, starts the cluster on
/// loopback, shows progress, waits for the end and prints the summary line.
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
    std::fs::create_dir_all(out.join("logs"))
        .with_context(|| format!("creating {}", out.join("logs").display()))?;
    // Every process reads the config as it runs (overrides applied, data paths resolved).
    let config = out.join("config.toml");
    run.write_config(&config).with_context(|| format!("writing {}", config.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let mut signals = {
        let _context = rt.enter();
        Signals::install()?
    };
    let result = (|| {
        let mut procs = Procs::default(); // stops whatever still runs when dropped
        let addr = start_coordinator(args, &config, &mut procs)?;
        start_nodes(args, &config, n, &addr, &mut procs)?;
        if !args.quiet {
            eprintln!("launched coordinator at {addr} and {n} nodes; logs in {}", out.join("logs").display());
        }
        let bar = crate::progress_bar(run.config().run.iterations, args.quiet);
        let result = rt.block_on(monitor(&mut procs.0, &addr, &bar, &mut signals));
        bar.finish_and_clear();
        result
    })();
    result.with_context(|| format!("the cluster run failed; what it computed is in {}", out.display()))?;
    let summary = Summary::read(&out.join("summary.json")).context("the coordinator wrote no summary")?;
    println!("{} in {:.2} s", crate::report::summary_line(&summary, true), summary.wall_time_s);
    Ok(())
}

/// The log file of process `name` in the run folder.
fn log_file(out: &Path, name: &str) -> anyhow::Result<(std::fs::File, PathBuf)> {
    let p = out.join("logs").join(format!("{name}.log"));
    Ok((std::fs::File::create(&p).with_context(|| format!("creating {}", p.display()))?, p))
}

/// Starts the coordinator; returns its gRPC address (and prints the status page's URL when
/// asked for one: whoever asked needs the port it got, even when quiet).
fn start_coordinator(args: &Args, config: &Path, procs: &mut Procs) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("locating the dprox executable")?;
    let (f, log) = log_file(&args.out, "coordinator")?;
    let mut cmd = Command::new(&exe);
    cmd.arg("coordinator").arg(config).args(["--listen", "127.0.0.1:0", "--out"]).arg(&args.out);
    cmd.env(LAUNCHER_PID, std::process::id().to_string());
    if let Some(p) = args.metrics_port {
        cmd.args(["--metrics-addr", &format!("127.0.0.1:{p}")]);
    }
    if let Some(a) = &args.http_addr {
        cmd.args(["--http-addr", a]);
    }
    if let Some(s) = args.http_linger_s {
        cmd.args(["--http-linger-s", &s.as_secs_f64().to_string()]);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(f).spawn().context("starting the coordinator")?;
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    procs.0.push(Proc { name: "coordinator".into(), child, log: log.clone() });
    // The coordinator prints `listening on ADDR`, then `status page: URL` when asked for one.
    let mut first = String::new();
    stdout.read_line(&mut first)?;
    let Some(addr) = first.trim().strip_prefix("listening on ").map(String::from) else {
        bail!("the coordinator did not start:\n{}", tail(&log, 20));
    };
    if args.http_addr.is_some() {
        let mut second = String::new();
        stdout.read_line(&mut second)?;
        let Some(url) = second.trim().strip_prefix("status page: ") else {
            bail!("the coordinator did not start its status page:\n{}", tail(&log, 20));
        };
        eprintln!("status page: {url}");
    }
    Ok(addr)
}

/// Starts node 0..n, each with its log file and its own metrics file in the run folder.
fn start_nodes(args: &Args, config: &Path, n: usize, addr: &str, procs: &mut Procs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the dprox executable")?;
    for i in 0..n {
        let (f, log) = log_file(&args.out, &format!("node-{i}"))?;
        let mut node = Command::new(&exe);
        node.arg("node").arg(config).args(["--id", &i.to_string(), "--coordinator", addr]);
        node.env(LAUNCHER_PID, std::process::id().to_string());
        if let Some(p) = args.metrics_port {
            node.args(["--metrics-addr", &format!("127.0.0.1:{}", usize::from(p) + 1 + i)]);
        }
        node.arg("--out").arg(&args.out).stdout(Stdio::null()).stderr(f);
        let child = node.spawn().with_context(|| format!("starting node {i}"))?;
        procs.0.push(Proc { name: format!("node {i}"), child, log });
    }
    Ok(())
}

async fn monitor(
    procs: &mut [Proc],
    addr: &str,
    bar: &indicatif::ProgressBar,
    signals: &mut Signals,
) -> anyhow::Result<()> {
    // A status call that hangs (a wedged coordinator) must not stall the watch over the processes.
    let channel = dprox_transport::endpoint(addr)?.timeout(Duration::from_secs(2)).connect_lazy();
    let mut status = pb::coordinator_client::CoordinatorClient::new(channel);
    let mut first_failure: Option<(String, String)> = None;
    let mut failure_at: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = signals.interrupt.recv() => bail!("interrupted: stopped the coordinator and every node"),
            _ = signals.terminate.recv() => bail!("terminated (SIGTERM): stopped the coordinator and every node"),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if let Ok(s) = status.status(pb::StatusRequest {}).await {
            let s = s.into_inner();
            let min = s.nodes.iter().map(|n| n.iteration).min().unwrap_or(0);
            bar.set_position(min);
            if let Some(obj) = s.last_row.split(',').nth(1) {
                bar.set_message(format!("objective {obj}"));
            }
        }
        // The coordinator exits when the run is over (completed, or aborted after telling nodes).
        if let Some(code) = procs[0].child.try_wait()? {
            if code.success() {
                return Ok(());
            }
            let why = tail(&procs[0].log, 5);
            match first_failure {
                Some((name, log)) => {
                    bail!("{name}; the run was aborted.\nIts log ends:\n{log}\ncoordinator:\n{why}")
                }
                None => bail!("the coordinator failed:\n{why}"),
            }
        }
        // Among the nodes that exited with an error since the last look, blame one that died
        // (a signal, or an exit status other than the 1 of a reported error) before the
        // neighbours that reported losing it.
        let mut failed: Vec<(bool, String, String)> = Vec::new();
        for p in procs[1..].iter_mut() {
            if let Some(code) = p.child.try_wait()?
                && !code.success()
            {
                let died = code.code() != Some(1);
                let what =
                    if died { format!("{} died ({code})", p.name) } else { format!("{} failed", p.name) };
                failed.push((died, what, tail(&p.log, 8)));
            }
        }
        failed.sort_by_key(|f| !f.0);
        if first_failure.is_none()
            && let Some((_, what, log)) = failed.into_iter().next()
        {
            first_failure = Some((what, log));
            failure_at = Some(Instant::now());
        }
        // A failed node normally makes the coordinator abort within a few heartbeats; if it does
        // not exit on its own, do not hang.
        if let (Some((name, log)), Some(t)) = (&first_failure, failure_at)
            && t.elapsed() > Duration::from_secs(15)
        {
            bail!("{name}, and the coordinator did not stop:\n{log}");
        }
    }
}
