//! Time-varying schedules in the core: one message per node and iteration, the tracking
//! invariant, order-independent iterates, convergence, and refusals of what the round does not
//! allow.

mod common;

use common::*;
use dprox_compress::{CompressorSpec, ValueFormat};
use dprox_core::{Algorithm, Cluster, CoreError, Delivery, Exchange, NodeConfig, Prox, Recipients};
use dprox_topology::Schedule;

/// Configs of `n` nodes running `s` under `schedule` (rows: own weight 1, every partner 0).
fn scheduled(n: usize, d: usize, s: &Setup, schedule: &Schedule) -> Vec<NodeConfig> {
    let mut cfgs = configs(n, d, s);
    for (i, c) in cfgs.iter_mut().enumerate() {
        let rounds = schedule.node(i);
        let mut row: Vec<(usize, f64)> = rounds.peers().into_iter().map(|j| (j, 0.0)).collect();
        row.push((i, 1.0));
        row.sort_by_key(|e| e.0);
        c.row = row;
        c.rounds = Some(rounds);
    }
    cfgs
}

fn setup(algorithm: Algorithm) -> Setup {
    Setup {
        algorithm,
        lr: 0.05,
        gamma: 1.0,
        prox: Prox::L1 { mu: 0.01 },
        q: CompressorSpec::Identity { values: ValueFormat::F32 },
        seed: 3,
    }
}

/// Runs `iters` iterations; returns every node's x, and checks after each iteration that the
/// mean of the trackers equals the mean of the latest gradients (to f32 rounding).
fn run(cfgs: Vec<NodeConfig>, p: &LeastSquares, iters: usize, delivery: Delivery) -> Vec<Vec<f32>> {
    let n = cfgs.len();
    let mut c = Cluster::new(cfgs).unwrap();
    let mut latest = vec![vec![0.0f32; p.d]; n];
    for t in 0..iters {
        let mut sends = 0;
        c.step(
            |i, x, g| {
                p.grad(i, x, g);
                latest[i].copy_from_slice(g);
            },
            delivery,
            |m| {
                assert_eq!(m.recipients, 1, "one message to one peer");
                sends += 1;
            },
        )
        .unwrap();
        if c.nodes()[0].algorithm() == Algorithm::Dproxsgt {
            assert_eq!(sends, 2 * n, "iteration {t}: one y and one x message per node");
            let ys: Vec<&[f32]> = c.nodes().iter().map(|n| n.tracker()).collect();
            let gs: Vec<&[f32]> = latest.iter().map(|g| g.as_slice()).collect();
            for (a, b) in mean(&ys).iter().zip(mean(&gs)) {
                assert!((a - b).abs() < 1e-5 * (1.0 + b.abs()), "iteration {t}: mean y {a}, mean g {b}");
            }
        }
    }
    c.nodes().iter().map(|n| n.params().to_vec()).collect()
}

#[test]
fn one_peer_exponential_tracks_and_converges() {
    let (n, d) = (8, 5);
    let p = LeastSquares::new(n, d, 20, 1.0, 11);
    let s = setup(Algorithm::Dproxsgt);
    let schedule = Schedule::one_peer_exponential(n).unwrap();
    let x = run(scheduled(n, d, &s, &schedule), &p, 600, Delivery::Ascending);
    let star = p.solve(s.prox, s.lr as f64);
    for xi in &x {
        let err: f64 = xi.iter().zip(&star).map(|(a, b)| (*a as f64 - b).powi(2)).sum::<f64>().sqrt();
        assert!(err < 1e-3, "node x {xi:?} vs x* {star:?}: {err}");
    }
}

#[test]
fn scheduled_iterates_do_not_depend_on_delivery_order() {
    let (n, d) = (12, 4);
    let p = LeastSquares::new(n, d, 10, 1.0, 5);
    for (algorithm, schedule) in [
        (Algorithm::Dproxsgt, Schedule::one_peer_exponential(n).unwrap()),
        (Algorithm::Dpsgd, Schedule::random_matching(&dprox_topology::Graph::ring(n).unwrap(), 4).unwrap()),
        (Algorithm::Cdproxsgt, Schedule::one_peer_exponential(n).unwrap()),
    ] {
        let s = setup(algorithm);
        let a = run(scheduled(n, d, &s, &schedule), &p, 40, Delivery::Ascending);
        let b = run(scheduled(n, d, &s, &schedule), &p, 40, Delivery::Descending);
        let c = run(scheduled(n, d, &s, &schedule), &p, 40, Delivery::Shuffled(9));
        assert_eq!(a, b, "{algorithm:?}");
        assert_eq!(a, c, "{algorithm:?}");
    }
}

/// CDProxSGT with identity f32 compression and gamma = 1 is DProxSGT bit for bit, under a
/// schedule too.
#[test]
fn exact_cdproxsgt_equals_dproxsgt_under_a_schedule() {
    let (n, d) = (8, 3);
    let p = LeastSquares::new(n, d, 10, 1.0, 2);
    let schedule = Schedule::one_peer_exponential(n).unwrap();
    let a = run(scheduled(n, d, &setup(Algorithm::Dproxsgt), &schedule), &p, 50, Delivery::Ascending);
    let b = run(scheduled(n, d, &setup(Algorithm::Cdproxsgt), &schedule), &p, 50, Delivery::Ascending);
    assert_eq!(a, b);
}

