use super::*;

fn check_invariants(g: &Graph) {
    for i in 0..g.n() {
        let l = g.neighbors(i);
        assert!(l.windows(2).all(|w| w[0] < w[1]), "node {i}: {l:?} not strictly ascending");
        assert!(!l.contains(&i), "self loop at {i}");
        for &j in l {
            assert!(g.neighbors(j).contains(&i), "edge {i}-{j} not symmetric");
        }
    }
    assert_eq!(g.edges().len(), g.num_edges());
}

#[test]
fn ring_edges() {
    let g = Graph::ring(5).unwrap();
    check_invariants(&g);
    assert_eq!(g.edges(), vec![(0, 1), (0, 4), (1, 2), (2, 3), (3, 4)]);
    assert_eq!(g.neighbors(0), &[1, 4]);
    assert_eq!(Graph::ring(2).unwrap().edges(), vec![(0, 1)]);
    let one = Graph::ring(1).unwrap();
    assert_eq!((one.n(), one.num_edges(), one.is_connected()), (1, 0, true));
    assert!(Graph::ring(0).is_err());
}

#[test]
fn torus_edges_dedupe_side_two() {
    let g = Graph::torus(2, 3).unwrap();
    check_invariants(&g);
    assert_eq!(g.edges(), vec![(0, 1), (0, 2), (0, 3), (1, 2), (1, 4), (2, 5), (3, 4), (3, 5), (4, 5)]);
    let g = Graph::torus(3, 4).unwrap();
    check_invariants(&g);
    assert_eq!(g.num_edges(), 24);
    assert!((0..12).all(|i| g.degree(i) == 4));
    // node (1, 0) = 4: left wraps to (1, 3) = 7, up (0, 0) = 0, down (2, 0) = 8.
    assert_eq!(g.neighbors(4), &[0, 5, 7, 8]);
    let g = Graph::torus(2, 2).unwrap();
    assert_eq!(g.edges(), vec![(0, 1), (0, 2), (1, 3), (2, 3)]);
}

#[test]
fn torus_rejects_side_one() {
    let e = Graph::torus(1, 5).unwrap_err();
    assert_eq!(e, TopologyError::TorusSideTooSmall { rows: 1, cols: 5 });
    assert!(e.to_string().contains("1 x 5"), "{e}");
}

#[test]
fn torus_auto_picks_most_square() {
    assert_eq!(torus_shape(12), Some((3, 4)));
    assert_eq!(torus_shape(16), Some((4, 4)));
    assert_eq!(torus_shape(4), Some((2, 2)));
    assert_eq!(torus_shape(14), Some((2, 7)));
    assert_eq!(Graph::torus_auto(12).unwrap(), Graph::torus(3, 4).unwrap());
    for n in [0, 1, 2, 3, 7, 13] {
        let e = Graph::torus_auto(n).unwrap_err();
        assert!(e.to_string().contains(&format!("n = {n} ")), "{e}");
    }
}

