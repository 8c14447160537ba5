use super::*;
use crate::{Graph, TopologyFacts};
use std::f64::consts::PI;

fn ring_rho_closed_form(n: usize) -> f64 {
    (1..n).map(|k| (1.0 / 3.0 + 2.0 / 3.0 * (2.0 * PI * k as f64 / n as f64).cos()).abs()).fold(0.0, f64::max)
}

#[test]
fn metropolis_ring_rho_matches_closed_form() {
    for n in [5usize, 8, 64] {
        let w = MixingMatrix::metropolis(&Graph::ring(n).unwrap()).unwrap();
        let want = ring_rho_closed_form(n);
        let got = w.rho();
        assert!((got - want).abs() < 1e-10, "n = {n}: rho {got}, closed form {want}");
        assert!((w.spectral_gap() - (1.0 - want)).abs() < 1e-10);
    }
    // n = 8: k = 4 gives |1/3 - 2/3| = 1/3, k = 1 gives 1/3 + (2/3)(sqrt(2)/2).
    assert!((ring_rho_closed_form(8) - (1.0 / 3.0 + 2.0_f64.sqrt() / 3.0)).abs() < 1e-15);
}

#[test]
fn metropolis_ring_full_spectrum() {
    let n = 12;
    let w = MixingMatrix::metropolis(&Graph::ring(n).unwrap()).unwrap();
    let got = w.centered_eigenvalues().unwrap();
    let mut want: Vec<f64> =
        (1..n).map(|k| 1.0 / 3.0 + 2.0 / 3.0 * (2.0 * PI * k as f64 / n as f64).cos()).chain([0.0]).collect();
    want.sort_by(f64::total_cmp);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
    }
}

#[test]
fn complete_graph_averages_in_one_round() {
    for n in [2usize, 3, 10, 33] {
        let w = MixingMatrix::metropolis(&Graph::complete(n).unwrap()).unwrap();
        for i in 0..n {
            for j in 0..n {
                assert!((w.weight(i, j) - 1.0 / n as f64).abs() < 1e-15);
            }
        }
        assert!(w.rho() < 1e-12, "n = {n}: rho {}", w.rho());
        assert!((w.spectral_gap() - 1.0).abs() < 1e-12);
    }
}

#[test]
fn hypercube_16_spectrum() {
    let w = MixingMatrix::metropolis(&Graph::hypercube(16).unwrap()).unwrap();
    assert!(w.row(5).iter().all(|&(_, x)| (x - 0.2).abs() < 1e-15));
    // eigenvalues of W: 1 - 2m/5 with multiplicity C(4, m); centring turns the 1 into 0.
    let mut want = vec![0.0];
    for (m, mult) in [(1, 4), (2, 6), (3, 4), (4, 1)] {
        want.extend(std::iter::repeat_n(1.0 - 2.0 * m as f64 / 5.0, mult));
    }
    want.sort_by(f64::total_cmp);
    let got = w.centered_eigenvalues().unwrap();
    for (g, x) in got.iter().zip(&want) {
        assert!((g - x).abs() < 1e-12, "{got:?}");
    }
    assert!((w.rho() - 0.6).abs() < 1e-12);
}

#[test]
fn star_rho() {
    // Metropolis star(n): W = (1/n) 11^T on the hub's row and column plus leaves keeping
    // 1 - 1/n; the centred matrix has eigenvalue 1 - 1/n on the n - 2 leaf-difference vectors.
    let n = 7;
    let w = MixingMatrix::metropolis(&Graph::star(n).unwrap()).unwrap();
    assert!((w.rho() - (1.0 - 1.0 / n as f64)).abs() < 1e-12);
}

fn random_symmetric(n: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = dprox_rng::stream(seed, &[1]);
    let mut a = vec![vec![0.0; n]; n];
    let cells: Vec<(usize, usize)> = (0..n).flat_map(|i| (0..=i).map(move |j| (i, j))).collect();
    for (i, j) in cells {
        let x = 2.0 * rng.uniform_f64() - 1.0;
        a[i][j] = x;
        a[j][i] = x;
    }
    a
}

