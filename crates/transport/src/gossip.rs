//! The Gossip service (receiving side) and a peer client (sending side).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dprox_compress::{Compressed, StreamDecoder};
use dprox_core::Exchange;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use dprox_net::limits::CHUNK_STALL;
use dprox_net::{Limits, Peer, Security, TlsError};

use crate::memory::{Missing, Outbox, Segment, Segments, Shape, framed_in_memory};
use crate::pb;
use crate::shape::Shaper;
use dprox_telemetry::names;

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
    /// The node's own transport failed (its listener, one of its tasks).
    #[error("{0}")]
    Internal(String),
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
    /// A joining node could not fetch a neighbour's model.
    #[error("fetching the model of node {peer} at {address} failed: {message}")]
    Fetch {
        /// Peer id.
        peer: usize,
        /// Its address.
        address: String,
        /// What went wrong.
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

/// What a node accepts: messages of its run, carrying its token, from the nodes allowed to send
/// (every node of the run: which of them are neighbours changes with the membership epochs, and
/// the node's core refuses a message from a node that is not one in its epoch).
#[derive(Clone, Debug, PartialEq)]
pub struct Auth {
    /// The run id the coordinator issued.
    pub run_id: String,
    /// The run's token.
    pub token: Vec<u8>,
    /// The nodes allowed to send (ascending).
    pub peers: Vec<usize>,
}

/// The model a node serves to a joining neighbour: x at the start of its current epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct PublishedModel {
    /// The epoch.
    pub epoch: u64,
    /// x at the epoch's start iteration.
    pub x: Arc<Vec<f32>>,
}

/// A decoded message, ready for `Node::handle_message`.
#[derive(Debug)]
pub struct Inbound {
    /// Sender.
    pub from: usize,
    /// The membership epoch it belongs to.
    pub epoch: u64,
    /// Iteration.
    pub iteration: u64,
    /// Exchange.
    pub exchange: Exchange,
    /// The compressed vector (validated: length, indices, finite values).
    pub payload: Compressed,
    /// Encoded size.
    pub bytes: usize,
    /// Bytes it took on the wire (see [`framed_len`]).
    pub framed: u64,
}

/// Decoded payloads the node has applied, kept for the next messages: a dense 1e7 vector is a
/// 40 MB buffer, and allocating it afresh for every message costs page faults on every byte.
/// The receiver takes a buffer here; the node's loop gives it back after `handle_message`.
#[derive(Clone, Debug, Default)]
pub struct PayloadPool {
    free: Arc<Mutex<Vec<Compressed>>>,
}

impl PayloadPool {
    /// At most this many buffers are kept (enough for every neighbour's x and y messages of a
    /// few iterations in flight); more are dropped.
    pub const KEEP: usize = 64;
    /// And at most this many bytes of them (sixteen dense 1e6-parameter vectors, six of 1e7).
    pub const KEEP_BYTES: usize = 256 << 20;

    fn take(&self, dim: usize) -> Compressed {
        let got = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        got.unwrap_or_else(|| Compressed::new(dim))
    }

