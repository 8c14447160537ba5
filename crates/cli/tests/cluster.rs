//! A real cluster: `dprox launch` starts the coordinator and 4 node processes talking gRPC over
//! loopback, and must reproduce `dprox sim` on the same config.

mod common;

use std::path::Path;

use common::*;

fn config(dir: &Path, algorithm: &str, compression: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
        [run]
        algorithm = "{algorithm}"
        iterations = 40
        eval_every = 10
        seed = 5
        [topology]
        kind = "ring"
        nodes = 4
        [data]
        synthetic = {{ kind = "gaussian_mixture", samples = 800, features = 30, classes = 4 }}
        test_fraction = 0.25
        partition = {{ kind = "label_skew", classes_per_node = 2 }}
        [model]
        kind = "softmax"
        [regularizer]
        kind = "l1"
        mu = 0.001
        [optimizer]
        lr = 0.05
        batch_size = 16
        gamma_x = 0.5
        gamma_y = 0.5
        [compression]
        {compression}
        "#
    );
    let p = dir.join(format!("{algorithm}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn run(cmd: &str, cfg: &Path, out: &Path) -> std::process::Output {
    let o = dprox().arg(cmd).arg(cfg).arg("--out").arg(out).arg("-q").output().unwrap();
    assert!(o.status.success(), "dprox {cmd} failed:\n{}", String::from_utf8_lossy(&o.stderr));
    o
}

fn launch_matches_sim(algorithm: &str, compression: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), algorithm, compression);
    run("sim", &cfg, &dir.path().join("sim"));
    run("launch", &cfg, &dir.path().join("launch"));
    let cols = ["iter", "objective", "consensus_error", "test_accuracy", "bytes_sent"];
    let sim = columns(&dir.path().join("sim/metrics.csv"), &cols);
    let real = columns(&dir.path().join("launch/metrics.csv"), &cols);
    assert_eq!(sim.len(), 5, "iterations 0, 10, 20, 30, 40");
    assert_eq!(sim, real, "{algorithm}: the cluster must reproduce the simulator to the last digit");
    // Each node wrote its own metrics, and the summary says the run completed.
    for i in 0..4 {
        assert!(dir.path().join(format!("launch/nodes/node-{i}.csv")).exists());
    }
    let summary = std::fs::read_to_string(dir.path().join("launch/summary.json")).unwrap();
    assert!(summary.contains("\"status\": \"completed\""), "{summary}");
}

#[test]
fn launch_reproduces_sim_for_dproxsgt() {
    launch_matches_sim("dproxsgt", "");
}

#[test]
fn launch_reproduces_sim_for_cdproxsgt_with_top_k() {
    launch_matches_sim(
        "cdproxsgt",
        r#"x = { kind = "top_k", ratio = 0.2 }
        y = { kind = "top_k", ratio = 0.2 }"#,
    );
}

#[test]
fn launch_insecure_runs_in_plaintext_with_the_same_iterates_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "dproxsgt", "");
    run("launch", &cfg, &dir.path().join("tls"));
    let o = dprox()
        .arg("launch")
        .arg(&cfg)
        .arg("--out")
        .arg(dir.path().join("plain"))
        .arg("--insecure")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("--insecure: the cluster's gRPC runs in plaintext on loopback"), "{stderr}");
    assert!(dir.path().join("tls/tls/ca.pem").exists(), "the TLS run made its certificates");
    assert!(!dir.path().join("plain/tls").exists(), "the plaintext run made none");
    let cols = ["iter", "objective", "consensus_error", "test_accuracy", "bytes_sent"];
    let tls = columns(&dir.path().join("tls/metrics.csv"), &cols);
    assert_eq!(tls.len(), 5);
    assert_eq!(tls, columns(&dir.path().join("plain/metrics.csv"), &cols));
}

