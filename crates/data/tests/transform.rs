//! Scaling, the train/test split, and the synthetic generators.

use dprox_data::{
    Csr, DataError, Dataset, Features, Scale, SyntheticSpec, fit_scaler, gaussian_mixture, least_squares,
    sparse_logistic, split_test,
};
use ndarray::{Array2, array};

fn dense_set(m: Array2<f32>) -> Dataset {
    let n = m.nrows();
    Dataset { features: Features::Dense(m), targets: (0..n).map(|i| i as f32).collect(), classes: None }
}

fn matrix(d: &Dataset) -> &Array2<f32> {
    match &d.features {
        Features::Dense(m) => m,
        Features::Sparse(_) => panic!("expected dense"),
    }
}

fn sparse_set() -> Dataset {
    // [[-4, 0, 0], [0, 0, 2], [2, 0, -1]]
    let csr = Csr {
        rows: 3,
        cols: 3,
        indptr: vec![0, 1, 2, 4],
        indices: vec![0, 2, 0, 2],
        values: vec![-4.0, 2.0, 2.0, -1.0],
    };
    Dataset { features: Features::Sparse(csr), targets: vec![0.0, 1.0, 0.0], classes: Some(2) }
}

#[test]
fn standardize_uses_train_statistics_on_test() {
    let mut train = dense_set(array![[1.0, 10.0], [3.0, 10.0]]);
    let mut test = dense_set(array![[5.0, 12.0]]);
    let s = fit_scaler(&train, Scale::Standardize).unwrap();
    assert_eq!(s.shift(), &[2.0, 10.0]);
    assert_eq!(s.factor(), &[1.0, 1.0]); // std 1 and std 0 (left centred only)
    s.apply(&mut train).unwrap();
    s.apply(&mut test).unwrap();
    assert_eq!(matrix(&train), &array![[-1.0, 0.0], [1.0, 0.0]]);
    assert_eq!(matrix(&test), &array![[3.0, 2.0]]);

    let mut wide = dense_set(array![[1.0, 2.0, 3.0]]);
    let e = s.apply(&mut wide).unwrap_err();
    assert!(e.to_string().contains("fitted on 2 features but the data set has 3"), "{e}");
}

#[test]
fn maxabs_and_factor_dense_and_sparse() {
    let mut train = dense_set(array![[-4.0, 0.0], [2.0, 0.0]]);
    let mut test = dense_set(array![[8.0, 3.0]]);
    let s = fit_scaler(&train, Scale::MaxAbs).unwrap();
    s.apply(&mut train).unwrap();
    s.apply(&mut test).unwrap();
    assert_eq!(matrix(&train), &array![[-1.0, 0.0], [0.5, 0.0]]);
    assert_eq!(matrix(&test), &array![[2.0, 3.0]]);

    let mut sp = sparse_set();
    fit_scaler(&sp, Scale::MaxAbs).unwrap().apply(&mut sp).unwrap();
    let Features::Sparse(c) = &sp.features else { panic!() };
    assert_eq!(c.values, vec![-1.0, 1.0, 0.5, -0.5]);
    assert_eq!(c.indices, vec![0, 2, 0, 2]);

    let mut sp = sparse_set();
    fit_scaler(&sp, Scale::Factor(0.5)).unwrap().apply(&mut sp).unwrap();
    let Features::Sparse(c) = &sp.features else { panic!() };
    assert_eq!(c.values, vec![-2.0, 1.0, 1.0, -0.5]);

    let mut d = dense_set(array![[255.0, 51.0]]);
    fit_scaler(&d, Scale::Factor(1.0 / 255.0)).unwrap().apply(&mut d).unwrap();
    let m = matrix(&d);
    assert!(m[[0, 0]] == 1.0 && (m[[0, 1]] - 0.2).abs() < 1e-6, "{m}");
    let before = dense_set(array![[3.0]]);
    let mut after = before.clone();
    fit_scaler(&before, Scale::None).unwrap().apply(&mut after).unwrap();
    assert_eq!(before, after);
    assert!(fit_scaler(&before, Scale::Factor(f32::NAN)).is_err());
}

#[test]
fn standardize_refuses_sparse_data() {
    let e = fit_scaler(&sparse_set(), Scale::Standardize).unwrap_err();
    assert!(matches!(e, DataError::SparseStandardize));
    assert!(e.to_string().contains("sparse") && e.to_string().contains("MaxAbs"), "{e}");
}

#[test]
fn split_is_seeded_disjoint_and_order_preserving() {
    let data = dense_set(Array2::from_shape_fn((10, 1), |(i, _)| i as f32));
    let (train, test) = split_test(&data, 0.3, 5).unwrap();
    assert_eq!((train.len(), test.len()), (7, 3));
    let mut all: Vec<f32> = train.targets.iter().chain(&test.targets).copied().collect();
    assert!(train.targets.windows(2).all(|w| w[0] < w[1]));
    assert!(test.targets.windows(2).all(|w| w[0] < w[1]));
    all.sort_by(f32::total_cmp);
    assert_eq!(all, (0..10).map(|i| i as f32).collect::<Vec<_>>());
    // Features travel with their targets.
    assert_eq!(matrix(&test).column(0).to_vec(), test.targets);
    assert_eq!(split_test(&data, 0.3, 5).unwrap(), (train.clone(), test.clone()));
    assert_ne!(split_test(&data, 0.3, 6).unwrap().1, test);

    let (train, test) = split_test(&data, 0.0, 5).unwrap();
    assert_eq!((train.len(), test.len()), (10, 0));
    for f in [1.0, -0.1, f64::NAN, 1.5] {
        let e = split_test(&data, f, 0).unwrap_err();
        assert!(e.to_string().contains(&format!("test fraction {f}")), "{e}");
    }
    // 0.01 * 10 rounds to 0 test samples, 0.96 * 10 to 10: both leave one side empty.
    for f in [0.01, 0.96] {
        let e = split_test(&data, f, 0).unwrap_err();
        assert!(e.to_string().contains("must be non-empty"), "{e}");
    }
}