    /// Returns a message's payload once it has been applied.
    pub fn give(&self, payload: Compressed) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let held: usize = free.iter().map(Compressed::capacity_bytes).sum();
        if free.len() < Self::KEEP && held + payload.capacity_bytes() <= Self::KEEP_BYTES {
            free.push(payload);
        }
    }

    /// Buffers currently kept.
    pub fn len(&self) -> usize {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no buffer is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The receiving side of gossip: authenticates, size-limits and decodes each message as its
/// chunks arrive, then queues it for the node's loop. Anything wrong is answered with an error
/// status to the sender; the receiver itself never fails on bad input.
#[derive(Debug)]
pub struct GossipService {
    dim: usize,
    auth: watch::Receiver<Option<Auth>>,
    tx: mpsc::Sender<Inbound>,
    auth_wait: Duration,
    pool: PayloadPool,
    refused: metrics::Counter,
    model: watch::Receiver<Option<PublishedModel>>,
    /// Whether every request must come with a node's certificate (mutual TLS).
    tls: bool,
    /// Set when the node stops serving: a link waiting for its next message is then ended.
    stop: Option<watch::Receiver<bool>>,
    /// The segments neighbours on this host write their messages into, when offered.
    memory: Option<Arc<Segments>>,
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
        GossipService {
            dim,
            auth,
            tx,
            auth_wait,
            pool: PayloadPool::default(),
            refused: metrics::Counter::noop(),
            model: watch::channel(None).1,
            tls: false,
            stop: None,
            memory: None,
        }
    }

    /// Offers neighbours on this host shared-memory segments to hand their messages over in
    /// (see [`crate::memory`]), if `on` and a segment for this model fits [`crate::memory::MAX_SEGMENT`].
    pub fn with_shared_memory(mut self, on: bool) -> GossipService {
        self.memory = Shape::for_dim(self.dim).filter(|_| on).map(|s| Arc::new(Segments::new(s)));
        self
    }

    /// Requires every request to come with a node's certificate, and every message to come from
    /// the node its certificate names (set when served over mutual TLS).
    pub fn with_tls(mut self, tls: bool) -> GossipService {
        self.tls = tls;
        self
    }

    /// The node a request comes from, by its certificate (with TLS); any caller without TLS.
    fn caller<T>(&self, request: &Request<T>) -> Result<Option<usize>, Status> {
        if !self.tls {
            return Ok(None);
        }
        match Peer::of_request(request) {
            Some(Peer::Node(id)) => Ok(Some(id)),
            Some(other) => Err(Status::permission_denied(format!("{other} may not call a node's gossip"))),
            None => Err(Status::unauthenticated("no node certificate of this cluster")),
        }
    }

    /// Ends the links that wait for their next message once `stop` turns true (the node stops
    /// serving): a neighbour's open link must not hold up a graceful shutdown. Their calls end
    /// with an acknowledgement; a message sent after it opens a new call, which a stopped node
    /// refuses.
    pub fn with_stop(mut self, stop: watch::Receiver<bool>) -> GossipService {
        self.stop = Some(stop);
        self
    }

    /// Serves the model `model` publishes to joining neighbours (`FetchModel`).
    pub fn with_model(mut self, model: watch::Receiver<Option<PublishedModel>>) -> GossipService {
        self.model = model;
        self
    }

    /// Counts refused messages as `dprox_errors_total{node, kind="refused"}`.
    pub fn with_node_metrics(mut self, node: usize) -> GossipService {
        self.refused = metrics::counter!(names::ERRORS, "node" => node.to_string(), "kind" => "refused");
        self
    }

    /// Decodes into buffers from `pool` (give them back with [`PayloadPool::give`]).
    pub fn with_pool(mut self, pool: PayloadPool) -> GossipService {
        self.pool = pool;
        self
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
        let received = match self.caller(&request) {
            Ok(sender) => self.receive_all(sender, request.into_inner()).await,
            Err(status) => Err(status),
        };
        match received {
            Ok(()) => Ok(Response::new(pb::PushAck {})),
            Err(status) => {
                if status.code() != tonic::Code::Unavailable {
                    self.refused.increment(1);
                    tracing::warn!(code = ?status.code(), reason = status.message(), "refused a gossip message");
                }
                Err(status)
            }
        }
    }

    async fn ping(&self, request: Request<pb::PingRequest>) -> Result<Response<pb::PingReply>, Status> {
        self.caller(&request)?;
        Ok(Response::new(pb::PingReply {}))
    }

    async fn fetch_model(
        &self,
        request: Request<pb::FetchModelRequest>,
    ) -> Result<Response<pb::FetchModelReply>, Status> {
        self.caller(&request)?;
        let r = request.into_inner();
        let auth = self.authorised().await?;
        if r.run_id != auth.run_id || r.token.as_ref() != auth.token.as_slice() {
            return Err(Status::unauthenticated("the request does not carry this run's id and token"));
        }
        // The node may not have started the epoch yet: wait for it, as for an early message.
        let mut model = self.model.clone();
        let published = tokio::time::timeout(
            self.auth_wait,
            model.wait_for(|m| m.as_ref().is_some_and(|m| m.epoch >= r.epoch)),
        )
        .await
        .map_err(|_| Status::unavailable(format!("this node has not started epoch {} yet", r.epoch)))?
        .map_err(|_| Status::unavailable("this node is shutting down"))?
        .clone()
        .expect("waited for Some");
        if published.epoch != r.epoch {
            return Err(Status::failed_precondition(format!(
                "this node is in epoch {}, not {}",
                published.epoch, r.epoch
            )));
        }
        let x = published.x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
        Ok(Response::new(pb::FetchModelReply { x: x.into() }))
    }

    async fn open_memory(
        &self,
        request: Request<pb::OpenMemoryRequest>,
    ) -> Result<Response<pb::OpenMemoryReply>, Status> {
        let sender = self.caller(&request)?;
        let r = request.into_inner();
        let memory =
            self.memory.as_ref().ok_or_else(|| Status::unimplemented("this node offers no shared memory"))?;
        let auth = self.authorised().await?;
        let from = r.from as usize;
        if r.run_id != auth.run_id || r.token.as_ref() != auth.token.as_slice() {
            return Err(Status::unauthenticated("the request does not carry this run's id and token"));
        }
        if sender.is_some_and(|id| id != from) || auth.peers.binary_search(&from).is_err() {
            return Err(Status::permission_denied(format!("node {from} may not open shared memory here")));
        }
        let reply = memory
            .open(from)
            .map_err(|e| Status::resource_exhausted(format!("no shared-memory segment: {e}")))?;
        Ok(Response::new(reply))
    }
}

