//! The Gossip service (receiving side) and a peer client (sending side).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dprox_compress::Compressed;
use dprox_core::Exchange;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use crate::pb;
use crate::shape::Shaper;

/// Gossip messages travel in chunks of this many bytes (the last one shorter).
pub const CHUNK_BYTES: usize = 1 << 20;

/// The largest encoded message a node accepts for a model of `dim` parameters: above what any
/// compressor's encoding can take (dense f32 is 4 d bytes plus a header; sparse with worst-case
/// varints is 9 d), so anything larger is refused before it is buffered.
pub fn max_message_bytes(dim: usize) -> usize {
    10 * dim + 1024
}

/// Network errors, each naming the peer at fault.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The peer's address does not parse.
    #[error("node {peer}: invalid address {address}: {message}")]
    Address {
        /// Peer id.
        peer: usize,
        /// Its address.
        address: String,
        /// Why.
        message: String,
    },
    /// The peer could not be reached or refused the message.
    #[error(
        "sending the {exchange} message of iteration {iteration} to node {peer} at {address} failed: {message}"
    )]
    Send {
        /// Peer id.
        peer: usize,
        /// Its address.
        address: String,
        /// Iteration of the message.
        iteration: u64,
        /// Exchange of the message.
        exchange: Exchange,
        /// The gRPC status or connection error.
        message: String,
    },
    /// A neighbour we are waiting for no longer answers.
    #[error(
        "node {peer} at {address} is gone (waiting for its {exchange} message of iteration {iteration}): {message}"
    )]
    PeerGone {
        /// Peer id.
        peer: usize,
        /// Its address.
        address: String,
        /// Iteration waited on.
        iteration: u64,
        /// Exchange waited on.
        exchange: Exchange,
        /// What the probe found.
        message: String,
    },
}

/// What a node accepts: messages of its run, carrying its token, from its neighbours.
#[derive(Clone, Debug, PartialEq)]
pub struct Auth {
    /// The run id the coordinator issued.
    pub run_id: String,
    /// The run's token.
    pub token: Vec<u8>,
    /// The neighbours allowed to send (ascending).
    pub peers: Vec<usize>,
}

/// A decoded message, ready for `Node::handle_message`.
#[derive(Debug)]
pub struct Inbound {
    /// Sender.
    pub from: usize,
    /// Iteration.
    pub iteration: u64,
    /// Exchange.
    pub exchange: Exchange,
    /// The compressed vector (validated: length, indices, finite values).
    pub payload: Compressed,
    /// Encoded size.
    pub bytes: usize,
}

/// The receiving side of gossip: authenticates, size-limits, reassembles and decodes each
/// message, then queues it for the node's loop. Anything wrong is answered with an error status
/// to the sender; the receiver itself never fails on bad input.
#[derive(Debug)]
pub struct GossipService {
    dim: usize,
    auth: watch::Receiver<Option<Auth>>,
    tx: mpsc::Sender<Inbound>,
    auth_wait: Duration,
}

impl GossipService {
    /// A service for models of `dim` parameters, accepting what `auth` allows (it may be set
    /// after the server starts: early messages wait up to `auth_wait` for it) and queueing the
    /// decoded messages on `tx`.
    pub fn new(
        dim: usize,
        auth: watch::Receiver<Option<Auth>>,
        tx: mpsc::Sender<Inbound>,
        auth_wait: Duration,
    ) -> GossipService {
        GossipService { dim, auth, tx, auth_wait }
    }

    /// The tonic service with message limits sized for chunks.
    pub fn into_server(self) -> pb::gossip_server::GossipServer<GossipService> {
        pb::gossip_server::GossipServer::new(self)
            .max_decoding_message_size(CHUNK_BYTES + 4096)
            .max_encoding_message_size(CHUNK_BYTES + 4096)
    }
}

