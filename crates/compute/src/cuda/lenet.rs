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
//!
//! `GpuLeNet` is the [`Model`] of this network; the driver around it (uploads, chunking, sums,
//! errors) is `runner.rs`'s.

use cudarc::driver::{CudaSlice, CudaView};
use dprox_data::Dataset;
use dprox_objective::{LeNetArch, LeNetLayer, ModelSpec, Objective, Pool, Shape};

use super::kernels::{ACT_IDENTITY, HEAD_CROSS_ENTROPY};
use super::net::act_code;
use super::raw::{self, ConvGeom, PoolGeom};
use super::runner::{Chunk, GpuObjective, Grow, Model, Shared, Want};
use super::{CudaDevice, Fail};
use crate::ComputeError;

/// Samples per chunk: a 28 x 28 sample needs about 200 KB of device scratch, so 1024 of them
/// about 200 MB, while the first convolution's GEMM has 800,000 rows.
const CHUNK: usize = 1024;

/// Kernel size of both convolutions (dprox-objective's `K`).
const K: usize = 5;

/// Device scratch, one buffer per intermediate of the CPU model (same names).
struct Bufs {
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
}

impl Bufs {
    /// Empty buffers for a LeNet with `dense` dense layers.
    fn new(dense: usize) -> Bufs {
        Bufs {
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
        }
    }
}

/// The sizes of one chunk of `rows` samples, shared by its forward and backward passes.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    /// Samples in the chunk.
    rows: usize,
    /// GEMM rows of conv 1 (the chunk's output positions).
    r1: usize,
    /// GEMM rows of conv 2.
    r2: usize,
    /// Patch length of conv 1.
    k1: usize,
    /// Patch length of conv 2.
    k2: usize,
    /// Output channels of conv 1.
    m1: usize,
    /// Output channels of conv 2.
    m2: usize,
    /// Values per sample after pool 2 (the first dense layer's inputs).
    flat: usize,
    /// Values of the whole chunk after pool 1.
    n1: usize,
    /// Index of the last dense layer among the dense layers.
    top: usize,
}

/// The GPU LeNet (see the module doc).
pub(crate) struct GpuLeNet {
    layers: Vec<LeNetLayer>,
    conv1: ConvGeom,
    pool1: PoolGeom,
    conv2: ConvGeom,
    pool2: PoolGeom,
    act: i32,
    bias: bool,
    bufs: Bufs,
}

/// Uploads `data` and sets up the LeNet of `spec`; `cpu` is the CPU LeNet of the same spec.
pub(super) fn build(
    dev: &CudaDevice,
    spec: &ModelSpec,
    data: &Dataset,
    shape: Shape,
    cpu: Box<dyn Objective>,
) -> Result<GpuObjective<GpuLeNet>, ComputeError> {
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
    let dense = layers.len() - 2;
    let net = GpuLeNet {
        conv1,
        pool1,
        conv2,
        pool2,
        act: act_code(arch.activation),
        bias: arch.bias,
        bufs: Bufs::new(dense),
        layers,
    };
    GpuObjective::new(dev, data, arch.dim(), cpu, net)
}

/// W of layer `l` in the parameters `x`.
fn weights<'a>(x: &'a CudaSlice<f32>, l: &LeNetLayer) -> CudaView<'a, f32> {
    x.slice(l.offset..l.offset + l.inputs * l.outputs)
}

/// b of layer `l` in the parameters `x`, when the model has biases.
fn biases<'a>(x: &'a CudaSlice<f32>, l: &LeNetLayer, bias: bool) -> Option<CudaView<'a, f32>> {
    let start = l.offset + l.inputs * l.outputs;
    bias.then(|| x.slice(start..start + l.outputs))
}

/// Where layer `l`'s weight gradient starts and ends (its bias gradient follows).
fn grads(l: &LeNetLayer) -> (usize, usize) {
    (l.offset, l.offset + l.inputs * l.outputs)
}

