//! A LeNet-5-like convolutional network with a softmax cross-entropy output.
//!
//! The network, on c x h x w images (MNIST: 1 x 28 x 28) with the default widths:
//!
//! ```text
//! conv 5x5, pad 2, c -> 6 channels   h x w         act   pool 2x2   h/2 x w/2
//! conv 5x5, pad 0, 6 -> 16 channels  h/2-4 x w/2-4 act   pool 2x2   (h/2-4)/2 x (w/2-4)/2
//! dense -> 120, act; dense -> 84, act; dense -> classes; softmax cross-entropy
//! ```
//!
//! For 28 x 28 that is 28 -> 14 -> 10 -> 5, so the first dense layer sees 5 * 5 * 16 = 400
//! values, and the model has 61,706 parameters with biases.
//!
//! # Parameter layout
//!
//! One flat vector; layer by layer, in the order of [`LeNetArch::layers`] (conv 1, conv 2, the
//! dense hidden layers, the output layer), each layer's weights W (outputs x inputs, row-major)
//! followed by its bias b (outputs; absent without bias):
//!
//! - conv 1: W[o][ky][kx][ci], inputs = 5 * 5 * c (the image channel ci innermost);
//! - conv 2: W[o][ky][kx][ci], inputs = 5 * 5 * c1;
//! - first dense layer: W[o][(y * w' + x) * c2 + ci], where (y, x, ci) runs over the second
//!   pooled map (w' its width): the map is flattened in HWC order, channel innermost;
//! - the other dense layers: W[o][i] as in an [`Mlp`](crate::Mlp).
//!
//! The input image of each sample is read in CHW order (channel planes), as files store it.
//! Every layer is an affine map applied with one GEMM per chunk of samples (a convolution after
//! im2col, see `conv.rs`), so a cuBLAS port has the same shapes.

use std::sync::Arc;

use dprox_data::Dataset;
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

use crate::batch::{
    Gather, Input, Sel, affine_backward, affine_forward, batch_len, check_data, check_labels, chunk,
};
use crate::conv::{Conv, InPlace, MapLayout, Pooling, col2im, im2col};
use crate::kernels::{self, Scratch, Stored};
use crate::softmax::{argmax, cross_entropy};
use crate::spec::classes_of;
use crate::{Activation, Batch, ModelSpec, Objective, ObjectiveError, Pool, Shape};

/// Samples per chunk. A 28 x 28 sample needs about 200 KB of scratch, so a chunk of 16 keeps a
/// lane's near 3 MB while the first convolution still has 12,544 rows; a minibatch of 32 makes
/// two chunks, which two cores compute at once.
const CHUNK: usize = 16;

/// Chunks in flight at once. They run on the rayon pool (`RAYON_NUM_THREADS`), each into a
/// partial gradient of its own, and the partial gradients and losses are added in chunk order
/// afterwards, so the result is the same bits on any number of threads.
const LANES: usize = 4;

/// Kernel size of both convolutions.
const K: usize = 5;

/// Everything that fixes a LeNet's shape and parameter layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeNetArch {
    /// The input image, `[channels, height, width]`.
    pub image: [usize; 3],
    /// Output channels of the two convolutions.
    pub channels: [usize; 2],
    /// Widths of the dense hidden layers.
    pub hidden: Vec<usize>,
    /// Number of classes (outputs).
    pub classes: usize,
    /// Nonlinearity after every convolution and hidden dense layer.
    pub activation: Activation,
    /// The pooling after each convolution.
    pub pool: Pool,
    /// Whether every layer has a bias.
    pub bias: bool,
}

/// Where one layer's parameters sit in the flat vector: W (outputs x inputs, row-major) at
/// `offset`, then b (outputs) when the model has biases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeNetLayer {
    /// Offset of W in the parameter vector.
    pub offset: usize,
    /// Output units (channels of a convolution).
    pub outputs: usize,
    /// Inputs of each unit (5 * 5 * input channels for a convolution).
    pub inputs: usize,
}

impl LeNetLayer {
    fn weights(&self) -> usize {
        // Saturating: an absurd config is refused by its size, not by an overflow.
        self.inputs.saturating_mul(self.outputs)
    }
}

/// The image shape guessed from the number of features: a square of one or three channels.
fn infer_image(features: usize) -> Option<[usize; 3]> {
    [1, 3].into_iter().find_map(|c| {
        let s = (features / c).isqrt();
        (features.is_multiple_of(c) && s * s * c == features).then_some([c, s, s])
    })
}

