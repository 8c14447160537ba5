//! The driver plumbing that every GPU objective shares, whatever its network: one
//! [`GpuObjective`] implements `Objective` over any [`Model`].
//!
//! The networks differ only in their layers; everything around them is the same and lives here,
//! written once so that a fix to it reaches every model:
//!
//! - [`Shared`]: the device state of one objective (context, stream, cuBLAS handle, the data and
//!   targets uploaded at construction, the parameter and gradient buffers, the batch index and
//!   gathered-input buffers, the per-chunk sums) and the one-time upload of the data.
//! - [`GpuObjective::eval`]: a call binds the context, grows the buffers, uploads `x`, zeroes the
//!   gradient, runs the model over the batch in chunks of at most [`Model::CHUNK`] rows, then
//!   downloads the per-chunk sums and the gradient and adds the sums up in chunk order.
//! - [`Chunk`]: one chunk's view of the shared state, with its input rows gathered, which the
//!   model's forward and backward read and its loss head ([`Chunk::head`]) writes the sums from.
//!
//! The buffers grow to the largest chunk seen and are then reused, so a training loop with a fixed
//! batch size allocates on the device only in its first call.

use std::borrow::Cow;
use std::sync::Arc;

use cudarc::cublas::CudaBlas;
use cudarc::driver::{
    CudaSlice, CudaStream, CudaView, CudaViewMut, DeviceRepr, DriverError, ValidAsZeroBits,
};
use dprox_data::{Dataset, Features};
use dprox_objective::{Batch, Objective};

use super::kernels::Kernels;
use super::raw::{self, Rows};
use super::{CudaDevice, Fail};
use crate::ComputeError;

/// Largest sparse data set (as dense f32 bytes) that is densified for the GPU; larger ones are
/// refused with [`ComputeError::Unsupported`].
pub(crate) const DENSIFY_LIMIT_BYTES: usize = 256 << 20;

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
struct Sums {
    /// Sum of the per-sample losses.
    loss: f64,
    /// Number of samples predicted right (classifiers).
    correct: f64,
}

/// What differs between the GPU networks: their layers and the device scratch those need. The
/// rest of an objective (uploads, chunking, sums, errors) is [`GpuObjective`]'s.
pub(super) trait Model: Send {
    /// Most rows one chunk holds: the model's scratch grows with it, so each model sizes it to
    /// keep the GPU busy while its largest intermediates stay a few hundred megabytes.
    const CHUNK: usize;

    /// Grows the model's own per-chunk buffers to a chunk of `rows` samples. Runs after the
    /// shared index and input buffers have grown and before the per-chunk sums do.
    fn reserve(&mut self, sh: &Shared, rows: usize) -> Result<(), Fail>;

    /// Forward, head ([`Chunk::head`], which also stores the chunk's sums) and, for
    /// [`Want::Grad`], backward of one chunk, adding its gradient into [`Chunk::grad`].
    fn chunk(&mut self, ch: Chunk<'_>, want: Want) -> Result<(), Fail>;

    /// Whether the model classifies, so that `accuracy` has a meaning (not for least squares).
    fn classifies(&self) -> bool;
}

/// The device state every GPU objective has (see the module doc).
pub(super) struct Shared {
    /// "cuda:N", for panic messages.
    label: String,
    dev: CudaDevice,
    pub(super) stream: Arc<CudaStream>,
    blas: CudaBlas,
    dim: usize,
    n: usize,
    p: usize,
    /// The local features, n x p row-major, uploaded once.
    data: CudaSlice<f32>,
    /// The local targets.
    targets: CudaSlice<f32>,
    x: CudaSlice<f32>,
    grad: CudaSlice<f32>,
    /// The batch indices of a minibatch chunk.
    idx: Grow<i32>,
    /// The gathered rows of a minibatch chunk.
    input: Grow<f32>,
    /// Per chunk: (loss sum, correct count).
    parts: Grow<f64>,
    host_idx: Vec<i32>,
    host_parts: Vec<f64>,
}

impl Shared {
    /// Binds the context, makes the stream and cuBLAS handle, uploads `features` (n x p) and the
    /// targets of `data`, and allocates `dim` parameters and as many gradient entries.
    fn new(
        dev: &CudaDevice,
        label: &str,
        data: &Dataset,
        features: &[f32],
        dim: usize,
    ) -> Result<Shared, ComputeError> {
        let (n, p) = (data.len(), data.num_features());
        let ctx = &dev.inner.ctx;
        ctx.bind_to_thread().map_err(cuda_err(label, "binding the context"))?;
        let stream = ctx.new_stream().map_err(cuda_err(label, "creating a stream"))?;
        let blas = CudaBlas::new(stream.clone()).map_err(cuda_err(label, "creating the cuBLAS handle"))?;
        let upload = cuda_err(label, "uploading the data");
        let data_buf = stream.clone_htod(features).map_err(&upload)?;
        let targets = stream.clone_htod(&data.targets[..]).map_err(&upload)?;
        let alloc = cuda_err(label, "allocating the parameter buffers");
        let x = stream.alloc_zeros::<f32>(dim).map_err(&alloc)?;
        let grad = stream.alloc_zeros::<f32>(dim).map_err(&alloc)?;
        // Wait for the upload so that `features` (a temporary copy when densified) may go.
        stream.synchronize().map_err(&upload)?;
        Ok(Shared {
            label: label.to_string(),
            dev: dev.clone(),
            stream,
            blas,
            dim,
            n,
            p,
            data: data_buf,
            targets,
            x,
            grad,
            idx: Grow::new(),
            input: Grow::new(),
            parts: Grow::new(),
            host_idx: Vec::new(),
            host_parts: Vec::new(),
        })
    }

