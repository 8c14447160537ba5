//! The gossip receiver refuses bad messages with a clear status and keeps serving.

use std::time::Duration;

use bytes::Bytes;
use dprox_compress::{Compressed, Compressor, CompressorSpec, ValueFormat};
use dprox_transport::{Auth, GossipService, Inbound, PeerClient, PingError, pb};
use tokio::sync::{mpsc, watch};

const DIM: usize = 1000;

async fn serve() -> (String, mpsc::Receiver<Inbound>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let auth = Auth { run_id: "r1".into(), token: vec![7; 16], peers: vec![1, 2] };
    let (_tx, rx) = watch::channel(Some(auth));
    let (in_tx, in_rx) = mpsc::channel(16);
    let svc = GossipService::new(DIM, rx, in_tx, Duration::from_secs(1)).with_node_metrics(0).into_server();
    tokio::spawn(async move {
        let _keep = _tx;
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    (addr, in_rx)
}

fn header(from: u32, token: u8, length: usize) -> pb::Header {
    pb::Header {
        run_id: "r1".into(),
        token: vec![token; 16].into(),
        from,
        iteration: 0,
        exchange: 1,
        length: length as u64,
        epoch: 0,
    }
}

fn message() -> Bytes {
    let v: Vec<f32> = (0..DIM).map(|i| (i as f32).sin()).collect();
    let mut q = Compressor::new(CompressorSpec::TopK { ratio: 0.05, values: ValueFormat::F32 }, DIM).unwrap();
    let mut m = Compressed::new(DIM);
    q.compress(&v, 0, &mut m);
    let mut b = Vec::new();
    m.encode(&mut b);
    Bytes::from(b)
}

#[tokio::test]
async fn bad_messages_are_refused_and_the_receiver_keeps_working() {
    let metrics = dprox_telemetry::install();
    let (addr, mut inbox) = serve().await;
    let mut client = PeerClient::new(0, &addr, &dprox_net::Security::Insecure).unwrap();
    let good = message();
    let err = |r: Result<_, dprox_transport::TransportError>| r.unwrap_err().to_string();

    // Wrong token.
    let e = err(client.send(header(1, 9, good.len()), good.clone(), None).await);
    assert!(e.contains("does not carry this run's id and token"), "{e}");
    // Not a neighbour.
    let e = err(client.send(header(5, 7, good.len()), good.clone(), None).await);
    assert!(e.contains("node 5 is not a neighbour"), "{e}");
    // Oversized: refused from the header, before anything is buffered.
    let huge = 10 * DIM + 1025;
    let e = err(client.send(header(1, 7, huge), Bytes::from(vec![0u8; 16]), None).await);
    assert!(
        e.contains(&format!(
            "message of {huge} bytes from node 1 exceeds the limit of {} bytes",
            10 * DIM + 1024
        )),
        "{e}"
    );
    // An absurd length is refused from the header alone, at once.
    let e = err(client.send(header(1, 7, usize::MAX), Bytes::from(vec![0u8; 16]), None).await);
    assert!(e.contains(&format!("message of {} bytes from node 1 exceeds the limit", u64::MAX)), "{e}");
    // Length that does not match the data.
    let e = err(client.send(header(1, 7, good.len() + 3), good.clone(), None).await);
    assert!(e.contains(&format!("ended after {} of {} bytes", good.len(), good.len() + 3)), "{e}");
    // Malformed payload (garbage bytes of a plausible length).
    let junk = Bytes::from(vec![0xEEu8; 64]);
    let e = err(client.send(header(1, 7, junk.len()), junk, None).await);
    assert!(e.contains("malformed message from node 1: invalid flags 0xee"), "{e}");
    // Wrong model size.
    let mut other = Vec::new();
    Compressed {
        dim: 999,
        body: dprox_compress::Body::Dense { format: ValueFormat::F32, values: vec![0.0; 999] },
    }
    .encode(&mut other);
    let e = err(client.send(header(2, 7, other.len()), Bytes::from(other), None).await);
    assert!(e.contains("vector length 999 does not match the model's 1000"), "{e}");
    assert!(inbox.try_recv().is_err(), "nothing bad reached the node");
    let page = metrics.render();
    assert!(page.contains("dprox_errors_total{node=\"0\",kind=\"refused\"} 7"), "{page}");

    // And a good message still goes through, decoded.
    let stats = client.send(header(2, 7, good.len()), good.clone(), None).await.unwrap();
    assert_eq!(stats.payload, good.len() as u64);
    assert!(stats.framed > stats.payload);
    let m = inbox.recv().await.unwrap();
    assert_eq!((m.from, m.iteration, m.bytes), (2, 0, good.len()));
    assert_eq!(m.framed, stats.framed, "sender and receiver count the same framed bytes");
    assert_eq!(m.payload.nnz(), 50);
}

#[tokio::test]
async fn large_messages_stream_in_chunks() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let dim = 700_000; // 2.8 MB dense: three 1 MiB chunks
    let (_atx, arx) = watch::channel(Some(Auth { run_id: "r1".into(), token: vec![7; 16], peers: vec![1] }));
    let (in_tx, mut big_inbox) = mpsc::channel(4);
    let svc = GossipService::new(dim, arx, in_tx, Duration::from_secs(1)).into_server();
    tokio::spawn(
        dprox_transport::server(&dprox_net::Security::Insecure, &dprox_net::limits::GOSSIP)
            .unwrap()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let values: Vec<f32> = (0..dim).map(|i| i as f32).collect();
    let m = Compressed { dim, body: dprox_compress::Body::Dense { format: ValueFormat::F32, values } };
    let mut b = Vec::new();
    m.encode(&mut b);
    let n = b.len();
    let mut client = PeerClient::new(0, &addr, &dprox_net::Security::Insecure).unwrap();
    let stats = client.send(header(1, 7, n), Bytes::from(b), None).await.unwrap();
    assert_eq!(stats.payload, n as u64);
    // Three chunks: each a 5-byte gRPC prefix, a data field (tag and 3-byte length; the last
    // chunk's length fits in 3 bytes too), and the header field in the first.
    let h = header(1, 7, n);
    use prost::Message;
    let header_field = 1 + 1 + h.encoded_len() as u64;
    assert_eq!(stats.framed, n as u64 + 3 * (5 + 1 + 3) + header_field);
    let got = big_inbox.recv().await.unwrap();
    assert_eq!(got.payload, m);
    assert_eq!(got.framed, stats.framed);
}

#[test]
fn framed_len_is_the_protobuf_size_of_the_chunks_plus_prefixes() {
    use prost::Message;
    let chunk = dprox_transport::CHUNK_BYTES;
    for n in [0, 1, 127, 128, chunk - 1, chunk, chunk + 1, 3 * chunk, 3 * chunk + 17] {
        let h = header(1, 7, n);
        let data = Bytes::from(vec![0u8; n]);
        let parts = n.div_ceil(chunk).max(1);
        let mut head = Some(h.clone());
        let real: u64 = (0..parts)
            .map(|k| pb::Chunk {
                header: head.take(),
                data: data.slice(k * chunk..((k + 1) * chunk).min(n)),
                slot: None,
            })
            .map(|c| c.encoded_len() as u64 + 5)
            .sum();
        assert_eq!(dprox_transport::framed_len(&h, n), real, "{n} bytes");
    }
    // Closed form: an absurd length costs nothing to price.
    assert!(dprox_transport::framed_len(&header(1, 7, 0), usize::MAX) > u32::MAX as u64);
}

/// A liveness probe tells a peer that is gone (nothing listens: the process exited) from one that
/// is only slow (it accepts the connection but does not answer in time): the node fails the run at
/// once on the first and leaves the second to the message timeout.
#[tokio::test]
async fn ping_tells_a_gone_peer_from_a_slow_one() {
    let (addr, _rx) = serve().await;
    let mut alive = PeerClient::new(1, &addr, &dprox_net::Security::Insecure).unwrap();
    assert_eq!(alive.ping(Duration::from_secs(5)).await, Ok(()));

    // Gone: a port that was bound and released.
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut gone = PeerClient::new(2, &closed, &dprox_net::Security::Insecure).unwrap();
    match gone.ping(Duration::from_secs(5)).await {
        Err(PingError::Unreachable(why)) => assert!(why.contains("Connection refused"), "{why}"),
        other => panic!("expected Unreachable, got {other:?}"),
    }

    // Slow: the TCP connection is accepted (the kernel does it) but nobody speaks HTTP/2.
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut slow =
        PeerClient::new(3, &mute.local_addr().unwrap().to_string(), &dprox_net::Security::Insecure).unwrap();
    let e = slow.ping(Duration::from_millis(300)).await.unwrap_err();
    assert_eq!(e, PingError::NoAnswer(Duration::from_millis(300)));
    assert_eq!(e.to_string(), "no answer to a liveness probe within 0.3 s");
}
