//! Known values, batch semantics, representation independence, determinism and accuracy.

mod common;

use std::sync::Arc;

use common::*;
use dprox_data::{Dataset, Features};
use dprox_objective::{Activation, Batch, LeastSquares, Logistic, ModelKind, Objective, Softmax};
use ndarray::array;

fn loss_grad(f: &mut dyn Objective, x: &[f32], batch: Batch<'_>) -> (f64, Vec<f32>) {
    let mut g = vec![f32::NAN; f.dim()];
    let l = f.loss_grad(x, batch, &mut g);
    (l, g)
}

#[test]
fn softmax_at_zero_is_ln_c() {
    for c in [2, 3, 10] {
        let (dense, sparse) = twins(10, 13, 4, Some(c));
        for data in [&dense, &sparse] {
            let mut f = make(&spec(ModelKind::Softmax, &[], Activation::Relu, true), data);
            let x = vec![0.0; f.dim()];
            let (l, g) = loss_grad(f.as_mut(), &x, Batch::Indices(&[3]));
            assert_eq!(l, (c as f64).ln(), "one sample gives exactly ln C");
            let y = data.class_of(3);
            // d/db_j = 1/C - [j == y].
            let gb = &g[c * 4..];
            for (j, &v) in gb.iter().enumerate() {
                let want = 1.0 / c as f32 - if j == y { 1.0 } else { 0.0 };
                assert!((v - want).abs() < 1e-7, "bias gradient {j}: {v} vs {want}");
            }
            let full = f.loss(&x, Batch::Full);
            assert!((full - (c as f64).ln()).abs() < 1e-14, "{full}");
        }
    }
}

#[test]
fn logistic_at_zero_is_ln_2() {
    let (dense, _) = twins(11, 9, 3, Some(2));
    let mut f = Logistic::new(Arc::new(dense.clone()), true).unwrap();
    let x = vec![0.0; 4];
    let (l, g) = loss_grad(&mut f, &x, Batch::Full);
    assert!((l - 2f64.ln()).abs() < 1e-15, "{l}");
    // d/db = mean(sigmoid(0) - y) = 0.5 - mean(y).
    let ybar = dense.targets.iter().map(|&y| f64::from(y)).sum::<f64>() / 9.0;
    assert!((f64::from(g[3]) - (0.5 - ybar)).abs() < 1e-7);
}

/// Three points by hand: x = (1), (2), (3), y = 1, 2, 2; w = 0.5, b = 1: predictions 1.5, 2, 2.5,
/// residuals 0.5, 0, 0.5, loss = 0.5 * (0.25 + 0 + 0.25) / 3 = 1/12, dw = (0.5*1 + 0.5*3) / 3 = 2/3,
/// db = (0.5 + 0.5) / 3 = 1/3.
#[test]
fn least_squares_by_hand() {
    let data = Dataset {
        features: Features::Dense(array![[1.0], [2.0], [3.0]]),
        targets: vec![1.0, 2.0, 2.0],
        classes: None,
    };
    let sparse = Dataset { features: Features::Sparse(to_csr(&array![[1.0], [2.0], [3.0]])), ..data.clone() };
    for d in [data, sparse] {
        let mut f = LeastSquares::new(Arc::new(d), true).unwrap();
        let (l, g) = loss_grad(&mut f, &[0.5, 1.0], Batch::Full);
        assert!((l - 1.0 / 12.0).abs() < 1e-12, "{l}");
        assert!((g[0] - 2.0 / 3.0).abs() < 1e-6 && (g[1] - 1.0 / 3.0).abs() < 1e-6, "{g:?}");
    }
}

#[test]
fn logistic_is_stable_for_large_margins() {
    let data = Dataset {
        features: Features::Dense(array![[1.0], [1.0]]),
        targets: vec![1.0, 0.0],
        classes: Some(2),
    };
    let mut f = Logistic::new(Arc::new(data), false).unwrap();
    // z = 1000: sample 0 is right (loss ~e^-1000 = 0), sample 1 is wrong (loss 1000).
    let (l, g) = loss_grad(&mut f, &[1000.0], Batch::Full);
    assert_eq!(l, 500.0);
    assert_eq!(g[0], 0.5);
    let mut s = Softmax::new(
        Arc::new(Dataset { features: Features::Dense(array![[1.0]]), targets: vec![0.0], classes: Some(2) }),
        2,
        false,
    )
    .unwrap();
    let (l, g) = loss_grad(&mut s, &[-500.0, 500.0], Batch::Full);
    assert_eq!(l, 1000.0);
    assert_eq!(g, vec![-1.0, 1.0]);
}

