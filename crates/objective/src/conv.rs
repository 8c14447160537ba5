//! The kernels of [`LeNet`](crate::LeNet): convolution as im2col + GEMM, its adjoint col2im, and
//! 2x2 pooling. Plain sequential loops in a fixed order (deterministic), over flat slices, so that
//! a GPU port can mirror them one kernel each with the GEMMs on cuBLAS.
//!
//! # Layouts
//!
//! Feature maps inside the network are NHWC: sample, then row, then column, then channel. One
//! sample's map is a row-major (h*w) x c matrix, and a chunk of B samples is one (B*h*w) x c
//! matrix, which is what a GEMM writes. The network's input is the flat image of each sample in
//! CHW order (channel planes, as data files store images); im2col reads either through strides.
//!
//! `im2col` writes, for each output position (b, y, x) in that order, one row of k*k*cin values:
//! the input patch under the kernel, ordered (ky, kx, ci), with zeros where the patch reaches
//! into the padding. With the kernel W stored as a row-major cout x (k*k*cin) matrix in the same
//! (ky, kx, ci) order, the convolution of the whole chunk is one GEMM, `out = cols W^T + b`: the
//! same affine map as a dense layer, giving NHWC output. Backward, `dW = dout^T cols` and
//! `dcols = dout W`, and `col2im` (the adjoint of im2col) adds `dcols` back onto the input map.

use crate::Pool;
use crate::kernels::Gathered;

/// Where the channels sit in a sample's feature map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MapLayout {
    /// Channel planes: the network's input images.
    Chw,
    /// Channels innermost: every map inside the network.
    Hwc,
}

/// A stride-1 k x k convolution of a cin x h x w map, zero-padded by `pad` on every side.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Conv {
    /// Input channels.
    pub cin: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel size.
    pub k: usize,
    /// Zero padding on each side.
    pub pad: usize,
    /// How the input map is stored.
    pub layout: MapLayout,
}

impl Conv {
    /// Output height.
    pub fn hout(&self) -> usize {
        self.h + 2 * self.pad + 1 - self.k
    }

    /// Output width.
    pub fn wout(&self) -> usize {
        self.w + 2 * self.pad + 1 - self.k
    }

    /// Output positions per sample: the rows of `cols` per sample.
    pub fn positions(&self) -> usize {
        self.hout() * self.wout()
    }

    /// Values in one patch: the columns of `cols`, and the inputs of each output unit.
    pub fn patch(&self) -> usize {
        self.k * self.k * self.cin
    }

    /// Values of one sample's input map.
    fn map_len(&self) -> usize {
        self.cin * self.h * self.w
    }

    /// (channel, row, column) strides of the input map.
    fn strides(&self) -> (usize, usize, usize) {
        match self.layout {
            MapLayout::Chw => (self.h * self.w, self.w, 1),
            MapLayout::Hwc => (1, self.w * self.cin, self.cin),
        }
    }

    /// The input row of kernel row `ky` at output row `oy`, if inside the image (and likewise
    /// for columns with `w`).
    #[inline]
    fn source(&self, o: usize, kk: usize, size: usize) -> Option<usize> {
        (o + kk).checked_sub(self.pad).filter(|&i| i < size)
    }
}

/// Runs of input values that one kernel row covers, for output column `ox`: the kernel columns
/// `kx0..kx1` fall inside the image, starting at input column `ix0`.
#[inline]
fn run(conv: &Conv, ox: usize) -> (usize, usize, usize) {
    let kx0 = conv.pad.saturating_sub(ox);
    let kx1 = conv.k.min(conv.w + conv.pad - ox);
    (kx0, kx1, ox + kx0 - conv.pad)
}

