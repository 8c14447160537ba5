//! Seeded synthetic problems with a known answer, for tests and for scale experiments beyond the
//! data at hand. The same seed gives bit-identical data on every platform.

use ndarray::Array2;

use crate::dataset::{Csr, Dataset, Features};
use crate::error::DataError;
use dprox_rng::{Rng, stream};

/// Stream coordinates. The features and the planted vector do not depend on the problem type, so
/// `sparse_logistic` and `least_squares` with the same spec share their design matrix and `w*`.
const PLANTED_STREAM: u64 = 0x5359_4e54_0000_0001;
const FEATURES_STREAM: u64 = 0x5359_4e54_0000_0002;
const TARGETS_STREAM: u64 = 0x5359_4e54_0000_0003;
const CENTRES_STREAM: u64 = 0x5359_4e54_0000_0004;
const MIXTURE_STREAM: u64 = 0x5359_4e54_0000_0005;

/// Shape of a synthetic linear problem.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticSpec {
    /// Number of samples.
    pub samples: usize,
    /// Number of features.
    pub features: usize,
    /// Fraction of nonzero features per sample, in `(0, 1]`; below 1 the features are stored as
    /// [`Features::Sparse`] with `round(density * features)` (at least one) nonzeros per row.
    pub density: f64,
    /// Nonzeros of the planted vector `w*` (at most `features`).
    pub support: usize,
    /// Standard deviation of the Gaussian noise added to least-squares targets.
    pub noise: f64,
    /// Seed of everything random.
    pub seed: u64,
}

impl Default for SyntheticSpec {
    /// 1000 samples, 100 dense features, a planted vector with 10 nonzeros, noise 0.1, seed 0.
    fn default() -> Self {
        SyntheticSpec { samples: 1000, features: 100, density: 1.0, support: 10, noise: 0.1, seed: 0 }
    }
}

/// A generated data set together with the parameters it was planted from.
#[derive(Clone, Debug, PartialEq)]
pub struct Synthetic {
    /// The samples and targets.
    pub data: Dataset,
    /// The true parameters: `w*` (length `features`, no bias) for the linear problems; the class
    /// centres, row-major `classes x features`, for [`gaussian_mixture`].
    pub planted: Vec<f32>,
}

/// Sparse logistic regression: features `N(0, 1)` (sparse rows when `density < 1`), labels
/// `y ~ Bernoulli(sigmoid(x . w*))` stored as 0/1, two classes.
///
/// The nonzeros of `w*` are `N(0, 1) / sqrt(k)` with `k` the nonzeros per row (`features` when
/// dense), so the margin `x . w*` has variance `support / features`: keep `support` comparable
/// to `features` when clearly separable classes are wanted.
pub fn sparse_logistic(spec: &SyntheticSpec) -> Result<Synthetic, DataError> {
    let (features, planted) = linear_design(spec)?;
    let margins = margins(&features, &planted);
    let mut rng = stream(spec.seed, &[TARGETS_STREAM]);
    let targets = margins
        .iter()
        .map(|&m| {
            let p = 1.0 / (1.0 + (-m).exp());
            f32::from(u8::from(rng.uniform_f64() < p))
        })
        .collect();
    Ok(Synthetic { data: Dataset { features, targets, classes: Some(2) }, planted })
}

/// Least squares with a planted sparse solution: the features and `w*` of [`sparse_logistic`],
/// targets `y = x . w* + noise * N(0, 1)`, regression.
pub fn least_squares(spec: &SyntheticSpec) -> Result<Synthetic, DataError> {
    let (features, planted) = linear_design(spec)?;
    let margins = margins(&features, &planted);
    let mut rng = stream(spec.seed, &[TARGETS_STREAM]);
    let targets = margins.iter().map(|&m| (m + spec.noise * rng.normal()) as f32).collect();
    Ok(Synthetic { data: Dataset { features, targets, classes: None }, planted })
}

/// A Gaussian mixture: class centres `N(0, separation^2 I)`, sample `i` of class `i mod classes`
/// (so classes are balanced) at its centre plus `N(0, I)`; dense features.
pub fn gaussian_mixture(
    samples: usize,
    features: usize,
    classes: usize,
    separation: f64,
    seed: u64,
) -> Result<Synthetic, DataError> {
    if samples == 0 || features == 0 || classes == 0 {
        return Err(DataError::InvalidArgument(format!(
            "gaussian_mixture needs samples, features and classes >= 1 (got {samples}, {features}, {classes})"
        )));
    }
    if !(separation >= 0.0 && separation.is_finite()) {
        return Err(DataError::InvalidArgument(format!(
            "gaussian_mixture separation = {separation} must be finite and >= 0"
        )));
    }
    let mut rng = stream(seed, &[CENTRES_STREAM]);
    let centres: Vec<f32> = (0..classes * features).map(|_| (separation * rng.normal()) as f32).collect();
    let mut rng = stream(seed, &[MIXTURE_STREAM]);
    let mut x = Vec::with_capacity(samples * features);
    for i in 0..samples {
        let c = i % classes;
        x.extend(centres[c * features..(c + 1) * features].iter().map(|&m| m + rng.normal() as f32));
    }
    let matrix = Array2::from_shape_vec((samples, features), x).expect("samples x features values");
    let targets = (0..samples).map(|i| (i % classes) as f32).collect();
    Ok(Synthetic {
        data: Dataset { features: Features::Dense(matrix), targets, classes: Some(classes) },
        planted: centres,
    })
}

