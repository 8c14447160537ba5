//! A cluster started by `dprox launch` (mutual TLS, the default) under attack from this process,
//! over loopback, in bounded counts: 1,000 gossip streams that never send their message (over a
//! stolen node certificate), 1,000 TCP connections that never start a TLS handshake, 10 reports
//! of 60 MiB, and 10,000 idle HTTP connections to the status page. The run completes with every
//! row, and no process's peak memory (VmHWM) passes [`PEAK_BOUND_MIB`] (undisturbed: about 95).

mod common;

use std::io::BufRead;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use dprox_net::{Peer, Security};
use dprox_transport::pb;

/// The bound on every process's peak resident memory under the attack, MiB.
const PEAK_BOUND_MIB: u64 = 160;
const ITERATIONS: u64 = 6000;

/// Peak resident memory (VmHWM) of `pid`, KiB, while it lives.
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples the peak memory of the launcher's children until `stop`: (pid, role, KiB).
fn sample_peaks(launcher: u32, stop: Arc<AtomicBool>) -> Arc<Mutex<Vec<(u32, String, u64)>>> {
    let peaks = Arc::new(Mutex::new(Vec::new()));
    let out = peaks.clone();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            for pid in children_of(launcher) {
                let Some(kib) = vm_hwm(pid) else { continue };
                let role = cmdline(pid).iter().skip(1).take(4).cloned().collect::<Vec<_>>().join(" ");
                let mut p = out.lock().unwrap();
                match p.iter_mut().find(|e: &&mut (u32, String, u64)| e.0 == pid) {
                    Some(e) => e.2 = e.2.max(kib),
                    None => p.push((pid, role, kib)),
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    peaks
}

/// 1,000 Push streams to `address` over 16 connections with node 1's certificate, each sending
/// nothing: the receiver holds each until its chunk deadline. Returns how many ended (refused
/// or timed out) within `within`.
async fn unfinished_gossip(tls: PathBuf, address: String, within: Duration) -> usize {
    let security = Security::load(&tls, Peer::Node(1)).unwrap();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let channel = security.endpoint(&address, Peer::Node(0)).unwrap().connect().await.unwrap();
        for _ in 0..1000 / 16 + 1 {
            let mut c = pb::gossip_client::GossipClient::new(channel.clone());
            calls.spawn(async move { c.push(tokio_stream::pending::<pb::Chunk>()).await.is_err() });
        }
    }
    let mut ended = 0;
    let _ = tokio::time::timeout(within, async {
        while let Some(r) = calls.join_next().await {
            ended += usize::from(r.unwrap_or(false));
        }
    })
    .await;
    ended
}

/// 10 concurrent reports of 60 MiB for node 1 (its certificate): every one refused.
async fn huge_reports(tls: &Path, coordinator: &str) -> Vec<String> {
    let security = Security::load(tls, Peer::Node(1)).unwrap();
    let channel = security.endpoint(coordinator, Peer::Coordinator).unwrap().connect().await.unwrap();
    let x = bytes::Bytes::from(vec![0u8; 60 << 20]);
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let mut c = pb::coordinator_client::CoordinatorClient::new(channel.clone())
            .max_encoding_message_size(usize::MAX);
        let req = pb::ReportRequest { id: 1, iteration: 100, x: x.clone(), ..Default::default() };
        calls.spawn(async move { c.report(req).await.map(drop).map_err(|e| e.message().to_string()) });
    }
    calls.join_all().await.into_iter().map(|r| r.expect_err("refused")).collect()
}

/// Opens `count` TCP connections to `address` and keeps them open, sending nothing.
fn idle_connections(address: &str, count: usize) -> Vec<TcpStream> {
    (0..count).filter_map(|_| TcpStream::connect(address).ok()).collect()
}

