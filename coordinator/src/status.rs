//! The run's status as `GET /api/status` serves it and `dprox status` reads it: a pure function of
//! the coordinator's [`State`], the run's fixed facts and the current instant.
//!
//! # Layout
//! - [`Status`] and its parts: the JSON schema. The serde field names are the wire format; the
//!   status page (`web/index.html`) and `dprox status` read them, so rename nothing.
//! - [`compute`]: state + facts + now -> [`Status`]. No I/O, no clock: unit-tested below.
//! - [`RunInfo::of`] and [`edges_of`]: the fixed facts, taken once from the prepared run.
//!
//! ```
//! use tokio::time::Instant;
//! use dprox_coordinator::state::{Membership, State};
//! use dprox_coordinator::status::{compute, Phase, RunInfo};
//!
//! let info = RunInfo {
//!     name: "demo".into(),
//!     id: "demo-00ff00ff".into(),
//!     algorithm: "cdproxsgt".into(),
//!     topology: "ring".into(),
//!     iterations: 100,
//!     eval_every: 10,
//!     heartbeat_s: 1.0,
//! };
//! let t = Instant::now();
//! let state = State::new(3, 10, t, Membership::of_nodes(3));
//! let s = compute(&info, &[(0, 1), (0, 2), (1, 2)], &state, t);
//! assert_eq!(s.phase, Phase::Waiting);
//! assert_eq!((s.nodes.len(), s.edges.len(), s.points.len()), (3, 3, 0));
//! ```

use std::time::Duration;

use tokio::time::Instant;

use dprox_prepare::Prepared;
use serde::{Deserialize, Deserializer, Serialize};

use crate::state::{Away, Progress, RunState, State};

/// A running node whose last heartbeat is older than this many heartbeat periods shows as
/// `silent` (the coordinator aborts the run at 10: this is the early warning).
pub const SILENT_AFTER_HEARTBEATS: f64 = 3.0;

/// Everything `GET /api/status` returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The run's fixed facts.
    pub run: RunInfo,
    /// Where the run is.
    pub phase: Phase,
    /// Why the run was aborted (only with [`Phase::Aborted`]).
    pub reason: Option<String>,
    /// Seconds since the start signal (frozen when the run ends); absent before it.
    pub elapsed_s: Option<f64>,
    /// Every node of the topology, ascending by id, registered or not.
    pub nodes: Vec<NodeStatus>,
    /// Every link (a < b), ascending, with the bytes sent each way.
    pub edges: Vec<EdgeStatus>,
    /// The evaluated points so far, ascending by iteration.
    pub points: Vec<CurvePoint>,
    /// The membership epoch (0 until the first change).
    #[serde(default)]
    pub epoch: u64,
    /// The nodes taking part in it.
    #[serde(default)]
    pub live_nodes: usize,
    /// The membership changes so far (the latest [`MAX_EVENTS`]), oldest first.
    #[serde(default)]
    pub events: Vec<dprox_eval::MembershipEvent>,
}

/// The most membership changes the status carries (a run with more churn keeps the latest).
pub const MAX_EVENTS: usize = 100;

/// The fixed facts of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The run's name (config `run.name()`, else the config file's stem).
    pub name: String,
    /// This run's id: its name and 8 hex digits of its token.
    pub id: String,
    /// The algorithm (`dproxsgt`, `cdproxsgt`, ...).
    pub algorithm: String,
    /// The topology kind (`ring`, `torus`, ...).
    pub topology: String,
    /// The iterations every node runs.
    pub iterations: u64,
    /// Iterations between evaluation points.
    pub eval_every: u64,
    /// Seconds between a node's heartbeats.
    pub heartbeat_s: f64,
}

/// Where the run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for nodes to register.
    Waiting,
    /// Every node registered; training.
    Running,
    /// Every node completed its iterations.
    Done,
    /// A node failed or went silent: see [`Status::reason`].
    Aborted,
}

