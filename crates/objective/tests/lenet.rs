//! The LeNet beyond its gradient (see `gradients.rs`): determinism, batch semantics, dense and
//! sparse images, accuracy, sizes, image-shape inference and errors, init, flops, config format.

mod common;

use std::sync::Arc;

use common::*;
use dprox_data::Dataset;
use dprox_objective::{
    Activation, Batch, LeNet, LeNetArch, ModelKind, ModelSpec, Objective, Pool, Shape, build,
};

/// 2 channels of 19 x 16 (both pools drop a row), as in `gradients.rs`.
const IMAGE: [usize; 3] = [2, 19, 16];

fn loss_grad(f: &mut dyn Objective, x: &[f32], batch: Batch<'_>) -> (f64, Vec<f32>) {
    let mut g = vec![f32::NAN; f.dim()];
    let l = f.loss_grad(x, batch, &mut g);
    (l, g)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn small() -> ModelSpec {
    lenet_spec(IMAGE, [3, 4], &[6, 5], Activation::Relu, Pool::Max, true)
}

/// Same x and batch, bit-identical loss and gradient: on repeated calls, after other batches
/// (scratch of another size in between), and on a fresh model.
#[test]
fn lenet_is_bit_deterministic() {
    let (dense, sparse) = twins(50, 150, IMAGE.iter().product(), Some(3));
    let mb: Vec<usize> = (0..150).rev().step_by(2).collect();
    for spec in lenet_specs(IMAGE) {
        for data in [&dense, &sparse] {
            let mut f = make(&spec, data);
            let x = params(51, f.dim());
            for batch in [Batch::Full, Batch::Indices(&mb), Batch::Indices(&mb[..10])] {
                let a = loss_grad(f.as_mut(), &x, batch);
                loss_grad(f.as_mut(), &x, Batch::Indices(&[5]));
                let b = loss_grad(f.as_mut(), &x, batch);
                assert_eq!(a.0.to_bits(), b.0.to_bits(), "{spec:?}");
                assert_eq!(bits(&a.1), bits(&b.1), "{spec:?}");
                let c = loss_grad(make(&spec, data).as_mut(), &x, batch);
                assert_eq!(a.0.to_bits(), c.0.to_bits(), "{spec:?}");
                assert_eq!(bits(&a.1), bits(&c.1), "{spec:?}");
            }
        }
    }
}

/// The chunks of one gradient run side by side on the rayon pool; their partial gradients are
/// added in chunk order, so 1, 2 or 3 threads give the same bits (what keeps `dprox sim` on any
/// thread count equal to a cluster node on one).
#[test]
fn lenet_gives_the_same_bits_on_any_number_of_threads() {
    let (dense, _) = twins(53, 150, IMAGE.iter().product(), Some(3));
    let mb: Vec<usize> = (0..150).rev().step_by(2).collect();
    for spec in lenet_specs(IMAGE) {
        let x = params(54, make(&spec, &dense).dim());
        let run = |threads: usize, batch: Batch<'_>| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| loss_grad(make(&spec, &dense).as_mut(), &x, batch))
        };
        for batch in [Batch::Full, Batch::Indices(&mb), Batch::Indices(&mb[..33])] {
            let one = run(1, batch);
            for threads in [2, 3] {
                let many = run(threads, batch);
                assert_eq!(one.0.to_bits(), many.0.to_bits(), "{spec:?}, {threads} threads");
                assert_eq!(bits(&one.1), bits(&many.1), "{spec:?}, {threads} threads");
            }
        }
    }
}

/// A minibatch (with repeats, over more than one chunk) is exactly the full batch of the
/// data set made of those samples; and the full batch is exactly the minibatch of every index.
#[test]
fn lenet_minibatch_equals_full_batch_on_the_subset() {
    let n = 90;
    let (dense, sparse) = twins(52, n, IMAGE.iter().product(), Some(3));
    let idx: Vec<usize> = (0..n).rev().step_by(3).chain([4, 4, 17]).chain(0..60).collect();
    let all: Vec<usize> = (0..n).collect();
    for spec in lenet_specs(IMAGE) {
        for data in [&dense, &sparse] {
            let mut f = make(&spec, data);
            let x = params(53, f.dim());
            let mini = loss_grad(f.as_mut(), &x, Batch::Indices(&idx));
            let subset = data.subset(&idx);
            let mut h = build(&spec, Arc::new(subset), Shape::of(data)).unwrap();
            let full = loss_grad(h.as_mut(), &x, Batch::Full);
            assert_eq!(mini.0.to_bits(), full.0.to_bits(), "{spec:?}");
            assert_eq!(bits(&mini.1), bits(&full.1), "{spec:?}");
            let a = loss_grad(f.as_mut(), &x, Batch::Full);
            let b = loss_grad(f.as_mut(), &x, Batch::Indices(&all));
            assert_eq!(a.0.to_bits(), b.0.to_bits(), "{spec:?}");
            assert_eq!(bits(&a.1), bits(&b.1), "{spec:?}");
        }
    }
}

