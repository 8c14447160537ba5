//! `GpuNet`: logistic regression, least squares, softmax regression and the MLP on a CUDA device,
//! with the math of `dprox-objective`.
//!
//! All four are one network: a stack of affine layers (one for the linear models) with the hidden
//! activation between them and a per-sample head on the last layer's outputs. The parameter
//! layout is the CPU one: per layer W (out x in, row-major), then b (out) when there is a bias.
//!
//! `GpuNet` is the [`Model`] of this network; the driver around it (uploads, chunking, sums,
//! errors) is `runner.rs`'s. Per chunk of at most [`CHUNK`] rows it runs forward (cuBLAS sgemm +
//! bias/activation kernel), the head kernel, the loss reduction and backward (sgemm for weights
//! and inputs, sgemv for biases).

use cudarc::driver::{CudaSlice, CudaView};
use dprox_data::Dataset;
use dprox_objective::{Activation, ModelKind, ModelSpec, Objective, Shape};

use super::kernels::{
    ACT_IDENTITY, ACT_RELU, ACT_SIGMOID, ACT_TANH, HEAD_CROSS_ENTROPY, HEAD_LOGISTIC, HEAD_SQUARES,
};
use super::raw;
use super::runner::{Chunk, GpuObjective, Grow, Model, Shared, Want};
use super::{CudaDevice, Fail};
use crate::ComputeError;

/// Most rows one chunk holds: large enough to keep the GPU busy, small enough that a wide MLP's
/// activations stay a few hundred megabytes.
const CHUNK: usize = 8192;

/// Where one layer's parameters sit in the flat vector.
#[derive(Clone, Copy, Debug)]
struct Layer {
    inputs: usize,
    outputs: usize,
    /// Offset of W; b follows at `offset + inputs * outputs` when there is a bias.
    offset: usize,
}

impl Layer {
    fn weights(&self) -> usize {
        self.inputs * self.outputs
    }

    /// The layer's W in the parameters `x`.
    fn w<'a>(&self, x: &'a CudaSlice<f32>) -> CudaView<'a, f32> {
        x.slice(self.offset..self.offset + self.weights())
    }

    /// The layer's b in the parameters `x`, when the network has biases.
    fn b<'a>(&self, x: &'a CudaSlice<f32>, bias: bool) -> Option<CudaView<'a, f32>> {
        bias.then(|| x.slice(self.offset + self.weights()..self.offset + self.weights() + self.outputs))
    }
}

/// The network of one spec and its device scratch (see the module doc).
pub(crate) struct GpuNet {
    layers: Vec<Layer>,
    act: i32,
    head: i32,
    bias: bool,
    /// Post-activation outputs of the hidden layers.
    acts: Vec<Grow<f32>>,
    /// dLoss/d(pre-activation) of every layer; the last one first holds the outputs.
    delta: Vec<Grow<f32>>,
    row_loss: Grow<f64>,
    row_correct: Grow<f64>,
    ones: Grow<f32>,
}

/// Uploads `data` to `dev` and sets up the network of `spec`. `cpu` must be the CPU objective of
/// the same spec on the same data (built first, so the spec and data are already checked).
pub(super) fn build(
    dev: &CudaDevice,
    spec: &ModelSpec,
    data: &Dataset,
    shape: Shape,
    cpu: Box<dyn Objective>,
) -> Result<GpuObjective<GpuNet>, ComputeError> {
    let (net, dim) = GpuNet::new(&dev.to_string(), spec, data, shape)?;
    GpuObjective::new(dev, data, dim, cpu, net)
}

impl GpuNet {
    /// The network of `spec` on `data` and its parameter count, or why the device cannot run it.
    fn new(
        label: &str,
        spec: &ModelSpec,
        data: &Dataset,
        shape: Shape,
    ) -> Result<(GpuNet, usize), ComputeError> {
        let unsupported = |what: String| ComputeError::Unsupported { backend: label.to_string(), what };
        let classes = shape.classes.unwrap_or(0);
        let (head, outputs, hidden, act) = match spec.kind {
            ModelKind::Logistic => (HEAD_LOGISTIC, 1, &[][..], ACT_IDENTITY),
            ModelKind::LeastSquares => (HEAD_SQUARES, 1, &[][..], ACT_IDENTITY),
            ModelKind::Softmax => (HEAD_CROSS_ENTROPY, classes, &[][..], ACT_IDENTITY),
            ModelKind::Mlp => (HEAD_CROSS_ENTROPY, classes, &spec.hidden[..], act_code(spec.activation)),
            // A model added to dprox-objective after this backend: refuse it by name rather than
            // fail to compile (the arm is unreachable while the four above are all there are).
            #[allow(unreachable_patterns)]
            other => return Err(unsupported(format!("the {other:?} model (no GPU implementation yet)"))),
        };
        let (n, p) = (data.len(), data.num_features());
        // The kernels and cuBLAS take int sizes; cuBLAS needs leading dimensions of at least 1.
        let fits = |v: usize| v >= 1 && i32::try_from(v).is_ok();
        if !fits(n) || !fits(p) || !hidden.iter().chain([outputs].iter()).all(|&w| fits(w)) {
            return Err(unsupported(format!(
                "{n} samples of {p} features with layer widths {hidden:?} + {outputs} (each must be in 1..2^31)"
            )));
        }

        let mut layers = Vec::with_capacity(hidden.len() + 1);
        let (mut inputs, mut offset) = (p, 0);
        for &outputs in hidden.iter().chain([outputs].iter()) {
            layers.push(Layer { inputs, outputs, offset });
            offset += inputs * outputs + if spec.bias { outputs } else { 0 };
            inputs = outputs;
        }
        let dim = offset;
        let act_count = layers.len() - 1;
        let net = GpuNet {
            act,
            head,
            bias: spec.bias,
            acts: (0..act_count).map(|_| Grow::new()).collect(),
            delta: (0..layers.len()).map(|_| Grow::new()).collect(),
            row_loss: Grow::new(),
            row_correct: Grow::new(),
            ones: Grow::new(),
            layers,
        };
        Ok((net, dim))
    }