/// Where one node is, as far as the coordinator knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Not registered yet.
    Unregistered,
    /// Registered; waiting for the others.
    Registered,
    /// Training, with recent heartbeats.
    Running,
    /// Training, but no heartbeat for [`SILENT_AFTER_HEARTBEATS`] periods.
    Silent,
    /// Completed its iterations.
    Done,
    /// Stopped with an error: see [`NodeStatus::error`].
    Failed,
    /// Left the run as scheduled (it may rejoin).
    Left,
    /// Killed as scheduled (it may rejoin).
    Crashed,
    /// Lost: unreachable, or silent longer than `cluster.timeout_s` (it may rejoin).
    Lost,
    /// Registered to join; admitted at the next epoch.
    Joining,
}

/// Bytes sent, as the nodes count them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    /// Encoded gossip payload (what `bytes_sent` of metrics.csv counts).
    pub payload_bytes: u64,
    /// Payload plus protobuf and gRPC framing, once acknowledged.
    pub framed_bytes: u64,
}

/// One node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Its id.
    pub id: usize,
    /// Its gossip address, once registered.
    pub address: Option<String>,
    /// Its compute device, once registered.
    pub device: Option<String>,
    /// Where it is.
    pub state: NodeState,
    /// The latest iteration it reported (heartbeat or evaluation report).
    pub iteration: u64,
    /// Seconds since its last heartbeat; absent before it registered.
    pub heartbeat_age_s: Option<f64>,
    /// The minibatch loss of its latest reported gradient, if any.
    pub loss: Option<f64>,
    /// Bytes it sent to all its neighbours, as of its latest report.
    pub sent: Traffic,
    /// Its error, when it failed.
    pub error: Option<String>,
}

/// One link and what went over it each way, as of the two ends' latest reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EdgeStatus {
    /// The lower node id.
    pub a: usize,
    /// The higher node id.
    pub b: usize,
    /// Sent by `a` to `b`.
    pub a_to_b: Traffic,
    /// Sent by `b` to `a`.
    pub b_to_a: Traffic,
}

/// One evaluated point of the run's curve (a row of metrics.csv, abridged).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// The iteration.
    pub iteration: u64,
    /// Wall-clock seconds since the start signal when it was evaluated.
    pub time_s: f64,
    /// phi(xbar). Serialised as `null` when not finite (JSON has no NaN), read back as NaN.
    #[serde(deserialize_with = "nan_if_null")]
    pub objective: f64,
    /// (1/n) sum_i ||x_i - xbar||^2, `null` when not finite.
    #[serde(deserialize_with = "nan_if_null")]
    pub consensus_error: f64,
    /// Test accuracy of xbar, when the run has a test set.
    pub test_accuracy: Option<f64>,
    /// Payload bytes sent by all nodes up to this iteration.
    pub bytes_sent: u64,
}

fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

