//! Exact outputs of the state machine (openraft style): the messages it emits, in order, and the
//! errors it returns for out-of-protocol input.
mod common;
use common::*;
use dprox_compress::{Body, Compressed, CompressorSpec, ValueFormat};
use dprox_core::{Algorithm, CoreError, Exchange, Node, NodeConfig, Phase, Prox};

fn path_node(id: usize, algorithm: Algorithm) -> Node {
    // Path 0 - 1 - 2 with Metropolis weights: w_01 = w_12 = 1/3, w_00 = w_22 = 2/3, w_11 = 1/3.
    let row = match id {
        0 => vec![(0, 2.0 / 3.0), (1, 1.0 / 3.0)],
        1 => vec![(0, 1.0 / 3.0), (1, 1.0 / 3.0), (2, 1.0 / 3.0)],
        _ => vec![(1, 1.0 / 3.0), (2, 2.0 / 3.0)],
    };
    Node::new(NodeConfig {
        id,
        algorithm,
        row,
        lr: 0.5,
        gamma_x: 1.0,
        gamma_y: 1.0,
        prox: Prox::L1 { mu: 0.25 },
        compress_x: CompressorSpec::default(),
        compress_y: CompressorSpec::default(),
        seed: 0,
        x0: vec![1.0, -1.0],
        rounds: None,
    })
    .unwrap()
}

fn dense(v: &[f32]) -> Compressed {
    Compressed { dim: v.len(), body: Body::Dense { format: ValueFormat::F32, values: v.to_vec() } }
}

#[test]
fn dproxsgt_emits_y_half_then_the_prox_step_of_the_mixed_tracker() {
    let mut n = path_node(0, Algorithm::Dproxsgt);
    assert_eq!(n.phase(), Phase::NeedGradient);
    assert_eq!(n.peers().collect::<Vec<_>>(), vec![1]);
    n.handle_gradient(&[3.0, 0.75]).unwrap();
    // y^{-1/2} = 0 + g - 0 = g.
    let t = n.poll_transmit().unwrap();
    assert_eq!((t.iteration, t.exchange), (0, Exchange::Y));
    assert_eq!(t.payload, &dense(&[3.0, 0.75]));
    assert!(n.poll_transmit().is_none());
    assert_eq!(n.phase(), Phase::Exchanging(Exchange::Y));
    // Neighbour 1 sends y = [0, 3]: y^0 = 2/3 [3, 0.75] + 1/3 [0, 3] = [2, 1.5];
    // x^{1/2} = soft([1, -1] - 0.5 [2, 1.5], 0.125) = soft([0, -1.75]) = [0, -1.625].
    n.handle_message(1, 0, Exchange::Y, &dense(&[0.0, 3.0])).unwrap();
    assert_eq!(n.tracker(), &[2.0, 1.5]);
    let t = n.poll_transmit().unwrap();
    assert_eq!((t.iteration, t.exchange), (0, Exchange::X));
    assert_eq!(t.payload, &dense(&[0.0, -1.625]));
    // x^1 = 2/3 [0, -1.625] + 1/3 [0.75, 0.25] = [0.25, -1.0].
    n.handle_message(1, 0, Exchange::X, &dense(&[0.75, 0.25])).unwrap();
    assert_eq!(n.phase(), Phase::NeedGradient);
    assert_eq!(n.iteration(), 1);
    assert_eq!(n.params(), &[0.25, -1.0]);
}

