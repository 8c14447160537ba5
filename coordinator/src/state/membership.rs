//! The coordinator's membership bookkeeping: who takes part, which changes are pending, and when
//! the next epoch can be formed. Free of I/O, like the rest of the state.
//!
//! An epoch is formed when every live member has synced (at a planned change, every member
//! arrives at its iteration; after a loss, every member was told to freeze and reports where it
//! stopped). It starts at the furthest iteration among them; its members are the live nodes plus
//! the admitted joiners; its graph and weights are planned by `Prepared::plan_epoch`.

use std::collections::{BTreeMap, BTreeSet};

use dprox_eval::{EventKind, MembershipEvent};
use dprox_prepare::{Change, ChangeKind, Epoch, Prepared};
use serde::{Deserialize, Serialize};

use super::{Progress, RunState, State};

/// Why a node is not taking part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Away {
    /// It left as scheduled (with its state).
    Left,
    /// It was killed as scheduled.
    Crashed,
    /// It was found unreachable, or silent too long.
    Lost,
}

/// The bytes of a node's life that ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    /// The first row that counts them (the rows before counted the node's reports).
    pub from: u64,
    /// Payload bytes.
    pub payload: u64,
    /// Framed bytes.
    pub framed: u64,
}

/// Who takes part in the run, and the changes in progress.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Membership {
    /// The current epoch.
    pub epoch: Epoch,
    /// Its members that are still live.
    pub live: BTreeSet<usize>,
    /// Links out of service.
    pub down: BTreeSet<(usize, usize)>,
    /// Members waiting for the next epoch, at their iteration.
    pub synced: BTreeMap<usize, u64>,
    /// Nodes that registered to join, waiting for an epoch to admit them.
    pub joiners: BTreeSet<usize>,
    /// A loss happened: the members are told to freeze until the next epoch.
    pub forming: bool,
    /// Bytes each node sent in its earlier lives, counted into `bytes_sent` of the rows from
    /// the iteration each life ended.
    pub retired: Vec<Vec<Retired>>,
    /// Members that wrote their checkpoint of an iteration.
    pub checkpointed: BTreeMap<u64, BTreeSet<usize>>,
    /// Scheduled rejoins given up (the node did not come back in time), (node, iteration).
    #[serde(default)]
    pub given_up: BTreeSet<(usize, u64)>,
    /// Each node's minibatch size as set at the start from the throughputs the nodes measured
    /// (`balance = "throughput"`); empty: the config's. Kept in checkpoints, so that a resumed
    /// run draws the batches of the uninterrupted one.
    #[serde(default)]
    pub batches: Vec<u64>,
    /// Changes since the last epoch: (node, peer, kind), in order.
    changes: Vec<(usize, Option<usize>, EventKind)>,
    schedule: Vec<Change>,
    min_nodes: usize,
}

impl Membership {
    /// Every node, in the run's initial epoch.
    pub fn new(run: &Prepared) -> Membership {
        let epoch = run.initial_epoch();
        Membership {
            live: epoch.members.iter().copied().collect(),
            epoch,
            down: BTreeSet::new(),
            synced: BTreeMap::new(),
            joiners: BTreeSet::new(),
            forming: false,
            retired: vec![Vec::new(); run.n()],
            checkpointed: BTreeMap::new(),
            given_up: BTreeSet::new(),
            batches: Vec::new(),
            changes: Vec::new(),
            schedule: run.schedule(),
            min_nodes: run.config().cluster.min_nodes,
        }
    }

    /// `n` nodes and no schedule, for tests of the bookkeeping (no graph: epochs cannot be
    /// formed).
    pub fn of_nodes(n: usize) -> Membership {
        let members: Vec<usize> = (0..n).collect();
        let epoch = Epoch {
            index: 0,
            start: 0,
            members: members.clone(),
            edges: Vec::new(),
            added: Vec::new(),
            rows: Vec::new(),
            spectral_gap: 1.0,
        };
        Membership {
            live: members.into_iter().collect(),
            epoch,
            down: BTreeSet::new(),
            synced: BTreeMap::new(),
            joiners: BTreeSet::new(),
            forming: false,
            retired: vec![Vec::new(); n],
            checkpointed: BTreeMap::new(),
            given_up: BTreeSet::new(),
            batches: Vec::new(),
            changes: Vec::new(),
            schedule: Vec::new(),
            min_nodes: 1,
        }
    }

