//! Membership epochs: after every change (a node leaves, another crashes, one joins back, a link
//! goes down), the tracking invariant holds again over the live nodes (mean y = mean of the
//! latest gradients), CDProxSGT's running sums agree with the public estimates they are made of,
//! and a node restored from a checkpoint continues exactly as the original.
mod common;
use common::*;
use dprox_compress::{CompressorSpec, ValueFormat};
use dprox_core::{Algorithm, Cluster, Delivery, EpochStart, Node, Prox};

/// Metropolis rows of the graph `edges` over the nodes `members` (ids of the full run).
fn rows(members: &[usize], edges: &[(usize, usize)]) -> Vec<(usize, Vec<(usize, f64)>)> {
    let deg = |i: usize| edges.iter().filter(|&&(a, b)| a == i || b == i).count();
    members
        .iter()
        .map(|&i| {
            let mut row: Vec<(usize, f64)> = edges
                .iter()
                .filter_map(|&(a, b)| {
                    if a == i {
                        Some(b)
                    } else if b == i {
                        Some(a)
                    } else {
                        None
                    }
                })
                .map(|j| (j, 1.0 / (1.0 + deg(i).max(deg(j)) as f64)))
                .collect();
            let own = 1.0 - row.iter().map(|r| r.1).sum::<f64>();
            row.push((i, own));
            row.sort_by_key(|r| r.0);
            (i, row)
        })
        .collect()
}

fn ring(members: &[usize]) -> Vec<(usize, usize)> {
    let m = members.len();
    (0..m).map(|k| (members[k].min(members[(k + 1) % m]), members[k].max(members[(k + 1) % m]))).collect()
}

#[test]
fn tracking_holds_over_the_live_nodes_after_every_membership_change() {
    let (n, d) = (6, 10);
    let p = LeastSquares::new(n, d, 15, 1.0, 3);
    for (alg, q, gamma) in [
        (Algorithm::Dproxsgt, CompressorSpec::default(), 1.0f32),
        (Algorithm::Cdproxsgt, CompressorSpec::TopK { ratio: 0.3, values: ValueFormat::F32 }, 0.5),
        (Algorithm::Cdproxsgt, CompressorSpec::Qsgd { levels: 4 }, 0.3),
    ] {
        let s =
            Setup { algorithm: alg, lr: 0.05, gamma, prox: Prox::L1 { mu: 0.01 }, q: q.clone(), seed: 11 };
        let mut c = Cluster::new(configs(n, d, &s)).unwrap();
        // Epochs: all six; node 2 leaves at 10; node 4 crashes at 20; node 2 rejoins at 30.
        let changes: [(u64, Vec<usize>); 3] =
            [(10, vec![0, 1, 3, 4, 5]), (20, vec![0, 1, 3, 5]), (30, vec![0, 1, 2, 3, 5])];
        let mut latest = vec![vec![0.0f32; d]; n];
        for t in 0..40u64 {
            if let Some((_, members)) = changes.iter().find(|c| c.0 == t) {
                let epoch = changes.iter().position(|c| c.0 == t).unwrap() as u64 + 1;
                for i in 0..n {
                    c.set_active(i, members.contains(&i));
                }
                for (i, row) in rows(members, &ring(members)) {
                    c.nodes_mut()[i].start_epoch(EpochStart { epoch, iteration: t, row }).unwrap();
                }
            }
            c.step(
                |i, x, g| {
                    p.grad(i, x, g);
                    let mut r = dprox_rng::stream(5, &[i as u64, t]);
                    g.iter_mut().for_each(|v| *v += 0.1 * r.normal() as f32);
                    latest[i].copy_from_slice(g);
                },
                Delivery::Shuffled(t),
                |_| {},
            )
            .unwrap();
            let live: Vec<usize> = (0..n).filter(|&i| c.is_active(i)).collect();
            let ys: Vec<&[f32]> = live.iter().map(|&i| c.nodes()[i].tracker()).collect();
            let gs: Vec<&[f32]> = live.iter().map(|&i| latest[i].as_slice()).collect();
            let (my, mg) = (mean(&ys), mean(&gs));
            for k in 0..d {
                let tol = 1e-4 * (1.0 + mg[k].abs());
                assert!((my[k] - mg[k]).abs() < tol, "{alg} {q:?} t {t} k {k}: {} vs {}", my[k], mg[k]);
            }
            // The rejoined node and the others agree on the epoch.
            assert!(
                live.iter()
                    .all(|&i| c.nodes()[i].epoch()
                        == live.iter().map(|&j| c.nodes()[j].epoch()).max().unwrap())
            );
        }
    }
}

