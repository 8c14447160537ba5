//! The coordinator over mutual TLS, against a hostile client: a caller without a certificate of
//! the cluster is refused on every call, a node's certificate acts for that node only, and what
//! a node's certificate may send is checked (a forged finish cannot end the run, a forged report
//! cannot write a row). The run completes with every row.

use std::path::Path;
use std::sync::Arc;

use dprox_harness::InProcess;
use dprox_net::{Peer, Security};
use dprox_prepare::Prepared;
use dprox_transport::pb;
use pb::coordinator_client::CoordinatorClient;
use tonic::transport::Channel;

const ITERATIONS: u64 = 400;

fn prepared() -> Arc<Prepared> {
    let text = format!(
        r#"
        [run]
        algorithm = "dproxsgt"
        iterations = {ITERATIONS}
        eval_every = 50
        [topology]
        kind = "ring"
        nodes = 3
        [data]
        synthetic = {{ kind = "least_squares", samples = 300, features = 12 }}
        [model]
        kind = "least_squares"
        [optimizer]
        lr = 0.05
        batch_size = 10
        [network]
        latency_ms = 4.0
        [cluster]
        shape = true
        "#
    );
    let cfg = dprox_config::parse(&text, "t.toml".as_ref()).unwrap();
    Arc::new(Prepared::new(cfg, ".".as_ref(), "secure".into()).unwrap())
}

async fn client_as(dir: &Path, who: Peer, addr: &str) -> CoordinatorClient<Channel> {
    let endpoint = Security::load(dir, who).unwrap().endpoint(addr, Peer::Coordinator).unwrap();
    CoordinatorClient::new(endpoint.connect().await.unwrap())
}

/// Every call of the coordinator's API, acting for node `id` (what each returns, as a status).
async fn every_call(
    c: &mut CoordinatorClient<Channel>,
    id: u32,
    dim: usize,
) -> Vec<(&'static str, tonic::Status)> {
    let x = vec![0u8; 4 * dim];
    let mut out = Vec::new();
    let mut push = |name, r: Result<(), tonic::Status>| {
        if let Err(s) = r {
            out.push((name, s));
        }
    };
    let req = pb::RegisterRequest { id, dim: dim as u64, ..Default::default() };
    push("register", c.register(req).await.map(drop));
    push("heartbeat", c.heartbeat(pb::HeartbeatRequest { id, ..Default::default() }).await.map(drop));
    let req = pb::ReportRequest { id, iteration: 50, x: x.into(), ..Default::default() };
    push("report", c.report(req).await.map(drop));
    let req = pb::FinishRequest { id, iteration: 1, error: "forged".into() };
    push("finish", c.finish(req).await.map(drop));
    push("sync", c.sync(pb::SyncRequest { id, ..Default::default() }).await.map(drop));
    push("lost", c.lost(pb::LostRequest { id, peer: 2, ..Default::default() }).await.map(drop));
    push("leave", c.leave(pb::LeaveRequest { id, ..Default::default() }).await.map(drop));
    let req = pb::CheckpointedRequest { id, iteration: 0 };
    push("checkpointed", c.checkpointed(req).await.map(drop));
    out
}

/// `f`'s result, which must come within 30 s (a hang is a defect, named here).
async fn answered<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(30), f).await.expect("answered within 30 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_calls_are_refused_and_the_run_completes_with_every_row() {
    let run = prepared();
    let dim = run.dim();
    let tls = tempfile::tempdir().unwrap();
    dprox_net::certs::make(tls.path(), 3).unwrap();
    let out = tempfile::tempdir().unwrap();
    let started = InProcess::new(run.clone()).tls(tls.path()).out(out.path()).start(0..3).await.unwrap();
    let addr = started.coordinator.clone();

    // No certificate: plaintext, or TLS without a client certificate. Refused at the handshake,
    // every call (status included).
    let ca = std::fs::read(tls.path().join("ca.pem")).unwrap();
    let no_cert = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&ca))
        .domain_name(Peer::Coordinator.dns_name());
    let endpoints = [
        tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap(),
        tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(no_cert)
            .unwrap(),
    ];
    for endpoint in endpoints {
        let mut c = CoordinatorClient::new(endpoint.connect_lazy());
        let refused = answered(every_call(&mut c, 0, dim)).await;
        assert_eq!(refused.len(), 8, "{refused:?}");
        assert!(c.status(pb::StatusRequest {}).await.is_err());
    }

    // Node 1's certificate may not act for node 0; neither may the operator's.
    for who in [Peer::Node(1), Peer::Operator] {
        let mut c = client_as(tls.path(), who, &addr).await;
        let refused = answered(every_call(&mut c, 0, dim)).await;
        let names: Vec<_> = refused.iter().map(|r| r.0).collect();
        assert_eq!(
            names,
            ["register", "heartbeat", "report", "finish", "sync", "lost", "leave", "checkpointed"]
        );
        for (name, s) in refused {
            assert_eq!(s.code(), tonic::Code::PermissionDenied, "{name}: {s:?}");
            assert_eq!(s.message(), format!("{who} may not act for node 0"), "{name}");
        }
    }

    // Node 1's own certificate: what it sends is checked.
    let mut c = client_as(tls.path(), Peer::Node(1), &addr).await;
    assert!(c.status(pb::StatusRequest {}).await.is_ok(), "a member may read the status");
    let e = c.finish(pb::FinishRequest { id: 1, iteration: 2, error: String::new() }).await.unwrap_err();
    assert!(e.message().starts_with("node 1 says it finished, but its last report is of iteration"), "{e:?}");
    let report = |iteration: u64, x: Vec<f32>| pb::ReportRequest {
        id: 1,
        iteration,
        x: x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into(),
        ..Default::default()
    };
    let mut nan = vec![0.0; dim];
    nan[3] = f32::NAN;
    let cases = [
        (report(ITERATIONS - 50, nan), "non-finite"),
        (report(7, vec![0.0; dim]), "7"),
        (report(ITERATIONS + 50, vec![0.0; dim]), "450"),
        (report(ITERATIONS - 50, vec![0.0; dim + 1]), "parameters, the run has"),
    ];
    for (req, says) in cases {
        let e = c.report(req).await.unwrap_err();
        assert!(e.message().contains(says), "{says}: {e:?}");
    }

    // The run is unharmed: every node completes and every row is there, finite.
    let status = format!("{:?}", c.status(pb::StatusRequest {}).await.map(|r| r.into_inner()));
    let joined = tokio::time::timeout(std::time::Duration::from_secs(120), started.join()).await;
    let (nodes, summary) = joined.unwrap_or_else(|_| {
        panic!("the run did not end within 120 s; status when the attack ended: {status}")
    });
    for (id, outcome) in nodes {
        assert_eq!(outcome.unwrap().iterations, ITERATIONS, "node {id}");
    }
    assert_eq!(summary.unwrap().iterations, ITERATIONS);
    let csv = std::fs::read_to_string(out.path().join("metrics.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len() as u64, ITERATIONS / 50 + 1, "{csv}");
    assert!(!csv.contains("NaN") && !csv.contains("inf"), "{csv}");
}
