//! Failover time under `dprox launch`: an 8-node torus on the bundled MNIST (the fault-free
//! deploy/examples/mnist-torus-faults.toml, made long), where node 2, then 4, then 6 is killed
//! with SIGKILL mid-run. For each kill it reports, from the logs' timestamps, the time from the
//! kill to the loss being declared, to the new epoch being formed, and to the last live node
//! starting the new epoch's first iteration, against the run's own time per iteration before
//! the kills (the in-run baseline).
//!
//! `cargo bench -p dprox-cli --bench failover`

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(p)
}

/// Seconds since midnight UTC of a log line's RFC 3339 timestamp (`2026-11-30T11:37:58.244124Z`).
fn stamp(line: &str) -> Option<f64> {
    let t = line.get(11..26)?;
    let (h, m, s) = (
        t.get(0..2)?.parse::<f64>().ok()?,
        t.get(3..5)?.parse::<f64>().ok()?,
        t.get(6..)?.parse::<f64>().ok()?,
    );
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Now, in seconds since midnight UTC.
fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() % 86_400.0
}

/// The first line of `log` after time `after` containing every one of `needles`: its time.
fn first(log: &Path, after: f64, needles: &[&str]) -> Option<f64> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().filter(|l| needles.iter().all(|n| l.contains(n))).filter_map(stamp).find(|&t| t >= after)
}

fn children_of(pid: u32) -> Vec<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    text.split_whitespace().filter_map(|c| c.parse().ok()).collect()
}

fn node_pid(launcher: u32, id: usize) -> Option<u32> {
    children_of(launcher).into_iter().find(|&pid| {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
        args.windows(2).any(|w| w[0] == b"--id" && w[1] == id.to_string().as_bytes())
    })
}

/// The iteration of node `id`'s latest own metrics row.
fn iteration(out: &Path, id: usize) -> u64 {
    let text = std::fs::read_to_string(out.join(format!("nodes/node-{id}.csv"))).unwrap_or_default();
    text.lines().last().and_then(|l| l.split(',').next()?.parse().ok()).unwrap_or(0)
}

fn main() {
    // The members not next to the lost node learn to stop at their next heartbeat: the time to
    // the new epoch follows `[cluster] heartbeat_s`.
    for heartbeat_s in [1.0, 0.25] {
        println!("[cluster] heartbeat_s = {heartbeat_s}");
        run(heartbeat_s);
    }
}

/// One launched run with three kills, reported as a table.
fn run(heartbeat_s: f64) {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo("deploy/examples/mnist-torus-faults.toml")).unwrap();
    let text = text.split("\n[[faults]]").next().unwrap().replace("iterations = 300", "iterations = 1000000");
    let text = text.replace("eval_every = 25", "eval_every = 100").replace("checkpoint_every = 50", "");
    let text = text.replace("../../data/", &format!("{}/", repo("data").canonicalize().unwrap().display()));
    let text = format!("{text}\n[cluster]\nheartbeat_s = {heartbeat_s}\n");
    let cfg = dir.path().join("failover.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = dir.path().join("out");
    let mut launcher = Command::new(env!("CARGO_BIN_EXE_dprox"))
        .arg("launch")
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .arg("-q")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The baseline: time per iteration before any kill, between two of node 0's rows (written
    // every 100 iterations) at least 400 iterations apart.
    let row = |after: u64| loop {
        let i = iteration(&out, 0);
        if i > after {
            return (Instant::now(), i);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let (t0, i0) = row(100);
    let (t1, i1) = row(i0 + 300);
    let per_iteration = (t1 - t0).as_secs_f64() / (i1 - i0) as f64;
    println!("baseline: {:.2} ms per iteration (8 nodes, before the kills)", 1e3 * per_iteration);
    println!(
        "{:>6} {:>12} {:>14} {:>22} {:>12}",
        "killed", "loss (ms)", "epoch (ms)", "all resumed (ms)", "iterations"
    );
    for (k, victim) in [2usize, 4, 6].into_iter().enumerate() {
        kill_and_wait(&out, launcher.id(), k, victim, per_iteration);
    }
    let _ = launcher.kill();
    let _ = launcher.wait();
}

/// Kills `victim` (the `k`-th kill of the run) and reports the times to its loss, to the new
/// epoch, and to the last live node starting it.
fn kill_and_wait(out: &Path, launcher: u32, k: usize, victim: usize, per_iteration: f64) {
    {
        let pid = node_pid(launcher, victim).expect("the node runs");
        let at = now();
        Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
        let epoch = format!("epoch={}", k + 1);
        let coordinator = out.join("logs/coordinator.log");
        let deadline = Instant::now() + Duration::from_secs(60);
        let (lost, formed, resumed) = loop {
            std::thread::sleep(Duration::from_millis(200));
            let lost = first(&coordinator, at, &["node lost", &format!("node={victim}")]);
            let formed = first(&coordinator, at, &["new membership epoch", &epoch]);
            let resumed: Vec<Option<f64>> = (0..8)
                .filter(|&i| ![2, 4, 6][..=k].contains(&i))
                .map(|i| {
                    first(&out.join(format!("logs/node-{i}.log")), at, &["new membership epoch", &epoch])
                })
                .collect();
            if let (Some(l), Some(f), true) = (lost, formed, resumed.iter().all(Option::is_some)) {
                break (l, f, resumed.into_iter().flatten().fold(0.0, f64::max));
            }
            assert!(Instant::now() < deadline, "no new epoch within 60 s of killing node {victim}");
        };
        let ms = |t: f64| 1e3 * (t - at);
        println!(
            "{victim:>6} {:>12.1} {:>14.1} {:>22.1} {:>12.1}",
            ms(lost),
            ms(formed),
            ms(resumed),
            (resumed - at) / per_iteration
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}
