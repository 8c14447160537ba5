//! `GpuNet`: logistic regression, least squares, softmax regression and the MLP on a CUDA device,
//! with the math of `dprox-objective`.
//!
//! All four are one network: a stack of affine layers (one for the linear models) with the hidden
//! activation between them and a per-sample head on the last layer's outputs. The parameter
//! layout is the CPU one: per layer W (out x in, row-major), then b (out) when there is a bias.
//!
//! A call uploads `x` (and the batch indices), gathers the batch rows from the data uploaded at
//! construction, runs forward (cuBLAS sgemm + bias/activation kernel), the head kernel, the loss
//! reduction and backward (sgemm for weights and inputs, sgemv for biases), and downloads the
//! gradient into the caller's slice. Batches are processed in chunks of at most [`CHUNK`] rows;
//! the buffers grow to the largest chunk seen and are then reused, so a training loop with a fixed
//! batch size allocates on the device only in its first call.

use std::sync::Arc;

use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaSlice, CudaStream, DeviceRepr, DriverError, ValidAsZeroBits};
use dprox_data::{Dataset, Features};
use dprox_objective::{Activation, Batch, ModelKind, ModelSpec, Objective, Shape};

use super::kernels::{
    ACT_IDENTITY, ACT_RELU, ACT_SIGMOID, ACT_TANH, HEAD_CROSS_ENTROPY, HEAD_LOGISTIC, HEAD_SQUARES,
};
use super::raw::{self, Rows};
use super::{CudaDevice, Fail};
use crate::ComputeError;

/// Most rows one chunk holds: large enough to keep the GPU busy, small enough that a wide MLP's
/// activations stay a few hundred megabytes.
const CHUNK: usize = 8192;

/// Largest sparse data set (as dense f32 bytes) that is densified for the GPU; larger ones are
/// refused with [`ComputeError::Unsupported`].
pub(crate) const DENSIFY_LIMIT_BYTES: usize = 256 << 20;

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
}

/// A device buffer that grows to the largest size asked for and is then reused.
pub(super) struct Grow<T> {
    buf: Option<CudaSlice<T>>,
}

impl<T: DeviceRepr + ValidAsZeroBits> Grow<T> {
    pub(super) fn new() -> Self {
        Grow { buf: None }
    }

    /// Makes room for `len` elements; true when it had to (re)allocate.
    pub(super) fn reserve(&mut self, stream: &Arc<CudaStream>, len: usize) -> Result<bool, DriverError> {
        let need = len.max(1);
        if self.buf.as_ref().is_some_and(|b| b.len() >= need) {
            return Ok(false);
        }
        // Free the old buffer first so that growing never holds both.
        self.buf = None;
        self.buf = Some(stream.alloc_zeros(need)?);
        Ok(true)
    }

    pub(super) fn get(&self) -> &CudaSlice<T> {
        self.buf.as_ref().expect("buffer reserved before use")
    }

    pub(super) fn get_mut(&mut self) -> &mut CudaSlice<T> {
        self.buf.as_mut().expect("buffer reserved before use")
    }
}

/// What one evaluation computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Want {
    /// Loss and gradient.
    Grad,
    /// Loss (and the correct count) only.
    Loss,
}

/// Sums of one evaluation.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Sums {
    /// Sum of the per-sample losses.
    pub(super) loss: f64,
    /// Number of samples predicted right (classifiers).
    pub(super) correct: f64,
}

