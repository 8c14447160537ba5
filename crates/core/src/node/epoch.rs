//! Membership changes and checkpoints of a [`Node`].
//!
//! **Epochs.** The set of nodes and W may change during a run (a node leaves, crashes, joins; a
//! link goes down). The driver learns the change from the coordinator (or the fault schedule) and
//! hands it in as an [`EpochStart`]: the iteration at which the new epoch starts and the node's new
//! row of W. Every member of the epoch starts it at that same iteration. Starting an epoch
//! restarts gradient tracking as at iteration 0: y = 0, the previous gradient = 0, and for
//! CDProxSGT and CHOCO the public estimates and running sums = 0, on every member; only x is
//! kept. Why: the tracking invariant (the mean of y equals the mean of the latest gradients) holds
//! over the nodes that mixed together since the start; a node that leaves takes its share of
//! that sum with it, and the running sums of CDProxSGT are weighted with the old W. Restarting
//! every member at once makes the invariant hold again over the new members from the first
//! exchange of the epoch (docs/algorithms.md, "Membership changes"). A node that is in the
//! middle of an iteration when the epoch starts at that iteration (or later) drops what the
//! iteration did so far: x returns to its value at the start of the iteration.
//!
//! **Checkpoints.** [`Node::snapshot_at`] asks for the node's state at the start of an
//! iteration; it is taken when the previous iteration completes, before any message of the next
//! one is applied, so that [`Node::restore`] resumes exactly there (neighbours resend their
//! messages of that iteration after a resume).

use serde::{Deserialize, Serialize};

use super::Node;
use crate::algorithm::{NodeConfig, validate_row};
use crate::error::CoreError;
use crate::inbox::Inbox;

/// A new membership epoch, as a node sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochStart {
    /// The epoch's number (greater than the node's current one).
    pub epoch: u64,
    /// The iteration it starts at (at least the node's current iteration).
    pub iteration: u64,
    /// The node's row of the epoch's W: ascending, own weight included.
    pub row: Vec<(usize, f64)>,
}

/// A node's whole state at the start of an iteration (what a checkpoint holds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    /// The iteration about to start.
    pub iteration: u64,
    /// The membership epoch.
    pub epoch: u64,
    /// The node's row of W in that epoch.
    pub row: Vec<(usize, f64)>,
    /// x_i.
    pub x: Vec<f32>,
    /// The tracker y_i (empty for algorithms without one).
    pub y: Vec<f32>,
    /// The previous gradient (empty for algorithms without a tracker).
    pub g_prev: Vec<f32>,
    /// Public estimates and running sums (cdproxsgt, choco; empty otherwise).
    pub xh: Vec<f64>,
    /// Public estimate of y (cdproxsgt).
    pub yh: Vec<f64>,
    /// sum_j w_ij xh_j.
    pub sx: Vec<f64>,
    /// sum_j w_ij yh_j.
    pub sy: Vec<f64>,
}

impl Node {
    /// Starts membership epoch `e`: the node's neighbours and weights become those of `e.row`,
    /// its iteration `e.iteration`, and gradient tracking restarts (see the module doc). The node
    /// then needs the gradient of iteration `e.iteration` at [`Node::params`]. Any message of the
    /// old epoch still pending is dropped, including an unsent outgoing one.
    ///
    /// Errors: an epoch not after the current one, an iteration before the current one, or a
    /// malformed row (as [`NodeConfig::validate`] checks it).
    pub fn start_epoch(&mut self, e: EpochStart) -> Result<(), CoreError> {
        let err = |reason: String| Err(CoreError::Config { node: self.id, reason });
        if e.epoch <= self.epoch {
            return err(format!("epoch {} does not follow the current epoch {}", e.epoch, self.epoch));
        }
        if e.iteration < self.iteration {
            return err(format!(
                "epoch {} starts at iteration {}, before the node's {}",
                e.epoch, e.iteration, self.iteration
            ));
        }
        validate_row(self.id, &e.row).or_else(err)?;
        let mid_iteration = !self.waiting_gradient || self.stage > 0;
        if mid_iteration && !self.x_start.is_empty() {
            self.x.copy_from_slice(&self.x_start);
        }
        self.epoch = e.epoch;
        self.iteration = e.iteration;
        self.stage = 0;
        self.waiting_gradient = true;
        for v in [&mut self.y, &mut self.g_prev] {
            v.fill(0.0);
        }
        for v in [&mut self.xh, &mut self.yh, &mut self.sums.acc, &mut self.sums.sx, &mut self.sums.sy] {
            v.fill(0.0);
        }
        for m in &mut self.out_meta {
            m.2 = false;
        }
        self.inbox = Inbox::new(self.id, &e.row, self.dim());
        // A membership change ends a time-varying schedule: the epoch's row holds from now on.
        self.rounds = None;
        self.begin_iteration();
        Ok(())
    }

