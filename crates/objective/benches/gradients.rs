//! Gradient kernels: samples per second for each built-in objective on MNIST-shaped data
//! (784 dense features, 10 classes), minibatch 256 and full batch of 4,096, plus a sparse logistic
//! case. The baseline in the same run is the raw GEMM the dense models are built on
//! (256 x 784 times 784 x 10), so `gradient / gemm` shows how close a model gets to the machine's
//! matrix throughput.
//!
//! The LeNet (28 x 28 images, default widths) has its own baseline: `gemm_baseline/lenet_256`
//! runs, on plain matrices, exactly the 14 GEMMs of one 256-sample gradient (4 chunks of 64:
//! 5 forward, 9 backward, same shapes and transposes), so `gemm / gradient` throughput is the
//! share of the LeNet's time spent in matrix products; the rest is im2col, col2im, pooling,
//! activations and the head.
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group};
use dprox_data::{Dataset, Features, SyntheticSpec, gaussian_mixture, sparse_logistic};
use dprox_objective::{Activation, Batch, ModelKind, ModelSpec, Shape, build};
use ndarray::{Array2, linalg::general_mat_mul};

/// Which operand of a LeNet GEMM is a transposed view, as in the model.
#[derive(Clone, Copy)]
enum Op {
    /// Forward, `out = input W^T`: the right operand is transposed.
    Forward,
    /// Weight gradient, `dW = d^T input`: the left operand is transposed.
    WeightGrad,
    /// Input gradient, `din = d W`: no transpose.
    InputGrad,
}

/// The GEMMs of one LeNet gradient chunk of `b` samples on 28 x 28 images with the default
/// widths: (m, k, n, op) of each `out (m x n) = A (m x k) B (k x n)`, in the model's order.
fn lenet_gemm_shapes(b: usize) -> Vec<(usize, usize, usize, Op)> {
    use Op::*;
    let (p1, p2) = (b * 28 * 28, b * 10 * 10);
    vec![
        // Forward: conv 1, conv 2 (im2col rows x patch times patch x channels), dense 400, 120, 84.
        (p1, 25, 6, Forward),
        (p2, 150, 16, Forward),
        (b, 400, 120, Forward),
        (b, 120, 84, Forward),
        (b, 84, 10, Forward),
        // Backward, top first: weight gradient, then input gradient; conv 1 needs no input gradient.
        (10, b, 84, WeightGrad),
        (b, 10, 84, InputGrad),
        (84, b, 120, WeightGrad),
        (b, 84, 120, InputGrad),
        (120, b, 400, WeightGrad),
        (b, 120, 400, InputGrad),
        (16, p2, 150, WeightGrad),
        (p2, 16, 150, InputGrad),
        (6, p1, 25, WeightGrad),
    ]
}

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
    // The LeNet's GEMMs for 256 samples: 4 chunks of 64.
    // Operands stored as the model stores them (a transposed operand is a view of a contiguous
    // matrix of the other shape).
    let mut mats: Vec<_> = lenet_gemm_shapes(64)
        .into_iter()
        .map(|(m, k, n, op)| {
            let (a, b) = match op {
                Op::Forward => ((m, k), (n, k)),
                Op::WeightGrad => ((k, m), (k, n)),
                Op::InputGrad => ((m, k), (k, n)),
            };
            (
                Array2::<f32>::from_elem(a, 0.5),
                Array2::<f32>::from_elem(b, 0.25),
                Array2::<f32>::zeros((m, n)),
                op,
            )
        })
        .collect();
    g.throughput(Throughput::Elements(256));
    g.bench_function("lenet_256", |bch| {
        bch.iter(|| {
            for _ in 0..4 {
                for (a, b, out, op) in mats.iter_mut() {
                    match op {
                        Op::Forward => general_mat_mul(1.0, &*a, &b.t(), 0.0, out),
                        Op::WeightGrad => general_mat_mul(1.0, &a.t(), &*b, 0.0, out),
                        Op::InputGrad => general_mat_mul(1.0, &*a, &*b, 0.0, out),
                    }
                }
            }
        })
    });
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
        ("lenet_relu_max", ModelSpec::new(ModelKind::LeNet), data.clone()),
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

/// GFLOP/s of `f` doing `flops` per call: the best of `reps` timed batches of calls (the
/// least disturbed by other load).
fn rate(flops: f64, reps: usize, mut f: impl FnMut()) -> f64 {
    let calls = 8;
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            (0..calls).for_each(|_| f());
            flops * calls as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

/// Gradient rates against the machine's GEMM rate, measured alternately in this run on one
/// thread (as a cluster node with a core of its own runs its gradient; "all threads" is the
/// default rayon pool, which the LeNet's chunks use): a 512^3 f32 GEMM, the LeNet-5 gradient at
/// batch 32 (the workload) and the MLP 784-64-10 at batch 256. FLOPs as the models
/// count them (`Objective::flops_per_sample`: the products only). Printed before criterion.
fn rates() {
    let data = Arc::new(gaussian_mixture(4096, 784, 10, 1.0, 1).unwrap().data);
    let shape = Shape::of(&data);
    let n = 512;
    let (a, b) = (Array2::<f32>::from_elem((n, n), 0.5), Array2::<f32>::from_elem((n, n), 0.25));
    let mut out = Array2::<f32>::zeros((n, n));
    let mlp = ModelSpec { hidden: vec![64], activation: Activation::Relu, ..ModelSpec::new(ModelKind::Mlp) };
    let mut models: Vec<_> =
        [("lenet, batch 32", ModelSpec::new(ModelKind::LeNet), 32), ("mlp 784-64-10, batch 256", mlp, 256)]
            .into_iter()
            .map(|(name, spec, batch)| {
                let obj = build(&spec, data.clone(), shape).unwrap();
                let x: Vec<f32> = (0..obj.dim()).map(|i| ((i % 13) as f32 - 6.0) * 1e-3).collect();
                let idx: Vec<usize> = (0..batch).map(|i| (i * 2654435761usize) % 4096).collect();
                (name, obj, x, idx)
            })
            .collect();
    // The LeNet runs its chunks on the rayon pool: measured on one thread, and on all.
    let single = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    println!(
        "gradient rates, one thread, 5 alternating rounds (GFLOP/s; ratio to the 512^3 GEMM of the round):"
    );
    for round in 0..5 {
        let gemm = rate(2.0 * (n * n * n) as f64, 5, || general_mat_mul(1.0, &a, &b, 0.0, &mut out));
        let mut line = format!("  round {round}: gemm 512^3 {gemm:.1}");
        for (name, obj, x, idx) in models.iter_mut() {
            let mut grad = vec![0.0f32; obj.dim()];
            let flops = obj.flops_per_sample() * idx.len() as f64;
            let mut r = || {
                rate(flops, 5, || {
                    black_box(obj.loss_grad(x, Batch::Indices(idx), &mut grad));
                })
            };
            let (one, all) = (single.install(&mut r), r());
            line += &format!(", {name} {one:.1} ({:.2}x; all threads {all:.1})", one / gemm);
        }
        println!("{line}");
    }
}

fn main() {
    // One GEMM thread, as in `dprox sim` and in a cluster node with a core of its own.
    if std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        // SAFETY: no other thread runs yet.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("MATMUL_NUM_THREADS", "1")
        };
    }
    rates();
    benches();
    Criterion::default().configure_from_args().final_summary();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
