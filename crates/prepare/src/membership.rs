//! Membership epochs: who takes part in the run, over which graph, with which weights, from which
//! iteration; and the fault schedule of the config as the changes it makes.
//!
//! The coordinator (and the simulator) plan an epoch whenever the membership changes: the graph
//! is the configured one induced on the members, without the links that are down; when that
//! leaves it disconnected, the fewest edges that reconnect it are added (one per extra component),
//! preferring a pair of former neighbours of a node that is gone (the two ring neighbours of a
//! lost node become neighbours). The weights follow the configured rule (`metropolis` or
//! `max_degree`; an explicit matrix cannot be restricted to a subset, so it becomes Metropolis).
//! Every step is deterministic, so the simulator and a cluster plan the same epochs.

use std::collections::BTreeSet;

use dprox_config::schema::{FaultKind, WeightsKind};
use dprox_core::Algorithm;
use dprox_topology::{Graph, MixingMatrix, TopologyFacts};
use serde::{Deserialize, Serialize};

use crate::Prepared;
use crate::error::PrepareError;

/// A membership epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Epoch {
    /// Its number: 0 for the initial membership, then one more per change.
    pub index: u64,
    /// The iteration it starts at.
    pub start: u64,
    /// The nodes taking part, ascending.
    pub members: Vec<usize>,
    /// Its graph: edges (a, b), a < b, ascending.
    pub edges: Vec<(usize, usize)>,
    /// The edges that are not in the configured graph (added to reconnect it).
    pub added: Vec<(usize, usize)>,
    /// Each member's row of W (aligned with `members`): ascending by peer, own weight included.
    pub rows: Vec<Row>,
    /// 1 - rho of the epoch's W.
    pub spectral_gap: f64,
}

impl Epoch {
    /// Node `id`'s row of W, if it is a member.
    pub fn row(&self, id: usize) -> Option<&[(usize, f64)]> {
        self.members.binary_search(&id).ok().map(|k| self.rows[k].as_slice())
    }

    /// Node `id`'s neighbours in the epoch (ascending; empty for a non-member).
    pub fn peers(&self, id: usize) -> Vec<usize> {
        self.row(id).map(|r| r.iter().map(|&(j, _)| j).filter(|&j| j != id).collect()).unwrap_or_default()
    }

    /// Whether `id` is a member.
    pub fn has(&self, id: usize) -> bool {
        self.members.binary_search(&id).is_ok()
    }
}

/// A node's row of W: (node, weight), ascending, its own weight included.
pub type Row = Vec<(usize, f64)>;

/// What a scheduled change does at its iteration.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The node leaves gracefully (it keeps its state).
    Leave,
    /// The node's process is killed (its state is lost).
    Crash,
    /// The node takes part again.
    Rejoin,
    /// The node pauses for this many seconds (no membership change).
    Pause(f64),
    /// The link goes down.
    LinkDown,
    /// The link is up again.
    LinkUp,
}

/// One scheduled change.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The iteration it happens at.
    pub iteration: u64,
    /// The node (node changes) or the lower end of the link (link changes).
    pub node: usize,
    /// The other end of the link (link changes).
    pub peer: Option<usize>,
    /// What happens.
    pub kind: ChangeKind,
}

impl Change {
    /// True for the changes that start a new epoch (every kind but a pause).
    pub fn changes_membership(&self) -> bool {
        !matches!(self.kind, ChangeKind::Pause(_))
    }
}

impl Prepared {
    /// The changes of the config's `[[faults]]`, ascending by iteration (then node).
    pub fn schedule(&self) -> Vec<Change> {
        let mut v = Vec::new();
        for f in &self.config().faults {
            let at = f.at;
            match (f.kind, f.node, f.link) {
                (FaultKind::LinkDown, _, Some([a, b])) => {
                    let (node, peer) = (a.min(b), Some(a.max(b)));
                    v.push(Change { iteration: at, node, peer, kind: ChangeKind::LinkDown });
                    let until = f.until.expect("validated");
                    v.push(Change { iteration: until, node, peer, kind: ChangeKind::LinkUp });
                }
                (FaultKind::Pause, Some(node), _) => {
                    let seconds = f.seconds.expect("validated");
                    v.push(Change { iteration: at, node, peer: None, kind: ChangeKind::Pause(seconds) });
                }
                (kind, Some(node), _) => {
                    let k = if kind == FaultKind::Leave { ChangeKind::Leave } else { ChangeKind::Crash };
                    v.push(Change { iteration: at, node, peer: None, kind: k });
                    if let Some(r) = f.rejoin {
                        v.push(Change { iteration: r, node, peer: None, kind: ChangeKind::Rejoin });
                    }
                }
                _ => unreachable!("validated fault"),
            }
        }
        v.sort_by(|a, b| (a.iteration, a.node).partial_cmp(&(b.iteration, b.node)).expect("no NaN in keys"));
        v
    }

    /// The initial epoch: every node, the configured graph and W.
    pub fn initial_epoch(&self) -> Epoch {
        let members: Vec<usize> = (0..self.n()).collect();
        let edges = if self.config().run.algorithm == Algorithm::Allreduce {
            all_pairs(&members)
        } else {
            self.graph().edges()
        };
        Epoch {
            index: 0,
            start: 0,
            rows: members.iter().map(|&i| self.node_config(i).row).collect(),
            members,
            edges,
            added: Vec::new(),
            spectral_gap: self.facts().spectral_gap,
        }
    }

