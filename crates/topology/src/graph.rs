//! Undirected simple graphs on nodes `0..n` and the standard gossip topologies.

use std::collections::HashSet;

use crate::error::TopologyError;

/// An undirected simple graph on nodes `0..n`, stored as adjacency lists.
///
/// Invariants (every constructor enforces them): each list is sorted ascending, has no
/// duplicates and never contains its own node; `j` is in `neighbors(i)` iff `i` is in
/// `neighbors(j)`. The graph may be disconnected; mixing-matrix constructors reject that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    adj: Vec<Vec<usize>>,
}

fn require_nodes(family: &'static str, n: usize, min: usize) -> Result<(), TopologyError> {
    if n < min { Err(TopologyError::TooFewNodes { family, n, min }) } else { Ok(()) }
}

impl Graph {
    /// Builds from possibly repeated, unoriented edges known to be in range and loop-free;
    /// the structured families rely on the dedup here (e.g. a torus side of 2).
    fn from_edges_dedup(n: usize, edges: impl IntoIterator<Item = (usize, usize)>) -> Graph {
        let mut adj = vec![Vec::new(); n];
        for (u, v) in edges {
            debug_assert!(u < n && v < n && u != v);
            adj[u].push(v);
            adj[v].push(u);
        }
        for list in &mut adj {
            list.sort_unstable();
            list.dedup();
        }
        Graph { adj }
    }

    /// The cycle `0 - 1 - ... - (n-1) - 0`. `n == 2` is a single edge, `n == 1` a lone node.
    pub fn ring(n: usize) -> Result<Graph, TopologyError> {
        require_nodes("ring", n, 1)?;
        if n == 1 {
            return Ok(Graph::from_edges_dedup(1, []));
        }
        Ok(Graph::from_edges_dedup(n, (0..n).map(|i| (i, (i + 1) % n))))
    }

    /// A `rows x cols` grid with wraparound in both directions; node `(r, c)` is `r * cols + c`.
    ///
    /// A side of 2 would list each wraparound edge twice; it is kept once.
    pub fn torus(rows: usize, cols: usize) -> Result<Graph, TopologyError> {
        if rows < 2 || cols < 2 {
            return Err(TopologyError::TorusSideTooSmall { rows, cols });
        }
        let id = |r: usize, c: usize| r * cols + c;
        let edges = (0..rows).flat_map(|r| {
            (0..cols)
                .flat_map(move |c| [(id(r, c), id(r, (c + 1) % cols)), (id(r, c), id((r + 1) % rows, c))])
        });
        Ok(Graph::from_edges_dedup(rows * cols, edges))
    }

    /// The most square torus on `n` nodes: `rows <= cols`, both >= 2, `rows` as large as possible.
    pub fn torus_auto(n: usize) -> Result<Graph, TopologyError> {
        let (rows, cols) = torus_shape(n).ok_or(TopologyError::NoTorusFactorisation { n })?;
        Graph::torus(rows, cols)
    }

    /// Every pair of nodes joined. `n == 1` is a lone node.
    pub fn complete(n: usize) -> Result<Graph, TopologyError> {
        require_nodes("complete", n, 1)?;
        let adj = (0..n).map(|i| (0..n).filter(|&j| j != i).collect()).collect();
        Ok(Graph { adj })
    }

    /// Hub `0` joined to every other node, no other edges.
    pub fn star(n: usize) -> Result<Graph, TopologyError> {
        require_nodes("star", n, 2)?;
        Ok(Graph::from_edges_dedup(n, (1..n).map(|i| (0, i))))
    }

    /// The `log2(n)`-dimensional hypercube: `i ~ i xor 2^k`. `n` must be a power of two >= 2.
    pub fn hypercube(n: usize) -> Result<Graph, TopologyError> {
        require_nodes("hypercube", n, 2)?;
        if !n.is_power_of_two() {
            return Err(TopologyError::NotPowerOfTwo { n });
        }
        let dims = n.trailing_zeros();
        let adj = (0..n)
            .map(|i| {
                let mut list: Vec<usize> = (0..dims).map(|k| i ^ (1 << k)).collect();
                list.sort_unstable();
                list
            })
            .collect();
        Ok(Graph { adj })
    }

    /// The (symmetrised) exponential graph: `i ~ (i + 2^k) mod n` for every `2^k < n`.
    pub fn exponential(n: usize) -> Result<Graph, TopologyError> {
        require_nodes("exponential", n, 2)?;
        let hops: Vec<usize> = (0..usize::BITS).map(|k| 1usize << k).take_while(|&h| h < n).collect();
        let edges = (0..n).flat_map(|i| hops.iter().map(move |&h| (i, (i + h) % n)));
        Ok(Graph::from_edges_dedup(n, edges))
    }

