//! Every model's loss and gradient against the plain-loop f64 reference of `common`, on dense and
//! sparse data, full and minibatch; and the reference itself against finite differences.

mod common;

use common::*;
use dprox_objective::{Batch, ModelKind};

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

/// The reference's gradient is itself checked against f64 central differences, so that a shared
/// misreading of a formula cannot pass the comparisons above.
#[test]
fn reference_gradient_matches_finite_differences() {
    for classes in [Some(2), Some(3), None] {
        let (dense, _) = twins(5, 9, 4, classes);
        let idx: Vec<usize> = (0..dense.len()).collect();
        for spec in all_specs(classes) {
            let dim = make(&spec, &dense).dim();
            let x: Vec<f64> = params(6, dim).iter().map(|&v| f64::from(v)).collect();
            let (_, g) = reference(&spec, &dense, &x, &idx);
            let h = 1e-6;
            for k in 0..dim {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[k] += h;
                xm[k] -= h;
                let fd = (reference(&spec, &dense, &xp, &idx).0 - reference(&spec, &dense, &xm, &idx).0)
                    / (2.0 * h);
                assert!(
                    (fd - g[k]).abs() < 1e-6 * (1.0 + g[k].abs()),
                    "{spec:?} coordinate {k}: fd {fd} vs {}",
                    g[k]
                );
            }
        }
    }
}

/// A direct finite-difference check of the f32 models (coarser, but independent of the reference).
#[test]
fn model_gradient_matches_finite_differences() {
    let (dense, sparse) = twins(7, 12, 4, Some(3));
    for spec in all_specs(Some(3)) {
        if spec.kind == ModelKind::Mlp && spec.activation == dprox_objective::Activation::Relu {
            continue; // kinks make f32 differences of a ReLU net unreliable; the reference covers it
        }
        for data in [&dense, &sparse] {
            let mut f = make(&spec, data);
            let x = params(8, f.dim());
            let mut g = vec![0.0; f.dim()];
            f.loss_grad(&x, Batch::Full, &mut g);
            let eps = 1e-3f32;
            let fd: Vec<f64> = (0..x.len())
                .map(|k| {
                    let (mut xp, mut xm) = (x.clone(), x.clone());
                    xp[k] += eps;
                    xm[k] -= eps;
                    let (lp, lm) = (f.loss(&xp, Batch::Full), f.loss(&xm, Batch::Full));
                    (lp - lm) / f64::from(xp[k] - xm[k])
                })
                .collect();
            let e = rel_err(&g, &fd);
            assert!(e < 1e-2, "{spec:?}: relative error {e}");
        }
    }
}
