//! Multinomial logistic (softmax) regression, and the cross-entropy head it shares with the MLP.

use std::sync::Arc;

use dprox_data::Dataset;

use crate::batch::{check_data, check_labels};
use crate::linear::{Head, Linear, linear_objective};
use crate::{Batch, Objective, ObjectiveError};

/// Softmax regression: params [W (C x p, row-major), b (C)], loss = mean cross-entropy of
/// softmax(W x + b) against the label. Predicts the argmax (ties to the lowest class).
#[derive(Debug)]
pub struct Softmax(Linear);

impl Softmax {
    /// Softmax regression with `classes` outputs on `data`, whose targets must be class indices
    /// in `0..classes`. `classes` is the global number of classes, which may exceed the number
    /// present in this node's data.
    pub fn new(data: Arc<Dataset>, classes: usize, bias: bool) -> Result<Self, ObjectiveError> {
        if classes < 2 {
            return Err(ObjectiveError::TooFewClasses { model: "softmax regression", classes });
        }
        check_data(&data)?;
        check_labels(&data, classes)?;
        Ok(Softmax(Linear::new(data, Head::CrossEntropy, classes, bias)))
    }
}

linear_objective!(Softmax);

/// Cross-entropy of softmax(`z`) against class `y`, computed with a stable log-sum-exp in f64.
/// Overwrites `z` with `scale * (softmax(z) - onehot(y))`, the scaled gradient wrt the logits.
#[inline]
pub(crate) fn cross_entropy(z: &mut [f32], y: usize, scale: f64) -> f64 {
    let mx = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // The loss is ln(sum e^(z_j - max)) - (z_y - max): at z = 0 that is exactly ln C.
    let zy = f64::from(z[y]) - f64::from(mx);
    let mut sum = 0.0f64;
    for v in z.iter_mut() {
        let e = (f64::from(*v) - f64::from(mx)).exp();
        sum += e;
        *v = e as f32;
    }
    let inv = 1.0 / sum;
    for (j, v) in z.iter_mut().enumerate() {
        let p = f64::from(*v) * inv;
        let t = if j == y { 1.0 } else { 0.0 };
        *v = ((p - t) * scale) as f32;
    }
    sum.ln() - zy
}

/// Index of the largest entry; ties go to the lowest index.
#[inline]
pub(crate) fn argmax(z: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in z.iter().enumerate().skip(1) {
        if v > z[best] {
            best = j;
        }
    }
    best
}