#[test]
fn an_epoch_started_mid_iteration_restarts_it_from_its_x() {
    let (n, d) = (3, 4);
    let s = Setup {
        algorithm: Algorithm::Cdproxsgt,
        lr: 0.1,
        gamma: 0.5,
        prox: Prox::None,
        q: CompressorSpec::TopK { ratio: 0.5, values: ValueFormat::F32 },
        seed: 2,
    };
    let cfg = configs(n, d, &s);
    let mut node = Node::new(cfg[0].clone()).unwrap();
    let x0 = node.params().to_vec();
    node.handle_gradient(&[1.0, -2.0, 0.5, 3.0]).unwrap();
    while node.poll_transmit().is_some() {}
    // The neighbours' y messages complete the y exchange: x takes its step (x^{t+1/2}), and the
    // x exchange opens.
    let dense = |v: [f32; 4]| dprox_compress::Compressed {
        dim: 4,
        body: dprox_compress::Body::Dense { format: ValueFormat::F32, values: v.to_vec() },
    };
    node.handle_message(1, 0, dprox_core::Exchange::Y, &dense([1.0, 1.0, 1.0, 1.0])).unwrap();
    node.handle_message(2, 0, dprox_core::Exchange::Y, &dense([2.0, 0.0, -1.0, 1.0])).unwrap();
    assert_eq!(node.phase(), dprox_core::Phase::Exchanging(dprox_core::Exchange::X));
    assert_ne!(node.params(), &x0[..], "x moved mid-iteration");
    // An epoch at this iteration restarts it from x at its start.
    let row = vec![(0, 0.5), (1, 0.5)];
    node.start_epoch(EpochStart { epoch: 1, iteration: 0, row: row.clone() }).unwrap();
    assert_eq!(node.params(), &x0[..]);
    assert_eq!((node.iteration(), node.epoch()), (0, 1));
    assert!(node.tracker().iter().all(|&v| v == 0.0));
    assert_eq!(node.peers().collect::<Vec<_>>(), [1]);
    // The first message of the epoch is the gradient itself (tracking restarts as at 0).
    node.handle_gradient(&[1.0, -2.0, 0.5, 3.0]).unwrap();
    let t = node.poll_transmit().unwrap();
    assert_eq!((t.epoch, t.iteration), (1, 0));
    // Refusals: an older epoch, an iteration in the past, a row without the node.
    let e = node.start_epoch(EpochStart { epoch: 1, iteration: 5, row: row.clone() }).unwrap_err();
    assert!(e.to_string().contains("epoch 1 does not follow the current epoch 1"), "{e}");
    let mut ahead = Node::new(cfg[1].clone()).unwrap();
    ahead.start_epoch(EpochStart { epoch: 1, iteration: 7, row: vec![(1, 1.0)] }).unwrap();
    let e = ahead.start_epoch(EpochStart { epoch: 2, iteration: 3, row: vec![(1, 1.0)] }).unwrap_err();
    assert!(e.to_string().contains("starts at iteration 3, before the node's 7"), "{e}");
    let e = ahead.start_epoch(EpochStart { epoch: 2, iteration: 7, row: vec![(0, 1.0)] }).unwrap_err();
    assert!(e.to_string().contains("must include the node's own weight"), "{e}");
}

#[test]
fn a_node_restored_from_its_checkpoint_continues_bit_for_bit() {
    let (n, d) = (4, 8);
    let p = LeastSquares::new(n, d, 12, 1.0, 9);
    let s = Setup {
        algorithm: Algorithm::Cdproxsgt,
        lr: 0.05,
        gamma: 0.5,
        prox: Prox::L1 { mu: 0.01 },
        q: CompressorSpec::TopK { ratio: 0.25, values: ValueFormat::F32 },
        seed: 4,
    };
    let cfg = configs(n, d, &s);
    let mut a = Cluster::new(cfg.clone()).unwrap();
    let grad = |i: usize, x: &[f32], g: &mut [f32]| p.grad(i, x, g);
    for node in a.nodes_mut() {
        node.snapshot_at(15);
    }
    for _ in 0..15 {
        a.step(grad, Delivery::Ascending, |_| {}).unwrap();
    }
    let states: Vec<_> = a.nodes_mut().iter_mut().map(|n| n.take_snapshot().unwrap()).collect();
    let mut b = Cluster::new(cfg.clone()).unwrap();
    for (i, st) in states.into_iter().enumerate() {
        assert_eq!(st.iteration, 15);
        b.replace(i, Node::restore(cfg[i].clone(), st).unwrap());
    }
    for _ in 15..40 {
        a.step(grad, Delivery::Ascending, |_| {}).unwrap();
        b.step(grad, Delivery::Shuffled(3), |_| {}).unwrap();
    }
    for i in 0..n {
        assert_eq!(a.nodes()[i].params(), b.nodes()[i].params(), "node {i}");
        assert_eq!(a.nodes()[i].tracker(), b.nodes()[i].tracker(), "node {i}");
        assert_eq!(a.nodes()[i].estimates(), b.nodes()[i].estimates(), "node {i}");
    }
}