impl LeNetArch {
    /// The LeNet of `spec` on data of `shape`: the image shape given or inferred, `[6, 16]`
    /// channels and `[120, 84]` dense widths unless set. Fails when the spec does not fit.
    pub fn from_spec(spec: &ModelSpec, shape: Shape) -> Result<LeNetArch, ObjectiveError> {
        let classes = classes_of("a lenet", shape)?;
        let image = match spec.image {
            Some(image) => image,
            None => infer_image(shape.features)
                .ok_or(ObjectiveError::UnknownImage { features: shape.features })?,
        };
        let channels = match spec.channels[..] {
            [] => [6, 16],
            [a, b] => [a, b],
            _ => return Err(ObjectiveError::ConvChannels { channels: spec.channels.clone() }),
        };
        let hidden = if spec.hidden.is_empty() { vec![120, 84] } else { spec.hidden.clone() };
        let arch = LeNetArch {
            image,
            channels,
            hidden,
            classes,
            activation: spec.activation,
            pool: spec.pool,
            bias: spec.bias,
        };
        arch.check(shape.features)?;
        Ok(arch)
    }

    /// Checks that the network fits images of `features` values.
    pub fn check(&self, features: usize) -> Result<(), ObjectiveError> {
        if self.classes < 2 {
            return Err(ObjectiveError::TooFewClasses { model: "a lenet", classes: self.classes });
        }
        let [c, h, w] = self.image;
        let pixels = c.saturating_mul(h).saturating_mul(w);
        if pixels != features || pixels == 0 {
            return Err(ObjectiveError::ImageSize { image: self.image, pixels, features });
        }
        if h < 12 || w < 12 {
            return Err(ObjectiveError::ImageTooSmall { height: h, width: w });
        }
        if self.channels.contains(&0) {
            return Err(ObjectiveError::ConvChannels { channels: self.channels.to_vec() });
        }
        if let Some(layer) = self.hidden.iter().position(|&h| h == 0) {
            return Err(ObjectiveError::ZeroWidth { model: "lenet", layer });
        }
        Ok(())
    }

    /// The convolutions and poolings, in network order.
    fn stages(&self) -> (Conv, Pooling, Conv, Pooling) {
        let [c, h, w] = self.image;
        let [c1, c2] = self.channels;
        let conv1 = Conv { cin: c, h, w, k: K, pad: 2, layout: MapLayout::Chw };
        let pool1 = Pooling { kind: self.pool, h: conv1.hout(), w: conv1.wout(), c: c1 };
        let conv2 = Conv { cin: c1, h: pool1.hout(), w: pool1.wout(), k: K, pad: 0, layout: MapLayout::Hwc };
        let pool2 = Pooling { kind: self.pool, h: conv2.hout(), w: conv2.wout(), c: c2 };
        (conv1, pool1, conv2, pool2)
    }

    /// Every layer's place in the parameter vector: conv 1, conv 2, the dense hidden layers and
    /// the output layer.
    pub fn layers(&self) -> Vec<LeNetLayer> {
        let (conv1, _, conv2, pool2) = self.stages();
        let [c1, c2] = self.channels;
        let flat = pool2.hout().saturating_mul(pool2.wout()).saturating_mul(c2);
        let shapes = [(c1, conv1.patch()), (c2, conv2.patch())].into_iter().chain(
            self.hidden
                .iter()
                .copied()
                .chain([self.classes])
                .scan(flat, |inputs, outputs| Some((outputs, std::mem::replace(inputs, outputs)))),
        );
        let mut offset = 0;
        shapes
            .map(|(outputs, inputs)| {
                let layer = LeNetLayer { offset, outputs, inputs };
                offset = offset.saturating_add(layer.weights()).saturating_add(if self.bias {
                    outputs
                } else {
                    0
                });
                layer
            })
            .collect()
    }

    /// Number of parameters.
    pub fn dim(&self) -> usize {
        let last = *self.layers().last().expect("a lenet has layers");
        last.offset.saturating_add(last.weights()).saturating_add(if self.bias { last.outputs } else { 0 })
    }
}

