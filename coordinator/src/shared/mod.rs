//! [`Shared`]: the coordinator's state and what every call does to it, independent of gRPC (the
//! service in `service` only translates messages and errors).
//!
//! # Layout
//! - this file: registration, heartbeats, reports, finishes, status.
//! - `membership`: syncs, losses, leaves, checkpoints, and forming epochs.

mod membership;

use std::sync::{Arc, Mutex, MutexGuard};

use dprox_config::schema::Balance;
use dprox_core::BatchSize;
use dprox_prepare::Prepared;
use dprox_transport::pb;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::state::{Membership, Registration, Report, RunState, State};
use crate::status::{RunInfo, Status, Traffic};

pub(crate) use membership::CoordinatorCheckpoint;

/// A complete evaluation iteration (every live member's report), for the evaluator.
pub(crate) struct Complete {
    pub iteration: u64,
    pub reports: Vec<Report>,
    /// Bytes sent in the lives of nodes that went before this iteration, (payload, framed).
    pub retired: (u64, u64),
    /// One of the evaluator's queue slots, held until the row is recorded (none for rows that
    /// complete when a node goes).
    pub _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Complete rows that may wait for the evaluator at once: a report completing one more waits
/// (and with it the reporting node), so the queue's memory stays bounded.
pub const MAX_QUEUED_ROWS: usize = 4;

/// What the evaluator (the owner of the run's record) is given, in order.
pub(crate) enum Job {
    /// A metrics row to compute.
    Row(Complete),
    /// A membership change, and the live nodes after it.
    Event(dprox_eval::MembershipEvent, usize),
    /// Every live member wrote its checkpoint of an iteration: write the coordinator's.
    Checkpoint(Box<CoordinatorCheckpoint>),
}

/// Why a call was refused; the service maps each to a gRPC status code.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Missing or wrong credentials.
    Unauthenticated(String),
    /// The call does not fit the run (unknown id, wrong size, too late).
    Precondition(String),
    /// The message is malformed.
    Invalid(String),
    /// The run was given up meanwhile.
    Aborted(String),
    /// The coordinator is shutting down.
    Unavailable(String),
    /// A limit was reached.
    Exhausted(String),
}

/// What the coordinator's calls, its evaluator, watchdog and status page share.
pub(crate) struct Shared {
    /// The bookkeeping (also written by the evaluator, which records the curve points in it).
    pub state: Arc<Mutex<State>>,
    /// The run's fixed facts and links, for the status page.
    pub info: RunInfo,
    pub edges: Vec<(usize, usize)>,
    pub run: Arc<Prepared>,
    pub run_id: String,
    pub token: Vec<u8>,
    pub secret: String,
    /// Flips to true when every node has registered.
    pub started: watch::Sender<bool>,
    /// Flips when the run is over (completed or aborted).
    pub over: watch::Sender<bool>,
    /// Slots of the evaluator's queue of complete rows ([`MAX_QUEUED_ROWS`]).
    row_slots: Arc<tokio::sync::Semaphore>,
    /// Jobs for the evaluator; taken (closed) when the run is over.
    jobs: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    /// The index of the latest epoch formed.
    pub epochs: watch::Sender<u64>,
    /// The iteration a resumed run starts at.
    pub resume_at: Option<u64>,
    /// The latest metrics row as CSV (the `Status` call's `last_row`).
    pub last_row: Mutex<String>,
    /// The average model of the latest row (what `model.safetensors` keeps).
    pub xbar: Mutex<Vec<f32>>,
    /// When every node had registered.
    pub start: Mutex<Option<Instant>>,
    /// The iteration of the latest coordinator checkpoint on disk (0: none yet; u64::MAX: the
    /// coordinator writes none, having no run folder).
    pub checkpoint_written: std::sync::atomic::AtomicU64,
}