    /// G(n, p): each pair `i < j` is an edge independently with probability `p`.
    ///
    /// Pairs are visited in lexicographic order `(0,1), (0,2), ..., (n-2,n-1)`, one draw each
    /// from `dprox_rng::stream(seed, &[0xE7])`, so a seed names one graph on every platform.
    /// The result may be disconnected; mixing-matrix constructors report that.
    pub fn erdos_renyi(n: usize, p: f64, seed: u64) -> Result<Graph, TopologyError> {
        require_nodes("erdos_renyi", n, 2)?;
        // The negated form also rejects NaN.
        if !(p > 0.0 && p <= 1.0) {
            return Err(TopologyError::InvalidProbability { p });
        }
        let mut rng = dprox_rng::stream(seed, &[0xE7]);
        let mut edges = Vec::new();
        for i in 0..n {
            for j in i + 1..n {
                if rng.uniform_f64() < p {
                    edges.push((i, j));
                }
            }
        }
        Ok(Graph::from_edges_dedup(n, edges))
    }

    /// A graph from an explicit edge list (each undirected edge once, either orientation).
    pub fn from_edges(n: usize, edges: &[(usize, usize)]) -> Result<Graph, TopologyError> {
        require_nodes("from_edges", n, 2)?;
        let mut seen = HashSet::with_capacity(edges.len());
        for &(u, v) in edges {
            if u >= n || v >= n {
                return Err(TopologyError::EdgeOutOfRange { u, v, n });
            }
            if u == v {
                return Err(TopologyError::SelfLoop { node: u });
            }
            if !seen.insert((u.min(v), u.max(v))) {
                return Err(TopologyError::DuplicateEdge { u, v });
            }
        }
        Ok(Graph::from_edges_dedup(n, edges.iter().copied()))
    }

    /// Number of nodes.
    pub fn n(&self) -> usize {
        self.adj.len()
    }

    /// Neighbours of `i`, ascending. Panics if `i >= n`.
    pub fn neighbors(&self, i: usize) -> &[usize] {
        &self.adj[i]
    }

    /// Number of neighbours of `i`. Panics if `i >= n`.
    pub fn degree(&self, i: usize) -> usize {
        self.adj[i].len()
    }

    /// Largest degree (0 for a lone node).
    pub fn max_degree(&self) -> usize {
        self.adj.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// Smallest degree (0 for a lone node).
    pub fn min_degree(&self) -> usize {
        self.adj.iter().map(Vec::len).min().unwrap_or(0)
    }

    /// Whether `i` and `j` are adjacent (false if either is out of range).
    pub fn has_edge(&self, i: usize, j: usize) -> bool {
        self.adj.get(i).is_some_and(|l| l.binary_search(&j).is_ok())
    }

    /// All edges as `(i, j)` with `i < j`, sorted lexicographically.
    pub fn edges(&self) -> Vec<(usize, usize)> {
        self.adj
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.iter().filter(move |&&j| j > i).map(move |&j| (i, j)))
            .collect()
    }

    /// Number of undirected edges.
    pub fn num_edges(&self) -> usize {
        self.adj.iter().map(Vec::len).sum::<usize>() / 2
    }

    /// Connected components, each sorted ascending, ordered by their smallest node.
    pub fn components(&self) -> Vec<Vec<usize>> {
        components_of(self.n(), |i| self.adj[i].iter().copied())
    }

    /// Whether every node is reachable from every other (a lone node is connected).
    pub fn is_connected(&self) -> bool {
        self.components().len() <= 1
    }
}

/// `(rows, cols)` with `rows <= cols`, both >= 2, `rows * cols == n` and `rows` maximal.
pub(crate) fn torus_shape(n: usize) -> Option<(usize, usize)> {
    let mut best = None;
    let mut r = 2;
    while r * r <= n {
        if n.is_multiple_of(r) {
            best = Some((r, n / r));
        }
        r += 1;
    }
    best
}

/// Components of the graph on `0..n` whose neighbours are listed by `neighbors`.
pub(crate) fn components_of<I>(n: usize, neighbors: impl Fn(usize) -> I) -> Vec<Vec<usize>>
where
    I: Iterator<Item = usize>,
{
    let mut seen = vec![false; n];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..n {
        if seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let mut comp = Vec::new();
        while let Some(u) = stack.pop() {
            comp.push(u);
            for v in neighbors(u) {
                if !seen[v] {
                    seen[v] = true;
                    stack.push(v);
                }
            }
        }
        comp.sort_unstable();
        out.push(comp);
    }
    out
}

#[cfg(test)]
mod tests;
