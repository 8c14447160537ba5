//! Gossip in one process: a [`MemoryNetwork`] routes encoded messages between the nodes that
//! joined it, decoding them on delivery as the gRPC receiver does. A test can make a node gone
//! ([`MemoryNetwork::kill`]: probes find it unreachable and deliveries to it fail) or hold a link's
//! messages back ([`MemoryNetwork::hold`]) or deliver them twice ([`MemoryNetwork::replay`]). Nothing in it waits on a clock, so drivers over it run
//! in tokio's virtual time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use dprox_compress::Compressed;
use dprox_transport::{Inbound, TransportError, framed_len, pb};
use tokio::sync::mpsc;

use super::{Gossip, GossipEvent, Outbound, PeerAddr, PeerDown, Session};

#[derive(Debug, Default)]
struct Routes {
    inboxes: BTreeMap<usize, mpsc::UnboundedSender<GossipEvent>>,
    /// Each node's published model: (epoch, x).
    models: BTreeMap<usize, (u64, Vec<f32>)>,
    down: BTreeSet<usize>,
    /// Directed links (from, to) whose messages are dropped.
    held: BTreeSet<(usize, usize)>,
    /// Directed links (from, to) whose next messages are delivered twice: how many more.
    replayed: BTreeMap<(usize, usize), u64>,
    /// Every link's latency, and per directed link the queue that delays its messages in order.
    latency: std::time::Duration,
    delayed: BTreeMap<(usize, usize), mpsc::UnboundedSender<(tokio::time::Instant, GossipEvent)>>,
}

/// The in-process network: every node that joined can send to every other.
#[derive(Clone, Debug, Default)]
pub struct MemoryNetwork {
    routes: Arc<Mutex<Routes>>,
}

impl MemoryNetwork {
    /// An empty network.
    pub fn new() -> MemoryNetwork {
        MemoryNetwork::default()
    }

    /// Node `id` (models of `dim` parameters) joins at address `memory:ID`.
    pub fn join(&self, id: usize, dim: usize) -> MemoryGossip {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut routes = self.routes.lock().expect("not poisoned");
        routes.inboxes.insert(id, tx.clone());
        routes.down.remove(&id);
        // Delay lines into an earlier incarnation's inbox.
        routes.delayed.retain(|&(_, to), _| to != id);
        MemoryGossip {
            net: self.clone(),
            id,
            dim,
            inbox: rx,
            own: tx,
            session: None,
            sent: Vec::new(),
            retired: 0,
        }
    }

    /// Node `id` is gone, as a killed process: probes cannot reach it and deliveries to it fail.
    pub fn kill(&self, id: usize) {
        let mut routes = self.routes.lock().expect("not poisoned");
        routes.inboxes.remove(&id);
        routes.down.insert(id);
    }

    /// Drops every later message from `from` to `to` (a node that is alive but silent to it).
    pub fn hold(&self, from: usize, to: usize) {
        self.routes.lock().expect("not poisoned").held.insert((from, to));
    }

    /// Delivers each of the next `count` messages from `from` to `to` twice (a faulty or hostile
    /// sender replaying its messages: the copy is a duplicate for the receiver).
    pub fn replay(&self, from: usize, to: usize, count: u64) {
        self.routes.lock().expect("not poisoned").replayed.insert((from, to), count);
    }

    /// Tells node `node` that a delivery to `peer` failed (as a link of an earlier epoch that
    /// fails late would).
    pub fn report_failure(&self, node: usize, peer: usize) {
        let routes = self.routes.lock().expect("not poisoned");
        if let Some(inbox) = routes.inboxes.get(&node) {
            let _ = inbox.send(GossipEvent::SendFailed(TransportError::Send {
                peer,
                address: format!("memory:{peer}"),
                iteration: 0,
                exchange: dprox_core::Exchange::X,
                message: "connection reset".into(),
            }));
        }
    }

    /// From now on every message arrives `latency` after it was sent (virtual time), in order.
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.routes.lock().expect("not poisoned").latency = latency;
    }

    /// Delivers `m` from `from` to `to`: decoded as the gRPC receiver decodes it; an error when
    /// `to` is gone.
    fn deliver(
        &self,
        from: usize,
        to: usize,
        header: &pb::Header,
        data: &[u8],
        dim: usize,
    ) -> Result<(), String> {
        let mut routes = self.routes.lock().expect("not poisoned");
        if routes.held.contains(&(from, to)) {
            return Ok(());
        }
        let copies = match routes.replayed.get_mut(&(from, to)) {
            Some(n) if *n > 0 => {
                *n -= 1;
                2
            }
            _ => 1,
        };
        let inbox =
            routes.inboxes.get(&to).ok_or_else(|| format!("node {to} is not on the network"))?.clone();
        for _ in 0..copies {
            let mut payload = Compressed::new(dim);
            payload.decode_from(data, dim).map_err(|e| format!("malformed message: {e}"))?;
            let exchange = dprox_core::Exchange::from_code(header.exchange as u8).expect("encoded by a node");
            let event = GossipEvent::Message(Inbound {
                from,
                epoch: header.epoch,
                iteration: header.iteration,
                exchange,
                payload,
                bytes: data.len(),
                framed: framed_len(header, data.len()),
            });
            if routes.latency.is_zero() {
                let _ = inbox.send(event);
            } else {
                let due = tokio::time::Instant::now() + routes.latency;
                let inbox = inbox.clone();
                let queue = routes.delayed.entry((from, to)).or_insert_with(|| delay_line(inbox));
                let _ = queue.send((due, event));
            }
        }
        Ok(())
    }
}

