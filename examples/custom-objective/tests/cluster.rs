//! Sim-to-real equivalence for a custom objective: the committed `huber.toml`, trained as an
//! in-process gRPC cluster (coordinator and nodes through their library entry points on
//! 127.0.0.1:0), gives the same metrics.csv as the simulator, cell for cell.

use std::path::Path;
use std::sync::Arc;

use dprox_config::Prepared;
use dprox_example_custom_objective::Huber;
use dprox_example_custom_objective::cluster::{compare_metrics, run_in_process};

fn huber_run(iterations: u64) -> Arc<Prepared> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = dprox_config::load(&dir.join("huber.toml")).unwrap();
    // Compressed (top-k, deterministic): the equivalence covers the compressed path too.
    assert!(!config.compression.x.is_identity() && !config.compression.y.is_identity());
    config.run.iterations = iterations;
    let run = Prepared::new(config, dir, "huber".into()).unwrap();
    Arc::new(run.with_objective(Huber::factory(1.0).unwrap()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_cluster_matches_the_simulator_on_a_custom_objective() {
    let run = huber_run(60);
    assert_eq!(run.dim, 785);
    let out = tempfile::tempdir().unwrap();
    let (sim_dir, cluster_dir) = (out.path().join("sim"), out.path().join("cluster"));

    let summary = run_in_process(run.clone(), Some(cluster_dir.clone())).await.unwrap();
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
    // Every row, every column but the clocks.
    let differences =
        compare_metrics(&sim_dir.join("metrics.csv"), &cluster_dir.join("metrics.csv")).unwrap();
    assert!(differences.is_empty(), "{differences:#?}");
    let rows = std::fs::read_to_string(cluster_dir.join("metrics.csv")).unwrap().lines().count();
    assert_eq!(rows, 1 + 4, "header and iterations 0, 20, 40, 60");
}

#[test]
fn simulating_a_custom_model_without_its_objective_says_what_to_do() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = Prepared::from_file(&dir.join("huber.toml")).unwrap();
    let e = dprox_sim::simulate(&run, None, |_| {}).unwrap_err().to_string();
    assert!(e.contains("model kind `custom`") && e.contains("Prepared::with_objective"), "{e}");
}
