//! Shared fixtures for the invariant tests: heterogeneous least-squares problems and node configs.
#![allow(dead_code)]

use dprox_compress::CompressorSpec;
use dprox_core::{Algorithm, NodeConfig, Prox};

/// f_i(x) = 1/(2m) ||A_i x - b_i||^2 with a different planted solution per node (heterogeneous).
pub struct LeastSquares {
    pub n: usize,
    pub d: usize,
    pub m: usize,
    pub a: Vec<Vec<f64>>, // per node, m x d row-major
    pub b: Vec<Vec<f64>>,
}

impl LeastSquares {
    pub fn new(n: usize, d: usize, m: usize, heterogeneity: f64, seed: u64) -> LeastSquares {
        let mut rng = dprox_rng::Rng::seed_from(seed);
        let common: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
        let mut a = Vec::new();
        let mut b = Vec::new();
        for _ in 0..n {
            let ai: Vec<f64> = (0..m * d).map(|_| rng.normal()).collect();
            let xi: Vec<f64> = common.iter().map(|c| c + heterogeneity * rng.normal()).collect();
            let bi: Vec<f64> = (0..m)
                .map(|r| (0..d).map(|c| ai[r * d + c] * xi[c]).sum::<f64>() + 0.1 * rng.normal())
                .collect();
            a.push(ai);
            b.push(bi);
        }
        LeastSquares { n, d, m, a, b }
    }

    /// grad f_i at x (f64 arithmetic, rounded to f32: deterministic).
    pub fn grad(&self, i: usize, x: &[f32], g: &mut [f32]) {
        let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let g64 = self.grad64(i, &x);
        for (o, v) in g.iter_mut().zip(g64) {
            *o = v as f32;
        }
    }

    pub fn grad64(&self, i: usize, x: &[f64]) -> Vec<f64> {
        let (d, m) = (self.d, self.m);
        let mut g = vec![0.0; d];
        for r in 0..m {
            let row = &self.a[i][r * d..(r + 1) * d];
            let res: f64 = row.iter().zip(x).map(|(a, b)| a * b).sum::<f64>() - self.b[i][r];
            for c in 0..d {
                g[c] += row[c] * res / m as f64;
            }
        }
        g
    }

    /// grad f = mean_i grad f_i, in f64.
    pub fn full_grad64(&self, x: &[f64]) -> Vec<f64> {
        let mut g = vec![0.0; self.d];
        for i in 0..self.n {
            for (a, b) in g.iter_mut().zip(self.grad64(i, x)) {
                *a += b / self.n as f64;
            }
        }
        g
    }

    /// The composite stationary point of the global problem, by centralised proximal gradient
    /// in f64 run to convergence.
    pub fn solve(&self, prox: Prox, eta: f64) -> Vec<f64> {
        let mut x = vec![0.0; self.d];
        for _ in 0..200_000 {
            let g = self.full_grad64(&x);
            let next: Vec<f64> = x.iter().zip(&g).map(|(a, b)| prox64(prox, eta, a - eta * b)).collect();
            let delta: f64 = next.iter().zip(&x).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            x = next;
            if delta < 1e-15 {
                break;
            }
        }
        x
    }

    /// ||x - prox(x - eta grad f(x))||: the residual of the fixed-point equation
    /// x* = prox(x* - eta grad f(x*)) that defines a composite stationary point.
    pub fn residual(&self, prox: Prox, eta: f64, x: &[f64]) -> f64 {
        let g = self.full_grad64(x);
        x.iter().zip(&g).map(|(a, b)| (a - prox64(prox, eta, a - eta * b)).powi(2)).sum::<f64>().sqrt()
    }
}

pub fn prox64(p: Prox, eta: f64, v: f64) -> f64 {
    match p {
        Prox::None => v,
        Prox::L1 { mu } => v.signum() * (v.abs() - eta * mu as f64).max(0.0),
        _ => unimplemented!("fixture only needs none and l1"),
    }
}

/// Metropolis weights of a ring of n >= 3 nodes: 1/3 each.
pub fn ring_row(i: usize, n: usize) -> Vec<(usize, f64)> {
    let mut r = vec![((i + n - 1) % n, 1.0 / 3.0), (i, 1.0 / 3.0), ((i + 1) % n, 1.0 / 3.0)];
    r.sort_by_key(|p| p.0);
    r
}

pub struct Setup {
    pub algorithm: Algorithm,
    pub lr: f32,
    pub gamma: f32,
    pub prox: Prox,
    pub q: CompressorSpec,
    pub seed: u64,
}

pub fn configs(n: usize, d: usize, s: &Setup) -> Vec<NodeConfig> {
    (0..n)
        .map(|i| NodeConfig {
            id: i,
            algorithm: s.algorithm,
            row: if s.algorithm == Algorithm::Allreduce {
                (0..n).map(|j| (j, 1.0 / n as f64)).collect()
            } else {
                ring_row(i, n)
            },
            lr: s.lr,
            gamma_x: s.gamma,
            gamma_y: s.gamma,
            prox: s.prox,
            compress_x: s.q.clone(),
            compress_y: s.q.clone(),
            seed: s.seed,
            x0: vec![0.0; d],
            rounds: None,
        })
        .collect()
}

pub fn mean(vs: &[&[f32]]) -> Vec<f64> {
    let d = vs[0].len();
    let mut m = vec![0.0; d];
    for v in vs {
        for (a, &b) in m.iter_mut().zip(v.iter()) {
            *a += b as f64 / vs.len() as f64;
        }
    }
    m
}
