//! A link's call carries its messages back to back: each is delivered as soon as it has arrived
//! (not when the call ends), a refused one ends the link with the receiver's reason, and a node
//! that stops serving ends an idle link with an acknowledgement.

use std::time::Duration;

use bytes::Bytes;
use dprox_compress::{Body, Compressed, ValueFormat};
use dprox_transport::{
    Auth, CallEnd, GossipService, Inbound, PeerClient, Queued, SendStats, TransportError, pb,
};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

/// 300,000 parameters: a dense message is 1.2 MB, two chunks.
const DIM: usize = 300_000;
const WAIT: Duration = Duration::from_secs(10);

async fn serve(stop: watch::Receiver<bool>) -> (String, mpsc::Receiver<Inbound>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (atx, arx) = watch::channel(Some(Auth { run_id: "r1".into(), token: vec![7; 16], peers: vec![1] }));
    let (in_tx, inbox) = mpsc::channel(16);
    let svc = GossipService::new(DIM, arx, in_tx, Duration::from_secs(1)).with_stop(stop).into_server();
    tokio::spawn(async move {
        let _keep = atx;
        dprox_transport::server(&dprox_net::Security::Insecure, &dprox_net::limits::GOSSIP)
            .unwrap()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    (addr, inbox)
}

/// A message of iteration `it`: dense (two chunks) when `dense`, else a few values; `token`
/// 7 is the run's.
fn message(it: u64, dense: bool, token: u8) -> Queued {
    let n = if dense { DIM } else { 3 };
    let values: Vec<f32> = (0..n).map(|i| (i as f32 + it as f32).sin()).collect();
    let body = if dense {
        Body::Dense { format: ValueFormat::F32, values }
    } else {
        Body::Sparse { format: ValueFormat::F32, indices: vec![1, 10, 100], values }
    };
    let mut b = Vec::new();
    Compressed { dim: DIM, body }.encode(&mut b);
    let header = pb::Header {
        run_id: "r1".into(),
        token: vec![token; 16].into(),
        from: 1,
        iteration: it,
        exchange: 1,
        length: b.len() as u64,
        epoch: 0,
    };
    (header, Bytes::from(b))
}

/// Runs a link's call in a task: its outcome, the queue back, and what `sent` reported.
type Link = tokio::task::JoinHandle<(Result<CallEnd, TransportError>, Vec<SendStats>)>;

fn link(addr: &str, first: Queued, mut queue: mpsc::UnboundedReceiver<Queued>) -> Link {
    let mut client = PeerClient::new(1, addr, &dprox_net::Security::Insecure).unwrap();
    tokio::spawn(async move {
        let mut sent = Vec::new();
        let r = client.push_queue(first, &mut queue, None, |s| sent.push(s)).await;
        (r, sent)
    })
}

async fn next(inbox: &mut mpsc::Receiver<Inbound>) -> Inbound {
    timeout(WAIT, inbox.recv()).await.expect("a message within 10 s").expect("the inbox is open")
}

#[tokio::test]
async fn a_links_messages_arrive_one_by_one_while_its_call_stays_open() {
    let (_stop, stop_rx) = watch::channel(false);
    let (addr, mut inbox) = serve(stop_rx).await;
    let (queue, rx) = mpsc::unbounded_channel();
    let task = link(&addr, message(0, true, 7), rx);
    let first = next(&mut inbox).await;
    assert_eq!((first.iteration, first.bytes), (0, message(0, true, 7).1.len()));
    queue.send(message(1, false, 7)).unwrap();
    assert_eq!(next(&mut inbox).await.iteration, 1);
    queue.send(message(2, true, 7)).unwrap();
    let third = next(&mut inbox).await;
    assert!(!task.is_finished(), "each message is delivered while the link's call is open");
    assert_eq!(third.iteration, 2);
    let Body::Dense { values, .. } = &third.payload.body else { panic!("a dense message") };
    assert_eq!(values[DIM - 1], (DIM as f32 - 1.0 + 2.0).sin(), "the two chunks decode to the vector");

    drop(queue);
    let (end, sent) = timeout(WAIT, task).await.expect("the call ends once the queue closes").unwrap();
    assert_eq!(end.unwrap(), CallEnd::Drained);
    let framed: Vec<u64> = sent.iter().map(|s| s.framed).collect();
    assert_eq!(framed, vec![first.framed, framed[1], third.framed], "sender and receiver count alike");
    assert_eq!(sent[1].payload, message(1, false, 7).1.len() as u64);
}

#[tokio::test]
async fn a_refused_message_ends_the_link_with_the_receivers_reason_and_those_before_it_arrive() {
    let (_stop, stop_rx) = watch::channel(false);
    let (addr, mut inbox) = serve(stop_rx).await;
    let (queue, rx) = mpsc::unbounded_channel();
    for m in [message(1, false, 7), message(2, false, 9), message(3, false, 7)] {
        queue.send(m).unwrap();
    }
    let task = link(&addr, message(0, false, 7), rx);
    let (end, _) = timeout(WAIT, task).await.expect("the refusal ends the call").unwrap();
    match end {
        Err(TransportError::Send { peer: 1, iteration, message, .. }) => {
            assert!(message.contains("does not carry this run's id and token"), "{message}");
            // The latest message handed over when the refusal came: the bad one or the next.
            assert!((2..=3).contains(&iteration), "iteration {iteration}");
        }
        other => panic!("expected the refusal, got {other:?}"),
    }
    assert_eq!(next(&mut inbox).await.iteration, 0);
    assert_eq!(next(&mut inbox).await.iteration, 1);
    assert!(inbox.try_recv().is_err(), "nothing from or after the refused message");
    drop(queue);
}

#[tokio::test]
async fn a_node_that_stops_serving_ends_an_idle_link_with_an_acknowledgement() {
    let (stop, stop_rx) = watch::channel(false);
    let (addr, mut inbox) = serve(stop_rx).await;
    let (queue, rx) = mpsc::unbounded_channel();
    let task = link(&addr, message(0, false, 7), rx);
    assert_eq!(next(&mut inbox).await.iteration, 0);
    stop.send_replace(true);
    let (end, sent) = timeout(WAIT, task).await.expect("the stop ends the idle call").unwrap();
    assert_eq!(end.unwrap(), CallEnd::PeerStopped, "the queue is still open");
    assert_eq!(sent.len(), 1);
    drop(queue);
}
