//! The simulator: a decentralized cluster of n nodes in one process, on a virtual clock.
//!
//! Every node runs the sans-IO core of `dprox-core`, exactly as a networked `dprox-node` does; the
//! simulator replaces the network by an in-memory exchange and the wall clock by a cost model:
//! per-node compute speed (heterogeneous workers, stragglers) and per-link latency and bandwidth.
//! It reports the metrics of docs/algorithms.md and the time the run would take on that network.
//!
//! # Layout
//! - [`simulation`]: [`Simulation`], one iteration at a time (gradients in parallel with rayon,
//!   deterministic whatever the thread count).
//! - [`clock`]: the virtual clock, a max-plus recursion over per-neighbour waits.
//! - [`membership`]: the fault schedule: epochs, leaving, crashing, rejoining, pauses, links.
//! - [`run`]: [`simulate`], a whole run with `metrics.csv` and `summary.json`.
//!
//! ```
//! let cfg = dprox_config::parse(r#"
//!     [run]
//!     algorithm = "dproxsgt"
//!     iterations = 20
//!     eval_every = 10
//!     [topology]
//!     kind = "ring"
//!     nodes = 4
//!     [data]
//!     synthetic = { kind = "least_squares", samples = 200, features = 10 }
//!     [model]
//!     kind = "least_squares"
//!     [optimizer]
//!     lr = 0.1
//! "#, "doc.toml".as_ref()).unwrap();
//! let run = dprox_prepare::Prepared::new(cfg, ".".as_ref(), "doc".into()).unwrap();
//! let mut rows = 0;
//! let summary = dprox_sim::simulate(&run, None, |e| {
//!     if let dprox_sim::Event::Row(_) = e { rows += 1 }
//! }).unwrap();
//! assert_eq!(rows, 3); // iterations 0, 10 and 20
//! assert_eq!(summary.iterations, 20);
//! // 4 nodes x 2 neighbours x 2 exchanges x 20 iterations, each message 2 + 1 + 44 bytes.
//! assert_eq!(summary.bytes_sent, 4 * 2 * 2 * 20 * 47);
//! ```

pub mod clock;
pub mod membership;
pub mod run;
pub mod simulation;

pub use run::{Event, simulate, simulate_with};
pub use simulation::{SimError, Simulation};
