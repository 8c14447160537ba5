//! Communication topologies for dprox: which peers gossip with which, and with what weights.
//!
//! This crate owns the undirected graph over nodes `0..n`, the mixing matrix `W` each node
//! uses to average its own and its neighbours' values, the checks that make `W` a valid gossip
//! matrix (symmetric, doubly stochastic, nonnegative, supported on a connected graph), and the
//! spectral facts that govern how fast gossip reaches consensus
//! (`rho = ||W - 11^T/n||_2`, spectral gap `1 - rho`).
//!
//! # Layout
//! - [`graph`]: [`Graph`] and its families (ring, torus, complete, star, hypercube,
//!   exponential, Erdos-Renyi, explicit edge lists).
//! - [`weights`]: [`MixingMatrix`] (Metropolis, max-degree, explicit) with sorted sparse rows
//!   that include the diagonal.
//! - [`validate`]: [`MixingMatrix::validate`] and [`validate_graph_connected`].
//! - [`spectral`]: a dense symmetric eigenvalue solver (Householder + implicit QL) and
//!   [`MixingMatrix::rho`] / [`MixingMatrix::spectral_gap`].
//! - [`facts`]: [`TopologyFacts`], a printable summary.
//! - [`error`]: the crate's one error type, [`TopologyError`].
//!
//! ```
//! use dprox_topology::{Graph, MixingMatrix, TopologyFacts};
//!
//! let g = Graph::hypercube(16)?;
//! let w = MixingMatrix::metropolis(&g)?;
//!
//! // One gossip round: node 3 averages over its row, diagonal included.
//! let v: Vec<f64> = (0..16).map(|i| i as f64).collect();
//! let mixed: f64 = w.row(3).iter().map(|&(j, wij)| wij * v[j]).sum();
//! assert!((mixed - 3.0 * 0.2 - (2.0 + 1.0 + 7.0 + 11.0) * 0.2).abs() < 1e-12);
//!
//! // Hypercube(16) with Metropolis weights: eigenvalues 1 - 2m/5, so rho = 3/5.
//! assert!((w.rho() - 0.6).abs() < 1e-12);
//! let facts = TopologyFacts::compute(&g, &w)?;
//! assert_eq!(facts.max_degree, 4);
//! println!("{facts}");
//! # Ok::<(), dprox_topology::TopologyError>(())
//! ```

pub mod error;
pub mod facts;
pub mod graph;
pub mod schedule;
pub mod spectral;
pub mod validate;
pub mod weights;

pub use error::TopologyError;
pub use facts::{MIN_SPECTRAL_GAP, TopologyFacts};
pub use graph::Graph;
pub use schedule::{NodeRounds, Pairing, RoundChoice, Schedule};
pub use spectral::symmetric_eigenvalues;
pub use validate::validate_graph_connected;
pub use weights::MixingMatrix;
