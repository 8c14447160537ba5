//! The node's files for membership and resume, under the run folder:
//!
//! - `checkpoints/node-ID/iter-T.ckpt`: the node's state at the start of iteration T, every
//!   `[run] checkpoint_every` iterations (the latest two are kept, and every one from the
//!   coordinator's latest checkpoint on); the coordinator is told, and a checkpoint is complete
//!   once every member has written it.
//! - `nodes/node-ID.leave.ckpt`: the state of a node that left as scheduled, which it rejoins
//!   with (unless it has a later checkpoint; a scheduled crash removes it).
//!
//! Files are written atomically with a checksum (`dprox_eval::checkpoint`).

use std::path::PathBuf;

use dprox_core::{Node, NodeState};
use dprox_eval::checkpoint;
use dprox_transport::pb;
use serde::{Deserialize, Serialize};

use super::Peer;
use crate::NodeError;
use crate::coordinator::CoordinatorLink;
use crate::gossip::Gossip;

/// What a node's checkpoint holds.
#[derive(Serialize, Deserialize)]
struct NodeCheckpoint {
    state: NodeState,
    /// Bytes sent up to it, (payload, framed).
    totals: (u64, u64),
    compute_s: f64,
    wait_s: f64,
}

impl<G: Gossip, C: CoordinatorLink> Peer<G, C> {
    fn checkpoint_dir(&self) -> Option<PathBuf> {
        self.out.as_ref().map(|o| o.join("checkpoints").join(format!("node-{}", self.id)))
    }

    fn checkpoint_error(&self, e: checkpoint::CheckpointError) -> NodeError {
        NodeError::Checkpoint { node: self.id, message: e.to_string() }
    }

    /// Asks the core for its state at the next multiple of `checkpoint_every`.
    pub(super) fn request_checkpoint(&mut self) {
        let every = self.run.config().run.checkpoint_every;
        if every > 0 && self.out.is_some() {
            let next = (self.core.iteration() / every + 1) * every;
            if next < self.run.config().run.iterations {
                self.core.snapshot_at(next);
            }
        }
    }

    /// Writes the checkpoint the core took, if it took one, and tells the coordinator.
    pub(super) async fn save_checkpoint(&mut self) -> Result<(), NodeError> {
        let Some(state) = self.core.take_snapshot() else { return Ok(()) };
        let Some(dir) = self.checkpoint_dir() else { return Ok(()) };
        let t = state.iteration;
        let value = NodeCheckpoint {
            state,
            totals: self.totals(),
            compute_s: self.timing.compute_s,
            wait_s: self.timing.wait_s,
        };
        checkpoint::write(&dir.join(format!("iter-{t:012}.ckpt")), &value)
            .map_err(|e| self.checkpoint_error(e))?;
        let req = pb::CheckpointedRequest { id: self.id as u32, iteration: t };
        let kept_from = self
            .coordinator
            .checkpointed(req)
            .await
            .map_err(|e| self.coordinator_error(format!("checkpoint refused: {e}")))?;
        // The latest two (a crashed node restarts from the latest intact one), and every one from
        // the coordinator's latest checkpoint on (a resumed run needs it).
        for old in own_checkpoints(&dir).into_iter().rev().skip(2).filter(|c| c.0 < kept_from) {
            let _ = std::fs::remove_file(old.1);
        }
        self.request_checkpoint();
        Ok(())
    }

    /// The core of a resumed node: its checkpoint of iteration `t`, with the bytes it had sent.
    pub(super) fn load_resume(&mut self, t: u64) -> Result<Node, NodeError> {
        let dir = self.checkpoint_dir().ok_or(NodeError::Checkpoint {
            node: self.id,
            message: "--resume needs --out, the run folder".into(),
        })?;
        let c: NodeCheckpoint = checkpoint::read(&dir.join(format!("iter-{t:012}.ckpt")))
            .map_err(|e| self.checkpoint_error(e))?;
        self.offset = c.totals;
        self.timing.compute_s = c.compute_s;
        self.timing.wait_s = c.wait_s;
        Ok(Node::restore(self.run.node_config(self.id), c.state)?)
    }

    /// Writes the state a leaving node rejoins with (at the start of its iteration, before any
    /// message of it: no member starts that iteration before the epoch without this node).
    pub(super) fn save_leave_state(&mut self) -> Result<(), NodeError> {
        let Some(path) = self.leave_path() else { return Ok(()) };
        let value = NodeCheckpoint { state: self.core.state(), totals: (0, 0), compute_s: 0.0, wait_s: 0.0 };
        checkpoint::write(&path, &value).map_err(|e| self.checkpoint_error(e))
    }

    fn leave_path(&self) -> Option<PathBuf> {
        self.out.as_ref().map(|o| o.join("nodes").join(format!("node-{}.leave.ckpt", self.id)))
    }

    /// Forgets the state of an earlier leave (a crash ends this life: a restart must not start
    /// from the older state).
    pub(super) fn forget_leave_state(&self) {
        if let Some(p) = self.leave_path() {
            let _ = std::fs::remove_file(p);
        }
    }

    /// The state a joining node starts from: the one it left with or its latest intact
    /// checkpoint, whichever is later (the leave state on a tie: it is the state at the start of
    /// the iteration it left at). None when it has neither.
    pub(super) fn rejoin_state(&mut self) -> Result<Option<Node>, NodeError> {
        let left: Option<NodeCheckpoint> = match self.leave_path().filter(|p| p.exists()) {
            Some(p) => Some(checkpoint::read(&p).map_err(|e| self.checkpoint_error(e))?),
            None => None,
        };
        let saved = self.latest_own_checkpoint();
        let state = match (left, saved) {
            (Some(l), Some(c)) if c.iteration > l.state.iteration => Some(c),
            (Some(l), _) => {
                tracing::info!(
                    node = self.id,
                    iteration = l.state.iteration,
                    "rejoining with the state it left with"
                );
                Some(l.state)
            }
            (None, c) => c,
        };
        Ok(match state {
            Some(s) => Some(Node::restore(self.run.node_config(self.id), s)?),
            None => None,
        })
    }

    /// This node's latest intact checkpoint, if it has one (a crashed node restarts from it).
    fn latest_own_checkpoint(&self) -> Option<NodeState> {
        let dir = self.checkpoint_dir()?;
        for (t, path) in own_checkpoints(&dir).into_iter().rev() {
            match checkpoint::read::<NodeCheckpoint>(&path) {
                Ok(c) => {
                    tracing::info!(node = self.id, iteration = t, "found its checkpoint");
                    return Some(c.state);
                }
                Err(e) => tracing::warn!(node = self.id, "skipping a damaged checkpoint: {e}"),
            }
        }
        None
    }
}

/// The checkpoints in `dir`, ascending by iteration.
fn own_checkpoints(dir: &std::path::Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let t = name.strip_prefix("iter-")?.strip_suffix(".ckpt")?.parse().ok()?;
            Some((t, e.path()))
        })
        .collect();
    v.sort();
    v
}