/// Sparse images are densified before the first convolution: the same numbers, bit for bit.
#[test]
fn lenet_dense_and_sparse_agree() {
    let (dense, sparse) = twins(54, 40, IMAGE.iter().product(), Some(3));
    let mb = [3, 9, 9, 0, 39];
    for spec in lenet_specs(IMAGE) {
        let (mut f, mut h) = (make(&spec, &dense), make(&spec, &sparse));
        let x = params(55, f.dim());
        for batch in [Batch::Full, Batch::Indices(&mb)] {
            let a = loss_grad(f.as_mut(), &x, batch);
            let b = loss_grad(h.as_mut(), &x, batch);
            assert_eq!(a.0.to_bits(), b.0.to_bits(), "{spec:?}");
            assert_eq!(bits(&a.1), bits(&b.1), "{spec:?}");
        }
        assert_eq!(f.accuracy(&x), h.accuracy(&x), "{spec:?}");
    }
}

#[test]
fn lenet_loss_and_empty_batch() {
    let (dense, _) = twins(56, 12, IMAGE.iter().product(), Some(3));
    let mut f = make(&small(), &dense);
    let x = params(57, f.dim());
    let (l, _) = loss_grad(f.as_mut(), &x, Batch::Indices(&[1, 2, 3]));
    assert_eq!(l.to_bits(), f.loss(&x, Batch::Indices(&[1, 2, 3])).to_bits());
    let (l, g) = loss_grad(f.as_mut(), &x, Batch::Indices(&[]));
    assert_eq!(l, 0.0);
    assert!(g.iter().all(|&v| v == 0.0));
    // At x = 0 every logit is 0: the loss is exactly ln C.
    let zero = vec![0.0; f.dim()];
    assert_eq!(f.loss(&zero, Batch::Indices(&[4])), 3f64.ln());
}

/// With every weight zero the logits are the output biases, so the prediction is the class with
/// the largest output bias (ties to the lowest) and the accuracy is that class's share.
#[test]
fn lenet_accuracy_counts_argmax() {
    let (mut dense, _) = twins(58, 30, IMAGE.iter().product(), Some(3));
    dense.targets = (0..30).map(|i| [0.0, 1.0, 1.0][i % 3]).collect();
    let spec = small();
    let mut f = make(&spec, &dense);
    let last = *LeNetArch::from_spec(&spec, Shape::of(&dense)).unwrap().layers().last().unwrap();
    let mut x = vec![0.0; f.dim()];
    let b = last.offset + last.inputs * last.outputs;
    assert_eq!(f.accuracy(&x), Some(1.0 / 3.0), "all tie: class 0");
    x[b + 1] = 0.5;
    assert_eq!(f.accuracy(&x), Some(2.0 / 3.0), "class 1");
    x[b + 2] = 0.5;
    assert_eq!(f.accuracy(&x), Some(2.0 / 3.0), "1 and 2 tie: class 1");
    x[b + 2] = 0.6;
    assert_eq!(f.accuracy(&x), Some(0.0), "class 2");
}

/// The MNIST LeNet-5: sizes, layout, inference of the image shape, flops.
#[test]
fn mnist_lenet_sizes() {
    let shape = Shape { features: 784, classes: Some(10) };
    let spec = ModelSpec::new(ModelKind::LeNet);
    let arch = LeNetArch::from_spec(&spec, shape).unwrap();
    assert_eq!(arch.image, [1, 28, 28]);
    assert_eq!((arch.channels, arch.hidden.as_slice()), ([6, 16], &[120, 84][..]));
    let layers: Vec<_> = arch.layers().iter().map(|l| (l.offset, l.outputs, l.inputs)).collect();
    assert_eq!(layers, [(0, 6, 25), (156, 16, 150), (2572, 120, 400), (50692, 84, 120), (60856, 10, 84)]);
    assert_eq!(spec.dim(shape).unwrap(), 61_706);
    let nobias = ModelSpec { bias: false, ..spec.clone() };
    assert_eq!(nobias.dim(shape).unwrap(), 61_706 - (6 + 16 + 120 + 84 + 10));
    let rgb = Shape { features: 3072, classes: Some(10) };
    assert_eq!(LeNetArch::from_spec(&spec, rgb).unwrap().image, [3, 32, 32]);
    // 32 x 32: 32 -> 16 -> 12 -> 6, so the first dense layer sees 6 * 6 * 16 values.
    assert_eq!(LeNetArch::from_spec(&spec, rgb).unwrap().layers()[2].inputs, 576);

    let data = Dataset {
        features: dprox_data::Features::Dense(ndarray::Array2::zeros((2, 784))),
        targets: vec![0.0, 9.0],
        classes: Some(10),
    };
    let f = build(&spec, Arc::new(data), shape).unwrap();
    assert_eq!(f.dim(), 61_706);
    // Multiply-adds: conv 1 784 x 6 x 25, conv 2 100 x 16 x 150, dense 400 x 120 + 120 x 84 +
    // 84 x 10; 4 flops each for conv 1 (no input gradient), 6 for the others.
    let conv1 = 784.0 * 6.0 * 25.0;
    let rest = 100.0 * 16.0 * 150.0 + 400.0 * 120.0 + 120.0 * 84.0 + 84.0 * 10.0;
    assert_eq!(f.flops_per_sample(), 4.0 * conv1 + 6.0 * rest);
}

