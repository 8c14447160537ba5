//! AVX-512 versions of the kernels: the same fused multiply-add chains as the AVX2 ones (one
//! per lane), sixteen lanes to a vector and, with 32 vector registers, taller register blocks.
//! The callers check the sizes and pad the narrow operand to whole vectors of sixteen; every
//! pointer offset here stays inside the slices they pass.

use std::arch::x86_64::*;

const L: usize = super::WIDE;

/// Stores the first `len` lanes of `v` at `dst`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn store(dst: *mut f32, len: usize, v: __m512) {
    // SAFETY (callers): dst..dst + len is inside the output.
    unsafe {
        if len >= L {
            _mm512_storeu_ps(dst, v);
        } else {
            _mm512_mask_storeu_ps(dst, ((1u32 << len) - 1) as __mmask16, v);
        }
    }
}

/// `out = cols W^T + b` (see `super::forward`), `wt` being k x np and `b` np long.
#[target_feature(enable = "avx512f")]
pub unsafe fn forward(cols: &[f32], k: usize, wt: &[f32], b: &[f32], n: usize, out: &mut [f32]) {
    let (rows, np) = (out.len() / n, b.len());
    let mut g = 0;
    while g < np {
        let p = Panel { cols, k, wt, np, b, n, g };
        // SAFETY: every block reads rows < `rows` of cols and writes them in out.
        unsafe {
            if np - g >= 2 * L {
                p.rows::<6, 2>(out, rows);
                g += 2 * L;
            } else {
                p.rows::<12, 1>(out, rows);
                g += L;
            }
        }
    }
}

/// One column panel of the forward product: output columns g.. (V vectors).
struct Panel<'a> {
    cols: &'a [f32],
    k: usize,
    wt: &'a [f32],
    np: usize,
    b: &'a [f32],
    n: usize,
    g: usize,
}

impl Panel<'_> {
    /// All rows of the panel, R at a time, then one at a time.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn rows<const R: usize, const V: usize>(&self, out: &mut [f32], rows: usize) {
        let mut m = 0;
        // SAFETY: m + R <= rows, and then m < rows.
        unsafe {
            while m + R <= rows {
                self.block::<R, V>(m, out);
                m += R;
            }
            while m < rows {
                self.block::<1, V>(m, out);
                m += 1;
            }
        }
    }

    /// Rows m..m + R of the panel.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const R: usize, const V: usize>(&self, m: usize, out: &mut [f32]) {
        let (k, np, g) = (self.k, self.np, self.g);
        // SAFETY: g + 16 V <= np (the padded widths of wt and b); rows m..m + R exist in cols
        // and out; only the n valid columns are stored.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); V]; R];
            for a in acc.iter_mut() {
                for (v, x) in a.iter_mut().enumerate() {
                    *x = _mm512_loadu_ps(self.b.as_ptr().add(g + v * L));
                }
            }
            let c = self.cols.as_ptr().add(m * k);
            for kk in 0..k {
                let w = self.wt.as_ptr().add(kk * np + g);
                let mut wv = [_mm512_setzero_ps(); V];
                for (v, x) in wv.iter_mut().enumerate() {
                    *x = _mm512_loadu_ps(w.add(v * L));
                }
                for (r, a) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(*c.add(r * k + kk));
                    for v in 0..V {
                        a[v] = _mm512_fmadd_ps(x, wv[v], a[v]);
                    }
                }
            }
            for (r, a) in acc.iter().enumerate() {
                for (v, &x) in a.iter().enumerate() {
                    let j = g + v * L;
                    if j < self.n {
                        store(out.as_mut_ptr().add((m + r) * self.n + j), self.n - j, x);
                    }
                }
            }
        }
    }
}

/// Rows per cache block of the weight gradient (see the AVX2 kernel).
const ROW_BLOCK: usize = 32;

/// `acc` (k x np) = dout^T cols, transposed (see `super::weight_grad`); `dpad` is dout padded
/// to rows x np.
#[target_feature(enable = "avx512f")]
pub unsafe fn weight_grad(cols: &[f32], k: usize, dpad: &[f32], np: usize, acc: &mut [f32]) {
    let rows = dpad.len() / np;
    let mut m0 = 0;
    while m0 < rows {
        let m1 = (m0 + ROW_BLOCK).min(rows);
        let mut g = 0;
        while g < np {
            let t = Tile { cols, k, dpad, np, m0, m1, g };
            // SAFETY: kk + KB <= k, g + 16 V <= np, rows m0..m1 exist.
            unsafe {
                if np - g >= 2 * L {
                    t.patch_columns::<6, 2>(acc);
                    g += 2 * L;
                } else {
                    t.patch_columns::<10, 1>(acc);
                    g += L;
                }
            }
        }
        m0 = m1;
    }
}