impl GossipService {
    /// Reads the messages of one call, one after another, until the sender ends it. A link keeps
    /// its call open for the run, so between two messages the wait has no stall limit (HTTP/2
    /// keep-alive drops a peer that stops answering); within a message it has.
    async fn receive_all(
        &self,
        sender: Option<usize>,
        mut stream: Streaming<pb::Chunk>,
    ) -> Result<(), Status> {
        let mut first =
            next_chunk(&mut stream).await?.ok_or_else(|| Status::invalid_argument("empty message stream"))?;
        let mut stop = self.stop.clone();
        loop {
            let msg = self.receive(sender, first, &mut stream).await?;
            let (from, len) = (msg.from, msg.bytes);
            self.tx.send(msg).await.map_err(|_| Status::unavailable("this node is shutting down"))?;
            let next = tokio::select! {
                biased;
                next = stream.message() => next,
                () = stopped(&mut stop) => return Ok(()),
            };
            first = match next {
                Ok(Some(c)) if c.header.is_some() => c,
                Ok(Some(_)) => return Err(longer(from, len)),
                // The sender ended its link: after its last message, or by dropping the call (a
                // new epoch's links replace it); either way nothing of a message is lost here.
                Ok(None) | Err(_) => return Ok(()),
            };
        }
    }

    /// Checks, reads and decodes one message starting with chunk `first`, from `sender` (the node
    /// its certificate names, with TLS). It ends when the header's length has arrived.
    async fn receive(
        &self,
        sender: Option<usize>,
        first: pb::Chunk,
        stream: &mut Streaming<pb::Chunk>,
    ) -> Result<Inbound, Status> {
        let h = first.header.ok_or_else(|| Status::invalid_argument("the first chunk has no header"))?;
        if let Some(id) = sender
            && h.from as usize != id
        {
            return Err(Status::permission_denied(format!(
                "a message claiming to be from node {} came with node {id}'s certificate",
                h.from
            )));
        }
        let auth = self.authorised().await?;
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
        // Priced only now that the length is known to be within the limit.
        let (payload, framed) = match first.slot {
            Some(slot) => self.read_slot(from, &h, slot, first.data.len())?,
            None => (self.read_bytes(from, len, first.data, stream).await?, framed_len(&h, len)),
        };
        Ok(Inbound { from, epoch: h.epoch, iteration: h.iteration, exchange, payload, bytes: len, framed })
    }

