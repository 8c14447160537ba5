//! The coordinator's bookkeeping, free of I/O: who registered, who is alive, how far each node
//! got, what each sent to each neighbour, which evaluation iterations are complete, and the
//! evaluated curve so far. Time comes in as an argument (tokio's `Instant`, so that drivers over
//! it run in virtual time).

mod membership;

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::status::{CurvePoint, Traffic};

pub use membership::{Away, Membership, Retired};

/// At most this many curve points are kept: beyond it every other point is dropped, so a long
/// run's status stays small to serve and draw while still spanning the whole run.
pub const MAX_POINTS: usize = 4096;

/// A node as it registered.
#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    /// Its gossip address.
    pub address: String,
    /// Its compute device.
    pub device: String,
    /// Measured gradient throughput, samples per second.
    pub throughput: f64,
}

/// What a node sent at an evaluation iteration.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// x_i.
    pub x: Vec<f32>,
    /// Bytes sent so far (to all neighbours).
    pub sent: Traffic,
    /// Seconds since the start signal.
    pub elapsed: f64,
    /// Minibatch loss of the node's latest gradient, if it computed one yet.
    pub loss: Option<f64>,
    /// Bytes sent to each neighbour so far, by peer id.
    pub links: BTreeMap<usize, Traffic>,
}

/// Where the run is.
#[derive(Clone, Debug, PartialEq)]
pub enum RunState {
    /// Waiting for registrations.
    Registering,
    /// Every node registered; training.
    Running,
    /// Every node finished its iterations.
    Completed,
    /// A node failed or went silent; the reason.
    Aborted(String),
}

/// How far a node got.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// Registering or training.
    Running,
    /// Completed its iterations.
    Finished,
    /// Stopped with this error.
    Failed(String),
    /// Not taking part now (it left, crashed, or was lost).
    Away(Away),
}

/// A node's latest sign of life.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Heartbeat {
    /// When it came.
    pub at: Instant,
    /// The iteration the node was at (the latest of heartbeats and reports).
    pub iteration: u64,
}

/// What the coordinator knows of one node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeBook {
    /// Its registration, once it registered.
    pub registration: Option<Registration>,
    /// Its latest sign of life.
    pub heartbeat: Heartbeat,
    /// How far it got.
    pub progress: Progress,
    /// Bytes it sent, as of its latest report.
    pub sent: Traffic,
    /// Its latest minibatch loss.
    pub loss: Option<f64>,
    /// The iteration of its latest report.
    pub reported_at: Option<u64>,
    /// Bytes it sent to each neighbour, as of its latest report.
    pub links: BTreeMap<usize, Traffic>,
}

/// Why a registration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The id is outside the topology.
    #[error("node id {id} is not in the topology, which has nodes 0..{n}")]
    UnknownNode {
        /// The id given.
        id: usize,
        /// Nodes in the topology.
        n: usize,
    },
    /// The node's model has another size than the run's.
    #[error("node {id} has a model of {dim} parameters, the run's has {expected}")]
    WrongDim {
        /// The node.
        id: usize,
        /// Its model's size.
        dim: usize,
        /// The run's.
        expected: usize,
    },
    /// The run already started.
    #[error("node {id} registered after the run started")]
    Started {
        /// The node.
        id: usize,
    },
    /// The id registered already.
    #[error("node {id} is already registered (at {address})")]
    Duplicate {
        /// The node.
        id: usize,
        /// The address it registered with.
        address: String,
    },
}

