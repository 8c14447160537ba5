//! Training your own objective with dprox, from your own crate, without editing dprox.
//!
//! This crate plays the user: it defines an objective dprox does not ship, robust linear
//! regression with the Huber loss ([`Huber`]), and gets the whole `dprox` command line for it in
//! one call (`main.rs`: `dprox_cli::main_with`, registering it as `huber`). A config says
//! `[model] kind = "custom", name = "huber"`, and `sim`, `launch`, `node` and `coordinator` of this
//! program train it, in the simulator or on a real cluster of processes.
//!
//! # Layout
//! - `lib.rs`: [`Huber`], the objective, [`HuberError`], and [`Huber::factory`], what dprox is
//!   handed.
//! - `main.rs`: the program (`cargo run -p dprox-example-custom-objective -- sim huber.toml ...`).
//!
//! ```
//! use std::sync::Arc;
//! use dprox_example_custom_objective::Huber;
//!
//! let run = dprox_prepare::Prepared::new(
//!     dprox_config::parse(r#"
//!         [run]
//!         algorithm = "dproxsgt"
//!         iterations = 20
//!         [topology]
//!         kind = "ring"
//!         nodes = 3
//!         [data]
//!         synthetic = { kind = "least_squares", samples = 150, features = 4 }
//!         [model]
//!         kind = "custom"
//!         [optimizer]
//!         lr = 0.5
//!     "#, "huber.toml".as_ref()).unwrap(),
//!     ".".as_ref(),
//!     "huber".into(),
//! ).unwrap();
//! let run = run.with_objective(Huber::factory(1.0).unwrap()).unwrap();
//! assert_eq!(run.dim(), 5); // 4 weights and a bias
//! let mut first = None;
//! let summary = dprox_sim::simulate(&run, None, |e| {
//!     if let dprox_sim::Event::Row(row) = e {
//!         first.get_or_insert(row.eval.objective);
//!     }
//! }).unwrap();
//! let (first, last) = (first.unwrap(), summary.last.unwrap().eval.objective);
//! assert!(last < first / 5.0, "{first} -> {last}");
//! ```

use std::sync::Arc;

use dprox_data::{Dataset, Features, InvalidDataset};
use dprox_objective::{Batch, Objective, Shape};
use dprox_prepare::{Factory, Part};

/// Why a [`Huber`] objective cannot be built.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum HuberError {
    /// The threshold between the quadratic and the linear part must be a positive number.
    #[error("the Huber delta must be positive and finite, got {0}")]
    Delta(f64),
    /// The data set is inconsistent (no samples, targets that do not match the rows, or
    /// malformed sparse arrays): what [`Dataset::validate`] found.
    #[error(transparent)]
    Data(#[from] InvalidDataset),
}

/// Robust linear regression: f(w, b) = mean_j h(a_j . w + b - y_j), with the Huber loss
/// h(r) = r^2 / 2 for |r| <= delta, delta (|r| - delta / 2) beyond.
///
/// Quadratic near zero like least squares, linear in the tails, so a few wild targets (outliers)
/// pull the fit with a force of at most `delta` each instead of one growing with their residual.
/// The gradient is mean_j psi(r_j) (a_j, 1), with psi(r) = clamp(r, -delta, delta).
///
/// Parameters: the `features` weights, then the bias (dim = features + 1). Dense and sparse (CSR)
/// features. Sums run over the batch in index order in `f64`, on one thread: bit-identical results
/// for the same `x` and batch, as the [`Objective`] contract asks.
#[derive(Debug)]
pub struct Huber {
    data: Arc<Dataset>,
    delta: f64,
    /// Gradient accumulator, kept between calls so that training does not allocate.
    acc: Vec<f64>,
}

impl Huber {
    /// Huber regression with threshold `delta` on `data` (its targets are the real responses).
    pub fn new(data: Arc<Dataset>, delta: f64) -> Result<Huber, HuberError> {
        check_delta(delta)?;
        // The shape and the CSR arrays, so that `loss_grad` indexes without further checks.
        data.validate()?;
        let dim = data.num_features() + 1;
        Ok(Huber { data, delta, acc: vec![0.0; dim] })
    }

