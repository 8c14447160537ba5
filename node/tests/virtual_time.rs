//! The node's driver in memory, on tokio's virtual clock: its timeouts, probes, aborts and
//! shutdown happen at exact virtual instants, with no socket and no real sleep (each test takes
//! milliseconds of real time for tens of virtual seconds).
//!
//! The nodes are real `Peer` drivers over a `MemoryNetwork` and a `MemoryCoordinator`. A
//! "puppet" node registers and then does nothing: it is alive (probes reach it) but silent.

use std::sync::Arc;
use std::time::Duration;

use dprox_node::gossip::{Gossip, MemoryNetwork};
use dprox_node::{CoordinatorLink, MemoryCoordinator, NodeError, Outcome, Parts, Peer};
use dprox_prepare::{Part, Placement, Prepared};
use dprox_transport::pb;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn run_of(iterations: u64, nodes: usize) -> Arc<Prepared> {
    run_with(iterations, nodes, "none", "")
}

/// A ring of `nodes` on a small least-squares problem, balanced by `balance`, with `extra`
/// appended to its config.
fn run_with(iterations: u64, nodes: usize, balance: &str, extra: &str) -> Arc<Prepared> {
    let text = format!(
        r#"
        [run]
        algorithm = "dproxsgt"
        iterations = {iterations}
        eval_every = 10
        seed = 2
        balance = "{balance}"
        [topology]
        kind = "ring"
        nodes = {nodes}
        [data]
        synthetic = {{ kind = "least_squares", samples = 120, features = 6 }}
        [model]
        kind = "least_squares"
        [optimizer]
        lr = 0.05
        batch_size = 8
        [cluster]
        timeout_s = 30
        heartbeat_s = 1
        "#
    ) + extra;
    let cfg = dprox_config::parse(&text, "vt.toml".as_ref()).unwrap();
    Arc::new(Prepared::new(cfg, ".".as_ref(), "vt".into()).unwrap())
}

/// The test's view of a cluster in memory.
struct Cluster {
    run: Arc<Prepared>,
    net: MemoryNetwork,
    coordinator: MemoryCoordinator,
    shutdown: CancellationToken,
}

impl Cluster {
    fn new(iterations: u64) -> Cluster {
        Cluster::ring(iterations, 3)
    }

    /// A ring of `nodes`.
    fn ring(iterations: u64, nodes: usize) -> Cluster {
        Cluster::of(run_of(iterations, nodes))
    }

    fn of(run: Arc<Prepared>) -> Cluster {
        let coordinator = MemoryCoordinator::new(run.clone());
        Cluster { run, net: MemoryNetwork::new(), coordinator, shutdown: CancellationToken::new() }
    }

    /// Node `id` as a real driver.
    fn node(&self, id: usize) -> JoinHandle<Result<Outcome, NodeError>> {
        let parts = Parts {
            id,
            run: self.run.clone(),
            objective: self.run.objective(Part::Node(id), Placement::Configured).unwrap(),
            gossip: self.net.join(id, self.run.dim()),
            coordinator: self.coordinator.clone(),
            out: None,
            start: dprox_node::Start::Fresh,
            faults: dprox_node::Faults::InProcess,
        };
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move { Peer::register(parts).await?.run(shutdown).await })
    }

    /// Node `id` as a puppet: it joins the network and registers, then never sends.
    fn puppet(&self, id: usize) -> JoinHandle<dprox_node::gossip::MemoryGossip> {
        let gossip = self.net.join(id, self.run.dim());
        let mut coordinator = self.coordinator.clone();
        let dim = self.run.dim() as u64;
        tokio::spawn(async move {
            let req =
                pb::RegisterRequest { id: id as u32, address: gossip.address(), dim, ..Default::default() };
            coordinator.register(req).await.unwrap();
            gossip
        })
    }
}

async fn error_of(task: JoinHandle<Result<Outcome, NodeError>>) -> String {
    task.await.unwrap().unwrap_err().to_string()
}