/// The GPU objective (see the module doc).
pub(crate) struct GpuNet {
    /// "cuda:N", for panic messages.
    label: String,
    /// The CPU objective of the same spec: `init` and `flops_per_sample` are its, so the seeded x^0
    /// and the simulator's cost model do not depend on the device.
    cpu: Box<dyn Objective>,
    dev: CudaDevice,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    layers: Vec<Layer>,
    act: i32,
    head: i32,
    bias: bool,
    dim: usize,
    n: usize,
    p: usize,
    /// The local features, n x p row-major, uploaded once.
    data: CudaSlice<f32>,
    /// The local targets.
    targets: CudaSlice<f32>,
    x: CudaSlice<f32>,
    grad: CudaSlice<f32>,
    idx: Grow<i32>,
    /// The gathered rows of a minibatch chunk.
    input: Grow<f32>,
    /// Post-activation outputs of the hidden layers.
    acts: Vec<Grow<f32>>,
    /// dLoss/d(pre-activation) of every layer; the last one first holds the outputs.
    delta: Vec<Grow<f32>>,
    row_loss: Grow<f64>,
    row_correct: Grow<f64>,
    ones: Grow<f32>,
    /// Per chunk: (loss sum, correct count).
    parts: Grow<f64>,
    host_idx: Vec<i32>,
    host_parts: Vec<f64>,
}

impl GpuNet {
    /// Uploads `data` to `dev` and sets up the network of `spec`. `cpu` must be the CPU objective
    /// of the same spec on the same data (built first, so the spec and data are already checked).
    pub(crate) fn new(
        dev: &CudaDevice,
        spec: &ModelSpec,
        data: &Dataset,
        shape: Shape,
        cpu: Box<dyn Objective>,
    ) -> Result<GpuNet, ComputeError> {
        let label = dev.to_string();
        let unsupported = |what: String| ComputeError::Unsupported { backend: label.clone(), what };
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
        let features = dense_features(data, &label)?;

        let mut layers = Vec::with_capacity(hidden.len() + 1);
        let (mut inputs, mut offset) = (p, 0);
        for &outputs in hidden.iter().chain([outputs].iter()) {
            layers.push(Layer { inputs, outputs, offset });
            offset += inputs * outputs + if spec.bias { outputs } else { 0 };
            inputs = outputs;
        }
        let dim = offset;
        debug_assert_eq!(dim, cpu.dim(), "GPU and CPU parameter layouts differ");

        let ctx = &dev.inner.ctx;
        ctx.bind_to_thread().map_err(cuda_err(&label, "binding the context"))?;
        let stream = ctx.new_stream().map_err(cuda_err(&label, "creating a stream"))?;
        let blas = CudaBlas::new(stream.clone()).map_err(cuda_err(&label, "creating the cuBLAS handle"))?;
        let upload = cuda_err(&label, "uploading the data");
        let data_buf = stream.clone_htod(&features[..]).map_err(&upload)?;
        let targets = stream.clone_htod(&data.targets[..]).map_err(&upload)?;
        let alloc = cuda_err(&label, "allocating the parameter buffers");
        let x = stream.alloc_zeros::<f32>(dim).map_err(&alloc)?;
        let grad = stream.alloc_zeros::<f32>(dim).map_err(&alloc)?;
        // Wait for the upload so that `features` (a temporary copy when densified) may go.
        stream.synchronize().map_err(&upload)?;
        let act_count = layers.len() - 1;
        Ok(GpuNet {
            label: label.clone(),
            cpu,
            dev: dev.clone(),
            stream,
            blas,
            act,
            head,
            bias: spec.bias,
            dim,
            n,
            p,
            data: data_buf,
            targets,
            x,
            grad,
            idx: Grow::new(),
            input: Grow::new(),
            acts: (0..act_count).map(|_| Grow::new()).collect(),
            delta: (0..layers.len()).map(|_| Grow::new()).collect(),
            row_loss: Grow::new(),
            row_correct: Grow::new(),
            ones: Grow::new(),
            parts: Grow::new(),
            host_idx: Vec::new(),
            host_parts: Vec::new(),
            layers,
        })
    }

