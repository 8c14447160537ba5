//! The launcher's processes: the coordinator and the nodes, each with its log file in the run
//! folder, stopped together when the launcher stops.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::mpsc::UnboundedSender;

use super::Args;

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

/// A process the launcher started.
pub(super) struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Kills it (SIGKILL) if it still runs, and reaps it.
    pub fn kill(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// Sends `signal` (SIGSTOP, SIGCONT) unless it has exited (a child not yet reaped: its pid
    /// cannot name another process).
    pub fn signal(&mut self, signal: nix::sys::signal::Signal) {
        if self.child.try_wait().ok().flatten().is_none() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            if let Err(e) = nix::sys::signal::kill(pid, signal) {
                tracing::warn!("sending {signal} to {}: {e}", self.name);
            }
        }
    }
}

impl Drop for Proc {
    /// Whatever still runs when the launcher lets go of it is killed, so that no early return (a
    /// failed start, an error, a signal) leaves part of a cluster behind.
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last lines of a log file, for error reports.
pub(super) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// The log file of process `name` in the run folder: created, or appended to (a node restarted
/// for its rejoin, a resumed run) after a line that says so.
fn log_file(out: &Path, name: &str, append: bool) -> anyhow::Result<(std::fs::File, PathBuf)> {
    use std::io::Write;
    let p = out.join("logs").join(format!("{name}.log"));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(&p)
        .with_context(|| format!("opening {}", p.display()))?;
    if append {
        let _ = writeln!(f, "---- restarted by the launcher ----");
    }
    Ok((f, p))
}

/// How the launched processes are secured.
pub(crate) enum Secured {
    /// Mutual TLS with the run's certificates in `dir`; the launcher itself is `operator`.
    Tls {
        /// `OUT/tls`.
        dir: PathBuf,
        /// The launcher's own identity (it reads the coordinator's status).
        operator: dprox_net::Security,
    },
    /// Plaintext, with a random secret the nodes present when they register (in their
    /// environment, not on their command line).
    Insecure {
        /// The secret.
        secret: String,
    },
}

impl Secured {
    /// Adds a process's security arguments (and environment) to `cmd`.
    fn apply(&self, cmd: &mut Command) {
        match self {
            Secured::Tls { dir, .. } => {
                cmd.arg("--tls-dir").arg(dir);
            }
            Secured::Insecure { secret } => {
                cmd.arg("--insecure").env("DPROX_SECRET", secret);
            }
        }
    }

    /// The launcher's own security, for reading the coordinator's status.
    pub fn client(&self) -> dprox_net::Security {
        match self {
            Secured::Tls { operator, .. } => operator.clone(),
            Secured::Insecure { .. } => dprox_net::Security::Insecure,
        }
    }
}

/// How a node process starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NodeStart {
    /// With the run.
    Fresh,
    /// Joining the running cluster (`--join`).
    Join,
    /// From the run's last complete checkpoint (`--resume`).
    Resume,
}

/// A line a node printed for the launcher: `dprox-fault crash T`, `leave T`, `pause S T`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum FaultLine {
    Crash(u64),
    Leave(u64),
    Pause(f64),
}

impl FaultLine {
    fn parse(line: &str) -> Option<FaultLine> {
        let mut w = line.strip_prefix("dprox-fault ")?.split_whitespace();
        match (w.next()?, w.next()?.parse::<f64>().ok()?) {
            ("crash", t) => Some(FaultLine::Crash(t as u64)),
            ("leave", t) => Some(FaultLine::Leave(t as u64)),
            ("pause", s) => Some(FaultLine::Pause(s)),
            _ => None,
        }
    }
}

