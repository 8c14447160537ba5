//! Dense symmetric eigenvalues (Householder tridiagonalisation + implicit QL) and the
//! spectral facts of a mixing matrix.
//!
//! The matrix is held as a packed lower triangle (row `i` holds columns `0..=i` at offset
//! `i (i + 1) / 2`), which halves memory for n ~ 2000 and lets both the symmetric
//! matrix-vector product and the rank-2 update walk rows contiguously; the textbook tred2
//! reads columns in its inner loop, which is several times slower once the matrix leaves cache.

use crate::error::TopologyError;
use crate::weights::MixingMatrix;

mod lanczos;

pub use lanczos::{SymmetricOperator, largest_abs_eigenvalue};

/// The largest matrix whose `rho` is computed by the dense eigen-solve (exact to rounding, and
/// below this size faster than iterating); larger ones use Lanczos ([`largest_abs_eigenvalue`]).
pub const DENSE_MAX: usize = 256;

/// The accuracy asked of the Lanczos estimate of `rho`.
pub const RHO_TOL: f64 = 1e-9;

/// QL iterations allowed per eigenvalue; with Wilkinson-type shifts 2-3 is typical and the
/// textbook cap is 30, so hitting this means the input was not a finite symmetric matrix.
const MAX_QL_ITER: usize = 60;

fn row_start(i: usize) -> usize {
    i * (i + 1) / 2
}

/// Eigenvalues, ascending, of the symmetric matrix `a` (given as `n` rows of length `n`).
///
/// Only the lower triangle (`a[i][j]` with `j <= i`) is read. Errors on a non-square or
/// non-finite input, or (never observed) if the QL iteration fails to converge.
pub fn symmetric_eigenvalues(a: &[Vec<f64>]) -> Result<Vec<f64>, TopologyError> {
    let n = a.len();
    let mut packed = Vec::with_capacity(row_start(n));
    for (i, row) in a.iter().enumerate() {
        if row.len() != n {
            return Err(TopologyError::WrongRowLength { row: i, expected: n, got: row.len() });
        }
        for (j, &v) in row[..=i].iter().enumerate() {
            if !v.is_finite() {
                return Err(TopologyError::NonFiniteWeight { i, j, value: v });
            }
        }
        packed.extend_from_slice(&row[..=i]);
    }
    packed_eigenvalues(packed, n)
}

/// Eigenvalues, ascending, of the symmetric matrix whose packed lower triangle is `packed`.
fn packed_eigenvalues(mut packed: Vec<f64>, n: usize) -> Result<Vec<f64>, TopologyError> {
    let mut d = vec![0.0; n];
    let mut e = vec![0.0; n];
    tridiagonalize(&mut packed, n, &mut d, &mut e);
    drop(packed);
    tridiagonal_ql(&mut d, &mut e)?;
    d.sort_by(f64::total_cmp);
    Ok(d)
}

/// Householder reduction to tridiagonal form (tred2, eigenvalues only), on the packed lower
/// triangle. On return `d` is the diagonal and `e[i]` the entry `(i, i-1)`, `e[0] = 0`.
/// `a` is overwritten.
fn tridiagonalize(a: &mut [f64], n: usize, d: &mut [f64], e: &mut [f64]) {
    let mut q = vec![0.0; n];
    for i in (1..n).rev() {
        let l = i - 1;
        let (head, tail) = a.split_at_mut(row_start(i));
        // Row i left of the diagonal becomes the Householder vector u in place.
        let u = &mut tail[..i];
        if l == 0 {
            e[i] = u[0];
            continue;
        }
        // Scaling first keeps h = |u|^2 from overflowing or underflowing.
        let scale: f64 = u.iter().map(|x| x.abs()).sum();
        if scale == 0.0 {
            e[i] = u[l];
            continue;
        }
        let mut h = 0.0;
        for x in u.iter_mut() {
            *x /= scale;
            h += *x * *x;
        }
        let f = u[l];
        // The sign is chosen against f so that f - g does not cancel.
        let g = if f >= 0.0 { -h.sqrt() } else { h.sqrt() };
        e[i] = scale * g;
        h -= f * g;
        u[l] = f - g;

        // q = A u / h for the leading i x i block; each stored row j contributes both its own
        // dot product and, by symmetry, the column part for k < j.
        let q = &mut q[..i];
        q.fill(0.0);
        for j in 0..i {
            let row = &head[row_start(j)..row_start(j) + j + 1];
            let (off, diag) = row.split_at(j);
            let uj = u[j];
            let mut s = diag[0] * uj;
            for ((&ajk, &uk), qk) in off.iter().zip(&u[..j]).zip(q[..j].iter_mut()) {
                s += ajk * uk;
                *qk += ajk * uj;
            }
            q[j] += s;
        }
        let mut f = 0.0;
        for (qj, &uj) in q.iter_mut().zip(u.iter()) {
            *qj /= h;
            f += *qj * uj;
        }
        let hh = f / (h + h);
        for (qj, &uj) in q.iter_mut().zip(u.iter()) {
            *qj -= hh * uj;
        }
        // A <- A - u q^T - q u^T on the lower triangle.
        for j in 0..i {
            let row = &mut head[row_start(j)..row_start(j) + j + 1];
            let (uj, qj) = (u[j], q[j]);
            for ((ajk, &uk), &qk) in row.iter_mut().zip(&u[..=j]).zip(&q[..=j]) {
                *ajk -= uj * qk + qj * uk;
            }
        }
    }
    for (i, di) in d.iter_mut().enumerate() {
        *di = a[row_start(i) + i];
    }
    if n > 0 {
        e[0] = 0.0;
    }
}

