//! Neighbours on one host hand their messages over in the receiver's shared memory: the same
//! payloads arrive, the chunk carries only the slot, a full segment falls back to bytes in the
//! chunks, and a slot reference that does not match the receiver's segment is refused by name.

use std::time::Duration;

use bytes::Bytes;
use dprox_compress::{Body, Compressed, ValueFormat};
use dprox_transport::memory::framed_in_memory;
use dprox_transport::{Auth, CallEnd, GossipService, Inbound, PeerClient, Queued, framed_len, pb};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

/// 300,000 parameters: a dense message is 1.2 MB (two chunks when sent as bytes).
const DIM: usize = 300_000;
const WAIT: Duration = Duration::from_secs(10);

/// A node serving gossip (with shared memory if `memory`), its inbox holding `inbox` messages.
async fn serve(memory: bool, inbox: usize) -> (String, mpsc::Receiver<Inbound>) {
    let (stop, rx) = watch::channel(false);
    std::mem::forget(stop); // (never stops)
    serve_until(memory, inbox, rx).await
}

/// The same, ending its links once `stop` turns true.
async fn serve_until(
    memory: bool,
    inbox: usize,
    stop: watch::Receiver<bool>,
) -> (String, mpsc::Receiver<Inbound>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (atx, arx) = watch::channel(Some(Auth { run_id: "r1".into(), token: vec![7; 16], peers: vec![1] }));
    let (in_tx, rx) = mpsc::channel(inbox);
    let svc = GossipService::new(DIM, arx, in_tx, Duration::from_secs(1))
        .with_shared_memory(memory)
        .with_stop(stop);
    tokio::spawn(async move {
        let _keep = atx;
        dprox_transport::server(&dprox_net::Security::Insecure, &dprox_net::limits::GOSSIP)
            .unwrap()
            .add_service(svc.into_server())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    (addr, rx)
}

fn values(it: u64) -> Vec<f32> {
    (0..DIM).map(|i| (i as f32 * 0.01 + it as f32).sin()).collect()
}

/// The dense message of iteration `it`.
fn message(it: u64) -> Queued {
    let mut b = Vec::new();
    Compressed { dim: DIM, body: Body::Dense { format: ValueFormat::F32, values: values(it) } }
        .encode(&mut b);
    let header = pb::Header {
        run_id: "r1".into(),
        token: vec![7; 16].into(),
        from: 1,
        iteration: it,
        exchange: 1,
        length: b.len() as u64,
        epoch: 0,
    };
    (header, Bytes::from(b))
}

/// Sends messages `0..n` over one link (asking for shared memory); returns whether the link
/// used it and each message's framed figure as the sender counted it.
async fn send_all(addr: &str, n: u64) -> (bool, Vec<u64>) {
    let client = PeerClient::new(1, addr, &dprox_net::Security::Insecure).unwrap().with_shared_memory(true);
    let (queue, mut rx) = mpsc::unbounded_channel();
    for it in 1..n {
        queue.send(message(it)).unwrap();
    }
    drop(queue);
    let mut link = client.clone();
    let mut framed = Vec::new();
    let end = timeout(WAIT, link.push_queue(message(0), &mut rx, None, |s| framed.push(s.framed))).await;
    assert_eq!(end.expect("the link drains").unwrap(), CallEnd::Drained);
    (client.in_shared_memory(), framed)
}

/// What a dense message of iteration `it` costs in shared memory, and as bytes in chunks.
fn costs(it: u64) -> (u64, u64) {
    let (h, data) = message(it);
    let slot = pb::MemorySlot { generation: 1, index: (it % 4) as u32, sequence: it + 1 };
    (framed_in_memory(&h, &slot, data.len()), framed_len(&h, data.len()))
}

async fn next(inbox: &mut mpsc::Receiver<Inbound>) -> Inbound {
    timeout(WAIT, inbox.recv()).await.expect("a message within 10 s").expect("the inbox is open")
}

#[tokio::test]
async fn co_located_messages_travel_in_slots_and_arrive_as_sent() {
    let (addr, mut inbox) = serve(true, 16).await;
    let (used, framed) = send_all(&addr, 3).await;
    assert!(used, "the link opened the receiver's segment");
    for it in 0..3 {
        let m = next(&mut inbox).await;
        let Body::Dense { values: got, .. } = &m.payload.body else { panic!("a dense message") };
        assert_eq!((m.iteration, got), (it, &values(it)), "message {it} decodes to what was sent");
        assert_eq!(m.framed, costs(it).0, "the receiver counts the slot's figure");
        assert_eq!(framed[it as usize], m.framed, "sender and receiver count alike");
        assert!(costs(it).0 < costs(it).1, "in memory, the chunk carries no bytes");
    }
}

#[tokio::test]
async fn a_full_segment_sends_the_bytes_in_chunks_in_order() {
    // The receiver takes one message into its inbox and decodes a second, then waits: the link
    // fills the four slots, and what follows travels as bytes.
    let (addr, mut inbox) = serve(true, 1).await;
    let sender = tokio::spawn({
        let addr = addr.clone();
        async move { send_all(&addr, 9).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut got = Vec::new();
    for it in 0..9 {
        let m = next(&mut inbox).await;
        let Body::Dense { values: v, .. } = &m.payload.body else { panic!("a dense message") };
        assert_eq!((m.iteration, v), (it, &values(it)), "message {it} arrives in order, intact");
        got.push(m.framed);
    }
    let (used, framed) = sender.await.unwrap();
    assert!(used);
    assert_eq!(framed, got, "sender and receiver count alike");
    let as_bytes = (0..9).filter(|&it| got[it as usize] == costs(it).1).count();
    assert!((3..=5).contains(&as_bytes), "4 to 6 messages in slots, the rest as bytes: {got:?}");
}

#[tokio::test]
async fn a_node_without_shared_memory_gets_the_bytes() {
    let (addr, mut inbox) = serve(false, 16).await;
    let (used, framed) = send_all(&addr, 2).await;
    assert!(!used, "the receiver offers no segment");
    assert_eq!(framed, vec![costs(0).1, costs(1).1]);
    assert_eq!(
        next(&mut inbox).await.payload.body,
        Body::Dense { format: ValueFormat::F32, values: values(0) }
    );
}

#[tokio::test]
async fn a_link_whose_peer_stopped_asks_for_a_new_segment_at_its_next_call() {
    let (stop, stop_rx) = watch::channel(false);
    let (addr, mut inbox) = serve_until(true, 16, stop_rx).await;
    let client = PeerClient::new(1, &addr, &dprox_net::Security::Insecure).unwrap().with_shared_memory(true);
    let (queue, mut rx) = mpsc::unbounded_channel();
    let mut link = client.clone();
    let call = tokio::spawn(async move { link.push_queue(message(0), &mut rx, None, |_| {}).await });
    assert_eq!(next(&mut inbox).await.framed, costs(0).0, "the first message went through a slot");
    assert!(client.in_shared_memory());
    stop.send_replace(true);
    assert_eq!(timeout(WAIT, call).await.unwrap().unwrap().unwrap(), CallEnd::PeerStopped);
    assert!(!client.in_shared_memory(), "the segment of the peer that stopped is forgotten");
    drop(queue);
}

/// Pushes one chunk naming `slot` for the dense message of iteration 0; the receiver's refusal.
async fn push_slot(
    client: &mut pb::gossip_client::GossipClient<tonic::transport::Channel>,
    slot: pb::MemorySlot,
) -> tonic::Status {
    let chunk = pb::Chunk { header: Some(message(0).0), data: Bytes::new(), slot: Some(slot) };
    client.push(tokio_stream::iter([chunk])).await.unwrap_err()
}

#[tokio::test]
async fn slot_references_and_segment_requests_that_do_not_match_are_refused() {
    let (addr, _inbox) = serve(true, 16).await;
    let mut raw = pb::gossip_client::GossipClient::connect(format!("http://{addr}")).await.unwrap();
    let slot = pb::MemorySlot { generation: 1, index: 0, sequence: 1 };
    let s = push_slot(&mut raw, slot).await;
    assert_eq!(s.code(), tonic::Code::FailedPrecondition);
    assert_eq!(s.message(), "node 1 names a shared-memory slot, but holds no segment here");

    let ask = |token: u8, from: u32| pb::OpenMemoryRequest {
        run_id: "r1".into(),
        token: vec![token; 16].into(),
        from,
    };
    let s = raw.open_memory(ask(9, 1)).await.unwrap_err();
    assert_eq!(
        (s.code(), s.message()),
        (tonic::Code::Unauthenticated, "the request does not carry this run's id and token")
    );
    let s = raw.open_memory(ask(7, 2)).await.unwrap_err();
    assert_eq!(
        (s.code(), s.message()),
        (tonic::Code::PermissionDenied, "node 2 may not open shared memory here")
    );
    let reply = raw.open_memory(ask(7, 1)).await.unwrap().into_inner();
    assert_eq!((reply.generation, reply.slots, reply.slot_bytes), (1, 4, 1_200_256));

    let refused = |what: &str| format!("the shared-memory message from node 1 {what}");
    let s = push_slot(&mut raw, slot).await;
    assert_eq!(s.message(), refused("names message 1 of slot 0, which holds message 0"));
    let s = push_slot(&mut raw, pb::MemorySlot { index: 4, ..slot }).await;
    assert_eq!(s.message(), refused("names slot 4 of 4"));
    let s = push_slot(&mut raw, pb::MemorySlot { generation: 2, ..slot }).await;
    assert_eq!(s.message(), refused("names segment 2, which this node does not hold"));
    let (h, _) = message(0);
    let both = pb::Chunk { header: Some(h), data: Bytes::from_static(b"x"), slot: Some(slot) };
    let s = raw.push(tokio_stream::iter([both])).await.unwrap_err();
    assert_eq!(s.message(), refused("also carries bytes in its chunk"));
}