    /// Grows every per-chunk buffer to `rows` rows and the per-chunk sums to `chunks`.
    fn reserve(&mut self, rows: usize, chunks: usize) -> Result<(), Fail> {
        let s = &self.stream;
        self.idx.reserve(s, rows)?;
        self.input.reserve(s, rows * self.p)?;
        for (l, a) in self.acts.iter_mut().enumerate() {
            a.reserve(s, rows * self.layers[l].outputs)?;
        }
        for (l, d) in self.delta.iter_mut().enumerate() {
            d.reserve(s, rows * self.layers[l].outputs)?;
        }
        self.row_loss.reserve(s, rows)?;
        self.row_correct.reserve(s, rows)?;
        if self.ones.reserve(s, rows)? {
            raw::fill(s, &self.dev.inner.kernels, self.ones.get_mut(), 1.0)?;
        }
        self.parts.reserve(s, 2 * chunks)?;
        if self.host_parts.len() < 2 * chunks {
            self.host_parts.resize(2 * chunks, 0.0);
        }
        Ok(())
    }

    /// Loss sums over `batch`, and the gradient into `grad` when `want` is [`Want::Grad`].
    fn eval(
        &mut self,
        x: &[f32],
        batch: Batch<'_>,
        want: Want,
        grad: Option<&mut [f32]>,
    ) -> Result<Sums, Fail> {
        let total = match batch {
            Batch::Full => self.n,
            Batch::Indices(ix) => ix.len(),
        };
        if total == 0 {
            if let Some(g) = grad {
                g.fill(0.0);
            }
            return Ok(Sums::default());
        }
        if let Batch::Indices(ix) = batch
            && let Some(&bad) = ix.iter().find(|&&i| i >= self.n)
        {
            // The CPU objectives panic on such an index too; on the GPU it would read out of bounds.
            panic!("sample index {bad} is out of range for {} local samples", self.n);
        }
        self.dev.inner.ctx.bind_to_thread()?;
        let chunks = total.div_ceil(CHUNK);
        self.reserve(total.min(CHUNK), chunks)?;
        self.stream.memcpy_htod(x, &mut self.x)?;
        if want == Want::Grad {
            self.stream.memset_zeros(&mut self.grad)?;
        }
        let scale = 1.0 / total as f64;
        for c in 0..chunks {
            let (a, b) = (c * CHUNK, ((c + 1) * CHUNK).min(total));
            self.chunk(batch, a, b, scale, want, c)?;
        }
        let GpuNet { stream, parts, host_parts, grad: dgrad, .. } = self;
        let host = &mut host_parts[..2 * chunks];
        stream.memcpy_dtoh(&parts.get().slice(0..2 * chunks), host)?;
        if let Some(g) = grad {
            stream.memcpy_dtoh(&*dgrad, g)?;
        }
        stream.synchronize()?;
        // Chunk sums added in chunk order: deterministic.
        let mut sums = Sums::default();
        for pair in host.chunks_exact(2) {
            sums.loss += pair[0];
            sums.correct += pair[1];
        }
        Ok(sums)
    }