fn trace_and_frobenius(a: &[Vec<f64>]) -> (f64, f64) {
    let tr = (0..a.len()).map(|i| a[i][i]).sum();
    let fro = a.iter().flatten().map(|x| x * x).sum();
    (tr, fro)
}

#[test]
fn random_symmetric_trace_and_frobenius() {
    let a = random_symmetric(50, 3);
    let eig = symmetric_eigenvalues(&a).unwrap();
    assert_eq!(eig.len(), 50);
    assert!(eig.windows(2).all(|p| p[0] <= p[1]));
    let (tr, fro) = trace_and_frobenius(&a);
    let sum: f64 = eig.iter().sum();
    let sq: f64 = eig.iter().map(|x| x * x).sum();
    assert!((sum - tr).abs() < 1e-10, "sum {sum} vs trace {tr}");
    assert!((sq - fro).abs() < 1e-10 * fro, "sum sq {sq} vs frobenius^2 {fro}");
    // and tr(A^3) = sum of cubes, which a wrong but norm-preserving result would miss
    // tr(A^3) = sum_ij a_ij (A^2)_ji, and A^2 is symmetric: sum of a_ij * <row i, row j>.
    let mut tr3 = 0.0;
    for ri in &a {
        for (&aij, rj) in ri.iter().zip(&a) {
            let dot: f64 = ri.iter().zip(rj).map(|(x, y)| x * y).sum();
            tr3 += aij * dot;
        }
    }
    let cubes: f64 = eig.iter().map(|x| x * x * x).sum();
    assert!((cubes - tr3).abs() < 1e-9 * tr3.abs().max(1.0), "{cubes} vs {tr3}");
}

#[test]
fn toeplitz_tridiagonal_closed_form() {
    // tridiag(b, a, b) has eigenvalues a + 2b cos(k pi / (n + 1)), k = 1..n.
    let (n, a, b) = (40usize, 0.7, -0.3);
    let mut m = vec![vec![0.0; n]; n];
    for i in 0..n {
        m[i][i] = a;
        if i + 1 < n {
            m[i][i + 1] = b;
            m[i + 1][i] = b;
        }
    }
    let got = symmetric_eigenvalues(&m).unwrap();
    let mut want: Vec<f64> = (1..=n).map(|k| a + 2.0 * b * (k as f64 * PI / (n + 1) as f64).cos()).collect();
    want.sort_by(f64::total_cmp);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-12, "{g} vs {w}");
    }
}

#[test]
fn small_and_degenerate_inputs() {
    assert_eq!(symmetric_eigenvalues(&[]).unwrap(), Vec::<f64>::new());
    assert_eq!(symmetric_eigenvalues(&[vec![2.5]]).unwrap(), vec![2.5]);
    let e = symmetric_eigenvalues(&[vec![2.0, 1.0], vec![1.0, 2.0]]).unwrap();
    assert!((e[0] - 1.0).abs() < 1e-15 && (e[1] - 3.0).abs() < 1e-15, "{e:?}");
    assert_eq!(symmetric_eigenvalues(&vec![vec![0.0; 4]; 4]).unwrap(), vec![0.0; 4]);
    let diag = vec![vec![3.0, 0.0, 0.0], vec![0.0, -1.0, 0.0], vec![0.0, 0.0, 2.0]];
    assert_eq!(symmetric_eigenvalues(&diag).unwrap(), vec![-1.0, 2.0, 3.0]);
    let e = symmetric_eigenvalues(&[vec![1.0, 0.0], vec![0.0]]).unwrap_err();
    assert!(e.to_string().contains("row 1"), "{e}");
    let e = symmetric_eigenvalues(&[vec![1.0, 0.0], vec![f64::INFINITY, 1.0]]).unwrap_err();
    assert!(e.to_string().contains("not finite"), "{e}");
}

