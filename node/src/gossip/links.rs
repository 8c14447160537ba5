//! One sender task per neighbour: messages leave in order, each link is shaped on its own, and
//! the byte counters add up what was delivered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dprox_telemetry::names;
use dprox_transport::{CallEnd, PeerClient, PingError, Queued, SendStats, Shaper, TransportError, pb};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{Outbound, PeerDown, Session};

/// Bytes sent to one neighbour: payload counted when queued, framed when handed to HTTP/2 (also
/// published as `dprox_bytes_sent_total` and `dprox_messages_sent_total`).
struct LinkCounters {
    peer: usize,
    payload: Arc<AtomicU64>,
    framed: Arc<AtomicU64>,
    sent_payload: metrics::Counter,
    messages: metrics::Counter,
}

/// The sending side of a node's gossip.
pub(super) struct Links {
    /// Clients for liveness probes, in peer order.
    probes: Vec<PeerClient>,
    queues: Vec<mpsc::UnboundedSender<Queued>>,
    tasks: JoinSet<()>,
    /// Per neighbour, in the order of `queues`: its id and what was sent to it. The totals are
    /// their sums, so the per-link and per-node figures can never disagree.
    counters: Vec<LinkCounters>,
    run_id: String,
    token: bytes::Bytes,
    id: usize,
    /// Dense f32 size over encoded size of the last message.
    ratio: metrics::Gauge,
    dim: usize,
}

impl Links {
    /// Opens a link to every neighbour of `session`, secured by `security` and asking for shared
    /// memory if `shared_memory`; failed deliveries go to `errors`.
    pub(super) fn new(
        id: usize,
        dim: usize,
        session: &Session,
        (security, shared_memory): (&dprox_net::Security, bool),
        errors: mpsc::UnboundedSender<TransportError>,
    ) -> Result<Links, TransportError> {
        let mut links = Links {
            probes: Vec::new(),
            queues: Vec::new(),
            tasks: JoinSet::new(),
            counters: Vec::new(),
            run_id: session.run_id.clone(),
            token: session.token.clone(),
            id,
            ratio: metrics::gauge!(names::COMPRESSION_RATIO, "node" => id.to_string()),
            dim,
        };
        for (p, shape) in session.peers.iter().zip(&session.shapes) {
            let shaper = shape.map(|s| Shaper::new(s, session.seed, id, p.id));
            let client = PeerClient::new(p.id, &p.address, security)?.with_shared_memory(shared_memory);
            links.open(client, shaper, errors.clone());
        }
        Ok(links)
    }

    /// Starts the sender task of one link.
    fn open(
        &mut self,
        client: PeerClient,
        mut shaper: Option<Shaper>,
        errors: mpsc::UnboundedSender<TransportError>,
    ) {
        let (node, to) = (self.id.to_string(), client.peer.to_string());
        self.counters.push(LinkCounters {
            peer: client.peer,
            payload: Arc::default(),
            framed: Arc::default(),
            sent_payload: metrics::counter!(names::BYTES_SENT, "node" => node.clone(), "peer" => to.clone(), "kind" => "payload"),
            messages: metrics::counter!(names::MESSAGES_SENT, "node" => node.clone(), "peer" => to.clone()),
        });
        let sent_framed =
            metrics::counter!(names::BYTES_SENT, "node" => node.clone(), "peer" => to, "kind" => "framed");
        let send_errors = metrics::counter!(names::ERRORS, "node" => node, "kind" => "send");
        let framed = self.counters.last().expect("just pushed").framed.clone();
        let (tx, mut rx) = mpsc::unbounded_channel::<Queued>();
        self.probes.push(client.clone());
        let mut client = client;
        // One call carries the link's messages while it lasts (see `dprox_transport::link`);
        // a peer that ended it (it stopped serving) gets a new one for a later message.
        self.tasks.spawn(async move {
            while let Some(first) = rx.recv().await {
                let counted = |s: SendStats| {
                    framed.fetch_add(s.framed, Ordering::Relaxed);
                    sent_framed.increment(s.framed);
                };
                match client.push_queue(first, &mut rx, shaper.as_mut(), counted).await {
                    Ok(CallEnd::Drained) => return,
                    Ok(CallEnd::PeerStopped) => {}
                    Err(e) => {
                        send_errors.increment(1);
                        let _ = errors.send(e);
                        return;
                    }
                }
            }
        });
        self.queues.push(tx);
    }

    /// Queues `m` for every neighbour. Payload bytes count when a message is sent (as in the
    /// simulator); framed bytes when its link hands it to HTTP/2.
    pub(super) fn send(&mut self, m: Outbound) {
        let len = m.data.len() as u64;
        let header = pb::Header {
            run_id: self.run_id.clone(),
            token: self.token.clone(),
            from: self.id as u32,
            iteration: m.iteration,
            exchange: m.exchange.code() as u32,
            length: len,
            epoch: m.epoch,
        };
        for c in self.counters.iter().filter(|c| m.to.includes(c.peer)) {
            c.payload.fetch_add(len, Ordering::Relaxed);
            c.sent_payload.increment(len);
            c.messages.increment(1);
        }
        self.ratio.set((4 * self.dim) as f64 / len.max(1) as f64);
        // `queues` and `counters` are in the same (link) order.
        for (q, c) in self.queues.iter().zip(&self.counters) {
            if m.to.includes(c.peer) {
                let _ = q.send((header.clone(), m.data.clone()));
            }
        }
    }

    /// Probes the listed peers; returns the first that cannot be reached, with the reason.
    pub(super) async fn probe(&mut self, peers: &[usize]) -> Option<PeerDown> {
        for c in self.probes.iter_mut().filter(|c| peers.contains(&c.peer)) {
            // Only a peer that cannot be reached is gone; one that is slow to answer (a loaded
            // machine) is left to the message timeout. A refused connection comes back at once;
            // the short timeout keeps a slow peer from holding up the wait loop.
            if let Err(PingError::Unreachable(reason)) = c.ping(Duration::from_millis(500)).await {
                return Some(PeerDown { peer: c.peer, address: c.address.clone(), reason });
            }
        }
        None
    }

    /// Bytes sent so far to each neighbour, ascending by peer id.
    pub(super) fn traffic(&self) -> Vec<pb::LinkBytes> {
        let mut v: Vec<pb::LinkBytes> = self
            .counters
            .iter()
            .map(|c| pb::LinkBytes {
                peer: c.peer as u32,
                payload_bytes: c.payload.load(Ordering::Relaxed),
                framed_bytes: c.framed.load(Ordering::Relaxed),
            })
            .collect();
        v.sort_by_key(|l| l.peer);
        v
    }

    /// (payload, framed) bytes sent over these links.
    pub(super) fn totals(&self) -> (u64, u64) {
        self.traffic().iter().fold((0, 0), |(p, f), l| (p + l.payload_bytes, f + l.framed_bytes))
    }

    /// Waits until every queued message has been delivered (or failed).
    pub(super) async fn close(&mut self) -> Result<(), TransportError> {
        self.queues.clear();
        while let Some(r) = self.tasks.join_next().await {
            if let Err(e) = r {
                return Err(TransportError::Internal(format!("a sender task failed: {e}")));
            }
        }
        Ok(())
    }
}
