//! A multilayer perceptron with a softmax cross-entropy output.

use std::sync::Arc;

use dprox_data::Dataset;
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, s};

use crate::batch::{
    Gather, Input, Sel, affine_backward, affine_forward, batch_len, check_data, check_labels, chunks, scratch,
};
use crate::softmax::{argmax, cross_entropy};
use crate::{Activation, Batch, Objective, ObjectiveError};

/// Where one layer's parameters sit in the flat vector.
#[derive(Clone, Copy, Debug)]
struct Layer {
    inputs: usize,
    outputs: usize,
    /// Offset of W (outputs x inputs, row-major); b (outputs) follows when there is a bias.
    offset: usize,
}

impl Layer {
    fn weights(&self) -> usize {
        self.inputs * self.outputs
    }
}

/// An MLP: features -> hidden layers (with `activation`) -> C logits -> softmax cross-entropy.
///
/// Parameter layout: for each layer in order, W_l (out x in, row-major) then b_l (out, only with
/// a bias). Predicts the argmax of the logits (ties to the lowest class).
#[derive(Debug)]
pub struct Mlp {
    data: Arc<Dataset>,
    layers: Vec<Layer>,
    activation: Activation,
    bias: bool,
    dim: usize,
    gather: Gather,
    /// Post-activation outputs of the hidden layers, one (chunk x width) matrix each.
    acts: Vec<Array2<f32>>,
    /// dLoss/d(pre-activation) of every layer; the last one first holds the logits.
    delta: Vec<Array2<f32>>,
}

impl Mlp {
    /// An MLP with the given hidden widths and `classes` outputs on `data`, whose targets must be
    /// class indices in `0..classes` (the global number of classes).
    pub fn new(
        data: Arc<Dataset>,
        classes: usize,
        hidden: &[usize],
        activation: Activation,
        bias: bool,
    ) -> Result<Self, ObjectiveError> {
        if classes < 2 {
            return Err(ObjectiveError::TooFewClasses { model: "an mlp", classes });
        }
        if hidden.is_empty() {
            return Err(ObjectiveError::NoHiddenLayers);
        }
        if let Some(layer) = hidden.iter().position(|&h| h == 0) {
            return Err(ObjectiveError::ZeroWidth { model: "mlp", layer });
        }
        check_data(&data)?;
        check_labels(&data, classes)?;
        let mut layers = Vec::with_capacity(hidden.len() + 1);
        let (mut inputs, mut offset) = (data.num_features(), 0);
        for &outputs in hidden.iter().chain([classes].iter()) {
            layers.push(Layer { inputs, outputs, offset });
            offset += inputs * outputs + if bias { outputs } else { 0 };
            inputs = outputs;
        }
        let empty = || Array2::zeros((0, 0));
        Ok(Mlp {
            data,
            acts: (0..hidden.len()).map(|_| empty()).collect(),
            delta: (0..layers.len()).map(|_| empty()).collect(),
            layers,
            activation,
            bias,
            dim: offset,
            gather: Gather::new(),
        })
    }

    /// Mean loss over `batch`; the gradient goes to `grad` when one is given. With `correct`,
    /// counts the samples whose argmax equals the label instead of computing a gradient.
    fn eval(
        &mut self,
        x: &[f32],
        batch: Batch<'_>,
        mut grad: Option<&mut [f32]>,
        mut correct: Option<&mut usize>,
    ) -> f64 {
        assert_eq!(x.len(), self.dim, "parameter vector has the wrong length");
        if let Some(g) = grad.as_deref_mut() {
            assert_eq!(g.len(), self.dim, "gradient vector has the wrong length");
            g.fill(0.0);
        }
        let Mlp { data, layers, activation, bias, gather, acts, delta, .. } = self;
        let (n, top) = (data.len(), layers.len() - 1);
        let total = batch_len(batch, n);
        if total == 0 {
            return 0.0;
        }
        let net = Net { x, layers, act: *activation, bias: *bias };
        let scale = 1.0 / total as f64;
        let mut sum = 0.0f64;
        for sel in chunks(batch, n) {
            let rows = sel.len();
            let input = gather.input(data, sel);
            // Forward: hidden layers into `acts`, the logits into the top `delta`.
            net.forward(&input, rows, acts, delta);
            // The head turns the logits into scale * dLoss/dlogits in place.
            let mut logits = delta[top].slice_mut(s![..rows, ..]);
            let zs = logits.as_slice_mut().expect("scratch rows are contiguous");
            head(zs, layers[top].outputs, data, sel, correct.as_deref_mut(), scale, &mut sum);
            let Some(g) = grad.as_deref_mut() else { continue };
            // Backward, top layer first.
            net.backward(&input, rows, acts, delta, g);
        }
        sum / total as f64
    }
}

/// One evaluation's view of the model: the parameter vector `x` read through the layer layout.
/// Built once per [`Mlp::eval`] call (plain borrows, nothing allocated).
#[derive(Clone, Copy)]
struct Net<'a> {
    x: &'a [f32],
    layers: &'a [Layer],
    act: Activation,
    bias: bool,
}

impl<'a> Net<'a> {
    /// W and b of `l` in `x` (b only with a bias).
    #[inline]
    fn params(&self, l: &Layer) -> (&'a [f32], Option<&'a [f32]>) {
        let (w, rest) = self.x[l.offset..].split_at(l.weights());
        (w, self.bias.then(|| &rest[..l.outputs]))
    }

