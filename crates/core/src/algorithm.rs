//! The algorithms and the per-node configuration the core needs.

use dprox_compress::CompressorSpec;
use dprox_topology::NodeRounds;
use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::prox::Prox;

/// The algorithm every node runs (docs/algorithms.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Decentralized proximal stochastic gradient tracking: exchanges y, then x, in full.
    Dproxsgt,
    /// Compressed DProxSGT: exchanges compressed deltas of y and x against public estimates.
    Cdproxsgt,
    /// D-PSGD (proximal): mixes x, then takes a local gradient step.
    Dpsgd,
    /// CHOCO-SGD (proximal): local step, then a compressed gossip of x.
    Choco,
    /// Centralised proximal SGD by exact averaging of the gradients over all nodes.
    Allreduce,
}

impl Algorithm {
    /// The exchanges of one iteration, in order.
    pub fn exchanges(self) -> &'static [Exchange] {
        match self {
            Algorithm::Dproxsgt | Algorithm::Cdproxsgt => &[Exchange::Y, Exchange::X],
            Algorithm::Dpsgd | Algorithm::Choco => &[Exchange::X],
            Algorithm::Allreduce => &[Exchange::G],
        }
    }

    /// The config name (`dproxsgt`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Dproxsgt => "dproxsgt",
            Algorithm::Cdproxsgt => "cdproxsgt",
            Algorithm::Dpsgd => "dpsgd",
            Algorithm::Choco => "choco",
            Algorithm::Allreduce => "allreduce",
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which vector a message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exchange {
    /// The model x (or its compressed delta).
    X = 0,
    /// The gradient tracker y (or its compressed delta).
    Y = 1,
    /// A raw gradient (all-reduce).
    G = 2,
}

impl Exchange {
    /// The wire code of this exchange.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The exchange with this wire code.
    pub fn from_code(c: u8) -> Option<Exchange> {
        [Exchange::X, Exchange::Y, Exchange::G].get(c as usize).copied()
    }
}

impl std::fmt::Display for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Exchange::X => "x",
            Exchange::Y => "y",
            Exchange::G => "g",
        })
    }
}

/// Everything one node's state machine needs. The simulator and the network node build it from
/// the same run config, which is what makes their iterates identical.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeConfig {
    /// This node's id.
    pub id: usize,
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Row i of the mixing matrix: (peer, w_ij), ascending by peer, own entry included. For
    /// `allreduce` this is every node with weight 1/n.
    pub row: Vec<(usize, f64)>,
    /// Step size eta.
    pub lr: f32,
    /// Consensus step size for x (cdproxsgt, choco), in (0, 1].
    pub gamma_x: f32,
    /// Consensus step size for y (cdproxsgt), in (0, 1].
    pub gamma_y: f32,
    /// prox_{eta r}.
    pub prox: Prox,
    /// Q_x (cdproxsgt, choco).
    pub compress_x: CompressorSpec,
    /// Q_y (cdproxsgt).
    pub compress_y: CompressorSpec,
    /// Run seed: randomised compressors draw from streams keyed by (seed, node, iteration, vector).
    pub seed: u64,
    /// The initial point x^0 (identical on every node).
    pub x0: Vec<f32>,
    /// A time-varying schedule (the node's part of it): each iteration mixes with that round's
    /// partner only, with weights 1/2 and 1/2, and `row` lists every possible partner (with
    /// weight 0) besides the node itself. `None`: every iteration mixes by `row`.
    pub rounds: Option<NodeRounds>,
}

impl NodeConfig {
    /// Checks what the core relies on; the error names the node and the problem.
    pub fn validate(&self) -> Result<(), CoreError> {
        let err = |reason: String| Err(CoreError::Config { node: self.id, reason });
        if self.x0.is_empty() {
            return err("the model has no parameters".into());
        }
        validate_row(self.id, &self.row).or_else(&err)?;
        if let Some(rounds) = &self.rounds {
            self.validate_rounds(rounds).or_else(&err)?;
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return err(format!("lr must be positive and finite, got {}", self.lr));
        }
        for (name, g) in [("gamma_x", self.gamma_x), ("gamma_y", self.gamma_y)] {
            if !(g > 0.0 && g <= 1.0) {
                return err(format!("{name} must be in (0, 1], got {g}"));
            }
        }
        if let Some((i, v)) = self.x0.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return err(format!("x0 holds {v} at coordinate {i}"));
        }
        self.prox.validate().or_else(&err)?;
        for (name, c) in [("x", &self.compress_x), ("y", &self.compress_y)] {
            c.validate().or_else(|e| err(format!("compression.{name}: {e}")))?;
        }
        Ok(())
    }
}

/// A row of W for node `id`: sorted by peer without repeats, holding the node's own weight, with
/// finite nonnegative weights summing to 1 within 1e-9.
/// Identity at full precision: messages carry the vector itself, not a delta against a public
/// estimate.
pub fn is_exact(spec: &CompressorSpec) -> bool {
    matches!(spec, CompressorSpec::Identity { values: dprox_compress::ValueFormat::F32 })
}

impl Algorithm {
    /// Whether it can run a time-varying schedule with these compressors: only when its sums are
    /// rebuilt at every exchange (a compressed public estimate would go stale at the peers a
    /// round leaves out; all-reduce has no graph).
    pub fn can_follow_a_schedule(self, x: &CompressorSpec, y: &CompressorSpec) -> bool {
        match self {
            Algorithm::Dproxsgt | Algorithm::Dpsgd => true,
            Algorithm::Cdproxsgt => is_exact(x) && is_exact(y),
            Algorithm::Choco => is_exact(x),
            Algorithm::Allreduce => false,
        }
    }
}

impl NodeConfig {
    /// A schedule needs sums rebuilt at every exchange (a compressed estimate would go stale at
    /// the peers a round leaves out) and a row listing every partner.
    fn validate_rounds(&self, rounds: &NodeRounds) -> Result<(), String> {
        if !self.algorithm.can_follow_a_schedule(&self.compress_x, &self.compress_y) {
            return Err(format!(
                "a time-varying schedule needs an algorithm that rebuilds its sums at every exchange \
                 (dproxsgt, dpsgd, or cdproxsgt/choco with identity f32 compression), not {:?} as configured: \
                 compressed public estimates go stale at the peers a round leaves out",
                self.algorithm
            ));
        }
        if rounds.pairs.is_empty() {
            return Err("the schedule has no rounds".into());
        }
        for p in rounds.peers() {
            if p == self.id || self.row.binary_search_by_key(&p, |e| e.0).is_err() {
                return Err(format!("the schedule pairs the node with {p}, which its row does not list"));
            }
        }
        Ok(())
    }
}

pub(crate) fn validate_row(id: usize, row: &[(usize, f64)]) -> Result<(), String> {
    if !row.windows(2).all(|w| w[0].0 < w[1].0) {
        return Err("mixing row must be sorted by peer with no repeats".into());
    }
    if !row.iter().any(|&(j, _)| j == id) {
        return Err("mixing row must include the node's own weight".into());
    }
    if let Some(&(j, w)) = row.iter().find(|&&(_, w)| !(w.is_finite() && w >= 0.0)) {
        return Err(format!("weight to {j} is {w}; weights must be finite and >= 0"));
    }
    let sum: f64 = row.iter().map(|&(_, w)| w).sum();
    if (sum - 1.0).abs() > 1e-9 {
        return Err(format!("mixing row sums to {sum}, not 1"));
    }
    Ok(())
}
