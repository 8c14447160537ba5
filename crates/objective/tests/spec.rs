//! The factory: sizes, the errors and their messages, MLP init, and the config format.

mod common;

use std::sync::Arc;

use common::*;
use dprox_data::{Csr, Dataset, Features};
use dprox_objective::{Activation, ModelKind, ModelSpec, ObjectiveError, Shape, build};
use ndarray::Array2;

fn err(spec: &ModelSpec, data: Dataset, shape: Shape) -> String {
    match build(spec, Arc::new(data), shape) {
        Ok(_) => panic!("{spec:?} on {shape:?} should fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn dims_match_the_built_models() {
    let (dense, _) = twins(30, 6, 7, Some(3));
    for spec in all_specs(Some(3)).into_iter().chain(all_specs(Some(2))) {
        let mut data = dense.clone();
        if spec.kind == ModelKind::Logistic {
            data.targets.iter_mut().for_each(|t| *t = (*t).min(1.0));
            data.classes = Some(2);
        }
        let shape = Shape::of(&data);
        let f = build(&spec, Arc::new(data), shape).unwrap();
        assert_eq!(spec.dim(shape).unwrap(), f.dim(), "{spec:?}");
    }
    let shape = Shape { features: 784, classes: Some(10) };
    let mlp = spec(ModelKind::Mlp, &[100, 50], Activation::Tanh, true);
    assert_eq!(mlp.dim(shape).unwrap(), 784 * 100 + 100 + 100 * 50 + 50 + 50 * 10 + 10);
    let nobias = ModelSpec { bias: false, ..mlp.clone() };
    assert_eq!(nobias.dim(shape).unwrap(), 784 * 100 + 100 * 50 + 50 * 10);
    assert_eq!(ModelSpec::new(ModelKind::Softmax).dim(shape).unwrap(), 7850);
    assert_eq!(ModelSpec::new(ModelKind::LeastSquares).dim(shape).unwrap(), 785);
}

/// A node that sees only some classes still gets the global number of outputs.
#[test]
fn label_skew_keeps_global_classes() {
    let (mut data, _) = twins(31, 8, 3, Some(2));
    data.classes = Some(2);
    let shape = Shape { features: 3, classes: Some(10) };
    let f = build(&ModelSpec::new(ModelKind::Softmax), Arc::new(data), shape).unwrap();
    assert_eq!(f.dim(), 10 * 4);
}

#[test]
fn errors_name_the_problem() {
    let (data, _) = twins(32, 5, 4, Some(10));
    let shape = Shape::of(&data);
    let logistic = ModelSpec::new(ModelKind::Logistic);
    assert_eq!(
        err(&logistic, data.clone(), shape),
        "logistic regression needs 2 classes, the data has 10; use softmax"
    );
    let regression = Shape { features: 4, classes: None };
    assert!(err(&logistic, data.clone(), regression).contains("the data has none"));
    assert!(
        err(&ModelSpec::new(ModelKind::Softmax), data.clone(), regression)
            .contains("softmax regression needs class labels")
    );
    let mlp = spec(ModelKind::Mlp, &[3], Activation::Relu, true);
    assert!(err(&mlp, data.clone(), regression).contains("an mlp needs class labels"));
    assert!(err(&ModelSpec::new(ModelKind::Mlp), data.clone(), shape).contains("at least one hidden layer"));
    let zero = spec(ModelKind::Mlp, &[3, 0], Activation::Relu, true);
    assert_eq!(err(&zero, data.clone(), shape), "mlp hidden layer 1 has width 0");
    let one = Shape { features: 4, classes: Some(1) };
    assert!(err(&ModelSpec::new(ModelKind::Softmax), data.clone(), one).contains("at least 2 classes"));

    let wide = Shape { features: 784, classes: Some(10) };
    assert_eq!(
        err(&ModelSpec::new(ModelKind::Softmax), data.clone(), wide),
        "the data has 4 features, the model expects 784"
    );

    let mut bad = data.clone();
    bad.targets[3] = 10.0;
    assert_eq!(err(&mlp, bad.clone(), shape), "sample 3 has label 10, which is not a class in 0..10");
    bad.targets[3] = 2.5;
    assert!(err(&ModelSpec::new(ModelKind::Softmax), bad, shape).contains("label 2.5"));
    let (mut binary, _) = twins(33, 5, 4, Some(2));
    binary.targets[0] = 2.0;
    assert!(err(&logistic, binary, Shape { features: 4, classes: Some(2) }).contains("not a class in 0..2"));

    let empty =
        Dataset { features: Features::Dense(Array2::zeros((0, 4))), targets: vec![], classes: Some(10) };
    for s in [ModelSpec::new(ModelKind::Softmax), ModelSpec::new(ModelKind::LeastSquares), mlp.clone()] {
        assert_eq!(err(&s, empty.clone(), shape), "the data set has no samples");
    }
    let mut nan = data.clone();
    nan.targets[1] = f32::NAN;
    assert!(err(&ModelSpec::new(ModelKind::LeastSquares), nan, regression).contains("non-finite target"));
    let mut short = data.clone();
    short.targets.pop();
    assert_eq!(
        err(&ModelSpec::new(ModelKind::LeastSquares), short, regression),
        "the features have 5 rows but there are 4 targets"
    );
}

#[test]
fn malformed_csr_is_rejected() {
    let good = Csr { rows: 2, cols: 3, indptr: vec![0, 1, 2], indices: vec![0, 2], values: vec![1.0, 2.0] };
    let data = |c: Csr| Dataset { features: Features::Sparse(c), targets: vec![0.0, 1.0], classes: Some(2) };
    let shape = Shape { features: 3, classes: Some(2) };
    let s = ModelSpec::new(ModelKind::Softmax);
    assert!(build(&s, Arc::new(data(good.clone())), shape).is_ok());
    let out_of_range = Csr { indices: vec![0, 3], ..good.clone() };
    assert!(err(&s, data(out_of_range), shape).contains("column index 3 is out of range"));
    let short_indptr = Csr { indptr: vec![0, 2], ..good.clone() };
    assert!(err(&s, data(short_indptr), shape).contains("indptr has 2 entries for 2 rows"));
    let decreasing = Csr { indptr: vec![0, 2, 1], ..good.clone() };
    assert!(err(&s, data(decreasing), shape).contains("never decrease"));
    let few_values = Csr { values: vec![1.0], ..good };
    assert!(err(&s, data(few_values), shape).contains("1 values"));
    assert!(matches!(
        dprox_objective::Softmax::new(Arc::new(data(Csr { indices: vec![9, 9], ..Csr::default() })), 2, true),
        Err(ObjectiveError::Data(dprox_data::InvalidDataset::MalformedCsr { .. }))
    ));
}

#[test]
fn mlp_init_follows_glorot_and_he() {
    let (data, _) = twins(34, 4, 6, Some(3));
    for (act, bound) in [
        (Activation::Relu, [(6.0f32 / 6.0).sqrt(), (6.0f32 / 5.0).sqrt()]),
        (Activation::Tanh, [(6.0f32 / 11.0).sqrt(), (6.0f32 / 8.0).sqrt()]),
    ] {
        let f = make(&spec(ModelKind::Mlp, &[5], act, true), &data);
        let mut x = vec![f32::NAN; f.dim()];
        f.init(9, &mut x);
        let (w0, rest) = x.split_at(30);
        let (b0, rest) = rest.split_at(5);
        let (w1, b1) = rest.split_at(15);
        assert!(b0.iter().chain(b1).all(|&v| v == 0.0));
        for (l, (w, a)) in [(w0, bound[0]), (w1, bound[1])].into_iter().enumerate() {
            // Uniform on [-a, a], drawn from the layer's own stream.
            let mut rng = dprox_rng::stream(9, &[l as u64]);
            let want: Vec<f32> = w.iter().map(|_| (rng.uniform_f32() * 2.0 - 1.0) * a).collect();
            assert_eq!(w, &want[..], "{act:?} layer {l}");
            assert!(w.iter().all(|&v| v.abs() <= a), "{act:?}");
        }
        let mut y = vec![0.0; f.dim()];
        f.init(9, &mut y);
        assert_eq!(x, y, "init is seeded");
        f.init(10, &mut y);
        assert_ne!(x, y);
        // Each layer draws from its own stream, so dropping the biases leaves the weights unchanged.
        let g = make(&spec(ModelKind::Mlp, &[5], act, false), &data);
        let mut z = vec![0.0; g.dim()];
        g.init(9, &mut z);
        assert_eq!(&z[..30], w0);
        assert_eq!(&z[30..], w1);
    }
    let f = make(&spec(ModelKind::Mlp, &[5, 4], Activation::Sigmoid, true), &data);
    assert_eq!(f.flops_per_sample(), 6.0 * (6 * 5 + 5 * 4 + 4 * 3) as f64);
}

#[test]
fn spec_reads_from_config() {
    let s: ModelSpec = toml::from_str("kind = \"least_squares\"").unwrap();
    assert_eq!(s, ModelSpec::new(ModelKind::LeastSquares));
    let s: ModelSpec =
        toml::from_str("kind = \"mlp\"\nhidden = [64, 32]\nactivation = \"sigmoid\"\nbias = false").unwrap();
    assert_eq!(s, spec(ModelKind::Mlp, &[64, 32], Activation::Sigmoid, false));
    assert!(toml::from_str::<ModelSpec>("kind = \"softmax\"\nhiden = [3]").is_err(), "typos are caught");
    let back: ModelSpec = toml::from_str(&toml::to_string(&s).unwrap()).unwrap();
    assert_eq!(back, s);
}

#[test]
fn a_custom_model_is_refused_with_a_pointer_to_with_objective() {
    let s: ModelSpec = toml::from_str("kind = \"custom\"").unwrap();
    assert_eq!(s.kind, ModelKind::Custom);
    let data = Dataset {
        features: Features::Dense(ndarray::array![[1.0, 0.0], [0.0, 1.0]]),
        targets: vec![0.5, 1.5],
        classes: None,
    };
    let shape = Shape::of(&data);
    let message = ObjectiveError::CustomModel.to_string();
    assert!(message.contains("Prepared::with_objective"), "{message}");
    assert!(message.contains("examples/custom-objective"), "{message}");
    assert_eq!(s.dim(shape), Err(ObjectiveError::CustomModel));
    assert_eq!(err(&s, data, shape), message);
}
