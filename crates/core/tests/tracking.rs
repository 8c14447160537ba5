//! Invariant 1: with y^{-1} = 0, g^{-1} = 0 and W doubly stochastic, mean_i y_i^t = mean_i g_i^t
//! every iteration, for DProxSGT and for CDProxSGT with any Q and gamma_y.
mod common;
use common::*;
use dprox_compress::{CompressorSpec, ValueFormat};
use dprox_core::{Algorithm, Cluster, Delivery, Prox};

#[test]
fn tracker_mean_equals_gradient_mean_every_iteration() {
    let (n, d) = (6, 12);
    let p = LeastSquares::new(n, d, 15, 1.0, 3);
    let qs = [
        CompressorSpec::default(),
        CompressorSpec::TopK { ratio: 0.25, values: ValueFormat::F32 },
        CompressorSpec::RandK { ratio: 0.5, values: ValueFormat::F32 },
        CompressorSpec::Qsgd { levels: 4 },
        CompressorSpec::Sign,
        CompressorSpec::TopK { ratio: 0.3, values: ValueFormat::Bf16 },
    ];
    for (alg, q, gamma) in [(Algorithm::Dproxsgt, qs[0].clone(), 1.0)]
        .into_iter()
        .chain(qs.iter().flat_map(|q| [0.3f32, 1.0].map(|g| (Algorithm::Cdproxsgt, q.clone(), g))))
    {
        let s =
            Setup { algorithm: alg, lr: 0.05, gamma, prox: Prox::L1 { mu: 0.01 }, q: q.clone(), seed: 11 };
        let mut c = Cluster::new(configs(n, d, &s)).unwrap();
        for t in 0..40u64 {
            // Stochastic-looking gradients: the least-squares gradient plus seeded noise.
            let mut grads = vec![vec![0.0f32; d]; n];
            c.step(
                |i, x, g| {
                    p.grad(i, x, g);
                    let mut r = dprox_rng::stream(5, &[i as u64, t]);
                    g.iter_mut().for_each(|v| *v += 0.1 * r.normal() as f32);
                    grads[i].copy_from_slice(g);
                },
                Delivery::Ascending,
                |_| {},
            )
            .unwrap();
            let ys: Vec<&[f32]> = c.nodes().iter().map(|n| n.tracker()).collect();
            let gs: Vec<&[f32]> = grads.iter().map(|g| g.as_slice()).collect();
            let (my, mg) = (mean(&ys), mean(&gs));
            for k in 0..d {
                // f32 round-off accumulates in the running sums sy_i and yh_i; a real tracking
                // bug (a lost or doubled term) is off by O(|g|).
                let tol = 1e-4 * (1.0 + mg[k].abs());
                assert!(
                    (my[k] - mg[k]).abs() < tol,
                    "{alg} {q:?} gamma {gamma} t {t} k {k}: {} vs {}",
                    my[k],
                    mg[k]
                );
            }
        }
    }
}