/// Copies a kernel row's run of input values. The runs are short (5 values per channel), where
/// a call to `memmove` costs more than the copy: the usual lengths get an inline copy.
#[inline]
fn copy_run(dst: &mut [f32], src: &[f32]) {
    match dst.len() {
        5 => copy_n::<5>(dst, src),
        15 => copy_n::<15>(dst, src),
        30 => copy_n::<30>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}

#[inline(always)]
fn copy_n<const N: usize>(dst: &mut [f32], src: &[f32]) {
    let d: &mut [f32; N] = dst.try_into().expect("run of N values");
    *d = *<&[f32; N]>::try_from(src).expect("run of N values");
}

/// Writes the (batch * positions) x patch matrix of the patches of `batch` input maps (the
/// second convolution's: there the matrix is 6 copies of the input, and reading it stored
/// measured as fast as reading it in place, see [`InPlace`]). Each map
/// is first copied, channels innermost, into `padded` with its zero border, so that every
/// kernel row of every patch is one unconditional run of k * cin values.
pub(crate) fn im2col(conv: &Conv, input: &[f32], batch: usize, cols: &mut [f32], padded: &mut Vec<f32>) {
    let (map, patch, cin, k) = (conv.map_len(), conv.patch(), conv.cin, conv.k);
    let (hp, wp) = (conv.h + 2 * conv.pad, conv.w + 2 * conv.pad);
    debug_assert_eq!(input.len(), batch * map);
    debug_assert_eq!(cols.len(), batch * conv.positions() * patch);
    if padded.len() < hp * wp * cin {
        padded.resize(hp * wp * cin, 0.0);
    }
    let pm = &mut padded[..hp * wp * cin];
    pm.fill(0.0);
    let (run, line) = (k * cin, wp * cin);
    let mut rows = cols.chunks_exact_mut(patch);
    for img in input.chunks_exact(map) {
        copy_inside_border(conv, img, pm);
        for oy in 0..conv.hout() {
            for ox in 0..conv.wout() {
                let row = rows.next().expect("cols has a row per position");
                for (ky, dst) in row.chunks_exact_mut(run).enumerate() {
                    let base = (oy + ky) * line + ox * cin;
                    copy_run(dst, &pm[base..base + run]);
                }
            }
        }
    }
}

/// Copies one input map `img` into `pm`, channels innermost, inside a zero border of `pad`
/// (which `pm` already holds).
fn copy_inside_border(conv: &Conv, img: &[f32], pm: &mut [f32]) {
    let (cin, line) = (conv.cin, (conv.w + 2 * conv.pad) * conv.cin);
    let (sc, sy, sx) = conv.strides();
    for y in 0..conv.h {
        let dst = &mut pm[(y + conv.pad) * line + conv.pad * cin..][..conv.w * cin];
        if sx == cin && (sc == 1 || cin == 1) {
            // A row of the map lies in one run (channels innermost, or a single plane).
            dst.copy_from_slice(&img[y * sy..][..conv.w * cin]);
            continue;
        }
        for (x, px) in dst.chunks_exact_mut(cin).enumerate() {
            for (c, d) in px.iter_mut().enumerate() {
                *d = img[y * sy + x * sx + c * sc];
            }
        }
    }
}

/// The patch matrix of [`im2col`] without writing it: the input maps copied once, each inside
/// its zero border, channels innermost, and two tables that read them in place, `rows` (where
/// each output position's patch starts) and `offs` (where each patch value lies from there), so
/// that `maps[rows[r] + offs[kk]]` is `cols[r][kk]` (see `kernels::Gathered`). LeNet's first
/// convolution has 25 values per position, so its matrix would be 25 copies of its input: not
/// writing it took 13% off a simulated LeNet run. Grow-only: refilling reallocates nothing.
#[derive(Debug, Default)]
pub(crate) struct InPlace {
    maps: Vec<f32>,
    rows: Vec<u32>,
    offs: Vec<u32>,
}

impl InPlace {
    /// Copies the `batch` input maps of `conv` and writes the tables that read their patches.
    pub(crate) fn fill(&mut self, conv: &Conv, input: &[f32], batch: usize) {
        let InPlace { maps, rows, offs } = self;
        let (map, cin, k) = (conv.map_len(), conv.cin, conv.k);
        let (hp, wp) = (conv.h + 2 * conv.pad, conv.w + 2 * conv.pad);
        let (plen, line) = (hp * wp * cin, wp * cin);
        debug_assert_eq!(input.len(), batch * map);
        maps.clear();
        maps.resize(batch * plen, 0.0);
        for (img, pm) in input.chunks_exact(map).zip(maps.chunks_exact_mut(plen)) {
            copy_inside_border(conv, img, pm);
        }
        let index = |v: usize| u32::try_from(v).expect("a chunk's maps have fewer than 2^32 values");
        rows.clear();
        for b in 0..batch {
            for oy in 0..conv.hout() {
                rows.extend((0..conv.wout()).map(|ox| index(b * plen + oy * line + ox * cin)));
            }
        }
        offs.clear();
        for ky in 0..k {
            offs.extend((0..k * cin).map(|j| index(ky * line + j)));
        }
    }

    /// The patch matrix of the last [`InPlace::fill`].
    pub(crate) fn patches(&self) -> Gathered<'_> {
        Gathered::new(&self.maps, &self.rows, &self.offs)
    }
}