    /// What dprox is handed (`Objectives::with("huber", ...)`, or `Prepared::with_objective`): a
    /// Huber objective with threshold `delta` on each node's data. `delta` is checked here, once.
    ///
    /// The factory cannot return an error, so it panics on malformed data (see
    /// [`HuberError`]): the data sets of a `Prepared` come from dprox's loaders, which check
    /// their files, so that does not happen there.
    pub fn factory(delta: f64) -> Result<Box<Factory>, HuberError> {
        check_delta(delta)?;
        Ok(Box::new(move |_part: Part, data: Arc<Dataset>, _shape: Shape| -> Box<dyn Objective> {
            // The size comes from the data, which dprox has checked has the global shape's
            // features on every node; `with_objective` would name any node that differed.
            match Huber::new(data, delta) {
                Ok(h) => Box::new(h),
                Err(e) => panic!("Huber regression on a malformed data set: {e}"),
            }
        }))
    }

    /// The threshold between the quadratic and the linear part.
    pub fn delta(&self) -> f64 {
        self.delta
    }

    /// Adds sample `j`'s loss to `loss` and its gradient to the accumulator.
    fn add_sample(&mut self, x: &[f32], j: usize, loss: &mut f64) {
        let (p, delta) = (self.acc.len() - 1, self.delta);
        let mut r = f64::from(x[p]) - f64::from(self.data.targets[j]);
        match &self.data.features {
            Features::Dense(m) => {
                let row = m.row(j);
                for (&a, &w) in row.iter().zip(&x[..p]) {
                    r += f64::from(a) * f64::from(w);
                }
                let psi = r.clamp(-delta, delta);
                for (acc, &a) in self.acc.iter_mut().zip(row.iter()) {
                    *acc += psi * f64::from(a);
                }
            }
            Features::Sparse(c) => {
                let (ix, v) = c.row(j);
                for (&k, &a) in ix.iter().zip(v) {
                    r += f64::from(a) * f64::from(x[k as usize]);
                }
                let psi = r.clamp(-delta, delta);
                for (&k, &a) in ix.iter().zip(v) {
                    self.acc[k as usize] += psi * f64::from(a);
                }
            }
        }
        self.acc[p] += r.clamp(-delta, delta);
        *loss += if r.abs() <= delta { 0.5 * r * r } else { delta * (r.abs() - 0.5 * delta) };
    }
}

impl Objective for Huber {
    fn dim(&self) -> usize {
        self.acc.len()
    }

    fn num_samples(&self) -> usize {
        self.data.len()
    }

    fn loss_grad(&mut self, x: &[f32], batch: Batch<'_>, grad: &mut [f32]) -> f64 {
        self.acc.fill(0.0);
        let mut loss = 0.0;
        let count = match batch {
            Batch::Full => {
                for j in 0..self.data.len() {
                    self.add_sample(x, j, &mut loss);
                }
                self.data.len()
            }
            Batch::Indices(ix) => {
                for &j in ix {
                    self.add_sample(x, j, &mut loss);
                }
                ix.len()
            }
        };
        // An empty minibatch has no mean; call it a zero loss and gradient rather than NaN.
        let n = count.max(1) as f64;
        // Every coordinate is written: dprox reuses `grad` between calls without zeroing it.
        for (g, &a) in grad.iter_mut().zip(&self.acc) {
            *g = (a / n) as f32;
        }
        loss / n
    }

    /// A forward pass (2 flops per feature) and the gradient update (2 more), per sample.
    fn flops_per_sample(&self) -> f64 {
        4.0 * self.dim() as f64
    }
}

fn check_delta(delta: f64) -> Result<(), HuberError> {
    if delta.is_finite() && delta > 0.0 { Ok(()) } else { Err(HuberError::Delta(delta)) }
}