impl RunInfo {
    /// The facts of `run`, whose id is `id`.
    pub fn of(run: &Prepared, id: String) -> RunInfo {
        let topology = serde_json::to_value(run.config().topology.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        RunInfo {
            name: run.name().to_string(),
            id,
            algorithm: run.config().run.algorithm.to_string(),
            topology,
            iterations: run.config().run.iterations,
            eval_every: run.config().run.eval_every,
            heartbeat_s: run.config().cluster.heartbeat_s,
        }
    }
}

/// The links of `run` as (a, b) with a < b, ascending: the pairs of nodes that exchange messages
/// (the graph's edges; every pair for all-reduce).
pub fn edges_of(run: &Prepared) -> Vec<(usize, usize)> {
    (0..run.n())
        .flat_map(|i| run.peers(i).into_iter().filter(move |&j| j > i).map(move |j| (i, j)))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The status of the run described by `info`, whose links are `edges`, in `state`, at `now`.
pub fn compute(info: &RunInfo, edges: &[(usize, usize)], state: &State, now: Instant) -> Status {
    let silent_after = Duration::from_secs_f64(info.heartbeat_s * SILENT_AFTER_HEARTBEATS);
    let nodes = state
        .nodes
        .iter()
        .enumerate()
        .map(|(i, book)| {
            let reg = book.registration.as_ref();
            let age = now.saturating_duration_since(book.heartbeat.at);
            let node_state = match (&book.progress, reg) {
                (Progress::Finished, _) => NodeState::Done,
                (Progress::Failed(_), _) => NodeState::Failed,
                (Progress::Away(_), _) if state.membership.joiners.contains(&i) => NodeState::Joining,
                (Progress::Away(Away::Left), _) => NodeState::Left,
                (Progress::Away(Away::Crashed), _) => NodeState::Crashed,
                (Progress::Away(Away::Lost), _) => NodeState::Lost,
                (Progress::Running, None) => NodeState::Unregistered,
                (Progress::Running, Some(_)) if state.state == RunState::Registering => NodeState::Registered,
                (Progress::Running, Some(_)) if age > silent_after => NodeState::Silent,
                (Progress::Running, Some(_)) => NodeState::Running,
            };
            NodeStatus {
                id: i,
                address: reg.map(|r| r.address.clone()),
                device: reg.map(|r| r.device.clone()),
                state: node_state,
                iteration: book.heartbeat.iteration,
                heartbeat_age_s: reg.map(|_| age.as_secs_f64()),
                loss: book.loss,
                sent: book.sent,
                error: match &book.progress {
                    Progress::Failed(e) => Some(e.clone()),
                    _ => None,
                },
            }
        })
        .collect();
    let sent = |from: usize, to: usize| {
        state.nodes.get(from).and_then(|b| b.links.get(&to)).copied().unwrap_or_default()
    };
    let edges =
        edges.iter().map(|&(a, b)| EdgeStatus { a, b, a_to_b: sent(a, b), b_to_a: sent(b, a) }).collect();
    let (phase, reason) = match &state.state {
        RunState::Registering => (Phase::Waiting, None),
        RunState::Running => (Phase::Running, None),
        RunState::Completed => (Phase::Done, None),
        RunState::Aborted(why) => (Phase::Aborted, Some(why.clone())),
    };
    let elapsed_s =
        state.started.map(|t| state.ended.unwrap_or(now).saturating_duration_since(t).as_secs_f64());
    Status {
        run: info.clone(),
        phase,
        reason,
        elapsed_s,
        nodes,
        edges,
        points: state.curve.clone(),
        epoch: state.membership.epoch.index,
        live_nodes: state.membership.live.len(),
        events: state.events.iter().cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Registration, Report};

    fn info() -> RunInfo {
        RunInfo {
            name: "t".into(),
            id: "t-01020304".into(),
            algorithm: "dproxsgt".into(),
            topology: "ring".into(),
            iterations: 20,
            eval_every: 10,
            heartbeat_s: 1.0,
        }
    }

    const RING3: [(usize, usize); 3] = [(0, 1), (0, 2), (1, 2)];

    fn reg(a: &str) -> Registration {
        Registration { address: a.into(), device: "cpu".into(), throughput: 0.0 }
    }

    fn states(s: &Status) -> Vec<NodeState> {
        s.nodes.iter().map(|n| n.state).collect()
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn report(iteration: u64, loss: Option<f64>, links: &[(usize, u64, u64)]) -> Report {
        Report {
            x: vec![0.0],
            sent: Traffic {
                payload_bytes: links.iter().map(|l| l.1).sum(),
                framed_bytes: links.iter().map(|l| l.2).sum(),
            },
            elapsed: iteration as f64,
            loss,
            links: links
                .iter()
                .map(|&(p, payload_bytes, framed_bytes)| (p, Traffic { payload_bytes, framed_bytes }))
                .collect(),
        }
    }

    #[test]
    fn nodes_go_from_unregistered_to_running_to_silent_to_done() {
        use NodeState::*;
        let t = Instant::now();
        let mut s = State::new(3, 1, t, crate::state::Membership::of_nodes(3));
        let st = compute(&info(), &RING3, &s, t);
        assert_eq!((st.phase, st.elapsed_s), (Phase::Waiting, None));
        assert_eq!(states(&st), [Unregistered; 3]);
        assert_eq!(st.nodes[0].heartbeat_age_s, None);
        assert_eq!(st.nodes[0].address, None);

        s.register(1, 1, reg("h:1"), t).unwrap();
        let st = compute(&info(), &RING3, &s, t + secs(0.5));
        assert_eq!(states(&st), [Unregistered, Registered, Unregistered]);
        assert_eq!(st.nodes[1].address.as_deref(), Some("h:1"));
        assert_eq!(st.nodes[1].heartbeat_age_s, Some(0.5));

        s.register(0, 1, reg("h:0"), t + secs(1.0)).unwrap();
        s.register(2, 1, reg("h:2"), t + secs(2.0)).unwrap();
        s.heartbeat(0, 7, t + secs(4.0));
        s.heartbeat(1, 6, t + secs(4.0));
        // Node 2 has been quiet since the start, 3.5 s > 3 heartbeats of 1 s.
        let st = compute(&info(), &RING3, &s, t + secs(5.5));
        assert_eq!((st.phase, st.elapsed_s), (Phase::Running, Some(3.5)));
        assert_eq!(states(&st), [Running, Running, Silent]);
        assert_eq!(st.nodes.iter().map(|n| n.iteration).collect::<Vec<_>>(), [7, 6, 0]);
        assert_eq!(st.nodes[0].heartbeat_age_s, Some(1.5));

        s.heartbeat(2, 9, t + secs(6.0));
        // A late heartbeat never moves a node back: the evaluation report said 10 already.
        s.report(1, 10, report(10, Some(0.25), &[])).unwrap();
        s.heartbeat(1, 9, t + secs(6.0));
        let st = compute(&info(), &RING3, &s, t + secs(6.0));
        assert_eq!(states(&st), [Running; 3]);
        assert_eq!(st.nodes[1].iteration, 10);
        assert_eq!(st.nodes[1].loss, Some(0.25));

        for id in 0..3 {
            s.finish(id, None, t + secs(8.0));
        }
        let st = compute(&info(), &RING3, &s, t + secs(60.0));
        assert_eq!((st.phase, st.reason.as_deref()), (Phase::Done, None));
        assert_eq!(states(&st), [Done; 3]);
        assert_eq!(st.elapsed_s, Some(6.0), "frozen at the end of the run");
    }

    #[test]
    fn a_failure_marks_the_node_failed_and_aborts_with_the_reason() {
        let t = Instant::now();
        let mut s = State::new(3, 1, t, crate::state::Membership::of_nodes(3));
        for id in 0..3 {
            s.register(id, 1, reg(&format!("h:{id}")), t).unwrap();
        }
        s.finish(1, Some("out of memory".into()), t + secs(2.0));
        let st = compute(&info(), &RING3, &s, t + secs(2.5));
        assert_eq!(st.phase, Phase::Aborted);
        assert_eq!(st.reason.as_deref(), Some("node 1 (h:1) failed: out of memory"));
        assert_eq!(states(&st), [NodeState::Running, NodeState::Failed, NodeState::Running]);
        assert_eq!(st.nodes[1].error.as_deref(), Some("out of memory"));
        assert_eq!(st.elapsed_s, Some(2.0));
    }

    #[test]
    fn edges_carry_the_bytes_each_end_sent_the_other() {
        let t = Instant::now();
        let mut s = State::new(3, 1, t, crate::state::Membership::of_nodes(3));
        s.report(0, 10, report(10, None, &[(1, 100, 130), (2, 100, 131)])).unwrap();
        s.report(1, 10, report(10, None, &[(0, 40, 50), (2, 41, 52)])).unwrap();
        // Node 2 runs an older build that sends no per-link bytes: its directions stay zero.
        s.report(2, 10, Report { links: Default::default(), ..report(10, None, &[(0, 7, 8)]) }).unwrap();
        let st = compute(&info(), &RING3, &s, t);
        let tr = |p, f| Traffic { payload_bytes: p, framed_bytes: f };
        assert_eq!(
            st.edges,
            vec![
                EdgeStatus { a: 0, b: 1, a_to_b: tr(100, 130), b_to_a: tr(40, 50) },
                EdgeStatus { a: 0, b: 2, a_to_b: tr(100, 131), b_to_a: tr(0, 0) },
                EdgeStatus { a: 1, b: 2, a_to_b: tr(41, 52), b_to_a: tr(0, 0) },
            ]
        );
        assert_eq!(st.nodes[0].sent, tr(200, 261));
        assert_eq!(st.nodes[2].sent, tr(7, 8), "the node's own totals still show");
        // A later report replaces the earlier counters.
        s.report(0, 20, report(20, None, &[(1, 300, 330), (2, 300, 331)])).unwrap();
        assert_eq!(compute(&info(), &RING3, &s, t).edges[0].a_to_b, tr(300, 330));
    }

    #[test]
    fn the_curve_keeps_its_order_and_span_when_thinned() {
        let t = Instant::now();
        let mut s = State::new(1, 1, t, crate::state::Membership::of_nodes(1));
        let p = |i: u64| CurvePoint {
            iteration: i,
            time_s: i as f64,
            objective: 1.0,
            consensus_error: 0.0,
            test_accuracy: None,
            bytes_sent: 0,
        };
        for i in 0..=crate::state::MAX_POINTS as u64 {
            s.record_point(p(i));
        }
        let st = compute(&info(), &[], &s, t);
        assert_eq!(st.points.len(), crate::state::MAX_POINTS / 2 + 1);
        assert_eq!(st.points[0].iteration, 0);
        assert_eq!(st.points[1].iteration, 2);
        assert_eq!(st.points.last().unwrap().iteration, crate::state::MAX_POINTS as u64);
    }

    #[test]
    fn the_json_uses_the_documented_names_and_round_trips() {
        let t = Instant::now();
        let mut s = State::new(2, 1, t, crate::state::Membership::of_nodes(2));
        s.register(0, 1, reg("h:0"), t).unwrap();
        s.record_point(CurvePoint {
            iteration: 0,
            time_s: 0.0,
            objective: f64::NAN,
            consensus_error: 0.5,
            test_accuracy: Some(0.9),
            bytes_sent: 12,
        });
        let st = compute(&info(), &[(0, 1)], &s, t);
        let json = serde_json::to_value(&st).unwrap();
        assert_eq!(json["phase"], "waiting");
        assert_eq!(json["run"]["algorithm"], "dproxsgt");
        assert_eq!(json["nodes"][0]["state"], "registered");
        assert_eq!(json["nodes"][1]["state"], "unregistered");
        assert_eq!(json["nodes"][0]["sent"]["payload_bytes"], 0);
        assert_eq!(json["edges"][0]["a_to_b"]["framed_bytes"], 0);
        assert_eq!(json["points"][0]["objective"], serde_json::Value::Null, "NaN becomes null");
        assert_eq!(json["points"][0]["test_accuracy"], 0.9);
        let back: Status = serde_json::from_value(json).unwrap();
        assert!(back.points[0].objective.is_nan());
        assert_eq!(back.nodes, st.nodes);
        assert_eq!(back.edges, st.edges);
    }

    #[test]
    fn edges_of_lists_graph_edges_or_every_pair_for_allreduce() {
        let prepared = |alg: &str| {
            let text = format!(
                r#"
                [run]
                algorithm = "{alg}"
                iterations = 1
                [topology]
                kind = "ring"
                nodes = 5
                [data]
                synthetic = {{ kind = "least_squares", samples = 50, features = 3 }}
                [model]
                kind = "least_squares"
                [optimizer]
                lr = 0.1
                "#
            );
            let cfg = dprox_config::parse(&text, "t.toml".as_ref()).unwrap();
            Prepared::new(cfg, ".".as_ref(), "t".into()).unwrap()
        };
        assert_eq!(edges_of(&prepared("dproxsgt")), vec![(0, 1), (0, 4), (1, 2), (2, 3), (3, 4)]);
        assert_eq!(edges_of(&prepared("allreduce")).len(), 10);
        let info = RunInfo::of(&prepared("dproxsgt"), "x".into());
        assert_eq!((info.topology.as_str(), info.algorithm.as_str()), ("ring", "dproxsgt"));
    }
}
