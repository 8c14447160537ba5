//! The coordinator's membership calls: a member syncs for the next epoch, a neighbour reports a
//! loss (or the watchdog finds a silent node), a node leaves as scheduled, a joining node waits
//! for its admission, a member has written its checkpoint.

use std::time::Duration;

use dprox_eval::MembershipEvent;
use dprox_transport::pb;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{Job, Refusal, Shared};
use crate::state::{Membership, Registration, RunState};

/// What the coordinator's checkpoint of an iteration holds (written by the evaluator once every
/// row up to that iteration is recorded).
#[derive(Serialize, Deserialize)]
pub(crate) struct CoordinatorCheckpoint {
    /// The iteration.
    pub iteration: u64,
    /// The membership before any change at that iteration.
    pub membership: Membership,
    /// The run's summary so far, as JSON (filled in by the evaluator).
    pub summary: String,
}

/// A joining node waiting for its epoch: if it hangs up first (its process died), it is no
/// longer a joiner.
struct Joiner<'a> {
    shared: &'a Shared,
    id: usize,
    admitted: bool,
}

impl Drop for Joiner<'_> {
    fn drop(&mut self) {
        if !self.admitted {
            self.shared.state().membership.joiners.remove(&self.id);
        }
    }
}

impl Shared {
    /// Member `req.id` waits for the next epoch; the reply is that epoch (or, for a node the run
    /// went on without, `excluded`).
    pub async fn sync(&self, req: pb::SyncRequest) -> Result<pb::SyncReply, Refusal> {
        let id = req.id as usize;
        {
            let mut st = self.state();
            st.sync(id, req.iteration);
            let ahead = st.membership.epoch.index > req.epoch;
            if !ahead && st.unexplained_sync(id, req.at_boundary) {
                // The node saw a change the coordinator has not (or a stale event): an epoch of
                // the same members costs a restart of tracking, where waiting would strand the
                // node until its neighbours timed out on it.
                tracing::warn!(
                    node = id,
                    iteration = req.iteration,
                    "node {id} synced in the middle of epoch {} with no change forming; forming an epoch so that it is not left waiting",
                    req.epoch
                );
                st.membership.forming = true;
            }
            drop(st);
            if !ahead {
                self.form();
            }
        }
        let mut epochs = self.epochs.subscribe();
        let mut over = self.over.subscribe();
        tokio::select! {
            _ = epochs.wait_for(|&e| e > req.epoch) => {}
            _ = over.wait_for(|&v| v) => {}
        }
        if let RunState::Aborted(why) = &self.state().state {
            return Ok(pb::SyncReply { epoch: None, excluded: false, abort: why.clone() });
        }
        match self.epoch_of(id) {
            Some(info) => Ok(pb::SyncReply { epoch: Some(info), excluded: false, abort: String::new() }),
            None => Ok(pb::SyncReply { epoch: None, excluded: true, abort: String::new() }),
        }
    }

    /// Forms the next epoch if every live member has synced, and tells everyone.
    pub(crate) fn form(&self) {
        let formed = {
            let mut st = self.state();
            match st.form_epoch(&self.run) {
                Ok(Some((epoch, events))) => {
                    st.note_events(&events);
                    Some((epoch, events, st.membership.live.len()))
                }
                Ok(None) => None,
                Err((why, events)) => {
                    tracing::error!("{why}");
                    st.note_events(&events);
                    let live = st.membership.live.len();
                    st.abort(why, Instant::now());
                    drop(st);
                    for e in events {
                        self.job(Job::Event(e, live));
                    }
                    self.note_over();
                    return;
                }
            }
        };
        let Some((epoch, events, live)) = formed else { return };
        tracing::info!(epoch = epoch.index, iteration = epoch.start, members = ?epoch.members, added = ?epoch.added, "new membership epoch");
        self.publish_membership(epoch.index, live, &events);
        for e in events {
            self.job(Job::Event(e, live));
        }
        self.epochs.send_replace(epoch.index);
    }

    fn publish_membership(&self, epoch: u64, live: usize, events: &[MembershipEvent]) {
        use dprox_telemetry::names;
        metrics::gauge!(names::EPOCH).set(epoch as f64);
        metrics::gauge!(names::LIVE_NODES).set(live as f64);
        for e in events {
            let kind = serde_json::to_value(e.kind)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            metrics::counter!(names::MEMBERSHIP_CHANGES, "kind" => kind).increment(1);
        }
    }