    /// Decodes a message of `len` bytes carried in its chunks, the first holding `first`.
    async fn read_bytes(
        &self,
        from: usize,
        len: usize,
        first: Bytes,
        stream: &mut Streaming<pb::Chunk>,
    ) -> Result<Compressed, Status> {
        if first.len() > len {
            return Err(longer(from, len));
        }
        let mut payload = self.pool.take(self.dim);
        let result = if first.len() == len {
            // The whole message in one chunk (up to 1 MiB): decoded in place.
            payload.decode_from(&first, self.dim).map_err(|e| malformed(from, e))
        } else {
            // Longer messages are decoded chunk by chunk as they arrive (dense values straight
            // into the pooled vector): never reassembled, and the decoding overlaps the transfer.
            self.decode_stream(from, len, first, stream, &mut payload).await
        };
        match result {
            Ok(()) => Ok(payload),
            Err(status) => {
                self.pool.give(payload);
                Err(status)
            }
        }
    }

    /// Decodes a message that sender `from` wrote into `slot` of its segment (`extra`: bytes its
    /// chunk carried besides, which such a chunk must not).
    fn read_slot(
        &self,
        from: usize,
        h: &pb::Header,
        slot: pb::MemorySlot,
        extra: usize,
    ) -> Result<(Compressed, u64), Status> {
        let bad =
            |why: &str| Status::invalid_argument(format!("the shared-memory message from node {from} {why}"));
        if extra != 0 {
            return Err(bad("also carries bytes in its chunk"));
        }
        let none = || {
            Status::failed_precondition(format!(
                "node {from} names a shared-memory slot, but holds no segment here"
            ))
        };
        let segment = match self.memory.as_ref().map(|m| m.get(from, slot.generation)) {
            Some(Ok(segment)) => segment,
            Some(Err(Missing::Generation)) => {
                return Err(bad(&format!(
                    "names segment {}, which this node does not hold",
                    slot.generation
                )));
            }
            Some(Err(Missing::Sender)) | None => return Err(none()),
        };
        let len = h.length as usize;
        let mut payload = self.pool.take(self.dim);
        match segment.read(&slot, len, |b| payload.decode_from(b, self.dim)) {
            Ok(Ok(())) => Ok((payload, framed_in_memory(h, &slot, len))),
            Ok(Err(e)) => {
                self.pool.give(payload);
                Err(malformed(from, e))
            }
            Err(why) => {
                self.pool.give(payload);
                Err(bad(&why))
            }
        }
    }

    /// The run's credentials, once the node has them (early callers wait up to `auth_wait`).
    async fn authorised(&self) -> Result<Auth, Status> {
        let mut auth = self.auth.clone();
        let got = tokio::time::timeout(self.auth_wait, auth.wait_for(|a| a.is_some()))
            .await
            .map_err(|_| Status::unavailable("this node has not joined a run yet"))?
            .map_err(|_| Status::unavailable("this node is shutting down"))?
            .clone();
        Ok(got.expect("waited for Some"))
    }

