//! Feature scaling, fitted on the training set and applied unchanged to the test set (using test
//! statistics would leak information about the test set into the model).

use crate::dataset::{Dataset, Features};
use crate::error::DataError;

/// A feature scaling rule.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Scale {
    /// Leave the features as they are.
    #[default]
    None,
    /// Multiply every value by a constant (for example `1/255` for pixels).
    Factor(f32),
    /// Per feature: subtract the mean and divide by the (population) standard deviation. A
    /// constant feature is only centred. Dense features only: centring a sparse matrix would make
    /// it dense.
    Standardize,
    /// Per feature: divide by the largest absolute value (a feature that is all zero is left
    /// unchanged). Keeps zeros zero, so it suits sparse data.
    MaxAbs,
}

/// A fitted [`Scale`]: `x[j] <- (x[j] - shift[j]) * factor[j]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Scaler {
    scale: Scale,
    /// Per-feature value subtracted first (empty unless `Standardize`).
    shift: Vec<f32>,
    /// Per-feature multiplier (empty for `None` and `Factor`).
    factor: Vec<f32>,
}

/// Fits `scale` on `data` (the training set).
///
/// Errors: [`DataError::SparseStandardize`] for `Standardize` on sparse features, and
/// [`DataError::InvalidArgument`] for a non-finite `Factor`.
pub fn fit_scaler(data: &Dataset, scale: Scale) -> Result<Scaler, DataError> {
    let d = data.num_features();
    let (shift, factor) = match scale {
        Scale::None => (Vec::new(), Vec::new()),
        Scale::Factor(f) => {
            if !f.is_finite() {
                return Err(DataError::InvalidArgument(format!("Scale::Factor({f}) is not finite")));
            }
            (Vec::new(), Vec::new())
        }
        Scale::Standardize => match &data.features {
            Features::Sparse(_) => return Err(DataError::SparseStandardize),
            Features::Dense(m) => {
                let n = m.nrows().max(1) as f64;
                // Two passes in f64: the one-pass formula loses all precision when the mean is
                // large compared with the spread (pixel data, timestamps).
                let mut mean = vec![0f64; d];
                for row in m.rows() {
                    mean.iter_mut().zip(row).for_each(|(s, &x)| *s += f64::from(x));
                }
                mean.iter_mut().for_each(|s| *s /= n);
                let mut var = vec![0f64; d];
                for row in m.rows() {
                    for ((v, &mu), &x) in var.iter_mut().zip(&mean).zip(row) {
                        *v += (f64::from(x) - mu).powi(2);
                    }
                }
                let factor = var.iter().map(|v| inverse_or_one((v / n).sqrt())).collect();
                (mean.iter().map(|&m| m as f32).collect(), factor)
            }
        },
        Scale::MaxAbs => {
            let mut max = vec![0f32; d];
            match &data.features {
                Features::Dense(m) => {
                    for row in m.rows() {
                        max.iter_mut().zip(row).for_each(|(a, &x)| *a = a.max(x.abs()));
                    }
                }
                Features::Sparse(c) => {
                    for (&j, &x) in c.indices.iter().zip(&c.values) {
                        let a = &mut max[j as usize];
                        *a = a.max(x.abs());
                    }
                }
            }
            (Vec::new(), max.iter().map(|&a| inverse_or_one(f64::from(a))).collect())
        }
    };
    Ok(Scaler { scale, shift, factor })
}

/// `1/s` as f32, or 1 when `s` is zero or the inverse does not fit (a constant feature stays as
/// it is rather than blowing up).
fn inverse_or_one(s: f64) -> f32 {
    let inv = (1.0 / s) as f32;
    if s > 0.0 && inv.is_finite() { inv } else { 1.0 }
}

impl Scaler {
    /// The rule this scaler was fitted for.
    pub fn scale(&self) -> Scale {
        self.scale
    }

    /// Per-feature values subtracted before scaling (the train means for `Standardize`; empty
    /// otherwise).
    pub fn shift(&self) -> &[f32] {
        &self.shift
    }

    /// Per-feature multipliers (empty for `None` and `Factor`).
    pub fn factor(&self) -> &[f32] {
        &self.factor
    }

    /// Transforms `data` in place with the statistics fitted on the training set.
    ///
    /// Errors: [`DataError::FeatureMismatch`] when a per-feature scaler meets a data set with
    /// another number of features, [`DataError::SparseStandardize`] for sparse data.
    pub fn apply(&self, data: &mut Dataset) -> Result<(), DataError> {
        let got = data.num_features();
        if !self.factor.is_empty() && self.factor.len() != got {
            return Err(DataError::FeatureMismatch { expected: self.factor.len(), got });
        }
        match (&self.scale, &mut data.features) {
            (Scale::None, _) => {}
            (Scale::Factor(f), Features::Dense(m)) => m.mapv_inplace(|x| x * f),
            (Scale::Factor(f), Features::Sparse(c)) => c.values.iter_mut().for_each(|x| *x *= f),
            (Scale::Standardize, Features::Sparse(_)) => return Err(DataError::SparseStandardize),
            (Scale::Standardize | Scale::MaxAbs, Features::Dense(m)) => {
                let shift = if self.shift.is_empty() { None } else { Some(&self.shift) };
                for mut row in m.rows_mut() {
                    for (j, x) in row.iter_mut().enumerate() {
                        let centred = shift.map_or(*x, |s| *x - s[j]);
                        *x = centred * self.factor[j];
                    }
                }
            }
            (Scale::MaxAbs, Features::Sparse(c)) => {
                for (&j, x) in c.indices.iter().zip(c.values.iter_mut()) {
                    *x *= self.factor[j as usize];
                }
            }
        }
        Ok(())
    }
}