#[tokio::test(start_paused = true)]
async fn drivers_in_memory_complete_the_run_with_the_simulators_iterates() {
    let c = Cluster::new(20);
    let nodes: Vec<_> = (0..3).map(|i| c.node(i)).collect();
    for task in nodes {
        let o = task.await.unwrap().unwrap();
        assert_eq!(o.iterations, 20);
    }
    let mut sim = dprox_sim::Simulation::new(&c.run).unwrap();
    for _ in 0..20 {
        sim.step().unwrap();
    }
    for i in 0..3 {
        assert_eq!(c.coordinator.iterate(i, 20).unwrap(), sim.nodes()[i].params(), "node {i}");
    }
    assert_eq!(c.coordinator.reports().len(), 3 * 3, "iterations 0, 10 and 20 of every node");
    let mut finished = c.coordinator.finished();
    finished.sort();
    assert_eq!(finished, [(0, String::new()), (1, String::new()), (2, String::new())]);
}

/// `[cluster] shape = true` paces each gradient to the simulator's compute time: 1 ms per sample
/// at speed 1 here, 2 ms on node 2 at speed 0.5. Without balancing, every iteration waits for
/// node 2's 8 samples (16 ms); with `balance = "speed"` the 24 samples split as 10, 9 and 5, and
/// an iteration takes 10 ms.
#[tokio::test(start_paused = true)]
async fn a_shaped_cluster_runs_at_its_slowest_nodes_modelled_pace_and_balancing_evens_it() {
    for (balance, per_iteration_ms) in [("none", 16.0), ("speed", 10.0)] {
        // Appended to the template's last table, [cluster].
        let extra = "shape = true\n[network]\ngflops = 0.000042\n[[nodes]]\nid = 2\nspeed = 0.5\n";
        let c = Cluster::of(run_with(20, 3, balance, extra));
        let objective = c.run.objective(Part::Node(0), Placement::Configured).unwrap();
        let secs = c.run.compute_secs_per_sample(0, objective.flops_per_sample());
        assert!((secs - 1e-3).abs() < 1e-12, "the model's premise: {secs} s per sample");
        let nodes: Vec<_> = (0..3).map(|i| c.node(i)).collect();
        for (i, task) in nodes.into_iter().enumerate() {
            let o = task.await.unwrap().unwrap();
            assert_eq!(o.iterations, 20);
            let ms = o.elapsed_s * 1e3;
            assert!((ms - 20.0 * per_iteration_ms).abs() < 1.5, "balance {balance}: node {i} took {ms} ms");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_neighbour_is_reported_lost_after_exactly_timeout_s_and_the_others_go_on() {
    let c = Cluster::new(20);
    let _puppet = c.puppet(2);
    let t0 = Instant::now();
    let (a, b) = (c.node(0), c.node(1));
    // The probes find node 2 alive every second, so only the timeout ends the wait; then the
    // first to time out reports it (the other is frozen by the coordinator, or reports it too)
    // and both finish the run in an epoch without it.
    assert_eq!(a.await.unwrap().unwrap().iterations, 20);
    assert_eq!(b.await.unwrap().unwrap().iterations, 20);
    let losses = c.coordinator.losses();
    assert!(!losses.is_empty());
    for (_, lost, reason, at) in losses {
        assert_eq!(lost, 2);
        assert_eq!(reason, "no message of iteration 0 within 30 s (cluster.timeout_s)");
        assert_eq!(at - t0, Duration::from_secs(30));
    }
    let mut finished = c.coordinator.finished();
    finished.sort();
    assert_eq!(finished, [(0, String::new()), (1, String::new())]);
}

/// A freeze written while an epoch was being formed but read by the node after it entered that
/// epoch (a slow coordinator link) is stale: the node goes on, rather than syncing for an epoch
/// nobody forms (its neighbours then timed out on it and the run lost a live node).
#[tokio::test(start_paused = true)]
async fn a_freeze_that_arrives_after_the_new_epoch_started_is_ignored() {
    // A ring of four: nodes 0 and 2 find node 3 gone (the probe, a second in); node 1 is no
    // neighbour of it and learns of the change from a heartbeat (a freeze), so the change takes
    // that long to form. Meanwhile 0 and 2 wait in their sync, and their heartbeats are answered
    // with freezes too, which reach them 1.5 s later: in the new epoch.
    let c = Cluster::ring(20, 4);
    c.coordinator.delay_heartbeat_replies(Duration::from_millis(1500));
    // Iterations take time (two exchanges of 100 ms), so the run is still going when they do.
    c.net.set_latency(Duration::from_millis(100));
    let puppet = c.puppet(3);
    let nodes: Vec<_> = (0..3).map(|i| c.node(i)).collect();
    let _gossip = puppet.await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.net.kill(3);
    for task in nodes {
        assert_eq!(task.await.unwrap().unwrap().iterations, 20);
    }
    let lost: Vec<usize> = c.coordinator.losses().iter().map(|l| l.1).collect();
    assert!(!lost.is_empty() && lost.iter().all(|&n| n == 3), "only node 3 is lost: {lost:?}");
    assert_eq!(c.coordinator.epoch(), 1, "one membership change: the loss of node 3");
    let mut finished = c.coordinator.finished();
    finished.sort();
    assert_eq!(finished, [(0, String::new()), (1, String::new()), (2, String::new())]);
}

/// A failed delivery to a node that is no neighbour (a link of an earlier epoch failing after
/// the node left it) is stale: nobody is reported lost and every node completes.
#[tokio::test(start_paused = true)]
async fn a_failed_delivery_to_a_node_that_is_no_neighbour_is_ignored() {
    // A ring of four: node 2 is no neighbour of node 0.
    let c = Cluster::ring(20, 4);
    c.net.set_latency(Duration::from_millis(100));
    let nodes: Vec<_> = (0..4).map(|i| c.node(i)).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.net.report_failure(0, 2);
    for task in nodes {
        assert_eq!(task.await.unwrap().unwrap().iterations, 20);
    }
    assert!(c.coordinator.losses().is_empty(), "{:?}", c.coordinator.losses());
    assert_eq!(c.coordinator.epoch(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_neighbour_that_is_gone_is_found_by_the_probe_one_second_after_the_last_progress() {
    let c = Cluster::new(20);
    let puppet = c.puppet(2);
    let t0 = Instant::now();
    let (a, b) = (c.node(0), c.node(1));
    // Node 2 registers (everyone starts), receives its neighbours' first messages, then dies.
    let _gossip = puppet.await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.net.kill(2);
    assert_eq!(a.await.unwrap().unwrap().iterations, 20, "node 0 goes on without node 2");
    assert_eq!(b.await.unwrap().unwrap().iterations, 20, "node 1 too");
    let losses = c.coordinator.losses();
    let (_, lost, reason, at) = losses.iter().find(|l| l.0 == 0).expect("node 0 reported the loss").clone();
    assert_eq!(lost, 2);
    assert_eq!(reason, "not on the network (killed)");
    assert_eq!(at - t0, Duration::from_secs(1), "the first probe, a second after the start");
}

#[tokio::test(start_paused = true)]
async fn the_coordinators_abort_stops_waiting_nodes_at_the_next_heartbeat() {
    let c = Cluster::new(20);
    let _puppet = c.puppet(2);
    let (a, b) = (c.node(0), c.node(1));
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    let t0 = Instant::now();
    c.coordinator.abort("node 2 (memory:2) failed: disk full");
    let e = error_of(a).await;
    assert_eq!(e, "run aborted by the coordinator: node 2 (memory:2) failed: disk full");
    assert!(t0.elapsed() <= Duration::from_secs(1), "{:?}", t0.elapsed());
    assert_eq!(error_of(b).await, e);
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_a_waiting_node_at_once_and_it_reports_why() {
    let c = Cluster::new(20);
    let _puppet = c.puppet(2);
    let a = c.node(0);
    let _b = c.node(1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t0 = Instant::now();
    c.shutdown.cancel();
    assert_eq!(error_of(a).await, "node 0: shut down before the run completed");
    assert_eq!(t0.elapsed(), Duration::ZERO);
    assert!(c.coordinator.finished().contains(&(0, "node 0: shut down before the run completed".into())));
}

#[tokio::test(start_paused = true)]
async fn a_coordinator_that_stops_answering_aborts_the_nodes_after_ten_heartbeats() {
    let c = Cluster::new(20);
    let _puppet = c.puppet(2);
    let a = c.node(0);
    let _b = c.node(1);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let t0 = Instant::now();
    c.coordinator.disconnect();
    let e = error_of(a).await;
    assert_eq!(
        e,
        "run aborted by the coordinator: the coordinator stopped answering: unreachable: the coordinator is disconnected"
    );
    // Heartbeats at 3, 4, ..., 12 s fail: the tenth ends it.
    assert_eq!(t0.elapsed(), Duration::from_millis(9_500));
}

#[tokio::test(start_paused = true)]
async fn a_coordinator_that_cannot_be_reached_fails_registration_after_thirty_seconds() {
    let c = Cluster::new(20);
    c.coordinator.disconnect();
    let t0 = Instant::now();
    let e = error_of(c.node(0)).await;
    assert_eq!(
        e,
        "coordinator at memory:coordinator: could not be reached within 30 s: the coordinator is disconnected"
    );
    assert!(t0.elapsed() >= Duration::from_secs(30) && t0.elapsed() < Duration::from_millis(30_200));
}

#[tokio::test(start_paused = true)]
async fn duplicate_messages_are_refused_and_leave_the_iterates_exactly_as_without_them() {
    let c = Cluster::new(20);
    // Node 1's next 5 messages reach node 0 twice, and node 2's next 5 reach node 1 twice.
    c.net.replay(1, 0, 5);
    c.net.replay(2, 1, 5);
    let nodes: Vec<_> = (0..3).map(|i| c.node(i)).collect();
    for task in nodes {
        assert_eq!(task.await.unwrap().unwrap().iterations, 20);
    }
    let mut sim = dprox_sim::Simulation::new(&c.run).unwrap();
    for _ in 0..20 {
        sim.step().unwrap();
    }
    for i in 0..3 {
        assert_eq!(c.coordinator.iterate(i, 20).unwrap(), sim.nodes()[i].params(), "node {i}");
    }
    assert!(c.coordinator.losses().is_empty(), "{:?}", c.coordinator.losses());
}

#[tokio::test(start_paused = true)]
async fn a_neighbour_that_keeps_sending_duplicates_is_lost_at_the_sixteenth_and_the_others_go_on() {
    let c = Cluster::new(20);
    c.net.replay(1, 0, u64::MAX);
    let (a, b, d) = (c.node(0), c.node(1), c.node(2));
    assert_eq!(a.await.unwrap().unwrap().iterations, 20, "node 0 goes on without node 1");
    assert_eq!(d.await.unwrap().unwrap().iterations, 20, "node 2 too");
    b.abort();
    let losses = c.coordinator.losses();
    let (_, lost, reason, _) = losses.iter().find(|l| l.0 == 0).expect("node 0 reported node 1").clone();
    assert_eq!(lost, 1);
    assert_eq!(dprox_node::peer::STRIKES, 16);
    // DProxSGT has two exchanges per iteration (x, y): the 16th copy is iteration 7's x message,
    // which reached node 0 after the original had completed its exchange (so it is out of step,
    // not a duplicate: both are refused).
    assert_eq!(
        reason,
        "refused 16 messages from it in this epoch, the last: node 0: x message of iteration 7 from 1 is out of step (expected iteration 8 y, or the one after)"
    );
}
