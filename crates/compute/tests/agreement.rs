//! One test body per device (candle's `test_device!`): every model built on the device must give
//! the CPU objective's loss, gradient and accuracy within 1e-4 relative, be deterministic, and
//! reuse its buffers. On the CPU the body checks the dispatch itself (the reference is the same
//! code); the CUDA twin runs only where a CUDA device opens, and otherwise prints
//! "skipping: no CUDA device (<reason>)" and returns (or fails, when `DPROX_REQUIRE_CUDA` is set,
//! as `scripts/gpu-check.sh` does on a GPU machine).

use std::sync::Arc;

use dprox_compute::{Backend, Device, build_on};
use dprox_data::{Csr, Dataset, Features};
use dprox_objective::{Activation, Batch, ModelKind, ModelSpec, Objective, Pool, Shape};
use ndarray::Array2;

/// Relative tolerance of the device against the CPU: the GPU sums in another order (cuBLAS
/// blocking, tree reductions), so agreement is to f32 rounding, not bitwise.
const TOL: f64 = 1e-4;

/// Runs `$body(&backend)` on the CPU, and on CUDA device 0 when one opens.
macro_rules! test_device {
    ($body:ident, $cpu:ident, $cuda:ident) => {
        #[test]
        fn $cpu() {
            $body(&Backend::Cpu);
        }

        #[test]
        fn $cuda() {
            match Backend::open(Device::Cuda(0)) {
                Ok(backend) => $body(&backend),
                // scripts/gpu-check.sh sets DPROX_REQUIRE_CUDA: there a skip would hide a failure.
                Err(e) if std::env::var_os("DPROX_REQUIRE_CUDA").is_some() => {
                    panic!("no CUDA device ({e}), and DPROX_REQUIRE_CUDA is set")
                }
                Err(e) => println!("skipping: no CUDA device ({e})"),
            }
        }
    };
}

/// Random data: `n` samples of `p` features (about a third zero), labels in `0..classes` or real
/// targets for regression.
fn data(seed: u64, n: usize, p: usize, classes: Option<usize>) -> Dataset {
    let mut rng = dprox_rng::stream(seed, &[3]);
    let m =
        Array2::from_shape_fn((n, p), |_| if rng.uniform_f64() < 0.33 { 0.0 } else { rng.normal() as f32 });
    let targets = (0..n)
        .map(|_| match classes {
            Some(k) => rng.below_usize(k) as f32,
            None => rng.normal() as f32 * 2.0,
        })
        .collect();
    Dataset { features: Features::Dense(m), targets, classes }
}

/// The same data in CSR form.
fn sparse(d: &Dataset) -> Dataset {
    let Features::Dense(m) = &d.features else { unreachable!() };
    let mut c = Csr { rows: m.nrows(), cols: m.ncols(), indptr: vec![0], ..Csr::default() };
    for row in m.rows() {
        for (j, &v) in row.iter().enumerate() {
            if v != 0.0 {
                c.indices.push(j as u32);
                c.values.push(v);
            }
        }
        c.indptr.push(c.indices.len());
    }
    Dataset { features: Features::Sparse(c), targets: d.targets.clone(), classes: d.classes }
}

fn params(seed: u64, dim: usize) -> Vec<f32> {
    let mut rng = dprox_rng::stream(seed, &[11]);
    (0..dim).map(|_| rng.uniform_f32() - 0.5).collect()
}

fn spec(kind: ModelKind, hidden: &[usize], activation: Activation, bias: bool) -> ModelSpec {
    ModelSpec { hidden: hidden.to_vec(), activation, bias, ..ModelSpec::new(kind) }
}

/// max |a - b| / max |b| (0 when both vanish).
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let num = a.iter().zip(b).map(|(x, y)| f64::from((x - y).abs())).fold(0.0, f64::max);
    let den = b.iter().map(|y| f64::from(y.abs())).fold(0.0, f64::max);
    if num == 0.0 { 0.0 } else { num / den }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= TOL * b.abs().max(1e-12)
}