    /// The device's compiled kernels.
    pub(super) fn kernels(&self) -> &Kernels {
        &self.dev.inner.kernels
    }

    /// Starts chunk number `slot`, the batch entries `a..b`: uploads and gathers its rows for a
    /// minibatch (a full batch reads the data in place) and lends the model what it needs.
    fn chunk(
        &mut self,
        batch: Batch<'_>,
        a: usize,
        b: usize,
        scale: f64,
        slot: usize,
    ) -> Result<Chunk<'_>, Fail> {
        let Shared { dev, stream, blas, p, data, targets, x, grad, idx, input, parts, host_idx, .. } = self;
        let k = &dev.inner.kernels;
        let (rows, p) = (b - a, *p);

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
        let (idx, gathered) = (idx.get(), &*input);
        Ok(Chunk {
            k,
            stream,
            blas,
            x,
            grad,
            rows,
            p,
            select,
            scale,
            slot,
            data,
            gathered,
            targets,
            idx,
            parts,
        })
    }
}

/// One chunk's borrows of the [`Shared`] state: what the model's kernels read, the gradient they
/// add into, and (private) what the loss head needs.
pub(super) struct Chunk<'a> {
    pub(super) k: &'a Kernels,
    pub(super) stream: &'a Arc<CudaStream>,
    pub(super) blas: &'a CudaBlas,
    /// The parameters.
    pub(super) x: &'a CudaSlice<f32>,
    /// The gradient, zeroed before the first chunk; each chunk adds its part.
    pub(super) grad: &'a mut CudaSlice<f32>,
    /// Samples in the chunk.
    pub(super) rows: usize,
    p: usize,
    select: Rows,
    /// 1 / batch size.
    scale: f64,
    /// The chunk's number: where its sums go in `parts`.
    slot: usize,
    data: &'a CudaSlice<f32>,
    gathered: &'a Grow<f32>,
    targets: &'a CudaSlice<f32>,
    idx: &'a CudaSlice<i32>,
    parts: &'a mut Grow<f64>,
}

impl<'a> Chunk<'a> {
    /// The chunk's input rows (rows x p): a view of the data for a full batch, the gathered rows
    /// for a minibatch. The view borrows the shared state, not `self`, so it may be held across
    /// writes to [`Chunk::grad`].
    pub(super) fn input(&self) -> CudaView<'a, f32> {
        let (rows, p, data) = (self.rows, self.p, self.data);
        match self.select {
            Rows::Range(start) => data.slice(start * p..(start + rows) * p),
            Rows::Indexed => self.gathered.get().slice(0..rows * p),
        }
    }

    /// The loss head of kind `kind` (a `HEAD_*` code) over the outputs `z` (rows x m): `z`
    /// becomes scale * dLoss/dz in place, with per-row sums in `row_loss` and `row_correct`,
    /// which are then reduced into this chunk's slot of the per-chunk sums.
    pub(super) fn head(
        &mut self,
        kind: i32,
        m: usize,
        z: &mut CudaViewMut<'_, f32>,
        row_loss: &mut Grow<f64>,
        row_correct: &mut Grow<f64>,
    ) -> Result<(), Fail> {
        let (stream, k, rows) = (self.stream, self.k, self.rows);
        let spec = raw::Head {
            kind,
            m,
            rows,
            select: self.select,
            targets: self.targets,
            idx: self.idx,
            scale: self.scale,
        };
        raw::head(stream, k, &spec, z, row_loss.get_mut(), row_correct.get_mut())?;
        raw::reduce_pair(
            stream,
            k,
            row_loss.get(),
            row_correct.get(),
            rows,
            self.parts.get_mut(),
            self.slot,
        )?;
        Ok(())
    }
}

/// A GPU objective: the shared plumbing around one network `M`.
pub(super) struct GpuObjective<M: Model> {
    /// The CPU objective of the same spec: `init` and `flops_per_sample` are its, so the seeded x^0
    /// and the simulator's cost model do not depend on the device.
    cpu: Box<dyn Objective>,
    shared: Shared,
    model: M,
}

impl<M: Model> GpuObjective<M> {
    /// Uploads `data` to `dev` for `model`, which has `dim` parameters. `cpu` must be the CPU
    /// objective of the same spec on the same data (built first, so the spec and data are already
    /// checked); the model's constructor has checked that the device can run it.
    pub(super) fn new(
        dev: &CudaDevice,
        data: &Dataset,
        dim: usize,
        cpu: Box<dyn Objective>,
        model: M,
    ) -> Result<Self, ComputeError> {
        let label = dev.to_string();
        let features = dense_features(data, &label)?;
        // The LeNet refuses a mismatch earlier, with an error; for the others it would be a bug.
        debug_assert_eq!(dim, cpu.dim(), "GPU and CPU parameter layouts differ");
        let shared = Shared::new(dev, &label, data, &features, dim)?;
        Ok(GpuObjective { cpu, shared, model })
    }

