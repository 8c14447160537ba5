//! `GpuLeNet`: dprox-objective's LeNet-5 on a CUDA device, with the same math and parameter layout.
//!
//! The CPU model (`lenet.rs`, `conv.rs` of dprox-objective) is a chain of affine maps, each one
//! GEMM per chunk: a convolution is im2col + GEMM, giving NHWC maps. Here each GEMM is cuBLAS's
//! and each loop of `conv.rs` is one kernel of `kernels.rs` (im2col, col2im, 2x2 pooling forward
//! and backward), in the same order as the CPU's `LeNet::eval`:
//!
//! ```text
//! forward:  im2col -> conv 1 GEMM -> bias+act -> pool -> im2col -> conv 2 GEMM -> bias+act -> pool
//!           -> dense layers (as the MLP) -> cross-entropy head
//! backward: dense layers -> pool 2 backward -> act' -> conv 2 weight GEMM, input GEMM -> col2im
//!           -> pool 1 backward -> act' -> conv 1 weight GEMM
//! ```

use std::sync::Arc;

use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaSlice, CudaStream};
use dprox_data::Dataset;
use dprox_objective::{Batch, LeNetArch, LeNetLayer, ModelSpec, Objective, Pool, Shape};

use super::kernels::{ACT_IDENTITY, HEAD_CROSS_ENTROPY};
use super::net::{Grow, Sums, Want, act_code, cuda_err, dense_features};
use super::raw::{self, ConvGeom, PoolGeom, Rows};
use super::{CudaDevice, Fail};
use crate::ComputeError;

/// Samples per chunk: a 28 x 28 sample needs about 200 KB of device scratch, so 1024 of them
/// about 200 MB, while the first convolution's GEMM has 800,000 rows.
const CHUNK: usize = 1024;

/// Kernel size of both convolutions (dprox-objective's `K`).
const K: usize = 5;

/// Device scratch, one buffer per intermediate of the CPU model (same names).
struct Bufs {
    idx: Grow<i32>,
    input: Grow<f32>,
    cols1: Grow<f32>,
    a1: Grow<f32>,
    p1: Grow<f32>,
    cols2: Grow<f32>,
    a2: Grow<f32>,
    p2: Grow<f32>,
    acts: Vec<Grow<f32>>,
    delta: Vec<Grow<f32>>,
    dp2: Grow<f32>,
    da2: Grow<f32>,
    dp1: Grow<f32>,
    da1: Grow<f32>,
    row_loss: Grow<f64>,
    row_correct: Grow<f64>,
    ones: Grow<f32>,
    parts: Grow<f64>,
}

/// The GPU LeNet (see the module doc).
pub(crate) struct GpuLeNet {
    label: String,
    /// The CPU LeNet of the same spec: its `init` and `flops_per_sample`.
    cpu: Box<dyn Objective>,
    dev: CudaDevice,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    layers: Vec<LeNetLayer>,
    conv1: ConvGeom,
    pool1: PoolGeom,
    conv2: ConvGeom,
    pool2: PoolGeom,
    act: i32,
    bias: bool,
    dim: usize,
    n: usize,
    p: usize,
    data: CudaSlice<f32>,
    targets: CudaSlice<f32>,
    x: CudaSlice<f32>,
    grad: CudaSlice<f32>,
    bufs: Bufs,
    host_idx: Vec<i32>,
    host_parts: Vec<f64>,
}

