//! The coordinator and nodes started in one process through their library entry points (how tests
//! and users embedding a custom objective run them), on 127.0.0.1:0.

use std::sync::Arc;

use dprox_harness::InProcess;
use dprox_prepare::{Part, Placement, Prepared};
use dprox_transport::pb;

fn prepared(nodes: usize) -> Arc<Prepared> {
    prepared_with(nodes, "")
}

/// As [`prepared`], with `extra` TOML appended (a section of its own).
fn prepared_with(nodes: usize, extra: &str) -> Arc<Prepared> {
    let text = format!(
        r#"
        [run]
        algorithm = "cdproxsgt"
        iterations = 30
        eval_every = 10
        [topology]
        kind = "ring"
        nodes = {nodes}
        [data]
        synthetic = {{ kind = "least_squares", samples = 300, features = 12 }}
        [model]
        kind = "least_squares"
        [optimizer]
        lr = 0.05
        batch_size = 10
        gamma_x = 0.5
        gamma_y = 0.5
        [compression]
        x = {{ kind = "rand_k", ratio = 0.5 }}
        y = {{ kind = "qsgd", levels = 4 }}
        {extra}
        "#
    );
    let cfg = dprox_config::parse(&text, "t.toml".as_ref()).unwrap();
    Arc::new(Prepared::new(cfg, ".".as_ref(), "inproc".into()).unwrap())
}

async fn start_coordinator(
    run: Arc<Prepared>,
    out: Option<std::path::PathBuf>,
) -> (String, tokio::task::JoinHandle<Result<dprox_eval::Summary, dprox_coordinator::CoordinatorError>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let opts = dprox_coordinator::Options { out, secret: "s3cret".into(), ..Default::default() };
    let h = tokio::spawn(dprox_coordinator::run(run, opts, listener, std::future::pending()));
    (addr, h)
}

/// A plaintext gRPC client of the coordinator at `addr` (connected at the first call).
fn client(addr: &str) -> pb::coordinator_client::CoordinatorClient<tonic::transport::Channel> {
    let endpoint =
        dprox_transport::endpoint(&dprox_net::Security::Insecure, addr, dprox_net::Peer::Coordinator)
            .unwrap();
    pb::coordinator_client::CoordinatorClient::new(endpoint.connect_lazy())
}