/// Why a report was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// The id is outside the topology.
    #[error("report from unknown node {id}")]
    UnknownNode {
        /// The id given.
        id: usize,
    },
    /// The iterate has another size than the run's.
    #[error("node {id} reported {got} parameters, the run has {expected}")]
    WrongDim {
        /// The node.
        id: usize,
        /// The size reported.
        got: usize,
        /// The run's.
        expected: usize,
    },
    /// A value of the iterate is NaN or infinite.
    #[error("node {id} reported a non-finite value at index {index} of its iterate")]
    NonFinite {
        /// The node.
        id: usize,
        /// Where.
        index: usize,
    },
    /// The node does not take part in the run now.
    #[error("node {id} does not take part in the run now")]
    NotMember {
        /// The node.
        id: usize,
    },
    /// Not an evaluation iteration of the run, or past its end.
    #[error("node {id} reported iteration {iteration}, which is not an evaluation point of this run")]
    NotEvaluated {
        /// The node.
        id: usize,
        /// The iteration reported.
        iteration: u64,
    },
    /// The node reported this iteration (or a later one) already.
    #[error("node {id} reported iteration {iteration} after its report of iteration {last}")]
    OutOfOrder {
        /// The node.
        id: usize,
        /// The iteration reported.
        iteration: u64,
        /// Its latest report.
        last: u64,
    },
    /// Too many iterations wait for reports: the reporter is too far ahead of the slowest node.
    #[error("node {id} reported iteration {iteration}, but {pending} iterations already wait for reports")]
    TooFarAhead {
        /// The node.
        id: usize,
        /// The iteration reported.
        iteration: u64,
        /// Iterations waiting.
        pending: usize,
    },
}

/// The most evaluation iterations that may wait for reports at once (each holds up to one
/// iterate per node): a report that would open one more is refused.
pub const MAX_PENDING_ROWS: usize = 64;

/// The coordinator's view of the run.
#[derive(Debug)]
pub struct State {
    dim: usize,
    /// Every node of the topology, by id.
    pub nodes: Vec<NodeBook>,
    /// Run state.
    pub state: RunState,
    /// The evaluated points so far, ascending by iteration (thinned beyond [`MAX_POINTS`]).
    pub curve: Vec<CurvePoint>,
    /// When every node had registered (the start signal).
    pub started: Option<Instant>,
    /// When the run completed or was aborted.
    pub ended: Option<Instant>,
    /// When the coordinator started waiting for registrations.
    created: Instant,
    reports: BTreeMap<u64, Vec<Option<Report>>>,
    /// Who takes part, and the membership changes in progress.
    pub membership: Membership,
    /// The run's evaluation points: every `eval_every` iterations and the last, `iterations`
    /// (none: any iteration, for tests of the bookkeeping alone).
    schedule: Option<(u64, u64)>,
    /// The latest membership changes (at most `status::MAX_EVENTS`), for the status.
    pub events: std::collections::VecDeque<dprox_eval::MembershipEvent>,
    /// A scheduled joiner the members wait for, and since when.
    joiner_wait: Option<((usize, u64), Instant)>,
}

impl State {
    /// A run of `n` nodes with models of `dim` parameters, started at `now`, with the membership
    /// `membership`.
    pub fn new(n: usize, dim: usize, now: Instant, membership: Membership) -> State {
        let book = NodeBook {
            registration: None,
            heartbeat: Heartbeat { at: now, iteration: 0 },
            progress: Progress::Running,
            sent: Traffic::default(),
            loss: None,
            reported_at: None,
            links: BTreeMap::new(),
        };
        State {
            dim,
            nodes: vec![book; n],
            state: RunState::Registering,
            curve: Vec::new(),
            started: None,
            ended: None,
            created: now,
            reports: BTreeMap::new(),
            membership,
            schedule: None,
            events: Default::default(),
            joiner_wait: None,
        }
    }

    fn n(&self) -> usize {
        self.nodes.len()
    }

    /// Node `id`'s address, or "" before it registered (for messages).
    pub fn address(&self, id: usize) -> &str {
        self.nodes.get(id).and_then(|b| b.registration.as_ref()).map_or("", |r| r.address.as_str())
    }