#[test]
fn complete_and_star() {
    let g = Graph::complete(4).unwrap();
    check_invariants(&g);
    assert_eq!(g.edges(), vec![(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]);
    assert_eq!(Graph::complete(1).unwrap().num_edges(), 0);
    let s = Graph::star(4).unwrap();
    check_invariants(&s);
    assert_eq!(s.edges(), vec![(0, 1), (0, 2), (0, 3)]);
    assert_eq!((s.max_degree(), s.min_degree()), (3, 1));
    let e = Graph::star(1).unwrap_err();
    assert!(e.to_string().contains("star needs at least 2"), "{e}");
}

#[test]
fn hypercube_edges() {
    let g = Graph::hypercube(8).unwrap();
    check_invariants(&g);
    assert_eq!(
        g.edges(),
        vec![(0, 1), (0, 2), (0, 4), (1, 3), (1, 5), (2, 3), (2, 6), (3, 7), (4, 5), (4, 6), (5, 7), (6, 7)]
    );
    assert_eq!(Graph::hypercube(2).unwrap().edges(), vec![(0, 1)]);
    let e = Graph::hypercube(6).unwrap_err();
    assert_eq!(e, TopologyError::NotPowerOfTwo { n: 6 });
    assert!(e.to_string().contains("n = 6"));
    assert!(Graph::hypercube(1).is_err());
}

#[test]
fn exponential_edges() {
    let g = Graph::exponential(8).unwrap();
    check_invariants(&g);
    // i ~ i +- 1, i +- 2, i +- 4 (mod 8); +4 and -4 coincide.
    assert_eq!(g.neighbors(0), &[1, 2, 4, 6, 7]);
    assert_eq!(g.neighbors(5), &[1, 3, 4, 6, 7]);
    assert!((0..8).all(|i| g.degree(i) == 5));
    assert_eq!(g.num_edges(), 20);
    // n = 5: hops 1, 2, 4 = -1 cover every other node.
    assert_eq!(Graph::exponential(5).unwrap(), Graph::complete(5).unwrap());
    assert_eq!(Graph::exponential(2).unwrap().edges(), vec![(0, 1)]);
}

#[test]
fn from_edges_accepts_and_sorts() {
    let g = Graph::from_edges(4, &[(3, 0), (1, 0), (2, 1)]).unwrap();
    check_invariants(&g);
    assert_eq!(g.edges(), vec![(0, 1), (0, 3), (1, 2)]);
    assert_eq!(g.neighbors(0), &[1, 3]);
    assert!(g.has_edge(3, 0) && !g.has_edge(0, 2) && !g.has_edge(9, 0));
}

#[test]
fn from_edges_errors_name_the_problem() {
    let e = Graph::from_edges(4, &[(0, 1), (2, 4)]).unwrap_err();
    assert_eq!(e, TopologyError::EdgeOutOfRange { u: 2, v: 4, n: 4 });
    assert!(e.to_string().contains("(2, 4)") && e.to_string().contains("n = 4"), "{e}");

    let e = Graph::from_edges(4, &[(0, 1), (2, 2)]).unwrap_err();
    assert!(e.to_string().contains("self loop at node 2"), "{e}");

    let e = Graph::from_edges(4, &[(0, 1), (1, 2), (1, 0)]).unwrap_err();
    assert_eq!(e, TopologyError::DuplicateEdge { u: 1, v: 0 });
    assert!(e.to_string().contains("duplicate edge (1, 0)"), "{e}");
    let e = Graph::from_edges(4, &[(2, 3), (2, 3)]).unwrap_err();
    assert_eq!(e, TopologyError::DuplicateEdge { u: 2, v: 3 });

    assert!(Graph::from_edges(0, &[]).is_err());
}

#[test]
fn components_and_connectivity() {
    let g = Graph::from_edges(6, &[(0, 4), (2, 3), (4, 1)]).unwrap();
    assert_eq!(g.components(), vec![vec![0, 1, 4], vec![2, 3], vec![5]]);
    assert!(!g.is_connected());
    assert!(Graph::ring(7).unwrap().is_connected());
}

#[test]
fn erdos_renyi_reproducible_and_seeded() {
    let a = Graph::erdos_renyi(40, 0.2, 7).unwrap();
    let b = Graph::erdos_renyi(40, 0.2, 7).unwrap();
    let c = Graph::erdos_renyi(40, 0.2, 8).unwrap();
    check_invariants(&a);
    assert_eq!(a, b);
    assert_ne!(a, c);
    // 780 pairs at p = 0.2: expect ~156 edges; +-60 is far beyond 5 standard deviations.
    assert!((96..216).contains(&a.num_edges()), "{}", a.num_edges());
    assert_eq!(Graph::erdos_renyi(6, 1.0, 1).unwrap(), Graph::complete(6).unwrap());
}

#[test]
fn erdos_renyi_rejects_bad_probability() {
    for p in [0.0, -0.5, 1.5, f64::NAN] {
        let e = Graph::erdos_renyi(10, p, 1).unwrap_err();
        assert!(e.to_string().contains("(0, 1]"), "{e}");
    }
    let e = Graph::erdos_renyi(10, 1.5, 1).unwrap_err();
    assert!(e.to_string().contains("p = 1.5"), "{e}");
}