    /// Decodes a message of `len` bytes whose first chunk was `first` (shorter than `len`),
    /// reading its further chunks as they come.
    async fn decode_stream(
        &self,
        from: usize,
        len: usize,
        first: Bytes,
        stream: &mut Streaming<pb::Chunk>,
        payload: &mut Compressed,
    ) -> Result<(), Status> {
        let mut dec = StreamDecoder::default();
        dec.begin(self.dim);
        let mut got = first.len();
        dec.feed(&first, payload);
        // Release each chunk before waiting for the next: tonic's receive buffer can then reuse
        // its space instead of reallocating (and copying) for every chunk.
        drop(first);
        while got < len && !dec.failed() {
            let data = match next_chunk(stream).await? {
                None => {
                    return Err(Status::invalid_argument(format!(
                        "message from node {from} ended after {got} of {len} bytes"
                    )));
                }
                Some(c) if c.header.is_some() || c.slot.is_some() => {
                    return Err(Status::invalid_argument("a header or slot in a chunk other than the first"));
                }
                Some(c) => c.data,
            };
            got += data.len();
            if got > len {
                return Err(longer(from, len));
            }
            dec.feed(&data, payload);
        }
        dec.finish(payload).map_err(|e| malformed(from, e))
    }
}

/// Resolves once `stop` turns true or its node drops it; never without one.
async fn stopped(stop: &mut Option<watch::Receiver<bool>>) {
    match stop {
        Some(rx) => {
            let _ = rx.wait_for(|&s| s).await;
        }
        None => std::future::pending().await,
    }
}

fn longer(from: usize, len: usize) -> Status {
    Status::invalid_argument(format!("message from node {from} is longer than its header's {len} bytes"))
}

/// The next chunk of a message; a stream that stalls for [`CHUNK_STALL`] mid-message is dropped.
async fn next_chunk(stream: &mut Streaming<pb::Chunk>) -> Result<Option<pb::Chunk>, Status> {
    match tokio::time::timeout(CHUNK_STALL, stream.message()).await {
        Ok(chunk) => chunk,
        Err(_) => Err(Status::deadline_exceeded(format!(
            "the message stalled: no chunk for {} s",
            CHUNK_STALL.as_secs()
        ))),
    }
}

/// Bytes a message with `header` and `n` encoded bytes costs as gRPC chunks: each chunk's
/// protobuf encoding plus the 5-byte gRPC message prefix (the header rides in the first chunk).
/// Sender and receiver count the same figure.
pub fn framed_len(header: &pb::Header, n: usize) -> u64 {
    let field =
        |len: u64| if len == 0 { 0 } else { 1 + prost::length_delimiter_len(len as usize) as u64 + len };
    let (n, chunk) = (n as u64, CHUNK_BYTES as u64);
    let (full, last) = (n / chunk, n % chunk);
    let chunks = (full + u64::from(last > 0)).max(1);
    // Saturating: a length this large is refused anyway (it is priced only after the limit check).
    field(header.encoded_len() as u64)
        .saturating_add(full.saturating_mul(field(chunk)))
        .saturating_add(field(last))
        .saturating_add(chunks.saturating_mul(5))
}

fn malformed(from: usize, e: dprox_compress::WireError) -> Status {
    Status::invalid_argument(format!("malformed message from node {from}: {e}"))
}

/// HTTP/2 flow-control window of one stream (one message): a 1e7-parameter dense message
/// (40 MB) then needs no window update round trip before its last 8 MiB.
pub const STREAM_WINDOW: u32 = 32 << 20;
/// HTTP/2 flow-control window of a connection (a link carries the x and y messages).
pub const CONNECTION_WINDOW: u32 = 64 << 20;

/// An HTTP/2 endpoint for reaching `peer` at `address`, secured by `security` (mutual TLS: the
/// server's certificate must name `peer`), with the windows large vectors need
/// ([`STREAM_WINDOW`], [`CONNECTION_WINDOW`]) and Nagle off for small exchanges.
pub fn endpoint(security: &Security, address: &str, peer: Peer) -> Result<Endpoint, tonic::transport::Error> {
    Ok(security
        .endpoint(address, peer)?
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5)))
}

