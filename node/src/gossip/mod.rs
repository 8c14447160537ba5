//! The node's gossip with its neighbours, behind the [`Gossip`] trait: [`GrpcGossip`] over the
//! network (what `dprox node` runs), [`MemoryNetwork`] in one process (tests, in virtual time).
//!
//! The driver encodes each outgoing message once and hands the bytes to [`Gossip::send`] for
//! every neighbour; arrivals (decoded and validated by the transport) and failed deliveries come
//! back from [`Gossip::next`]; [`Gossip::probe`] asks whether a silent neighbour still exists.

mod grpc;
mod links;
mod memory;

use std::future::Future;

use bytes::Bytes;
use dprox_compress::Compressed;
use dprox_core::Exchange;
use dprox_transport::{Inbound, LinkShape, TransportError, pb};

pub use grpc::GrpcGossip;
pub use memory::{MemoryGossip, MemoryNetwork};

/// Where a neighbour listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAddr {
    /// Its node id.
    pub id: usize,
    /// Its gossip address.
    pub address: String,
}

/// What a node needs to talk to its neighbours during a membership epoch (from the coordinator).
#[derive(Clone, Debug)]
pub struct Session {
    /// The run's id.
    pub run_id: String,
    /// The run's token, carried by every message.
    pub token: Bytes,
    /// The run's nodes: every one of them may send (the epochs decide which are neighbours).
    pub nodes: usize,
    /// The membership epoch.
    pub epoch: u64,
    /// The neighbours in the epoch, ascending by id.
    pub peers: Vec<PeerAddr>,
    /// Shaping of the link to each neighbour (same order), when the run shapes links.
    pub shapes: Vec<Option<LinkShape>>,
    /// The run's seed (link losses are drawn from it).
    pub seed: u64,
}

/// One outgoing message, already encoded.
#[derive(Clone, Debug)]
pub struct Outbound {
    /// Who it goes to: every neighbour, or this iteration's partner (a time-varying schedule).
    pub to: dprox_core::Recipients,
    /// Its membership epoch.
    pub epoch: u64,
    /// Iteration of the message.
    pub iteration: u64,
    /// Its exchange.
    pub exchange: Exchange,
    /// The encoded compressed vector.
    pub data: Bytes,
}

/// What [`Gossip::next`] yields.
#[derive(Debug)]
pub enum GossipEvent {
    /// A neighbour's message arrived (decoded and validated).
    Message(Inbound),
    /// A message could not be delivered to a neighbour.
    SendFailed(TransportError),
}

/// A neighbour that a probe found gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerDown {
    /// Its id.
    pub peer: usize,
    /// Its address.
    pub address: String,
    /// What the probe found.
    pub reason: String,
}

/// The side effects of gossip, as the node's driver sees them. Every method but the async ones
/// returns at once.
pub trait Gossip: Send + 'static {
    /// The address neighbours reach this node at (registered with the coordinator).
    fn address(&self) -> String;

    /// Starts (or, at a membership change, replaces) the run's links: accept messages of this
    /// run carrying its token, and open a link to each neighbour of the session's epoch. Bytes
    /// sent over the links it replaces still count in [`Gossip::totals`].
    fn connect(&mut self, session: &Session) -> Result<(), TransportError>;

    /// Serves x as this node's model at the start of `epoch`, to joining neighbours.
    fn publish(&mut self, epoch: u64, x: &[f32]);

    /// Fetches neighbour `peer`'s model at the start of `epoch` (this node is joining), for a
    /// model of `dim` parameters.
    fn fetch(
        &mut self,
        peer: &PeerAddr,
        epoch: u64,
        dim: usize,
    ) -> impl Future<Output = Result<Vec<f32>, TransportError>> + Send;

    /// Queues `message` for every neighbour; a failed delivery comes back from [`Gossip::next`].
    fn send(&mut self, message: Outbound);

    /// The next arrival or failed delivery; `None` once the transport has shut down.
    fn next(&mut self) -> impl Future<Output = Option<GossipEvent>> + Send;

    /// An arrival or failed delivery that is already here, without waiting.
    fn try_next(&mut self) -> Option<GossipEvent>;

    /// Probes the listed neighbours; the first that cannot be reached, if any. A neighbour that
    /// is merely slow to answer is not reported (the message timeout judges it).
    fn probe(&mut self, peers: &[usize]) -> impl Future<Output = Option<PeerDown>> + Send;

    /// Gives an applied message's payload back for reuse.
    fn recycle(&mut self, payload: Compressed);

    /// Bytes sent to each neighbour of the current epoch so far, ascending by peer.
    fn traffic(&self) -> Vec<pb::LinkBytes>;

    /// (payload, framed) bytes sent to all neighbours since the node started, over every epoch.
    fn totals(&self) -> (u64, u64);

    /// Waits until every queued message is delivered (or failed).
    fn flush(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Stops serving (bounded: a neighbour that died mid-message does not hold it up).
    fn shutdown(self) -> impl Future<Output = ()> + Send;
}
