//! The limits of every listening port. A server built by dprox takes them from here; nothing a
//! network client sends can make a process hold more than these allow.

use std::time::Duration;

/// Limits of one kind of server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; beyond it a new connection is closed at once.
    pub max_connections: usize,
    /// A TLS handshake (or, over plaintext, an HTTP request's headers) must complete within it.
    pub handshake_timeout: Duration,
    /// HTTP/2 streams a connection may have open at once (gRPC servers).
    pub max_concurrent_streams: u32,
    /// A connection is closed after this long, whatever it does (HTTP endpoints: browsers and
    /// scrapers reconnect); none for gRPC, whose peers hold connections for the run.
    pub max_connection_age: Option<Duration>,
    /// HTTP/2 keep-alive pings: a peer that stops answering for this long is disconnected.
    pub keepalive: Duration,
}

/// The gossip server of a node: its neighbours (a few connections each, a few streams each),
/// anyone else only as far as the TLS handshake.
pub const GOSSIP: Limits = Limits {
    max_connections: 256,
    handshake_timeout: Duration::from_secs(10),
    max_concurrent_streams: 64,
    max_connection_age: None,
    keepalive: Duration::from_secs(20),
};

/// The coordinator's gRPC server: every node, the launcher and operators.
pub const COORDINATOR: Limits = Limits {
    max_connections: 4096,
    handshake_timeout: Duration::from_secs(10),
    max_concurrent_streams: 64,
    max_connection_age: None,
    keepalive: Duration::from_secs(20),
};

/// The HTTP endpoints (status page, `/api/status`, `/metrics`).
pub const HTTP: Limits = Limits {
    max_connections: 256,
    handshake_timeout: Duration::from_secs(5),
    max_concurrent_streams: 1,
    max_connection_age: Some(Duration::from_secs(30)),
    keepalive: Duration::from_secs(20),
};

/// How long a gossip message may stall between two of its chunks before its stream is dropped.
pub const CHUNK_STALL: Duration = Duration::from_secs(30);

/// The most a coordinator call may carry besides a model's worth of values: headers, ids and
/// numbers (a report carries the node's iterate, 4 bytes a value).
pub const CALL_OVERHEAD_BYTES: usize = 64 << 10;

/// The largest coordinator message for a model of `dim` values (a report with its iterate).
pub fn coordinator_message_bytes(dim: usize) -> usize {
    dim.saturating_mul(4).saturating_add(CALL_OVERHEAD_BYTES)
}

/// Accepting stops for this long, doubling up to [`ACCEPT_BACKOFF_MAX`], while the process has no
/// file descriptor left (EMFILE, ENFILE) or no memory for a socket.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);

/// The longest accept back-off.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
