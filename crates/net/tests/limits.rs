//! The limits of a listening port, over loopback: connections over the cap are closed at once,
//! an HTTP client that sends no request is dropped after the header timeout, a token-protected
//! endpoint answers 401 without it, and `dprox certs` files bind each identity.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use dprox_net::limits::{HTTP, Limits};
use tokio_stream::StreamExt;

/// Whether the server closed `s` within `within` (a read returns end of file or a reset).
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(e.kind(), std::io::ErrorKind::ConnectionReset),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_at_once_and_a_freed_slot_is_reused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = Limits { max_connections: 2, ..HTTP };
    let mut conns = dprox_net::incoming(listener, limits, "test", false);
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(c) = conns.next().await {
            held.push(c.unwrap());
            if held.len() == 2 {
                // Frees one slot a second after the cap is reached.
                tokio::time::sleep(Duration::from_secs(1)).await;
                held.remove(0);
            }
        }
    });
    let result = tokio::task::spawn_blocking(move || {
        let mut a = TcpStream::connect(addr).unwrap();
        let mut b = TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let mut c = TcpStream::connect(addr).unwrap();
        assert!(closed_within(&mut c, Duration::from_millis(500)), "the third connection is closed");
        assert!(!closed_within(&mut b, Duration::from_millis(100)), "the second is served");
        std::thread::sleep(Duration::from_secs(1));
        assert!(closed_within(&mut a, Duration::from_millis(500)), "the first was let go");
        let mut d = TcpStream::connect(addr).unwrap();
        assert!(!closed_within(&mut d, Duration::from_millis(200)), "its slot serves a new one");
    })
    .await;
    held.abort();
    result.unwrap();
}

fn get(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_needs_its_headers_in_time_and_the_token_when_there_is_one() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new().route("/api/status", axum::routing::get(|| async { "ok" }));
    let router = dprox_net::http::with_bearer(router, Some("s3cret-token".into()));
    let limits = Limits { handshake_timeout: Duration::from_millis(300), ..HTTP };
    tokio::spawn(dprox_net::http::serve(listener, router, limits, "test", std::future::pending()));
    tokio::task::spawn_blocking(move || {
        // Silent client: dropped after the header timeout.
        let mut idle = TcpStream::connect(addr).unwrap();
        let t0 = Instant::now();
        assert!(closed_within(&mut idle, Duration::from_secs(5)));
        assert!(t0.elapsed() >= Duration::from_millis(250), "{:?}", t0.elapsed());
        // No token, a wrong one, the right one in the header or the query.
        let ask = |extra: &str, query: &str| {
            get(
                addr,
                &format!("GET /api/status{query} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"),
            )
        };
        let none = ask("", "");
        assert!(none.starts_with("HTTP/1.1 401"), "{none}");
        assert!(!none.contains("s3cret"), "the refusal shows no token bytes: {none}");
        assert!(ask("Authorization: Bearer s3cret-tokeN\r\n", "").starts_with("HTTP/1.1 401"));
        assert!(ask("Authorization: Bearer s3cret-token\r\n", "").starts_with("HTTP/1.1 200"));
        assert!(ask("", "?token=s3cret-token").starts_with("HTTP/1.1 200"));
    })
    .await
    .unwrap();
}

#[test]
fn certificates_bind_each_identity_and_keys_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let written = dprox_net::certs::make(dir.path(), 2).unwrap();
    assert_eq!(written.len(), 2 + 2 * 4, "CA, two nodes, the coordinator, the operator");
    for (stem, peer) in [
        ("node-0", dprox_net::Peer::Node(0)),
        ("node-1", dprox_net::Peer::Node(1)),
        ("coordinator", dprox_net::Peer::Coordinator),
        ("operator", dprox_net::Peer::Operator),
    ] {
        let pem = std::fs::read_to_string(dir.path().join(format!("{stem}.pem"))).unwrap();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect::<Vec<_>>().concat();
        let der = base64_decode(&b64);
        assert_eq!(dprox_net::Peer::of_certificate(&der), Some(peer), "{stem}");
        let mode = std::fs::metadata(dir.path().join(format!("{stem}.key"))).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{stem}.key");
    }
    // Made again for a larger cluster: the CA and existing identities are kept.
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let more = dprox_net::certs::make(dir.path(), 3).unwrap();
    assert_eq!(more, [dir.path().join("node-2.pem"), dir.path().join("node-2.key")]);
    assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca);
}

/// Standard base64 (the body of a PEM file).
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').map(val).collect();
    bytes
        .chunks(4)
        .flat_map(|c| {
            let n = c.iter().enumerate().fold(0u32, |acc, (i, &v)| acc | (v as u32) << (18 - 6 * i));
            let len = c.len() * 6 / 8;
            (0..len).map(move |i| (n >> (16 - 8 * i)) as u8)
        })
        .collect()
}
