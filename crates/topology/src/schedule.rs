//! Time-varying topologies: each iteration mixes over one *round*, in which every node averages
//! with at most one peer (weights 1/2 and 1/2), so it sends one message and receives one.
//!
//! - **One-peer exponential** (Ying et al., NeurIPS 2021): round `k` of `tau = ceil(log2 n)`
//!   has node `i` send to `i + 2^k` and receive from `i - 2^k` (mod n); iteration `t` uses round
//!   `t mod tau`. Every round is doubly stochastic (a circulant), and when n is a power of two
//!   the product of one period's matrices is exactly `11^T / n`.
//! - **Random matching**: the configured graph's edges are split into matchings (a greedy edge
//!   colouring in ascending edge order, at most `2 max_degree - 1` of them); iteration `t` uses
//!   the matching drawn from `(seed, t)`. Each round is symmetric and doubly stochastic.
//!
//! A node's part of a schedule is a [`NodeRounds`]: what the core needs to know its peer and
//! weights at any iteration, computed from the iteration alone, so that every node (and the
//! simulator) agrees without talking.

use crate::error::TopologyError;
use crate::graph::Graph;
use crate::spectral::{RHO_TOL, SymmetricOperator, largest_abs_eigenvalue};

/// Node `i`'s exchange in one round: it receives `from`'s value (weight 1/2) and sends its
/// own to `to` (`from == to` in a matching).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pairing {
    /// The peer whose value it mixes in.
    pub from: usize,
    /// The peer its value goes to.
    pub to: usize,
}

/// Which round an iteration uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RoundChoice {
    /// Round `t mod rounds`.
    Cycle,
    /// A round drawn from `(seed, t)`, the same on every node.
    Random {
        /// The schedule's seed.
        seed: u64,
    },
}

impl RoundChoice {
    /// The round of iteration `t` among `rounds`.
    pub fn round(self, t: u64, rounds: usize) -> usize {
        match self {
            RoundChoice::Cycle => (t % rounds as u64) as usize,
            RoundChoice::Random { seed } => (dprox_rng::mix(seed, &[t]) % rounds as u64) as usize,
        }
    }
}

/// One node's view of a schedule.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeRounds {
    /// How iterations pick rounds.
    pub choice: RoundChoice,
    /// Per round: the node's pairing, or `None` (it keeps its own value that round).
    pub pairs: Vec<Option<Pairing>>,
}

impl NodeRounds {
    /// The node's pairing at iteration `t`.
    pub fn at(&self, t: u64) -> Option<Pairing> {
        self.pairs[self.choice.round(t, self.pairs.len())]
    }

    /// Every peer the node may exchange with, ascending, without repeats.
    pub fn peers(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.pairs.iter().flatten().flat_map(|p| [p.from, p.to]).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// A time-varying schedule over `n` nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    n: usize,
    choice: RoundChoice,
    /// `rounds[r][i]`: node i's pairing in round r.
    rounds: Vec<Vec<Option<Pairing>>>,
}

impl Schedule {
    /// The one-peer exponential schedule of `n >= 2` nodes.
    pub fn one_peer_exponential(n: usize) -> Result<Schedule, TopologyError> {
        if n < 2 {
            return Err(TopologyError::TooFewNodes { family: "one-peer exponential", min: 2, n });
        }
        let tau = n.next_power_of_two().trailing_zeros() as usize;
        let rounds = (0..tau)
            .map(|k| {
                let hop = 1usize << k;
                (0..n).map(|i| Some(Pairing { from: (i + n - hop) % n, to: (i + hop) % n })).collect()
            })
            .collect();
        Ok(Schedule { n, choice: RoundChoice::Cycle, rounds })
    }