/// Grow-only scratch, one flat buffer per intermediate (see [`LeNet::eval`] for their shapes).
#[derive(Debug, Default)]
struct Buffers {
    /// The first convolution's input maps with the tables that read its patches in place.
    in1: InPlace,
    a1: Vec<f32>,
    p1: Vec<f32>,
    /// The second convolution's patch matrix, then its gradient (dcols).
    cols2: Vec<f32>,
    a2: Vec<f32>,
    p2: Vec<f32>,
    /// Which entry of each window the max pools took.
    arg1: Vec<u8>,
    arg2: Vec<u8>,
    /// Outputs of the dense hidden layers.
    acts: Vec<Vec<f32>>,
    /// dLoss/d(pre-activation) of the dense layers; the last one first holds the logits.
    delta: Vec<Vec<f32>>,
    dp2: Vec<f32>,
    da2: Vec<f32>,
    dp1: Vec<f32>,
    da1: Vec<f32>,
    /// The convolution kernels' scratch.
    kern: Scratch,
    /// One input map with its zero border (im2col).
    padded: Vec<f32>,
}

/// The first `len` values of a grow-only buffer; it reallocates only to grow.
fn grow<T: Copy + Default>(v: &mut Vec<T>, len: usize) -> &mut [T] {
    if v.len() < len {
        v.resize(len, T::default());
    }
    &mut v[..len]
}

/// The leading rows x cols of `v` as a matrix.
fn mat(v: &[f32], rows: usize, cols: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((rows, cols), &v[..rows * cols]).expect("buffer holds the matrix")
}

/// The leading rows x cols of `v` as a mutable matrix, grown to fit.
fn mat_mut(v: &mut Vec<f32>, rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols), grow(v, rows * cols)).expect("buffer holds the matrix")
}

/// Multiplies each gradient by the activation's derivative, read off the layer's outputs.
fn times_derivative(act: Activation, d: &mut [f32], outputs: &[f32]) {
    for (dv, &a) in d.iter_mut().zip(outputs) {
        *dv *= act.derivative_from_output(a);
    }
}

/// A LeNet-5-like convolutional network (see the module docs for the architecture and the
/// parameter layout). Predicts the argmax of the logits (ties to the lowest class). Dense and
/// sparse features both work: sparse images are densified a chunk at a time.
#[derive(Debug)]
pub struct LeNet {
    data: Arc<Dataset>,
    arch: LeNetArch,
    layers: Vec<LeNetLayer>,
    stages: (Conv, Pooling, Conv, Pooling),
    dim: usize,
    /// One scratch set per chunk in flight.
    lanes: Vec<Lane>,
}

impl LeNet {
    /// The network `arch` on `data`, whose rows must be images of `arch.image` and whose targets
    /// must be class indices in `0..arch.classes`.
    pub fn new(data: Arc<Dataset>, arch: LeNetArch) -> Result<Self, ObjectiveError> {
        arch.check(data.num_features())?;
        check_data(&data)?;
        check_labels(&data, arch.classes)?;
        let hidden = arch.hidden.len();
        Ok(LeNet {
            data,
            layers: arch.layers(),
            stages: arch.stages(),
            dim: arch.dim(),
            lanes: (0..LANES)
                .map(|_| Lane {
                    bufs: Buffers {
                        acts: vec![Vec::new(); hidden],
                        delta: vec![Vec::new(); hidden + 1],
                        ..Buffers::default()
                    },
                    ..Lane::default()
                })
                .collect(),
            arch,
        })
    }

    /// The architecture.
    pub fn arch(&self) -> &LeNetArch {
        &self.arch
    }