    /// Plans epoch `index` starting at iteration `start` with the nodes `members` (any order), and
    /// the configured links `down` out of service (see the module doc).
    pub fn plan_epoch(
        &self,
        index: u64,
        start: u64,
        members: &[usize],
        down: &[(usize, usize)],
    ) -> Result<Epoch, PrepareError> {
        let members: Vec<usize> = members.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
        if members.is_empty() {
            return Err(crate::error::invalid(
                "faults",
                format!("epoch {index} at iteration {start} has no nodes left"),
            ));
        }
        if self.config().run.algorithm == Algorithm::Allreduce {
            let w = 1.0 / members.len() as f64;
            let rows = members.iter().map(|_| members.iter().map(|&j| (j, w)).collect()).collect();
            let edges = all_pairs(&members);
            return Ok(Epoch { index, start, edges, added: Vec::new(), rows, spectral_gap: 1.0, members });
        }
        let down: BTreeSet<(usize, usize)> = down.iter().map(|&(a, b)| (a.min(b), a.max(b))).collect();
        let member = |i: usize| members.binary_search(&i).is_ok();
        let mut edges: Vec<(usize, usize)> = self
            .graph()
            .edges()
            .into_iter()
            .filter(|&(a, b)| member(a) && member(b) && !down.contains(&(a, b)))
            .collect();
        let added = self.repair(&members, &mut edges, &down);
        let (rows, spectral_gap) = self.weights(&members, &edges)?;
        Ok(Epoch { index, start, members, edges, added, rows, spectral_gap })
    }

    /// Adds the fewest edges that connect `edges` over `members` (one per extra component),
    /// preferring two former neighbours of a node that is not a member; returns them.
    fn repair(
        &self,
        members: &[usize],
        edges: &mut Vec<(usize, usize)>,
        down: &BTreeSet<(usize, usize)>,
    ) -> Vec<(usize, usize)> {
        let mut added = Vec::new();
        loop {
            let comp = components(members, edges);
            if comp.iter().all(|&c| c == comp[0]) {
                break;
            }
            // Pairs in different components that were both neighbours of a node now gone.
            let gone = (0..self.n()).filter(|i| members.binary_search(i).is_err());
            let mut best: Option<(usize, usize)> = None;
            for k in gone {
                let near: Vec<usize> = self
                    .graph()
                    .neighbors(k)
                    .iter()
                    .copied()
                    .filter(|j| members.binary_search(j).is_ok())
                    .collect();
                for (p, &u) in near.iter().enumerate() {
                    for &v in &near[p + 1..] {
                        let (iu, iv) =
                            (members.binary_search(&u).unwrap(), members.binary_search(&v).unwrap());
                        let e = (u.min(v), u.max(v));
                        if comp[iu] != comp[iv] && !down.contains(&e) && best.is_none_or(|b| e < b) {
                            best = Some(e);
                        }
                    }
                }
            }
            // Else the smallest pair of nodes in different components that is not a down link.
            let e = best.unwrap_or_else(|| {
                let mut pairs = (0..members.len()).flat_map(|p| (p + 1..members.len()).map(move |q| (p, q)));
                let (p, q) = pairs
                    .find(|&(p, q)| comp[p] != comp[q] && !down.contains(&(members[p], members[q])))
                    .expect("two components have a pair of nodes whose link is not down");
                (members[p], members[q])
            });
            edges.push(e);
            added.push(e);
        }
        edges.sort();
        added.sort();
        added
    }

    /// The rows of W on the graph `edges` over `members`, by the configured rule, and its gap.
    fn weights(&self, members: &[usize], edges: &[(usize, usize)]) -> Result<(Vec<Row>, f64), PrepareError> {
        let local = |i: usize| members.binary_search(&i).expect("an edge between members");
        let local_edges: Vec<(usize, usize)> = edges.iter().map(|&(a, b)| (local(a), local(b))).collect();
        let graph = Graph::from_edges(members.len(), &local_edges)?;
        let mixing = match self.config().topology.weights {
            WeightsKind::MaxDegree => MixingMatrix::max_degree(&graph)?,
            WeightsKind::Metropolis | WeightsKind::Explicit => MixingMatrix::metropolis(&graph)?,
        };
        mixing.validate(&graph)?;
        let gap = TopologyFacts::compute(&graph, &mixing)?.spectral_gap;
        let rows = (0..members.len())
            .map(|k| mixing.row(k).iter().map(|&(j, w)| (members[j], w)).collect())
            .collect();
        Ok((rows, gap))
    }
}

/// Every pair of `members`, ascending.
fn all_pairs(members: &[usize]) -> Vec<(usize, usize)> {
    members.iter().enumerate().flat_map(|(k, &a)| members[k + 1..].iter().map(move |&b| (a, b))).collect()
}

/// The component of each member (aligned with `members`), by union-find over `edges`.
fn components(members: &[usize], edges: &[(usize, usize)]) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..members.len()).collect();
    fn root(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    for &(a, b) in edges {
        let (ia, ib) = (members.binary_search(&a).unwrap(), members.binary_search(&b).unwrap());
        let (ra, rb) = (root(&mut parent, ia), root(&mut parent, ib));
        parent[ra.max(rb)] = ra.min(rb);
    }
    (0..members.len()).map(|i| root(&mut parent, i)).collect()
}