impl GpuLeNet {
    /// The sizes of a chunk of `rows` samples.
    fn sizes(&self, rows: usize) -> Sizes {
        let (g1, g2, q1) = (&self.conv1, &self.conv2, &self.pool1);
        let (r1, r2, k1, k2) = (rows * g1.positions(), rows * g2.positions(), g1.patch(), g2.patch());
        let (l1, l2, dense) = (self.layers[0], self.layers[1], &self.layers[2..]);
        let (m1, m2, flat, top) = (l1.outputs, l2.outputs, dense[0].inputs, dense.len() - 1);
        let n1 = rows * q1.out_len();
        Sizes { rows, r1, r2, k1, k2, m1, m2, flat, n1, top }
    }

    /// Conv 1 and pool 1, then conv 2 and pool 2 (into p2, one row of `flat` values per sample).
    fn forward_conv(&mut self, ch: &Chunk<'_>, s: Sizes) -> Result<(), Fail> {
        let GpuLeNet { layers, conv1: g1, pool1: q1, conv2: g2, pool2: q2, act, bias, bufs } = self;
        let Bufs { cols1, a1, p1, cols2, a2, p2, .. } = bufs;
        let (stream, k, blas, x, act, bias) = (ch.stream, ch.k, ch.blas, ch.x, *act, *bias);
        let Sizes { rows, r1, r2, k1, k2, m1, m2, flat, n1, .. } = s;
        let (l1, l2) = (layers[0], layers[1]);
        let images = ch.input();

        // Conv 1 and pool 1.
        raw::im2col(stream, k, g1, &images, rows, &mut cols1.get_mut().slice_mut(0..r1 * k1))?;
        let mut out = a1.get_mut().slice_mut(0..r1 * m1);
        raw::forward(blas, &cols1.get().slice(0..r1 * k1), &weights(x, &l1), &mut out, r1, k1, m1)?;
        raw::bias_act(stream, k, &mut out, biases(x, &l1, bias).as_ref(), r1, m1, act)?;
        raw::pool_fwd(stream, k, q1, &a1.get().slice(0..r1 * m1), rows, &mut p1.get_mut().slice_mut(0..n1))?;
        // Conv 2 and pool 2 (into p2, one row of `flat` values per sample).
        raw::im2col(stream, k, g2, &p1.get().slice(0..n1), rows, &mut cols2.get_mut().slice_mut(0..r2 * k2))?;
        let mut out = a2.get_mut().slice_mut(0..r2 * m2);
        raw::forward(blas, &cols2.get().slice(0..r2 * k2), &weights(x, &l2), &mut out, r2, k2, m2)?;
        raw::bias_act(stream, k, &mut out, biases(x, &l2, bias).as_ref(), r2, m2, act)?;
        raw::pool_fwd(
            stream,
            k,
            q2,
            &a2.get().slice(0..r2 * m2),
            rows,
            &mut p2.get_mut().slice_mut(0..rows * flat),
        )?;
        Ok(())
    }

    /// The dense layers (as the MLP), the logits into the top `delta`.
    fn forward_dense(&mut self, ch: &Chunk<'_>, s: Sizes) -> Result<(), Fail> {
        let GpuLeNet { layers, act, bias, bufs, .. } = self;
        let Bufs { p2, acts, delta, .. } = bufs;
        let (stream, k, blas, x, act, bias) = (ch.stream, ch.k, ch.blas, ch.x, *act, *bias);
        let Sizes { rows, flat, top, .. } = s;
        let dense = &layers[2..];
        for (l, layer) in dense.iter().enumerate() {
            let (done, rest) = acts.split_at_mut(l.min(top));
            let out_buf = if l == top { delta[top].get_mut() } else { rest[0].get_mut() };
            let mut out = out_buf.slice_mut(0..rows * layer.outputs);
            let src = if l == 0 {
                p2.get().slice(0..rows * flat)
            } else {
                done[l - 1].get().slice(0..rows * layer.inputs)
            };
            raw::forward(blas, &src, &weights(x, layer), &mut out, rows, layer.inputs, layer.outputs)?;
            let a_code = if l == top { ACT_IDENTITY } else { act };
            raw::bias_act(stream, k, &mut out, biases(x, layer, bias).as_ref(), rows, layer.outputs, a_code)?;
        }
        Ok(())
    }

