//! Gradient checks of every built-in model (logistic, least squares, softmax, the MLP with each
//! activation, the LeNet with each activation and pooling):
//!
//! 1. the model's loss and gradient against the plain-loop f64 reference of `common`, on dense
//!    and sparse data, full and minibatch (tight: only f32 rounding separates them);
//! 2. the reference's gradient against f64 central differences of the reference's loss, on a
//!    random subset of coordinates, so that a formula misread the same way in both cannot pass 1;
//! 3. the model's gradient directly against central differences of its own loss, on a random
//!    subset of coordinates, dense and sparse (coarser, f32, but independent of the reference).

mod common;

use std::sync::Arc;

use common::*;
use dprox_data::{Dataset, Features};
use dprox_objective::{Activation, Batch, LeNetArch, ModelKind, ModelSpec, Pool, Shape, build};

/// LeNet test images: 2 channels of 19 x 16, not square, so that both pools drop an odd row
/// (19 -> 9 -> 5 -> 2 rows, 16 -> 8 -> 4 -> 2 columns) and the input channels are interleaved.
const IMAGE: [usize; 3] = [2, 19, 16];

/// Checks every spec on random data with `classes`, over the full batch and a minibatch with
/// repeats, on both representations.
fn check_all(seed: u64, n: usize, p: usize, classes: Option<usize>) {
    let (dense, sparse) = twins(seed, n, p, classes);
    let minibatch: Vec<usize> = (0..n).step_by(3).chain([1, 1, n - 1]).collect();
    let full: Vec<usize> = (0..n).collect();
    // Every sample twice, in reverse: a minibatch of more than one chunk when n > CHUNK / 2.
    let long: Vec<usize> = (0..n).rev().flat_map(|i| [i, i]).collect();
    for spec in all_specs(classes) {
        for data in [&dense, &sparse] {
            let mut f = make(&spec, data);
            let x = params(seed + 1, f.dim());
            let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            for (batch, idx) in [
                (Batch::Full, &full),
                (Batch::Indices(&minibatch), &minibatch),
                (Batch::Indices(&long), &long),
            ] {
                let mut g = vec![f32::NAN; f.dim()];
                let loss = f.loss_grad(&x, batch, &mut g);
                let (rl, rg) = reference(&spec, data, &x64, idx);
                let what = format!(
                    "{spec:?} sparse={} batch={batch:?}",
                    matches!(data.features, dprox_data::Features::Sparse(_))
                );
                assert!((loss - rl).abs() <= 1e-6 * rl.abs().max(1.0), "{what}: loss {loss} vs {rl}");
                let e = rel_err(&g, &rg);
                assert!(e < 1e-5, "{what}: gradient relative error {e}");
            }
        }
    }
}

#[test]
fn binary_models_match_reference() {
    check_all(1, 23, 6, Some(2));
}

#[test]
fn multiclass_models_match_reference() {
    check_all(2, 31, 7, Some(4));
}

#[test]
fn regression_matches_reference() {
    check_all(3, 17, 5, None);
}

/// More samples than one chunk, so the chunked accumulation and the gather of several chunks run.
#[test]
fn several_chunks_match_reference() {
    check_all(4, 2600, 3, Some(3));
}

/// The LeNet against its reference: more samples than one of its chunks (64), a minibatch with
/// repeats and one of several chunks, dense and sparse images, every activation and pooling.
#[test]
fn lenet_matches_reference() {
    let n = 70;
    let (dense, sparse) = twins(40, n, IMAGE.iter().product(), Some(3));
    let minibatch: Vec<usize> = (0..n).step_by(4).chain([1, 1, n - 1]).collect();
    let full: Vec<usize> = (0..n).collect();
    let long: Vec<usize> = (0..n).rev().flat_map(|i| [i, i]).collect();
    for spec in lenet_specs(IMAGE) {
        for data in [&dense, &sparse] {
            let mut f = make(&spec, data);
            let x = params(41, f.dim());
            let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            for (batch, idx) in [
                (Batch::Full, &full),
                (Batch::Indices(&minibatch), &minibatch),
                (Batch::Indices(&long), &long),
            ] {
                let mut g = vec![f32::NAN; f.dim()];
                let loss = f.loss_grad(&x, batch, &mut g);
                let (rl, rg) = reference(&spec, data, &x64, idx);
                let what = format!("{spec:?} sparse={} batch of {}", is_sparse(data), idx.len());
                assert!((loss - rl).abs() <= 1e-6 * rl.abs().max(1.0), "{what}: loss {loss} vs {rl}");
                // Sums of up to 70 x 304 products in f32 GEMMs: 1e-5 relative, with margin.
                let e = rel_err(&g, &rg);
                assert!(e < 2e-5, "{what}: gradient relative error {e}");
            }
        }
    }
}

fn is_sparse(data: &Dataset) -> bool {
    matches!(data.features, Features::Sparse(_))
}

/// Every built-in model on data it accepts: each spec of `all_specs` on binary, 3-class and
/// regression data of `p` features, and the LeNets on `IMAGE`s.
fn every_model(seed: u64, n: usize, p: usize) -> Vec<(ModelSpec, Dataset, Dataset)> {
    let mut cases = Vec::new();
    for classes in [Some(2), Some(3), None] {
        let (dense, sparse) = twins(seed, n, p, classes);
        for spec in all_specs(classes) {
            // Least squares runs once, on regression targets.
            if spec.kind != ModelKind::LeastSquares || classes.is_none() {
                cases.push((spec, dense.clone(), sparse.clone()));
            }
        }
    }
    let (dense, sparse) = twins(seed, n, IMAGE.iter().product(), Some(3));
    for spec in lenet_specs(IMAGE) {
        cases.push((spec, dense.clone(), sparse.clone()));
    }
    cases
}

