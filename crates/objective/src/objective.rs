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
/// compressors only ever see that vector, and the objective maps it onto its layers. The built-in
/// models implement it, and so can a program embedding dprox: with `[model] kind = "custom"` in
/// the config, `dprox_prepare::Prepared::with_objective` takes a factory of your objective and the
/// simulator, the coordinator and the nodes all use it (`examples/custom-objective` trains a
/// Huber regression this way, simulated and as an in-process gRPC cluster).
///
/// # Determinism you must provide
///
/// - **Same `x` and batch, bit-identical loss and gradient**, on every call, in every process.
///   Reduce in a fixed order: no sums in thread-arrival order, no reductions whose grouping
///   depends on the number of threads (a rayon `sum` over a parallel iterator is one), no
///   unseeded randomness (dropout and the like must draw from a stream keyed by what the call
///   receives), no reading the clock or other global state.
/// - **`loss_grad` writes every coordinate of `grad`.** The buffer is reused from the previous
///   call and is not zeroed for you; a coordinate you skip keeps a stale value.
/// - **`num_samples` is stable**: the same number on every call, since minibatch indices are drawn
///   from `0..num_samples()` by a seeded sampler.
/// - **`init` depends only on its `seed`** (and on `dim`): every node and the coordinator must
///   arrive at the same x^0 without talking to each other.
///
/// Why: dprox promises that a simulated run and a real cluster on the same config produce the
/// same iterates, column for column, and that a seed reproduces a run. Both only hold if each
/// node's gradients are a pure function of (x, batch). The coordinator, moreover, builds its own
/// copies of every node's objective and re-evaluates the loss at the gathered iterates; a
/// nondeterministic objective makes its metrics disagree with what the nodes trained on.
///
/// # Example
///
/// The mean of a node's values, f(x) = mean_j 0.5 (x - v_j)^2, with its gradient reduced in index
/// order in `f64`:
///
/// ```
/// use dprox_objective::{Batch, Objective};
///
/// struct Mean {
///     values: Vec<f32>,
/// }
///
/// impl Objective for Mean {
///     fn dim(&self) -> usize {
///         1
///     }
///     fn num_samples(&self) -> usize {
///         self.values.len()
///     }
///     fn loss_grad(&mut self, x: &[f32], batch: Batch<'_>, grad: &mut [f32]) -> f64 {
///         let full: Vec<usize>;
///         let idx = match batch {
///             Batch::Full => {
///                 full = (0..self.values.len()).collect();
///                 &full[..]
///             }
///             Batch::Indices(ix) => ix,
///         };
///         let (mut loss, mut g) = (0.0f64, 0.0f64);
///         // One thread, index order: the same bits on every call and every machine.
///         for &j in idx {
///             let r = f64::from(x[0]) - f64::from(self.values[j]);
///             loss += 0.5 * r * r;
///             g += r;
///         }
///         let n = idx.len() as f64;
///         grad[0] = (g / n) as f32; // every coordinate, on every call
///         loss / n
///     }
/// }
///
/// let mut f = Mean { values: vec![1.0, 3.0] };
/// let mut g = [f32::NAN];
/// assert_eq!(f.loss_grad(&[0.0], Batch::Full, &mut g), 2.5);
/// assert_eq!(g, [-2.0]);
/// assert_eq!(f.loss(&[3.0], Batch::Indices(&[1, 1])), 0.0);
/// // The default init is seeded: the same seed gives the same x^0 everywhere.
/// let (mut a, mut b) = ([0.0f32], [0.0f32]);
/// f.init(7, &mut a);
/// f.init(7, &mut b);
/// assert_eq!(a, b);
/// ```
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

    /// Where `loss_grad` runs, for logs and the coordinator's status page: `"cpu"` (the default),
    /// or for example `"cuda:0 (NVIDIA H200)"`. A node registers this resolved name, so a node
    /// configured with `device = "auto"` shows what it fell back to.
    fn device(&self) -> String {
        "cpu".to_string()
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