/// Implicit QL with shifts (tqli, eigenvalues only) on the tridiagonal `(d, e)` from
/// [`tridiagonalize`]. On return `d` holds the eigenvalues, unordered.
pub(crate) fn tridiagonal_ql(d: &mut [f64], e: &mut [f64]) -> Result<(), TopologyError> {
    let n = d.len();
    if n == 0 {
        return Ok(());
    }
    // Renumber so that e[i] couples d[i] and d[i+1].
    e.copy_within(1.., 0);
    e[n - 1] = 0.0;
    // An off-diagonal at rounding level of the whole matrix is negligible too: where the
    // diagonal entries themselves are rounding noise (W - 11^T/n of a complete graph is zero),
    // the relative test alone never deflates.
    let norm = d.iter().zip(e.iter()).fold(0.0, |m: f64, (a, b)| m.max(a.abs() + b.abs()));
    for l in 0..n {
        let mut iter = 0;
        loop {
            // Find the first negligible off-diagonal at or after l: the block l..=m splits off.
            let mut m = l;
            while m + 1 < n {
                let dd = d[m].abs() + d[m + 1].abs();
                if e[m].abs() <= f64::EPSILON * dd.max(norm * 1e-3) {
                    break;
                }
                m += 1;
            }
            if m == l {
                break;
            }
            if iter == MAX_QL_ITER {
                return Err(TopologyError::EigenNoConvergence { index: l, iterations: iter });
            }
            iter += 1;
            let mut g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            let mut r = g.hypot(1.0);
            g = d[m] - d[l] + e[l] / (g + if g >= 0.0 { r } else { -r });
            let (mut s, mut c, mut p) = (1.0, 1.0, 0.0);
            let mut underflow = false;
            for i in (l..m).rev() {
                let f = s * e[i];
                let b = c * e[i];
                r = f.hypot(g);
                e[i + 1] = r;
                if r == 0.0 {
                    // The rotation underflowed: deflate here and restart the sweep.
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    underflow = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
            }
            if underflow {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
    Ok(())
}

impl MixingMatrix {
    /// Eigenvalues, ascending, of `W - 11^T/n`: those of `W` with the consensus eigenvalue 1
    /// (eigenvector `1`) replaced by 0.
    pub fn centered_eigenvalues(&self) -> Result<Vec<f64>, TopologyError> {
        let n = self.n();
        if n <= 1 {
            // W = [1] exactly, so W - 11^T/n is the zero matrix.
            return Ok(vec![0.0; n]);
        }
        let mean = 1.0 / n as f64;
        let mut packed = vec![-mean; row_start(n)];
        for (i, row) in self.rows.iter().enumerate() {
            let start = row_start(i);
            for &(j, w) in row.iter().take_while(|&&(j, _)| j <= i) {
                packed[start + j] += w;
            }
        }
        packed_eigenvalues(packed, n)
    }

    /// `rho = ||W - 11^T/n||_2`, the largest `|eigenvalue|` of `W - 11^T/n`: the factor by
    /// which one gossip round contracts the disagreement between nodes. 0 for `n == 1`.
    ///
    /// # Panics
    /// If the eigenvalue iteration fails to converge, which does not happen for the finite
    /// symmetric matrices that validation admits; use
    /// [`MixingMatrix::centered_eigenvalues`] to get that case as an error.
    pub fn rho(&self) -> f64 {
        self.rho_checked().expect("QL iteration converges on a validated (finite, symmetric) mixing matrix")
    }

    /// `rho`, or the eigen-solver's error: exact to rounding from the dense solve up to
    /// [`DENSE_MAX`] nodes, to about [`RHO_TOL`] from Lanczos above (memory O(n), time
    /// O(edges) per step).
    pub fn rho_checked(&self) -> Result<f64, TopologyError> {
        if self.n() <= DENSE_MAX {
            let eig = self.centered_eigenvalues()?;
            return Ok(eig.iter().fold(0.0, |m: f64, &x| m.max(x.abs())));
        }
        largest_abs_eigenvalue(self, RHO_TOL)
    }

    /// `1 - rho`. Same panics as [`MixingMatrix::rho`].
    pub fn spectral_gap(&self) -> f64 {
        1.0 - self.rho()
    }
}

impl SymmetricOperator for MixingMatrix {
    fn n(&self) -> usize {
        MixingMatrix::n(self)
    }

    fn apply(&self, v: &[f64], out: &mut [f64]) {
        for (o, row) in out.iter_mut().zip(&self.rows) {
            *o = row.iter().map(|&(j, w)| w * v[j]).sum();
        }
    }
}

#[cfg(test)]
mod tests;