/// A seeded random subset of the coordinates of `spec`'s parameters: for a LeNet, up to 6 weights
/// and 2 biases of every layer (so that no layer goes unchecked); otherwise up to 24 coordinates.
fn coordinates(spec: &ModelSpec, shape: Shape, dim: usize, seed: u64) -> Vec<usize> {
    let mut rng = dprox_rng::stream(seed, &[0xfd]);
    let mut pick = |lo: usize, len: usize, k: usize| -> Vec<usize> {
        let mut all: Vec<usize> = (lo..lo + len).collect();
        rng.shuffle(&mut all);
        all.truncate(k);
        all
    };
    if spec.kind != ModelKind::LeNet {
        return pick(0, dim, 24);
    }
    let mut out = Vec::new();
    for l in LeNetArch::from_spec(spec, shape).unwrap().layers() {
        let w = l.inputs * l.outputs;
        out.extend(pick(l.offset, w, 6));
        if spec.bias {
            out.extend(pick(l.offset + w, l.outputs, 2));
        }
    }
    out
}

/// Relu and max pooling are piecewise smooth: a difference step that crosses a kink measures a
/// mix of two slopes.
fn piecewise(spec: &ModelSpec) -> bool {
    spec.activation == Activation::Relu || (spec.kind == ModelKind::LeNet && spec.pool == Pool::Max)
}

/// The reference's gradient against f64 central differences of the reference's loss with step
/// 1e-6, on a random subset of coordinates for the LeNets (all of them for the small models).
///
/// Tolerance |fd - g| < 1e-6 (1 + |g|): the truncation error is h^2 |f'''| / 6 ~ 1e-12 and the
/// rounding error eps |f| / h ~ 1e-10, so 1e-6 only fails on a wrong formula. With relu or max
/// pooling a step of 1e-6 crosses a kink only if a pre-activation (or the gap between two pooled
/// values) is within 1e-6 of it, which the fixed seeds here avoid.
#[test]
fn reference_gradient_matches_finite_differences() {
    for (spec, dense, _) in every_model(5, 9, 4) {
        let idx: Vec<usize> = (0..dense.len()).collect();
        let dim = make(&spec, &dense).dim();
        let coords = if spec.kind == ModelKind::LeNet {
            coordinates(&spec, Shape::of(&dense), dim, 6)
        } else {
            (0..dim).collect()
        };
        let x: Vec<f64> = params(6, dim).iter().map(|&v| f64::from(v)).collect();
        let (_, g) = reference(&spec, &dense, &x, &idx);
        let h = 1e-6;
        for k in coords {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[k] += h;
            xm[k] -= h;
            let fd =
                (reference(&spec, &dense, &xp, &idx).0 - reference(&spec, &dense, &xm, &idx).0) / (2.0 * h);
            assert!(
                (fd - g[k]).abs() < 1e-6 * (1.0 + g[k].abs()),
                "{spec:?} coordinate {k}: fd {fd} vs {}",
                g[k]
            );
        }
    }
}

/// Every built-in model's own gradient against central differences of its own loss, on dense and
/// sparse data, full batch, over a random subset of coordinates.
///
/// The models compute in f32, so the step is h = 1e-3 and the quotient is taken in f64 over the
/// step actually representable in f32. Error budget per coordinate: f32 rounding of the loss,
/// about 1e-7 relative to the O(1) loss, divided by 2h gives ~5e-5; the truncation error
/// h^2 |f'''| / 6 is ~1e-7. The tolerance |fd - g| <= 3e-4 + 1e-2 |g| is 6x that noise floor,
/// while any real mistake (a missing term, a transposed or mis-offset weight, a wrong pooling
/// route) changes coordinates by their own size.
///
/// For piecewise models (relu, max pooling) a step can cross a kink; such coordinates are
/// recognised by their one-sided differences disagreeing, and skipped, with at most a quarter of
/// the coordinates of a model allowed to be skipped.
#[test]
fn every_model_gradient_matches_finite_differences() {
    for (spec, dense, sparse) in every_model(7, 12, 4) {
        for data in [&dense, &sparse] {
            let mut f = build(&spec, Arc::new(data.clone()), Shape::of(data)).unwrap();
            let x = params(8, f.dim());
            let mut g = vec![0.0; f.dim()];
            let l0 = f.loss_grad(&x, Batch::Full, &mut g);
            let coords = coordinates(&spec, Shape::of(data), f.dim(), 9);
            let what = format!("{spec:?} sparse={}", is_sparse(data));
            let mut checked = 0;
            for &k in &coords {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[k] += 1e-3;
                xm[k] -= 1e-3;
                let (lp, lm) = (f.loss(&xp, Batch::Full), f.loss(&xm, Batch::Full));
                let (hp, hm) = (f64::from(xp[k] - x[k]), f64::from(x[k] - xm[k]));
                let fd = (lp - lm) / (hp + hm);
                let tol = 3e-4 + 1e-2 * f64::from(g[k]).abs();
                if piecewise(&spec) && ((lp - l0) / hp - (l0 - lm) / hm).abs() > 2.0 * tol {
                    continue; // a kink between x - h and x + h
                }
                checked += 1;
                let err = (fd - f64::from(g[k])).abs();
                assert!(err <= tol, "{what} coordinate {k}: fd {fd} vs {}", g[k]);
            }
            assert!(
                4 * checked >= 3 * coords.len(),
                "{what}: only {checked} of {} coordinates checked",
                coords.len()
            );
        }
    }
}