impl Shared {
    /// The shared state of a run of `run` with `membership` (a resumed run's, from iteration
    /// `resume_at`); the receiver gets the evaluator's jobs.
    pub fn new(
        run: Arc<Prepared>,
        secret: &str,
        membership: Membership,
        resume_at: Option<u64>,
    ) -> (Arc<Shared>, mpsc::UnboundedReceiver<Job>) {
        // The token authenticates gossip; the run id is shown (status page, logs): drawn apart, so
        // that it reveals nothing of the token.
        let (mut token, mut tag) = (vec![0u8; 16], [0u8; 4]);
        getrandom::fill(&mut token).expect("the OS random generator is available");
        getrandom::fill(&mut tag).expect("the OS random generator is available");
        let run_id = format!("{}-{}", run.name(), tag.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let (tx, rx) = mpsc::unbounded_channel();
        let epoch = membership.epoch.index;
        let shared = Shared {
            state: Arc::new(Mutex::new(
                State::new(run.n(), run.dim(), Instant::now(), membership)
                    .with_schedule(run.config().run.eval_every, run.config().run.iterations),
            )),
            row_slots: Arc::new(tokio::sync::Semaphore::new(MAX_QUEUED_ROWS)),
            info: RunInfo::of(&run, run_id.clone()),
            edges: crate::status::edges_of(&run),
            run,
            run_id,
            token,
            secret: secret.to_string(),
            started: watch::channel(false).0,
            over: watch::channel(false).0,
            jobs: Mutex::new(Some(tx)),
            epochs: watch::channel(epoch).0,
            resume_at,
            last_row: Mutex::new(String::new()),
            xbar: Mutex::new(Vec::new()),
            start: Mutex::new(None),
            checkpoint_written: std::sync::atomic::AtomicU64::new(resume_at.unwrap_or(0)),
        };
        (Arc::new(shared), rx)
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("not poisoned")
    }

    /// Flips `over` when the run is over.
    pub fn note_over(&self) {
        // Release the state lock before touching the watch: a receiver holding the watch's read
        // guard may be waiting for the state lock.
        let over = self.state().is_over();
        if over {
            self.over.send_replace(true);
        }
    }

    /// Closes the evaluator's channel: no more iterations will complete.
    pub fn close_evaluation(&self) {
        drop(self.jobs.lock().expect("not poisoned").take());
    }

    /// Hands `job` to the evaluator (dropped once the run is over).
    pub fn job(&self, job: Job) {
        if let Some(tx) = self.jobs.lock().expect("not poisoned").as_ref() {
            let _ = tx.send(job);
        }
    }

    /// The run's status now (what `GET /api/status` serves).
    pub fn status(&self) -> Status {
        crate::status::compute(&self.info, &self.edges, &self.state(), Instant::now())
    }

    /// Registers a node; the reply comes when every node is in (the start signal), or, when the
    /// run is given up meanwhile, the reason.
    pub async fn register(&self, r: pb::RegisterRequest) -> Result<pb::RegisterReply, Refusal> {
        if !self.secret.is_empty() && r.secret != self.secret {
            return Err(Refusal::Unauthenticated(format!("node {}: wrong or missing cluster secret", r.id)));
        }
        let id = r.id as usize;
        let reg = Registration { address: r.address.clone(), device: r.device, throughput: r.throughput };
        if r.join {
            return self.register_join(id, r.dim as usize, reg).await;
        }
        let all = self
            .state()
            .register(id, r.dim as usize, reg, Instant::now())
            .map_err(|e| Refusal::Precondition(e.to_string()))?;
        tracing::info!(node = id, address = %r.address, "registered");
        if all {
            self.balance_by_throughput();
            *self.start.lock().expect("not poisoned") = Some(Instant::now());
            self.started.send_replace(true);
            tracing::info!("all {} nodes registered: run {} starts", self.run.n(), self.run_id);
        }
        let (mut started, mut over) = (self.started.subscribe(), self.over.subscribe());
        tokio::select! {
            r = async { started.wait_for(|&v| v).await.map(drop) } => {
                r.map_err(|_| Refusal::Unavailable("the coordinator is shutting down".into()))?;
            }
            _ = async { over.wait_for(|&v| v).await.map(drop) } => {
                let why = match &self.state().state {
                    RunState::Aborted(why) => why.clone(),
                    _ => "the run is over".to_string(),
                };
                return Err(Refusal::Aborted(why));
            }
        }
        let info = self
            .epoch_of(id)
            .ok_or_else(|| Refusal::Precondition(format!("node {id} is not a member of the run's epoch")))?;
        Ok(self.reply(id, info, self.resume_at))
    }

    /// `balance = "throughput"`: once every node has registered, sizes the minibatches by the
    /// gradient throughputs they measured (kept for the rest of the run, checkpoints included;
    /// a resumed run keeps the sizes it had).
    fn balance_by_throughput(&self) {
        if self.run.config().run.balance != Balance::Throughput {
            return;
        }
        let mut st = self.state();
        if !st.membership.batches.is_empty() {
            return;
        }
        let measured: Vec<f64> =
            st.nodes.iter().map(|b| b.registration.as_ref().map_or(0.0, |r| r.throughput)).collect();
        let weights = if measured.iter().all(|w| w.is_finite() && *w > 0.0) {
            measured.clone()
        } else {
            tracing::warn!(
                ?measured,
                "a node reported no usable throughput: balancing by [[nodes]] speed instead"
            );
            (0..self.run.n()).map(|j| self.run.speed(j)).collect()
        };
        let batches = self.run.balanced_batches(&weights);
        st.membership.batches = batches
            .iter()
            .map(|b| match b {
                BatchSize::Samples(b) => *b as u64,
                BatchSize::Full => 0,
            })
            .collect();
        let shown: Vec<String> = (0..self.run.n())
            .map(|j| format!("node {j}: {} ({:.0} samples/s)", st.membership.batches[j], measured[j]))
            .collect();
        tracing::info!("minibatches balanced by measured throughput: {}", shown.join(", "));
    }

    /// The registration reply carrying the epoch `info` (starting at `at`, else its start).
    fn reply(&self, id: usize, info: pb::EpochInfo, at: Option<u64>) -> pb::RegisterReply {
        let batch_size = self.state().membership.batches.get(id).copied().unwrap_or(0);
        pb::RegisterReply {
            batch_size,
            run_id: self.run_id.clone(),
            token: self.token.clone().into(),
            iteration: at.unwrap_or(info.start),
            epoch: info.index,
            peers: info.peers,
            row: info.row,
        }
    }

    /// The current epoch as node `id` sees it (its neighbours' addresses, its row), if it is a
    /// member.
    pub fn epoch_of(&self, id: usize) -> Option<pb::EpochInfo> {
        let st = self.state();
        let e = &st.membership.epoch;
        let row = e.row(id)?.iter().map(|&(j, w)| pb::Weight { peer: j as u32, w }).collect();
        let peers = e
            .peers(id)
            .into_iter()
            .map(|j| pb::Peer { id: j as u32, address: st.address(j).to_string() })
            .collect();
        Some(pb::EpochInfo { index: e.index, start: e.start, peers, row })
    }

    /// A heartbeat; the reply carries the abort reason, or a freeze while an epoch is formed.
    pub fn heartbeat(&self, r: pb::HeartbeatRequest) -> pb::HeartbeatReply {
        let mut st = self.state();
        let abort = st.heartbeat(r.id as usize, r.iteration, Instant::now());
        pb::HeartbeatReply { abort: abort.unwrap_or_default(), freeze: st.freezing(r.epoch) }
    }

    /// A node's iterate at an evaluation point; when it completes the iteration, the evaluator
    /// gets every node's.
    pub async fn report(&self, r: pb::ReportRequest) -> Result<(), Refusal> {
        if !r.x.len().is_multiple_of(4) {
            return Err(Refusal::Invalid(format!("node {}: x is not a whole number of f32", r.id)));
        }
        let x = r.x.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let traffic = |payload_bytes, framed_bytes| Traffic { payload_bytes, framed_bytes };
        let report = Report {
            x,
            sent: traffic(r.payload_bytes, r.framed_bytes),
            elapsed: r.elapsed_s,
            loss: r.loss,
            links: r
                .links
                .iter()
                .map(|l| (l.peer as usize, traffic(l.payload_bytes, l.framed_bytes)))
                .collect(),
        };
        let (id, iteration) = (r.id as usize, r.iteration);
        // A queue slot first, outside the lock: while the evaluator is behind, reports wait here
        // (the queue's memory stays bounded). A report that completes a row hands it over under
        // the lock, so rows reach the evaluator in the order they were completed.
        let slot = self.row_slots.clone().acquire_owned().await.ok();
        let mut state = self.state();
        let done = state.report(id, iteration, report).map_err(|e| {
            tracing::warn!(node = id, iteration, "report refused: {e}");
            match e {
                crate::state::ReportError::TooFarAhead { .. } => Refusal::Exhausted(e.to_string()),
                _ => Refusal::Invalid(e.to_string()),
            }
        })?;
        // A report is a sign of life too.
        state.heartbeat(id, iteration, Instant::now());
        if let Some(reports) = done {
            let retired = state.membership.retired_at(iteration);
            self.job(Job::Row(Complete { iteration, reports, retired, _slot: slot }));
        }
        Ok(())
    }

    /// A node finished, or failed with an error. A finish without an error from a node that did
    /// not report the run's last iteration is refused: it cannot end the run.
    pub fn finish(&self, r: pb::FinishRequest) -> Result<(), Refusal> {
        let error = (!r.error.is_empty()).then_some(r.error);
        if error.is_none() {
            self.state().check_finish(r.id as usize).map_err(|why| {
                tracing::warn!(node = r.id, "finish refused: {why}");
                Refusal::Precondition(why)
            })?;
        }
        match &error {
            Some(e) => tracing::error!(node = r.id, "failed: {e}"),
            None => tracing::info!(node = r.id, iteration = r.iteration, "finished"),
        }
        self.state().finish(r.id as usize, error, Instant::now());
        self.note_over();
        Ok(())
    }

    /// The run's progress, for `dprox launch` (the `Status` call).
    pub fn progress(&self) -> pb::StatusReply {
        let status = self.status();
        let (state, error) = match &self.state().state {
            RunState::Registering => ("registering", String::new()),
            RunState::Running => ("running", String::new()),
            RunState::Completed => ("completed", String::new()),
            RunState::Aborted(e) => ("aborted", e.clone()),
        };
        let nodes = status
            .nodes
            .iter()
            .map(|n| pb::NodeStatus {
                id: n.id as u32,
                address: n.address.clone().unwrap_or_default(),
                device: n.device.clone().unwrap_or_default(),
                state: serde_json::to_value(n.state)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                iteration: n.iteration,
                payload_bytes: n.sent.payload_bytes,
                framed_bytes: n.sent.framed_bytes,
                seconds_since_heartbeat: n.heartbeat_age_s.unwrap_or(0.0),
            })
            .collect();
        pb::StatusReply {
            run_id: self.run_id.clone(),
            state: state.into(),
            iterations: self.run.config().run.iterations,
            nodes,
            last_row: self.last_row.lock().expect("not poisoned").clone(),
            error,
        }
    }
}