/// Compares `dev` against the CPU objective of `spec` on `d` for every batch kind.
fn check(backend: &Backend, spec: &ModelSpec, d: &Dataset, seed: u64) {
    let shape = Shape::of(d);
    let arc = Arc::new(d.clone());
    let mut cpu = dprox_objective::build(spec, arc.clone(), shape).expect("cpu model builds");
    let mut dev = build_on(backend, spec, arc, shape).expect("device model builds");
    let what = |b: &str| {
        format!(
            "{:?} hidden={:?} {:?} bias={} sparse={} on {backend}: {b}",
            spec.kind,
            spec.hidden,
            spec.activation,
            spec.bias,
            matches!(d.features, Features::Sparse(_))
        )
    };
    assert_eq!(dev.dim(), cpu.dim(), "{}", what("dim"));
    assert_eq!(dev.num_samples(), cpu.num_samples());
    assert_eq!(dev.flops_per_sample(), cpu.flops_per_sample());
    let (mut xi_dev, mut xi_cpu) = (vec![0.0; dev.dim()], vec![0.0; cpu.dim()]);
    dev.init(seed, &mut xi_dev);
    cpu.init(seed, &mut xi_cpu);
    assert_eq!(xi_dev, xi_cpu, "{}", what("init"));

    let n = d.len();
    let x = params(seed, dev.dim());
    let minibatch: Vec<usize> = (0..n).step_by(3).chain([1, 1, n - 1]).collect();
    // Every sample twice, in reverse: more than one GPU chunk (8192 rows) when n > 4096.
    let long: Vec<usize> = (0..n).rev().flat_map(|i| [i, i]).collect();
    for (name, batch) in
        [("full", Batch::Full), ("minibatch", Batch::Indices(&minibatch)), ("long", Batch::Indices(&long))]
    {
        let mut g_cpu = vec![f32::NAN; cpu.dim()];
        let l_cpu = cpu.loss_grad(&x, batch, &mut g_cpu);
        let mut g_dev = vec![f32::NAN; dev.dim()];
        let l_dev = dev.loss_grad(&x, batch, &mut g_dev);
        assert!(close(l_dev, l_cpu), "{}: loss {l_dev} vs cpu {l_cpu}", what(name));
        let e = rel_err(&g_dev, &g_cpu);
        assert!(e <= TOL, "{}: gradient relative error {e}", what(name));
        // Deterministic, and the second call (reused buffers) gives the same bits.
        let mut g2 = vec![f32::NAN; dev.dim()];
        let l2 = dev.loss_grad(&x, batch, &mut g2);
        assert_eq!(l2.to_bits(), l_dev.to_bits(), "{}: repeated loss differs", what(name));
        assert!(
            g2.iter().zip(&g_dev).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{}: repeated grad",
            what(name)
        );
        // loss() without a gradient agrees with loss_grad's loss.
        let l3 = dev.loss(&x, batch);
        assert!(close(l3, l_cpu), "{}: loss() {l3} vs cpu {l_cpu}", what(name));
    }
    // An empty batch: loss 0 and a zero gradient, as on the CPU.
    let mut g = vec![f32::NAN; dev.dim()];
    assert_eq!(dev.loss_grad(&x, Batch::Indices(&[]), &mut g), 0.0);
    assert!(g.iter().all(|&v| v == 0.0), "{}", what("empty batch"));
    // Accuracy counts argmaxes: a near-tie may flip one sample between the two summation orders.
    match (dev.accuracy(&x), cpu.accuracy(&x)) {
        (Some(a), Some(b)) => {
            assert!((a - b).abs() <= 1.0 / n as f64 + 1e-12, "{}: {a} vs {b}", what("accuracy"))
        }
        (a, b) => assert_eq!(a, b, "{}", what("accuracy")),
    }
}

fn linear_models(backend: &Backend) {
    let binary = data(1, 57, 6, Some(2));
    let multi = data(2, 61, 7, Some(4));
    let regression = data(3, 43, 5, None);
    for bias in [true, false] {
        check(backend, &spec(ModelKind::Logistic, &[], Activation::Relu, bias), &binary, 10);
        check(backend, &spec(ModelKind::Softmax, &[], Activation::Relu, bias), &multi, 11);
        check(backend, &spec(ModelKind::LeastSquares, &[], Activation::Relu, bias), &regression, 12);
    }
    // Sparse data is densified on the GPU (it is small): the same numbers.
    check(backend, &spec(ModelKind::Softmax, &[], Activation::Relu, true), &sparse(&multi), 13);
    check(backend, &spec(ModelKind::LeastSquares, &[], Activation::Relu, true), &sparse(&regression), 14);
}

fn mlp_models(backend: &Backend) {
    let d = data(4, 53, 9, Some(5));
    for act in [Activation::Relu, Activation::Tanh, Activation::Sigmoid] {
        check(backend, &spec(ModelKind::Mlp, &[8], act, true), &d, 20);
        check(backend, &spec(ModelKind::Mlp, &[12, 7], act, true), &d, 21);
    }
    check(backend, &spec(ModelKind::Mlp, &[6, 5, 4], Activation::Tanh, false), &d, 22);
    check(backend, &spec(ModelKind::Mlp, &[10], Activation::Relu, true), &sparse(&d), 23);
}