#[test]
fn lenet_errors_name_the_problem() {
    let err = |spec: &ModelSpec, features: usize| match spec.dim(Shape { features, classes: Some(10) }) {
        Ok(d) => panic!("{spec:?} on {features} features gave dim {d}"),
        Err(e) => e.to_string(),
    };
    let lenet = ModelSpec::new(ModelKind::LeNet);
    assert_eq!(
        err(&ModelSpec { image: Some([1, 28, 27]), ..lenet.clone() }, 784),
        "image = [1, 28, 27] has 756 values per sample, but the data has 784 features"
    );
    assert_eq!(
        err(&lenet, 1000),
        "cannot infer the image shape of 1000 features (neither a square nor 3 channels of a square); \
         set image = [channels, height, width]"
    );
    let small_image = err(&lenet, 100);
    assert!(small_image.starts_with("a lenet needs images of at least 12x12 pixels"), "{small_image}");
    assert!(small_image.ends_with("got 10x10"), "{small_image}");
    assert!(err(&ModelSpec { image: Some([4, 4, 49]), ..lenet.clone() }, 784).contains("got 4x49"));
    assert_eq!(
        err(&ModelSpec { channels: vec![6], ..lenet.clone() }, 784),
        "a lenet needs channels = [c1, c2], two positive counts, got [6]"
    );
    assert!(err(&ModelSpec { channels: vec![6, 0], ..lenet.clone() }, 784).contains("got [6, 0]"));
    assert_eq!(
        err(&ModelSpec { hidden: vec![120, 0], ..lenet.clone() }, 784),
        "lenet hidden layer 1 has width 0"
    );
    let regression = Shape { features: 784, classes: None };
    assert!(lenet.dim(regression).unwrap_err().to_string().contains("a lenet needs class labels"));
    // The constructor checks a hand-made architecture against the data too.
    let (dense, _) = twins(59, 4, 300, Some(3));
    let arch = LeNetArch::from_spec(&small(), Shape { features: 608, classes: Some(3) }).unwrap();
    let e = LeNet::new(Arc::new(dense), arch).unwrap_err().to_string();
    assert!(e.contains("has 608 values per sample, but the data has 300 features"), "{e}");
}

#[test]
fn lenet_init_follows_glorot_and_he() {
    let (data, _) = twins(60, 4, IMAGE.iter().product(), Some(3));
    for act in [Activation::Relu, Activation::Tanh] {
        let spec = lenet_spec(IMAGE, [3, 4], &[6, 5], act, Pool::Max, true);
        let f = make(&spec, &data);
        let mut x = vec![f32::NAN; f.dim()];
        f.init(9, &mut x);
        let layers = LeNetArch::from_spec(&spec, Shape::of(&data)).unwrap().layers();
        for (l, layer) in layers.iter().enumerate() {
            let (w, rest) = x[layer.offset..].split_at(layer.inputs * layer.outputs);
            assert!(rest[..layer.outputs].iter().all(|&v| v == 0.0), "biases start at zero");
            let fan_out = if l < 2 { layer.outputs * 25 } else { layer.outputs };
            let fan = match act {
                Activation::Relu => layer.inputs,
                _ => layer.inputs + fan_out,
            };
            let a = (6.0 / fan as f64).sqrt() as f32;
            let mut rng = dprox_rng::stream(9, &[l as u64]);
            let want: Vec<f32> = w.iter().map(|_| (rng.uniform_f32() * 2.0 - 1.0) * a).collect();
            assert_eq!(w, &want[..], "{act:?} layer {l}");
        }
        let mut y = vec![0.0; f.dim()];
        f.init(9, &mut y);
        assert_eq!(x, y, "init is seeded");
    }
}

#[test]
fn lenet_spec_reads_from_config() {
    let text = "kind = \"lenet\"\nimage = [2, 19, 16]\nchannels = [3, 4]\nhidden = [6, 5]\n\
                pool = \"average\"\nactivation = \"tanh\"";
    let s: ModelSpec = toml::from_str(text).unwrap();
    assert_eq!(s, lenet_spec(IMAGE, [3, 4], &[6, 5], Activation::Tanh, Pool::Average, true));
    let plain: ModelSpec = toml::from_str("kind = \"lenet\"").unwrap();
    assert_eq!(plain, ModelSpec::new(ModelKind::LeNet));
    assert_eq!(plain.pool, Pool::Max);
    assert!(toml::from_str::<ModelSpec>("kind = \"lenet\"\npool = \"min\"").is_err());
    let back: ModelSpec = toml::from_str(&toml::to_string(&s).unwrap()).unwrap();
    assert_eq!(back, s);
}
