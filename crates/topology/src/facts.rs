//! A printable summary of a topology and its mixing matrix.

use std::fmt;

use crate::error::TopologyError;
use crate::graph::Graph;
use crate::weights::MixingMatrix;

/// A spectral gap at most this is zero within rounding (the eigen-solver's error on a matrix of
/// a few thousand nodes is around 1e-13; a 10,000-node ring's true gap is about 1e-7).
pub const MIN_SPECTRAL_GAP: f64 = 1e-10;

/// Size, degree and spectral summary of a graph with its mixing matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct TopologyFacts {
    /// Number of nodes.
    pub nodes: usize,
    /// Number of undirected edges.
    pub edges: usize,
    /// Smallest degree.
    pub min_degree: usize,
    /// Largest degree.
    pub max_degree: usize,
    /// Average degree, `2 * edges / nodes`.
    pub mean_degree: f64,
    /// `||W - 11^T/n||_2`.
    pub rho: f64,
    /// `1 - rho`.
    pub spectral_gap: f64,
}

impl TopologyFacts {
    /// Computes the facts: a dense eigen-solve up to [`crate::spectral::DENSE_MAX`] nodes, Lanczos
    /// (O(edges) per step, O(n) memory) above.
    ///
    /// Errors if `mixing` is not `graph.n() x graph.n()`, if the eigenvalue iteration fails, or if
    /// the spectral gap is zero within rounding ([`TopologyError::NoConsensus`]: at most
    /// [`MIN_SPECTRAL_GAP`]; a 1,000-node ring's gap of about 1e-5 is far above it).
    pub fn compute(graph: &Graph, mixing: &MixingMatrix) -> Result<TopologyFacts, TopologyError> {
        if mixing.n() != graph.n() {
            return Err(TopologyError::SizeMismatch { matrix: mixing.n(), graph: graph.n() });
        }
        let rho = mixing.rho_checked()?;
        if 1.0 - rho <= MIN_SPECTRAL_GAP {
            return Err(TopologyError::NoConsensus { gap: 1.0 - rho, rho });
        }
        let nodes = graph.n();
        let edges = graph.num_edges();
        Ok(TopologyFacts {
            nodes,
            edges,
            min_degree: graph.min_degree(),
            max_degree: graph.max_degree(),
            mean_degree: 2.0 * edges as f64 / nodes as f64,
            rho,
            spectral_gap: 1.0 - rho,
        })
    }
}

impl fmt::Display for TopologyFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "nodes:        {}", self.nodes)?;
        writeln!(f, "edges:        {}", self.edges)?;
        writeln!(
            f,
            "degree:       min {}, max {}, mean {:.3}",
            self.min_degree, self.max_degree, self.mean_degree
        )?;
        writeln!(f, "rho:          {:.9}  (||W - 11^T/n||_2)", self.rho)?;
        // Scientific notation: on large rings the gap is ~1e-6 and fixed point would hide it.
        write!(f, "spectral gap: {:.4e}  (1 - rho)", self.spectral_gap)
    }
}