    /// Backward through the dense layers; the first one's input gradient goes to dp2.
    fn backward_dense(&mut self, ch: &mut Chunk<'_>, s: Sizes) -> Result<(), Fail> {
        let GpuLeNet { layers, act, bias, bufs, .. } = self;
        let Bufs { p2, acts, delta, dp2, ones, .. } = bufs;
        let (stream, k, blas, x, act, bias) = (ch.stream, ch.k, ch.blas, ch.x, *act, *bias);
        let rows = s.rows;
        let grad = &mut *ch.grad;
        for (l, layer) in layers[2..].iter().enumerate().rev() {
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
            raw::input_grad(blas, &d, &weights(x, layer), &mut dp, rows, i, o)?;
            if l > 0 {
                raw::mul_act_deriv(stream, k, &mut dp, &src, rows * i, act)?;
            }
        }
        Ok(())
    }

    /// Backward through pool 2 and conv 2, then pool 1 and conv 1.
    fn backward_conv(&mut self, ch: &mut Chunk<'_>, s: Sizes) -> Result<(), Fail> {
        let GpuLeNet { layers, conv2: g2, pool1: q1, pool2: q2, act, bias, bufs, .. } = self;
        let Bufs { cols1, a1, p1, cols2, a2, p2, dp2, da2, dp1, da1, ones, .. } = bufs;
        let (stream, k, blas, x, act, bias) = (ch.stream, ch.k, ch.blas, ch.x, *act, *bias);
        let Sizes { rows, r1, r2, k1, k2, m1, m2, flat, n1, .. } = s;
        let (l1, l2) = (layers[0], layers[1]);
        let grad = &mut *ch.grad;

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
        raw::input_grad(blas, &d2, &weights(x, &l2), &mut cols2.get_mut().slice_mut(0..r2 * k2), r2, k2, m2)?;
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
}

impl Model for GpuLeNet {
    const CHUNK: usize = CHUNK;

    /// Grows every scratch buffer to a chunk of `rows` samples.
    fn reserve(&mut self, sh: &Shared, rows: usize) -> Result<(), Fail> {
        let (s, b) = (&sh.stream, &mut self.bufs);
        let (r1, r2) = (rows * self.conv1.positions(), rows * self.conv2.positions());
        let (m1, m2) = (self.layers[0].outputs, self.layers[1].outputs);
        let flat = self.layers[2].inputs;
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
            raw::fill(s, sh.kernels(), b.ones.get_mut(), 1.0)?;
        }
        Ok(())
    }

    /// The passes of the module doc, in the CPU's order, over one chunk.
    fn chunk(&mut self, mut ch: Chunk<'_>, want: Want) -> Result<(), Fail> {
        let s = self.sizes(ch.rows);
        self.forward_conv(&ch, s)?;
        self.forward_dense(&ch, s)?;
        let m = self.layers[2 + s.top].outputs;
        let mut z = self.bufs.delta[s.top].get_mut().slice_mut(0..s.rows * m);
        ch.head(HEAD_CROSS_ENTROPY, m, &mut z, &mut self.bufs.row_loss, &mut self.bufs.row_correct)?;
        if want == Want::Loss {
            return Ok(());
        }
        self.backward_dense(&mut ch, s)?;
        self.backward_conv(&mut ch, s)
    }

    /// The LeNet always classifies.
    fn classifies(&self) -> bool {
        true
    }
}