    /// Forward, head, loss reduction and (for [`Want::Grad`]) backward of the batch entries
    /// `a..b`, chunk number `c`.
    fn chunk(
        &mut self,
        batch: Batch<'_>,
        a: usize,
        b: usize,
        scale: f64,
        want: Want,
        c: usize,
    ) -> Result<(), Fail> {
        let GpuNet {
            dev,
            stream,
            blas,
            layers,
            act,
            head,
            bias,
            p,
            data,
            targets,
            x,
            grad,
            idx,
            input,
            acts,
            delta,
            row_loss,
            row_correct,
            ones,
            parts,
            host_idx,
            ..
        } = self;
        let k = &dev.inner.kernels;
        let (rows, p, bias, top) = (b - a, *p, *bias, layers.len() - 1);

        // The chunk's input rows: a view of the data for a full batch, gathered for a minibatch.
        let select = match batch {
            Batch::Full => Rows::Range(a),
            Batch::Indices(ix) => {
                host_idx.clear();
                // In range of i32: every index is below n, which was checked to fit.
                host_idx.extend(ix[a..b].iter().map(|&i| i as i32));
                stream.memcpy_htod(&host_idx[..], &mut idx.get_mut().slice_mut(0..rows))?;
                let ids = idx.get().slice(0..rows);
                raw::gather_rows(
                    stream,
                    k,
                    data,
                    &ids,
                    rows,
                    p,
                    &mut input.get_mut().slice_mut(0..rows * p),
                )?;
                Rows::Indexed
            }
        };
        let input_view = || match select {
            Rows::Range(start) => data.slice(start * p..(start + rows) * p),
            Rows::Indexed => input.get().slice(0..rows * p),
        };
        let weights = |l: &Layer| x.slice(l.offset..l.offset + l.weights());
        let biases =
            |l: &Layer| bias.then(|| x.slice(l.offset + l.weights()..l.offset + l.weights() + l.outputs));

        // Forward: hidden layers into `acts`, the last layer's outputs into the top `delta`.
        for (l, layer) in layers.iter().enumerate() {
            let (w, bv) = (weights(layer), biases(layer));
            let (done, rest) = acts.split_at_mut(l.min(top));
            let out_buf = if l == top { delta[top].get_mut() } else { rest[0].get_mut() };
            let mut out = out_buf.slice_mut(0..rows * layer.outputs);
            let src = if l == 0 { input_view() } else { done[l - 1].get().slice(0..rows * layer.inputs) };
            raw::forward(blas, &src, &w, &mut out, rows, layer.inputs, layer.outputs)?;
            let a_code = if l == top { ACT_IDENTITY } else { *act };
            raw::bias_act(stream, k, &mut out, bv.as_ref(), rows, layer.outputs, a_code)?;
        }

        // The head turns the outputs into scale * dLoss/doutputs in place, with per-row sums.
        let spec =
            raw::Head { kind: *head, m: layers[top].outputs, rows, select, targets, idx: idx.get(), scale };
        let mut z = delta[top].get_mut().slice_mut(0..rows * layers[top].outputs);
        raw::head(stream, k, &spec, &mut z, row_loss.get_mut(), row_correct.get_mut())?;
        raw::reduce_pair(stream, k, row_loss.get(), row_correct.get(), rows, parts.get_mut(), c)?;
        if want == Want::Loss {
            return Ok(());
        }

        // Backward, top layer first.
        let ones = ones.get().slice(0..rows);
        for (l, layer) in layers.iter().enumerate().rev() {
            let (i, o) = (layer.inputs, layer.outputs);
            let (lo, hi) = delta.split_at_mut(l);
            let d = hi[0].get().slice(0..rows * o);
            let src = if l == 0 { input_view() } else { acts[l - 1].get().slice(0..rows * i) };
            let gw_end = layer.offset + layer.weights();
            raw::weight_grad(blas, &d, &src, &mut grad.slice_mut(layer.offset..gw_end), rows, i, o)?;
            if bias {
                raw::bias_grad(blas, &d, &ones, &mut grad.slice_mut(gw_end..gw_end + o), rows, o)?;
            }
            if l > 0 {
                // delta_{l-1} = (delta_l W_l) * act'(a_{l-1}), the derivative read off the output.
                let w = weights(layer);
                let mut dp = lo[l - 1].get_mut().slice_mut(0..rows * i);
                raw::input_grad(blas, &d, &w, &mut dp, rows, i, o)?;
                raw::mul_act_deriv(stream, k, &mut dp, &src, rows * i, *act)?;
            }
        }
        Ok(())
    }

    /// Runs `eval`, panicking with the device and the CUDA error when a call fails: the
    /// `Objective` trait has no error path, and a silently wrong gradient would be worse.
    fn run(&mut self, x: &[f32], batch: Batch<'_>, want: Want, grad: Option<&mut [f32]>) -> (Sums, usize) {
        assert_eq!(x.len(), self.dim, "parameter vector has the wrong length");
        if let Some(g) = &grad {
            assert_eq!(g.len(), self.dim, "gradient vector has the wrong length");
        }
        let total = match batch {
            Batch::Full => self.n,
            Batch::Indices(ix) => ix.len(),
        };
        match self.eval(x, batch, want, grad) {
            Ok(s) => (s, total),
            Err(e) => {
                tracing::error!(device = %self.label, "GPU objective failed: {e}");
                panic!("GPU objective on {} failed: {e}", self.label)
            }
        }
    }
}

