use super::*;

/// Applies one period of `s` to `v` (rows as the core would mix them).
fn mix_period(s: &Schedule, v: &[f64], start: u64) -> Vec<f64> {
    let mut v = v.to_vec();
    for t in start..start + s.period() as u64 {
        v = (0..s.n()).map(|i| s.row(i, t).iter().map(|&(j, w)| w * v[j]).sum()).collect();
    }
    v
}

#[test]
fn one_peer_exponential_averages_exactly_in_log2_n_rounds() {
    for n in [2usize, 4, 8, 64, 1024] {
        let s = Schedule::one_peer_exponential(n).unwrap();
        assert_eq!(s.period(), n.trailing_zeros() as usize, "n = {n}");
        let v: Vec<f64> = (0..n).map(|i| (i * i % 7) as f64).collect();
        let mean = v.iter().sum::<f64>() / n as f64;
        for x in mix_period(&s, &v, 0) {
            assert!((x - mean).abs() < 1e-12, "n = {n}: {x} vs {mean}");
        }
        assert!(s.period_rho().unwrap() < 1e-6, "n = {n}: {}", s.period_rho().unwrap());
    }
}

#[test]
fn one_peer_exponential_sends_one_message_and_receives_one() {
    let s = Schedule::one_peer_exponential(12).unwrap();
    assert_eq!(s.period(), 4);
    for t in 0..8u64 {
        let hop = 1usize << (t % 4);
        let mut received = vec![0; 12];
        for i in 0..12 {
            let p = s.node(i).at(t).unwrap();
            assert_eq!((p.from, p.to), ((i + 12 - hop) % 12, (i + hop) % 12));
            received[p.to] += 1;
            assert_eq!(s.row(i, t), {
                let mut r = vec![(i, 0.5), (p.from, 0.5)];
                r.sort_by_key(|e| e.0);
                r
            });
        }
        assert!(received.iter().all(|&c| c == 1), "t = {t}: {received:?}");
    }
    // Not a power of two: one period does not average exactly, but it contracts.
    let rho = s.period_rho().unwrap();
    assert!(rho > 1e-3 && rho < 1.0, "{rho}");
    assert_eq!(s.node(3).peers(), vec![1, 2, 4, 5, 7, 11]);
}

#[test]
fn random_matchings_are_matchings_of_the_graph_drawn_by_seed() {
    let g = Graph::torus(4, 4).unwrap();
    let s = Schedule::random_matching(&g, 9).unwrap();
    assert!(s.period() >= 4 && s.period() < 2 * g.max_degree(), "{}", s.period());
    let mut seen = std::collections::BTreeSet::new();
    for t in 0..64u64 {
        for i in 0..16 {
            if let Some(p) = s.node(i).at(t) {
                assert_eq!(p.from, p.to);
                assert!(g.has_edge(i, p.from));
                assert_eq!(s.node(p.from).at(t).unwrap().from, i, "a matching is symmetric");
                seen.insert((i.min(p.from), i.max(p.from)));
            }
        }
    }
    assert_eq!(seen.len(), g.num_edges(), "every edge is in some round");
    let other = Schedule::random_matching(&g, 10).unwrap();
    let rounds = |s: &Schedule| (0..32u64).map(|t| s.choice().round(t, s.period())).collect::<Vec<_>>();
    assert_ne!(rounds(&s), rounds(&other), "the seed picks the rounds");
    assert_eq!(rounds(&s), rounds(&Schedule::random_matching(&g, 9).unwrap()));
    // Each round preserves the mean (doubly stochastic).
    let v: Vec<f64> = (0..16).map(|i| i as f64).collect();
    let w = mix_period(&s, &v, 5);
    assert!((w.iter().sum::<f64>() - v.iter().sum::<f64>()).abs() < 1e-9);
    assert_eq!(s.union_graph().unwrap().num_edges(), g.num_edges());
}

#[test]
fn the_period_rho_matches_a_dense_product() {
    let s = Schedule::one_peer_exponential(12).unwrap();
    let n = 12;
    // P - J/n densely, then its largest singular value by the dense eigen-solve of (P-J/n)^T (P-J/n).
    let cols: Vec<Vec<f64>> = (0..n)
        .map(|j| {
            let e: Vec<f64> = (0..n).map(|i| if i == j { 1.0 } else { 0.0 } - 1.0 / n as f64).collect();
            mix_period(&s, &e, 0)
        })
        .collect();
    let gram: Vec<Vec<f64>> =
        (0..n).map(|a| (0..n).map(|b| (0..n).map(|k| cols[a][k] * cols[b][k]).sum()).collect()).collect();
    let eig = crate::symmetric_eigenvalues(&gram).unwrap();
    let want = eig.last().unwrap().sqrt();
    let got = s.period_rho().unwrap();
    assert!((got - want).abs() < 1e-7, "{got} vs {want}");
}

#[test]
fn too_small_schedules_are_refused() {
    assert!(Schedule::one_peer_exponential(1).unwrap_err().to_string().contains("one-peer exponential"));
}