#[test]
fn a_launched_cluster_completes_under_hostile_clients_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo("deploy/cluster/ring4.toml")).unwrap();
    let data = repo("data/mnist_5k.csv.gz");
    let text = text
        .replace("iterations = 300", &format!("iterations = {ITERATIONS}"))
        .replace("eval_every = 20", "eval_every = 500")
        .replace("../../data/mnist_5k.csv.gz", data.to_str().unwrap());
    let cfg = dir.path().join("hostile.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = dir.path().join("out");
    let mut child = dprox()
        .arg("launch")
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .args(["--http-addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (mut url, mut coordinator) = (None, None);
    let mut lines = stderr.lines();
    while url.is_none() || coordinator.is_none() {
        let l = lines.next().expect("the launcher's first lines").unwrap();
        if let Some(u) = l.strip_prefix("status page: ") {
            url = Some(u.to_string());
        }
        if let Some(rest) = l.strip_prefix("launched coordinator at ") {
            coordinator = rest.split_whitespace().next().map(String::from);
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    let (url, coordinator) = (url.unwrap(), coordinator.unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let peaks = sample_peaks(child.id(), stop.clone());
    let address = || {
        let status: serde_json::Value = serde_json::from_str(&http_get(&url, "/api/status").1).unwrap();
        status["nodes"][0]["address"].as_str().unwrap_or_default().to_string()
    };
    wait_until("node 0 registered", 60, || !address().is_empty()).unwrap();
    let gossip0 = address();
    let tls = out.join("tls");
    let t0 = Instant::now();

    // The cluster speaks TLS: a plaintext client is refused by the coordinator and the nodes.
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (address, peer) in [(&coordinator, Peer::Coordinator), (&gossip0, Peer::Node(0))] {
        let plain = Security::Insecure.endpoint(address, peer).unwrap();
        let e = rt.block_on(async {
            let mut c = pb::coordinator_client::CoordinatorClient::new(plain.connect_lazy());
            c.status(pb::StatusRequest {}).await.unwrap_err()
        });
        // The server answers HTTP/2 with a TLS alert: a protocol or transport error, never a reply.
        assert_ne!(e.code(), tonic::Code::Ok, "{peer}");
    }

    // With a stolen node certificate: unfinished gossip streams (their connections first: the
    // floods below fill the connection caps), and huge reports.
    let streams = rt.spawn(unfinished_gossip(tls.clone(), gossip0.clone(), Duration::from_secs(45)));
    std::thread::sleep(Duration::from_secs(1));
    let refusals = rt.block_on(huge_reports(&tls, &coordinator));
    for r in &refusals {
        assert!(r.contains("message length too large") || r.contains("larger than max"), "{r}");
    }

    // Unauthenticated: TCP connections that never start the handshake (gossip, coordinator),
    // and idle HTTP connections to the status page.
    let raw_gossip = idle_connections(&gossip0, 1000);
    let raw_coordinator = idle_connections(&coordinator, 1000);
    let http_host = url.trim_start_matches("http://").trim_end_matches('/').to_string();
    let http = idle_connections(&http_host, 10_000);
    eprintln!(
        "opened {} + {} + {} idle connections in {:.1} s",
        raw_gossip.len(),
        raw_coordinator.len(),
        http.len(),
        t0.elapsed().as_secs_f64()
    );
    let ended = rt.block_on(streams).unwrap();
    eprintln!("{ended} unfinished gossip streams ended by the receiver");

    let status = child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    drop((raw_gossip, raw_coordinator, http));
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(status.success(), "{stdout}");
    assert!(stdout.contains(&format!("4 nodes, {ITERATIONS} iterations")), "{stdout}");
    let rows = std::fs::read_to_string(out.join("metrics.csv")).unwrap().lines().count() - 1;
    assert_eq!(rows as u64, ITERATIONS / 500 + 1);
    let peaks = peaks.lock().unwrap().clone();
    assert_eq!(peaks.len(), 5, "the coordinator and four nodes: {peaks:?}");
    for (pid, role, kib) in peaks {
        eprintln!("peak memory of {pid} ({role}): {:.1} MiB", kib as f64 / 1024.0);
        assert!(kib < PEAK_BOUND_MIB * 1024, "{role}: {kib} KiB");
    }
    assert!(ended >= 1000, "every unfinished stream was ended by the receiver: {ended}");
}