impl GpuLeNet {
    /// Uploads `data` and sets up the LeNet of `spec`; `cpu` is the CPU LeNet of the same spec.
    pub(crate) fn new(
        dev: &CudaDevice,
        spec: &ModelSpec,
        data: &Dataset,
        shape: Shape,
        cpu: Box<dyn Objective>,
    ) -> Result<GpuLeNet, ComputeError> {
        let label = dev.to_string();
        let arch = LeNetArch::from_spec(spec, shape)?;
        let [c, h, w] = arch.image;
        let [c1, c2] = arch.channels;
        let max = arch.pool == Pool::Max;
        // The stages of dprox-objective's `LeNetArch::stages`.
        let conv1 = ConvGeom { cin: c, h, w, k: K, pad: 2, hwc: false };
        let pool1 = PoolGeom { h: conv1.hout(), w: conv1.wout(), c: c1, max };
        let conv2 = ConvGeom { cin: c1, h: pool1.h / 2, w: pool1.w / 2, k: K, pad: 0, hwc: true };
        let pool2 = PoolGeom { h: conv2.hout(), w: conv2.wout(), c: c2, max };
        let layers = arch.layers();
        let (n, p) = (data.len(), data.num_features());
        let known = layers.len() >= 3
            && layers[0].inputs == conv1.patch()
            && layers[1].inputs == conv2.patch()
            && layers[2].inputs == pool2.out_len()
            && arch.dim() == cpu.dim();
        let unsupported = |what: String| ComputeError::Unsupported { backend: label.clone(), what };
        if !known {
            return Err(unsupported(format!("this LeNet layout ({arch:?})")));
        }
        // The kernels take int sizes; the largest per-chunk matrix is the first im2col.
        let biggest = CHUNK * conv1.positions() * conv1.patch().max(c1);
        if i32::try_from(biggest).is_err() || i32::try_from(n.max(p)).is_err() {
            return Err(unsupported(format!("a LeNet on {c}x{h}x{w} images of {n} samples (too large)")));
        }
        let features = dense_features(data, &label)?;
        let ctx = &dev.inner.ctx;
        ctx.bind_to_thread().map_err(cuda_err(&label, "binding the context"))?;
        let stream = ctx.new_stream().map_err(cuda_err(&label, "creating a stream"))?;
        let blas = CudaBlas::new(stream.clone()).map_err(cuda_err(&label, "creating the cuBLAS handle"))?;
        let upload = cuda_err(&label, "uploading the data");
        let data_buf = stream.clone_htod(&features[..]).map_err(&upload)?;
        let targets = stream.clone_htod(&data.targets[..]).map_err(&upload)?;
        let dim = arch.dim();
        let alloc = cuda_err(&label, "allocating the parameter buffers");
        let x = stream.alloc_zeros::<f32>(dim).map_err(&alloc)?;
        let grad = stream.alloc_zeros::<f32>(dim).map_err(&alloc)?;
        stream.synchronize().map_err(&upload)?;
        let dense = layers.len() - 2;
        Ok(GpuLeNet {
            label: label.clone(),
            cpu,
            dev: dev.clone(),
            stream,
            blas,
            conv1,
            pool1,
            conv2,
            pool2,
            act: act_code(arch.activation),
            bias: arch.bias,
            dim,
            n,
            p,
            data: data_buf,
            targets,
            x,
            grad,
            bufs: Bufs {
                idx: Grow::new(),
                input: Grow::new(),
                cols1: Grow::new(),
                a1: Grow::new(),
                p1: Grow::new(),
                cols2: Grow::new(),
                a2: Grow::new(),
                p2: Grow::new(),
                acts: (0..dense - 1).map(|_| Grow::new()).collect(),
                delta: (0..dense).map(|_| Grow::new()).collect(),
                dp2: Grow::new(),
                da2: Grow::new(),
                dp1: Grow::new(),
                da1: Grow::new(),
                row_loss: Grow::new(),
                row_correct: Grow::new(),
                ones: Grow::new(),
                parts: Grow::new(),
            },
            host_idx: Vec::new(),
            host_parts: Vec::new(),
            layers,
        })
    }

