//! The convolutions' matrix products, written for their shapes: one side is narrow (the output
//! channels, 6 and 16 in LeNet-5) and the other long (every output position of the chunk). A
//! general GEMM packs both operands into panels on every call and runs its micro-kernel on
//! mostly padding here (measured: packing alone took as long as the products); these kernels
//! keep the narrow side in registers and read the long side where it lies.
//!
//! - [`forward`]: `out = cols W^T + b`, rows x n from rows x k and n x k.
//! - [`weight_grad`]: `gW += dout^T cols` and `gb += column sums of dout`.
//! - [`input_grad`]: `dcols = dout W`, rows x k from rows x n and n x k.
//!
//! # Determinism
//!
//! Every output value is one chain of fused multiply-adds in a fixed order: over the patch (k)
//! for [`forward`], starting from the bias; over the rows, first to last, for [`weight_grad`],
//! starting from zero and then added to the gradient; over the channels (n) for
//! [`input_grad`], starting from zero. The AVX2 kernels (x86-64 with AVX2 and FMA, detected at
//! run time) run one chain per SIMD lane, and the portable kernels run the same chains with
//! `f32::mul_add`, so both give the same bits (tested), on every machine, whatever the thread
//! count: the simulator and a cluster node compute the same gradient.

/// Scratch space of the kernels: the narrow operand laid out for the SIMD lanes. Grows to the
/// largest layer once, then is reused.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scratch {
    /// W transposed and padded (k x np), or W padded (n x kp).
    w: Vec<f32>,
    /// The bias padded to np; or dout padded to rows x np.
    v: Vec<f32>,
    /// The weight gradient's accumulators (k x np).
    acc: Vec<f32>,
}

/// Lanes of one vector.
const LANES: usize = 8;

/// `x` rounded up to whole vectors.
fn padded(x: usize) -> usize {
    x.div_ceil(LANES) * LANES
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

/// Whether this CPU runs the AVX2 kernels.
fn simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Writes `out` (rows x n) = `cols` (rows x k) `w`^T (w: n x k, row-major) + `bias`.
pub(crate) fn forward(
    cols: &[f32],
    k: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    n: usize,
    out: &mut [f32],
    s: &mut Scratch,
) {
    let rows = out.len() / n;
    assert!(cols.len() >= rows * k && w.len() == n * k && out.len() == rows * n);
    let np = padded(n);
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
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: AVX2 and FMA are present; the sizes were checked above.
        #[allow(unsafe_code)]
        unsafe {
            avx::forward(cols, k, wt, b, n, out)
        };
        return;
    }
    portable::forward(cols, k, wt, b, n, out);
}

/// Adds `dout`^T `cols` to `gw` (n x k) and, with `gb`, the column sums of `dout` (rows x n) to
/// `gb`.
pub(crate) fn weight_grad(
    cols: &[f32],
    k: usize,
    dout: &[f32],
    n: usize,
    gw: &mut [f32],
    gb: Option<&mut [f32]>,
    s: &mut Scratch,
) {
    let rows = dout.len() / n;
    assert!(cols.len() >= rows * k && dout.len() == rows * n && gw.len() == n * k);
    let np = padded(n);
    let dpad: &[f32] = if np == n {
        dout
    } else {
        if s.v.len() < rows * np {
            s.v.resize(rows * np, 0.0);
        }
        let dpad = &mut s.v[..rows * np];
        // Value by value with the padding's zeros: a memmove per short row would cost more.
        for (d, src) in dpad.chunks_exact_mut(np).zip(dout.chunks_exact(n)) {
            for (j, d) in d.iter_mut().enumerate() {
                *d = if j < n { src[j] } else { 0.0 };
            }
        }
        dpad
    };
    let acc = zeroed(&mut s.acc, k * np);
    #[cfg(target_arch = "x86_64")]
    let done = simd() && {
        // SAFETY: AVX2 and FMA are present; the sizes were checked above.
        #[allow(unsafe_code)]
        unsafe {
            avx::weight_grad(cols, k, dpad, np, acc)
        };
        true
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = false;
    if !done {
        portable::weight_grad(cols, k, dpad, np, acc);
    }
    for (j, g) in gw.chunks_exact_mut(k).enumerate() {
        for (kk, g) in g.iter_mut().enumerate() {
            *g += acc[kk * np + j];
        }
    }
    if let Some(gb) = gb {
        // Row by row, in sample order (eight channels per step).
        bias_grad(dpad, np, gb);
    }
}

/// Adds the column sums of `dpad` (rows of `np` values, padded with zeros) to `gb`: each
/// channel summed over the rows in order, as a plain loop would, but eight channels per step.
fn bias_grad(dpad: &[f32], np: usize, gb: &mut [f32]) {
    for g0 in (0..gb.len()).step_by(LANES) {
        let n = (gb.len() - g0).min(LANES);
        let mut acc = [0.0f32; LANES];
        acc[..n].copy_from_slice(&gb[g0..g0 + n]);
        for row in dpad.chunks_exact(np) {
            let v: &[f32; LANES] = row[g0..g0 + LANES].try_into().expect("rows are padded to whole groups");
            for (a, &d) in acc.iter_mut().zip(v) {
                *a += d;
            }
        }
        gb[g0..g0 + n].copy_from_slice(&acc[..n]);
    }
}

/// Writes `dcols` (rows x k) = `dout` (rows x n) `w` (n x k, row-major).
pub(crate) fn input_grad(dout: &[f32], n: usize, w: &[f32], k: usize, dcols: &mut [f32], s: &mut Scratch) {
    let rows = dout.len() / n;
    assert!(dcols.len() == rows * k && dout.len() == rows * n && w.len() == n * k);
    let kp = padded(k);
    let wp = zeroed(&mut s.w, n * kp);
    for (d, src) in wp.chunks_exact_mut(kp).zip(w.chunks_exact(k)) {
        d[..k].copy_from_slice(src);
    }
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: AVX2 and FMA are present; the sizes were checked above.
        #[allow(unsafe_code)]
        unsafe {
            avx::input_grad(dout, n, wp, kp, k, dcols)
        };
        return;
    }
    portable::input_grad(dout, n, wp, kp, k, dcols);
}

/// The same chains as the AVX2 kernels, one value at a time, with `f32::mul_add`.
mod portable {
    /// See [`super::forward`]; `wt` is W^T padded to k x np, `b` the padded bias.
    pub fn forward(cols: &[f32], k: usize, wt: &[f32], b: &[f32], n: usize, out: &mut [f32]) {
        let np = b.len();
        for (row, o) in cols.chunks_exact(k).zip(out.chunks_exact_mut(n)) {
            for (j, o) in o.iter_mut().enumerate() {
                let mut acc = b[j];
                for (kk, &a) in row.iter().enumerate() {
                    acc = a.mul_add(wt[kk * np + j], acc);
                }
                *o = acc;
            }
        }
    }

    /// See [`super::weight_grad`]; `acc` (k x np, zero) receives dout^T cols transposed.
    pub fn weight_grad(cols: &[f32], k: usize, dpad: &[f32], np: usize, acc: &mut [f32]) {
        for (row, d) in cols.chunks_exact(k).zip(dpad.chunks_exact(np)) {
            for (kk, &a) in row.iter().enumerate() {
                for (g, &dj) in acc[kk * np..(kk + 1) * np].iter_mut().zip(d) {
                    *g = a.mul_add(dj, *g);
                }
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

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx;

#[cfg(test)]
mod tests;