/// A repeated index contributes twice to the mean: the same mean as the index alone.
#[test]
fn repeated_index_equals_single() {
    let (dense, sparse) = twins(12, 15, 5, Some(3));
    for spec in all_specs(Some(3)) {
        for data in [&dense, &sparse] {
            let mut f = make(&spec, data);
            let x = params(13, f.dim());
            for i in [0, 7, 14] {
                let a = loss_grad(f.as_mut(), &x, Batch::Indices(&[i, i]));
                let b = loss_grad(f.as_mut(), &x, Batch::Indices(&[i]));
                assert!((a.0 - b.0).abs() <= 1e-12 * b.0.abs(), "{spec:?}");
                assert!(
                    rel_err(&a.1, &b.1.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()) < 1e-6,
                    "{spec:?}"
                );
            }
        }
    }
}

#[test]
fn full_equals_all_indices() {
    for n in [14, 2100] {
        let (dense, sparse) = twins(14, n, 4, Some(3));
        let all: Vec<usize> = (0..n).collect();
        for spec in all_specs(Some(3)) {
            for data in [&dense, &sparse] {
                let mut f = make(&spec, data);
                let x = params(15, f.dim());
                let a = loss_grad(f.as_mut(), &x, Batch::Full);
                let b = loss_grad(f.as_mut(), &x, Batch::Indices(&all));
                // Same rows, same chunks, same order: the results agree exactly.
                assert_eq!(a.0.to_bits(), b.0.to_bits(), "{spec:?}");
                assert_eq!(a.1, b.1, "{spec:?}");
            }
        }
    }
}

#[test]
fn dense_and_sparse_agree() {
    let (dense, sparse) = twins(16, 40, 9, Some(4));
    let mb = [3, 9, 9, 0, 39];
    for spec in all_specs(Some(4)) {
        let (mut f, mut h) = (make(&spec, &dense), make(&spec, &sparse));
        let x = params(17, f.dim());
        for batch in [Batch::Full, Batch::Indices(&mb)] {
            let a = loss_grad(f.as_mut(), &x, batch);
            let b = loss_grad(h.as_mut(), &x, batch);
            assert!((a.0 - b.0).abs() <= 1e-5 * b.0.abs(), "{spec:?}");
            let e = rel_err(&a.1, &b.1.iter().map(|&v| f64::from(v)).collect::<Vec<_>>());
            assert!(e < 1e-5, "{spec:?}: {e}");
        }
        assert_eq!(f.accuracy(&x), h.accuracy(&x), "{spec:?}");
    }
}

#[test]
fn repeated_calls_are_bit_identical() {
    let (dense, sparse) = twins(18, 1500, 8, Some(3));
    let mb: Vec<usize> = (0..1500).rev().step_by(2).collect();
    for spec in all_specs(Some(3)) {
        for data in [&dense, &sparse] {
            let mut f = make(&spec, data);
            let x = params(19, f.dim());
            for batch in [Batch::Full, Batch::Indices(&mb), Batch::Indices(&mb[..10])] {
                let a = loss_grad(f.as_mut(), &x, batch);
                // A different batch in between must leave no trace in the scratch.
                loss_grad(f.as_mut(), &x, Batch::Indices(&[5]));
                let b = loss_grad(f.as_mut(), &x, batch);
                assert_eq!(a.0.to_bits(), b.0.to_bits(), "{spec:?}");
                assert!(a.1.iter().zip(&b.1).all(|(u, v)| u.to_bits() == v.to_bits()), "{spec:?}");
                // A fresh model gives the same numbers as a used one.
                let c = loss_grad(make(&spec, data).as_mut(), &x, batch);
                assert!(a.1.iter().zip(&c.1).all(|(u, v)| u.to_bits() == v.to_bits()), "{spec:?}");
            }
        }
    }
}