    /// Records a registration; returns true when it was the last one (the run starts).
    pub fn register(
        &mut self,
        id: usize,
        dim: usize,
        reg: Registration,
        now: Instant,
    ) -> Result<bool, RegisterError> {
        if id >= self.n() {
            return Err(RegisterError::UnknownNode { id, n: self.n() });
        }
        if dim != self.dim {
            return Err(RegisterError::WrongDim { id, dim, expected: self.dim });
        }
        if self.state != RunState::Registering {
            return Err(RegisterError::Started { id });
        }
        if let Some(prev) = &self.nodes[id].registration {
            return Err(RegisterError::Duplicate { id, address: prev.address.clone() });
        }
        self.nodes[id].registration = Some(reg);
        self.nodes[id].heartbeat = Heartbeat { at: now, iteration: 0 };
        // Every live member (all nodes for a fresh run; those of the checkpoint's epoch for a
        // resumed one).
        let m = &self.membership;
        let all = m.live.iter().all(|&i| self.nodes[i].registration.is_some());
        if all {
            self.state = RunState::Running;
            self.started = Some(now);
            for b in &mut self.nodes {
                b.heartbeat.at = now;
            }
        }
        Ok(all)
    }

    /// Registers node `id` to join the running cluster (restarted or late); it is admitted at
    /// an epoch (see [`State::join`]).
    pub fn register_join(
        &mut self,
        id: usize,
        dim: usize,
        reg: Registration,
        now: Instant,
    ) -> Result<(), RegisterError> {
        if id >= self.n() {
            return Err(RegisterError::UnknownNode { id, n: self.n() });
        }
        if dim != self.dim {
            return Err(RegisterError::WrongDim { id, dim, expected: self.dim });
        }
        if self.membership.live.contains(&id) {
            let address = self.address(id).to_string();
            return Err(RegisterError::Duplicate { id, address });
        }
        self.nodes[id].registration = Some(reg);
        self.nodes[id].heartbeat.at = now;
        self.join(id);
        Ok(())
    }

    /// A heartbeat; returns the abort reason if the run was aborted.
    pub fn heartbeat(&mut self, id: usize, iteration: u64, now: Instant) -> Option<String> {
        if let Some(b) = self.nodes.get_mut(id) {
            // A report may have told us a later iteration already; heartbeats race with it.
            b.heartbeat = Heartbeat { at: now, iteration: iteration.max(b.heartbeat.iteration) };
        }
        match &self.state {
            RunState::Aborted(why) => Some(why.clone()),
            _ => None,
        }
    }

    /// A report; returns the reports of `iteration` when every node has sent its own.
    pub fn report(
        &mut self,
        id: usize,
        iteration: u64,
        r: Report,
    ) -> Result<Option<Vec<Report>>, ReportError> {
        self.check_report(id, iteration, &r)?;
        let n = self.n();
        let b = &mut self.nodes[id];
        b.sent = r.sent;
        b.reported_at = Some(iteration);
        b.loss = r.loss.or(b.loss);
        if !r.links.is_empty() {
            b.links = r.links.clone();
        }
        // Reports are fresher than heartbeats (which come once per `heartbeat_s`).
        b.heartbeat.iteration = b.heartbeat.iteration.max(iteration);
        let slot = self.reports.entry(iteration).or_insert_with(|| vec![None; n]);
        slot[id] = Some(r);
        Ok(self.take_complete(iteration))
    }

    /// Reports are evaluated for the run's points only: every `eval_every` iterations and the
    /// last, `iterations`.
    pub fn with_schedule(mut self, eval_every: u64, iterations: u64) -> State {
        self.schedule = Some((eval_every, iterations));
        self
    }

    /// Refuses a report that cannot be right: from a node outside the run or away, of another
    /// size, with a non-finite value, of an iteration that is not an evaluation point, not after
    /// the node's previous report, or opening more than [`MAX_PENDING_ROWS`] waiting rows.
    fn check_report(&self, id: usize, iteration: u64, r: &Report) -> Result<(), ReportError> {
        let b = self.nodes.get(id).ok_or(ReportError::UnknownNode { id })?;
        if r.x.len() != self.dim {
            return Err(ReportError::WrongDim { id, got: r.x.len(), expected: self.dim });
        }
        if !self.membership.live.contains(&id) {
            return Err(ReportError::NotMember { id });
        }
        if let Some((every, last)) = self.schedule
            && (iteration > last || (!iteration.is_multiple_of(every.max(1)) && iteration != last))
        {
            return Err(ReportError::NotEvaluated { id, iteration });
        }
        if let Some(last) = b.reported_at
            && iteration <= last
        {
            return Err(ReportError::OutOfOrder { id, iteration, last });
        }
        if let Some(index) = r.x.iter().position(|v| !v.is_finite()) {
            return Err(ReportError::NonFinite { id, index });
        }
        let pending = self.reports.len();
        if pending >= MAX_PENDING_ROWS && !self.reports.contains_key(&iteration) {
            return Err(ReportError::TooFarAhead { id, iteration, pending });
        }
        Ok(())
    }