/// Rows m0..m1 of the weight gradient, for channel columns g.. of dpad.
struct Tile<'a> {
    cols: &'a [f32],
    k: usize,
    dpad: &'a [f32],
    np: usize,
    m0: usize,
    m1: usize,
    g: usize,
}

impl Tile<'_> {
    /// Every patch column: KB at a time, then 4, then one.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn patch_columns<const KB: usize, const V: usize>(&self, acc: &mut [f32]) {
        let mut kk = 0;
        // SAFETY: kk + KB <= k in each loop.
        unsafe {
            while kk + KB <= self.k {
                self.block::<KB, V>(kk, acc);
                kk += KB;
            }
            while kk + 4 <= self.k {
                self.block::<4, V>(kk, acc);
                kk += 4;
            }
            while kk < self.k {
                self.block::<1, V>(kk, acc);
                kk += 1;
            }
        }
    }

    /// Patch columns kk..kk + KB: acc[kk + r][g..] += sum over the tile's rows, in order.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const KB: usize, const V: usize>(&self, kk: usize, acc: &mut [f32]) {
        let (k, np, g) = (self.k, self.np, self.g);
        // SAFETY: see `weight_grad`.
        unsafe {
            let mut a = [[_mm512_setzero_ps(); V]; KB];
            for (r, x) in a.iter_mut().enumerate() {
                for (v, y) in x.iter_mut().enumerate() {
                    *y = _mm512_loadu_ps(acc.as_ptr().add((kk + r) * np + g + v * L));
                }
            }
            for m in self.m0..self.m1 {
                let d = self.dpad.as_ptr().add(m * np + g);
                let mut dv = [_mm512_setzero_ps(); V];
                for (v, y) in dv.iter_mut().enumerate() {
                    *y = _mm512_loadu_ps(d.add(v * L));
                }
                let c = self.cols.as_ptr().add(m * k + kk);
                for (r, x) in a.iter_mut().enumerate() {
                    let s = _mm512_set1_ps(*c.add(r));
                    for v in 0..V {
                        x[v] = _mm512_fmadd_ps(s, dv[v], x[v]);
                    }
                }
            }
            for (r, x) in a.iter().enumerate() {
                for (v, &y) in x.iter().enumerate() {
                    _mm512_storeu_ps(acc.as_mut_ptr().add((kk + r) * np + g + v * L), y);
                }
            }
        }
    }
}

/// `dcols = dout W` (see `super::input_grad`), `wp` being W padded to n x kp.
#[target_feature(enable = "avx512f")]
pub unsafe fn input_grad(dout: &[f32], n: usize, wp: &[f32], kp: usize, k: usize, dcols: &mut [f32]) {
    let rows = dout.len() / n;
    let s = Strip { dout, n, wp, kp, k };
    let mut m = 0;
    // SAFETY: m + R <= rows, c + 16 C <= kp.
    unsafe {
        while m + 6 <= rows {
            s.row_block::<6>(m, dcols);
            m += 6;
        }
        while m < rows {
            s.row_block::<1>(m, dcols);
            m += 1;
        }
    }
}

/// The operands of the input gradient.
struct Strip<'a> {
    dout: &'a [f32],
    n: usize,
    wp: &'a [f32],
    kp: usize,
    k: usize,
}

impl Strip<'_> {
    /// Rows m..m + R, every column.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn row_block<const R: usize>(&self, m: usize, dcols: &mut [f32]) {
        let mut c = 0;
        // SAFETY: see `input_grad`.
        unsafe {
            while c + 2 * L <= self.kp {
                self.block::<R, 2>(m, c, dcols);
                c += 2 * L;
            }
            if c < self.kp {
                self.block::<R, 1>(m, c, dcols);
            }
        }
    }

    /// Rows m..m + R, columns c..c + 16 C.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const R: usize, const C: usize>(&self, m: usize, c: usize, dcols: &mut [f32]) {
        let (n, kp, k) = (self.n, self.kp, self.k);
        // SAFETY: see `input_grad`; only the k valid columns are stored.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); C]; R];
            let d = self.dout.as_ptr().add(m * n);
            for j in 0..n {
                let w = self.wp.as_ptr().add(j * kp + c);
                let mut wv = [_mm512_setzero_ps(); C];
                for (v, x) in wv.iter_mut().enumerate() {
                    *x = _mm512_loadu_ps(w.add(v * L));
                }
                for (r, a) in acc.iter_mut().enumerate() {
                    let s = _mm512_set1_ps(*d.add(r * n + j));
                    for v in 0..C {
                        a[v] = _mm512_fmadd_ps(s, wv[v], a[v]);
                    }
                }
            }
            for (r, a) in acc.iter().enumerate() {
                for (v, &x) in a.iter().enumerate() {
                    let col = c + v * L;
                    if col < k {
                        store(dcols.as_mut_ptr().add((m + r) * k + col), k - col, x);
                    }
                }
            }
        }
    }
}

