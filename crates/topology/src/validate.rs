//! The checks every mixing matrix passes before a constructor hands it out.

use crate::error::TopologyError;
use crate::graph::{Graph, components_of};
use crate::weights::MixingMatrix;

/// Symmetry tolerance: constructors compute `w_ij` and `w_ji` by the same formula, so only
/// hand-written (explicit) matrices can come near it.
pub const SYMMETRY_TOL: f64 = 1e-12;

/// Row-sum tolerance: loose enough for weights typed in decimal by hand.
pub const ROW_SUM_TOL: f64 = 1e-9;

/// How many unreachable nodes an error message lists before summarising.
const SAMPLE: usize = 5;

/// Errors with [`TopologyError::NotConnected`] unless `graph` has a single component.
pub fn validate_graph_connected(graph: &Graph) -> Result<(), TopologyError> {
    let comps = graph.components();
    if comps.len() <= 1 {
        return Ok(());
    }
    let (unreachable, unreachable_count) = unreachable_from_zero(&comps);
    Err(TopologyError::NotConnected { components: comps.len(), unreachable, unreachable_count })
}

/// A sample of the nodes outside node 0's component, and how many there are.
fn unreachable_from_zero(comps: &[Vec<usize>]) -> (Vec<usize>, usize) {
    // components are ordered by smallest node, so node 0's component comes first.
    let mut rest: Vec<usize> = comps[1..].iter().flatten().copied().collect();
    rest.sort_unstable();
    let count = rest.len();
    rest.truncate(SAMPLE);
    (rest, count)
}

impl MixingMatrix {
    /// Checks that this matrix is a valid gossip matrix for `graph`.
    ///
    /// In order: same size as the graph; every entry finite and nonnegative; nonzero
    /// off-diagonal entries only on graph edges; symmetric within [`SYMMETRY_TOL`]; each row
    /// summing to 1 within [`ROW_SUM_TOL`]; the graph connected; and the positive weights
    /// themselves connecting every node (a zero weight on a bridge would split the nodes).
    ///
    /// A connected support does not rule out `rho == 1`: zero diagonals on a bipartite graph
    /// give eigenvalue -1. [`MixingMatrix::spectral_gap`] shows that case as 0.
    pub fn validate(&self, graph: &Graph) -> Result<(), TopologyError> {
        let n = self.n();
        if n != graph.n() {
            return Err(TopologyError::SizeMismatch { matrix: n, graph: graph.n() });
        }
        for (i, row) in self.rows.iter().enumerate() {
            for &(j, w) in row {
                if !w.is_finite() {
                    return Err(TopologyError::NonFiniteWeight { i, j, value: w });
                }
                if w < 0.0 {
                    return Err(TopologyError::NegativeWeight { i, j, value: w });
                }
                if j != i && w != 0.0 && !graph.has_edge(i, j) {
                    return Err(TopologyError::WeightOffGraph { i, j, value: w });
                }
            }
        }
        for (i, row) in self.rows.iter().enumerate() {
            for &(j, wij) in row {
                let wji = self.weight(j, i);
                if (wij - wji).abs() > SYMMETRY_TOL {
                    return Err(TopologyError::Asymmetric { i, j, wij, wji });
                }
            }
        }
        for (i, row) in self.rows.iter().enumerate() {
            let sum: f64 = row.iter().map(|&(_, w)| w).sum();
            if (sum - 1.0).abs() > ROW_SUM_TOL {
                return Err(TopologyError::RowSum { row: i, sum });
            }
        }
        validate_graph_connected(graph)?;
        let comps = components_of(n, |i| {
            self.rows[i].iter().filter(move |&&(j, w)| j != i && w > 0.0).map(|&(j, _)| j)
        });
        if comps.len() > 1 {
            let (unreachable, unreachable_count) = unreachable_from_zero(&comps);
            return Err(TopologyError::SupportNotConnected {
                components: comps.len(),
                unreachable,
                unreachable_count,
            });
        }
        Ok(())
    }
}
