//! The convolutions' matrix products, written for their shapes: one side is narrow (the output
//! channels, 6 and 16 in LeNet-5) and the other long (every output position of the chunk). A
//! general GEMM packs both operands into panels on every call and runs its micro-kernel on
//! mostly padding here (measured: packing alone took as long as the products); these kernels
//! keep the narrow side in registers and read the long side where it lies.
//!
//! - [`forward`]: `out = cols W^T + b`, rows x n from rows x k and n x k.
//! - [`weight_grad`]: `gW += dout^T cols` and `gb += column sums of dout` (dout read in place,
//!   its rows' last vector with masked loads).
//! - [`input_grad`]: `dcols = dout W`, rows x k from rows x n and n x k.
//!
//! # Determinism
//!
//! Every output value is one chain of fused multiply-adds in a fixed order: over the patch (k)
//! for [`forward`], starting from the bias; over the rows, first to last, for [`weight_grad`],
//! starting from zero and then added to the gradient; over the channels (n) for
//! [`input_grad`], starting from zero. The AVX-512 kernels (16 lanes) and the AVX2 ones (8
//! lanes, with FMA), chosen at run time, run one chain per SIMD lane, and the portable kernels
//! run the same chains with `f32::mul_add`, so all three give the same bits (tested), on every
//! machine, whatever the thread count: the simulator and a cluster node compute the same
//! gradient. Which vectors serve a call depends on its narrow side: AVX-512 where sixteen lanes
//! hold it with no more padding than eight (LeNet's 16 channels), AVX2 otherwise (its 6).

/// Scratch space of the kernels: the narrow operand laid out for the SIMD lanes. Grows to the
/// largest layer once, then is reused.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scratch {
    /// W transposed and padded (k x np), or W padded (n x kp).
    w: Vec<f32>,
    /// The bias padded to np.
    v: Vec<f32>,
    /// The weight gradient's accumulators (k x np).
    acc: Vec<f32>,
}

/// Lanes of an AVX2 vector.
const LANES: usize = 8;

/// Lanes of an AVX-512 vector.
const WIDE: usize = 16;

/// `x` rounded up to whole vectors of `lanes`.
fn padded(x: usize, lanes: usize) -> usize {
    x.div_ceil(lanes) * lanes
}

/// The first `len` values of `v`, zeroed, grown if needed.
fn zeroed(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    let s = &mut v[..len];
    s.fill(0.0);
    s
}

/// The instructions a kernel call runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
enum Isa {
    Portable,
    Avx2,
    Avx512,
}

impl Isa {
    /// The widest vectors this CPU runs (feature detection is cached by the standard library).
    fn widest() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") {
                return Isa::Avx512;
            }
            if has!("avx2") && has!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// The vectors for a narrow side of `n` lanes on this CPU (see [`Isa::narrow`]).
    fn for_width(n: usize) -> Isa {
        Isa::widest().narrow(n)
    }

    /// The vectors for a narrow side of `n` lanes where `self` is the widest: AVX-512 only
    /// where it pads `n` no more than AVX2 would (n = 9..=16, 25..=32, ...), so that no lanes
    /// are wasted.
    fn narrow(self, n: usize) -> Isa {
        match self {
            Isa::Avx512 if padded(n, WIDE) != padded(n, LANES) => Isa::Avx2,
            isa => isa,
        }
    }

    /// Lanes of one vector (the portable kernels take the AVX2 layout).
    fn lanes(self) -> usize {
        if self == Isa::Avx512 { WIDE } else { LANES }
    }
}

/// Writes `out` (rows x n) = `src` (rows x k) `w`^T (w: n x k, row-major) + `bias`.
pub(crate) fn forward<S: Patches>(
    src: S,
    w: &[f32],
    bias: Option<&[f32]>,
    n: usize,
    out: &mut [f32],
    s: &mut Scratch,
) {
    forward_on(Isa::for_width(n), src, w, bias, n, out, s);
}

/// [`forward`] on the vectors of `isa`.
fn forward_on<S: Patches>(
    isa: Isa,
    src: S,
    w: &[f32],
    bias: Option<&[f32]>,
    n: usize,
    out: &mut [f32],
    s: &mut Scratch,
) {
    let (rows, k) = (out.len() / n, src.k());
    assert!(src.rows() >= rows && w.len() == n * k && out.len() == rows * n);
    let np = padded(n, isa.lanes());
    let wt = zeroed(&mut s.w, k * np);
    for (j, wj) in w.chunks_exact(k).enumerate() {
        for (kk, &v) in wj.iter().enumerate() {
            wt[kk * np + j] = v;
        }
    }
    let b = zeroed(&mut s.v, np);
    if let Some(bias) = bias {
        b[..n].copy_from_slice(bias);
    }
    match isa {
        // SAFETY: the CPU has the instructions (`Isa`); the sizes were checked above.
        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)]
        Isa::Avx512 => unsafe { avx512::forward(src, wt, b, n, out) },
        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)]
        Isa::Avx2 => unsafe { avx::forward(src, wt, b, n, out) },
        _ => portable::forward(src, wt, b, n, out),
    }
}

/// Adds `dout`^T `src` to `gw` (n x k) and, with `gb`, the column sums of `dout` (rows x n) to
/// `gb`.
pub(crate) fn weight_grad<S: Patches>(
    src: S,
    dout: &[f32],
    n: usize,
    gw: &mut [f32],
    gb: Option<&mut [f32]>,
    s: &mut Scratch,
) {
    weight_grad_on(Isa::for_width(n), src, dout, n, gw, gb, s);
}

