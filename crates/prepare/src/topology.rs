//! The communication graph and its mixing matrix, as the config describes them.

use dprox_config::Config;
use dprox_config::schema::{TopologyKind, WeightsKind};
use dprox_core::Algorithm;
use dprox_topology::{Graph, MixingMatrix, TopologyFacts};

use crate::budget::Budget;
use crate::error::{PrepareError, invalid};

/// The graph, its weights and their facts (spectral gap included).
pub(crate) struct Topology {
    pub graph: Graph,
    pub mixing: MixingMatrix,
    pub facts: TopologyFacts,
}

/// Builds and validates the topology of `c`; refuses a matrix that never reaches consensus and
/// `[[links]]` entries that are not edges.
pub(crate) fn build(c: &Config, budget: &Budget) -> Result<Topology, PrepareError> {
    budget.check_topology(c)?;
    let t = &c.topology;
    let n = t.nodes;
    let graph = match t.kind {
        TopologyKind::Ring => Graph::ring(n)?,
        TopologyKind::Torus => match t.rows {
            Some(r) if r > 0 && n.is_multiple_of(r) => Graph::torus(r, n / r)?,
            Some(r) => return Err(invalid("topology.rows", format!("{r} rows do not divide {n} nodes"))),
            None => Graph::torus_auto(n)?,
        },
        TopologyKind::Complete => Graph::complete(n)?,
        TopologyKind::Star => Graph::star(n)?,
        TopologyKind::Hypercube => Graph::hypercube(n)?,
        TopologyKind::Exponential => Graph::exponential(n)?,
        TopologyKind::ErdosRenyi => Graph::erdos_renyi(n, t.p.unwrap_or(0.0), t.seed.unwrap_or(c.run.seed))?,
        TopologyKind::Edges => {
            let edges: Vec<(usize, usize)> = t.edges.iter().flatten().map(|e| (e[0], e[1])).collect();
            Graph::from_edges(n, &edges)?
        }
    };
    let mixing = match t.weights {
        WeightsKind::Metropolis => MixingMatrix::metropolis(&graph)?,
        WeightsKind::MaxDegree => MixingMatrix::max_degree(&graph)?,
        WeightsKind::Explicit => MixingMatrix::explicit(&graph, t.matrix.as_deref().unwrap_or(&[]))?,
    };
    mixing.validate(&graph)?;
    for (k, l) in c.links.iter().enumerate() {
        if !graph.has_edge(l.a, l.b) && c.run.algorithm != Algorithm::Allreduce {
            return Err(invalid(
                &format!("links[{k}]"),
                format!("{}-{} is not an edge of the topology", l.a, l.b),
            ));
        }
    }
    let facts = TopologyFacts::compute(&graph, &mixing)?;
    Ok(Topology { graph, mixing, facts })
}
