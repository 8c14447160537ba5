//! Invariant 3: CDProxSGT(Q = identity, gamma = 1) == DProxSGT to the last bit; and no algorithm's
//! iterates depend on the order in which messages arrive.
mod common;
use common::*;
use dprox_compress::{CompressorSpec, ValueFormat};
use dprox_core::{Algorithm, Cluster, CoreError, Delivery, Node, Prox, Receivers};

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

/// Receivers served last node first, as a thread pool may serve them; the error reported is
/// still the lowest node's.
struct Reversed;

impl Receivers for Reversed {
    fn each(
        &mut self,
        nodes: &mut [Node],
        apply: &(dyn Fn(usize, &mut Node) -> Result<(), CoreError> + Sync),
    ) -> Result<(), CoreError> {
        let mut first = Ok(());
        for (i, node) in nodes.iter_mut().enumerate().rev() {
            if let Err(e) = apply(i, node) {
                first = Err(e);
            }
        }
        first
    }
}

#[test]
fn receivers_served_in_any_order_give_the_same_bits() {
    let (n, d, iters) = (7, 10, 60);
    for (algorithm, q) in [
        (Algorithm::Dproxsgt, CompressorSpec::default()),
        (Algorithm::Cdproxsgt, CompressorSpec::TopK { ratio: 0.3, values: ValueFormat::F32 }),
        (Algorithm::Choco, CompressorSpec::Qsgd { levels: 3 }),
    ] {
        let s = Setup { algorithm, lr: 0.05, gamma: 0.5, prox: Prox::L1 { mu: 0.01 }, q, seed: 9 };
        let p = LeastSquares::new(n, d, 14, 1.5, 21);
        let mut c = Cluster::new(configs(n, d, &s)).unwrap();
        let mut g = vec![0.0; d];
        for _ in 0..iters {
            for (i, node) in c.nodes_mut().iter_mut().enumerate() {
                p.grad(i, node.params(), &mut g);
                node.handle_gradient(&g).unwrap();
            }
            c.exchange_with(Delivery::Ascending, &mut Reversed, |_| {}).unwrap();
        }
        let b: Vec<_> = c.nodes().iter().map(|n| (n.params().to_vec(), n.tracker().to_vec())).collect();
        assert_eq!(run(&s, Delivery::Ascending, iters), b, "{algorithm}");
    }
}
