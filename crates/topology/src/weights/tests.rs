use crate::{Graph, MixingMatrix, TopologyError, validate_graph_connected};

#[test]
fn metropolis_ring_is_exactly_one_third() {
    let g = Graph::ring(6).unwrap();
    let w = MixingMatrix::metropolis(&g).unwrap();
    for i in 0..6 {
        let row = w.row(i);
        assert_eq!(row.len(), 3);
        assert!(row.windows(2).all(|p| p[0].0 < p[1].0), "row {i} unsorted: {row:?}");
        for &(j, wij) in row {
            if j != i {
                assert_eq!(wij, 1.0 / 3.0);
            } else {
                assert!((wij - 1.0 / 3.0).abs() < 1e-15);
            }
        }
    }
    assert_eq!(w.row(0), &[(0, w.weight(0, 0)), (1, 1.0 / 3.0), (5, 1.0 / 3.0)]);
    assert_eq!(w.weight(0, 3), 0.0);
}

#[test]
fn metropolis_star_uses_max_degree_per_edge() {
    let g = Graph::star(5).unwrap();
    let w = MixingMatrix::metropolis(&g).unwrap();
    // every edge touches the hub of degree 4: w = 1/5.
    assert_eq!(w.weight(0, 3), 0.2);
    assert_eq!(w.weight(3, 0), 0.2);
    assert!((w.weight(0, 0) - 0.2).abs() < 1e-15);
    assert!((w.weight(2, 2) - 0.8).abs() < 1e-15);
    assert_eq!(w.weight(1, 2), 0.0);
}

#[test]
fn metropolis_irregular_graph() {
    // path 0-1-2 plus leaf 3 on 1: deg = [1, 3, 1, 1]
    let g = Graph::from_edges(4, &[(0, 1), (1, 2), (1, 3)]).unwrap();
    let w = MixingMatrix::metropolis(&g).unwrap();
    assert_eq!(w.weight(0, 1), 0.25);
    assert!((w.weight(0, 0) - 0.75).abs() < 1e-15);
    assert!((w.weight(1, 1) - 0.25).abs() < 1e-15);
}

#[test]
fn max_degree_weights() {
    let g = Graph::from_edges(4, &[(0, 1), (1, 2), (1, 3)]).unwrap();
    let w = MixingMatrix::max_degree(&g).unwrap();
    assert_eq!(w.weight(1, 2), 0.25);
    assert_eq!(w.weight(0, 0), 1.0 - 1.0 / 4.0);
    assert_eq!(w.weight(1, 1), 1.0 - 3.0 / 4.0);
    let ring = Graph::ring(9).unwrap();
    // regular graphs: the two rules agree.
    let a = MixingMatrix::max_degree(&ring).unwrap().to_dense();
    let b = MixingMatrix::metropolis(&ring).unwrap().to_dense();
    for i in 0..9 {
        for j in 0..9 {
            assert!((a[i][j] - b[i][j]).abs() < 1e-15);
        }
    }
}

#[test]
fn single_node_is_identity() {
    let g = Graph::complete(1).unwrap();
    let w = MixingMatrix::metropolis(&g).unwrap();
    assert_eq!(w.row(0), &[(0, 1.0)]);
    assert_eq!(w.rho(), 0.0);
}

#[test]
fn explicit_roundtrip_keeps_diagonal_drops_zeros() {
    let g = Graph::from_edges(3, &[(0, 1), (1, 2)]).unwrap();
    let dense = vec![vec![0.5, 0.5, 0.0], vec![0.5, 0.0, 0.5], vec![0.0, 0.5, 0.5]];
    let w = MixingMatrix::explicit(&g, &dense).unwrap();
    assert_eq!(w.row(1), &[(0, 0.5), (1, 0.0), (2, 0.5)]);
    assert_eq!(w.row(0), &[(0, 0.5), (1, 0.5)]);
    assert_eq!(w.to_dense(), dense);
    assert_eq!(w.n(), 3);
}

fn path3() -> Graph {
    Graph::from_edges(3, &[(0, 1), (1, 2)]).unwrap()
}

#[test]
fn explicit_rejects_asymmetric() {
    let dense = vec![vec![0.6, 0.4, 0.0], vec![0.5, 0.0, 0.5], vec![0.0, 0.5, 0.5]];
    let e = MixingMatrix::explicit(&path3(), &dense).unwrap_err();
    assert_eq!(e, TopologyError::Asymmetric { i: 0, j: 1, wij: 0.4, wji: 0.5 });
    let s = e.to_string();
    assert!(s.contains("not symmetric") && s.contains("W[0][1] = 0.4") && s.contains("W[1][0] = 0.5"), "{s}");
}

#[test]
fn explicit_rejects_bad_row_sum() {
    let dense = vec![vec![0.5, 0.5, 0.0], vec![0.5, 0.1, 0.5], vec![0.0, 0.5, 0.5]];
    let e = MixingMatrix::explicit(&path3(), &dense).unwrap_err();
    assert!(matches!(e, TopologyError::RowSum { row: 1, sum } if (sum - 1.1).abs() < 1e-12));
    assert!(e.to_string().contains("row 1") && e.to_string().contains("1.1"), "{e}");
    // within tolerance is fine
    let mut ok = vec![vec![0.5, 0.5, 0.0], vec![0.5, 0.0, 0.5], vec![0.0, 0.5, 0.5]];
    ok[1][1] = 1e-10;
    assert!(MixingMatrix::explicit(&path3(), &ok).is_ok());
}