/// A link's delay line: forwards each message to `inbox` when it is due, in sending order.
fn delay_line(
    inbox: mpsc::UnboundedSender<GossipEvent>,
) -> mpsc::UnboundedSender<(tokio::time::Instant, GossipEvent)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(tokio::time::Instant, GossipEvent)>();
    tokio::spawn(async move {
        while let Some((due, event)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            let _ = inbox.send(event);
        }
    });
    tx
}

/// One node's end of a [`MemoryNetwork`].
#[derive(Debug)]
pub struct MemoryGossip {
    net: MemoryNetwork,
    id: usize,
    dim: usize,
    inbox: mpsc::UnboundedReceiver<GossipEvent>,
    /// This node's own inbox, where failed deliveries are reported.
    own: mpsc::UnboundedSender<GossipEvent>,
    session: Option<Session>,
    /// Payload bytes sent to each neighbour, in session order.
    sent: Vec<u64>,
    /// Payload bytes sent in earlier epochs.
    retired: u64,
}

impl Gossip for MemoryGossip {
    fn address(&self) -> String {
        format!("memory:{}", self.id)
    }

    fn connect(&mut self, session: &Session) -> Result<(), TransportError> {
        self.retired += self.sent.iter().sum::<u64>();
        self.sent = vec![0; session.peers.len()];
        self.session = Some(session.clone());
        Ok(())
    }

    fn publish(&mut self, epoch: u64, x: &[f32]) {
        self.net.routes.lock().expect("not poisoned").models.insert(self.id, (epoch, x.to_vec()));
    }

    async fn fetch(&mut self, peer: &PeerAddr, epoch: u64, _dim: usize) -> Result<Vec<f32>, TransportError> {
        // The neighbour may start the epoch after this node asks: wait for it (virtual time).
        for _ in 0..3000 {
            if let Some((e, x)) = self.net.routes.lock().expect("not poisoned").models.get(&peer.id)
                && *e == epoch
            {
                return Ok(x.clone());
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Err(TransportError::Fetch {
            peer: peer.id,
            address: peer.address.clone(),
            message: format!("no model of epoch {epoch}"),
        })
    }

    fn send(&mut self, m: Outbound) {
        let Some(session) = &self.session else { return };
        let header = pb::Header {
            run_id: session.run_id.clone(),
            token: session.token.clone(),
            from: self.id as u32,
            iteration: m.iteration,
            exchange: m.exchange.code() as u32,
            length: m.data.len() as u64,
            epoch: m.epoch,
        };
        for (k, p) in session.peers.iter().enumerate().filter(|(_, p)| m.to.includes(p.id)) {
            self.sent[k] += m.data.len() as u64;
            if let Err(message) = self.net.deliver(self.id, p.id, &header, &m.data, self.dim) {
                let _ = self.own.send(GossipEvent::SendFailed(TransportError::Send {
                    peer: p.id,
                    address: p.address.clone(),
                    iteration: m.iteration,
                    exchange: m.exchange,
                    message,
                }));
            }
        }
    }

    async fn next(&mut self) -> Option<GossipEvent> {
        self.inbox.recv().await
    }

    fn try_next(&mut self) -> Option<GossipEvent> {
        self.inbox.try_recv().ok()
    }

    async fn probe(&mut self, peers: &[usize]) -> Option<PeerDown> {
        let session = self.session.as_ref()?;
        let routes = self.net.routes.lock().expect("not poisoned");
        session.peers.iter().filter(|p| peers.contains(&p.id)).find(|p| routes.down.contains(&p.id)).map(
            |p| PeerDown {
                peer: p.id,
                address: p.address.clone(),
                reason: "not on the network (killed)".into(),
            },
        )
    }

    fn recycle(&mut self, _payload: Compressed) {}

    fn traffic(&self) -> Vec<pb::LinkBytes> {
        let Some(session) = &self.session else { return Vec::new() };
        session
            .peers
            .iter()
            .zip(&self.sent)
            .map(|(p, &b)| pb::LinkBytes { peer: p.id as u32, payload_bytes: b, framed_bytes: b })
            .collect()
    }

    fn totals(&self) -> (u64, u64) {
        let p = self.retired + self.sent.iter().sum::<u64>();
        (p, p)
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        Ok(())
    }

    async fn shutdown(self) {}
}