    /// Grows every buffer to a chunk of `rows` samples, and the per-chunk sums to `chunks`.
    fn reserve(&mut self, rows: usize, chunks: usize) -> Result<(), Fail> {
        let (s, b) = (&self.stream, &mut self.bufs);
        let (r1, r2) = (rows * self.conv1.positions(), rows * self.conv2.positions());
        let (m1, m2) = (self.layers[0].outputs, self.layers[1].outputs);
        let flat = self.layers[2].inputs;
        b.idx.reserve(s, rows)?;
        b.input.reserve(s, rows * self.p)?;
        b.cols1.reserve(s, r1 * self.conv1.patch())?;
        b.a1.reserve(s, r1 * m1)?;
        b.da1.reserve(s, r1 * m1)?;
        b.p1.reserve(s, rows * self.pool1.out_len())?;
        b.dp1.reserve(s, rows * self.pool1.out_len())?;
        b.cols2.reserve(s, r2 * self.conv2.patch())?;
        b.a2.reserve(s, r2 * m2)?;
        b.da2.reserve(s, r2 * m2)?;
        b.p2.reserve(s, rows * flat)?;
        b.dp2.reserve(s, rows * flat)?;
        let dense = &self.layers[2..];
        for (l, a) in b.acts.iter_mut().enumerate() {
            a.reserve(s, rows * dense[l].outputs)?;
        }
        for (l, d) in b.delta.iter_mut().enumerate() {
            d.reserve(s, rows * dense[l].outputs)?;
        }
        b.row_loss.reserve(s, rows)?;
        b.row_correct.reserve(s, rows)?;
        // The bias gradients sum over the rows of the biggest GEMM, conv 1's.
        if b.ones.reserve(s, r1.max(rows))? {
            raw::fill(s, &self.dev.inner.kernels, b.ones.get_mut(), 1.0)?;
        }
        b.parts.reserve(s, 2 * chunks)?;
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
        let GpuLeNet { stream, bufs, host_parts, grad: dgrad, .. } = self;
        let host = &mut host_parts[..2 * chunks];
        stream.memcpy_dtoh(&bufs.parts.get().slice(0..2 * chunks), host)?;
        if let Some(g) = grad {
            stream.memcpy_dtoh(&*dgrad, g)?;
        }
        stream.synchronize()?;
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
        let GpuLeNet {
            dev,
            stream,
            blas,
            layers,
            conv1: g1,
            pool1: q1,
            conv2: g2,
            pool2: q2,
            act,
            bias,
            p,
            data,
            targets,
            x,
            grad,
            bufs,
            host_idx,
            ..
        } = self;
        let Bufs {
            idx,
            input,
            cols1,
            a1,
            p1,
            cols2,
            a2,
            p2,
            acts,
            delta,
            dp2,
            da2,
            dp1,
            da1,
            row_loss,
            row_correct,
            ones,
            parts,
        } = bufs;
        let k = &dev.inner.kernels;
        let (rows, p, bias, act) = (b - a, *p, *bias, *act);
        let (r1, r2, k1, k2) = (rows * g1.positions(), rows * g2.positions(), g1.patch(), g2.patch());
        let (l1, l2, dense) = (layers[0], layers[1], &layers[2..]);
        let (m1, m2, flat, top) = (l1.outputs, l2.outputs, dense[0].inputs, dense.len() - 1);
        let n1 = rows * q1.out_len();

        let select = match batch {
            Batch::Full => Rows::Range(a),
            Batch::Indices(ix) => {
                host_idx.clear();
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
        let images = match select {
            Rows::Range(start) => data.slice(start * p..(start + rows) * p),
            Rows::Indexed => input.get().slice(0..rows * p),
        };
        let weights = |l: &LeNetLayer| x.slice(l.offset..l.offset + l.inputs * l.outputs);
        let biases = |l: &LeNetLayer| {
            let start = l.offset + l.inputs * l.outputs;
            bias.then(|| x.slice(start..start + l.outputs))
        };
        let grads = |l: &LeNetLayer| (l.offset, l.offset + l.inputs * l.outputs);

        // Conv 1 and pool 1.
        raw::im2col(stream, k, g1, &images, rows, &mut cols1.get_mut().slice_mut(0..r1 * k1))?;
        let mut out = a1.get_mut().slice_mut(0..r1 * m1);
        raw::forward(blas, &cols1.get().slice(0..r1 * k1), &weights(&l1), &mut out, r1, k1, m1)?;
        raw::bias_act(stream, k, &mut out, biases(&l1).as_ref(), r1, m1, act)?;
        raw::pool_fwd(stream, k, q1, &a1.get().slice(0..r1 * m1), rows, &mut p1.get_mut().slice_mut(0..n1))?;
        // Conv 2 and pool 2 (into p2, one row of `flat` values per sample).
        raw::im2col(stream, k, g2, &p1.get().slice(0..n1), rows, &mut cols2.get_mut().slice_mut(0..r2 * k2))?;
        let mut out = a2.get_mut().slice_mut(0..r2 * m2);
        raw::forward(blas, &cols2.get().slice(0..r2 * k2), &weights(&l2), &mut out, r2, k2, m2)?;
        raw::bias_act(stream, k, &mut out, biases(&l2).as_ref(), r2, m2, act)?;
        raw::pool_fwd(
            stream,
            k,
            q2,
            &a2.get().slice(0..r2 * m2),
            rows,
            &mut p2.get_mut().slice_mut(0..rows * flat),
        )?;
        // The dense layers, the logits into the top `delta`.
        for (l, layer) in dense.iter().enumerate() {
            let (done, rest) = acts.split_at_mut(l.min(top));
            let out_buf = if l == top { delta[top].get_mut() } else { rest[0].get_mut() };
            let mut out = out_buf.slice_mut(0..rows * layer.outputs);
            let src = if l == 0 {
                p2.get().slice(0..rows * flat)
            } else {
                done[l - 1].get().slice(0..rows * layer.inputs)
            };
            raw::forward(blas, &src, &weights(layer), &mut out, rows, layer.inputs, layer.outputs)?;
            let a_code = if l == top { ACT_IDENTITY } else { act };
            raw::bias_act(stream, k, &mut out, biases(layer).as_ref(), rows, layer.outputs, a_code)?;
        }

        let spec = raw::Head {
            kind: HEAD_CROSS_ENTROPY,
            m: dense[top].outputs,
            rows,
            select,
            targets,
            idx: idx.get(),
            scale,
        };
        let mut z = delta[top].get_mut().slice_mut(0..rows * dense[top].outputs);
        raw::head(stream, k, &spec, &mut z, row_loss.get_mut(), row_correct.get_mut())?;
        raw::reduce_pair(stream, k, row_loss.get(), row_correct.get(), rows, parts.get_mut(), c)?;
        if want == Want::Loss {
            return Ok(());
        }

        // Backward through the dense layers; the first one's input gradient goes to dp2.
        for (l, layer) in dense.iter().enumerate().rev() {
            let (i, o) = (layer.inputs, layer.outputs);
            let (lo, hi) = delta.split_at_mut(l);
            let d = hi[0].get().slice(0..rows * o);
            let src = if l == 0 { p2.get().slice(0..rows * i) } else { acts[l - 1].get().slice(0..rows * i) };
            let (w0, w1) = grads(layer);
            raw::weight_grad(blas, &d, &src, &mut grad.slice_mut(w0..w1), rows, i, o)?;
            if bias {
                raw::bias_grad(
                    blas,
                    &d,
                    &ones.get().slice(0..rows),
                    &mut grad.slice_mut(w1..w1 + o),
                    rows,
                    o,
                )?;
            }
            let dst = if l == 0 { dp2.get_mut() } else { lo[l - 1].get_mut() };
            let mut dp = dst.slice_mut(0..rows * i);
            raw::input_grad(blas, &d, &weights(layer), &mut dp, rows, i, o)?;
            if l > 0 {
                raw::mul_act_deriv(stream, k, &mut dp, &src, rows * i, act)?;
            }
        }

        // Pool 2 and conv 2: the weight gradient, then dcols2 = da2 W2 (into cols2) and col2im.
        let mut d = da2.get_mut().slice_mut(0..r2 * m2);
        stream.memset_zeros(&mut d)?;
        let (a2v, p2v) = (a2.get().slice(0..r2 * m2), p2.get().slice(0..rows * flat));
        raw::pool_bwd(stream, k, q2, &a2v, &p2v, &dp2.get().slice(0..rows * flat), rows, &mut d)?;
        raw::mul_act_deriv(stream, k, &mut d, &a2v, r2 * m2, act)?;
        let d2 = da2.get().slice(0..r2 * m2);
        let (w0, w1) = grads(&l2);
        raw::weight_grad(blas, &d2, &cols2.get().slice(0..r2 * k2), &mut grad.slice_mut(w0..w1), r2, k2, m2)?;
        if bias {
            raw::bias_grad(blas, &d2, &ones.get().slice(0..r2), &mut grad.slice_mut(w1..w1 + m2), r2, m2)?;
        }
        raw::input_grad(blas, &d2, &weights(&l2), &mut cols2.get_mut().slice_mut(0..r2 * k2), r2, k2, m2)?;
        raw::col2im(
            stream,
            k,
            g2,
            &cols2.get().slice(0..r2 * k2),
            rows,
            &mut dp1.get_mut().slice_mut(0..n1),
        )?;

        // Pool 1 and conv 1: only the weight gradient (the input needs none).
        let mut d = da1.get_mut().slice_mut(0..r1 * m1);
        stream.memset_zeros(&mut d)?;
        let (a1v, p1v) = (a1.get().slice(0..r1 * m1), p1.get().slice(0..n1));
        raw::pool_bwd(stream, k, q1, &a1v, &p1v, &dp1.get().slice(0..n1), rows, &mut d)?;
        raw::mul_act_deriv(stream, k, &mut d, &a1v, r1 * m1, act)?;
        let d1 = da1.get().slice(0..r1 * m1);
        let (w0, w1) = grads(&l1);
        raw::weight_grad(blas, &d1, &cols1.get().slice(0..r1 * k1), &mut grad.slice_mut(w0..w1), r1, k1, m1)?;
        if bias {
            raw::bias_grad(blas, &d1, &ones.get().slice(0..r1), &mut grad.slice_mut(w1..w1 + m1), r1, m1)?;
        }
        Ok(())
    }

    /// Runs `eval`, panicking with the device and the CUDA error when a call fails (the
    /// `Objective` trait has no error path).
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

impl Drop for GpuLeNet {
    /// Makes the device's context current before the buffers, stream and cuBLAS handle are freed:
    /// the simulator may drop an objective on another thread than the one that last used it.
    fn drop(&mut self) {
        let _ = self.dev.inner.ctx.bind_to_thread();
    }
}

impl Objective for GpuLeNet {
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
