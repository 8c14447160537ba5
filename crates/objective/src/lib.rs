//! Local objectives f_i for dprox: what each node minimises on its own data.
//!
//! This crate owns the [`Objective`] trait (the plug-in point between a model and the
//! decentralized algorithms), the built-in models — [`Logistic`] and [`LeastSquares`] regression,
//! [`Softmax`] regression, an [`Mlp`] and a convolutional [`LeNet`] — and the factory [`build`]
//! that turns a configured [`ModelSpec`] into a boxed objective on a node's
//! [`Dataset`](dprox_data::Dataset).
//!
//! Every model keeps its parameters in one flat `f32` vector, works on dense and sparse (CSR)
//! features, returns the mean loss as `f64`, and is deterministic: the same `x` and batch give
//! bit-identical results. After the first call with a given batch size, `loss_grad` reuses the
//! scratch buffers it keeps, so the training loop does not allocate in this crate.
//!
//! # Layout
//!
//! - `objective.rs`: [`Batch`] and the [`Objective`] trait.
//! - `spec.rs`: [`ModelSpec`], [`ModelKind`], [`Activation`], [`Pool`], the global [`Shape`] and
//!   [`build`].
//! - `linear.rs`: the shared generalised-linear core, [`Logistic`] and [`LeastSquares`].
//! - `softmax.rs`: [`Softmax`] and the stable cross-entropy head shared with the MLP.
//! - `mlp.rs`: [`Mlp`].
//! - `lenet.rs`: [`LeNet`], its [`LeNetArch`] and parameter layout ([`LeNetLayer`]).
//! - `conv.rs`: LeNet's kernels: im2col / col2im (convolution as a GEMM) and 2x2 pooling.
//! - `kernels.rs`: the convolutions' matrix products (narrow side in registers, AVX2 + FMA
//!   with a portable twin that gives the same bits).
//! - `batch.rs`: chunking of batches, the dense gather scratch, the dense (GEMM) and sparse
//!   affine maps, and the data checks.
//! - `device.rs`: [`Device`], the name of a compute device (opened by dprox-compute).
//! - `error.rs`: [`ObjectiveError`].
//!
//! # Bringing your own model
//!
//! Implement [`Objective`] and dprox can train it. Here, 1-D least squares
//! f(x) = mean 0.5 (x a_j - y_j)^2 over a node's samples (a_j, y_j):
//!
//! ```
//! use dprox_objective::{Batch, Objective};
//!
//! struct Line {
//!     a: Vec<f32>,
//!     y: Vec<f32>,
//! }
//!
//! impl Objective for Line {
//!     fn dim(&self) -> usize {
//!         1
//!     }
//!     fn num_samples(&self) -> usize {
//!         self.a.len()
//!     }
//!     fn loss_grad(&mut self, x: &[f32], batch: Batch<'_>, grad: &mut [f32]) -> f64 {
//!         let all: Vec<usize> = (0..self.a.len()).collect();
//!         let idx = match batch {
//!             Batch::Full => &all[..],
//!             Batch::Indices(ix) => ix,
//!         };
//!         let (mut loss, mut g) = (0.0f64, 0.0f64);
//!         for &j in idx {
//!             let r = f64::from(x[0] * self.a[j] - self.y[j]);
//!             loss += 0.5 * r * r;
//!             g += r * f64::from(self.a[j]);
//!         }
//!         let n = idx.len() as f64;
//!         grad[0] = (g / n) as f32;
//!         loss / n
//!     }
//! }
//!
//! let mut f = Line { a: vec![1.0, 2.0], y: vec![1.0, 4.0] };
//! let mut g = [0.0f32];
//! // At x = 0: residuals -1 and -4, loss (1 + 16) / 4, gradient (-1 - 8) / 2.
//! let loss = f.loss_grad(&[0.0], Batch::Full, &mut g);
//! assert_eq!(loss, 4.25);
//! assert_eq!(g[0], -4.5);
//! // A minibatch of the second sample only.
//! assert_eq!(f.loss(&[2.0], Batch::Indices(&[1])), 0.0);
//! ```
//!
//! The built-in models come from a spec:
//!
//! ```
//! use std::sync::Arc;
//! use dprox_data::{Dataset, Features};
//! use dprox_objective::{Batch, ModelKind, ModelSpec, Shape, build};
//!
//! let data = Dataset {
//!     features: Features::Dense(ndarray::array![[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]),
//!     targets: vec![0.0, 2.0, 1.0],
//!     classes: Some(3),
//! };
//! let shape = Shape::of(&data);
//! let spec = ModelSpec::new(ModelKind::Softmax);
//! let mut f = build(&spec, Arc::new(data), shape).unwrap();
//! assert_eq!(f.dim(), 3 * 2 + 3);
//! let mut g = vec![0.0; f.dim()];
//! let loss = f.loss_grad(&vec![0.0; f.dim()], Batch::Full, &mut g);
//! assert!((loss - 3f64.ln()).abs() < 1e-12);
//! ```

mod batch;
mod conv;
mod device;
mod error;
mod kernels;
mod lenet;
mod linear;
mod mlp;
pub mod objective;
mod softmax;
mod spec;

pub use device::{Device, DeviceNameError};
pub use error::ObjectiveError;
pub use lenet::{LeNet, LeNetArch, LeNetLayer};
pub use linear::{LeastSquares, Logistic};
pub use mlp::Mlp;
pub use objective::{Batch, Objective};
pub use softmax::Softmax;
pub use spec::{Activation, ModelKind, ModelSpec, Pool, Shape, TensorLayout, build};
