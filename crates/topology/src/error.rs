//! The one error type of this crate.

use thiserror::Error;

/// Everything that can go wrong while building a graph, a mixing matrix, or its spectrum.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum TopologyError {
    /// A graph family was asked for fewer nodes than it can have.
    #[error("{family} needs at least {min} node(s), got n = {n}")]
    TooFewNodes {
        /// The constructor that refused (`"ring"`, `"star"`, ...).
        family: &'static str,
        /// The requested number of nodes.
        n: usize,
        /// The smallest number of nodes the family accepts.
        min: usize,
    },
    /// A torus side of length below 2 (a side of 1 would make every wraparound edge a self loop).
    #[error("torus needs both sides >= 2, got {rows} x {cols}")]
    TorusSideTooSmall {
        /// Requested number of rows.
        rows: usize,
        /// Requested number of columns.
        cols: usize,
    },
    /// `torus_auto` was given an `n` that is not a product of two factors >= 2.
    #[error("torus_auto: n = {n} has no factorisation rows x cols with both sides >= 2 (n is prime or < 4)")]
    NoTorusFactorisation {
        /// The requested number of nodes.
        n: usize,
    },
    /// `hypercube` was given an `n` that is not a power of two.
    #[error("hypercube needs n to be a power of two, got n = {n}")]
    NotPowerOfTwo {
        /// The requested number of nodes.
        n: usize,
    },
    /// An Erdos-Renyi edge probability outside (0, 1].
    #[error("erdos_renyi edge probability must lie in (0, 1], got p = {p}")]
    InvalidProbability {
        /// The rejected probability.
        p: f64,
    },
    /// An edge names a node id >= n.
    #[error("edge ({u}, {v}) has an endpoint out of range: node ids must be below n = {n}")]
    EdgeOutOfRange {
        /// First endpoint as given.
        u: usize,
        /// Second endpoint as given.
        v: usize,
        /// The number of nodes.
        n: usize,
    },
    /// An edge joins a node to itself.
    #[error("self loop at node {node}: an edge must join two distinct nodes")]
    SelfLoop {
        /// The node with the loop.
        node: usize,
    },
    /// The same undirected edge was listed twice (in either orientation).
    #[error("duplicate edge ({u}, {v}): each undirected edge may be listed once, in either orientation")]
    DuplicateEdge {
        /// First endpoint of the second occurrence, as given.
        u: usize,
        /// Second endpoint of the second occurrence, as given.
        v: usize,
    },
    /// The graph has more than one connected component, so gossip cannot reach consensus.
    #[error(
        "graph is not connected: {components} components; nodes not reachable from node 0: {}",
        list_nodes(.unreachable, *.unreachable_count)
    )]
    NotConnected {
        /// Number of connected components.
        components: usize,
        /// The first few nodes (ascending) not reachable from node 0.
        unreachable: Vec<usize>,
        /// How many nodes in all are not reachable from node 0.
        unreachable_count: usize,
    },
    /// The graph is connected, but the positive off-diagonal weights of W do not connect it.
    #[error(
        "mixing matrix does not connect the nodes: its positive off-diagonal weights form {components} components; nodes not reachable from node 0: {}",
        list_nodes(.unreachable, *.unreachable_count)
    )]
    SupportNotConnected {
        /// Number of components of the graph formed by the positive off-diagonal weights.
        components: usize,
        /// The first few nodes (ascending) not reachable from node 0 through positive weights.
        unreachable: Vec<usize>,
        /// How many nodes in all are not reachable from node 0 through positive weights.
        unreachable_count: usize,
    },
    /// A mixing matrix and the graph it is checked against have different sizes.
    #[error("mixing matrix is {matrix} x {matrix} but the graph has {graph} nodes")]
    SizeMismatch {
        /// Number of rows of the matrix.
        matrix: usize,
        /// Number of nodes of the graph.
        graph: usize,
    },
    /// A dense matrix has the wrong number of rows.
    #[error("matrix has {got} rows, expected {expected}")]
    WrongRowCount {
        /// Expected number of rows.
        expected: usize,
        /// Number of rows given.
        got: usize,
    },
    /// A row of a dense matrix has the wrong length.
    #[error("row {row} of the matrix has {got} entries, expected {expected}")]
    WrongRowLength {
        /// The offending row.
        row: usize,
        /// Expected number of entries.
        expected: usize,
        /// Number of entries given.
        got: usize,
    },
    /// A matrix entry is NaN or infinite.
    #[error("W[{i}][{j}] = {value} is not finite")]
    NonFiniteWeight {
        /// Row.
        i: usize,
        /// Column.
        j: usize,
        /// The entry.
        value: f64,
    },
    /// A negative mixing weight.
    #[error("negative weight W[{i}][{j}] = {value}: mixing weights must be nonnegative")]
    NegativeWeight {
        /// Row.
        i: usize,
        /// Column.
        j: usize,
        /// The entry.
        value: f64,
    },
    /// A nonzero off-diagonal weight between nodes that are not neighbours.
    #[error("W[{i}][{j}] = {value} is nonzero but ({i}, {j}) is not an edge of the graph")]
    WeightOffGraph {
        /// Row.
        i: usize,
        /// Column.
        j: usize,
        /// The entry.
        value: f64,
    },
    /// W differs from its transpose by more than 1e-12.
    #[error("mixing matrix is not symmetric: W[{i}][{j}] = {wij} but W[{j}][{i}] = {wji} (tolerance 1e-12)")]
    Asymmetric {
        /// Row of the first entry.
        i: usize,
        /// Column of the first entry.
        j: usize,
        /// `W[i][j]`.
        wij: f64,
        /// `W[j][i]`.
        wji: f64,
    },
    /// A row of W does not sum to 1 within 1e-9.
    #[error("row {row} of the mixing matrix sums to {sum}, not 1 (tolerance 1e-9)")]
    RowSum {
        /// The offending row.
        row: usize,
        /// Its sum.
        sum: f64,
    },
    /// The spectral gap is zero within rounding: gossip with this matrix never reaches consensus
    /// (e.g. `[[0, 1], [1, 0]]` swaps two values forever; so does any bipartite graph whose
    /// matrix has a zero diagonal).
    #[error(
        "the mixing matrix has spectral gap {gap:.3e} (rho = {rho}): gossip with it never reaches \
         consensus (an eigenvalue of -1 or 1 besides the consensus one; e.g. a bipartite graph with a \
         zero diagonal): give every node a positive self-weight, or use metropolis weights"
    )]
    NoConsensus {
        /// `1 - rho`.
        gap: f64,
        /// `||W - 11^T/n||_2`.
        rho: f64,
    },
    /// The QL iteration did not converge (only possible for pathological input).
    #[error("eigenvalue solver did not converge for eigenvalue {index} after {iterations} QL iterations")]
    EigenNoConvergence {
        /// Index of the eigenvalue being isolated.
        index: usize,
        /// Iterations spent on it.
        iterations: usize,
    },
}

/// Renders a node sample as `2, 3, 5` or `2, 3, 5, ... (7 in all)` when the sample is partial.
fn list_nodes(sample: &[usize], total: usize) -> String {
    let mut s = sample.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    if total > sample.len() {
        s.push_str(&format!(", ... ({total} in all)"));
    }
    s
}