    /// Grows every per-chunk buffer to `rows` rows and the per-chunk sums to `chunks`.
    fn reserve(&mut self, rows: usize, chunks: usize) -> Result<(), Fail> {
        let sh = &mut self.shared;
        sh.idx.reserve(&sh.stream, rows)?;
        sh.input.reserve(&sh.stream, rows * sh.p)?;
        self.model.reserve(sh, rows)?;
        sh.parts.reserve(&sh.stream, 2 * chunks)?;
        if sh.host_parts.len() < 2 * chunks {
            sh.host_parts.resize(2 * chunks, 0.0);
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
        let n = self.shared.n;
        let total = batch_len(batch, n);
        if total == 0 {
            if let Some(g) = grad {
                g.fill(0.0);
            }
            return Ok(Sums::default());
        }
        if let Batch::Indices(ix) = batch
            && let Some(&bad) = ix.iter().find(|&&i| i >= n)
        {
            // The CPU objectives panic on such an index too; on the GPU it would read out of bounds.
            panic!("sample index {bad} is out of range for {n} local samples");
        }
        self.shared.dev.inner.ctx.bind_to_thread()?;
        let chunks = total.div_ceil(M::CHUNK);
        self.reserve(total.min(M::CHUNK), chunks)?;
        let sh = &mut self.shared;
        sh.stream.memcpy_htod(x, &mut sh.x)?;
        if want == Want::Grad {
            sh.stream.memset_zeros(&mut sh.grad)?;
        }
        let scale = 1.0 / total as f64;
        for c in 0..chunks {
            let (a, b) = (c * M::CHUNK, ((c + 1) * M::CHUNK).min(total));
            let chunk = self.shared.chunk(batch, a, b, scale, c)?;
            self.model.chunk(chunk, want)?;
        }
        let Shared { stream, parts, host_parts, grad: dgrad, .. } = &mut self.shared;
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

    /// Runs `eval`, panicking with the device and the CUDA error when a call fails: the
    /// `Objective` trait has no error path, and a silently wrong gradient would be worse.
    fn run(&mut self, x: &[f32], batch: Batch<'_>, want: Want, grad: Option<&mut [f32]>) -> (Sums, usize) {
        assert_eq!(x.len(), self.shared.dim, "parameter vector has the wrong length");
        if let Some(g) = &grad {
            assert_eq!(g.len(), self.shared.dim, "gradient vector has the wrong length");
        }
        let total = batch_len(batch, self.shared.n);
        match self.eval(x, batch, want, grad) {
            Ok(s) => (s, total),
            Err(e) => {
                let label = &self.shared.label;
                tracing::error!(device = %label, "GPU objective failed: {e}");
                panic!("GPU objective on {label} failed: {e}")
            }
        }
    }
}

/// The number of samples in `batch` out of `n` local ones.
fn batch_len(batch: Batch<'_>, n: usize) -> usize {
    match batch {
        Batch::Full => n,
        Batch::Indices(ix) => ix.len(),
    }
}

impl<M: Model> Drop for GpuObjective<M> {
    /// Makes the device's context current before the buffers, stream and cuBLAS handle are freed:
    /// the simulator may drop an objective on another thread than the one that last used it.
    fn drop(&mut self) {
        let _ = self.shared.dev.inner.ctx.bind_to_thread();
    }
}

impl<M: Model> Objective for GpuObjective<M> {
    fn dim(&self) -> usize {
        self.shared.dim
    }

    fn num_samples(&self) -> usize {
        self.shared.n
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
        if !self.model.classifies() {
            return None;
        }
        let (s, total) = self.run(x, Batch::Full, Want::Loss, None);
        Some(s.correct / total as f64)
    }

    fn flops_per_sample(&self) -> f64 {
        self.cpu.flops_per_sample()
    }

    fn device(&self) -> String {
        let dev = &self.shared.dev;
        format!("{} ({})", dev, dev.name())
    }

    fn init(&self, seed: u64, x: &mut [f32]) {
        self.cpu.init(seed, x)
    }
}

/// Turns a CUDA error of step `what` into a [`ComputeError::Cuda`] naming the device.
fn cuda_err<'a, E: std::fmt::Display>(label: &'a str, what: &'static str) -> impl Fn(E) -> ComputeError + 'a {
    move |e| ComputeError::Cuda { device: label.to_string(), what, message: e.to_string() }
}

/// The features as one row-major f32 buffer: the dense matrix itself when it is contiguous, a
/// dense copy of CSR data when that copy is at most [`DENSIFY_LIMIT_BYTES`], else Unsupported.
fn dense_features<'a>(data: &'a Dataset, label: &str) -> Result<Cow<'a, [f32]>, ComputeError> {
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