/// More samples than one GPU chunk, MNIST-like width: the chunked accumulation runs.
fn several_chunks(backend: &Backend) {
    let d = data(5, 4700, 30, Some(10));
    check(backend, &spec(ModelKind::Softmax, &[], Activation::Relu, true), &d, 30);
    check(backend, &spec(ModelKind::Mlp, &[32, 16], Activation::Relu, true), &d, 31);
}

fn lenet(
    image: [usize; 3],
    channels: [usize; 2],
    hidden: &[usize],
    act: Activation,
    pool: Pool,
    bias: bool,
) -> ModelSpec {
    ModelSpec {
        image: Some(image),
        channels: channels.to_vec(),
        pool,
        ..spec(ModelKind::LeNet, hidden, act, bias)
    }
}

/// LeNet-5: both poolings, odd map sizes (dropped rows and columns), two input channels, with and
/// without bias; and more samples than one GPU chunk (1024).
fn lenet_models(backend: &Backend) {
    let small = data(9, 37, 144, Some(3));
    for (act, pool, bias) in [
        (Activation::Relu, Pool::Max, true),
        (Activation::Tanh, Pool::Average, true),
        (Activation::Sigmoid, Pool::Max, false),
    ] {
        check(backend, &lenet([1, 12, 12], [2, 3], &[8], act, pool, bias), &small, 40);
    }
    let odd = data(10, 29, 2 * 14 * 13, Some(4));
    check(backend, &lenet([2, 14, 13], [3, 4], &[6, 5], Activation::Relu, Pool::Max, true), &odd, 41);
    check(backend, &lenet([2, 14, 13], [3, 4], &[6, 5], Activation::Tanh, Pool::Average, false), &odd, 42);
    // The default LeNet-5 on MNIST-shaped images (inferred 1x28x28, [6, 16], 120-84).
    let mnist = data(11, 23, 784, Some(10));
    check(backend, &ModelSpec::new(ModelKind::LeNet), &mnist, 43);
    let many = data(12, 600, 144, Some(3));
    check(backend, &lenet([1, 12, 12], [2, 2], &[4], Activation::Relu, Pool::Max, true), &many, 44);
}

/// A device objective is `Send` and keeps working when moved to another thread (the simulator
/// computes each node's gradient on a rayon thread).
fn across_threads(backend: &Backend) {
    let d = data(6, 40, 5, Some(3));
    let s = spec(ModelKind::Mlp, &[6], Activation::Tanh, true);
    let shape = Shape::of(&d);
    let mut f: Box<dyn Objective> = build_on(backend, &s, Arc::new(d.clone()), shape).unwrap();
    let x = params(7, f.dim());
    let mut g0 = vec![0.0; f.dim()];
    let l0 = f.loss_grad(&x, Batch::Full, &mut g0);
    let (l1, g1) = std::thread::spawn(move || {
        let mut g = vec![0.0; f.dim()];
        (f.loss_grad(&x, Batch::Full, &mut g), g)
    })
    .join()
    .unwrap();
    assert_eq!(l0.to_bits(), l1.to_bits());
    assert_eq!(g0, g1);
}

test_device!(linear_models, linear_models_cpu, linear_models_cuda);
test_device!(mlp_models, mlp_models_cpu, mlp_models_cuda);
test_device!(several_chunks, several_chunks_cpu, several_chunks_cuda);
test_device!(lenet_models, lenet_models_cpu, lenet_models_cuda);
test_device!(across_threads, across_threads_cpu, across_threads_cuda);

/// The model errors of dprox-objective come through unchanged on every device.
#[test]
fn model_errors_pass_through() {
    let d = data(8, 10, 3, Some(3));
    let err =
        build_on(&Backend::Cpu, &ModelSpec::new(ModelKind::Logistic), Arc::new(d.clone()), Shape::of(&d))
            .err()
            .expect("a logistic model on 3 classes fails");
    assert_eq!(
        err.to_string(),
        dprox_objective::build(&ModelSpec::new(ModelKind::Logistic), Arc::new(d.clone()), Shape::of(&d))
            .err()
            .expect("a logistic model on 3 classes fails")
            .to_string()
    );
    assert!(matches!(err, dprox_compute::ComputeError::Objective(_)));
}
