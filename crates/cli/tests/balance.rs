//! Work balanced by measured speed in a real cluster: with `balance = "throughput"`, the
//! coordinator sizes the minibatches by the gradient throughputs the node processes measured at
//! registration (a node emulating `[[nodes]] speed = 0.25` measures a quarter of its rate), and
//! each node trains with the size it was given; `balance = "speed"` keeps the configured split, so
//! the launched run equals the simulated one.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn config(dir: &Path, balance: &str) -> PathBuf {
    let text = format!(
        r#"
        [run]
        algorithm = "dproxsgt"
        iterations = 20
        eval_every = 10
        seed = 3
        balance = "{balance}"
        [topology]
        kind = "ring"
        nodes = 4
        [data]
        synthetic = {{ kind = "gaussian_mixture", samples = 800, features = 30, classes = 4 }}
        test_fraction = 0.25
        [model]
        kind = "softmax"
        [optimizer]
        lr = 0.2
        batch_size = 16
        [[nodes]]
        id = 3
        speed = 0.25
        "#
    );
    let p = dir.join(format!("{balance}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// The batch sizes in the coordinator's line "minibatches balanced by measured throughput:
/// node 0: 19 (...), ...".
fn balanced(log: &str) -> Vec<usize> {
    let line = log
        .lines()
        .find(|l| l.contains("minibatches balanced by measured throughput"))
        .unwrap_or_else(|| {
            panic!("no balancing line in the coordinator's log:\n{log}");
        });
    line.split("node ").skip(1).map(|part| part.split_whitespace().nth(1).unwrap().parse().unwrap()).collect()
}

#[test]
fn the_coordinator_sizes_minibatches_by_the_throughput_the_nodes_measured() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("throughput");
    let cfg = config(dir.path(), "throughput");
    let o = dprox().arg("launch").arg(&cfg).arg("--out").arg(&out).arg("-q").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let log = std::fs::read_to_string(out.join("logs/coordinator.log")).unwrap();
    let b = balanced(&log);
    assert_eq!(b.len(), 4, "{log}");
    assert_eq!(b.iter().sum::<usize>(), 64, "the total per iteration is kept: {b:?}");
    // The emulated quarter-speed node measured about a quarter of the others' rate.
    let fastest_slow_share = *b[..3].iter().min().unwrap();
    assert!(b[3] < 16 && b[3] < fastest_slow_share, "node 3 (speed 0.25) gets the smallest batch: {b:?}");
    let node3 = std::fs::read_to_string(out.join("logs/node-3.log")).unwrap();
    assert!(node3.contains(&format!("batch={}", b[3])), "node 3 trains with its size:\n{node3}");
    assert!(node3.contains("minibatch size set by the coordinator"), "{node3}");
}

#[test]
fn balancing_by_configured_speed_launches_as_simulated() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "speed");
    let out = dir.path().join("speed");
    let sim = sim_columns(&cfg, &out);
    let o = dprox().arg("launch").arg(&cfg).arg("--out").arg(out.join("launch")).arg("-q").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        sim,
        columns(&out.join("launch/metrics.csv"), &SIM_COLUMNS),
        "launch reproduces the simulator"
    );
    let log = std::fs::read_to_string(out.join("launch/logs/coordinator.log")).unwrap();
    assert!(!log.contains("balanced by measured throughput"), "speed balancing measures nothing:\n{log}");
}