#[test]
fn early_messages_are_kept_until_the_node_gets_there() {
    // Node 1's neighbours are both ahead: their y messages arrive before node 1's gradient.
    let mut n = path_node(1, Algorithm::Dproxsgt);
    n.handle_message(2, 0, Exchange::Y, &dense(&[3.0, 0.0])).unwrap();
    n.handle_message(0, 0, Exchange::Y, &dense(&[0.0, 3.0])).unwrap();
    assert!(n.poll_transmit().is_none());
    // With every y in, the gradient completes the y exchange at once: two messages queue up.
    n.handle_gradient(&[0.0, 0.0]).unwrap();
    let t = n.poll_transmit().unwrap();
    assert_eq!((t.iteration, t.exchange), (0, Exchange::Y));
    let t = n.poll_transmit().unwrap();
    assert_eq!((t.iteration, t.exchange), (0, Exchange::X));
    assert!(n.poll_transmit().is_none());
    assert_eq!(n.tracker(), &[1.0, 1.0]);
    // A neighbour one exchange ahead (next iteration's y) is kept aside, too.
    n.handle_message(0, 0, Exchange::X, &dense(&[0.0, 0.0])).unwrap();
    n.handle_message(0, 1, Exchange::Y, &dense(&[1.0, 1.0])).unwrap();
    n.handle_message(2, 0, Exchange::X, &dense(&[0.0, 0.0])).unwrap();
    assert_eq!(n.iteration(), 1);
}

#[test]
fn protocol_violations_are_refused_with_a_clear_error() {
    let mut n = path_node(1, Algorithm::Dproxsgt);
    let e = n.handle_message(5, 0, Exchange::Y, &dense(&[0.0, 0.0])).unwrap_err();
    assert_eq!(e.to_string(), "node 1: message from 5, which is not a neighbour");
    let e = n.handle_message(1, 0, Exchange::Y, &dense(&[0.0, 0.0])).unwrap_err();
    assert!(matches!(e, CoreError::UnknownPeer { from: 1, .. }), "own id is not a peer");
    let e = n.handle_message(0, 0, Exchange::Y, &dense(&[0.0])).unwrap_err();
    assert_eq!(e.to_string(), "node 1: message from 0 has length 1, the model has 2 parameters");
    n.handle_message(0, 0, Exchange::Y, &dense(&[0.0, 0.0])).unwrap();
    let e = n.handle_message(0, 0, Exchange::Y, &dense(&[0.0, 0.0])).unwrap_err();
    assert_eq!(e.to_string(), "node 1: duplicate y message from 0 for iteration 0");
    let e = n.handle_message(2, 3, Exchange::X, &dense(&[0.0, 0.0])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "node 1: x message of iteration 3 from 2 is out of step (expected iteration 0 y, or the one after)"
    );
    let e = n.handle_gradient(&[0.0, f32::NAN]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "node 1: non-finite gradient NaN at coordinate 1 in iteration 0 (the iterates diverged, or the objective overflowed: lower the step size)"
    );
    let e = n.handle_gradient(&[0.0]).unwrap_err();
    assert_eq!(e.to_string(), "node 1: gradient has length 1, the model has 2 parameters");
    n.handle_gradient(&[0.0, 0.0]).unwrap();
    let e = n.handle_gradient(&[0.0, 0.0]).unwrap_err();
    assert_eq!(e.to_string(), "node 1: gradient for iteration 0 passed while still waiting for y messages");
}