/// A gRPC server secured by `security` under `limits` (see [`dprox_net::limits`]), with the same
/// windows, and frames of up to 16 MiB so that a 1 MiB chunk travels in one HTTP/2 frame.
pub fn server(security: &Security, limits: &Limits) -> Result<tonic::transport::Server, TlsError> {
    Ok(security
        .server(limits)?
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size((16 << 20) - 1)
        .tcp_nodelay(true))
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
    pub(crate) client: pb::gossip_client::GossipClient<Channel>,
    /// The peer's shared-memory segment, where it offers one (shared by the clones).
    pub(crate) memory: Arc<Mutex<MemoryLink>>,
}

/// Whether a link hands its messages over in the receiver's shared memory.
#[derive(Debug)]
pub(crate) enum MemoryLink {
    /// Not asked for.
    Off,
    /// To be asked for at the next call.
    Untried,
    /// Open: messages that fit a free slot go there.
    Open(Outbox),
    /// The peer does not offer it, or it could not be opened from here.
    Unavailable,
}

impl PeerClient {
    /// A client for `peer` at `address`, secured by `security`; the connection is made on first
    /// use and then reused.
    pub fn new(peer: usize, address: &str, security: &Security) -> Result<PeerClient, TransportError> {
        let err = |e: tonic::transport::Error| TransportError::Address {
            peer,
            address: address.into(),
            message: e.to_string(),
        };
        let channel = endpoint(security, address, Peer::Node(peer)).map_err(err)?.connect_lazy();
        let client = pb::gossip_client::GossipClient::new(channel)
            .max_decoding_message_size(CHUNK_BYTES + 4096)
            .max_encoding_message_size(CHUNK_BYTES + 4096);
        Ok(PeerClient {
            peer,
            address: address.into(),
            client,
            memory: Arc::new(Mutex::new(MemoryLink::Off)),
        })
    }

    /// Asks the peer, at the link's next call, for a shared-memory segment to hand messages over
    /// in (used if the peer is on this host and offers one; see [`crate::memory`]).
    pub fn with_shared_memory(self, on: bool) -> PeerClient {
        *self.memory.lock().unwrap_or_else(|e| e.into_inner()) =
            if on { MemoryLink::Untried } else { MemoryLink::Off };
        self
    }

    /// Whether messages to this peer go through shared memory.
    pub fn in_shared_memory(&self) -> bool {
        matches!(*self.memory.lock().unwrap_or_else(|e| e.into_inner()), MemoryLink::Open(_))
    }

    /// Asks for a new segment at the next call, if shared memory was asked for.
    pub(crate) fn forget_memory(&self) {
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(*memory, MemoryLink::Off) {
            *memory = MemoryLink::Untried;
        }
    }

    /// Opens the peer's segment if asked to and not yet tried, as the sender `header` names. A
    /// peer that cannot be reached is asked again at the next call; one that refuses, or whose
    /// segment cannot be opened from here, is not.
    pub(crate) async fn open_memory(&mut self, header: &pb::Header) {
        if !matches!(*self.memory.lock().unwrap_or_else(|e| e.into_inner()), MemoryLink::Untried) {
            return;
        }
        let req = pb::OpenMemoryRequest {
            run_id: header.run_id.clone(),
            token: header.token.clone(),
            from: header.from,
        };
        let state = match self.client.open_memory(req).await {
            Ok(reply) => match Segment::open(reply.get_ref()) {
                Ok(segment) => {
                    let s = segment.shape();
                    tracing::info!(
                        peer = self.peer,
                        "messages to node {} go through shared memory ({} slots of {} bytes)",
                        self.peer,
                        s.slots,
                        s.slot_bytes
                    );
                    MemoryLink::Open(Outbox::new(segment))
                }
                Err(e) => {
                    tracing::info!(peer = self.peer, "messages to node {} travel as bytes: {e}", self.peer);
                    MemoryLink::Unavailable
                }
            },
            Err(status) if status.code() == tonic::Code::Unavailable => MemoryLink::Untried,
            Err(status) => {
                tracing::info!(
                    peer = self.peer,
                    "messages to node {} travel as bytes: {}",
                    self.peer,
                    describe(&status)
                );
                MemoryLink::Unavailable
            }
        };
        *self.memory.lock().unwrap_or_else(|e| e.into_inner()) = state;
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
        let msgs: Vec<pb::Chunk> = crate::link::chunks(header, data).collect();
        let framed = msgs.iter().map(|m| m.encoded_len() as u64 + 5).sum();
        debug_assert_eq!(framed, framed_len(msgs[0].header.as_ref().expect("first chunk"), n));
        self.client.push(tokio_stream::iter(msgs)).await.map_err(|status| TransportError::Send {
            peer: self.peer,
            address: self.address.clone(),
            iteration,
            exchange,
            message: describe(&status),
        })?;
        Ok(SendStats { payload: n as u64, framed })
    }

