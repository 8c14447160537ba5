//! The node's Prometheus series (names in `dprox_telemetry::names`): handles are registered once
//! per run with the node's and its peers' labels, so recording in the loop is an atomic update
//! and allocates nothing.

use tokio::time::Instant;

use dprox_core::{Node, Phase};
use dprox_telemetry::names;
use dprox_transport::Inbound;
use metrics::{Counter, Gauge, Histogram};

/// What one neighbour's link records on the receiving side.
struct Incoming {
    peer: usize,
    wait: Histogram,
    payload: Counter,
    framed: Counter,
}

pub(crate) struct Telemetry {
    id: usize,
    epoch: Gauge,
    iteration: Gauge,
    loss: Gauge,
    gradient: Histogram,
    timeout: Counter,
    refused: Counter,
    incoming: Vec<Incoming>,
    /// The exchange the node is in, and since when: a message that completes it waited this long.
    current: (u64, Phase),
    since: Instant,
}

/// The receiving side's series of each neighbour of `id`.
fn incoming(id: usize, peers: &[usize]) -> Vec<Incoming> {
    let node = id.to_string();
    peers
        .iter()
        .map(|&p| {
            let (node, peer) = (node.clone(), p.to_string());
            Incoming {
                peer: p,
                wait: metrics::histogram!(names::WAIT_SECONDS, "node" => node.clone(), "peer" => peer.clone()),
                payload: metrics::counter!(names::BYTES_RECEIVED, "node" => node.clone(), "peer" => peer.clone(), "kind" => "payload"),
                framed: metrics::counter!(names::BYTES_RECEIVED, "node" => node, "peer" => peer, "kind" => "framed"),
            }
        })
        .collect()
}

impl Telemetry {
    /// A new membership epoch with these neighbours.
    pub(crate) fn epoch(&mut self, epoch: u64, peers: &[usize]) {
        self.epoch.set(epoch as f64);
        self.incoming = incoming(self.id, peers);
    }

    pub(crate) fn new(id: usize, peers: &[usize]) -> Telemetry {
        let node = id.to_string();
        Telemetry {
            id,
            epoch: metrics::gauge!(names::EPOCH, "node" => node.clone()),
            iteration: metrics::gauge!(names::ITERATION, "node" => node.clone()),
            loss: metrics::gauge!(names::LOCAL_LOSS, "node" => node.clone()),
            gradient: metrics::histogram!(names::GRADIENT_SECONDS, "node" => node.clone()),
            timeout: metrics::counter!(names::ERRORS, "node" => node.clone(), "kind" => "timeout"),
            refused: metrics::counter!(names::ERRORS, "node" => node, "kind" => "refused"),
            incoming: incoming(id, peers),
            current: (0, Phase::NeedGradient),
            since: Instant::now(),
        }
    }

    /// A local gradient took `seconds` and had minibatch loss `loss`.
    pub(crate) fn gradient(&self, loss: f64, seconds: f64) {
        self.loss.set(loss);
        self.gradient.record(seconds);
    }

    /// Notes the node's phase after each `handle_*` call: when it enters a new exchange, the
    /// waiting clock restarts.
    pub(crate) fn observe(&mut self, node: &Node) {
        let now = (node.iteration(), node.phase());
        if now != self.current {
            self.current = now;
            self.since = Instant::now();
        }
        self.iteration.set(node.iteration() as f64);
    }

    /// A message arrived, before it is applied: how long the node had been waiting for it (zero
    /// when it came early, for an exchange the node has not reached), and its bytes.
    pub(crate) fn received(&self, node: &Node, m: &Inbound) {
        let Some(link) = self.incoming.iter().find(|l| l.peer == m.from) else { return };
        let awaited = node.phase() == Phase::Exchanging(m.exchange) && node.iteration() == m.iteration;
        link.wait.record(if awaited { self.since.elapsed().as_secs_f64() } else { 0.0 });
        link.payload.increment(m.bytes as u64);
        link.framed.increment(m.framed);
    }

    /// A neighbour's message was refused.
    pub(crate) fn refused(&self) {
        self.refused.increment(1);
    }

    /// A neighbour went silent.
    pub(crate) fn timed_out(&self) {
        self.timeout.increment(1);
    }
}