/// [`weight_grad`] on the vectors of `isa`.
fn weight_grad_on<S: Patches>(
    isa: Isa,
    src: S,
    dout: &[f32],
    n: usize,
    gw: &mut [f32],
    gb: Option<&mut [f32]>,
    s: &mut Scratch,
) {
    let (rows, k) = (dout.len() / n, src.k());
    assert!(src.rows() >= rows && dout.len() == rows * n && gw.len() == n * k);
    let np = padded(n, isa.lanes());
    let acc = zeroed(&mut s.acc, k * np);
    match isa {
        // SAFETY: the CPU has the instructions (`Isa`); the sizes were checked above.
        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)]
        Isa::Avx512 => unsafe { avx512::weight_grad(src, dout, n, np, acc) },
        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)]
        Isa::Avx2 => unsafe { avx::weight_grad(src, dout, n, np, acc) },
        _ => portable::weight_grad(src, dout, n, np, acc),
    }
    for (j, g) in gw.chunks_exact_mut(k).enumerate() {
        for (kk, g) in g.iter_mut().enumerate() {
            *g += acc[kk * np + j];
        }
    }
    if let Some(gb) = gb {
        bias_grad(dout, gb);
    }
}

/// Adds the column sums of `dout` (rows of `gb.len()` values) to `gb`: each channel summed over
/// the rows in order, as a plain loop would, but eight channels per step (AVX2 where the CPU has
/// it: the same additions, so the same bits).
fn bias_grad(dout: &[f32], gb: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if Isa::widest() != Isa::Portable {
        // SAFETY: the CPU has AVX2 (`Isa`); dout holds whole rows of gb.len() values.
        #[allow(unsafe_code)]
        unsafe {
            avx::bias_grad(dout, gb)
        };
        return;
    }
    portable::bias_grad(dout, gb);
}

/// Writes `dcols` (rows x k) = `dout` (rows x n) `w` (n x k, row-major).
pub(crate) fn input_grad(dout: &[f32], n: usize, w: &[f32], k: usize, dcols: &mut [f32], s: &mut Scratch) {
    input_grad_on(Isa::widest(), dout, n, w, k, dcols, s);
}

/// [`input_grad`] on the vectors of `isa`. Its lanes run along the long side (the patch), so
/// the widest vectors serve it.
fn input_grad_on(isa: Isa, dout: &[f32], n: usize, w: &[f32], k: usize, dcols: &mut [f32], s: &mut Scratch) {
    let rows = dout.len() / n;
    assert!(dcols.len() == rows * k && dout.len() == rows * n && w.len() == n * k);
    let kp = padded(k, isa.lanes());
    let wp = zeroed(&mut s.w, n * kp);
    for (d, src) in wp.chunks_exact_mut(kp).zip(w.chunks_exact(k)) {
        d[..k].copy_from_slice(src);
    }
    match isa {
        // SAFETY: the CPU has the instructions (`Isa`); the sizes were checked above.
        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)]
        Isa::Avx512 => unsafe { avx512::input_grad(dout, n, wp, kp, k, dcols) },
        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)]
        Isa::Avx2 => unsafe { avx::input_grad(dout, n, wp, kp, k, dcols) },
        _ => portable::input_grad(dout, n, wp, kp, k, dcols),
    }
}

/// The same chains as the SIMD kernels, one value at a time, with `f32::mul_add`.
mod portable {
    use super::Patches;

    /// See [`super::forward`]; `wt` is W^T padded to k x np, `b` the padded bias.
    pub fn forward<S: Patches>(src: S, wt: &[f32], b: &[f32], n: usize, out: &mut [f32]) {
        let np = b.len();
        for (r, o) in out.chunks_exact_mut(n).enumerate() {
            for (j, o) in o.iter_mut().enumerate() {
                let mut acc = b[j];
                for kk in 0..src.k() {
                    acc = src.get(r, kk).mul_add(wt[kk * np + j], acc);
                }
                *o = acc;
            }
        }
    }

    /// See [`super::weight_grad`]; `acc` (k x np, zero) receives dout^T patches transposed
    /// (its columns n.. stay zero).
    pub fn weight_grad<S: Patches>(src: S, dout: &[f32], n: usize, np: usize, acc: &mut [f32]) {
        for (r, d) in dout.chunks_exact(n).enumerate() {
            for kk in 0..src.k() {
                let a = src.get(r, kk);
                for (g, &dj) in acc[kk * np..kk * np + n].iter_mut().zip(d) {
                    *g = a.mul_add(dj, *g);
                }
            }
        }
    }

    /// See [`super::bias_grad`].
    pub fn bias_grad(dout: &[f32], gb: &mut [f32]) {
        for row in dout.chunks_exact(gb.len()) {
            for (g, &d) in gb.iter_mut().zip(row) {
                *g += d;
            }
        }
    }

    /// See [`super::input_grad`]; `wp` is W padded to n x kp.
    pub fn input_grad(dout: &[f32], n: usize, wp: &[f32], kp: usize, k: usize, dcols: &mut [f32]) {
        for (d, o) in dout.chunks_exact(n).zip(dcols.chunks_exact_mut(k)) {
            for (kk, o) in o.iter_mut().enumerate() {
                let mut acc = 0.0f32;
                for (j, &dj) in d.iter().enumerate() {
                    acc = dj.mul_add(wp[j * kp + kk], acc);
                }
                *o = acc;
            }
        }
    }
}

#[allow(unsafe_code)]
mod patches;

pub(crate) use patches::{Gathered, Patches, Stored};

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx;

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512;

#[cfg(test)]
mod tests;
