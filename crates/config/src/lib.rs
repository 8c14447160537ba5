//! The run config of dprox: the TOML schema, its validation, and the preparation of a run.
//!
//! One config file describes a whole experiment (algorithm, graph, data, model, regulariser,
//! step sizes, compression, simulated network, per-node overrides). [`Prepared`] turns it into
//! what every driver needs, so `dprox sim` and a cluster node started from the same file compute
//! on the same data from the same x^0.
//!
//! # Layout
//! - [`schema`]: the serde structs, key by key (unknown keys are errors).
//! - `validate`: [`Config::validate`], the checks that need no files.
//! - `build`: [`Prepared`] (graph, weights, node data, test set, x^0, core configs).
//! - `custom`: [`Prepared::with_objective`], for `[model] kind = "custom"`: training an objective
//!   of the program embedding dprox (see `examples/custom-objective`).
//! - [`error`]: [`ConfigError`], naming the key or file at fault.
//!
//! ```
//! use dprox_config::parse;
//! let cfg = parse(r#"
//!     [run]
//!     algorithm = "cdproxsgt"
//!     iterations = 100
//!     [topology]
//!     kind = "ring"
//!     nodes = 4
//!     [data]
//!     synthetic = { kind = "least_squares", samples = 400, features = 20 }
//!     [model]
//!     kind = "least_squares"
//!     [optimizer]
//!     lr = 0.05
//!     gamma_x = 0.5
//!     gamma_y = 0.5
//!     [compression]
//!     x = { kind = "top_k", ratio = 0.25 }
//!     y = { kind = "top_k", ratio = 0.25 }
//! "#, "inline.toml".as_ref()).unwrap();
//! let run = dprox_config::Prepared::new(cfg, ".".as_ref(), "doc".into()).unwrap();
//! assert_eq!(run.n(), 4);
//! assert_eq!(run.dim, 21); // 20 weights and a bias
//! assert_eq!(run.node_data.iter().map(|d| d.len()).sum::<usize>(), 400);
//! ```

mod build;
mod custom;
pub mod error;
pub mod schema;
mod validate;

pub use build::{LinkCost, NodeDataStats, Prepared, load, parse};
pub use error::ConfigError;
pub use schema::Config;