/// Turns a CUDA error of step `what` into a [`ComputeError::Cuda`] naming the device.
pub(super) fn cuda_err<'a, E: std::fmt::Display>(
    label: &'a str,
    what: &'static str,
) -> impl Fn(E) -> ComputeError + 'a {
    move |e| ComputeError::Cuda { device: label.to_string(), what, message: e.to_string() }
}

/// The kernels' code for an activation.
pub(super) fn act_code(a: Activation) -> i32 {
    match a {
        Activation::Relu => ACT_RELU,
        Activation::Tanh => ACT_TANH,
        Activation::Sigmoid => ACT_SIGMOID,
    }
}

/// The features as one row-major f32 buffer: the dense matrix itself when it is contiguous, a
/// dense copy of CSR data when that copy is at most [`DENSIFY_LIMIT_BYTES`], else Unsupported.
pub(super) fn dense_features<'a>(
    data: &'a Dataset,
    label: &str,
) -> Result<std::borrow::Cow<'a, [f32]>, ComputeError> {
    use std::borrow::Cow;
    match &data.features {
        Features::Dense(m) => Ok(match m.as_slice() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(m.iter().copied().collect()),
        }),
        Features::Sparse(csr) => {
            let bytes = csr.rows.saturating_mul(csr.cols).saturating_mul(4);
            if bytes > DENSIFY_LIMIT_BYTES {
                return Err(ComputeError::Unsupported {
                    backend: label.to_string(),
                    what: format!(
                        "sparse features this large ({} x {}, {} MiB dense; the limit for densifying is {} MiB): \
                         use device = \"cpu\" for this data",
                        csr.rows,
                        csr.cols,
                        bytes >> 20,
                        DENSIFY_LIMIT_BYTES >> 20
                    ),
                });
            }
            tracing::info!(device = %label, rows = csr.rows, cols = csr.cols, "densifying sparse features for the GPU");
            let mut dense = vec![0.0f32; csr.rows * csr.cols];
            for r in 0..csr.rows {
                let (ix, vals) = csr.row(r);
                for (&c, &v) in ix.iter().zip(vals) {
                    dense[r * csr.cols + c as usize] += v;
                }
            }
            Ok(Cow::Owned(dense))
        }
    }
}

impl Drop for GpuNet {
    /// Makes the device's context current before the buffers, stream and cuBLAS handle are freed:
    /// the simulator may drop an objective on another thread than the one that last used it.
    fn drop(&mut self) {
        let _ = self.dev.inner.ctx.bind_to_thread();
    }
}

impl Objective for GpuNet {
    fn dim(&self) -> usize {
        self.dim
    }

    fn num_samples(&self) -> usize {
        self.n
    }

    fn loss_grad(&mut self, x: &[f32], batch: Batch<'_>, grad: &mut [f32]) -> f64 {
        let (s, total) = self.run(x, batch, Want::Grad, Some(grad));
        if total == 0 { 0.0 } else { s.loss / total as f64 }
    }

    fn loss(&mut self, x: &[f32], batch: Batch<'_>) -> f64 {
        let (s, total) = self.run(x, batch, Want::Loss, None);
        if total == 0 { 0.0 } else { s.loss / total as f64 }
    }

    fn accuracy(&mut self, x: &[f32]) -> Option<f64> {
        if self.head == HEAD_SQUARES {
            return None;
        }
        let (s, total) = self.run(x, Batch::Full, Want::Loss, None);
        Some(s.correct / total as f64)
    }

    fn flops_per_sample(&self) -> f64 {
        self.cpu.flops_per_sample()
    }

    fn device(&self) -> String {
        format!("{} ({})", self.dev, self.dev.name())
    }

    fn init(&self, seed: u64, x: &mut [f32]) {
        self.cpu.init(seed, x)
    }
}