    /// Forward pass of one chunk of `rows` samples: the hidden layers into `acts`, the logits
    /// into the top `delta` (where the head turns them into the output gradient in place).
    fn forward(&self, input: &Input<'_>, rows: usize, acts: &mut [Array2<f32>], delta: &mut [Array2<f32>]) {
        let top = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let (w, b) = self.params(layer);
            let split = l.min(acts.len());
            let (done, rest) = acts.split_at_mut(split);
            let mut out = if l == top {
                scratch(&mut delta[top], rows, layer.outputs)
            } else {
                scratch(&mut rest[0], rows, layer.outputs)
            };
            if l == 0 {
                affine_forward(input, w, b, &mut out);
            } else {
                let prev = Input::Dense(done[l - 1].slice(s![..rows, ..]));
                affine_forward(&prev, w, b, &mut out);
            }
            if l < top {
                let act = self.act;
                out.mapv_inplace(|v| act.apply(v));
            }
        }
    }

    /// Backward pass of one chunk, top layer first: adds every layer's weight (and bias)
    /// gradient to `g`, and turns `delta[l - 1]` into the next layer down's output gradient.
    fn backward(
        &self,
        input: &Input<'_>,
        rows: usize,
        acts: &[Array2<f32>],
        delta: &mut [Array2<f32>],
        g: &mut [f32],
    ) {
        for (l, layer) in self.layers.iter().enumerate().rev() {
            let (lo, hi) = delta.split_at_mut(l);
            let d = hi[0].slice(s![..rows, ..]);
            let (gw, rest) = g[layer.offset..].split_at_mut(layer.weights());
            let gb = self.bias.then(|| &mut rest[..layer.outputs]);
            if l == 0 {
                affine_backward(input, d, gw, gb);
                continue;
            }
            let a = acts[l - 1].slice(s![..rows, ..]);
            affine_backward(&Input::Dense(a), d, gw, gb);
            // delta_{l-1} = (delta_l W_l) * act'(a_{l-1}), the derivative read off the output.
            let (w, _) = self.params(layer);
            let w = ArrayView2::from_shape((layer.outputs, layer.inputs), w).expect("layer shape");
            let mut dp: ArrayViewMut2<'_, f32> = scratch(&mut lo[l - 1], rows, layer.inputs);
            general_mat_mul(1.0, &d, &w, 0.0, &mut dp);
            let act = self.act;
            dp.zip_mut_with(&a, |dv, &av| *dv *= act.derivative_from_output(av));
        }
    }
}

/// The head of one chunk: turns the logits `zs` (one row of `classes` per sample of `sel`) into
/// scale * dLoss/dlogits in place, adds each sample's loss to `sum` (one by one, in sample
/// order, so the total rounds as before) and, with `correct`, counts the right predictions.
fn head(
    zs: &mut [f32],
    classes: usize,
    data: &Dataset,
    sel: Sel<'_>,
    mut correct: Option<&mut usize>,
    scale: f64,
    sum: &mut f64,
) {
    for (r, zr) in zs.chunks_exact_mut(classes).enumerate() {
        let y = data.class_of(sel.get(r));
        if let Some(c) = correct.as_deref_mut() {
            *c += usize::from(argmax(zr) == y);
        }
        *sum += cross_entropy(zr, y, scale);
    }
}

impl Objective for Mlp {
    fn dim(&self) -> usize {
        self.dim
    }

    fn num_samples(&self) -> usize {
        self.data.len()
    }

    fn loss_grad(&mut self, x: &[f32], batch: Batch<'_>, grad: &mut [f32]) -> f64 {
        self.eval(x, batch, Some(grad), None)
    }

    fn loss(&mut self, x: &[f32], batch: Batch<'_>) -> f64 {
        self.eval(x, batch, None, None)
    }

    fn accuracy(&mut self, x: &[f32]) -> Option<f64> {
        let mut correct = 0;
        self.eval(x, Batch::Full, None, Some(&mut correct));
        Some(correct as f64 / self.data.len() as f64)
    }

    /// Forward 2 and backward 4 flops per weight (biases and activations are not counted).
    fn flops_per_sample(&self) -> f64 {
        6.0 * self.layers.iter().map(Layer::weights).sum::<usize>() as f64
    }

    /// Glorot-uniform weights for tanh and sigmoid, He-uniform for relu, zero biases; layer `l`
    /// draws from `dprox_rng::stream(seed, &[l])`, so its values do not depend on the other layers.
    fn init(&self, seed: u64, x: &mut [f32]) {
        assert_eq!(x.len(), self.dim, "parameter vector has the wrong length");
        for (l, layer) in self.layers.iter().enumerate() {
            let fan = match self.activation {
                Activation::Relu => layer.inputs,
                Activation::Tanh | Activation::Sigmoid => layer.inputs + layer.outputs,
            };
            let a = (6.0 / fan as f64).sqrt() as f32;
            let mut rng = dprox_rng::stream(seed, &[l as u64]);
            let (w, rest) = x[layer.offset..].split_at_mut(layer.weights());
            for v in w {
                *v = (rng.uniform_f32() * 2.0 - 1.0) * a;
            }
            if self.bias {
                rest[..layer.outputs].fill(0.0);
            }
        }
    }
}
