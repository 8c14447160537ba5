//! Invariant 2: with r = 0, xbar^{t+1} = xbar^t - eta mean_i y_i^t (any Q, gamma_x).
mod common;
use common::*;
use dprox_compress::{CompressorSpec, ValueFormat};
use dprox_core::{Algorithm, Cluster, Delivery, Prox};

#[test]
fn average_model_moves_by_the_average_tracker() {
    let (n, d) = (5, 9);
    let p = LeastSquares::new(n, d, 12, 2.0, 8);
    for (alg, q, gamma) in [
        (Algorithm::Dproxsgt, CompressorSpec::default(), 1.0f32),
        (Algorithm::Cdproxsgt, CompressorSpec::TopK { ratio: 0.2, values: ValueFormat::F32 }, 0.4),
        (Algorithm::Cdproxsgt, CompressorSpec::Qsgd { levels: 2 }, 0.7),
        (Algorithm::Cdproxsgt, CompressorSpec::Sign, 0.2),
    ] {
        let lr = 0.05f32;
        let s = Setup { algorithm: alg, lr, gamma, prox: Prox::None, q: q.clone(), seed: 1 };
        let mut c = Cluster::new(configs(n, d, &s)).unwrap();
        for t in 0..30 {
            let xs: Vec<&[f32]> = c.nodes().iter().map(|n| n.params()).collect();
            let before = mean(&xs);
            c.step(|i, x, g| p.grad(i, x, g), Delivery::Ascending, |_| {}).unwrap();
            let xs: Vec<&[f32]> = c.nodes().iter().map(|n| n.params()).collect();
            let ys: Vec<&[f32]> = c.nodes().iter().map(|n| n.tracker()).collect();
            let (after, ybar) = (mean(&xs), mean(&ys));
            for k in 0..d {
                let expect = before[k] - lr as f64 * ybar[k];
                assert!(
                    (after[k] - expect).abs() < 2e-6 * (1.0 + expect.abs()),
                    "{alg} {q:?} t {t} k {k}: {} vs {expect}",
                    after[k]
                );
            }
        }
    }
}
