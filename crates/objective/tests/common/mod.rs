//! Test helpers: random dense/sparse twins of one data set, and a plain-loop f64 reference of
//! every model's loss and gradient, written independently of the crate's GEMM/chunk code.
#![allow(dead_code)]

pub mod lenet;
pub use lenet::*;

use std::sync::Arc;

use dprox_data::{Csr, Dataset, Features};
use dprox_objective::{Activation, ModelKind, ModelSpec, Objective, Shape, build};
use ndarray::Array2;

/// The same random data as a dense and as a CSR data set. About half the entries are zero, and
/// the last row is entirely zero (an empty CSR row).
pub fn twins(seed: u64, n: usize, p: usize, classes: Option<usize>) -> (Dataset, Dataset) {
    let mut rng = dprox_rng::stream(seed, &[7]);
    let mut m = Array2::<f32>::zeros((n, p));
    for r in 0..n.saturating_sub(1) {
        for c in 0..p {
            if rng.uniform_f64() < 0.5 {
                m[[r, c]] = rng.normal() as f32;
            }
        }
    }
    let targets: Vec<f32> = (0..n)
        .map(|_| match classes {
            Some(k) => rng.below_usize(k) as f32,
            None => rng.normal() as f32 * 2.0,
        })
        .collect();
    let sparse = to_csr(&m);
    (
        Dataset { features: Features::Dense(m), targets: targets.clone(), classes },
        Dataset { features: Features::Sparse(sparse), targets, classes },
    )
}

/// CSR form of a dense matrix (explicit zeros dropped).
pub fn to_csr(m: &Array2<f32>) -> Csr {
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
    c
}

/// Random parameters in [-0.5, 0.5].
pub fn params(seed: u64, dim: usize) -> Vec<f32> {
    let mut rng = dprox_rng::stream(seed, &[11]);
    (0..dim).map(|_| rng.uniform_f32() - 0.5).collect()
}

pub fn spec(kind: ModelKind, hidden: &[usize], activation: Activation, bias: bool) -> ModelSpec {
    ModelSpec { kind, hidden: hidden.to_vec(), activation, bias, ..ModelSpec::new(kind) }
}

pub fn make(spec: &ModelSpec, data: &Dataset) -> Box<dyn Objective> {
    build(spec, Arc::new(data.clone()), Shape::of(data)).expect("model builds")
}

/// Dense f64 rows of a data set.
pub fn rows_f64(data: &Dataset) -> Vec<Vec<f64>> {
    let n = data.len();
    let p = data.num_features();
    let mut out = vec![vec![0.0; p]; n];
    match &data.features {
        Features::Dense(m) => {
            for (r, row) in out.iter_mut().enumerate() {
                for (c, v) in row.iter_mut().enumerate() {
                    *v = f64::from(m[[r, c]]);
                }
            }
        }
        Features::Sparse(csr) => {
            for (r, row) in out.iter_mut().enumerate() {
                let (ix, vals) = csr.row(r);
                for (&c, &v) in ix.iter().zip(vals) {
                    row[c as usize] = f64::from(v);
                }
            }
        }
    }
    out
}

fn act(a: Activation, v: f64) -> f64 {
    match a {
        Activation::Relu => v.max(0.0),
        Activation::Tanh => v.tanh(),
        Activation::Sigmoid => 1.0 / (1.0 + (-v).exp()),
    }
}

fn act_grad(a: Activation, v: f64) -> f64 {
    match a {
        Activation::Relu => f64::from(u8::from(v > 0.0)),
        Activation::Tanh => 1.0 - v.tanh().powi(2),
        Activation::Sigmoid => {
            let s = 1.0 / (1.0 + (-v).exp());
            s * (1.0 - s)
        }
    }
}