#[test]
fn sparse_logistic_shape_and_determinism() {
    let spec = SyntheticSpec { samples: 200, features: 50, density: 0.1, support: 7, noise: 0.0, seed: 11 };
    let s = sparse_logistic(&spec).unwrap();
    assert_eq!(s, sparse_logistic(&spec).unwrap());
    assert_ne!(s, sparse_logistic(&SyntheticSpec { seed: 12, ..spec.clone() }).unwrap());
    assert_eq!(s.data.classes, Some(2));
    assert_eq!(s.data.len(), 200);
    assert!(s.data.targets.iter().all(|&y| y == 0.0 || y == 1.0));
    assert_eq!(s.planted.len(), 50);
    assert_eq!(s.planted.iter().filter(|&&w| w != 0.0).count(), 7);
    let Features::Sparse(c) = &s.data.features else { panic!("density < 1 is sparse") };
    assert_eq!((c.rows, c.cols), (200, 50));
    for r in 0..c.rows {
        let (ix, _) = c.row(r);
        assert_eq!(ix.len(), 5);
        assert!(ix.windows(2).all(|w| w[0] < w[1]) && ix.iter().all(|&j| j < 50));
    }
    // Tiny density still gives one nonzero per row.
    let one = sparse_logistic(&SyntheticSpec { density: 0.001, ..spec.clone() }).unwrap();
    let Features::Sparse(c) = &one.data.features else { panic!() };
    assert_eq!(c.indices.len(), 200);
}

#[test]
fn dense_logistic_labels_follow_the_planted_margin() {
    let spec = SyntheticSpec { samples: 4000, features: 20, density: 1.0, support: 20, noise: 0.0, seed: 3 };
    let s = sparse_logistic(&spec).unwrap();
    let m = matrix(&s.data);
    assert_eq!(m.dim(), (4000, 20));
    let agree = (0..4000)
        .filter(|&i| {
            let margin: f32 = m.row(i).iter().zip(&s.planted).map(|(x, w)| x * w).sum();
            (margin > 0.0) == (s.data.targets[i] == 1.0)
        })
        .count();
    // Margins of variance about 1: the Bayes classifier is right E[sigmoid(|Z|)] ~ 67.5% of the
    // time (against 50% for labels unrelated to w*).
    assert!((2500..2950).contains(&agree), "{agree}");
}

#[test]
fn least_squares_targets_are_the_planted_model() {
    let spec = SyntheticSpec { samples: 100, features: 30, density: 1.0, support: 5, noise: 0.0, seed: 4 };
    let s = least_squares(&spec).unwrap();
    assert_eq!(s.data.classes, None);
    // Same spec, same design and w* as the logistic problem.
    let l = sparse_logistic(&spec).unwrap();
    assert_eq!((&s.data.features, &s.planted), (&l.data.features, &l.planted));
    let m = matrix(&s.data);
    for i in 0..100 {
        let y: f32 = m.row(i).iter().zip(&s.planted).map(|(x, w)| x * w).sum();
        assert!((y - s.data.targets[i]).abs() < 1e-4, "{y} vs {}", s.data.targets[i]);
    }
    let noisy = least_squares(&SyntheticSpec { noise: 1.0, ..spec.clone() }).unwrap();
    assert_ne!(noisy.data.targets, s.data.targets);
    for bad in [
        SyntheticSpec { density: 0.0, ..spec.clone() },
        SyntheticSpec { density: 1.5, ..spec.clone() },
        SyntheticSpec { support: 31, ..spec.clone() },
        SyntheticSpec { samples: 0, ..spec.clone() },
        SyntheticSpec { noise: -1.0, ..spec.clone() },
    ] {
        let e = least_squares(&bad).unwrap_err();
        assert!(e.to_string().contains("synthetic spec"), "{e}");
    }
    assert!(least_squares(&SyntheticSpec::default()).is_ok());
}

#[test]
fn gaussian_mixture_is_balanced_and_centred() {
    let s = gaussian_mixture(3000, 4, 3, 5.0, 8).unwrap();
    assert_eq!(s, gaussian_mixture(3000, 4, 3, 5.0, 8).unwrap());
    assert_ne!(s, gaussian_mixture(3000, 4, 3, 5.0, 9).unwrap());
    assert_eq!(s.data.classes, Some(3));
    assert_eq!(s.data.class_counts(), vec![1000; 3]);
    assert_eq!(s.planted.len(), 12);
    let m = matrix(&s.data);
    for c in 0..3 {
        for j in 0..4 {
            let mean: f32 = (c..3000).step_by(3).map(|i| m[[i, j]]).sum::<f32>() / 1000.0;
            assert!((mean - s.planted[c * 4 + j]).abs() < 0.15, "class {c} feature {j}");
        }
    }
    assert!(gaussian_mixture(10, 2, 0, 1.0, 0).is_err());
    assert!(gaussian_mixture(10, 2, 2, f64::NAN, 0).is_err());
}
