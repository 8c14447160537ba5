//! The network layer of dprox: gRPC gossip between nodes and the coordinator's wire types.
//!
//! The sans-IO core never sees this crate's types: a node's driver decodes what arrives here into
//! `dprox_compress::Compressed` and hands it to `dprox_core::Node::handle_message`.
//!
//! # Layout
//! - [`pb`]: the generated protobuf types and services of `proto/dprox/v1` (for the node and the
//!   coordinator crates only).
//! - [`gossip`]: the Gossip server (authenticates, size-limits, reassembles and decodes incoming
//!   messages) and a peer client (chunked streaming over a reused HTTP/2 connection).
//! - [`link`]: a link's open call, carrying its messages back to back.
//! - [`buffers`]: buffers of encoded outgoing messages, back for the next message once every link
//!   is done with them.
//! - [`codec`]: prost's gRPC codec with buffers sized per message type (a chunk is copied
//!   into its buffer once).
//! - [`memory`]: shared-memory slots a sender on the receiver's host writes its messages into
//!   (the chunk then carries the slot, not the bytes).
//! - [`shape`]: per-link delay, bandwidth cap and loss, applied by the sender.
//!
//! Large vectors travel as a stream of ~1 MiB chunks with raised HTTP/2 windows; every message is
//! refused, not crashed on, when it is oversized, malformed, or carries the wrong run or token.

pub mod buffers;
pub mod codec;
pub mod gossip;
pub mod link;
pub mod memory;
pub mod shape;

/// Generated protobuf types and services (`dprox.v1`).
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("dprox.v1");
}

pub use buffers::SendBuffers;
pub use gossip::{
    Auth, CHUNK_BYTES, CONNECTION_WINDOW, GossipService, Inbound, PayloadPool, PeerClient, PingError,
    PublishedModel, STREAM_WINDOW, SendStats, TransportError, describe, endpoint, framed_len,
    max_message_bytes, server,
};
pub use link::{CallEnd, Queued};
pub use shape::{LinkShape, Shaper};