    /// Node `req.peer` cannot be reached from node `req.id`: it is lost.
    pub fn lost(&self, req: pb::LostRequest) {
        let why =
            format!("node {} found it unreachable at iteration {}: {}", req.id, req.iteration, req.reason);
        self.declare_lost(req.peer as usize, &why);
    }

    /// Node `id` is lost (`why`): rows waiting only for it complete, the members freeze, and the
    /// next epoch is formed without it (or the run ends, with fewer than `min_nodes` left).
    pub(crate) fn declare_lost(&self, id: usize, why: &str) {
        let rows = {
            let mut st = self.state();
            if !st.lose(id) {
                return;
            }
            tracing::warn!(node = id, address = %st.address(id), "node lost: {why}");
            let rows: Vec<_> = st.complete_reports();
            rows.into_iter()
                .map(|(t, reports)| super::Complete {
                    iteration: t,
                    reports,
                    retired: st.membership.retired_at(t),
                    _slot: None,
                })
                .collect::<Vec<_>>()
        };
        for c in rows {
            self.job(Job::Row(c));
        }
        self.form();
    }

    /// Node `req.id` leaves (or is about to be killed) as scheduled.
    pub fn leave(&self, req: pb::LeaveRequest) {
        let id = req.id as usize;
        let rows = {
            let mut st = self.state();
            st.leave(id, req.iteration, req.crash, (req.payload_bytes, req.framed_bytes));
            tracing::info!(
                node = id,
                iteration = req.iteration,
                "{}",
                if req.crash { "crashes as scheduled" } else { "leaves as scheduled" }
            );
            let rows: Vec<_> = st.complete_reports();
            rows.into_iter()
                .map(|(t, reports)| super::Complete {
                    iteration: t,
                    reports,
                    retired: st.membership.retired_at(t),
                    _slot: None,
                })
                .collect::<Vec<_>>()
        };
        for c in rows {
            self.job(Job::Row(c));
        }
        self.form();
    }

    /// A joining node: registered, then held until an epoch admits it (its scheduled rejoin,
    /// else the next one, formed at once).
    pub(super) async fn register_join(
        &self,
        id: usize,
        dim: usize,
        reg: Registration,
    ) -> Result<pb::RegisterReply, Refusal> {
        let address = reg.address.clone();
        // Admitted by an epoch formed after this registration (the current one may still list
        // the node, lost a moment ago, while its successor is being formed).
        let since = {
            let mut st = self.state();
            st.register_join(id, dim, reg, Instant::now())
                .map_err(|e| Refusal::Precondition(e.to_string()))?;
            st.membership.epoch.index
        };
        tracing::info!(node = id, %address, "registered to join the run");
        // The members may all be waiting already at this node's scheduled rejoin: nothing else
        // would form that epoch now (form() does nothing until every member has synced).
        self.form();
        let mut waiting = Joiner { shared: self, id, admitted: false };
        let (mut epochs, mut over) = (self.epochs.subscribe(), self.over.subscribe());
        loop {
            if let Some(info) = self.epoch_of(id).filter(|e| e.index > since) {
                waiting.admitted = true;
                return Ok(self.reply(id, info, None));
            }
            tokio::select! {
                r = epochs.changed() => r.map_err(|_| Refusal::Unavailable("the coordinator is shutting down".into()))?,
                _ = over.wait_for(|&v| v) => return Err(Refusal::Aborted("the run is over".into())),
            }
        }
    }

    /// Member `req.id` wrote its checkpoint of `req.iteration`; once every live member has, the
    /// evaluator writes the coordinator's (after the rows up to it). Returns the iteration of the
    /// coordinator's latest checkpoint on disk (the nodes keep theirs from there on).
    pub fn checkpointed(&self, req: pb::CheckpointedRequest) -> u64 {
        let mut st = self.state();
        if st.checkpointed(req.id as usize, req.iteration) {
            let c = CoordinatorCheckpoint {
                iteration: req.iteration,
                membership: st.membership.clone(),
                summary: String::new(),
            };
            drop(st);
            self.job(Job::Checkpoint(Box::new(c)));
        }
        self.checkpoint_written.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The watchdog's look: a live member silent for `limit` is lost.
    pub(crate) fn watch_liveness(&self, limit: Duration) {
        let silent = self.state().silent_member(Instant::now(), limit);
        if let Some((id, why)) = silent {
            self.declare_lost(id, &why);
        }
        let overdue = self.state().overdue_joiner(Instant::now(), limit);
        if let Some(why) = overdue {
            tracing::warn!("{why}");
            self.form();
        }
    }
}