/// A `Compressed` built in memory is checked before any of it is applied: these used to panic (an
/// index past the end, a short sign bit-vector) or be summed partially (a short dense body).
#[test]
fn malformed_bodies_are_refused_before_anything_is_applied() {
    let mut n = path_node(1, Algorithm::Dproxsgt);
    let msg = |body| Compressed { dim: 2, body };
    let cases = [
        (
            msg(Body::Sparse { format: ValueFormat::F32, indices: vec![0, 7], values: vec![1.0, 2.0] }),
            "node 1: malformed message from 0: index 7 is out of range for 2 coordinates",
        ),
        (
            msg(Body::Sparse { format: ValueFormat::F32, indices: vec![1, 0], values: vec![1.0, 2.0] }),
            "node 1: malformed message from 0: indices are not strictly ascending (1 then 0)",
        ),
        (
            msg(Body::Sparse { format: ValueFormat::F32, indices: vec![0, 1], values: vec![1.0] }),
            "node 1: malformed message from 0: the values has 1 entries, expected 2",
        ),
        (
            msg(Body::Dense { format: ValueFormat::F32, values: vec![1.0] }),
            "node 1: malformed message from 0: the dense body has 1 entries, expected 2",
        ),
        (
            msg(Body::Sign { scale: 1.0, negative: vec![] }),
            "node 1: malformed message from 0: the sign bits has 0 entries, expected 1",
        ),
        (
            msg(Body::Sign { scale: f32::INFINITY, negative: vec![0] }),
            "node 1: malformed message from 0: the scale inf is not finite",
        ),
        (
            msg(Body::Qsgd { levels: 4, scale: 1.0, q: vec![1, -5] }),
            "node 1: malformed message from 0: level -5 is outside [-4, 4]",
        ),
    ];
    for (m, expected) in cases {
        let e = n.handle_message(0, 0, Exchange::Y, &m).unwrap_err();
        assert!(matches!(e, CoreError::Malformed { from: 0, .. }), "{e:?}");
        assert_eq!(e.to_string(), expected);
    }
    // Nothing was applied: a valid message from node 0 is still accepted, not a duplicate.
    n.handle_message(0, 0, Exchange::Y, &dense(&[0.0, 3.0])).unwrap();
}

#[test]
fn divergence_is_reported_not_propagated() {
    // D-PSGD with gradients of -f32::MAX: x overflows to +inf in iteration 1, and the node refuses
    // to send it in iteration 2 instead of spreading infinities to its neighbours.
    let mut n = path_node(0, Algorithm::Dpsgd);
    for t in 0..2 {
        n.handle_gradient(&[-f32::MAX, 0.0]).unwrap();
        n.poll_transmit().unwrap();
        n.handle_message(1, t, Exchange::X, &dense(&[f32::MAX, 0.0])).unwrap();
    }
    assert_eq!(n.params()[0], f32::INFINITY);
    let e = n.handle_gradient(&[0.0, 0.0]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "node 0: the x message of iteration 2 holds non-finite value inf at coordinate 0 (the iterates diverged: lower the step size)"
    );
}

#[test]
fn invalid_configs_are_refused() {
    let base = NodeConfig {
        id: 0,
        algorithm: Algorithm::Cdproxsgt,
        row: vec![(0, 0.5), (1, 0.5)],
        lr: 0.1,
        gamma_x: 0.5,
        gamma_y: 0.5,
        prox: Prox::None,
        compress_x: CompressorSpec::TopK { ratio: 0.5, values: ValueFormat::F32 },
        compress_y: CompressorSpec::default(),
        seed: 0,
        x0: vec![0.0; 4],
        rounds: None,
    };
    let err = |f: &dyn Fn(&mut NodeConfig)| {
        let mut c = base.clone();
        f(&mut c);
        Node::new(c).unwrap_err().to_string()
    };
    assert_eq!(
        err(&|c| c.row = vec![(0, 0.5), (1, 0.6)]),
        "node 0: invalid configuration: mixing row sums to 1.1, not 1"
    );
    assert!(err(&|c| c.row = vec![(1, 1.0)]).contains("must include the node's own weight"));
    assert!(err(&|c| c.gamma_x = 0.0).contains("gamma_x must be in (0, 1], got 0"));
    assert!(err(&|c| c.lr = -1.0).contains("lr must be positive"));
    assert!(
        err(&|c| c.compress_x = CompressorSpec::TopK { ratio: 1.5, values: ValueFormat::F32 })
            .contains("compression.x: ratio must be in (0, 1], got 1.5")
    );
    assert!(err(&|c| c.x0 = vec![]).contains("no parameters"));
    assert!(err(&|c| c.prox = Prox::L1 { mu: -0.1 }).contains("mu must be finite and >= 0"));
}

/// FIFO queue of (iteration, exchange, payload) per directed link (from, to).
type Links =
    std::collections::BTreeMap<(usize, usize), std::collections::VecDeque<(u64, Exchange, Compressed)>>;

