//! Network hardening shared by every dprox server and client.
//!
//! - [`limits`]: the limits of every listening port, named in one place with their defaults.
//! - [`listener`]: accepting connections under a cap, backing off when the process runs out of
//!   file descriptors instead of spinning or failing.
//! - [`http`]: serving an HTTP router (status page, `/metrics`) with a header-read timeout, a
//!   connection lifetime and the connection cap.
//! - [`identity`]: who a peer is, read from the certificate it presented (`node-3.dprox`,
//!   `coordinator.dprox`, `operator.dprox`).
//! - [`tls`]: a process's TLS material (the cluster CA, its certificate and key) and the tonic
//!   server and client configurations that require and check certificates both ways.
//! - [`certs`]: making a cluster's CA and one certificate per node, for the coordinator and for
//!   operators (`dprox certs`).

pub mod certs;
pub mod http;
pub mod identity;
pub mod limits;
pub mod listener;
pub mod tls;

pub use identity::Peer;
pub use limits::Limits;
pub use listener::{Guarded, incoming};
pub use tls::{Security, SecurityArgs, TlsError, TlsFiles};