#[test]
fn facts_and_display() {
    let g = Graph::hypercube(16).unwrap();
    let w = MixingMatrix::metropolis(&g).unwrap();
    let f = TopologyFacts::compute(&g, &w).unwrap();
    assert_eq!((f.nodes, f.edges, f.min_degree, f.max_degree), (16, 32, 4, 4));
    assert_eq!(f.mean_degree, 4.0);
    assert!((f.rho - 0.6).abs() < 1e-12 && (f.spectral_gap - 0.4).abs() < 1e-12);
    let s = f.to_string();
    assert!(s.contains("nodes:        16") && s.contains("edges:        32"), "{s}");
    assert!(s.contains("min 4, max 4, mean 4.000") && s.contains("rho:          0.600000000"), "{s}");
    assert!(s.contains("spectral gap: 4.0000e-1"), "{s}");
    assert_eq!(s.lines().count(), 5);

    let star = Graph::star(5).unwrap();
    let f = TopologyFacts::compute(&star, &MixingMatrix::metropolis(&star).unwrap()).unwrap();
    assert_eq!((f.min_degree, f.max_degree), (1, 4));
    assert!((f.mean_degree - 1.6).abs() < 1e-15);

    let e = TopologyFacts::compute(&Graph::ring(5).unwrap(), &w).unwrap_err();
    assert_eq!(e, TopologyError::SizeMismatch { matrix: 16, graph: 5 });
}

#[test]
fn a_matrix_that_never_reaches_consensus_is_refused_and_a_small_gap_is_not() {
    // Two nodes swapping their values forever: eigenvalues 1 and -1, gap 0.
    let g = Graph::ring(2).unwrap();
    let swap = MixingMatrix::explicit(&g, &[vec![0.0, 1.0], vec![1.0, 0.0]]).unwrap();
    let e = TopologyFacts::compute(&g, &swap).unwrap_err();
    assert!(matches!(e, TopologyError::NoConsensus { gap, .. } if gap.abs() < 1e-12), "{e:?}");
    assert!(e.to_string().starts_with("the mixing matrix has spectral gap"), "{e}");
    assert!(e.to_string().contains("never reaches consensus"), "{e}");
    // A bipartite ring of 6 with a zero diagonal (each node 1/2 to each neighbour): -1 is an
    // eigenvalue.
    let ring6 = Graph::ring(6).unwrap();
    let half =
        |i: usize| (0..6).map(|j| if (i + 1) % 6 == j || (j + 1) % 6 == i { 0.5 } else { 0.0 }).collect();
    let w = MixingMatrix::explicit(&ring6, &(0..6).map(half).collect::<Vec<_>>()).unwrap();
    assert!(matches!(TopologyFacts::compute(&ring6, &w), Err(TopologyError::NoConsensus { .. })));
    // A 1,000-node ring's gap is about 1.3e-5: small, and valid.
    let ring = Graph::ring(1000).unwrap();
    let f = TopologyFacts::compute(&ring, &MixingMatrix::metropolis(&ring).unwrap()).unwrap();
    assert!(f.spectral_gap > 1e-5 && f.spectral_gap < 2e-5, "{}", f.spectral_gap);
}

#[test]
fn exponential_mixes_faster_than_ring() {
    let n = 32;
    let ring = MixingMatrix::metropolis(&Graph::ring(n).unwrap()).unwrap().rho();
    let expo = MixingMatrix::metropolis(&Graph::exponential(n).unwrap()).unwrap().rho();
    assert!(expo < ring, "exponential {expo} vs ring {ring}");
}

