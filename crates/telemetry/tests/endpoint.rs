//! The endpoint serves what was recorded, in the Prometheus text format, over plain HTTP/1.1.
use dprox_telemetry::{install, names, router, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn scrape_shows_counters_gauges_and_histograms_with_help() {
    let handle = install();
    assert!(install().render() == handle.render(), "a second install returns the same recorder");
    metrics::counter!(names::BYTES_SENT, "node" => "3", "peer" => "1", "kind" => "payload").increment(4000);
    metrics::counter!(names::BYTES_SENT, "node" => "3", "peer" => "1", "kind" => "payload").increment(96);
    metrics::gauge!(names::ITERATION, "node" => "3").set(12.0);
    metrics::histogram!(names::GRADIENT_SECONDS, "node" => "3").record(0.002);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, router(handle), async {
        stopped.await.ok();
    }));
    let page = get(addr, "/metrics").await;
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(page.contains("content-type: text/plain; version=0.0.4"), "{page}");
    assert!(page.contains("dprox_bytes_sent_total{node=\"3\",peer=\"1\",kind=\"payload\"} 4096"), "{page}");
    assert!(page.contains("dprox_iteration{node=\"3\"} 12"), "{page}");
    assert!(page.contains("# HELP dprox_iteration Iterations this node has completed"), "{page}");
    // Durations are histograms with the documented buckets: 2 ms falls in le=0.003.
    assert!(page.contains("dprox_gradient_seconds_bucket{node=\"3\",le=\"0.001\"} 0"), "{page}");
    assert!(page.contains("dprox_gradient_seconds_bucket{node=\"3\",le=\"0.003\"} 1"), "{page}");
    assert!(page.contains("dprox_gradient_seconds_count{node=\"3\"} 1"), "{page}");
    assert!(get(addr, "/nothing").await.starts_with("HTTP/1.1 404"));
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// A client that stalls in the middle of a request (a slow or broken scraper) must not keep the
/// endpoint, and so the node or coordinator process, from stopping.
#[tokio::test]
async fn stop_returns_while_a_client_stalls_mid_request() {
    let ep = dprox_telemetry::Endpoint::start("127.0.0.1:0").await.unwrap();
    // One finished scrape on its own connection, then half a request on another.
    let page = get(ep.addr, "/metrics").await;
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    let mut s = tokio::net::TcpStream::connect(ep.addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await; // let the server read it
    tokio::time::timeout(std::time::Duration::from_secs(10), ep.stop())
        .await
        .expect("stop() returned although a request was half sent");
    drop(s);
}