    /// Mean loss over `batch`; the gradient goes to `grad` when one is given. With `correct`,
    /// counts the samples whose argmax equals the label.
    ///
    /// Per chunk of B samples, with P1, P2 the output positions of the convolutions and Q1, Q2
    /// those of the poolings: `in1` (the B input maps with their borders, read as the
    /// B*P1 x 25c patch matrix in place), `a1` (B*P1 x c1), `p1` (B*Q1 x c1), `cols2` (B*P2 x
    /// 25c1, reused for its gradient), `a2` (B*P2 x c2), `p2` (B x Q2*c2), then the dense layers;
    /// `dX` is the gradient wrt `X`.
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
        let LeNet { data, arch, layers, stages, lanes, .. } = self;
        let n = data.len();
        let total = batch_len(batch, n);
        if total == 0 {
            return 0.0;
        }
        let net = Net::new(x, arch, layers, *stages);
        let scale = 1.0 / total as f64;
        let (mut sum, chunks) = (0.0f64, total.div_ceil(CHUNK));
        let want_grad = grad.is_some();
        for first in (0..chunks).step_by(LANES) {
            let wave = &mut lanes[..(chunks - first).min(LANES)];
            let run = |(l, lane): (usize, &mut Lane)| {
                lane.run(&net, data, chunk(batch, n, CHUNK, first + l), scale, want_grad);
            };
            // One chunk, or a pool of one thread (a launched node's share of the cores): on this
            // thread, without handing the work to the pool's and waiting on it.
            if wave.len() == 1 || rayon::current_num_threads() == 1 {
                wave.iter_mut().enumerate().for_each(run);
            } else {
                wave.par_iter_mut().enumerate().for_each(run);
            }
            // In chunk order, whatever ran where: the sums do not depend on the threads.
            for lane in wave.iter() {
                sum += lane.sum;
                if let Some(c) = correct.as_deref_mut() {
                    *c += lane.correct;
                }
                if let Some(g) = grad.as_deref_mut() {
                    g.iter_mut().zip(&lane.part).for_each(|(g, &p)| *g += p);
                }
            }
        }
        sum / total as f64
    }
}

/// The scratch of one chunk in flight: its gathered input, activations and partial gradient.
#[derive(Debug, Default)]
struct Lane {
    gather: Gather,
    bufs: Buffers,
    /// The chunk's gradient (the full parameter vector's length).
    part: Vec<f32>,
    /// The chunk's share of the mean loss, summed sample by sample.
    sum: f64,
    /// Its right predictions.
    correct: usize,
}

impl Lane {
    /// Forward (and with `grad`, backward) through the network for the samples `sel`.
    fn run(&mut self, net: &Net<'_>, data: &Dataset, sel: Sel<'_>, scale: f64, grad: bool) {
        let Lane { gather, bufs, part, sum, correct } = self;
        let c = net.chunk(sel.len());
        let input = gather.dense(data, sel);
        // Forward: conv 1, pool 1, conv 2, pool 2 (into p2, one row per sample), dense.
        net.conv_forward(&c, input, bufs);
        net.dense_forward(&c, bufs);
        // The head turns the logits into scale * dLoss/dlogits in place.
        let classes = net.dense[net.top].outputs;
        let logits = &mut bufs.delta[net.top][..c.b * classes];
        (*sum, *correct) = (0.0, 0);
        head(logits, classes, data, sel, Some(correct), scale, sum);
        if grad {
            let g = grow(part, net.x.len());
            g.fill(0.0);
            net.dense_backward(&c, bufs, g);
            net.conv_backward(&c, bufs, g);
        }
    }
}

/// One evaluation's view of the network: the parameter vector `x` read through the layer
/// layout, with the stages and the widths every chunk uses. Built once per [`LeNet::eval`] call
/// (plain borrows and copies, nothing allocated).
struct Net<'a> {
    x: &'a [f32],
    act: Activation,
    bias: bool,
    stages: (Conv, Pooling, Conv, Pooling),
    l1: LeNetLayer,
    l2: LeNetLayer,
    /// The dense layers, the output layer last (at `top`).
    dense: &'a [LeNetLayer],
    top: usize,
    /// Patch size (GEMM inner dimension) of the second convolution.
    k2: usize,
    /// Output channels of the two convolutions.
    m1: usize,
    m2: usize,
    /// Inputs of the first dense layer: the second pooled map, flattened.
    flat: usize,
}

/// The row counts of one chunk of `b` samples: `r1`, `r2` the rows of the convolutions' GEMMs
/// (samples x output positions), `q1` those of the first pooled map.
struct Chunk {
    b: usize,
    r1: usize,
    q1: usize,
    r2: usize,
}

impl<'a> Net<'a> {
    /// Splits `layers` into the two convolutions and the dense layers, and reads off the widths
    /// every chunk uses, once per call rather than once per chunk.
    fn new(
        x: &'a [f32],
        arch: &LeNetArch,
        layers: &'a [LeNetLayer],
        stages: (Conv, Pooling, Conv, Pooling),
    ) -> Self {
        let (_, _, conv2, _) = stages;
        let (l1, l2, dense) = (layers[0], layers[1], &layers[2..]);
        Net {
            x,
            act: arch.activation,
            bias: arch.bias,
            stages,
            l1,
            l2,
            dense,
            top: dense.len() - 1,
            k2: conv2.patch(),
            m1: l1.outputs,
            m2: l2.outputs,
            flat: dense[0].inputs,
        }
    }

