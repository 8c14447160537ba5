//! Membership changes as a node lives them.
//!
//! - At an iteration where the schedule changes the membership, every member syncs with the
//!   coordinator and starts the epoch it answers with (the same one everywhere, and the same
//!   the simulator plans).
//! - A node's own scheduled fault: a leave writes its state (to rejoin with) and goes; a crash
//!   says its last byte counts and is killed (by the launcher) or stops; a pause waits.
//! - A lost neighbour (or the coordinator's freeze) interrupts the iteration: the node reports
//!   the loss and syncs; the new epoch restarts (or skips to) the iteration it starts at.
//! - Entering: fresh at 0, resuming from a checkpoint, or joining at an epoch with a model from
//!   its leave state, its latest checkpoint, or its new neighbours' average.

use std::io::Write;
use std::sync::atomic::Ordering;

use dprox_core::{EpochStart, Node};
use dprox_prepare::ChangeKind;
use dprox_transport::pb;
use tokio_util::sync::CancellationToken;

use super::exchange::Why;
use super::{Faults, Peer, Start, link_shape};
use crate::coordinator::CoordinatorLink;
use crate::gossip::{Gossip, PeerAddr, Session};
use crate::heartbeat::Control;
use crate::{NodeError, Outcome};

impl<G: Gossip, C: CoordinatorLink> Peer<G, C> {
    /// Sets the node up for `start` from the coordinator's `reply`.
    pub(super) async fn enter(&mut self, start: Start, reply: &pb::RegisterReply) -> Result<(), NodeError> {
        let info = pb::EpochInfo {
            index: reply.epoch,
            start: reply.iteration,
            peers: reply.peers.clone(),
            row: reply.row.clone(),
        };
        match start {
            Start::Fresh => {
                let mut cfg = self.run.node_config(self.id);
                cfg.row = info.row.iter().map(|w| (w.peer as usize, w.w)).collect();
                self.core = Node::new(cfg)?;
            }
            Start::Resume => self.core = self.load_resume(info.start)?,
            Start::Join => self.core = self.joining_core()?,
        }
        let joined_fresh = start == Start::Join && self.core.epoch() == 0 && self.core.iteration() == 0;
        if start == Start::Join {
            self.core.start_epoch(epoch_start(&info))?;
        }
        self.connect(&info)?;
        if joined_fresh {
            self.fetch_average(&info).await?;
        }
        tracing::info!(node = self.id, start = ?start, epoch = info.index, iteration = info.start, peers = ?self.peers.iter().map(|p| p.id).collect::<Vec<_>>(), run = %self.run_id, "started");
        Ok(())
    }

    /// A joining node's core before the epoch that admits it: its leave state, else its latest
    /// checkpoint, else a fresh one (whose x comes from its neighbours once connected).
    fn joining_core(&mut self) -> Result<Node, NodeError> {
        match self.rejoin_state()? {
            Some(state) => Ok(state),
            None => Ok(Node::new(self.run.node_config(self.id))?),
        }
    }

    /// x as the average of the epoch's neighbours' (ascending id, summed in f64).
    async fn fetch_average(&mut self, info: &pb::EpochInfo) -> Result<(), NodeError> {
        let d = self.run.dim();
        let mut sum = vec![0.0f64; d];
        let peers = self.peers.clone();
        for p in &peers {
            let x = self.gossip.fetch(p, info.index, d).await?;
            for (s, v) in sum.iter_mut().zip(x) {
                *s += v as f64;
            }
        }
        let x: Vec<f32> = sum.iter().map(|&s| (s / peers.len().max(1) as f64) as f32).collect();
        self.core.set_params(&x)?;
        self.gossip.publish(info.index, self.core.params());
        tracing::info!(node = self.id, from = ?peers.iter().map(|p| p.id).collect::<Vec<_>>(), "joined with the average of its neighbours' models");
        Ok(())
    }

    /// Starts using the epoch `info` describes: links, sampler, heartbeat, kept messages.
    fn connect(&mut self, info: &pb::EpochInfo) -> Result<(), NodeError> {
        self.peers =
            info.peers.iter().map(|p| PeerAddr { id: p.id as usize, address: p.address.clone() }).collect();
        let session = Session {
            run_id: self.run_id.clone(),
            token: self.token.clone(),
            nodes: self.run.n(),
            epoch: info.index,
            shapes: self.peers.iter().map(|p| link_shape(&self.run, self.id, p.id)).collect(),
            peers: self.peers.clone(),
            seed: self.run.config().run.seed,
        };
        self.gossip.connect(&session)?;
        self.gossip.publish(info.index, self.core.params());
        self.sampler.seek(info.start);
        self.telemetry.epoch(info.index, &self.peers.iter().map(|p| p.id).collect::<Vec<_>>());
        self.progress.epoch.store(info.index, Ordering::Relaxed);
        self.progress.iteration.store(info.start, Ordering::Relaxed);
        self.control_tx
            .send_if_modified(|c| matches!(std::mem::replace(c, Control::Running), Control::Freeze(_)));
        self.synced_at = Some(info.start);
        self.request_checkpoint();
        self.strikes = Default::default();
        for m in std::mem::take(&mut self.future) {
            self.apply(m)?;
        }
        Ok(())
    }

