//! One sender task per neighbour: messages leave in order, each link is shaped on its own, and
//! the byte counters add up what was delivered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use dprox_compress::Encoder;
use dprox_config::Prepared;
use dprox_core::Node;
use dprox_transport::{LinkShape, PeerClient, Shaper, TransportError, pb};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::NodeError;

pub(crate) struct Links {
    /// Clients for liveness probes, by peer id.
    probes: Vec<PeerClient>,
    queues: Vec<mpsc::UnboundedSender<(pb::Header, Bytes)>>,
    tasks: JoinSet<()>,
    payload: Arc<AtomicU64>,
    framed: Arc<AtomicU64>,
    run_id: String,
    token: Bytes,
    id: usize,
    buf: Vec<u8>,
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
        let payload = Arc::new(AtomicU64::new(0));
        let framed = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        let mut queues = Vec::new();
        let mut probes = Vec::new();
        for (peer, address) in peers {
            let mut client = PeerClient::new(*peer, address)?;
            probes.push(client.clone());
            let mut shaper = run.link_shape(id, *peer).map(|c| {
                let shape = LinkShape {
                    latency: Duration::from_secs_f64(c.latency_s),
                    bytes_per_s: c.bytes_per_s,
                    loss: c.loss,
                    retransmit: Duration::from_secs_f64((4.0 * c.latency_s).max(0.01)),
                };
                Shaper::new(shape, run.config.run.seed, id, *peer)
            });
            let (tx, mut rx) = mpsc::unbounded_channel::<(pb::Header, Bytes)>();
            let (f, errors) = (framed.clone(), errors.clone());
            tasks.spawn(async move {
                while let Some((header, data)) = rx.recv().await {
                    match client.send(header, data, shaper.as_mut()).await {
                        Ok(s) => {
                            f.fetch_add(s.framed, Ordering::Relaxed);
                        }
                        Err(e) => {
                            let _ = errors.send(e);
                            return;
                        }
                    }
                }
            });
            queues.push(tx);
        }
        Ok(Links { probes, queues, tasks, payload, framed, run_id, token, id, buf: Vec::new() })
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
            self.payload.fetch_add(data.len() as u64 * self.queues.len() as u64, Ordering::Relaxed);
            for q in &self.queues {
                let _ = q.send((header.clone(), data.clone()));
            }
        }
    }

    /// Probes the listed peers; returns the first that does not answer, with the reason.
    pub(crate) async fn probe(&mut self, peers: &[usize]) -> Option<(usize, String, String)> {
        for c in self.probes.iter_mut().filter(|c| peers.contains(&c.peer)) {
            if let Err(why) = c.ping(Duration::from_secs(2)).await {
                return Some((c.peer, c.address.clone(), why));
            }
        }
        None
    }

    /// (payload, framed) bytes sent so far.
    pub(crate) fn bytes(&self) -> (u64, u64) {
        (self.payload.load(Ordering::Relaxed), self.framed.load(Ordering::Relaxed))
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