    /// The row counts of a chunk of `b` samples.
    fn chunk(&self, b: usize) -> Chunk {
        let (conv1, pool1, conv2, _) = self.stages;
        Chunk { b, r1: b * conv1.positions(), q1: b * pool1.hout() * pool1.wout(), r2: b * conv2.positions() }
    }

    /// W and b of `l` in `x` (b only with a bias).
    #[inline]
    fn params(&self, l: &LeNetLayer) -> (&'a [f32], Option<&'a [f32]>) {
        let (w, rest) = self.x[l.offset..].split_at(l.weights());
        (w, self.bias.then(|| &rest[..l.outputs]))
    }

    /// Forward through the convolutional part: conv 1, pool 1, conv 2, pool 2 (into `p2`, one
    /// row per sample, the input of the dense layers).
    fn conv_forward(&self, c: &Chunk, input: &[f32], bufs: &mut Buffers) {
        let Buffers { in1, a1, p1, cols2, a2, p2, arg1, arg2, kern, padded, .. } = bufs;
        let (conv1, pool1, conv2, pool2) = self.stages;
        let (act, &Chunk { b, r1, q1, r2 }) = (self.act, c);
        let (k2, m1, m2) = (self.k2, self.m1, self.m2);
        in1.fill(&conv1, input, b);
        let (w, bb) = self.params(&self.l1);
        kernels::forward(in1.patches(), w, bb, m1, grow(a1, r1 * m1), kern);
        a1[..r1 * m1].iter_mut().for_each(|v| *v = act.apply(*v));
        pool1.forward(&a1[..r1 * m1], b, grow(p1, q1 * m1), grow(arg1, q1 * m1));
        im2col(&conv2, &p1[..q1 * m1], b, grow(cols2, r2 * k2), padded);
        let (w, bb) = self.params(&self.l2);
        kernels::forward(Stored::new(&cols2[..r2 * k2], k2), w, bb, m2, grow(a2, r2 * m2), kern);
        a2[..r2 * m2].iter_mut().for_each(|v| *v = act.apply(*v));
        pool2.forward(&a2[..r2 * m2], b, grow(p2, b * self.flat), grow(arg2, b * self.flat));
    }

    /// Forward through the dense layers: the hidden ones into `acts`, the logits into the top
    /// `delta` (where the head turns them into the output gradient in place).
    fn dense_forward(&self, c: &Chunk, bufs: &mut Buffers) {
        let Buffers { p2, acts, delta, .. } = bufs;
        let (act, b, top, flat) = (self.act, c.b, self.top, self.flat);
        for (l, layer) in self.dense.iter().enumerate() {
            let (w, bb) = self.params(layer);
            let (done, rest) = acts.split_at_mut(l);
            let input = if l == 0 { mat(p2, b, flat) } else { mat(&done[l - 1], b, layer.inputs) };
            let out = if l == top { &mut delta[top] } else { &mut rest[0] };
            affine_forward(&Input::Dense(input), w, bb, &mut mat_mut(out, b, layer.outputs));
            if l < top {
                out[..b * layer.outputs].iter_mut().for_each(|v| *v = act.apply(*v));
            }
        }
    }

    /// Backward through the dense layers, top first, adding their gradients to `g`; the first
    /// one's input gradient goes to dp2 (pooled values carry no activation of their own).
    fn dense_backward(&self, c: &Chunk, bufs: &mut Buffers, g: &mut [f32]) {
        let Buffers { p2, acts, delta, dp2, .. } = bufs;
        let (act, b, flat) = (self.act, c.b, self.flat);
        for (l, layer) in self.dense.iter().enumerate().rev() {
            let (lo, hi) = delta.split_at_mut(l);
            let d = mat(&hi[0], b, layer.outputs);
            let input = if l == 0 { mat(p2, b, flat) } else { mat(&acts[l - 1], b, layer.inputs) };
            let (gw, rest) = g[layer.offset..].split_at_mut(layer.weights());
            affine_backward(&Input::Dense(input), d, gw, self.bias.then(|| &mut rest[..layer.outputs]));
            let (w, _) = self.params(layer);
            let w = ArrayView2::from_shape((layer.outputs, layer.inputs), w).expect("layer shape");
            let dst = if l == 0 { &mut *dp2 } else { &mut lo[l - 1] };
            general_mat_mul(1.0, &d, &w, 0.0, &mut mat_mut(dst, b, layer.inputs));
            if l > 0 {
                times_derivative(act, &mut lo[l - 1][..b * layer.inputs], &acts[l - 1][..b * layer.inputs]);
            }
        }
    }

