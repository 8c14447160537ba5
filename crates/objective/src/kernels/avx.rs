//! AVX2 + FMA versions of the kernels: one fused multiply-add chain per lane, register-blocked
//! so that each load feeds several FMAs. The callers check the sizes; every pointer offset here
//! stays inside the slices they pass (debug builds assert it through the slice indexing of the
//! block boundaries).

use std::arch::x86_64::*;

use super::Patches;

const L: usize = super::LANES;

/// A lane mask keeping the first `len` (at most 8) lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn mask(len: usize) -> __m256i {
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(len as i32), lanes)
}

/// Stores the first `len` lanes of `v` at `dst`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn store(dst: *mut f32, len: usize, v: __m256) {
    // SAFETY (callers): dst..dst + len is inside the output.
    unsafe {
        if len >= L {
            _mm256_storeu_ps(dst, v);
        } else {
            _mm256_maskstore_ps(dst, mask(len), v);
        }
    }
}

/// `out = patches W^T + b` (see `super::forward`), `wt` being k x np and `b` np long.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn forward<S: Patches>(src: S, wt: &[f32], b: &[f32], n: usize, out: &mut [f32]) {
    let (rows, np) = (out.len() / n, b.len());
    let mut g = 0;
    while g < np {
        let p = Panel { src, wt, np, b, n, g };
        // SAFETY: every block reads rows < `rows` of the patches and writes them in out.
        unsafe {
            if np - g >= 2 * L {
                p.rows::<4, 2>(out, rows);
                g += 2 * L;
            } else {
                p.rows::<8, 1>(out, rows);
                g += L;
            }
        }
    }
}

/// One column panel of the forward product: output columns g.. (V vectors).
struct Panel<'a, S> {
    src: S,
    wt: &'a [f32],
    np: usize,
    b: &'a [f32],
    n: usize,
    g: usize,
}

impl<S: Patches> Panel<'_, S> {
    /// All rows of the panel, R at a time, then one at a time.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
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
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block<const R: usize, const V: usize>(&self, m: usize, out: &mut [f32]) {
        let (k, np, g) = (self.src.k(), self.np, self.g);
        // SAFETY: g + 8 V <= np (the padded widths of wt and b); rows m..m + R exist in the
        // patches and out; every store stays inside out, and past a row's n columns only onto
        // later rows (below).
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); V]; R];
            for a in acc.iter_mut() {
                for (v, x) in a.iter_mut().enumerate() {
                    *x = _mm256_loadu_ps(self.b.as_ptr().add(g + v * L));
                }
            }
            let c: [*const f32; R] = std::array::from_fn(|r| self.src.row(m + r));
            for kk in 0..k {
                let o = self.src.off(kk);
                let w = self.wt.as_ptr().add(kk * np + g);
                let mut wv = [_mm256_setzero_ps(); V];
                for (v, x) in wv.iter_mut().enumerate() {
                    *x = _mm256_loadu_ps(w.add(v * L));
                }
                for (r, a) in acc.iter_mut().enumerate() {
                    let x = _mm256_set1_ps(*c[r].add(o));
                    for v in 0..V {
                        a[v] = _mm256_fmadd_ps(x, wv[v], a[v]);
                    }
                }
            }
            // Where this panel holds every column, a row's last vector is stored whole: what it
            // writes past the row lands on the next rows, which are stored after it (AMD runs
            // masked stores in microcode: they were 40% of the first convolution's forward).
            // Masked only where a whole vector would leave `out`.
            let whole = g == 0 && np == V * L;
            for (r, a) in acc.iter().enumerate() {
                for (v, &x) in a.iter().enumerate() {
                    let at = (m + r) * self.n + g + v * L;
                    if whole && at + L <= out.len() {
                        _mm256_storeu_ps(out.as_mut_ptr().add(at), x);
                    } else if g + v * L < self.n {
                        store(out.as_mut_ptr().add(at), self.n - g - v * L, x);
                    }
                }
            }
        }
    }
}

/// Rows per cache block of the weight gradient: the block's rows of patches (k values each) stay
/// in L1 while every group of patch columns passes over them.
const ROW_BLOCK: usize = 32;

/// `acc` (k x np) = dout^T patches, transposed (see `super::weight_grad`); `dout` has rows of
/// `n` values, read as whole vectors with the lanes past `n` masked to zero.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn weight_grad<S: Patches>(src: S, dout: &[f32], n: usize, np: usize, acc: &mut [f32]) {
    let (rows, k) = (dout.len() / n, src.k());
    let mut m0 = 0;
    while m0 < rows {
        let m1 = (m0 + ROW_BLOCK).min(rows);
        let mut g = 0;
        while g < np {
            let v = if np - g >= 2 * L { 2 } else { 1 };
            let t = Tile { src, dout, n, np, m0, m1, g };
            let mut kk = 0;
            // SAFETY: kk + KB <= k, g + 8 V <= np, rows m0..m1 exist.
            unsafe {
                if v == 2 {
                    while kk + 4 <= k {
                        t.block::<4, 2>(kk, acc);
                        kk += 4;
                    }
                    while kk < k {
                        t.block::<1, 2>(kk, acc);
                        kk += 1;
                    }
                } else {
                    while k - kk > 12 {
                        t.block::<8, 1>(kk, acc);
                        kk += 8;
                    }
                    t.last_columns(kk, acc);
                }
            }
            g += v * L;
        }
        m0 = m1;
    }
}

