//! The fault schedule of deploy/examples/mnist-torus-faults.toml in the simulator: node 3 leaves
//! at iteration 100 and rejoins at 200, node 5 crashes at 150. After every epoch change (and at
//! every iteration boundary between them), gradient tracking holds over the live nodes: the mean
//! of their trackers y equals the mean of their latest gradients.

use std::path::Path;

use dprox_prepare::Prepared;
use dprox_sim::Simulation;

fn torus() -> Prepared {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples/mnist-torus-faults.toml");
    Prepared::from_file(&path).unwrap()
}

/// max_k |mean_i y_ik - mean_i g_ik| over the live nodes, and max_k |mean_i g_ik|.
fn tracking_gap(sim: &Simulation<'_>) -> (f64, f64) {
    let live = sim.live_nodes();
    let d = sim.nodes()[0].dim();
    let (mut y, mut g) = (vec![0.0f64; d], vec![0.0f64; d]);
    for &i in &live {
        let s = sim.nodes()[i].state();
        for k in 0..d {
            y[k] += s.y[k] as f64 / live.len() as f64;
            g[k] += s.g_prev[k] as f64 / live.len() as f64;
        }
    }
    let gap = y.iter().zip(&g).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    (gap, g.iter().map(|v| v.abs()).fold(0.0, f64::max))
}

#[test]
fn tracking_holds_over_the_live_nodes_through_the_torus_fault_schedule() {
    let run = torus();
    let mut sim = Simulation::new(&run).unwrap();
    let mut seen = Vec::new();
    while sim.iteration() < 220 {
        sim.step().unwrap();
        let live = sim.live_nodes();
        let epoch = sim.nodes()[live[0]].epoch();
        if seen.last() != Some(&(epoch, live.clone())) {
            seen.push((epoch, live.clone()));
        }
        let (gap, scale) = tracking_gap(&sim);
        assert!(
            gap <= 1e-5 * (1.0 + scale),
            "iteration {}, epoch {epoch}, live {live:?}: mean y differs from the mean gradient by {gap:e} (scale {scale:e})",
            sim.iteration()
        );
    }
    let all: Vec<usize> = (0..8).collect();
    let without = |gone: &[usize]| all.iter().copied().filter(|i| !gone.contains(i)).collect::<Vec<_>>();
    assert_eq!(
        seen,
        [(0, all.clone()), (1, without(&[3])), (2, without(&[3, 5])), (3, without(&[5]))],
        "the epochs and their members"
    );
}
