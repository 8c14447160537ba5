//! Mixing matrices: the gossip weights `W` a node applies to its own and its neighbours' values.

use crate::error::TopologyError;
use crate::graph::Graph;

/// A symmetric, doubly stochastic, nonnegative mixing matrix supported on a connected graph.
///
/// Row `i` is stored sparsely as `(column, weight)` pairs sorted ascending by column. Every
/// row holds its diagonal entry `(i, w_ii)` (even when `w_ii == 0`) and otherwise only nonzero
/// weights, so `sum_j w_ij v_j` in ascending `j` is a single walk over [`MixingMatrix::row`]
/// and every caller sums in the same order.
///
/// Every constructor runs [`MixingMatrix::validate`] against its graph before returning.
#[derive(Debug, Clone, PartialEq)]
pub struct MixingMatrix {
    pub(crate) rows: Vec<Vec<(usize, f64)>>,
}

impl MixingMatrix {
    /// Metropolis-Hastings weights: `w_ij = 1 / (1 + max(deg_i, deg_j))` on each edge,
    /// `w_ii = 1 - sum_{j != i} w_ij`.
    pub fn metropolis(graph: &Graph) -> Result<MixingMatrix, TopologyError> {
        let w = MixingMatrix::from_edge_weights(graph, |i, j| {
            1.0 / (1 + graph.degree(i).max(graph.degree(j))) as f64
        });
        w.validate(graph)?;
        Ok(w)
    }

    /// Max-degree weights: `w_ij = 1 / (1 + max_deg)` on each edge,
    /// `w_ii = 1 - deg_i / (1 + max_deg)`.
    pub fn max_degree(graph: &Graph) -> Result<MixingMatrix, TopologyError> {
        let denom = (1 + graph.max_degree()) as f64;
        let mut w = MixingMatrix::from_edge_weights(graph, |_, _| 1.0 / denom);
        // The closed form is used for the diagonal rather than 1 - (sum of the row) so that the
        // documented formula holds bit for bit.
        for (i, row) in w.rows.iter_mut().enumerate() {
            let d = 1.0 - graph.degree(i) as f64 / denom;
            if let Some(entry) = row.iter_mut().find(|e| e.0 == i) {
                entry.1 = d;
            }
        }
        w.validate(graph)?;
        Ok(w)
    }

    /// Weights given as a full `n x n` matrix. Exact zeros are dropped (the diagonal is always
    /// kept); a nonzero off-diagonal entry must sit on a graph edge.
    pub fn explicit(graph: &Graph, dense: &[Vec<f64>]) -> Result<MixingMatrix, TopologyError> {
        let n = graph.n();
        if dense.len() != n {
            return Err(TopologyError::WrongRowCount { expected: n, got: dense.len() });
        }
        for (i, row) in dense.iter().enumerate() {
            if row.len() != n {
                return Err(TopologyError::WrongRowLength { row: i, expected: n, got: row.len() });
            }
        }
        let rows = dense
            .iter()
            .enumerate()
            .map(|(i, row)| {
                row.iter().enumerate().filter(|&(j, &w)| j == i || w != 0.0).map(|(j, &w)| (j, w)).collect()
            })
            .collect();
        let w = MixingMatrix { rows };
        w.validate(graph)?;
        Ok(w)
    }

    /// Rows with `weight(i, j)` on each edge and the diagonal completing the row sum to 1.
    fn from_edge_weights(graph: &Graph, weight: impl Fn(usize, usize) -> f64) -> MixingMatrix {
        let rows = (0..graph.n())
            .map(|i| {
                let nbrs = graph.neighbors(i);
                let mut row: Vec<(usize, f64)> = Vec::with_capacity(nbrs.len() + 1);
                row.extend(nbrs.iter().map(|&j| (j, weight(i, j))));
                // Summed in ascending column order, the order validate() and callers use.
                let off: f64 = row.iter().map(|&(_, w)| w).sum();
                let at = nbrs.partition_point(|&j| j < i);
                row.insert(at, (i, 1.0 - off));
                row
            })
            .collect();
        MixingMatrix { rows }
    }

    /// Number of nodes (rows).
    pub fn n(&self) -> usize {
        self.rows.len()
    }

    /// Row `i` as `(column, weight)` pairs, ascending by column, diagonal included.
    /// Panics if `i >= n`.
    pub fn row(&self, i: usize) -> &[(usize, f64)] {
        &self.rows[i]
    }

    /// `w_ij`, or 0 when the entry is not stored. Panics if `i >= n`.
    pub fn weight(&self, i: usize, j: usize) -> f64 {
        let row = &self.rows[i];
        row.binary_search_by_key(&j, |&(c, _)| c).map_or(0.0, |k| row[k].1)
    }

    /// The full `n x n` matrix.
    pub fn to_dense(&self) -> Vec<Vec<f64>> {
        let n = self.n();
        self.rows
            .iter()
            .map(|row| {
                let mut dense = vec![0.0; n];
                for &(j, w) in row {
                    dense[j] = w;
                }
                dense
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