/// The adjoint of [`im2col`]: overwrites `input` (batch maps) with the sum, over every patch
/// that covers each input value, of the matching entry of `cols`. Padding entries are dropped.
pub(crate) fn col2im(conv: &Conv, cols: &[f32], batch: usize, input: &mut [f32]) {
    let (map, patch, cin) = (conv.map_len(), conv.patch(), conv.cin);
    let (sc, sy, sx) = conv.strides();
    let runs = sc == 1 || cin == 1;
    debug_assert_eq!(input.len(), batch * map);
    debug_assert_eq!(cols.len(), batch * conv.positions() * patch);
    input.fill(0.0);
    let mut rows = cols.chunks_exact(patch);
    for img in input.chunks_exact_mut(map) {
        for oy in 0..conv.hout() {
            for ox in 0..conv.wout() {
                let row = rows.next().expect("cols has a row per position");
                let (kx0, kx1, ix0) = run(conv, ox);
                for (ky, src) in row.chunks_exact(conv.k * cin).enumerate() {
                    let Some(iy) = conv.source(oy, ky, conv.h) else { continue };
                    let base = iy * sy + ix0 * sx;
                    let src = &src[kx0 * cin..kx1 * cin];
                    if runs {
                        for (d, &v) in img[base..base + src.len()].iter_mut().zip(src) {
                            *d += v;
                        }
                    } else {
                        for (j, px) in src.chunks_exact(cin).enumerate() {
                            for (c, &v) in px.iter().enumerate() {
                                img[base + j * sx + c * sc] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A 2x2, stride-2 pooling of NHWC maps of h x w x c; an odd last row or column is dropped.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pooling {
    /// Max or average.
    pub kind: Pool,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Channels.
    pub c: usize,
}

impl Pooling {
    /// Output height.
    pub fn hout(&self) -> usize {
        self.h / 2
    }

    /// Output width.
    pub fn wout(&self) -> usize {
        self.w / 2
    }

    /// Offsets, within a sample's input map, of the top-left input of output (y, x), and of the
    /// bottom-left one (the right ones follow after `c` values).
    #[inline]
    fn window(&self, y: usize, x: usize) -> (usize, usize) {
        let top = (2 * y * self.w + 2 * x) * self.c;
        (top, top + self.w * self.c)
    }

    /// Writes the pooled maps of `batch` samples into `out`. A max pool takes the first largest
    /// of the window in the order top left, top right, bottom left, bottom right, and writes
    /// which (0 to 3, in that order) into `arg`, for [`Pooling::backward`].
    pub fn forward(&self, input: &[f32], batch: usize, out: &mut [f32], arg: &mut [u8]) {
        let (c, map, pooled) = (self.c, self.h * self.w * self.c, self.hout() * self.wout() * self.c);
        debug_assert_eq!(input.len(), batch * map);
        debug_assert_eq!(out.len(), batch * pooled);
        debug_assert_eq!(arg.len(), batch * pooled);
        for ((img, dst), args) in
            input.chunks_exact(map).zip(out.chunks_exact_mut(pooled)).zip(arg.chunks_exact_mut(pooled))
        {
            let mut dst = dst.chunks_exact_mut(c).zip(args.chunks_exact_mut(c));
            for y in 0..self.hout() {
                for x in 0..self.wout() {
                    let (o, which) = dst.next().expect("one output per position");
                    let (t, b) = self.window(y, x);
                    let (tl, tr) = img[t..t + 2 * c].split_at(c);
                    let (bl, br) = img[b..b + 2 * c].split_at(c);
                    let quads = o.iter_mut().zip(tl).zip(tr).zip(bl).zip(br);
                    match self.kind {
                        Pool::Max => {
                            for (((((v, &a), &b), &c), &d), k) in quads.zip(which.iter_mut()) {
                                let (mut m, mut i) = (a, 0);
                                if b > m {
                                    (m, i) = (b, 1);
                                }
                                if c > m {
                                    (m, i) = (c, 2);
                                }
                                if d > m {
                                    (m, i) = (d, 3);
                                }
                                (*v, *k) = (m, i);
                            }
                        }
                        Pool::Average => {
                            for ((((v, &a), &b), &c), &d) in quads {
                                *v = 0.25 * (a + b + c + d);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Overwrites `din` with the gradient wrt the input maps, given the gradient `dout` wrt the
    /// pooled maps and, for a max pool, the entries [`Pooling::forward`] took (`arg`): each
    /// gradient goes to the entry its window took, every other input gets zero (so do inputs in
    /// a dropped row or column).
    pub fn backward(&self, arg: &[u8], dout: &[f32], batch: usize, din: &mut [f32]) {
        let (c, map, pooled) = (self.c, self.h * self.w * self.c, self.hout() * self.wout() * self.c);
        debug_assert_eq!(dout.len(), batch * pooled);
        debug_assert_eq!(arg.len(), batch * pooled);
        // Zeroing first and then writing one entry per window measured faster than writing all
        // four entries of each window (1,640 profile samples against 451 plus 287 of memset).
        din.fill(0.0);
        let maps = din.chunks_exact_mut(map).zip(arg.chunks_exact(pooled)).zip(dout.chunks_exact(pooled));
        for ((dimg, args), dpout) in maps {
            let mut outs = args.chunks_exact(c).zip(dpout.chunks_exact(c));
            for y in 0..self.hout() {
                for x in 0..self.wout() {
                    let (which, d) = outs.next().expect("one output per position");
                    let (t, b) = self.window(y, x);
                    match self.kind {
                        Pool::Max => {
                            for (ch, (&k, &g)) in which.iter().zip(d).enumerate() {
                                let row = if k < 2 { t } else { b };
                                dimg[row + usize::from(k & 1) * c + ch] = g;
                            }
                        }
                        Pool::Average => {
                            for (ch, &g) in d.iter().enumerate() {
                                let q = 0.25 * g;
                                (dimg[t + ch], dimg[t + c + ch], dimg[b + ch], dimg[b + c + ch]) =
                                    (q, q, q, q);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Pool, Pooling};

    /// The backward pass overwrites every input gradient, whatever `din` held: the entry each
    /// window took gets its gradient (the average pool a quarter in each), every other entry and
    /// a dropped row or column zero.
    #[test]
    fn pooling_backward_overwrites_every_input_gradient() {
        for (kind, h, w, c) in [(Pool::Max, 4, 6, 3), (Pool::Max, 5, 7, 2), (Pool::Average, 5, 4, 3)] {
            let pool = Pooling { kind, h, w, c };
            let batch = 2;
            let input: Vec<f32> = (0..batch * h * w * c).map(|i| ((i * 37) % 23) as f32 - 11.0).collect();
            let pooled = pool.hout() * pool.wout() * c;
            let (mut out, mut arg) = (vec![0.0; batch * pooled], vec![0u8; batch * pooled]);
            pool.forward(&input, batch, &mut out, &mut arg);
            let dout: Vec<f32> = (0..batch * pooled).map(|i| i as f32 + 1.0).collect();
            let mut din = vec![f32::NAN; input.len()];
            pool.backward(&arg, &dout, batch, &mut din);
            let mut want = vec![0.0f32; input.len()];
            for s in 0..batch {
                for (y, x, ch) in (0..pool.hout())
                    .flat_map(|y| (0..pool.wout()).flat_map(move |x| (0..c).map(move |ch| (y, x, ch))))
                {
                    let o = s * pooled + (y * pool.wout() + x) * c + ch;
                    let at = |dy: usize, dx: usize| s * h * w * c + ((2 * y + dy) * w + 2 * x + dx) * c + ch;
                    match kind {
                        Pool::Max => {
                            let k = usize::from(arg[o]);
                            want[at(k / 2, k % 2)] = dout[o];
                        }
                        Pool::Average => {
                            for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                                want[at(dy, dx)] = 0.25 * dout[o];
                            }
                        }
                    }
                }
            }
            assert_eq!(din, want, "{kind:?} {h} x {w} x {c}");
        }
    }
}