#[test]
fn compressed_estimates_and_allreduce_refuse_a_schedule() {
    let (n, d) = (4, 3);
    let schedule = Schedule::one_peer_exponential(n).unwrap();
    let mut s = setup(Algorithm::Cdproxsgt);
    s.q = CompressorSpec::TopK { ratio: 0.5, values: ValueFormat::F32 };
    let e = Cluster::new(scheduled(n, d, &s, &schedule)).unwrap_err();
    assert!(e.to_string().contains("time-varying schedule needs an algorithm that rebuilds"), "{e}");
}

#[test]
fn a_message_from_a_peer_outside_the_round_is_refused() {
    let (n, d) = (8, 2);
    let schedule = Schedule::one_peer_exponential(n).unwrap();
    let mut c = Cluster::new(scheduled(n, d, &setup(Algorithm::Dproxsgt), &schedule)).unwrap();
    let node = &mut c.nodes_mut()[0];
    node.handle_gradient(&[0.5, 0.5]).unwrap();
    let t = node.poll_transmit().unwrap();
    assert_eq!(t.to, Recipients::One(1), "round 0: node 0 sends to 0 + 1");
    let payload = t.payload.clone();
    // Round 0: node 0 hears from 7 only (over the period: from 7, 6 and 4).
    let e = node.handle_message(6, 0, Exchange::Y, &payload).unwrap_err();
    assert!(matches!(e, CoreError::NotScheduled { node: 0, from: 6, iteration: 0, partner: 7 }), "{e}");
    assert_eq!(e.refused_from(), Some(6));
    assert_eq!(node.missing_peers(), vec![7]);
    node.handle_message(7, 0, Exchange::Y, &payload).unwrap();
}

/// Nodes driven one event at a time in a seeded random order (a gradient here, one message on
/// one link there), as a real cluster interleaves them: under a directed schedule a node can
/// run several iterations ahead of the peers it sends to, which must keep its messages.
fn run_async(cfgs: Vec<NodeConfig>, p: &LeastSquares, iters: u64, seed: u64) -> (Vec<Vec<f32>>, usize) {
    use std::collections::{BTreeMap, VecDeque};
    let mut nodes: Vec<dprox_core::Node> =
        cfgs.into_iter().map(|c| dprox_core::Node::new(c).unwrap()).collect();
    type Queue = VecDeque<(u64, Exchange, dprox_compress::Compressed)>;
    let mut links: BTreeMap<(usize, usize), Queue> = BTreeMap::new();
    let mut rng = dprox_rng::Rng::seed_from(seed);
    let mut g = vec![0.0f32; p.d];
    let mut max_lead = 0;
    loop {
        let mut actions: Vec<(usize, usize)> = (0..nodes.len())
            .filter(|&i| nodes[i].phase() == dprox_core::Phase::NeedGradient && nodes[i].iteration() < iters)
            .map(|i| (i, i))
            .collect();
        actions.extend(links.iter().filter(|(_, q)| !q.is_empty()).map(|(&k, _)| k));
        if actions.is_empty() {
            break;
        }
        let (from, to) = actions[rng.below_usize(actions.len())];
        if from == to {
            p.grad(from, nodes[from].params(), &mut g);
            nodes[from].handle_gradient(&g).unwrap();
        } else {
            let (it, ex, payload) = links.get_mut(&(from, to)).unwrap().pop_front().unwrap();
            max_lead = max_lead.max((it - nodes[to].iteration()) as usize);
            nodes[to].handle_message(from, it, ex, &payload).unwrap();
        }
        let i = if from == to { from } else { to };
        let peers: Vec<usize> = nodes[i].peers().collect();
        while let Some(t) = nodes[i].poll_transmit() {
            for &r in peers.iter().filter(|&&r| t.to.includes(r)) {
                links.entry((i, r)).or_default().push_back((t.iteration, t.exchange, t.payload.clone()));
            }
        }
    }
    assert!(nodes.iter().all(|n| n.iteration() == iters), "every node finished");
    (nodes.iter().map(|n| n.params().to_vec()).collect(), max_lead)
}

#[test]
fn asynchronous_interleavings_give_the_lockstep_iterates() {
    let (n, d) = (8, 3);
    let p = LeastSquares::new(n, d, 10, 1.0, 4);
    let s = setup(Algorithm::Dproxsgt);
    for schedule in [
        Schedule::one_peer_exponential(n).unwrap(),
        Schedule::random_matching(&dprox_topology::Graph::torus(2, 4).unwrap(), 1).unwrap(),
    ] {
        let lockstep = run(scheduled(n, d, &s, &schedule), &p, 30, Delivery::Ascending);
        let mut lead = 0;
        for seed in 0..5 {
            let (x, l) = run_async(scheduled(n, d, &s, &schedule), &p, 30, seed);
            assert_eq!(x, lockstep, "seed {seed}");
            lead = lead.max(l);
        }
        assert!(lead >= 2, "some message came from two or more iterations ahead ({lead})");
    }
}