#[test]
fn explicit_rejects_negative_weight() {
    let dense = vec![vec![1.5, -0.5, 0.0], vec![-0.5, 1.0, 0.5], vec![0.0, 0.5, 0.5]];
    let e = MixingMatrix::explicit(&path3(), &dense).unwrap_err();
    assert_eq!(e, TopologyError::NegativeWeight { i: 0, j: 1, value: -0.5 });
    assert!(e.to_string().contains("negative weight W[0][1] = -0.5"), "{e}");
}

#[test]
fn explicit_rejects_weight_off_graph() {
    let dense = vec![vec![0.5, 0.25, 0.25], vec![0.25, 0.25, 0.5], vec![0.25, 0.5, 0.25]];
    let e = MixingMatrix::explicit(&path3(), &dense).unwrap_err();
    assert_eq!(e, TopologyError::WeightOffGraph { i: 0, j: 2, value: 0.25 });
    assert!(e.to_string().contains("(0, 2) is not an edge"), "{e}");
}

#[test]
fn explicit_rejects_bad_shape_and_nan() {
    let e = MixingMatrix::explicit(&path3(), &[vec![1.0; 3], vec![1.0; 3]]).unwrap_err();
    assert!(e.to_string().contains("2 rows, expected 3"), "{e}");
    let e = MixingMatrix::explicit(&path3(), &[vec![1.0; 3], vec![1.0; 2], vec![1.0; 3]]).unwrap_err();
    assert!(e.to_string().contains("row 1") && e.to_string().contains("2 entries"), "{e}");
    let dense = vec![vec![f64::NAN, 0.5, 0.0], vec![0.5, 0.0, 0.5], vec![0.0, 0.5, 0.5]];
    let e = MixingMatrix::explicit(&path3(), &dense).unwrap_err();
    assert!(e.to_string().contains("W[0][0] = NaN is not finite"), "{e}");
}

#[test]
fn disconnected_graph_is_rejected() {
    let g = Graph::from_edges(4, &[(0, 1), (2, 3)]).unwrap();
    let e = MixingMatrix::metropolis(&g).unwrap_err();
    let s = e.to_string();
    assert!(s.contains("not connected") && s.contains("2 components") && s.contains("2, 3"), "{s}");
    assert_eq!(validate_graph_connected(&g).unwrap_err(), e);
    assert!(MixingMatrix::max_degree(&g).is_err());
    assert!(validate_graph_connected(&Graph::ring(4).unwrap()).is_ok());
}

#[test]
fn disconnected_message_summarises_many_nodes() {
    let g = Graph::from_edges(10, &[(0, 1)]).unwrap();
    let s = validate_graph_connected(&g).unwrap_err().to_string();
    assert!(s.contains("9 components") && s.contains("2, 3, 4, 5, 6, ... (8 in all)"), "{s}");
}

#[test]
fn zero_weight_on_bridge_is_rejected() {
    // the graph is connected, but W never moves mass across edge (1, 2).
    let dense = vec![vec![0.5, 0.5, 0.0], vec![0.5, 0.5, 0.0], vec![0.0, 0.0, 1.0]];
    let e = MixingMatrix::explicit(&path3(), &dense).unwrap_err();
    let s = e.to_string();
    assert!(s.contains("2 components") && s.contains("reachable from node 0: 2"), "{s}");
}

#[test]
fn validate_checks_size_against_graph() {
    let w = MixingMatrix::metropolis(&Graph::ring(4).unwrap()).unwrap();
    let e = w.validate(&Graph::ring(5).unwrap()).unwrap_err();
    assert_eq!(e, TopologyError::SizeMismatch { matrix: 4, graph: 5 });
    assert!(w.validate(&Graph::ring(4).unwrap()).is_ok());
    // a different graph of the same size that lacks W's edges
    let e = w.validate(&Graph::star(4).unwrap()).unwrap_err();
    assert!(matches!(e, TopologyError::WeightOffGraph { .. }), "{e}");
}

#[test]
fn erdos_renyi_64_connected_or_clear_error() {
    // mean degree 6.3 is well above ln(64) = 4.2, so most seeds connect; whatever a seed gives,
    // the outcome must be a valid matrix or a connectivity error, never anything else.
    let mut connected = 0;
    for seed in 0..20 {
        let g = Graph::erdos_renyi(64, 0.1, seed).unwrap();
        match MixingMatrix::metropolis(&g) {
            Ok(w) => {
                assert!(g.is_connected());
                let rho = w.rho();
                assert!(rho > 0.0 && rho < 1.0, "seed {seed}: rho = {rho}");
                connected += 1;
            }
            Err(e) => {
                assert!(!g.is_connected(), "seed {seed}: {e}");
                assert!(e.to_string().contains("not connected"), "{e}");
            }
        }
    }
    assert!(connected >= 10, "only {connected} of 20 seeds connected");
    // far below the threshold the error is certain to fire.
    let sparse = Graph::erdos_renyi(64, 0.01, 1).unwrap();
    let e = MixingMatrix::metropolis(&sparse).unwrap_err();
    assert!(e.to_string().contains("not connected"), "{e}");
}
