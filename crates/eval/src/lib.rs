//! Evaluation and outputs of a dprox run, shared by the simulator and the cluster launcher.
//!
//! # Layout
//! - [`metrics`]: [`Evaluator`] computes the contract metrics of docs/algorithms.md (objective at the
//!   average model, consensus error, test accuracy, density) plus the proximal gradient mapping.
//! - [`checkpoint`]: checkpoint files (atomic, checksummed).
//! - [`model`]: `model.safetensors`, the average model by layer.
//! - [`output`]: `metrics.csv` rows ([`MetricsRow`], [`MetricsWriter`]) and `summary.json`.
//!
//! ```
//! use std::sync::Arc;
//! use dprox_core::Prox;
//! use dprox_data::{Dataset, Features};
//! use dprox_eval::Evaluator;
//! use dprox_objective::{build, ModelKind, ModelSpec, Shape};
//! let data = Arc::new(Dataset {
//!     features: Features::Dense(ndarray::array![[1.0f32], [2.0]]),
//!     targets: vec![1.0, 2.0],
//!     classes: None,
//! });
//! let spec = ModelSpec { bias: false, ..ModelSpec::new(ModelKind::LeastSquares) };
//! let shape = Shape { features: 1, classes: None };
//! let mut objectives = vec![build(&spec, data.clone(), shape).unwrap(), build(&spec, data, shape).unwrap()];
//! let mut ev = Evaluator::new(1, Prox::None, 0.1);
//! // Two nodes at 0.5 and 1.5: xbar = 1 fits y = x exactly.
//! let e = ev.evaluate(&[&[0.5], &[1.5]], &mut objectives, None);
//! assert_eq!(e.objective, 0.0);
//! assert_eq!(e.consensus_error, 0.25);
//! assert_eq!(e.density, 1.0);
//! // Each node's share of the consensus error: (0.5^2) / 2.
//! assert_eq!(ev.consensus_contributions().collect::<Vec<_>>(), [0.125, 0.125]);
//! ```

pub mod checkpoint;
pub mod metrics;
pub mod model;
pub mod output;

pub use metrics::{Evaluation, Evaluator};
pub use output::{
    EventKind, METRICS_HEADER, MembershipEvent, MetricsRow, MetricsWriter, OutputError, Recorder, Resume,
    RunHeader, RunStatus, Summary, read_metrics, write_json,
};