    /// A node's finish without an error is believed only once it reported the run's last
    /// iteration (or it is no member any more); the error says why not.
    pub fn check_finish(&self, id: usize) -> Result<(), String> {
        let Some(b) = self.nodes.get(id) else { return Err(format!("unknown node {id}")) };
        let Some((_, last)) = self.schedule else { return Ok(()) };
        if !self.membership.live.contains(&id) || b.reported_at == Some(last) {
            return Ok(());
        }
        Err(format!(
            "node {id} says it finished, but its last report is of iteration {}, not the run's last ({last})",
            b.reported_at.map_or("none".to_string(), |t| t.to_string())
        ))
    }

    /// The reports of `iteration` once every live member has sent its own (with those of nodes
    /// that went since), in node order.
    fn take_complete(&mut self, iteration: u64) -> Option<Vec<Report>> {
        let slot = self.reports.get(&iteration)?;
        if !self.membership.live.iter().all(|&j| slot[j].is_some()) {
            return None;
        }
        let done = self.reports.remove(&iteration).expect("present");
        Some(done.into_iter().flatten().collect())
    }

    /// Iterations whose reports are complete now that a member went, ascending.
    pub fn complete_reports(&mut self) -> Vec<(u64, Vec<Report>)> {
        let pending: Vec<u64> = self.reports.keys().copied().collect();
        pending.into_iter().filter_map(|t| self.take_complete(t).map(|r| (t, r))).collect()
    }

    /// Drops the reports of iterations before `start`: the members restarted at `start` (after
    /// a loss), and those rows cannot be completed.
    fn drop_reports_before(&mut self, start: u64) {
        let skipped: Vec<u64> = self.reports.range(..start).map(|(&t, _)| t).collect();
        for t in skipped {
            tracing::warn!(iteration = t, "metrics row skipped: the members restarted at iteration {start}");
            self.reports.remove(&t);
        }
    }

    /// An evaluated point of the curve (they arrive in order of iteration).
    pub fn record_point(&mut self, p: CurvePoint) {
        if self.curve.len() >= MAX_POINTS {
            // Keep the first point and every other one after it: the curve keeps its span.
            let mut i = 0;
            self.curve.retain(|_| {
                i += 1;
                i % 2 == 1
            });
        }
        self.curve.push(p);
    }

    /// A node finished, or failed with `error`, at `now`. A live member's failure aborts the
    /// run; a node that was already away (lost, excluded) only says why it stopped.
    pub fn finish(&mut self, id: usize, error: Option<String>, now: Instant) {
        if id >= self.n() {
            return;
        }
        let live = self.membership.live.contains(&id);
        if let Some(e) = &error
            && live
            && !matches!(self.state, RunState::Aborted(_))
        {
            self.state = RunState::Aborted(format!("node {id} ({}) failed: {e}", self.address(id)));
        }
        if live {
            self.nodes[id].progress = match error {
                None => Progress::Finished,
                Some(e) => Progress::Failed(e),
            };
        }
        let m = &self.membership;
        if self.state == RunState::Running
            && m.live.iter().all(|&j| self.nodes[j].progress == Progress::Finished)
        {
            self.state = RunState::Completed;
        }
        if self.is_over() && self.ended.is_none() {
            self.ended = Some(now);
        }
    }