/// Nonzeros per row: `None` for dense rows.
fn row_nnz(spec: &SyntheticSpec) -> Option<usize> {
    (spec.density < 1.0).then(|| ((spec.density * spec.features as f64).round() as usize).max(1))
}

/// Validates `spec` and draws the features and the planted vector.
fn linear_design(spec: &SyntheticSpec) -> Result<(Features, Vec<f32>), DataError> {
    let bad = |what: String| Err(DataError::InvalidArgument(format!("synthetic spec: {what}")));
    if spec.samples == 0 || spec.features == 0 {
        return bad(format!("samples = {} and features = {} must be >= 1", spec.samples, spec.features));
    }
    if spec.features > u32::MAX as usize {
        return bad(format!("features = {} does not fit 32-bit indices", spec.features));
    }
    if !(spec.density > 0.0 && spec.density <= 1.0) {
        return bad(format!("density = {} must be in (0, 1]", spec.density));
    }
    if spec.support > spec.features {
        return bad(format!("support = {} exceeds features = {}", spec.support, spec.features));
    }
    if !(spec.noise >= 0.0 && spec.noise.is_finite()) {
        return bad(format!("noise = {} must be finite and >= 0", spec.noise));
    }
    let (n, d) = (spec.samples, spec.features);
    let nnz = row_nnz(spec);
    let mut chooser = Chooser::new(d);

    let mut rng = stream(spec.seed, &[PLANTED_STREAM]);
    let scale = 1.0 / (nnz.unwrap_or(d) as f64).sqrt();
    let mut planted = vec![0f32; d];
    for &j in chooser.choose(&mut rng, spec.support) {
        planted[j as usize] = (rng.normal() * scale) as f32;
    }

    let mut rng = stream(spec.seed, &[FEATURES_STREAM]);
    let features = match nnz {
        None => {
            let x: Vec<f32> = (0..n * d).map(|_| rng.normal() as f32).collect();
            Features::Dense(Array2::from_shape_vec((n, d), x).expect("n x d values"))
        }
        Some(k) => {
            let mut csr = Csr { rows: n, cols: d, indptr: Vec::with_capacity(n + 1), ..Csr::default() };
            csr.indptr.push(0);
            csr.indices.reserve(n * k);
            csr.values.reserve(n * k);
            for _ in 0..n {
                let cols = chooser.choose(&mut rng, k);
                csr.indices.extend_from_slice(cols);
                csr.values.extend((0..k).map(|_| rng.normal() as f32));
                csr.indptr.push(csr.indices.len());
            }
            Features::Sparse(csr)
        }
    };
    Ok((features, planted))
}

/// `x . w` per row, accumulated in f64.
fn margins(features: &Features, w: &[f32]) -> Vec<f64> {
    match features {
        Features::Dense(m) => m
            .rows()
            .into_iter()
            .map(|row| row.iter().zip(w).map(|(&x, &w)| f64::from(x) * f64::from(w)).sum())
            .collect(),
        Features::Sparse(c) => (0..c.rows)
            .map(|r| {
                let (ix, v) = c.row(r);
                ix.iter().zip(v).map(|(&j, &x)| f64::from(x) * f64::from(w[j as usize])).sum()
            })
            .collect(),
    }
}

/// Draws `k` distinct columns out of `d` with Floyd's algorithm (k draws, no rejection), then
/// sorts them. Membership is tracked with a per-draw stamp per column, so each draw costs
/// O(k log k) however large `d` is, without clearing a set between rows.
struct Chooser {
    stamp: Vec<u32>,
    round: u32,
    out: Vec<u32>,
}

impl Chooser {
    fn new(d: usize) -> Chooser {
        Chooser { stamp: vec![0; d], round: 0, out: Vec::new() }
    }

    fn choose(&mut self, rng: &mut Rng, k: usize) -> &[u32] {
        if self.round == u32::MAX {
            self.stamp.fill(0);
            self.round = 0;
        }
        self.round += 1;
        self.out.clear();
        let d = self.stamp.len();
        for j in d - k..d {
            let t = rng.below_usize(j + 1);
            // If t was already picked, j cannot have been (earlier draws were all below j).
            let pick = if self.stamp[t] == self.round { j } else { t };
            self.stamp[pick] = self.round;
            self.out.push(pick as u32);
        }
        self.out.sort_unstable();
        &self.out
    }
}
