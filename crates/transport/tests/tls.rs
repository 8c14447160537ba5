//! Gossip over mutual TLS: the sender of a message is the node its certificate names. A client
//! without a certificate of the cluster is refused at the handshake, and a node's certificate
//! cannot carry a message that claims another sender.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use dprox_compress::{Compressed, Compressor, CompressorSpec, ValueFormat};
use dprox_net::{Peer, Security};
use dprox_transport::{Auth, GossipService, Inbound, PeerClient, TransportError, pb};
use tokio::sync::{mpsc, watch};

const DIM: usize = 64;

/// Node 0's gossip server over TLS, with neighbours 1 and 2.
async fn serve(dir: &Path) -> (String, mpsc::Receiver<Inbound>, watch::Sender<Option<Auth>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let auth = Auth { run_id: "r1".into(), token: vec![7; 16], peers: vec![1, 2] };
    let (auth_tx, auth_rx) = watch::channel(Some(auth));
    let (in_tx, in_rx) = mpsc::channel(16);
    let svc = GossipService::new(DIM, auth_rx, in_tx, Duration::from_secs(1)).with_tls(true).into_server();
    let security = Security::load(dir, Peer::Node(0)).unwrap();
    let limits = dprox_net::limits::GOSSIP;
    let server = security.server(&limits).unwrap().add_service(svc);
    tokio::spawn(server.serve_with_incoming(dprox_net::incoming(listener, limits, "gossip", true)));
    (addr, in_rx, auth_tx)
}

fn header(from: u32, length: usize) -> pb::Header {
    pb::Header {
        run_id: "r1".into(),
        token: vec![7; 16].into(),
        from,
        iteration: 0,
        exchange: 1,
        length: length as u64,
        epoch: 0,
    }
}

fn message() -> Bytes {
    let v: Vec<f32> = (0..DIM).map(|i| i as f32 * 0.5).collect();
    let spec = CompressorSpec::TopK { ratio: 0.25, values: ValueFormat::F32 };
    let mut q = Compressor::new(spec, DIM).unwrap();
    let mut m = Compressed::new(DIM);
    q.compress(&v, 0, &mut m);
    let mut b = Vec::new();
    m.encode(&mut b);
    Bytes::from(b)
}

async fn send_as(security: &Security, addr: &str, from: u32) -> Result<(), TransportError> {
    let data = message();
    PeerClient::new(0, addr, security)?.send(header(from, data.len()), data, None).await.map(|_| ())
}

#[tokio::test]
async fn the_sender_is_who_the_certificate_says() {
    let dir = tempfile::tempdir().unwrap();
    dprox_net::certs::make(dir.path(), 3).unwrap();
    let (addr, mut inbox, _auth) = serve(dir.path()).await;
    let node1 = Security::load(dir.path(), Peer::Node(1)).unwrap();

    // Node 1's certificate, node 1's message: delivered, from node 1.
    send_as(&node1, &addr, 1).await.unwrap();
    let m = inbox.recv().await.unwrap();
    assert_eq!((m.from, m.iteration), (1, 0));

    // Node 1's certificate, a message claiming node 2: refused, nothing delivered.
    let e = send_as(&node1, &addr, 2).await.unwrap_err().to_string();
    assert!(e.contains("a message claiming to be from node 2 came with node 1's certificate"), "{e}");

    // The coordinator's and the operator's certificates are of the cluster, but not nodes.
    for who in [Peer::Coordinator, Peer::Operator] {
        let s = Security::load(dir.path(), who).unwrap();
        let e = send_as(&s, &addr, 1).await.unwrap_err().to_string();
        assert!(e.contains(&format!("{who} may not call a node's gossip")), "{e}");
    }
    assert!(inbox.try_recv().is_err(), "no refused message reached the node");

    // Still serving node 1.
    send_as(&node1, &addr, 1).await.unwrap();
    assert_eq!(inbox.recv().await.unwrap().from, 1);
}

#[tokio::test]
async fn clients_without_a_certificate_of_the_cluster_are_refused_at_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    dprox_net::certs::make(dir.path(), 3).unwrap();
    let (addr, mut inbox, _auth) = serve(dir.path()).await;

    // Plaintext.
    let e = send_as(&Security::Insecure, &addr, 1).await.unwrap_err().to_string();
    assert!(e.contains("to node 0 at") && e.contains("failed: "), "{e}");

    // TLS, trusting the cluster CA, but presenting no certificate.
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&ca))
        .domain_name(Peer::Node(0).dns_name());
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = channel {
        // The handshake may complete on the client's side before the server's refusal arrives:
        // the first call fails then.
        let mut c = pb::gossip_client::GossipClient::new(channel);
        let e = c.ping(pb::PingRequest::default()).await.unwrap_err();
        assert!(format!("{e:?}").contains("CertificateRequired"), "{e:?}");
    }

    // A certificate from another cluster's CA (same names, different CA).
    let other = tempfile::tempdir().unwrap();
    dprox_net::certs::make(other.path(), 3).unwrap();
    let stranger = Security::load(other.path(), Peer::Node(1)).unwrap();
    assert!(send_as(&stranger, &addr, 1).await.is_err());
    assert!(inbox.try_recv().is_err(), "nothing reached the node");
}