    /// A live member silent for longer than `limit` (the failure detector's tolerance), with
    /// what to say about it.
    pub fn silent_member(&self, now: Instant, limit: Duration) -> Option<(usize, String)> {
        if self.state != RunState::Running {
            return None;
        }
        let id = *self.membership.live.iter().find(|&&j| {
            let b = &self.nodes[j];
            b.progress == Progress::Running && now.saturating_duration_since(b.heartbeat.at) > limit
        })?;
        let Heartbeat { at, iteration } = self.nodes[id].heartbeat;
        let why = format!(
            "node {id} ({}) sent no heartbeat for {:.1} s, at iteration {iteration}",
            self.address(id),
            now.saturating_duration_since(at).as_secs_f64()
        );
        Some((id, why))
    }

    /// A node whose scheduled rejoin the members have waited for longer than `limit` at `now`:
    /// its rejoin is given up (the epoch forms without it; it may still join later). Returns the
    /// reason, for the log.
    pub fn overdue_joiner(&mut self, now: Instant, limit: Duration) -> Option<String> {
        let Some(missing) = self.membership.missing_joiner() else {
            self.joiner_wait = None;
            return None;
        };
        match self.joiner_wait {
            Some((w, since)) if w == missing => {
                if now.saturating_duration_since(since) <= limit {
                    return None;
                }
                self.membership.given_up.insert(missing);
                self.joiner_wait = None;
                let (j, t) = missing;
                Some(format!(
                    "node {j} did not register for its scheduled rejoin at iteration {t} within {:.1} s; going on without it",
                    limit.as_secs_f64()
                ))
            }
            _ => {
                self.joiner_wait = Some((missing, now));
                None
            }
        }
    }

    /// Keeps membership changes for the status (the latest `status::MAX_EVENTS`).
    pub fn note_events(&mut self, events: &[dprox_eval::MembershipEvent]) {
        self.events.extend(events.iter().cloned());
        while self.events.len() > crate::status::MAX_EVENTS {
            self.events.pop_front();
        }
    }

    /// Ends the run with `why` at `now` (fewer nodes than `min_nodes` are left, say).
    pub fn abort(&mut self, why: String, now: Instant) {
        if !self.is_over() {
            self.state = RunState::Aborted(why);
            self.ended = Some(now);
        }
    }

    /// Aborts a run that is still waiting for registrations `limit` after the coordinator
    /// started, naming the nodes that never came; true when it did.
    pub fn check_registration(&mut self, now: Instant, limit: Duration) -> bool {
        if self.state != RunState::Registering || now.saturating_duration_since(self.created) <= limit {
            return false;
        }
        let ids = |registered: bool| {
            let v: Vec<String> = (0..self.n())
                .filter(|&i| self.nodes[i].registration.is_some() == registered)
                .map(|i| i.to_string())
                .collect();
            if v.is_empty() { "none".to_string() } else { v.join(", ") }
        };
        self.state = RunState::Aborted(format!(
            "node(s) {} did not register within {:.0} s (registered: {}); see cluster.register_timeout_s",
            ids(false),
            limit.as_secs_f64(),
            ids(true)
        ));
        self.ended = Some(now);
        true
    }

