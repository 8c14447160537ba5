//! The communication graph and its mixing matrix, as the config describes them.

use dprox_config::Config;
use dprox_config::schema::{ScheduleKind, TopologyKind, WeightsKind};
use dprox_core::Algorithm;
use dprox_topology::{Graph, MixingMatrix, Schedule, TopologyFacts};

use crate::budget::Budget;
use crate::error::{PrepareError, invalid};

/// The graph, its weights and their facts (spectral gap included).
pub(crate) struct Topology {
    pub graph: Graph,
    pub mixing: MixingMatrix,
    pub facts: TopologyFacts,
    /// The time-varying schedule, if any, and the facts of one period.
    pub schedule: Option<(Schedule, ScheduleFacts)>,
}

/// What `check-config` says of a schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScheduleFacts {
    /// Rounds (iteration t uses round t mod period, or one drawn at random).
    pub period: usize,
    /// `||P - 11^T/n||_2` for P the product of the rounds in order.
    pub rho: f64,
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
    let seed = t.seed.unwrap_or(c.run.seed);
    let schedule = match t.schedule {
        ScheduleKind::Static => None,
        ScheduleKind::OnePeerExponential => Some(Schedule::one_peer_exponential(n)?),
        ScheduleKind::RandomMatching => Some(Schedule::random_matching(&graph, seed)?),
    };
    let schedule = match schedule {
        Some(s) => {
            let f = ScheduleFacts { period: s.period(), rho: s.period_rho()? };
            Some((s, f))
        }
        None => None,
    };
    Ok(Topology { graph, mixing, facts, schedule })
}
