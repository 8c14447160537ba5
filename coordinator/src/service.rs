//! The Coordinator gRPC service over [`State`].

use std::sync::{Arc, Mutex};
use std::time::Instant;

use dprox_config::Prepared;
use dprox_transport::pb;
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};

use crate::state::{Registration, Report, RunState, State};
use crate::status::{RunInfo, Status as RunStatus, Traffic};

/// A complete evaluation iteration, for the evaluator task.
pub(crate) struct Complete {
    pub iteration: u64,
    pub reports: Vec<Report>,
}

pub(crate) struct Shared {
    /// Shared with the evaluator task, which records the curve points in it.
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
    /// Complete iterations for the evaluator; taken (closed) when the run is over.
    pub complete: Mutex<Option<mpsc::UnboundedSender<Complete>>>,
    pub last_row: Arc<Mutex<String>>,
    pub start: Arc<Mutex<Option<Instant>>>,
}

pub(crate) struct CoordinatorService(pub Arc<Shared>);

impl Shared {
    pub fn note_over(&self) {
        // Release the state lock before touching the watch: a receiver holding the watch's read
        // guard may be waiting for the state lock.
        let over = self.state.lock().unwrap().is_over();
        if over {
            self.over.send_replace(true);
        }
    }

    /// The run's status now (what `GET /api/status` serves).
    pub fn status(&self) -> RunStatus {
        let st = self.state.lock().unwrap();
        crate::status::compute(&self.info, &self.edges, &st, Instant::now())
    }
}

#[tonic::async_trait]
impl pb::coordinator_server::Coordinator for CoordinatorService {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterReply>, Status> {
        let r = req.into_inner();
        let s = &self.0;
        if !s.secret.is_empty() && r.secret != s.secret {
            return Err(Status::unauthenticated(format!("node {}: wrong or missing cluster secret", r.id)));
        }
        let id = r.id as usize;
        let reg =
            Registration { address: r.address.clone(), device: r.device.clone(), throughput: r.throughput };
        let all = s
            .state
            .lock()
            .unwrap()
            .register(id, r.dim as usize, reg, Instant::now())
            .map_err(Status::failed_precondition)?;
        tracing::info!(node = id, address = %r.address, "registered");
        if all {
            *s.start.lock().unwrap() = Some(Instant::now());
            s.started.send_replace(true);
            tracing::info!("all {} nodes registered: run {} starts", s.run.n(), s.run_id);
        }
        // Hold the reply until every node is in: the reply is the start signal. A run given up
        // meanwhile (not every node registered in time) answers with its reason instead.
        let (mut started, mut over) = (s.started.subscribe(), s.over.subscribe());
        tokio::select! {
            r = async { started.wait_for(|&v| v).await.map(drop) } => {
                r.map_err(|_| Status::unavailable("the coordinator is shutting down"))?;
            }
            _ = async { over.wait_for(|&v| v).await.map(drop) } => {
                let why = match &s.state.lock().unwrap().state {
                    RunState::Aborted(why) => why.clone(),
                    _ => "the run is over".to_string(),
                };
                return Err(Status::aborted(why));
            }
        }
        let st = s.state.lock().unwrap();
        let cfg = s.run.node_config(id);
        let peers = s
            .run
            .peers(id)
            .into_iter()
            .map(|j| pb::Peer {
                id: j as u32,
                address: st.registered[j].as_ref().map(|r| r.address.clone()).unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(pb::RegisterReply {
            run_id: s.run_id.clone(),
            token: s.token.clone().into(),
            peers,
            row: cfg.row.iter().map(|&(j, w)| pb::Weight { peer: j as u32, w }).collect(),
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatReply>, Status> {
        let r = req.into_inner();
        let abort = self.0.state.lock().unwrap().heartbeat(r.id as usize, r.iteration, Instant::now());
        Ok(Response::new(pb::HeartbeatReply { abort: abort.unwrap_or_default() }))
    }

    async fn report(&self, req: Request<pb::ReportRequest>) -> Result<Response<pb::ReportReply>, Status> {
        let r = req.into_inner();
        if !r.x.len().is_multiple_of(4) {
            return Err(Status::invalid_argument(format!("node {}: x is not a whole number of f32", r.id)));
        }
        let x = r.x.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let links = r
            .links
            .iter()
            .map(|l| {
                let t = Traffic { payload_bytes: l.payload_bytes, framed_bytes: l.framed_bytes };
                (l.peer as usize, t)
            })
            .collect();
        let report = Report {
            x,
            payload: r.payload_bytes,
            framed: r.framed_bytes,
            elapsed: r.elapsed_s,
            loss: r.loss,
            links,
        };
        let done = {
            let mut state = self.0.state.lock().unwrap();
            let done = state.report(r.id as usize, r.iteration, report).map_err(Status::invalid_argument)?;
            // A report is a sign of life too.
            state.heartbeat(r.id as usize, r.iteration, std::time::Instant::now());
            done
        };
        if let Some(reports) = done
            && let Some(tx) = self.0.complete.lock().unwrap().as_ref()
        {
            let _ = tx.send(Complete { iteration: r.iteration, reports });
        }
        Ok(Response::new(pb::ReportReply {}))
    }

    async fn finish(&self, req: Request<pb::FinishRequest>) -> Result<Response<pb::FinishReply>, Status> {
        let r = req.into_inner();
        let error = (!r.error.is_empty()).then_some(r.error);
        if let Some(e) = &error {
            tracing::error!(node = r.id, "failed: {e}");
        } else {
            tracing::info!(node = r.id, iteration = r.iteration, "finished");
        }
        self.0.state.lock().unwrap().finish(r.id as usize, error, Instant::now());
        self.0.note_over();
        Ok(Response::new(pb::FinishReply {}))
    }

    async fn status(&self, _: Request<pb::StatusRequest>) -> Result<Response<pb::StatusReply>, Status> {
        let s = &self.0;
        let st = s.state.lock().unwrap();
        let now = Instant::now();
        let nodes = (0..s.run.n())
            .map(|i| {
                let reg = st.registered[i].as_ref();
                pb::NodeStatus {
                    id: i as u32,
                    address: reg.map(|r| r.address.clone()).unwrap_or_default(),
                    device: reg.map(|r| r.device.clone()).unwrap_or_default(),
                    state: match (&st.finished[i], reg) {
                        (Some(None), _) => "finished".into(),
                        (Some(Some(_)), _) => "failed".into(),
                        (None, None) => "unregistered".into(),
                        (None, Some(_)) => "running".into(),
                    },
                    iteration: st.heartbeat[i].1,
                    payload_bytes: st.bytes[i].0,
                    framed_bytes: st.bytes[i].1,
                    seconds_since_heartbeat: now.duration_since(st.heartbeat[i].0).as_secs_f64(),
                }
            })
            .collect();
        let (state, error) = match &st.state {
            RunState::Registering => ("registering", String::new()),
            RunState::Running => ("running", String::new()),
            RunState::Completed => ("completed", String::new()),
            RunState::Aborted(e) => ("aborted", e.clone()),
        };
        Ok(Response::new(pb::StatusReply {
            run_id: s.run_id.clone(),
            state: state.into(),
            iterations: s.run.config.run.iterations,
            nodes,
            last_row: s.last_row.lock().unwrap().clone(),
            error,
        }))
    }
}