/// Reference mean loss and gradient over the samples `idx`, all in f64 with plain loops.
pub fn reference(spec: &ModelSpec, data: &Dataset, x: &[f64], idx: &[usize]) -> (f64, Vec<f64>) {
    if spec.kind == ModelKind::LeNet {
        return lenet_reference(spec, data, x, idx);
    }
    let rows = rows_f64(data);
    let p = data.num_features();
    let classes = data.classes.unwrap_or(0);
    let bias = spec.bias;
    // Layer sizes: linear models are one layer; logistic/least squares have a single output.
    let mut sizes = vec![p];
    match spec.kind {
        ModelKind::Logistic | ModelKind::LeastSquares => sizes.push(1),
        ModelKind::Softmax => sizes.push(classes),
        ModelKind::Mlp => {
            sizes.extend(&spec.hidden);
            sizes.push(classes);
        }
        ModelKind::LeNet => unreachable!("handled above"),
        ModelKind::Custom => unreachable!("dprox cannot build a custom model from its spec"),
    }
    let nl = sizes.len() - 1;
    let mut offs = Vec::new();
    let mut o = 0;
    for l in 0..nl {
        offs.push(o);
        o += sizes[l] * sizes[l + 1] + if bias { sizes[l + 1] } else { 0 };
    }
    assert_eq!(o, x.len(), "reference layout disagrees with dim");
    let mut grad = vec![0.0; x.len()];
    let mut loss = 0.0;
    let nb = idx.len() as f64;
    for &i in idx {
        // Forward, keeping pre-activations z[l] and outputs a[l] (a[0] is the input).
        let mut a = vec![rows[i].clone()];
        let mut z: Vec<Vec<f64>> = Vec::new();
        for l in 0..nl {
            let (fi, fo) = (sizes[l], sizes[l + 1]);
            let mut zl = vec![0.0; fo];
            for j in 0..fo {
                let mut s = if bias { x[offs[l] + fo * fi + j] } else { 0.0 };
                for k in 0..fi {
                    s += x[offs[l] + j * fi + k] * a[l][k];
                }
                zl[j] = s;
            }
            let al =
                if l + 1 < nl { zl.iter().map(|&v| act(spec.activation, v)).collect() } else { zl.clone() };
            z.push(zl);
            a.push(al);
        }
        let out = &z[nl - 1];
        let y = f64::from(data.targets[i]);
        // dL/dz of the top layer.
        let mut d: Vec<f64> = match spec.kind {
            ModelKind::Logistic => {
                let s = 2.0 * y - 1.0;
                let t = -s * out[0];
                loss += (1.0 + t.exp()).ln();
                vec![-s / (1.0 + (-t).exp())]
            }
            ModelKind::LeastSquares => {
                let r = out[0] - y;
                loss += 0.5 * r * r;
                vec![r]
            }
            ModelKind::Custom => unreachable!("dprox cannot build a custom model from its spec"),
            ModelKind::Softmax | ModelKind::Mlp | ModelKind::LeNet => {
                let den: f64 = out.iter().map(|v| v.exp()).sum();
                loss += den.ln() - out[y as usize];
                out.iter()
                    .enumerate()
                    .map(|(j, v)| v.exp() / den - f64::from(u8::from(j == y as usize)))
                    .collect()
            }
        };
        for l in (0..nl).rev() {
            let (fi, fo) = (sizes[l], sizes[l + 1]);
            for j in 0..fo {
                for k in 0..fi {
                    grad[offs[l] + j * fi + k] += d[j] * a[l][k] / nb;
                }
                if bias {
                    grad[offs[l] + fo * fi + j] += d[j] / nb;
                }
            }
            if l > 0 {
                let mut dp = vec![0.0; fi];
                for (k, dpk) in dp.iter_mut().enumerate() {
                    for j in 0..fo {
                        *dpk += d[j] * x[offs[l] + j * fi + k];
                    }
                    *dpk *= act_grad(spec.activation, z[l - 1][k]);
                }
                d = dp;
            }
        }
    }
    (loss / nb, grad)
}

/// ||a - b|| / ||b||.
pub fn rel_err(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(&u, &v)| (f64::from(u) - v).powi(2)).sum();
    let den: f64 = b.iter().map(|v| v * v).sum();
    (num / den.max(1e-300)).sqrt()
}

/// The specs every test sweeps: each model, with and without bias, every MLP activation.
pub fn all_specs(classes: Option<usize>) -> Vec<ModelSpec> {
    let mut v = Vec::new();
    for bias in [true, false] {
        v.push(spec(ModelKind::LeastSquares, &[], Activation::Relu, bias));
        let Some(c) = classes else { continue };
        if c == 2 {
            v.push(spec(ModelKind::Logistic, &[], Activation::Relu, bias));
        }
        v.push(spec(ModelKind::Softmax, &[], Activation::Relu, bias));
        for a in [Activation::Relu, Activation::Tanh, Activation::Sigmoid] {
            v.push(spec(ModelKind::Mlp, &[5, 4], a, bias));
        }
    }
    v
}
