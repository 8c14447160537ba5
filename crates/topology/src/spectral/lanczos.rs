//! The largest `|eigenvalue|` of a symmetric operator on the complement of the consensus
//! direction `1`, by Lanczos iteration: memory O(n), time O(edges) per step, so that a
//! 100,000-node graph's spectral gap costs what its gossip does, not the O(n^2) memory and
//! O(n^3) time of a dense eigen-solve.
//!
//! # Method
//!
//! Plain Lanczos on `A = P M P`, with `P = I - 11^T/n` applied to every new vector (rounding
//! would otherwise let the consensus eigenvector of `M`, eigenvalue 1, back in: it is the one
//! value the caller wants left out). No reorthogonalisation: it only costs the iteration
//! spurious copies of eigenvalues that have already converged, never a value outside the
//! spectrum, so the extreme Ritz values (the eigenvalues of the tridiagonal `T_k`) approach the
//! extreme eigenvalues from inside.
//!
//! # Stopping
//!
//! The extreme Ritz values are computed at steps growing by 3/2 (so the tridiagonal solves cost
//! O(k^2) in all). Lanczos converges at least as fast as a Chebyshev polynomial of degree k,
//! whose error at a spectrum's edge falls like 1/k^2 in the worst case: between two checks the
//! estimate then moves by more than half its remaining error, so a move below `tol / 2` bounds
//! the error by about `tol`. The iteration also stops when the Krylov space is exhausted
//! (`beta = 0`: the estimate is exact) or after `n` steps.

use super::tridiagonal_ql;
use crate::error::TopologyError;

/// Steps before the first convergence check.
const FIRST_CHECK: usize = 24;

/// A symmetric linear operator on `R^n`: `out = M v`.
pub trait SymmetricOperator {
    /// Dimension.
    fn n(&self) -> usize;
    /// `out = M v` (`out` is overwritten).
    fn apply(&self, v: &[f64], out: &mut [f64]);
}

/// `max |lambda|` over the eigenvalues of `op` on the complement of `1`, to about `tol`.
/// Deterministic: the start vector comes from a fixed generator.
pub fn largest_abs_eigenvalue<O: SymmetricOperator>(op: &O, tol: f64) -> Result<f64, TopologyError> {
    let n = op.n();
    if n <= 1 {
        return Ok(0.0);
    }
    let mut v = start_vector(n);
    let mut prev = vec![0.0; n];
    let mut w = vec![0.0; n];
    let (mut alpha, mut beta) = (Vec::new(), vec![0.0]);
    let (mut next_check, mut last) = (FIRST_CHECK, f64::NAN);
    loop {
        op.apply(&v, &mut w);
        center(&mut w);
        let a = dot(&w, &v);
        let b_prev = *beta.last().expect("starts with 0");
        for ((wi, &vi), &pi) in w.iter_mut().zip(&v).zip(&prev) {
            *wi -= a * vi + b_prev * pi;
        }
        alpha.push(a);
        let b = dot(&w, &w).sqrt();
        let k = alpha.len();
        // A zero (or negligible) beta: the Krylov space is invariant, T_k holds exact eigenvalues.
        let exhausted = b <= 1e-14 * (a.abs() + b_prev).max(1e-300) || k >= n;
        if exhausted || k >= next_check {
            let est = extreme_abs(&alpha, &beta)?;
            if exhausted || (est - last).abs() <= tol / 2.0 {
                return Ok(est);
            }
            last = est;
            next_check = k + k / 2;
        }
        beta.push(b);
        for ((pi, vi), &wi) in prev.iter_mut().zip(v.iter_mut()).zip(&w) {
            *pi = *vi;
            *vi = wi / b;
        }
    }
}

/// `max |theta|` over the eigenvalues of the tridiagonal with diagonal `alpha` and
/// off-diagonal `beta[1..]` (`beta[k]` couples steps `k - 1` and `k`).
fn extreme_abs(alpha: &[f64], beta: &[f64]) -> Result<f64, TopologyError> {
    let mut d = alpha.to_vec();
    let mut e = beta[..alpha.len()].to_vec();
    tridiagonal_ql(&mut d, &mut e)?;
    Ok(d.iter().fold(0.0, |m: f64, &x| m.max(x.abs())))
}

/// A unit vector orthogonal to `1`, from splitmix64 (fixed seed: the result is reproducible).
fn start_vector(n: usize) -> Vec<f64> {
    let mut z: u64 = 0x5EED_1A2C_705F_0001;
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^= x >> 31;
            (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
        .collect();
    center(&mut v);
    let norm = dot(&v, &v).sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// `v <- v - mean(v) 1`.
fn center(v: &mut [f64]) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    v.iter_mut().for_each(|x| *x -= mean);
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