    /// True when the run is over (completed or aborted).
    pub fn is_over(&self) -> bool {
        matches!(self.state, RunState::Completed | RunState::Aborted(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(a: &str) -> Registration {
        Registration { address: a.into(), device: "cpu".into(), throughput: 0.0 }
    }

    #[test]
    fn a_run_not_fully_registered_in_time_is_aborted_naming_the_missing_nodes() {
        let t = Instant::now();
        let mut s = State::new(4, 2, t, Membership::of_nodes(4));
        s.register(1, 2, reg("b:2"), t).unwrap();
        s.register(3, 2, reg("d:4"), t).unwrap();
        let limit = Duration::from_secs(60);
        assert!(!s.check_registration(t + limit, limit), "not past the limit yet");
        assert_eq!(s.state, RunState::Registering);
        assert!(s.check_registration(t + limit + Duration::from_millis(1), limit));
        assert_eq!(
            s.state,
            RunState::Aborted(
                "node(s) 0, 2 did not register within 60 s (registered: 1, 3); see cluster.register_timeout_s"
                    .into()
            )
        );
        assert!(s.is_over());
        // A run that started is not concerned.
        let mut s = State::new(1, 2, t, Membership::of_nodes(1));
        s.register(0, 2, reg("a:1"), t).unwrap();
        assert!(!s.check_registration(t + 2 * limit, limit));
        assert_eq!(s.state, RunState::Running);
    }

    #[test]
    fn registration_refuses_unknown_ids_wrong_dims_and_duplicates() {
        let t = Instant::now();
        let mut s = State::new(2, 10, t, Membership::of_nodes(2));
        assert_eq!(
            s.register(2, 10, reg("a"), t).unwrap_err().to_string(),
            "node id 2 is not in the topology, which has nodes 0..2"
        );
        assert_eq!(
            s.register(0, 9, reg("a"), t).unwrap_err().to_string(),
            "node 0 has a model of 9 parameters, the run's has 10"
        );
        assert_eq!(s.register(0, 10, reg("a:1"), t), Ok(false));
        assert_eq!(
            s.register(0, 10, reg("b"), t).unwrap_err().to_string(),
            "node 0 is already registered (at a:1)"
        );
        assert_eq!(s.register(1, 10, reg("b:2"), t), Ok(true));
        assert_eq!(s.state, RunState::Running);
        assert!(s.register(1, 10, reg("c"), t).is_err());
    }

    #[test]
    fn reports_complete_when_every_node_sent_one() {
        let t = Instant::now();
        let mut s = State::new(2, 1, t, Membership::of_nodes(2));
        let sent = Traffic { payload_bytes: 1, framed_bytes: 2 };
        let r = |v| Report { x: vec![v], sent, elapsed: 0.5, loss: None, links: BTreeMap::new() };
        assert_eq!(s.report(1, 10, r(1.0)), Ok(None));
        assert_eq!(
            s.report(0, 10, r(0.0)).unwrap().unwrap().iter().map(|r| r.x[0]).collect::<Vec<_>>(),
            vec![0.0, 1.0]
        );
        assert!(
            s.report(0, 20, Report { x: vec![], ..r(0.0) })
                .unwrap_err()
                .to_string()
                .contains("reported 0 parameters")
        );
    }

    #[test]
    fn a_failure_aborts_silence_loses_the_node_and_completion_needs_every_live_member() {
        let t = Instant::now();
        let mut s = State::new(3, 1, t, Membership::of_nodes(3));
        for (i, a) in ["a:1", "b:2", "c:3"].iter().enumerate() {
            s.register(i, 1, reg(a), t).unwrap();
        }
        s.finish(0, None, t);
        assert_eq!(s.state, RunState::Running);
        assert_eq!(s.silent_member(t + Duration::from_secs(5), Duration::from_secs(10)), None);
        let (id, why) = s.silent_member(t + Duration::from_secs(11), Duration::from_secs(10)).unwrap();
        assert_eq!((id, why.as_str()), (1, "node 1 (b:2) sent no heartbeat for 11.0 s, at iteration 0"));
        assert!(s.lose(1));
        assert!(!s.lose(1), "lost once");
        assert_eq!(s.nodes[1].progress, Progress::Away(Away::Lost));
        assert!(s.freezing(0));
        // Node 1 is gone: node 2 finishing completes the run (a lost node's late error does not
        // abort it).
        s.finish(1, Some("the run went on without this node".into()), t);
        assert_eq!(s.state, RunState::Running);
        s.finish(2, None, t);
        assert_eq!(s.state, RunState::Completed);
        let mut s = State::new(2, 1, t, Membership::of_nodes(2));
        s.register(0, 1, reg("a:1"), t).unwrap();
        s.register(1, 1, reg("b:2"), t).unwrap();
        s.finish(1, Some("timed out waiting for node 0".into()), t);
        assert_eq!(s.heartbeat(0, 3, t), Some("node 1 (b:2) failed: timed out waiting for node 0".into()));
        let mut s = State::new(1, 1, t, Membership::of_nodes(1));
        s.register(0, 1, reg("a:1"), t).unwrap();
        s.finish(0, None, t);
        assert_eq!(s.state, RunState::Completed);
    }
}
