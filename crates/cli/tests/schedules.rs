//! Time-varying topologies end to end: a one-peer exponential and a random-matching run
//! launched as real processes reproduce the simulator bit for bit and send one message per node
//! and exchange; `check-config` reports the period; configs the schedule cannot run are refused
//! naming the key.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn config(dir: &Path, name: &str, kind: &str, schedule: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"
        [run]
        algorithm = "dproxsgt"
        iterations = 60
        eval_every = 20
        seed = 8
        [topology]
        kind = "{kind}"
        nodes = 8
        schedule = "{schedule}"
        [data]
        synthetic = {{ kind = "gaussian_mixture", samples = 1600, features = 30, classes = 4 }}
        test_fraction = 0.25
        partition = {{ kind = "label_skew", classes_per_node = 2 }}
        [model]
        kind = "softmax"
        [regularizer]
        kind = "l1"
        mu = 0.001
        [optimizer]
        lr = 0.2
        batch_size = 16
        {extra}
        "#
    );
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn bytes(rows: &[Vec<String>]) -> u64 {
    rows.last().unwrap()[4].parse().unwrap()
}

#[test]
fn scheduled_runs_launch_as_simulated_with_one_message_per_node() {
    let dir = tempfile::tempdir().unwrap();
    let stat = config(dir.path(), "static", "exponential", "static", "");
    let static_bytes = bytes(&sim_columns(&stat, &dir.path().join("static")));
    for (name, kind, schedule) in
        [("one-peer", "exponential", "one_peer_exponential"), ("matching", "torus", "random_matching")]
    {
        let cfg = config(dir.path(), name, kind, schedule, "");
        let out = dir.path().join(name);
        let sim = sim_columns(&cfg, &out);
        let o =
            dprox().arg("launch").arg(&cfg).arg("--out").arg(out.join("launch")).arg("-q").output().unwrap();
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        let launched = columns(&out.join("launch/metrics.csv"), &SIM_COLUMNS);
        assert_eq!(sim, launched, "{name}: launch reproduces the simulator");
        // Each of the 8 local node processes gets its share of the cores (at least 1).
        let share = (std::thread::available_parallelism().unwrap().get() / 8).max(1);
        let log = std::fs::read_to_string(out.join("launch/logs/node-3.log")).unwrap();
        assert!(log.contains(&format!("threads: {share} for the runtime, {share} for GEMM")), "{log}");
        if name == "one-peer" {
            // Every node sends each exchange to one peer instead of its 5 neighbours (8-node
            // exponential graph), with messages of the same size.
            assert_eq!(5 * bytes(&sim), static_bytes);
        }
    }
}

#[test]
fn check_config_reports_the_period_and_its_contraction() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "one-peer", "exponential", "one_peer_exponential", "");
    let o = dprox().arg("check-config").arg(&cfg).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("schedule:     one_peer_exponential (3 rounds; iteration t uses round t mod period)"),
        "{text}"
    );
    assert!(text.contains("period rho:   0.000000000"), "8 nodes average exactly in 3 rounds: {text}");
    let cfg = config(dir.path(), "matching", "torus", "random_matching", "");
    let text =
        String::from_utf8_lossy(&dprox().arg("check-config").arg(&cfg).output().unwrap().stdout).to_string();
    assert!(text.contains("schedule:     random_matching ("), "{text}");
    assert!(text.contains("one drawn per iteration from the seed"), "{text}");
}

#[test]
fn configs_a_schedule_cannot_run_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            config(dir.path(), "a", "ring", "one_peer_exponential", ""),
            "topology.schedule: one_peer_exponential runs on kind = \"exponential\"",
        ),
        (
            config(
                dir.path(),
                "b",
                "exponential",
                "one_peer_exponential",
                "[compression]\nx = { kind = \"top_k\", ratio = 0.3 }",
            ),
            "topology.schedule: a time-varying schedule needs dproxsgt, dpsgd, or cdproxsgt/choco with identity f32",
        ),
        (
            config(
                dir.path(),
                "c",
                "exponential",
                "random_matching",
                "[[faults]]\nnode = 2\nat = 10\nkind = \"crash\"",
            ),
            "faults: a time-varying schedule runs on a fixed membership",
        ),
    ];
    // Case b runs CDProxSGT (DProxSGT sends no compressed estimates).
    let b = std::fs::read_to_string(&cases[1].0).unwrap().replace("\"dproxsgt\"", "\"cdproxsgt\"");
    std::fs::write(&cases[1].0, b).unwrap();
    for (cfg, want) in cases {
        let o = dprox().arg("check-config").arg(&cfg).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{}: {err}", cfg.display());
    }
}