#[tonic::async_trait]
impl pb::gossip_server::Gossip for GossipService {
    async fn push(&self, request: Request<Streaming<pb::Chunk>>) -> Result<Response<pb::PushAck>, Status> {
        let mut stream = request.into_inner();
        let first =
            stream.message().await?.ok_or_else(|| Status::invalid_argument("empty message stream"))?;
        let h = first.header.ok_or_else(|| Status::invalid_argument("the first chunk has no header"))?;
        let mut auth = self.auth.clone();
        let auth = tokio::time::timeout(self.auth_wait, auth.wait_for(|a| a.is_some()))
            .await
            .map_err(|_| Status::unavailable("this node has not joined a run yet"))?
            .map_err(|_| Status::unavailable("this node is shutting down"))?
            .clone()
            .expect("waited for Some");
        if h.run_id != auth.run_id || h.token.as_ref() != auth.token.as_slice() {
            return Err(Status::unauthenticated(format!(
                "message from node {} does not carry this run's id and token (run {})",
                h.from, auth.run_id
            )));
        }
        let from = h.from as usize;
        if auth.peers.binary_search(&from).is_err() {
            return Err(Status::permission_denied(format!("node {from} is not a neighbour of this node")));
        }
        let limit = max_message_bytes(self.dim);
        let len = h.length as usize;
        if h.length > limit as u64 {
            return Err(Status::resource_exhausted(format!(
                "message of {} bytes from node {from} exceeds the limit of {limit} bytes for {} parameters",
                h.length, self.dim
            )));
        }
        let exchange = u8::try_from(h.exchange)
            .ok()
            .and_then(Exchange::from_code)
            .ok_or_else(|| Status::invalid_argument(format!("unknown exchange code {}", h.exchange)))?;
        // One chunk (messages up to 1 MiB) is used in place; longer messages are reassembled.
        let mut buf = BytesMut::new();
        let mut single = Some(first.data);
        while let Some(chunk) = stream.message().await? {
            if let Some(d) = single.take() {
                buf.reserve(len);
                buf.extend_from_slice(&d);
            }
            if chunk.header.is_some() {
                return Err(Status::invalid_argument("a header in a chunk other than the first"));
            }
            if buf.len() + chunk.data.len() > len {
                return Err(Status::invalid_argument(format!(
                    "message from node {from} is longer than its header's {len} bytes"
                )));
            }
            buf.extend_from_slice(&chunk.data);
        }
        let data: Bytes = match single {
            Some(d) => d,
            None => buf.freeze(),
        };
        if data.len() != len {
            return Err(Status::invalid_argument(format!(
                "message from node {from} ended after {} of {len} bytes",
                data.len()
            )));
        }
        let mut payload = Compressed::new(self.dim);
        payload
            .decode_from(&data, self.dim)
            .map_err(|e| Status::invalid_argument(format!("malformed message from node {from}: {e}")))?;
        let msg = Inbound { from, iteration: h.iteration, exchange, payload, bytes: len };
        self.tx.send(msg).await.map_err(|_| Status::unavailable("this node is shutting down"))?;
        Ok(Response::new(pb::PushAck {}))
    }

    async fn ping(&self, _: Request<pb::PingRequest>) -> Result<Response<pb::PingReply>, Status> {
        Ok(Response::new(pb::PingReply {}))
    }
}

/// An HTTP/2 endpoint for `address` with the windows large vectors need (16 MiB per stream,
/// 32 MiB per connection) and Nagle off for small exchanges.
pub fn endpoint(address: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{address}"))?
        .initial_stream_window_size(16 << 20)
        .initial_connection_window_size(32 << 20)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5)))
}

/// Bytes one message cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendStats {
    /// Encoded payload (what the simulator counts).
    pub payload: u64,
    /// Payload plus protobuf framing and the 5-byte gRPC prefix of every chunk.
    pub framed: u64,
}

/// The sending side of one link: a reused HTTP/2 connection, chunking and shaping.
#[derive(Clone, Debug)]
pub struct PeerClient {
    /// The peer's id.
    pub peer: usize,
    /// Its address.
    pub address: String,
    client: pb::gossip_client::GossipClient<Channel>,
}

impl PeerClient {
    /// A client for `peer` at `address`; the connection is made on first use and then reused.
    pub fn new(peer: usize, address: &str) -> Result<PeerClient, TransportError> {
        let err = |e: tonic::transport::Error| TransportError::Address {
            peer,
            address: address.into(),
            message: e.to_string(),
        };
        let channel = endpoint(address).map_err(err)?.connect_lazy();
        let client = pb::gossip_client::GossipClient::new(channel)
            .max_decoding_message_size(CHUNK_BYTES + 4096)
            .max_encoding_message_size(CHUNK_BYTES + 4096);
        Ok(PeerClient { peer, address: address.into(), client })
    }

    /// Sends one encoded message (after the link's shaping delay, if any).
    pub async fn send(
        &mut self,
        header: pb::Header,
        data: Bytes,
        shaper: Option<&mut Shaper>,
    ) -> Result<SendStats, TransportError> {
        let n = data.len();
        let chunks = n.div_ceil(CHUNK_BYTES).max(1);
        if let Some(s) = shaper {
            let d = s.delay(n, chunks);
            if !d.is_zero() {
                tokio::time::sleep(d).await;
            }
        }
        let (iteration, exchange) =
            (header.iteration, Exchange::from_code(header.exchange as u8).unwrap_or(Exchange::X));
        let mut msgs = Vec::with_capacity(chunks);
        let mut header = Some(header);
        for k in 0..chunks {
            let part = data.slice(k * CHUNK_BYTES..((k + 1) * CHUNK_BYTES).min(n));
            msgs.push(pb::Chunk { header: header.take(), data: part });
        }
        let framed = msgs.iter().map(|m| m.encoded_len() as u64 + 5).sum();
        self.client.push(tokio_stream::iter(msgs)).await.map_err(|status| TransportError::Send {
            peer: self.peer,
            address: self.address.clone(),
            iteration,
            exchange,
            message: describe(&status),
        })?;
        Ok(SendStats { payload: n as u64, framed })
    }

    /// Asks whether the peer is still serving; the error describes why not (connection refused:
    /// the process is gone).
    pub async fn ping(&mut self, timeout: Duration) -> Result<(), String> {
        match tokio::time::timeout(timeout, self.client.ping(pb::PingRequest {})).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(describe(&status)),
            Err(_) => Err(format!("no answer to a liveness probe within {:.1} s", timeout.as_secs_f64())),
        }
    }
}

/// A readable account of a gRPC failure (connection errors hide in the source chain).
fn describe(status: &Status) -> String {
    use std::error::Error;
    let mut s = format!("{}: {}", status.code(), status.message());
    let mut src = status.source();
    while let Some(e) = src {
        s.push_str(&format!(": {e}"));
        src = e.source();
    }
    s
}
