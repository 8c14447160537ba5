//! One sender task per neighbour: messages leave in order, each link is shaped on its own, and
//! the byte counters add up what was delivered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use dprox_compress::Encoder;
use dprox_config::Prepared;
use dprox_core::Node;
use dprox_transport::{LinkShape, PeerClient, PingError, Shaper, TransportError, pb};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::NodeError;
use dprox_telemetry::names;

/// Bytes sent to one neighbour: payload counted when queued, framed when acknowledged (also
/// published as `dprox_bytes_sent_total` and `dprox_messages_sent_total`).
struct LinkCounters {
    peer: usize,
    payload: Arc<AtomicU64>,
    framed: Arc<AtomicU64>,
    sent_payload: metrics::Counter,
    messages: metrics::Counter,
}

pub(crate) struct Links {
    /// Clients for liveness probes, by peer id.
    probes: Vec<PeerClient>,
    queues: Vec<mpsc::UnboundedSender<(pb::Header, Bytes)>>,
    tasks: JoinSet<()>,
    /// Per neighbour, in the order of `queues`: its id and what was sent to it. The totals are
    /// their sums, so the per-link and per-node figures can never disagree.
    counters: Vec<LinkCounters>,
    run_id: String,
    token: Bytes,
    id: usize,
    buf: Vec<u8>,
    /// Dense f32 size over encoded size of the last message.
    ratio: metrics::Gauge,
    dim: usize,
}

impl Links {
    pub(crate) fn new(
        run: &Prepared,
        id: usize,
        peers: &[(usize, String)],
        run_id: String,
        token: Bytes,
        errors: mpsc::UnboundedSender<TransportError>,
    ) -> Result<Links, NodeError> {
        let mut counters = Vec::new();
        let mut tasks = JoinSet::new();
        let mut queues = Vec::new();
        let mut probes = Vec::new();
        for (peer, address) in peers {
            let mut client = PeerClient::new(*peer, address)?;
            probes.push(client.clone());
            let mut shaper = run.link_shape(id, *peer).map(|c| {
                // (Saturating: an absurd latency in a config is a very long wait, not a panic.)
                let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX);
                let shape = LinkShape {
                    latency: secs(c.latency_s),
                    bytes_per_s: c.bytes_per_s,
                    loss: c.loss,
                    retransmit: secs((4.0 * c.latency_s).max(0.01)),
                };
                Shaper::new(shape, run.config.run.seed, id, *peer)
            });
            let (tx, mut rx) = mpsc::unbounded_channel::<(pb::Header, Bytes)>();
            let (node, to) = (id.to_string(), peer.to_string());
            let c = LinkCounters {
                peer: *peer,
                payload: Arc::default(),
                framed: Arc::default(),
                sent_payload: metrics::counter!(names::BYTES_SENT, "node" => node.clone(), "peer" => to.clone(), "kind" => "payload"),
                messages: metrics::counter!(names::MESSAGES_SENT, "node" => node.clone(), "peer" => to.clone()),
            };
            let sent_framed = metrics::counter!(names::BYTES_SENT, "node" => node.clone(), "peer" => to, "kind" => "framed");
            let send_errors = metrics::counter!(names::ERRORS, "node" => node, "kind" => "send");
            let (f, errors) = (c.framed.clone(), errors.clone());
            counters.push(c);
            tasks.spawn(async move {
                while let Some((header, data)) = rx.recv().await {
                    match client.send(header, data, shaper.as_mut()).await {
                        Ok(s) => {
                            f.fetch_add(s.framed, Ordering::Relaxed);
                            sent_framed.increment(s.framed);
                        }
                        Err(e) => {
                            send_errors.increment(1);
                            let _ = errors.send(e);
                            return;
                        }
                    }
                }
            });
            queues.push(tx);
        }
        let ratio = metrics::gauge!(names::COMPRESSION_RATIO, "node" => id.to_string());
        Ok(Links { probes, queues, tasks, counters, run_id, token, id, buf: Vec::new(), ratio, dim: run.dim })
    }

    /// Encodes every message the node has ready once and queues it for every neighbour.
    pub(crate) fn flush(&mut self, node: &mut Node, encoder: &mut Encoder) {
        while let Some(t) = node.poll_transmit() {
            self.buf.clear();
            encoder.encode(t.payload, &mut self.buf);
            let data = Bytes::copy_from_slice(&self.buf);
            let header = pb::Header {
                run_id: self.run_id.clone(),
                token: self.token.clone(),
                from: self.id as u32,
                iteration: t.iteration,
                exchange: t.exchange.code() as u32,
                length: data.len() as u64,
            };
            // Payload bytes count when a message is sent (as in the simulator); framed bytes when
            // the peer has acknowledged it.
            for c in &self.counters {
                c.payload.fetch_add(data.len() as u64, Ordering::Relaxed);
                c.sent_payload.increment(data.len() as u64);
                c.messages.increment(1);
            }
            self.ratio.set((4 * self.dim) as f64 / data.len().max(1) as f64);
            for q in &self.queues {
                let _ = q.send((header.clone(), data.clone()));
            }
        }
    }

    /// Probes the listed peers; returns the first that cannot be reached, with the reason.
    pub(crate) async fn probe(&mut self, peers: &[usize]) -> Option<(usize, String, String)> {
        for c in self.probes.iter_mut().filter(|c| peers.contains(&c.peer)) {
            // Only a peer that cannot be reached is gone; one that is slow to answer (a loaded
            // machine) is left to the message timeout.
            // A refused connection comes back at once; the short timeout keeps a slow peer from
            // holding up the wait loop.
            if let Err(PingError::Unreachable(why)) = c.ping(Duration::from_millis(500)).await {
                return Some((c.peer, c.address.clone(), why));
            }
        }
        None
    }

    /// (payload, framed) bytes sent so far, to all neighbours.
    pub(crate) fn bytes(&self) -> (u64, u64) {
        self.per_peer().iter().fold((0, 0), |(p, f), l| (p + l.payload_bytes, f + l.framed_bytes))
    }

    /// Bytes sent so far to each neighbour, ascending by peer id (the coordinator's status page
    /// shows them per edge and direction).
    pub(crate) fn per_peer(&self) -> Vec<pb::LinkBytes> {
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

    /// Waits until every queued message has been delivered (or failed).
    pub(crate) async fn close(&mut self) -> Result<(), NodeError> {
        self.queues.clear();
        while let Some(r) = self.tasks.join_next().await {
            r.map_err(|e| NodeError::Io(format!("a sender task failed: {e}")))?;
        }
        Ok(())
    }
}