    /// Forward: hidden layers into `acts`, the last layer's outputs into the top `delta`.
    fn forward(&mut self, ch: &Chunk<'_>) -> Result<(), Fail> {
        let GpuNet { layers, act, bias, acts, delta, .. } = self;
        let (rows, top) = (ch.rows, layers.len() - 1);
        for (l, layer) in layers.iter().enumerate() {
            let (w, bv) = (layer.w(ch.x), layer.b(ch.x, *bias));
            let (done, rest) = acts.split_at_mut(l.min(top));
            let out_buf = if l == top { delta[top].get_mut() } else { rest[0].get_mut() };
            let mut out = out_buf.slice_mut(0..rows * layer.outputs);
            let src = if l == 0 { ch.input() } else { done[l - 1].get().slice(0..rows * layer.inputs) };
            raw::forward(ch.blas, &src, &w, &mut out, rows, layer.inputs, layer.outputs)?;
            let a_code = if l == top { ACT_IDENTITY } else { *act };
            raw::bias_act(ch.stream, ch.k, &mut out, bv.as_ref(), rows, layer.outputs, a_code)?;
        }
        Ok(())
    }

    /// Backward, top layer first: each layer's weight (and bias) gradient added into the
    /// gradient, and the delta of the layer below.
    fn backward(&mut self, ch: &mut Chunk<'_>) -> Result<(), Fail> {
        let GpuNet { layers, act, bias, acts, delta, ones, .. } = self;
        let (rows, bias) = (ch.rows, *bias);
        let ones = ones.get().slice(0..rows);
        for (l, layer) in layers.iter().enumerate().rev() {
            let (i, o) = (layer.inputs, layer.outputs);
            let (lo, hi) = delta.split_at_mut(l);
            let d = hi[0].get().slice(0..rows * o);
            let src = if l == 0 { ch.input() } else { acts[l - 1].get().slice(0..rows * i) };
            let gw_end = layer.offset + layer.weights();
            raw::weight_grad(ch.blas, &d, &src, &mut ch.grad.slice_mut(layer.offset..gw_end), rows, i, o)?;
            if bias {
                raw::bias_grad(ch.blas, &d, &ones, &mut ch.grad.slice_mut(gw_end..gw_end + o), rows, o)?;
            }
            if l > 0 {
                // delta_{l-1} = (delta_l W_l) * act'(a_{l-1}), the derivative read off the output.
                let w = layer.w(ch.x);
                let mut dp = lo[l - 1].get_mut().slice_mut(0..rows * i);
                raw::input_grad(ch.blas, &d, &w, &mut dp, rows, i, o)?;
                raw::mul_act_deriv(ch.stream, ch.k, &mut dp, &src, rows * i, *act)?;
            }
        }
        Ok(())
    }
}

impl Model for GpuNet {
    const CHUNK: usize = CHUNK;

    /// Grows the activations, deltas, per-row sums and the ones vector to `rows` rows.
    fn reserve(&mut self, sh: &Shared, rows: usize) -> Result<(), Fail> {
        let s = &sh.stream;
        for (l, a) in self.acts.iter_mut().enumerate() {
            a.reserve(s, rows * self.layers[l].outputs)?;
        }
        for (l, d) in self.delta.iter_mut().enumerate() {
            d.reserve(s, rows * self.layers[l].outputs)?;
        }
        self.row_loss.reserve(s, rows)?;
        self.row_correct.reserve(s, rows)?;
        if self.ones.reserve(s, rows)? {
            raw::fill(s, sh.kernels(), self.ones.get_mut(), 1.0)?;
        }
        Ok(())
    }

    /// Forward, head, loss reduction and (for [`Want::Grad`]) backward of one chunk.
    fn chunk(&mut self, mut ch: Chunk<'_>, want: Want) -> Result<(), Fail> {
        self.forward(&ch)?;
        // The head turns the outputs into scale * dLoss/doutputs in place, with per-row sums.
        let top = self.layers.len() - 1;
        let m = self.layers[top].outputs;
        let mut z = self.delta[top].get_mut().slice_mut(0..ch.rows * m);
        ch.head(self.head, m, &mut z, &mut self.row_loss, &mut self.row_correct)?;
        if want == Want::Loss {
            return Ok(());
        }
        self.backward(&mut ch)
    }

    /// Every head but least squares classifies.
    fn classifies(&self) -> bool {
        self.head != HEAD_SQUARES
    }
}

/// The kernels' code for an activation.
pub(super) fn act_code(a: Activation) -> i32 {
    match a {
        Activation::Relu => ACT_RELU,
        Activation::Tanh => ACT_TANH,
        Activation::Sigmoid => ACT_SIGMOID,
    }
}