/// Rows m0..m1 of the weight gradient, for channel columns g.. of dout.
struct Tile<'a, S> {
    src: S,
    dout: &'a [f32],
    n: usize,
    np: usize,
    m0: usize,
    m1: usize,
    g: usize,
}

impl<S: Patches> Tile<'_, S> {
    /// The last 0 to 12 patch columns, kk.., of a one-vector tile in one pass over its rows (a
    /// pass per column of the remainder cost the first convolution's 25 columns a fourth pass
    /// for one column: 17% of its weight gradient).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn last_columns(&self, kk: usize, acc: &mut [f32]) {
        // SAFETY: kk + the block's width == k.
        unsafe {
            match self.src.k() - kk {
                0 => {}
                1 => self.block::<1, 1>(kk, acc),
                2 => self.block::<2, 1>(kk, acc),
                3 => self.block::<3, 1>(kk, acc),
                4 => self.block::<4, 1>(kk, acc),
                5 => self.block::<5, 1>(kk, acc),
                6 => self.block::<6, 1>(kk, acc),
                7 => self.block::<7, 1>(kk, acc),
                8 => self.block::<8, 1>(kk, acc),
                9 => self.block::<9, 1>(kk, acc),
                10 => self.block::<10, 1>(kk, acc),
                11 => self.block::<11, 1>(kk, acc),
                12 => self.block::<12, 1>(kk, acc),
                r => unreachable!("{r} columns left, at most 12"),
            }
        }
    }

    /// Patch columns kk..kk + KB: acc[kk + r][g..] += sum over the tile's rows, in order.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block<const KB: usize, const V: usize>(&self, kk: usize, acc: &mut [f32]) {
        let (n, np, g) = (self.n, self.np, self.g);
        // SAFETY: see `weight_grad`; each vector has at least one of the n lanes (np - n < 8),
        // and the masked loads read only lanes inside the row.
        unsafe {
            let mut a = [[_mm256_setzero_ps(); V]; KB];
            for (r, x) in a.iter_mut().enumerate() {
                for (v, y) in x.iter_mut().enumerate() {
                    *y = _mm256_loadu_ps(acc.as_ptr().add((kk + r) * np + g + v * L));
                }
            }
            let offs: [usize; KB] = std::array::from_fn(|r| self.src.off(kk + r));
            let lanes: [__m256i; V] = std::array::from_fn(|v| mask(n - (g + v * L)));
            for m in self.m0..self.m1 {
                let d = self.dout.as_ptr().add(m * n + g);
                let mut dv = [_mm256_setzero_ps(); V];
                for (v, y) in dv.iter_mut().enumerate() {
                    *y = _mm256_maskload_ps(d.add(v * L), lanes[v]);
                }
                let c = self.src.row(m);
                for (r, x) in a.iter_mut().enumerate() {
                    let s = _mm256_set1_ps(*c.add(offs[r]));
                    for v in 0..V {
                        x[v] = _mm256_fmadd_ps(s, dv[v], x[v]);
                    }
                }
            }
            for (r, x) in a.iter().enumerate() {
                for (v, &y) in x.iter().enumerate() {
                    _mm256_storeu_ps(acc.as_mut_ptr().add((kk + r) * np + g + v * L), y);
                }
            }
        }
    }
}

/// Adds the column sums of `dout` (rows of `gb.len()` values) to `gb`, each channel over the rows
/// in order (see `super::bias_grad`): one chain of additions per lane, eight channels at a time.
#[target_feature(enable = "avx2")]
pub unsafe fn bias_grad(dout: &[f32], gb: &mut [f32]) {
    let n = gb.len();
    let rows = dout.len() / n;
    let mut g = 0;
    while g < n {
        let lanes = mask(n - g);
        // SAFETY: the masked loads and the store touch lanes g..n of gb and of each row only.
        unsafe {
            let mut acc = _mm256_maskload_ps(gb.as_ptr().add(g), lanes);
            for m in 0..rows {
                acc = _mm256_add_ps(acc, _mm256_maskload_ps(dout.as_ptr().add(m * n + g), lanes));
            }
            _mm256_maskstore_ps(gb.as_mut_ptr().add(g), lanes, acc);
        }
        g += L;
    }
}

/// `dcols = dout W` (see `super::input_grad`), `wp` being W padded to n x kp.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn input_grad(dout: &[f32], n: usize, wp: &[f32], kp: usize, k: usize, dcols: &mut [f32]) {
    let rows = dout.len() / n;
    let s = Strip { dout, n, wp, kp, k };
    let mut m = 0;
    // SAFETY: m + R <= rows, c + 8 C <= kp.
    unsafe {
        while m + 4 <= rows {
            s.row_block::<4>(m, dcols);
            m += 4;
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
    #[target_feature(enable = "avx2,fma")]
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

    /// Rows m..m + R, columns c..c + 8 C.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block<const R: usize, const C: usize>(&self, m: usize, c: usize, dcols: &mut [f32]) {
        let (n, kp, k) = (self.n, self.kp, self.k);
        // SAFETY: see `input_grad`; only the k valid columns are stored.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); C]; R];
            let d = self.dout.as_ptr().add(m * n);
            for j in 0..n {
                let w = self.wp.as_ptr().add(j * kp + c);
                let mut wv = [_mm256_setzero_ps(); C];
                for (v, x) in wv.iter_mut().enumerate() {
                    *x = _mm256_loadu_ps(w.add(v * L));
                }
                for (r, a) in acc.iter_mut().enumerate() {
                    let s = _mm256_set1_ps(*d.add(r * n + j));
                    for v in 0..C {
                        a[v] = _mm256_fmadd_ps(s, wv[v], a[v]);
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