    /// Asks the peer for its model at the start of `epoch` (a joining node), as the run `auth`.
    pub async fn fetch_model(
        &mut self,
        run_id: &str,
        token: &Bytes,
        from: usize,
        epoch: u64,
        dim: usize,
    ) -> Result<Vec<f32>, TransportError> {
        let req =
            pb::FetchModelRequest { run_id: run_id.into(), token: token.clone(), from: from as u32, epoch };
        let fail = |message: String| TransportError::Fetch {
            peer: self.peer,
            address: self.address.clone(),
            message,
        };
        let reply = self.client.fetch_model(req).await.map_err(|s| fail(describe(&s)))?.into_inner();
        if reply.x.len() != 4 * dim {
            return Err(fail(format!(
                "the model has {} bytes, not {} ({dim} parameters)",
                reply.x.len(),
                4 * dim
            )));
        }
        let x: Vec<f32> =
            reply.x.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(fail(format!("the model holds {} at coordinate {i}", x[i])));
        }
        Ok(x)
    }

    /// Asks whether the peer is still serving. [`PingError::Unreachable`] says why it is not
    /// (connection refused: the process is gone); [`PingError::NoAnswer`] only that it did not
    /// answer in time, which a busy machine can cause too.
    pub async fn ping(&mut self, timeout: Duration) -> Result<(), PingError> {
        match tokio::time::timeout(timeout, self.client.ping(pb::PingRequest {})).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(PingError::Unreachable(describe(&status))),
            Err(_) => Err(PingError::NoAnswer(timeout)),
        }
    }
}

/// Why a liveness probe failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PingError {
    /// The peer cannot be reached or refused the probe: the description of the failure.
    #[error("{0}")]
    Unreachable(String),
    /// No answer within the probe's timeout.
    #[error("no answer to a liveness probe within {:.1} s", .0.as_secs_f64())]
    NoAnswer(Duration),
}

/// A readable account of a gRPC failure: connection errors hide in the source chain, whose
/// layers (tonic, hyper, the connector) often repeat one another's words, so a layer that says
/// nothing new is left out ("tcp connect error: transport error: Connection refused").
pub fn describe(status: &Status) -> String {
    use std::error::Error;
    let mut parts = vec![status.code().to_string(), status.message().to_string()];
    let mut src = status.source();
    while let Some(e) = src {
        let text = e.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        src = e.source();
    }
    parts.retain(|p| !p.is_empty());
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error layer with a message and an optional cause.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn describe_keeps_each_layer_once_and_the_root_cause() {
        // The shape of tonic's connection-refused status: the repeated layers go, the cause stays.
        let chain = Layer(
            "transport error",
            Some(Box::new(Layer(
                "tcp connect error",
                Some(Box::new(Layer(
                    "tcp connect error",
                    Some(Box::new(Layer("Connection refused (os error 111)", None))),
                ))),
            ))),
        );
        let mut status = Status::unavailable("tcp connect error");
        status.set_source(std::sync::Arc::new(chain));
        assert_eq!(
            describe(&status),
            "The service is currently unavailable: tcp connect error: transport error: Connection refused (os error 111)"
        );
        assert_eq!(describe(&Status::unavailable("")), "The service is currently unavailable");
    }
}
