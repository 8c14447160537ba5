//! Sim-to-real equivalence for a custom objective: the committed `huber.toml`, trained by this
//! crate's program as a real cluster of processes (`launch`, through `dprox_cli::main_with`) and
//! as an in-process gRPC cluster (the harness), gives the same metrics.csv as the simulator, cell
//! for cell on every column but the clocks.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use dprox_example_custom_objective::Huber;
use dprox_harness::{InProcess, compare_metrics};
use dprox_prepare::{Objectives, Prepared};

fn huber_run(iterations: u64) -> Arc<Prepared> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = dprox_config::load(&dir.join("huber.toml")).unwrap();
    // Compressed (top-k, deterministic): the equivalence covers the compressed path too.
    assert!(!config.compression.x.is_identity() && !config.compression.y.is_identity());
    config.run.iterations = iterations;
    let run = Prepared::new(config, dir, "huber".into()).unwrap();
    let objectives = Objectives::new().with("huber", Huber::factory(1.0).unwrap());
    Arc::new(run.with_registered(&objectives).unwrap())
}

fn example() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dprox-example-custom-objective"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_cluster_matches_the_simulator_on_a_custom_objective() {
    let run = huber_run(60);
    assert_eq!(run.dim(), 785);
    let out = tempfile::tempdir().unwrap();
    let (sim_dir, cluster_dir) = (out.path().join("sim"), out.path().join("cluster"));

    let summary = InProcess::new(run.clone()).out(&cluster_dir).run().await.unwrap();
    let simulated = tokio::task::spawn_blocking({
        let (run, dir) = (run.clone(), sim_dir.clone());
        move || dprox_sim::simulate(&run, Some(&dir), |_| {}).unwrap()
    })
    .await
    .unwrap();

    assert_eq!(summary.iterations, 60);
    let (a, b) = (summary.last.unwrap(), simulated.last.unwrap());
    assert_eq!(
        (a.iter, a.eval.objective, a.eval.consensus_error),
        (b.iter, b.eval.objective, b.eval.consensus_error)
    );
    assert_eq!(a.bytes_sent, b.bytes_sent);
    // It trained: the objective fell, and the nodes moved apart and back towards consensus.
    assert!(a.eval.objective < 3.0, "{}", a.eval.objective);
    assert!(a.eval.consensus_error > 0.0);
    let differences =
        compare_metrics(&sim_dir.join("metrics.csv"), &cluster_dir.join("metrics.csv")).unwrap();
    assert!(differences.is_empty(), "{differences:#?}");
    let rows = std::fs::read_to_string(cluster_dir.join("metrics.csv")).unwrap().lines().count();
    assert_eq!(rows, 1 + 4, "header and iterations 0, 20, 40, 60");
}

/// The program has the whole command line: `sim` and `launch` of this crate's binary train the
/// Huber objective, and the launched processes (this same program) reproduce the simulator.
#[test]
fn the_program_simulates_and_launches_its_own_objective() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("huber.toml");
    for (cmd, out) in [("sim", "sim"), ("launch", "launch")] {
        let o = example()
            .args([cmd, cfg.to_str().unwrap(), "--iterations", "40", "-q", "--out"])
            .arg(dir.path().join(out))
            .output()
            .unwrap();
        assert!(o.status.success(), "{cmd}: {}", String::from_utf8_lossy(&o.stderr));
        let line = String::from_utf8_lossy(&o.stdout);
        assert!(line.starts_with("huber cdproxsgt: "), "{cmd}: {line}");
        assert!(line.contains("objective 1.27"), "{cmd}: {line}");
    }
    let differences =
        compare_metrics(&dir.path().join("sim/metrics.csv"), &dir.path().join("launch/metrics.csv")).unwrap();
    assert!(differences.is_empty(), "{differences:#?}");
    // The config as it ran: the override applied, the data path absolute, and runnable as is.
    let copied = std::fs::read_to_string(dir.path().join("launch/config.toml")).unwrap();
    assert!(copied.contains("iterations = 40"), "{copied}");
    let data =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist_5k.csv.gz").canonicalize().unwrap();
    assert!(copied.contains(&format!("train = \"{}\"", data.display())), "{copied}");
}

#[test]
fn the_stock_dprox_says_it_has_no_custom_objectives() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = || Prepared::from_file(&dir.join("huber.toml")).unwrap();
    let e = run().with_registered(&Objectives::new()).map(|_| ()).unwrap_err().to_string();
    assert!(e.starts_with("model.name: no custom objective `huber` is registered in this program"), "{e}");
    assert!(e.contains("the stock dprox command has no custom objectives"), "{e}");
    // Without a registry at all, the simulator says what to do.
    let e = dprox_sim::simulate(&run(), None, |_| {}).unwrap_err().to_string();
    assert!(e.contains("model kind `custom`") && e.contains("dprox_cli::main_with"), "{e}");
}