    /// The scheduled rejoin of `id` still to come after iteration `after`, if any.
    pub fn scheduled_rejoin(&self, id: usize, after: u64) -> Option<u64> {
        self.schedule
            .iter()
            .find(|c| c.node == id && c.kind == ChangeKind::Rejoin && c.iteration >= after)
            .map(|c| c.iteration)
    }

    /// Bytes of ended lives counted in the row of iteration `t`, (payload, framed).
    pub fn retired_at(&self, t: u64) -> (u64, u64) {
        self.retired
            .iter()
            .flatten()
            .filter(|r| r.from <= t)
            .fold((0, 0), |(p, f), r| (p + r.payload, f + r.framed))
    }

    fn all_synced(&self) -> bool {
        !self.live.is_empty() && self.live.iter().all(|m| self.synced.contains_key(m))
    }

    /// With every member synced at an iteration where the schedule has a node rejoin: that node,
    /// if it has not registered yet (the epoch waits for it, so that it starts where the
    /// simulator starts it), with the iteration.
    pub fn missing_joiner(&self) -> Option<(usize, u64)> {
        if !self.all_synced() {
            return None;
        }
        let start = self.synced.values().copied().max().unwrap_or(0);
        self.schedule
            .iter()
            .filter(|c| c.kind == ChangeKind::Rejoin && c.iteration == start)
            .map(|c| (c.node, start))
            .find(|&(j, t)| {
                !self.live.contains(&j) && !self.joiners.contains(&j) && !self.given_up.contains(&(j, t))
            })
    }

    fn ready(&self) -> bool {
        self.all_synced() && self.missing_joiner().is_none()
    }

    /// Adds the changes an epoch starting at `start` makes besides the departures already noted:
    /// the schedule's link changes and rejoins at that iteration, and the joiners without a
    /// rejoin still ahead in the schedule.
    fn note_changes_at(&mut self, start: u64) {
        for c in self.schedule.iter().filter(|c| c.iteration == start) {
            match c.kind {
                ChangeKind::LinkDown => self.changes.push((c.node, c.peer, EventKind::LinkDown)),
                ChangeKind::LinkUp => self.changes.push((c.node, c.peer, EventKind::LinkUp)),
                ChangeKind::Rejoin if self.joiners.contains(&c.node) => {
                    self.changes.push((c.node, None, EventKind::Rejoin))
                }
                _ => {}
            }
        }
        let unscheduled: Vec<usize> = self
            .joiners
            .iter()
            .copied()
            .filter(|&j| {
                self.scheduled_rejoin(j, start + 1).is_none()
                    && !self.changes.iter().any(|c| c.0 == j && c.2 == EventKind::Rejoin)
            })
            .collect();
        for j in unscheduled {
            self.changes.push((j, None, EventKind::Rejoin));
        }
    }

    /// The members and the links down once the noted changes are made.
    fn after_changes(&self) -> (BTreeSet<usize>, BTreeSet<(usize, usize)>) {
        let (mut members, mut down) = (self.live.clone(), self.down.clone());
        for &(node, peer, kind) in &self.changes {
            match (kind, peer) {
                (EventKind::LinkDown, Some(p)) => {
                    down.insert((node, p));
                }
                (EventKind::LinkUp, Some(p)) => {
                    down.remove(&(node, p));
                }
                (EventKind::Rejoin, _) => {
                    members.insert(node);
                }
                _ => {}
            }
        }
        (members, down)
    }
}

impl State {
    /// Member `id` waits for the next epoch at `iteration`.
    pub fn sync(&mut self, id: usize, iteration: u64) {
        if self.membership.live.contains(&id) {
            self.membership.synced.insert(id, iteration);
        }
    }

