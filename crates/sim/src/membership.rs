//! Membership in the simulator: the fault schedule of the config applied on the virtual clock.
//!
//! At the start of an iteration with scheduled changes, the simulator plans the next epoch as the
//! coordinator of a cluster does (`Prepared::plan_epoch`: the configured graph induced on the
//! members, repaired, re-weighted), takes the leaving nodes out, brings the rejoining ones back,
//! and starts the epoch on every member. A node that left keeps its state and rejoins with it; a
//! node that crashed lost its state and rejoins from its latest checkpoint, else from the average
//! of its new neighbours' x. A pause adds its seconds to the node's virtual time.

use std::collections::BTreeSet;

use dprox_core::{EpochStart, Node};
use dprox_eval::{EventKind, MembershipEvent};
use dprox_prepare::{Change, ChangeKind, Epoch, Prepared};
use serde::{Deserialize, Serialize};

use crate::clock::InLink;
use crate::simulation::{SimError, Simulation};

/// Who takes part, and what the schedule still holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Membership {
    /// The current epoch.
    pub epoch: Epoch,
    /// Links out of service (a < b).
    pub down: BTreeSet<(usize, usize)>,
    /// Per node: true when it takes part now.
    active: Vec<bool>,
    /// Per node away: how it left (a crashed node's state is gone).
    away: Vec<Option<ChangeKind>>,
    /// Per node: its state at the latest checkpoint (what a crashed node restarts from).
    pub saved: Vec<Option<dprox_core::NodeState>>,
    /// Membership changes not yet handed to the run's record ([`Membership::take_events`]).
    events: Vec<MembershipEvent>,
    schedule: Vec<Change>,
    min_nodes: usize,
}

impl Membership {
    /// Every node, in the run's initial epoch.
    pub fn new(run: &Prepared) -> Membership {
        let n = run.n();
        Membership {
            epoch: run.initial_epoch(),
            down: BTreeSet::new(),
            active: vec![true; n],
            away: vec![None; n],
            saved: vec![None; n],
            events: Vec::new(),
            schedule: run.schedule(),
            min_nodes: run.config().cluster.min_nodes,
        }
    }

    /// Per node: true when it takes part now.
    pub fn active(&self) -> &[bool] {
        &self.active
    }

    /// The membership changes since the last call.
    pub fn take_events(&mut self) -> Vec<MembershipEvent> {
        std::mem::take(&mut self.events)
    }

    /// How many nodes take part now.
    pub fn live(&self) -> usize {
        self.active.iter().filter(|&&a| a).count()
    }

    /// The changes scheduled for iteration `t`.
    fn at(&self, t: u64) -> Vec<Change> {
        self.schedule.iter().filter(|c| c.iteration == t).copied().collect()
    }
}

/// The summary's name of a membership change.
fn event_kind(kind: ChangeKind) -> EventKind {
    match kind {
        ChangeKind::Leave => EventKind::Leave,
        ChangeKind::Crash => EventKind::Crash,
        ChangeKind::Rejoin => EventKind::Rejoin,
        ChangeKind::LinkDown => EventKind::LinkDown,
        ChangeKind::LinkUp => EventKind::LinkUp,
        ChangeKind::Pause(_) => EventKind::Pause,
    }
}

fn event(c: &Change, kind: EventKind, epoch: u64) -> MembershipEvent {
    MembershipEvent { iteration: c.iteration, node: c.node, peer: c.peer, kind, epoch }
}