    /// Random matchings of `graph`'s edges, drawn per iteration from `seed`.
    pub fn random_matching(graph: &Graph, seed: u64) -> Result<Schedule, TopologyError> {
        let n = graph.n();
        if graph.num_edges() == 0 {
            return Err(TopologyError::TooFewNodes { family: "random matching", min: 2, n });
        }
        // Greedy colouring: each edge, in ascending order, takes the first colour free at both ends.
        let mut used: Vec<Vec<bool>> = vec![Vec::new(); n];
        let mut rounds: Vec<Vec<Option<Pairing>>> = Vec::new();
        for (a, b) in graph.edges() {
            let c = (0..)
                .find(|&c| {
                    !used[a].get(c).copied().unwrap_or(false) && !used[b].get(c).copied().unwrap_or(false)
                })
                .expect("some colour is free");
            for v in [a, b] {
                if used[v].len() <= c {
                    used[v].resize(c + 1, false);
                }
                used[v][c] = true;
            }
            if rounds.len() <= c {
                rounds.resize(c + 1, vec![None; n]);
            }
            rounds[c][a] = Some(Pairing { from: b, to: b });
            rounds[c][b] = Some(Pairing { from: a, to: a });
        }
        Ok(Schedule { n, choice: RoundChoice::Random { seed }, rounds })
    }

    /// Number of nodes.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of rounds (the period of a cycled schedule).
    pub fn period(&self) -> usize {
        self.rounds.len()
    }

    /// How iterations pick rounds.
    pub fn choice(&self) -> RoundChoice {
        self.choice
    }

    /// Node `i`'s part.
    pub fn node(&self, i: usize) -> NodeRounds {
        NodeRounds { choice: self.choice, pairs: self.rounds.iter().map(|r| r[i]).collect() }
    }

    /// Node `i`'s pairing at iteration `t`.
    pub fn pairing(&self, i: usize, t: u64) -> Option<Pairing> {
        self.rounds[self.choice.round(t, self.rounds.len())][i]
    }

    /// Node `i`'s mixing row at iteration `t`, ascending: `{i: 1/2, from: 1/2}`, or `{i: 1}`.
    pub fn row(&self, i: usize, t: u64) -> Vec<(usize, f64)> {
        let r = self.choice.round(t, self.rounds.len());
        match self.rounds[r][i] {
            Some(p) => {
                let mut v = vec![(i, 0.5), (p.from, 0.5)];
                v.sort_by_key(|e| e.0);
                v
            }
            None => vec![(i, 1.0)],
        }
    }

    /// The graph of every pair that ever exchanges (the links a cluster keeps open).
    pub fn union_graph(&self) -> Result<Graph, TopologyError> {
        let mut edges: Vec<(usize, usize)> = self
            .rounds
            .iter()
            .flat_map(|r| r.iter().enumerate().filter_map(|(i, p)| p.map(|p| (i.min(p.from), i.max(p.from)))))
            .collect();
        edges.sort_unstable();
        edges.dedup();
        Graph::from_edges(self.n, &edges)
    }

    /// `||P - 11^T/n||_2` for `P` the product of the rounds in order (one period of a cycled
    /// schedule): how much one period contracts disagreement. 0 when one period averages
    /// exactly (one-peer exponential, n a power of two). Lanczos on `P^T P` (O(n) memory).
    pub fn period_rho(&self) -> Result<f64, TopologyError> {
        let sq = largest_abs_eigenvalue(&PeriodGram(self), RHO_TOL)?;
        Ok(sq.max(0.0).sqrt())
    }

    /// `v <- W_r v` (`transpose`: `W_r^T v`), using `tmp`.
    fn apply_round(&self, r: usize, transpose: bool, v: &mut [f64], tmp: &mut [f64]) {
        tmp.copy_from_slice(v);
        for (i, p) in self.rounds[r].iter().enumerate() {
            if let Some(p) = p {
                let j = if transpose { p.to } else { p.from };
                v[i] = 0.5 * tmp[i] + 0.5 * tmp[j];
            }
        }
    }
}

/// `P^T P` for `P` one period's product: symmetric, so Lanczos finds `||P - 11^T/n||_2^2`.
struct PeriodGram<'a>(&'a Schedule);

impl SymmetricOperator for PeriodGram<'_> {
    fn n(&self) -> usize {
        self.0.n
    }

    fn apply(&self, v: &[f64], out: &mut [f64]) {
        let s = self.0;
        out.copy_from_slice(v);
        let mut tmp = vec![0.0; s.n];
        for r in 0..s.rounds.len() {
            s.apply_round(r, false, out, &mut tmp);
        }
        for r in (0..s.rounds.len()).rev() {
            s.apply_round(r, true, out, &mut tmp);
        }
    }
}

#[cfg(test)]
mod tests;
