//! Gradient kernels: samples per second for each built-in objective on MNIST-shaped data
//! (784 dense features, 10 classes), minibatch 256 and full batch of 4,096, plus a sparse logistic
//! case. The baseline in the same run is the raw GEMM the dense models are built on
//! (256 x 784 times 784 x 10), so `gradient / gemm` shows how close a model gets to the machine's
//! matrix throughput.
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dprox_data::{Dataset, Features, SyntheticSpec, gaussian_mixture, sparse_logistic};
use dprox_objective::{Activation, Batch, ModelKind, ModelSpec, Shape, build};
use ndarray::{Array2, linalg::general_mat_mul};

fn bench(c: &mut Criterion) {
    let data = Arc::new(gaussian_mixture(4096, 784, 10, 1.0, 1).unwrap().data);
    let shape = Shape::of(&data);
    let idx: Vec<usize> = (0..256).map(|i| (i * 2654435761usize) % 4096).collect();

    let mut g = c.benchmark_group("gemm_baseline");
    let a = Array2::<f32>::from_elem((256, 784), 0.5);
    let b = Array2::<f32>::from_elem((784, 10), 0.25);
    let mut out = Array2::<f32>::zeros((256, 10));
    g.throughput(Throughput::Elements(256));
    g.bench_function("256x784x10", |bch| bch.iter(|| general_mat_mul(1.0, &a, &b, 0.0, &mut out)));
    g.finish();

    let mut g = c.benchmark_group("gradient");
    let binary = Arc::new(Dataset {
        targets: data.targets.iter().map(|&t| (t as usize % 2) as f32).collect(),
        classes: Some(2),
        ..(*data).clone()
    });
    let regression = Arc::new(Dataset { classes: None, ..(*data).clone() });
    let cases = [
        ("logistic", ModelSpec::new(ModelKind::Logistic), binary.clone()),
        ("least_squares", ModelSpec::new(ModelKind::LeastSquares), regression.clone()),
        ("softmax", ModelSpec::new(ModelKind::Softmax), data.clone()),
        (
            "mlp_64_relu",
            ModelSpec { hidden: vec![64], activation: Activation::Relu, ..ModelSpec::new(ModelKind::Mlp) },
            data.clone(),
        ),
    ];
    for (name, spec, ds) in cases {
        let shape = Shape { classes: ds.classes, ..shape };
        let mut obj = build(&spec, ds.clone(), shape).unwrap();
        let x: Vec<f32> = (0..obj.dim()).map(|i| ((i % 13) as f32 - 6.0) * 1e-3).collect();
        let mut grad = vec![0.0f32; obj.dim()];
        g.throughput(Throughput::Elements(256));
        g.bench_function(format!("{name}/batch256"), |b| {
            b.iter(|| black_box(obj.loss_grad(&x, Batch::Indices(&idx), &mut grad)))
        });
        g.throughput(Throughput::Elements(4096));
        g.bench_function(format!("{name}/full4096"), |b| {
            b.iter(|| black_box(obj.loss_grad(&x, Batch::Full, &mut grad)))
        });
    }
    let sparse = Arc::new(
        sparse_logistic(&SyntheticSpec {
            samples: 4096,
            features: 100_000,
            density: 0.001,
            support: 50,
            ..Default::default()
        })
        .unwrap()
        .data,
    );
    assert!(matches!(sparse.features, Features::Sparse(_)));
    let mut obj = build(&ModelSpec::new(ModelKind::Logistic), sparse.clone(), Shape::of(&sparse)).unwrap();
    let x = vec![0.01f32; obj.dim()];
    let mut grad = vec![0.0f32; obj.dim()];
    g.throughput(Throughput::Elements(4096));
    g.bench_function("logistic_sparse_1e5x100nnz/full4096", |b| {
        b.iter(|| black_box(obj.loss_grad(&x, Batch::Full, &mut grad)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
