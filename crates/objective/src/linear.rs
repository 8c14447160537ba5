//! Generalised linear models: one affine map of the features followed by a per-sample loss.
//! [`Logistic`] and [`LeastSquares`] live here; [`Softmax`](crate::Softmax) is a thin wrapper
//! around the same core with the cross-entropy head of `softmax.rs`.

use std::sync::Arc;

use dprox_data::Dataset;
use ndarray::Array2;

use crate::batch::{
    Gather, affine_backward, affine_forward, batch_len, check_data, check_labels, chunks, scratch,
};
use crate::softmax::{argmax, cross_entropy};
use crate::{Batch, Objective, ObjectiveError};

/// The loss applied to each sample's outputs z (one per output of the affine map).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Head {
    /// softplus(-s z) with s = 2y - 1.
    Logistic,
    /// 0.5 (z - y)^2.
    Squares,
    /// Cross-entropy of softmax(z) against class y.
    CrossEntropy,
}

impl Head {
    /// The sample's loss; overwrites `z` with `scale * dLoss/dz`.
    #[inline]
    fn loss_dz(self, z: &mut [f32], y: f32, scale: f64) -> f64 {
        match self {
            Head::Logistic => {
                let s = if y > 0.5 { 1.0 } else { -1.0 };
                let t = -s * f64::from(z[0]);
                // softplus(t) = ln(1 + e^t), written so that neither branch overflows.
                let loss = if t > 0.0 { t + (-t).exp().ln_1p() } else { t.exp().ln_1p() };
                let sig = if t >= 0.0 { 1.0 / (1.0 + (-t).exp()) } else { t.exp() / (1.0 + t.exp()) };
                z[0] = (-s * sig * scale) as f32;
                loss
            }
            Head::Squares => {
                let r = f64::from(z[0]) - f64::from(y);
                z[0] = (r * scale) as f32;
                0.5 * r * r
            }
            Head::CrossEntropy => cross_entropy(z, y as usize, scale),
        }
    }

    /// The predicted class from the outputs `z`, for classifiers.
    #[inline]
    fn predict(self, z: &[f32]) -> Option<usize> {
        match self {
            Head::Logistic => Some(usize::from(z[0] > 0.0)),
            Head::Squares => None,
            Head::CrossEntropy => Some(argmax(z)),
        }
    }
}

/// The shared core: parameters [W (outputs x p, row-major), b (outputs, when `bias`)].
#[derive(Debug)]
pub(crate) struct Linear {
    data: Arc<Dataset>,
    head: Head,
    outputs: usize,
    bias: bool,
    gather: Gather,
    z: Array2<f32>,
}

impl Linear {
    pub(crate) fn new(data: Arc<Dataset>, head: Head, outputs: usize, bias: bool) -> Self {
        Linear { data, head, outputs, bias, gather: Gather::new(), z: Array2::zeros((0, 0)) }
    }

    pub(crate) fn dim(&self) -> usize {
        self.outputs * self.data.num_features() + if self.bias { self.outputs } else { 0 }
    }

    pub(crate) fn num_samples(&self) -> usize {
        self.data.len()
    }

    /// Mean loss over `batch`; the gradient goes to `grad` when one is given.
    pub(crate) fn eval(&mut self, x: &[f32], batch: Batch<'_>, mut grad: Option<&mut [f32]>) -> f64 {
        let dim = self.dim();
        assert_eq!(x.len(), dim, "parameter vector has the wrong length");
        if let Some(g) = grad.as_deref_mut() {
            assert_eq!(g.len(), dim, "gradient vector has the wrong length");
            g.fill(0.0);
        }
        let Linear { data, head, outputs: m, bias, gather, z } = self;
        let (m, head, n) = (*m, *head, data.len());
        let total = batch_len(batch, n);
        if total == 0 {
            return 0.0;
        }
        let wlen = m * data.num_features();
        let (w, b) = x.split_at(wlen);
        let b = bias.then_some(b);
        // Scaling dLoss/dz by 1/B makes the GEMM produce the mean gradient directly.
        let scale = 1.0 / total as f64;
        let mut sum = 0.0f64;
        for sel in chunks(batch, n) {
            let input = gather.input(data, sel);
            let mut zc = scratch(z, sel.len(), m);
            affine_forward(&input, w, b, &mut zc);
            let zs = zc.as_slice_mut().expect("scratch rows are contiguous");
            for (r, zr) in zs.chunks_exact_mut(m).enumerate() {
                sum += head.loss_dz(zr, data.targets[sel.get(r)], scale);
            }
            if let Some(g) = grad.as_deref_mut() {
                let (gw, gb) = g.split_at_mut(wlen);
                affine_backward(&input, zc.view(), gw, bias.then_some(gb));
            }
        }
        sum / total as f64
    }