#[test]
fn loss_equals_loss_grad_loss() {
    let (dense, sparse) = twins(20, 30, 4, Some(2));
    for spec in all_specs(Some(2)) {
        for data in [&dense, &sparse] {
            let mut f = make(&spec, data);
            let x = params(21, f.dim());
            let (l, _) = loss_grad(f.as_mut(), &x, Batch::Indices(&[1, 2, 3]));
            assert_eq!(l.to_bits(), f.loss(&x, Batch::Indices(&[1, 2, 3])).to_bits(), "{spec:?}");
        }
    }
}

#[test]
fn empty_minibatch_gives_zero() {
    let (dense, _) = twins(22, 5, 3, Some(3));
    for spec in all_specs(Some(3)) {
        let mut f = make(&spec, &dense);
        let x = params(23, f.dim());
        let (l, g) = loss_grad(f.as_mut(), &x, Batch::Indices(&[]));
        assert_eq!(l, 0.0);
        assert!(g.iter().all(|&v| v == 0.0));
    }
}

#[test]
fn accuracy_by_hand() {
    // Features (1, 0), (0, 1), (1, 1), (0, 0); labels 0, 1, 0, 0.
    let m = array![[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]];
    let targets = vec![0.0, 1.0, 0.0, 0.0];
    let dense = Dataset { features: Features::Dense(m.clone()), targets: targets.clone(), classes: Some(2) };
    let sparse = Dataset { features: Features::Sparse(to_csr(&m)), targets, classes: Some(2) };
    for data in [dense, sparse] {
        let data = Arc::new(data);
        // Logistic: z = x1 - x0 = -1, 1, 0, 0 predicts 0, 1, 0, 0 (z = 0 is not > 0): all right.
        let mut f = Logistic::new(data.clone(), true).unwrap();
        assert_eq!(f.accuracy(&[-1.0, 1.0, 0.0]), Some(1.0));
        // z = -0.5, 1.5, 0.5, 0.5 predicts 0, 1, 1, 1: two right.
        assert_eq!(f.accuracy(&[-1.0, 1.0, 0.5]), Some(0.5));
        // Softmax, all logits equal: ties go to class 0, so three right.
        let mut s = Softmax::new(data.clone(), 2, true).unwrap();
        assert_eq!(s.accuracy(&[0.0; 6]), Some(0.75));
        // Class-1 logit = 0.5 x0 + x1 - 0.25 = 0.25, 0.75, 1.25, -0.25 against 0: predicts 1, 1, 1, 0.
        assert_eq!(s.accuracy(&[0.0, 0.0, 0.5, 1.0, 0.0, -0.25]), Some(0.5));
        // Three outputs (a label-skewed node), logits (-1, 0, 0): classes 1 and 2 tie, 1 wins.
        let mut s3 = Softmax::new(data.clone(), 3, true).unwrap();
        assert_eq!(s3.accuracy(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0]), Some(0.25));
        let mut ls = LeastSquares::new(data, true).unwrap();
        assert_eq!(ls.accuracy(&[0.0; 3]), None);
    }
}

#[test]
fn mlp_accuracy_counts_argmax() {
    // One relu unit h = relu(x0); logits (0, h - 0.5): class 1 iff x0 > 0.5.
    let m = array![[1.0, 0.0], [0.0, 1.0], [2.0, 5.0]];
    let data = Dataset { features: Features::Dense(m), targets: vec![1.0, 1.0, 0.0], classes: Some(2) };
    let mut f = make(&spec(ModelKind::Mlp, &[1], Activation::Relu, true), &data);
    // Layer 0: W (1x2) = [1, 0], b = 0; layer 1: W (2x1) = [0, 1], b = [0, -0.5].
    let x = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, -0.5];
    assert_eq!(f.dim(), 7);
    // Predictions 1, 0, 1 against labels 1, 1, 0.
    assert_eq!(f.accuracy(&x), Some(1.0 / 3.0));
}