/// Node `id`'s registration (a model of `dim` parameters) with the test's secret.
fn registration(id: u32, dim: u64, join: bool) -> pb::RegisterRequest {
    pb::RegisterRequest {
        id,
        address: format!("127.0.0.1:{}", 1 + id),
        device: "cpu".into(),
        dim,
        secret: "s3cret".into(),
        join,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_refuses_unknown_ids_wrong_dimensions_and_wrong_secrets() {
    let run = prepared(2);
    let (addr, _h) = start_coordinator(run.clone(), None).await;
    let mut c = client(&addr);
    let req = |id: u32, dim: u64, secret: &str| pb::RegisterRequest {
        id,
        address: "127.0.0.1:1".into(),
        device: "cpu".into(),
        dim,
        throughput: 0.0,
        secret: secret.into(),
        ..Default::default()
    };
    // The listener is bound before the coordinator starts: the call waits for it, no retry needed.
    let e = c.register(req(7, run.dim() as u64, "s3cret")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert_eq!(e.message(), "node id 7 is not in the topology, which has nodes 0..2");
    let e = c.register(req(0, 3, "s3cret")).await.unwrap_err();
    assert_eq!(e.message(), format!("node 0 has a model of 3 parameters, the run's has {}", run.dim()));
    let e = c.register(req(0, run.dim() as u64, "guess")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    assert_eq!(e.message(), "node 0: wrong or missing cluster secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_nodes_do_not_all_register_in_time_is_given_up_naming_them() {
    let run = prepared_with(3, "[cluster]\nregister_timeout_s = 1");
    let dir = tempfile::tempdir().unwrap();
    // Nodes 0 and 1 come; node 2 never does.
    let started = InProcess::new(run.clone()).out(dir.path()).secret("s3cret").start(0..2).await.unwrap();
    let (nodes, coordinator) = started.join().await;
    let why = "node(s) 2 did not register within 1 s (registered: 0, 1); see cluster.register_timeout_s";
    for (_, n) in nodes {
        let e = n.unwrap_err().to_string();
        assert!(e.contains(&format!("refused: {why}")), "{e}");
    }
    let e = coordinator.unwrap_err().to_string();
    assert_eq!(e, format!("run aborted: {why}"));
    let summary = std::fs::read_to_string(dir.path().join("summary.json")).unwrap();
    assert!(summary.contains("\"status\": \"failed\"") && summary.contains(why), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_cluster_matches_the_simulator() {
    let run = prepared(3);
    let dir = tempfile::tempdir().unwrap();
    let (nodes, summary) =
        InProcess::new(run.clone()).out(dir.path()).secret("s3cret").start(0..3).await.unwrap().join().await;
    for (_, n) in nodes {
        assert_eq!(n.unwrap().iterations, 30);
    }
    let summary = summary.unwrap();
    let sim = tokio::task::spawn_blocking({
        let run = run.clone();
        move || dprox_sim::simulate(&run, None, |_| {}).unwrap()
    })
    .await
    .unwrap();
    let (a, b) = (summary.last.unwrap(), sim.last.unwrap());
    assert_eq!(a.iter, 30);
    assert_eq!(a.eval.objective, b.eval.objective);
    assert_eq!(a.eval.consensus_error, b.eval.consensus_error);
    assert_eq!(a.bytes_sent, b.bytes_sent);
}

/// The coordinator evaluates on the CPU whatever the nodes' devices: a run whose node 1 computes
/// on `cuda:0` needs no GPU (nor the `cuda` feature) on the coordinator's host. Here the node's
/// own objective is also built on the CPU, standing in for its GPU.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_evaluates_gpu_nodes_on_the_cpu() {
    let text = r#"
        [run]
        algorithm = "dproxsgt"
        iterations = 10
        eval_every = 5
        [topology]
        kind = "ring"
        nodes = 3
        [data]
        synthetic = { kind = "least_squares", samples = 90, features = 6 }
        [model]
        kind = "least_squares"
        [optimizer]
        lr = 0.05
        [[nodes]]
        id = 1
        device = "cuda:0"
        "#;
    let cfg = dprox_config::parse(text, "t.toml".as_ref()).unwrap();
    let run = Arc::new(Prepared::new(cfg, ".".as_ref(), "gpu-node".into()).unwrap());
    // Without a GPU (or without the cuda feature, as here) node 1's own objective cannot be
    // built, and the error names its device.
    if let Err(e) = run.objective(Part::Node(1), Placement::Configured) {
        assert!(e.to_string().contains("cuda:0"), "{e}");
    }
    let r = run.clone();
    let cluster =
        InProcess::new(run.clone()).objectives(move |id| r.objective(Part::Node(id), Placement::Cpu));
    let summary = cluster.run().await.unwrap();
    assert_eq!(summary.last.unwrap().iter, 10);
}

/// A scheduled rejoin whose node registers only after every member has synced at its iteration
/// (the members wait for it): the registration itself forms the epoch. Before, nothing formed
/// it once the last member had synced, and the run hung (seen in the torus fault test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_registering_after_the_members_synced_is_admitted_at_its_rejoin() {
    let run = prepared_with(3, "[[faults]]\nnode = 2\nat = 2\nkind = \"leave\"\nrejoin = 4\n");
    let (addr, _h) = start_coordinator(run.clone(), None).await;
    let c = client(&addr);
    let dim = run.dim() as u64;
    let req = move |id: u32, join: bool| registration(id, dim, join);
    let regs: Vec<_> = (0..3)
        .map(|id| {
            let mut c = c.clone();
            tokio::spawn(async move { c.register(req(id, false)).await.unwrap().into_inner() })
        })
        .collect();
    for r in regs {
        assert_eq!(r.await.unwrap().epoch, 0);
    }
    let mut c0 = c.clone();
    c0.leave(pb::LeaveRequest { id: 2, iteration: 2, ..Default::default() }).await.unwrap();
    let sync = |id: u32, epoch: u64, iteration: u64| {
        let mut c = c.clone();
        tokio::spawn(async move {
            let r = c.sync(pb::SyncRequest { id, epoch, iteration, at_boundary: true }).await.unwrap();
            r.into_inner().epoch.expect("an epoch, not an exclusion")
        })
    };
    let (a, b) = (sync(0, 0, 2), sync(1, 0, 2));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!((a.index, a.start, b.index), (1, 2, 1), "node 2 left at 2");
    // Both members wait at the rejoin's iteration for node 2, which has not registered yet.
    let (a, b) = (sync(0, 1, 4), sync(1, 1, 4));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!a.is_finished() && !b.is_finished(), "the members wait for the scheduled joiner");
    let mut c2 = c.clone();
    let joined = tokio::time::timeout(std::time::Duration::from_secs(20), c2.register(req(2, true)))
        .await
        .expect("the joiner's registration forms the epoch instead of waiting for ever")
        .unwrap()
        .into_inner();
    assert_eq!((joined.epoch, joined.iteration), (2, 4));
    for s in [a, b] {
        let e = s.await.unwrap();
        assert_eq!((e.index, e.start), (2, 4));
        assert!(e.peers.iter().any(|p| p.id == 2), "node 2 is a neighbour again: {:?}", e.peers);
    }
}

/// A member that syncs in the middle of an epoch while no change is forming (it saw something
/// the coordinator has not) is not left waiting: the others are told to freeze, and an epoch of
/// the same members starts where the furthest one was. Before, its sync never returned, and its
/// neighbours timed out on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_with_no_change_forming_forms_an_epoch_of_the_same_members() {
    let run = prepared(3);
    let (addr, _h) = start_coordinator(run.clone(), None).await;
    let c = client(&addr);
    let dim = run.dim() as u64;
    let regs: Vec<_> = (0..3u32)
        .map(|id| {
            let mut c = c.clone();
            tokio::spawn(async move { c.register(registration(id, dim, false)).await.unwrap().into_inner() })
        })
        .collect();
    for r in regs {
        assert_eq!(r.await.unwrap().epoch, 0);
    }
    let sync = |id: u32, iteration: u64| {
        let mut c = c.clone();
        tokio::spawn(async move {
            let r = c.sync(pb::SyncRequest { id, epoch: 0, iteration, at_boundary: false }).await.unwrap();
            r.into_inner().epoch.expect("an epoch, not an exclusion")
        })
    };
    let first = sync(0, 5);
    let mut c1 = c.clone();
    let mut frozen = false;
    for _ in 0..100 {
        let hb = pb::HeartbeatRequest { id: 1, iteration: 4, epoch: 0 };
        if c1.heartbeat(hb).await.unwrap().into_inner().freeze {
            frozen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(frozen, "node 1 is told to freeze within 2 s");
    let (b, d) = (sync(1, 4), sync(2, 5));
    for s in [first, b, d] {
        let e = tokio::time::timeout(std::time::Duration::from_secs(20), s)
            .await
            .expect("every sync is answered")
            .unwrap();
        assert_eq!((e.index, e.start, e.peers.len()), (1, 5, 2), "the same ring, from iteration 5");
    }
}
