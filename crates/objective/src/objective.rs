//! The plug-in point: what dprox needs to know about a local objective f_i.

/// Which samples of the local data a call covers.
#[derive(Clone, Copy, Debug)]
pub enum Batch<'a> {
    /// Every local sample (full-batch gradient, or the exact local loss f_i for evaluation).
    Full,
    /// The listed local sample indices (a minibatch). Indices may repeat.
    Indices(&'a [usize]),
}

/// A local objective f_i(x) = mean over samples of F_i(x; xi), on node i's own data.
///
/// The parameters are one flat `f32` vector of length [`Objective::dim`]; the algorithm and the
/// compressors only ever see that vector, and the objective maps it onto its layers.
///
/// Determinism: for the same `x` and batch, `loss_grad` must return bit-identical results on every
/// call. dprox's reproducibility (simulator == cluster, same seed == same iterates) rests on it, so
/// avoid summing in thread-arrival order.
pub trait Objective: Send {
    /// Number of parameters.
    fn dim(&self) -> usize;

    /// Number of local samples (minibatch indices range over `0..num_samples()`).
    fn num_samples(&self) -> usize;

    /// Mean loss over `batch` at `x`, with its gradient written (overwritten, not added) to `grad`.
    fn loss_grad(&mut self, x: &[f32], batch: Batch<'_>, grad: &mut [f32]) -> f64;

    /// Mean loss over `batch` at `x`. The default computes the gradient too and throws it away.
    fn loss(&mut self, x: &[f32], batch: Batch<'_>) -> f64 {
        let mut g = vec![0.0; self.dim()];
        self.loss_grad(x, batch, &mut g)
    }

    /// Classification accuracy of `x` on this objective's own data, if the model classifies.
    fn accuracy(&mut self, _x: &[f32]) -> Option<f64> {
        None
    }

    /// Floating-point operations for one sample's loss and gradient; the simulator turns it into
    /// compute time. The default assumes a linear model (forward 2d, backward 4d).
    fn flops_per_sample(&self) -> f64 {
        6.0 * self.dim() as f64
    }

    /// Writes a seeded random initial point into `x` (used when `init = "seeded"`). The default
    /// is small uniform noise in [-0.01, 0.01].
    fn init(&self, seed: u64, x: &mut [f32]) {
        let mut rng = dprox_rng::stream(seed, &[0x1417]);
        for v in x.iter_mut() {
            *v = (rng.uniform_f32() * 2.0 - 1.0) * 0.01;
        }
    }
}