    /// Backward through the convolutional part from `dp2`, adding the weight (and bias)
    /// gradients of both convolutions to `g`.
    fn conv_backward(&self, c: &Chunk, bufs: &mut Buffers, g: &mut [f32]) {
        let Buffers { in1, a1, cols2, a2, arg1, arg2, dp2, da2, dp1, da1, kern, .. } = bufs;
        let (_, pool1, conv2, pool2) = self.stages;
        let (act, bias, &Chunk { b, r1, q1, r2 }) = (self.act, self.bias, c);
        let (k2, m1, m2, flat) = (self.k2, self.m1, self.m2, self.flat);
        let (l1, l2) = (self.l1, self.l2);

        // Pool 2 and conv 2: the weight gradient, then dcols2 = da2 W2 (into cols2) and col2im.
        pool2.backward(&arg2[..b * flat], &dp2[..b * flat], b, grow(da2, r2 * m2));
        times_derivative(act, &mut da2[..r2 * m2], &a2[..r2 * m2]);
        let (gw, rest) = g[l2.offset..].split_at_mut(l2.weights());
        let d2 = &da2[..r2 * m2];
        let cols = Stored::new(&cols2[..r2 * k2], k2);
        kernels::weight_grad(cols, d2, m2, gw, bias.then(|| &mut rest[..m2]), kern);
        let (w, _) = self.params(&l2);
        kernels::input_grad(d2, m2, w, k2, &mut cols2[..r2 * k2], kern);
        col2im(&conv2, &cols2[..r2 * k2], b, grow(dp1, q1 * m1));

        // Pool 1 and conv 1: only the weight gradient (the input needs none).
        pool1.backward(&arg1[..q1 * m1], &dp1[..q1 * m1], b, grow(da1, r1 * m1));
        times_derivative(act, &mut da1[..r1 * m1], &a1[..r1 * m1]);
        let (gw, rest) = g[l1.offset..].split_at_mut(l1.weights());
        kernels::weight_grad(in1.patches(), &da1[..r1 * m1], m1, gw, bias.then(|| &mut rest[..m1]), kern);
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

impl Objective for LeNet {
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

    /// Multiply-adds of every layer (a convolution's: output positions x channels x patch), 2
    /// flops each forward and 4 backward (weight and input gradients), except the first
    /// convolution, which needs no input gradient (2 backward). Biases, activations, pooling and
    /// im2col are not counted.
    fn flops_per_sample(&self) -> f64 {
        let (conv1, _, conv2, _) = self.stages;
        let macs = |l: usize, positions: usize| (positions * self.layers[l].weights()) as f64;
        let first = macs(0, conv1.positions());
        let rest = macs(1, conv2.positions()) + (2..self.layers.len()).map(|l| macs(l, 1)).sum::<f64>();
        4.0 * first + 6.0 * rest
    }

    /// Glorot-uniform weights for tanh and sigmoid, He-uniform for relu, zero biases. A
    /// convolution's fan-in is its patch (25 x input channels), its fan-out 25 x output
    /// channels. Layer `l` (in [`LeNetArch::layers`] order) draws from
    /// `dprox_rng::stream(seed, &[l])`.
    fn init(&self, seed: u64, x: &mut [f32]) {
        assert_eq!(x.len(), self.dim, "parameter vector has the wrong length");
        for (l, layer) in self.layers.iter().enumerate() {
            let fan_out = if l < 2 { layer.outputs * K * K } else { layer.outputs };
            let fan = match self.arch.activation {
                Activation::Relu => layer.inputs,
                Activation::Tanh | Activation::Sigmoid => layer.inputs + fan_out,
            };
            let a = (6.0 / fan as f64).sqrt() as f32;
            let mut rng = dprox_rng::stream(seed, &[l as u64]);
            let (w, rest) = x[layer.offset..].split_at_mut(layer.weights());
            for v in w {
                *v = (rng.uniform_f32() * 2.0 - 1.0) * a;
            }
            if self.arch.bias {
                rest[..layer.outputs].fill(0.0);
            }
        }
    }
}
