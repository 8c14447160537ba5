//! The algorithm core of dprox: DProxSGT, CDProxSGT and the baselines, as sans-IO state machines.
//!
//! A [`Node`] takes its stochastic gradient and its neighbours' messages as inputs and returns the
//! messages to send; it never reads a clock, a socket or the OS random generator. The simulator
//! and the gRPC node both drive this one implementation, so a simulated run and a real cluster
//! with the same config compute the same iterates, bit for bit. The equations are those of
//! docs/algorithms.md (the project's numerical contract).
//!
//! # Layout
//! - [`algorithm`]: [`Algorithm`], [`Exchange`] and the per-node [`NodeConfig`].
//! - [`node`]: the [`Node`] state machine (its doc gives the call order).
//! - `inbox`: sums neighbour terms in ascending id whatever the arrival order.
//! - [`prox`]: the proximal operators and regulariser values.
//! - [`batch`]: seeded minibatch sampling shared by every driver.
//! - [`harness`]: an in-memory lockstep [`Cluster`] (tests, simulator).
//! - [`error`]: the error type, [`CoreError`].
//!
//! # Example: two nodes minimising (x - 1)^2 / 2 and (x + 3)^2 / 2 with DProxSGT
//!
//! ```
//! use dprox_core::{Algorithm, Cluster, Delivery, NodeConfig, Prox};
//! let cfg = |id: usize| NodeConfig {
//!     id,
//!     algorithm: Algorithm::Dproxsgt,
//!     row: vec![(0, 0.5), (1, 0.5)],
//!     lr: 0.5,
//!     gamma_x: 1.0,
//!     gamma_y: 1.0,
//!     prox: Prox::None,
//!     compress_x: Default::default(),
//!     compress_y: Default::default(),
//!     seed: 7,
//!     x0: vec![0.0],
//!     rounds: None,
//! };
//! let mut cluster = Cluster::new(vec![cfg(0), cfg(1)]).unwrap();
//! let targets = [1.0f32, -3.0];
//! for _ in 0..50 {
//!     cluster.step(|i, x, g| g[0] = x[0] - targets[i], Delivery::Ascending, |_| {}).unwrap();
//! }
//! // The global minimiser of the average is -1; both nodes agree on it.
//! for node in cluster.nodes() {
//!     assert!((node.params()[0] + 1.0).abs() < 1e-6);
//! }
//! ```

pub mod algorithm;
pub mod batch;
pub mod error;
pub mod harness;
mod inbox;
pub mod node;
pub mod prox;

pub use algorithm::{Algorithm, Exchange, NodeConfig};
pub use batch::{BatchSampler, BatchSize};
pub use dprox_topology::{NodeRounds, Pairing, RoundChoice};
pub use error::CoreError;
pub use harness::{Cluster, Delivery, InOrder, Outbox, Receivers, Sent};
pub use node::{EpochStart, Node, NodeState, Phase, Recipients, Transmit};
pub use prox::Prox;