/// An asynchronous schedule: nodes get their gradients at random times and messages are delivered
/// in random order with FIFO links (as a real network does), and the result equals lockstep,
/// whether the receivers lend their messages or give their buffers away.
#[test]
fn random_asynchronous_schedules_give_the_lockstep_iterates() {
    use dprox_core::{Cluster, Delivery};
    let (n, d, iters) = (6, 8, 25u64);
    let p = LeastSquares::new(n, d, 10, 1.0, 77);
    for (algorithm, q) in [
        (Algorithm::Dproxsgt, CompressorSpec::default()),
        (Algorithm::Cdproxsgt, CompressorSpec::TopK { ratio: 0.25, values: ValueFormat::F32 }),
        (Algorithm::Dpsgd, CompressorSpec::default()),
        (Algorithm::Choco, CompressorSpec::RandK { ratio: 0.5, values: ValueFormat::F32 }),
        (Algorithm::Allreduce, CompressorSpec::default()),
    ] {
        let s = Setup { algorithm, lr: 0.05, gamma: 0.6, prox: Prox::L1 { mu: 0.02 }, q, seed: 2 };
        let mut lock = Cluster::new(configs(n, d, &s)).unwrap();
        for _ in 0..iters {
            lock.step(|i, x, g| p.grad(i, x, g), Delivery::Ascending, |_| {}).unwrap();
        }
        for schedule in 0..5u64 {
            let mut nodes: Vec<Node> = configs(n, d, &s).into_iter().map(|c| Node::new(c).unwrap()).collect();
            // links[(from, to)] = FIFO queue of (iteration, exchange, payload)
            let mut links: Links = Default::default();
            let mut rng = dprox_rng::Rng::seed_from(schedule);
            let mut g = vec![0.0f32; d];
            loop {
                let ready: Vec<usize> = (0..n)
                    .filter(|&i| nodes[i].phase() == Phase::NeedGradient && nodes[i].iteration() < iters)
                    .collect();
                let busy: Vec<(usize, usize)> =
                    links.iter().filter(|(_, q)| !q.is_empty()).map(|(k, _)| *k).collect();
                if ready.is_empty() && busy.is_empty() {
                    break;
                }
                let pick = rng.below_usize(ready.len() + busy.len());
                if pick < ready.len() {
                    let i = ready[pick];
                    p.grad(i, nodes[i].params(), &mut g);
                    nodes[i].handle_gradient(&g).unwrap();
                    let peers: Vec<usize> = nodes[i].peers().collect();
                    while let Some(t) = nodes[i].poll_transmit() {
                        for &j in &peers {
                            links.entry((i, j)).or_default().push_back((
                                t.iteration,
                                t.exchange,
                                t.payload.clone(),
                            ));
                        }
                    }
                } else {
                    let (from, to) = busy[pick - ready.len()];
                    let (it, ex, mut m) = links.get_mut(&(from, to)).unwrap().pop_front().unwrap();
                    if schedule % 2 == 1 {
                        // The receiver gives its buffer away: kept messages are swapped in.
                        nodes[to].handle_message_taking(from, it, ex, &mut m).unwrap();
                        assert_eq!(m.dim, d, "a spare buffer of the same dimension comes back");
                    } else {
                        nodes[to].handle_message(from, it, ex, &m).unwrap();
                    }
                    let peers: Vec<usize> = nodes[to].peers().collect();
                    while let Some(t) = nodes[to].poll_transmit() {
                        for &j in &peers {
                            links.entry((to, j)).or_default().push_back((
                                t.iteration,
                                t.exchange,
                                t.payload.clone(),
                            ));
                        }
                    }
                }
            }
            for (i, (a, b)) in nodes.iter().zip(lock.nodes()).enumerate() {
                assert_eq!(a.iteration(), iters);
                assert_eq!(a.params(), b.params(), "{algorithm} schedule {schedule} node {i}");
            }
        }
    }
}