    /// Fraction of the local samples whose predicted class equals the label.
    pub(crate) fn accuracy(&mut self, x: &[f32]) -> Option<f64> {
        if self.head == Head::Squares {
            return None;
        }
        assert_eq!(x.len(), self.dim(), "parameter vector has the wrong length");
        let Linear { data, head, outputs: m, bias, gather, z } = self;
        let (m, n) = (*m, data.len());
        let (w, b) = x.split_at(m * data.num_features());
        let b = bias.then_some(b);
        let mut correct = 0usize;
        for sel in chunks(Batch::Full, n) {
            let input = gather.input(data, sel);
            let mut zc = scratch(z, sel.len(), m);
            affine_forward(&input, w, b, &mut zc);
            let zs = zc.as_slice().expect("scratch rows are contiguous");
            for (r, zr) in zs.chunks_exact(m).enumerate() {
                correct += usize::from(head.predict(zr) == Some(data.class_of(sel.get(r))));
            }
        }
        Some(correct as f64 / n as f64)
    }
}

/// Binary logistic regression: params [w (p), b], loss = mean softplus(-s (x.w + b)) with
/// s = 2y - 1 for labels y in {0, 1}. Predicts class 1 iff x.w + b > 0.
#[derive(Debug)]
pub struct Logistic(Linear);

impl Logistic {
    /// Logistic regression on `data`, whose targets must be the labels 0 and 1.
    pub fn new(data: Arc<Dataset>, bias: bool) -> Result<Self, ObjectiveError> {
        check_data(&data)?;
        check_labels(&data, 2)?;
        Ok(Logistic(Linear::new(data, Head::Logistic, 1, bias)))
    }
}

/// Least squares: params [w (p), b], loss = 0.5 mean (x.w + b - y)^2. Class targets, if any, are
/// used as real numbers.
#[derive(Debug)]
pub struct LeastSquares(Linear);

impl LeastSquares {
    /// Least squares on `data`, whose targets must be finite.
    pub fn new(data: Arc<Dataset>, bias: bool) -> Result<Self, ObjectiveError> {
        check_data(&data)?;
        if let Some((index, &value)) = data.targets.iter().enumerate().find(|(_, t)| !t.is_finite()) {
            return Err(ObjectiveError::NonFiniteTarget { index, value });
        }
        Ok(LeastSquares(Linear::new(data, Head::Squares, 1, bias)))
    }
}

/// Implements [`Objective`] for a newtype around [`Linear`].
macro_rules! linear_objective {
    ($t:ty) => {
        impl Objective for $t {
            fn dim(&self) -> usize {
                self.0.dim()
            }
            fn num_samples(&self) -> usize {
                self.0.num_samples()
            }
            fn loss_grad(&mut self, x: &[f32], batch: Batch<'_>, grad: &mut [f32]) -> f64 {
                self.0.eval(x, batch, Some(grad))
            }
            fn loss(&mut self, x: &[f32], batch: Batch<'_>) -> f64 {
                self.0.eval(x, batch, None)
            }
            fn accuracy(&mut self, x: &[f32]) -> Option<f64> {
                self.0.accuracy(x)
            }
        }
    };
}
pub(crate) use linear_objective;

linear_objective!(Logistic);
linear_objective!(LeastSquares);