/// Not a benchmark: a guard that the O(n^3) solve stays usable in debug builds.
#[test]
fn n_1024_solve_is_not_absurdly_slow() {
    let n = 1024;
    let a = random_symmetric(n, 11);
    let t = std::time::Instant::now();
    let eig = symmetric_eigenvalues(&a).unwrap();
    eprintln!("symmetric_eigenvalues n = {n}: {:?}", t.elapsed());
    let (tr, fro) = trace_and_frobenius(&a);
    assert!((eig.iter().sum::<f64>() - tr).abs() < 1e-8);
    assert!((eig.iter().map(|x| x * x).sum::<f64>() - fro).abs() < 1e-10 * fro);
}

/// The largest size `check-config` is expected to see; run with `--ignored` to time it.
#[test]
#[ignore = "O(n^3) at n = 2000, a few seconds"]
fn ring_2000_rho_matches_closed_form() {
    let n = 2000;
    let w = MixingMatrix::metropolis(&Graph::ring(n).unwrap()).unwrap();
    let t = std::time::Instant::now();
    let rho = w.rho();
    eprintln!("rho n = {n}: {:?}", t.elapsed());
    assert!((rho - ring_rho_closed_form(n)).abs() < 1e-10, "{rho}");
}

/// Lanczos against the dense solve, on graphs whose spectra differ in shape: clustered at the
/// edge (ring, torus), spread (random), a few values (complete, star, hypercube).
#[test]
fn lanczos_agrees_with_the_dense_solve() {
    let graphs = [
        ("ring 300", Graph::ring(300).unwrap()),
        ("torus 20 x 15", Graph::torus(20, 15).unwrap()),
        ("exponential 300", Graph::exponential(300).unwrap()),
        ("erdos-renyi 300", Graph::erdos_renyi(300, 0.03, 7).unwrap()),
        ("complete 260", Graph::complete(260).unwrap()),
        ("star 300", Graph::star(300).unwrap()),
    ];
    for (name, g) in graphs {
        for w in [MixingMatrix::metropolis(&g).unwrap(), MixingMatrix::max_degree(&g).unwrap()] {
            let dense = w
                .centered_eigenvalues()
                .unwrap_or_else(|e| panic!("{name}: dense: {e}"))
                .iter()
                .fold(0.0, |m: f64, &x| m.max(x.abs()));
            let lanczos = largest_abs_eigenvalue(&w, RHO_TOL).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!((lanczos - dense).abs() < 1e-8, "{name}: Lanczos {lanczos}, dense {dense}");
            assert!(lanczos <= dense + 1e-12, "{name}: a Ritz value lies inside the spectrum");
        }
    }
}

/// A 512-node hypercube (10 distinct eigenvalues, multiplicities up to 126: the dense QL gives
/// up on it) has `rho = 1 - 2 / (d + 1)` with `d = 9`.
#[test]
fn lanczos_finds_the_hypercube_closed_form() {
    let w = MixingMatrix::metropolis(&Graph::hypercube(512).unwrap()).unwrap();
    let got = largest_abs_eigenvalue(&w, RHO_TOL).unwrap();
    assert!((got - 0.8).abs() < 1e-9, "rho {got}, closed form 0.8");
}

/// Above `DENSE_MAX` nodes `rho` comes from Lanczos: a 10,000-node ring (gap about 1.3e-7, the
/// slowest case: its spectrum is densest at the edge) to 1e-6 of its closed form.
#[test]
fn a_ten_thousand_node_ring_has_its_closed_form_rho() {
    let n = 10_000;
    let w = MixingMatrix::metropolis(&Graph::ring(n).unwrap()).unwrap();
    let want = 1.0 / 3.0 + 2.0 / 3.0 * (2.0 * PI / n as f64).cos();
    let got = w.rho();
    assert!((got - want).abs() < 1e-6, "rho {got}, closed form {want}");
    let facts = TopologyFacts::compute(&Graph::ring(n).unwrap(), &w).unwrap();
    assert!(facts.spectral_gap > 0.0 && facts.spectral_gap < 2e-6, "{}", facts.spectral_gap);
}
