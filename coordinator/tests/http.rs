//! The coordinator's HTTP side on a real (in-process, loopback) run: `/api/status` shows every
//! node, iterations and curve points advancing, the final state with bytes per edge, the page
//! itself, and the extra-routes hook where `/metrics` goes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dprox_coordinator::status::{NodeState, Phase, Status};
use dprox_prepare::Prepared;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A 4-node ring slowed by link shaping (10 ms a message, two exchanges an iteration: about
/// 2.4 s in all) so that the run can be watched while it runs, even by a poller that a loaded
/// machine stalls for a second.
fn prepared() -> Arc<Prepared> {
    let text = r#"
        [run]
        algorithm = "dproxsgt"
        iterations = 120
        eval_every = 5
        # Resolved by each node before it registers: "cpu" here, "cuda:0 (...)" on a CUDA build
        # with a GPU; never the configured "auto".
        device = "auto"
        [topology]
        kind = "ring"
        nodes = 4
        [data]
        synthetic = { kind = "least_squares", samples = 200, features = 8 }
        [model]
        kind = "least_squares"
        [optimizer]
        lr = 0.05
        batch_size = 10
        [network]
        latency_ms = 10
        [cluster]
        shape = true
        heartbeat_s = 0.3
        "#;
    let cfg = dprox_config::parse(text, "t.toml".as_ref()).unwrap();
    Arc::new(Prepared::new(cfg, ".".as_ref(), "web".into()).unwrap())
}

/// A plain HTTP/1.1 GET: (status code, body).
async fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
}

async fn status(addr: &str) -> Status {
    let (code, body) = get(addr, "/api/status").await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Polls the status until `done` holds, for at most 30 s.
async fn wait_for(addr: &str, what: &str, done: impl Fn(&Status) -> bool) -> Status {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(addr).await;
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; last status: {s:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn min_iteration(s: &Status) -> u64 {
    s.nodes.iter().map(|n| n.iteration).min().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_api_follows_a_real_run_to_its_end() {
    let run = prepared();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let coord = grpc.local_addr().unwrap().to_string();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = http.local_addr().unwrap().to_string();
    // The /metrics hook: whatever router the embedder passes is served beside the page.
    let metrics = axum::Router::new().route("/metrics", axum::routing::get(|| async { "dprox_up 1\n" }));
    let opts = dprox_coordinator::Options {
        http: Some(http),
        http_routes: Some(metrics),
        http_linger: Duration::from_secs(60),
        ..Default::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let coordinator = tokio::spawn(dprox_coordinator::run(run.clone(), opts, grpc, async move {
        let _ = stop_rx.await;
    }));

    // Before any node: every node listed, unregistered; the links are known.
    let s = status(&web).await;
    assert_eq!(s.phase, Phase::Waiting);
    assert_eq!((s.run.name.as_str(), s.run.algorithm.as_str(), s.run.iterations), ("web", "dproxsgt", 120));
    assert!(s.run.id.starts_with("web-"), "{}", s.run.id);
    assert_eq!(s.nodes.iter().map(|n| n.state).collect::<Vec<_>>(), [NodeState::Unregistered; 4]);
    let links: Vec<(usize, usize)> = s.edges.iter().map(|e| (e.a, e.b)).collect();
    assert_eq!(links, [(0, 1), (0, 3), (1, 2), (2, 3)]);
    let (code, page) = get(&web, "/").await;
    assert_eq!(code, 200);
    assert!(page.contains("<svg id=\"topology\"") && page.contains("api/status"), "{page}");
    assert_eq!(get(&web, "/metrics").await, (200, "dprox_up 1\n".to_string()));
    assert_eq!(get(&web, "/nothing").await.0, 404);

    let mut nodes = Vec::new();
    for id in 0..4 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let opts = dprox_node::Options {
            id,
            coordinator: coord.clone(),
            out: None,
            secret: String::new(),
            security: Default::default(),
            start: dprox_node::Start::Fresh,
            faults: dprox_node::Faults::InProcess,
            advertise: None,
        };
        let objective =
            run.objective(dprox_prepare::Part::Node(id), dprox_prepare::Placement::Configured).unwrap();
        let node = dprox_node::run(run.clone(), objective, opts, listener, std::future::pending::<()>());
        nodes.push(tokio::spawn(node));
    }

    // While it runs: every node running with its address, and then both the slowest node's
    // iteration and the curve move on.
    let first = wait_for(&web, "the run to be under way", |s| {
        s.phase == Phase::Running && min_iteration(s) >= 1 && !s.points.is_empty()
    })
    .await;
    for n in &first.nodes {
        assert!(n.address.as_deref().is_some_and(|a| a.starts_with("127.0.0.1:")), "{n:?}");
        let device = n.device.as_deref().unwrap_or_default();
        assert!(device == "cpu" || device.starts_with("cuda:"), "the resolved device, not {device:?}");
    }
    assert!(first.elapsed_s.is_some());
    let top = first.nodes.iter().map(|n| n.iteration).max().unwrap();
    let later = wait_for(&web, "iterations and points to advance", |s| {
        min_iteration(s) > top && s.points.len() > first.points.len()
    })
    .await;
    assert!(later.nodes.iter().all(|n| n.loss.is_some_and(f64::is_finite)), "{:?}", later.nodes);

    for n in nodes {
        assert_eq!(n.await.unwrap().unwrap().iterations, 120);
    }
    // The last point is evaluated after the nodes finish: wait for it (iterations 0, 5, ..., 120).
    let end = wait_for(&web, "the final state", |s| s.phase == Phase::Done && s.points.len() == 25).await;
    assert_eq!(end.reason, None);
    assert!(end.nodes.iter().all(|n| n.state == NodeState::Done && n.iteration == 120), "{:?}", end.nodes);
    let iters: Vec<u64> = end.points.iter().map(|p| p.iteration).collect();
    assert_eq!(iters, (0..=120).step_by(5).collect::<Vec<u64>>());
    // Every byte a node sent went over one of its links, in one direction.
    let last = end.points.last().unwrap();
    let per_node: u64 = end.nodes.iter().map(|n| n.sent.payload_bytes).sum();
    let per_edge: u64 = end.edges.iter().map(|e| e.a_to_b.payload_bytes + e.b_to_a.payload_bytes).sum();
    assert_eq!((per_node, per_edge), (last.bytes_sent, last.bytes_sent));
    for e in &end.edges {
        // A ring with Metropolis weights is symmetric: both ways carry the same payload.
        assert!(e.a_to_b.payload_bytes > 0 && e.a_to_b.payload_bytes == e.b_to_a.payload_bytes, "{e:?}");
        assert!(e.a_to_b.framed_bytes > 0 && e.b_to_a.framed_bytes > 0, "{e:?}");
    }

    // The page stays up for the linger; the shutdown future cuts it short.
    stop_tx.send(()).unwrap();
    let summary = tokio::time::timeout(Duration::from_secs(10), coordinator).await.unwrap().unwrap().unwrap();
    assert_eq!(summary.iterations, 120);
    assert!(tokio::net::TcpStream::connect(&web).await.is_err(), "the HTTP server has stopped");
}
