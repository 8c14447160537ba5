//! The Huber objective against finite differences, on dense and sparse features, and the parts of
//! the `Objective` contract dprox relies on (every coordinate written, bit-identical repeats).

use std::sync::Arc;

use dprox_data::{Csr, Dataset, Features, InvalidDataset};
use dprox_example_custom_objective::{Huber, HuberError};
use dprox_objective::{Batch, Objective};

const DELTA: f64 = 0.5;

/// 8 samples of 3 features with about half the entries zero, dense and as CSR, and targets that
/// put some residuals in the quadratic part of the loss and some in the linear part.
fn twins() -> (Dataset, Dataset) {
    let rows: [[f32; 3]; 8] = [
        [1.0, 0.0, -0.5],
        [0.0, 2.0, 0.0],
        [0.3, 0.0, 0.0],
        [-1.0, 0.5, 1.5],
        [0.0, 0.0, 0.7],
        [2.0, -1.0, 0.0],
        [0.0, 0.4, -0.2],
        [0.9, 0.0, 0.0],
    ];
    let targets = vec![0.2, 3.0, -0.1, -2.5, 0.4, 1.0, 0.05, -4.0];
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let dense = ndarray::Array2::from_shape_vec((8, 3), flat).unwrap();
    let mut csr = Csr { rows: 8, cols: 3, indptr: vec![0], ..Csr::default() };
    for r in &rows {
        for (k, &v) in r.iter().enumerate() {
            if v != 0.0 {
                csr.indices.push(k as u32);
                csr.values.push(v);
            }
        }
        csr.indptr.push(csr.indices.len());
    }
    (
        Dataset { features: Features::Dense(dense), targets: targets.clone(), classes: None },
        Dataset { features: Features::Sparse(csr), targets, classes: None },
    )
}

const X: [f32; 4] = [0.4, -0.3, 0.8, 0.1];

/// Central differences of the loss, in f64, with the step actually taken in f32.
fn finite_differences(f: &mut Huber, x: &[f32], batch: Batch<'_>) -> Vec<f64> {
    let h = 1e-2f32;
    (0..x.len())
        .map(|k| {
            let (mut up, mut down) = (x.to_vec(), x.to_vec());
            up[k] += h;
            down[k] -= h;
            let step = f64::from(up[k]) - f64::from(down[k]);
            (f.loss(&up, batch) - f.loss(&down, batch)) / step
        })
        .collect()
}

fn residuals(data: &Dataset, x: &[f32]) -> Vec<f64> {
    let Features::Dense(m) = &data.features else { unreachable!("called on the dense twin") };
    m.rows()
        .into_iter()
        .zip(&data.targets)
        .map(|(row, &y)| {
            row.iter().zip(x).map(|(&a, &w)| f64::from(a) * f64::from(w)).sum::<f64>() + f64::from(x[3])
                - f64::from(y)
        })
        .collect()
}

#[test]
fn gradient_matches_finite_differences_on_dense_and_sparse_features() {
    let (dense, sparse) = twins();
    // Both parts of the loss are exercised, and no residual is within a step of the kink at
    // +-delta, where central differences would straddle two pieces.
    let r = residuals(&dense, &X);
    assert!(r.iter().any(|r| r.abs() < DELTA) && r.iter().any(|r| r.abs() > DELTA), "{r:?}");
    assert!(r.iter().all(|r| (r.abs() - DELTA).abs() > 0.1), "{r:?}");
    for data in [dense, sparse] {
        let mut f = Huber::new(Arc::new(data), DELTA).unwrap();
        assert_eq!((f.dim(), f.num_samples()), (4, 8));
        for batch in [Batch::Full, Batch::Indices(&[1, 3, 3, 6, 7])] {
            let mut g = vec![f32::NAN; 4];
            f.loss_grad(&X, batch, &mut g);
            let fd = finite_differences(&mut f, &X, batch);
            for (k, (&g, &d)) in g.iter().zip(&fd).enumerate() {
                assert!((f64::from(g) - d).abs() < 1e-4 * (1.0 + d.abs()), "coordinate {k}: {g} vs {d}");
            }
        }
    }
}

#[test]
fn dense_and_sparse_give_the_same_bits_and_repeats_are_identical() {
    let (dense, sparse) = twins();
    let (mut a, mut b) =
        (Huber::new(Arc::new(dense), DELTA).unwrap(), Huber::new(Arc::new(sparse), DELTA).unwrap());
    let (mut ga, mut gb, mut again) = (vec![0.0f32; 4], vec![0.0f32; 4], vec![9.0f32; 4]);
    let la = a.loss_grad(&X, Batch::Full, &mut ga);
    let lb = b.loss_grad(&X, Batch::Full, &mut gb);
    // Zero entries add exact zeros, so skipping them changes no bit.
    assert_eq!((la.to_bits(), &ga), (lb.to_bits(), &gb));
    // A different call in between, then the same one: the same bits, every coordinate rewritten.
    a.loss_grad(&[1.0; 4], Batch::Indices(&[0]), &mut again);
    let l2 = a.loss_grad(&X, Batch::Full, &mut again);
    assert_eq!((l2.to_bits(), &again), (la.to_bits(), &ga));
}

#[test]
fn the_loss_is_quadratic_inside_delta_and_linear_outside() {
    let data = Dataset {
        features: Features::Dense(ndarray::array![[0.0], [0.0]]),
        targets: vec![0.25, -3.0],
        classes: None,
    };
    let mut f = Huber::new(Arc::new(data), 1.0).unwrap();
    let mut g = [0.0f32; 2];
    // Residuals -0.25 (quadratic: 0.03125, slope -0.25) and 3 (linear: 2.5, slope clipped to 1).
    assert_eq!(f.loss_grad(&[0.0, 0.0], Batch::Indices(&[0]), &mut g), 0.03125);
    assert_eq!(g, [0.0, -0.25]);
    assert_eq!(f.loss_grad(&[0.0, 0.0], Batch::Indices(&[1]), &mut g), 2.5);
    assert_eq!(g, [0.0, 1.0]);
    assert_eq!(f.loss_grad(&[0.0, 0.0], Batch::Indices(&[]), &mut g), 0.0, "an empty batch is not NaN");
    assert_eq!(g, [0.0, 0.0]);
}

#[test]
fn bad_deltas_and_malformed_data_are_errors() {
    let (dense, sparse) = twins();
    for d in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(Huber::factory(d).is_err());
        assert!(matches!(Huber::new(Arc::new(dense.clone()), d), Err(HuberError::Delta(_))));
    }
    let Features::Sparse(mut csr) = sparse.features.clone() else { unreachable!() };
    csr.indices[2] = 7;
    let bad = Dataset { features: Features::Sparse(csr), ..sparse.clone() };
    assert_eq!(
        Huber::new(Arc::new(bad), 1.0).unwrap_err(),
        HuberError::Data(InvalidDataset::MalformedCsr {
            reason: "column index 7 is out of range for 3 columns".into()
        })
    );
    let short = Dataset { targets: vec![1.0], ..dense };
    assert_eq!(
        Huber::new(Arc::new(short), 1.0).unwrap_err(),
        HuberError::Data(InvalidDataset::TargetCount { rows: 8, targets: 1 })
    );
}