impl Simulation<'_> {
    /// Applies the changes scheduled for the iteration about to start.
    pub(crate) fn apply_schedule(&mut self) -> Result<(), SimError> {
        let t = self.iteration;
        let changes = self.members.at(t);
        if changes.is_empty() {
            return Ok(());
        }
        let mut members = self.members.epoch.members.clone();
        let index = self.members.epoch.index;
        let mut down = self.members.down.clone();
        for c in &changes {
            match c.kind {
                ChangeKind::Pause(seconds) => {
                    self.clock.delay(c.node, seconds);
                    self.members.events.push(event(c, EventKind::Pause, index));
                }
                ChangeKind::Leave | ChangeKind::Crash => members.retain(|&m| m != c.node),
                ChangeKind::Rejoin => members.push(c.node),
                ChangeKind::LinkDown => {
                    down.insert((c.node, c.peer.expect("a link")));
                }
                ChangeKind::LinkUp => {
                    down.remove(&(c.node, c.peer.expect("a link")));
                }
            }
        }
        if changes.iter().all(|c| !c.changes_membership()) {
            return Ok(());
        }
        if members.len() < self.members.min_nodes {
            // The changes that left too few are in the summary, in the epoch that ends.
            for c in changes.iter().filter(|c| c.changes_membership()) {
                self.members.events.push(event(c, event_kind(c.kind), index));
            }
            return Err(SimError::TooFewNodes {
                iteration: t,
                live: members.len(),
                min: self.members.min_nodes,
            });
        }
        let down_links: Vec<(usize, usize)> = down.iter().copied().collect();
        let epoch = self.run.plan_epoch(index + 1, t, &members, &down_links)?;
        self.start(epoch, down, &changes)
    }

    /// Starts `epoch` (planned for `changes`): the leaving go, the rejoining come back with a
    /// state, every member restarts tracking, and the clock learns the new links.
    fn start(
        &mut self,
        epoch: Epoch,
        down: BTreeSet<(usize, usize)>,
        changes: &[Change],
    ) -> Result<(), SimError> {
        let t = self.iteration;
        for c in changes {
            match c.kind {
                ChangeKind::Leave | ChangeKind::Crash => {
                    self.members.active[c.node] = false;
                    self.members.away[c.node] = Some(c.kind);
                }
                ChangeKind::Rejoin => self.rejoin(c.node, &epoch)?,
                _ => {}
            }
        }
        for (k, &m) in epoch.members.iter().enumerate() {
            let e = EpochStart { epoch: epoch.index, iteration: t, row: epoch.rows[k].clone() };
            self.cluster.nodes_mut()[m].start_epoch(e)?;
        }
        for i in 0..self.run.n() {
            self.cluster.set_active(i, self.members.active[i]);
        }
        self.clock.set_links(links(self.run, &epoch));
        for c in changes.iter().filter(|c| c.changes_membership()) {
            self.members.events.push(event(c, event_kind(c.kind), epoch.index));
        }
        self.members.epoch = epoch;
        self.members.down = down;
        Ok(())
    }

    /// Node `id` takes part again in `epoch`: after a leave with the state it kept; after a crash
    /// from its latest checkpoint, else from the average of its new neighbours' x.
    fn rejoin(&mut self, id: usize, epoch: &Epoch) -> Result<(), SimError> {
        let t = self.iteration;
        if self.members.away[id] == Some(ChangeKind::Crash) {
            let cfg = self.run.node_config(id);
            let node = match self.members.saved[id].clone() {
                Some(state) => Node::restore(cfg, state)?,
                None => {
                    let mut fresh = Node::new(cfg)?;
                    fresh.set_params(&neighbours_average(&self.cluster, &epoch.peers(id)))?;
                    fresh
                }
            };
            self.cluster.replace(id, node);
        }
        self.samplers[id].seek(t);
        let start = epoch.peers(id).iter().map(|&j| self.clock.node_time(j)).fold(0.0, f64::max);
        self.clock.join_at(id, start);
        self.members.active[id] = true;
        self.members.away[id] = None;
        Ok(())
    }
}

/// The mean of the listed nodes' x, summed in ascending id in f64 (what a joining node fetches).
pub fn neighbours_average(cluster: &dprox_core::Cluster, peers: &[usize]) -> Vec<f32> {
    let d = cluster.nodes()[peers[0]].dim();
    let mut sum = vec![0.0f64; d];
    for &j in peers {
        for (s, &v) in sum.iter_mut().zip(cluster.nodes()[j].params()) {
            *s += v as f64;
        }
    }
    sum.iter().map(|&s| (s / peers.len() as f64) as f32).collect()
}

/// The clock's incoming links of every node in `epoch` (none for the nodes away).
fn links(run: &Prepared, epoch: &Epoch) -> Vec<Vec<InLink>> {
    (0..run.n())
        .map(|i| {
            epoch
                .peers(i)
                .into_iter()
                .map(|j| {
                    let cost = run.link(j, i);
                    InLink { from: j, latency_s: cost.latency_s, bytes_per_s: cost.bytes_per_s }
                })
                .collect()
        })
        .collect()
}