    /// Sets x_i (a node joining a run: from its checkpoint, or the average of its neighbours').
    /// Only at the start of an iteration, before its gradient.
    pub fn set_params(&mut self, x: &[f32]) -> Result<(), CoreError> {
        if x.len() != self.dim() {
            return Err(CoreError::GradientLength { node: self.id, expected: self.dim(), got: x.len() });
        }
        if !self.waiting_gradient || self.stage > 0 {
            return Err(CoreError::Config {
                node: self.id,
                reason: "x can only be set between iterations".into(),
            });
        }
        if let Some(index) = x.iter().position(|v| !v.is_finite()) {
            return Err(CoreError::Config {
                node: self.id,
                reason: format!("x holds {} at coordinate {index}", x[index]),
            });
        }
        self.x.copy_from_slice(x);
        if !self.x_start.is_empty() {
            self.x_start.copy_from_slice(x);
        }
        Ok(())
    }

    /// Asks for the node's state at the start of `iteration` (later than the current one); take
    /// it with [`Node::take_snapshot`] once the node is there.
    pub fn snapshot_at(&mut self, iteration: u64) {
        self.snapshot_at = Some(iteration);
    }

    /// The node's state now, for a driver that knows no message of the coming iteration has been
    /// applied (the simulator's lockstep: every message of an iteration is delivered before the
    /// next one starts). A driver whose neighbours run ahead uses [`Node::snapshot_at`].
    pub fn state(&self) -> NodeState {
        self.capture()
    }

    /// The state requested with [`Node::snapshot_at`], once taken.
    pub fn take_snapshot(&mut self) -> Option<NodeState> {
        self.snapshot.take()
    }

    /// A node in the state `state` (taken by [`Node::snapshot_at`]), configured by `cfg` (its row
    /// is replaced by the state's).
    pub fn restore(mut cfg: NodeConfig, state: NodeState) -> Result<Node, CoreError> {
        cfg.row = state.row.clone();
        let mut node = Node::new(cfg)?;
        let err = |what: &str, got: usize, expected: usize| CoreError::Config {
            node: node.id,
            reason: format!("checkpoint: {what} has {got} values, the node {expected}"),
        };
        let pairs: [(&str, &mut Vec<f32>, &Vec<f32>); 3] = [
            ("x", &mut node.x, &state.x),
            ("y", &mut node.y, &state.y),
            ("g_prev", &mut node.g_prev, &state.g_prev),
        ];
        for (what, dst, src) in pairs {
            if dst.len() != src.len() {
                return Err(err(what, src.len(), dst.len()));
            }
            dst.copy_from_slice(src);
        }
        let pairs: [(&str, &mut Vec<f64>, &Vec<f64>); 4] = [
            ("xh", &mut node.xh, &state.xh),
            ("yh", &mut node.yh, &state.yh),
            ("sx", &mut node.sums.sx, &state.sx),
            ("sy", &mut node.sums.sy, &state.sy),
        ];
        for (what, dst, src) in pairs {
            if dst.len() != src.len() {
                return Err(err(what, src.len(), dst.len()));
            }
            dst.copy_from_slice(src);
        }
        node.iteration = state.iteration;
        node.epoch = state.epoch;
        node.begin_iteration();
        Ok(node)
    }

    /// Entering the gradient phase of `self.iteration`: takes a requested checkpoint (before any
    /// early message of the iteration is applied), remembers x, and opens the first exchange.
    pub(super) fn begin_iteration(&mut self) {
        if self.snapshot_at == Some(self.iteration) {
            self.snapshot_at = None;
            self.snapshot = Some(self.capture());
        }
        if !self.x_start.is_empty() {
            self.x_start.copy_from_slice(&self.x);
        }
        if let Some(rounds) = &self.rounds {
            self.inbox.set_partner(rounds.at(self.iteration).map(|p| p.from));
        }
        self.open_exchange();
    }

    fn capture(&self) -> NodeState {
        NodeState {
            iteration: self.iteration,
            epoch: self.epoch,
            row: self.inbox.peers.iter().copied().zip(self.inbox.weights.iter().copied()).collect(),
            x: self.x.clone(),
            y: self.y.clone(),
            g_prev: self.g_prev.clone(),
            xh: self.xh.clone(),
            yh: self.yh.clone(),
            sx: self.sums.sx.clone(),
            sy: self.sums.sy.clone(),
        }
    }
}