    /// Waits for the coordinator's next epoch and starts it (`at_boundary`: the node is at the
    /// start of its iteration, a planned change; else in its middle, after a loss or a freeze).
    pub(super) async fn sync(
        &mut self,
        at_boundary: bool,
        shutdown: &CancellationToken,
    ) -> Result<(), NodeError> {
        let req = pb::SyncRequest {
            id: self.id as u32,
            epoch: self.core.epoch(),
            iteration: self.core.iteration(),
            at_boundary,
        };
        let reply = tokio::select! {
            r = self.coordinator.sync(req) => r.map_err(|e| self.coordinator_error(format!("sync refused: {e}")))?,
            _ = shutdown.cancelled() => return Err(NodeError::Shutdown(self.id)),
            _ = wait_abort(&mut self.control) => return Err(self.controlled()),
        };
        if !reply.abort.is_empty() {
            return Err(NodeError::Aborted(reply.abort));
        }
        let Some(info) = reply.epoch.filter(|_| !reply.excluded) else {
            return Err(NodeError::Excluded { node: self.id, iteration: self.core.iteration() });
        };
        self.core.start_epoch(epoch_start(&info))?;
        tracing::info!(node = self.id, epoch = info.index, iteration = info.start, peers = ?info.peers.iter().map(|p| p.id).collect::<Vec<_>>(), "new membership epoch");
        self.connect(&info)
    }

    /// After an interrupted iteration: reports the lost neighbours, then syncs.
    pub(super) async fn reconfigure(
        &mut self,
        why: Why,
        shutdown: &CancellationToken,
    ) -> Result<(), NodeError> {
        if let Why::Lost(lost) = &why {
            for (peer, reason) in lost {
                tracing::warn!(node = self.id, peer = peer.id, address = %peer.address, "neighbour lost: {reason}");
                let req = pb::LostRequest {
                    id: self.id as u32,
                    peer: peer.id as u32,
                    iteration: self.core.iteration(),
                    reason: reason.clone(),
                };
                self.coordinator
                    .lost(req)
                    .await
                    .map_err(|e| self.coordinator_error(format!("reporting node {} lost: {e}", peer.id)))?;
            }
        }
        self.sync(false, shutdown).await
    }

    /// This node's own scheduled fault at iteration `t`: a leave or crash ends its driver (with
    /// the outcome), a pause waits. Runs once per iteration.
    pub(super) async fn own_fault(&mut self, t: u64) -> Result<Option<Outcome>, NodeError> {
        let Some(fault) = self.own_faults.iter().find(|c| c.iteration == t).copied() else { return Ok(None) };
        self.own_faults.retain(|c| c.iteration != t || c.kind == ChangeKind::Rejoin);
        let shutdown = CancellationToken::new();
        match fault.kind {
            ChangeKind::Pause(seconds) => {
                tracing::info!(node = self.id, iteration = t, "scheduled pause of {seconds} s");
                match self.faults {
                    Faults::Launcher => announce(&format!("pause {seconds} {t}")),
                    Faults::InProcess => {
                        tokio::time::sleep(std::time::Duration::from_secs_f64(seconds)).await
                    }
                }
                Ok(None)
            }
            ChangeKind::Leave | ChangeKind::Crash => {
                let crash = fault.kind == ChangeKind::Crash;
                self.flush(&shutdown).await?;
                if crash {
                    self.forget_leave_state();
                } else {
                    self.save_leave_state()?;
                }
                let (payload_bytes, framed_bytes) = self.totals();
                let req =
                    pb::LeaveRequest { id: self.id as u32, iteration: t, payload_bytes, framed_bytes, crash };
                self.coordinator
                    .leave(req)
                    .await
                    .map_err(|e| self.coordinator_error(format!("leave refused: {e}")))?;
                tracing::info!(
                    node = self.id,
                    iteration = t,
                    "scheduled {}",
                    if crash { "crash" } else { "leave" }
                );
                // Under the launcher, a crash waits for its SIGKILL; a leave is announced so that the
                // launcher restarts the node for its scheduled rejoin.
                if self.faults == Faults::Launcher {
                    announce(&format!("{} {t}", if crash { "crash" } else { "leave" }));
                    if crash {
                        std::future::pending::<()>().await;
                    }
                }
                Ok(Some(self.outcome(Some(t))))
            }
            _ => Ok(None),
        }
    }
}

/// The core's view of an epoch.
fn epoch_start(info: &pb::EpochInfo) -> EpochStart {
    EpochStart {
        epoch: info.index,
        iteration: info.start,
        row: info.row.iter().map(|w| (w.peer as usize, w.w)).collect(),
    }
}

/// A line for the launcher on stdout: `dprox-fault WHAT`.
fn announce(what: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "dprox-fault {what}");
    let _ = out.flush();
}

/// Resolves when the control channel says abort.
async fn wait_abort(control: &mut tokio::sync::watch::Receiver<Control>) {
    let _ = control.wait_for(|c| matches!(c, Control::Abort(_))).await;
}