/// Starts the coordinator (resuming the run in the folder with `resume`); returns it and its
/// gRPC address (and prints the status page's URL when asked for one: whoever asked needs the
/// port it got, even when quiet).
pub(super) fn start_coordinator(
    args: &Args,
    config: &Path,
    secured: &Secured,
    (resume, nodes): (bool, usize),
) -> anyhow::Result<(Proc, String)> {
    let exe = std::env::current_exe().context("locating the dprox executable")?;
    let (f, log) = log_file(&args.out, "coordinator", resume)?;
    let mut cmd = Command::new(&exe);
    cmd.arg("coordinator").arg(config).args(["--listen", "127.0.0.1:0", "--out"]).arg(&args.out);
    cmd.env(LAUNCHER_PID, std::process::id().to_string());
    // Its evaluations (GEMM and rayon threads) share the machine with the nodes: a node's share
    // of the cores, not all of them (the LeNet example on 2 cores: 12.5 s of CPU against 13.4 s
    // and half the context switches, docs/benchmarks.md).
    compute_threads(&mut cmd, threads_per_process(args, nodes));
    secured.apply(&mut cmd);
    if resume {
        cmd.arg("--resume");
    }
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
    let proc = Proc { name: "coordinator".into(), child, log: log.clone() };
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
    Ok((proc, addr))
}

/// The threads of each of `nodes` local node processes: `--threads-per-process`, else this
/// machine's cores divided among them, at least 1.
pub(super) fn threads_per_process(args: &Args, nodes: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    args.threads_per_process.map_or((cores / nodes.max(1)).max(1), usize::from)
}

/// Gives a local process `threads` GEMM and rayon threads.
fn compute_threads(cmd: &mut Command, threads: usize) {
    let threads = threads.to_string();
    cmd.env("MATMUL_NUM_THREADS", &threads).env("RAYON_NUM_THREADS", &threads);
}

/// Starts node `id` (of `nodes` local ones) with its log file and its own metrics file in the run folder; the fault
/// lines it prints go to `faults`.
pub(super) fn start_node(
    args: &Args,
    config: &Path,
    secured: &Secured,
    addr: &str,
    (id, nodes): (usize, usize),
    start: NodeStart,
    faults: UnboundedSender<(usize, FaultLine)>,
) -> anyhow::Result<Proc> {
    let exe = std::env::current_exe().context("locating the dprox executable")?;
    let (f, log) = log_file(&args.out, &format!("node-{id}"), start != NodeStart::Fresh)?;
    let mut node = Command::new(&exe);
    node.arg("node").arg(config).args(["--id", &id.to_string(), "--coordinator", addr]);
    node.env(LAUNCHER_PID, std::process::id().to_string());
    let threads = threads_per_process(args, nodes);
    node.env(dprox_node::cli::THREADS_ENV, threads.to_string());
    compute_threads(&mut node, threads);
    secured.apply(&mut node);
    match start {
        NodeStart::Fresh => {}
        NodeStart::Join => {
            node.arg("--join");
        }
        NodeStart::Resume => {
            node.arg("--resume");
        }
    }
    if let Some(p) = args.metrics_port {
        node.args(["--metrics-addr", &format!("127.0.0.1:{}", usize::from(p) + 1 + id)]);
    }
    node.arg("--out").arg(&args.out).stdout(Stdio::piped()).stderr(f);
    let mut child = node.spawn().with_context(|| format!("starting node {id}"))?;
    let stdout = BufReader::new(child.stdout.take().expect("piped"));
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if let Some(f) = FaultLine::parse(&line) {
                let _ = faults.send((id, f));
            }
        }
    });
    Ok(Proc { name: format!("node {id}"), child, log })
}

#[cfg(test)]
mod tests {
    use super::FaultLine;

    #[test]
    fn fault_lines_parse_and_others_are_ignored() {
        assert_eq!(FaultLine::parse("dprox-fault crash 150"), Some(FaultLine::Crash(150)));
        assert_eq!(FaultLine::parse("dprox-fault leave 100"), Some(FaultLine::Leave(100)));
        assert_eq!(FaultLine::parse("dprox-fault pause 2.5 40"), Some(FaultLine::Pause(2.5)));
        assert_eq!(FaultLine::parse("dprox-fault explode 1"), None);
        assert_eq!(FaultLine::parse("crash 150"), None);
        assert_eq!(FaultLine::parse("dprox-fault crash"), None);
    }
}