/// `acc` (n x kp, zero) = dout^T cols, for a narrow side of at most 8 channels and a patch of
/// at most 32 values (LeNet's first convolution: 6 x 25): lanes along the patch, so one row of
/// cols is two loads, and every channel's chains stay in registers for all the rows. Each value
/// is still one chain over the rows, first to last, from zero (`super::weight_grad`).
#[target_feature(enable = "avx512f")]
pub unsafe fn weight_grad_along_patch(cols: &[f32], k: usize, dout: &[f32], n: usize, acc: &mut [f32]) {
    // SAFETY (all arms): n <= 8, k <= 32 = 2 L, and the caller's sizes (see `Long::run`).
    unsafe {
        match (n, k > L) {
            (1, false) => Long::<1, 1>::run(cols, k, dout, acc),
            (2, false) => Long::<2, 1>::run(cols, k, dout, acc),
            (3, false) => Long::<3, 1>::run(cols, k, dout, acc),
            (4, false) => Long::<4, 1>::run(cols, k, dout, acc),
            (5, false) => Long::<5, 1>::run(cols, k, dout, acc),
            (6, false) => Long::<6, 1>::run(cols, k, dout, acc),
            (7, false) => Long::<7, 1>::run(cols, k, dout, acc),
            (8, false) => Long::<8, 1>::run(cols, k, dout, acc),
            (1, true) => Long::<1, 2>::run(cols, k, dout, acc),
            (2, true) => Long::<2, 2>::run(cols, k, dout, acc),
            (3, true) => Long::<3, 2>::run(cols, k, dout, acc),
            (4, true) => Long::<4, 2>::run(cols, k, dout, acc),
            (5, true) => Long::<5, 2>::run(cols, k, dout, acc),
            (6, true) => Long::<6, 2>::run(cols, k, dout, acc),
            (7, true) => Long::<7, 2>::run(cols, k, dout, acc),
            (8, true) => Long::<8, 2>::run(cols, k, dout, acc),
            _ => unreachable!("the caller keeps n <= 8 and k <= 32"),
        }
    }
}

/// The weight gradient with lanes along the patch: N channels, C vectors of patch values.
struct Long<const N: usize, const C: usize>;

impl<const N: usize, const C: usize> Long<N, C> {
    /// `acc` (N x 16 C) = dout^T cols over every row of dout (rows x N) and cols (rows x k).
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn run(cols: &[f32], k: usize, dout: &[f32], acc: &mut [f32]) {
        let rows = dout.len() / N;
        debug_assert!(cols.len() >= rows * k && acc.len() >= N * C * L && k <= C * L);
        // The last vector of a row holds k - 16 (C - 1) patch values: a masked load, which
        // neither reads the next row nor past the end of cols.
        let tail = ((1u32 << (k - (C - 1) * L)) - 1) as __mmask16;
        // SAFETY: rows m < rows of cols (k values) and dout (N values); acc holds N x 16 C.
        unsafe {
            let mut a = [[_mm512_setzero_ps(); C]; N];
            for m in 0..rows {
                let c = cols.as_ptr().add(m * k);
                let mut cv = [_mm512_setzero_ps(); C];
                for (v, x) in cv.iter_mut().enumerate() {
                    *x = if v + 1 < C {
                        _mm512_loadu_ps(c.add(v * L))
                    } else {
                        _mm512_maskz_loadu_ps(tail, c.add(v * L))
                    };
                }
                let d = dout.as_ptr().add(m * N);
                for (j, x) in a.iter_mut().enumerate() {
                    let s = _mm512_set1_ps(*d.add(j));
                    for v in 0..C {
                        x[v] = _mm512_fmadd_ps(s, cv[v], x[v]);
                    }
                }
            }
            for (j, x) in a.iter().enumerate() {
                for (v, &y) in x.iter().enumerate() {
                    _mm512_storeu_ps(acc.as_mut_ptr().add((j * C + v) * L), y);
                }
            }
        }
    }
}
