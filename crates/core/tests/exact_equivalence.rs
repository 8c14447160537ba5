//! Invariant 3: CDProxSGT(Q = identity, gamma = 1) == DProxSGT to the last bit; and no algorithm's
//! iterates depend on the order in which messages arrive.
mod common;
use common::*;
use dprox_compress::{CompressorSpec, ValueFormat};
use dprox_core::{Algorithm, Cluster, Delivery, Prox};

fn run(s: &Setup, delivery: Delivery, iters: usize) -> Vec<(Vec<f32>, Vec<f32>)> {
    let (n, d) = (7, 10);
    let p = LeastSquares::new(n, d, 14, 1.5, 21);
    let mut c = Cluster::new(configs(n, d, s)).unwrap();
    for _ in 0..iters {
        c.step(|i, x, g| p.grad(i, x, g), delivery, |_| {}).unwrap();
    }
    c.nodes().iter().map(|n| (n.params().to_vec(), n.tracker().to_vec())).collect()
}

#[test]
fn cdproxsgt_with_identity_and_unit_gamma_is_dproxsgt_bit_for_bit() {
    let base = |algorithm| Setup {
        algorithm,
        lr: 0.07,
        gamma: 1.0,
        prox: Prox::L1 { mu: 0.02 },
        q: CompressorSpec::default(),
        seed: 4,
    };
    let a = run(&base(Algorithm::Dproxsgt), Delivery::Ascending, 200);
    let b = run(&base(Algorithm::Cdproxsgt), Delivery::Ascending, 200);
    for (i, (na, nb)) in a.iter().zip(&b).enumerate() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&na.0), bits(&nb.0), "x of node {i}");
        assert_eq!(bits(&na.1), bits(&nb.1), "y of node {i}");
    }
    // And it is not trivially equal: a gamma below one changes the iterates.
    let c = run(&Setup { gamma: 0.9, ..base(Algorithm::Cdproxsgt) }, Delivery::Ascending, 200);
    assert_ne!(a[0].0, c[0].0);
}

#[test]
fn arrival_order_never_changes_a_bit() {
    for (algorithm, q) in [
        (Algorithm::Dproxsgt, CompressorSpec::default()),
        (Algorithm::Cdproxsgt, CompressorSpec::TopK { ratio: 0.3, values: ValueFormat::F32 }),
        (Algorithm::Cdproxsgt, CompressorSpec::RandK { ratio: 0.3, values: ValueFormat::F32 }),
        (Algorithm::Dpsgd, CompressorSpec::default()),
        (Algorithm::Choco, CompressorSpec::Qsgd { levels: 3 }),
        (Algorithm::Allreduce, CompressorSpec::default()),
    ] {
        let s = Setup { algorithm, lr: 0.05, gamma: 0.5, prox: Prox::L1 { mu: 0.01 }, q, seed: 9 };
        let a = run(&s, Delivery::Ascending, 60);
        assert_eq!(a, run(&s, Delivery::Descending, 60), "{algorithm} descending");
        assert_eq!(a, run(&s, Delivery::Shuffled(3), 60), "{algorithm} shuffled");
    }
}