    /// Forms the next epoch if every live member has synced; returns it with its events. When
    /// too few nodes would be left, the error comes with the events that left them so few (the
    /// epoch they are counted in is the last one).
    #[allow(clippy::type_complexity)]
    pub fn form_epoch(
        &mut self,
        run: &Prepared,
    ) -> Result<Option<(Epoch, Vec<MembershipEvent>)>, (String, Vec<MembershipEvent>)> {
        let m = &mut self.membership;
        if !m.ready() {
            return Ok(None);
        }
        let start = m.synced.values().copied().max().unwrap_or(0);
        m.note_changes_at(start);
        let (members, down) = m.after_changes();
        let events = |m: &mut Membership, epoch: u64| -> Vec<MembershipEvent> {
            m.changes
                .drain(..)
                .map(|(node, peer, kind)| MembershipEvent { iteration: start, node, peer, kind, epoch })
                .collect()
        };
        if members.len() < m.min_nodes {
            let why = format!(
                "only {} node(s) left at iteration {start}, fewer than cluster.min_nodes = {}",
                members.len(),
                m.min_nodes
            );
            return Err((why, events(m, m.epoch.index)));
        }
        let members: Vec<usize> = members.into_iter().collect();
        let down_links: Vec<(usize, usize)> = down.iter().copied().collect();
        let epoch = match run.plan_epoch(m.epoch.index + 1, start, &members, &down_links) {
            Ok(e) => e,
            Err(e) => return Err((e.to_string(), events(m, m.epoch.index))),
        };
        let events = events(m, epoch.index);
        for &j in &members {
            m.joiners.remove(&j);
            if let Some(b) = self.nodes.get_mut(j)
                && matches!(b.progress, Progress::Away(_))
            {
                b.progress = Progress::Running;
            }
        }
        m.live = members.iter().copied().collect();
        m.down = down;
        m.synced.clear();
        m.forming = false;
        m.epoch = epoch.clone();
        self.drop_reports_before(start);
        Ok(Some((epoch, events)))
    }

    /// Node `id` is no longer taking part (`away`); returns false when it was not a member.
    fn remove(&mut self, id: usize, away: Away, kind: EventKind) -> bool {
        let m = &mut self.membership;
        if !m.live.remove(&id) {
            return false;
        }
        m.synced.remove(&id);
        m.changes.push((id, None, kind));
        self.nodes[id].progress = Progress::Away(away);
        true
    }

    /// Node `id` was lost: the members freeze and a new epoch is formed without it.
    pub fn lose(&mut self, id: usize) -> bool {
        let lost = self.remove(id, Away::Lost, EventKind::Lost);
        if lost {
            // Bytes sent up to its last report count from the next row; the rest of its life is
            // unknown.
            let b = &self.nodes[id];
            let from = b.reported_at.map_or(0, |t| t + 1);
            let r = Retired { from, payload: b.sent.payload_bytes, framed: b.sent.framed_bytes };
            self.membership.retired[id].push(r);
            self.membership.forming = true;
        }
        lost
    }

    /// Node `id` leaves (or is about to be killed) as scheduled at iteration `t`, having sent
    /// `totals` bytes in this life (its report of `t`, if any, counted them in that row).
    pub fn leave(&mut self, id: usize, t: u64, crash: bool, totals: (u64, u64)) {
        let (away, kind) =
            if crash { (Away::Crashed, EventKind::Crash) } else { (Away::Left, EventKind::Leave) };
        if self.remove(id, away, kind) {
            let from = if self.nodes[id].reported_at == Some(t) { t + 1 } else { t };
            self.membership.retired[id].push(Retired { from, payload: totals.0, framed: totals.1 });
        }
    }

    /// Node `id` registered to join: admitted at its scheduled rejoin, or else at the next
    /// epoch (formed at once: the members are told to freeze).
    pub fn join(&mut self, id: usize) {
        let m = &mut self.membership;
        m.joiners.insert(id);
        let now = self.nodes.iter().map(|b| b.heartbeat.iteration).max().unwrap_or(0);
        if m.scheduled_rejoin(id, now).is_none() {
            m.forming = true;
        }
    }

    /// Member `id` wrote its checkpoint of `iteration`; true when every live member has.
    pub fn checkpointed(&mut self, id: usize, iteration: u64) -> bool {
        let m = &mut self.membership;
        let done = m.checkpointed.entry(iteration).or_default();
        done.insert(id);
        let complete = m.live.iter().all(|j| done.contains(j));
        if complete {
            m.checkpointed.retain(|&t, _| t > iteration);
        }
        complete
    }

    /// Whether a sync of live member `id` is one that nothing will answer: not at a boundary of
    /// the schedule (where every member syncs), with no change forming and the run going on.
    pub fn unexplained_sync(&self, id: usize, at_boundary: bool) -> bool {
        let m = &self.membership;
        !at_boundary && !m.forming && m.live.contains(&id) && self.state == RunState::Running
    }

    /// Whether the members are told to freeze (a change after a loss or an unscheduled join,
    /// for a node in an epoch before the one being formed).
    pub fn freezing(&self, epoch: u64) -> bool {
        self.membership.forming && epoch <= self.membership.epoch.index && self.state == RunState::Running
    }
}