/// With `min_nodes = 4`, the test kills node 2 (SIGKILL, as the OOM killer or a pre-emption
/// would) once it has reported iteration 10: its neighbours must notice within seconds and name
/// it, the run must end saying too few nodes are left, and the coordinator must keep the rows
/// computed before.
#[test]
fn losing_a_node_below_min_nodes_fails_the_run_fast_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(config(dir.path(), "dproxsgt", "")).unwrap();
    // Long and slowed by shaped links (10 ms each way), so that the kill lands mid-run.
    let long = text.replace("iterations = 40", "iterations = 100000")
        + "\n[network]\nlatency_ms = 10.0\n[cluster]\nshape = true\nmin_nodes = 4\n";
    let cfg = dir.path().join("long.toml");
    std::fs::write(&cfg, long).unwrap();
    let out = dir.path().join("out");
    let child = dprox()
        .arg("launch")
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut launcher = Killed(child);
    let node2 = wait_for_child(launcher.0.id(), Some(2));
    let csv = out.join("nodes/node-2.csv");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::fs::read_to_string(&csv).unwrap_or_default().lines().any(|l| l.starts_with("10,")) {
        assert!(std::time::Instant::now() < deadline, "node 2 never reached iteration 10");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let start = std::time::Instant::now();
    kill9(node2);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut launcher.0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!launcher.0.wait().unwrap().success());
    assert!(err.contains("node 2 died (signal: 9 (SIGKILL))"), "{err}");
    assert!(err.contains("only 3 node(s) left at iteration"), "{err}");
    assert!(err.contains("fewer than cluster.min_nodes = 4"), "{err}");
    // A neighbour found node 2 unreachable, before the heartbeat timeout.
    let log = std::fs::read_to_string(out.join("logs/coordinator.log")).unwrap();
    assert!(
        log.contains("node lost: node 1 found it unreachable")
            || log.contains("node lost: node 3 found it unreachable"),
        "{log}"
    );
    assert!(log.contains("node=2"), "the loss is node 2's: {log}");
    assert!(!log.contains("sent no heartbeat"), "the neighbours, not the heartbeat timeout: {log}");
    assert!(start.elapsed().as_secs() < 28, "must not wait for the 30 s timeout");
    let summary = dprox_eval::Summary::read(&out.join("summary.json")).unwrap();
    assert_eq!(summary.status, dprox_eval::RunStatus::Failed);
    assert_eq!(
        summary.events.iter().map(|e| (e.node, e.kind)).collect::<Vec<_>>(),
        [(2, dprox_eval::EventKind::Lost)],
        "{:?}",
        summary.events
    );
    // The rows computed before the failure are kept.
    let rows = columns(&out.join("metrics.csv"), &["iter"]);
    assert!(rows.len() >= 2 && rows[0] == ["0"] && rows[1] == ["10"], "{rows:?}");
}

#[test]
fn top_k_one_percent_sends_under_three_percent_of_dproxsgt_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |alg: &str, comp: &str| {
        let text = format!(
            r#"
            [run]
            algorithm = "{alg}"
            iterations = 10
            eval_every = 10
            [topology]
            kind = "ring"
            nodes = 4
            [data]
            synthetic = {{ kind = "gaussian_mixture", samples = 400, features = 784, classes = 10 }}
            [model]
            kind = "softmax"
            [optimizer]
            lr = 0.01
            batch_size = 8
            gamma_x = 0.2
            gamma_y = 0.2
            [compression]
            {comp}
            "#
        );
        let p = dir.path().join(format!("{alg}.toml"));
        std::fs::write(&p, text).unwrap();
        p
    };
    let dense = cfg("dproxsgt", "");
    let sparse =
        cfg("cdproxsgt", "x = { kind = \"top_k\", ratio = 0.01 }\ny = { kind = \"top_k\", ratio = 0.01 }");
    run("launch", &dense, &dir.path().join("dense"));
    run("launch", &sparse, &dir.path().join("sparse"));
    let total = |out: &str, col: &str| -> f64 {
        (0..4)
            .map(|i| {
                let rows = columns(&dir.path().join(format!("{out}/nodes/node-{i}.csv")), &[col]);
                rows.last().unwrap()[0].parse::<f64>().unwrap()
            })
            .sum()
    };
    for col in ["payload_bytes", "framed_bytes"] {
        let ratio = total("sparse", col) / total("dense", col);
        assert!(ratio <= 0.03, "{col}: top-k 1% sends {:.2}% of dproxsgt's bytes", 100.0 * ratio);
        assert!(ratio > 0.005, "{col}: {ratio} (indices and headers must be counted)");
    }
}

/// Starts a long `dprox launch` and returns it with the pids of the coordinator and its 4 nodes
/// once all five run.
fn long_launch(dir: &Path) -> (Killed, Vec<u32>) {
    let text = std::fs::read_to_string(config(dir, "dproxsgt", "")).unwrap();
    let cfg = dir.join("long.toml");
    std::fs::write(&cfg, text.replace("iterations = 40", "iterations = 10000000")).unwrap();
    let child = dprox()
        .arg("launch")
        .arg(&cfg)
        .arg("--out")
        .arg(dir.join("out"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let child = Killed(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let kids = children_of(child.0.id());
        if kids.len() == 5 {
            return (child, kids);
        }
        assert!(std::time::Instant::now() < deadline, "launch started {kids:?}, not 5 processes");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Waits (at most 30 s) for every pid in `pids` to be gone.
fn all_gone(pids: &[u32]) -> Vec<u32> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() || std::time::Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn sigterm_to_launch_stops_every_process_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, kids) = long_launch(dir.path());
    let ok = std::process::Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    assert!(ok.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("terminated (SIGTERM): stopped the coordinator and every node"), "{err}");
    assert_eq!(all_gone(&kids), Vec::<u32>::new(), "still running after the launcher's SIGTERM");
}

#[test]
fn a_killed_launcher_leaves_no_process_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, kids) = long_launch(dir.path());
    child.0.kill().unwrap(); // SIGKILL: the launcher cannot stop anything itself
    child.0.wait().unwrap();
    assert_eq!(all_gone(&kids), Vec::<u32>::new(), "orphans of a SIGKILLed launcher");
    // The coordinator depends on nobody else, so only the launcher check stops it.
    let log = std::fs::read_to_string(dir.path().join("out/logs/coordinator.log")).unwrap();
    assert!(log.contains("the launcher (pid"), "{log}");
}
