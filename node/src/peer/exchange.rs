//! Waiting for the neighbours' messages of an iteration. The wait ends when the iteration is
//! done, or is interrupted by a membership change: a neighbour that a probe cannot reach or a
//! delivery to it fails (lost), neighbours silent for `[cluster] timeout_s` (lost), or the
//! coordinator's freeze (another node was lost). An abort or a shutdown ends it with an error.

use std::time::Duration;

use dprox_core::Phase;
use dprox_transport::{Inbound, TransportError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Peer;
use crate::NodeError;
use crate::coordinator::CoordinatorLink;
use crate::gossip::{Gossip, GossipEvent, PeerAddr};
use crate::heartbeat::Control;

/// A neighbour that has sent nothing for this long is probed, and again every this long.
pub const PROBE_AFTER: Duration = Duration::from_secs(1);

/// Refused messages (duplicate, out of step, malformed, wrong length) from one neighbour within
/// an epoch that end its link: it is reported lost. Fewer are counted and logged, and the run
/// goes on.
pub const STRIKES: u32 = 16;

/// Messages of later epochs kept per node of the run: a neighbour that started the next epoch
/// first sends at most two before it needs this node's (the current exchange and the next).
const FUTURE_PER_NODE: usize = 2;

/// Refused messages of the current epoch, by sender.
#[derive(Debug, Default)]
pub(crate) struct Strikes {
    counts: std::collections::BTreeMap<usize, u32>,
    /// A neighbour that reached [`STRIKES`], and why (reported at the next chance).
    ended: Option<(usize, String)>,
}

impl Strikes {
    /// Counts one refusal from `from`; true when it reaches the limit (once).
    fn strike(&mut self, from: usize, why: &str) -> bool {
        let n = self.counts.entry(from).or_default();
        *n += 1;
        if *n == STRIKES && self.ended.is_none() {
            self.ended =
                Some((from, format!("refused {STRIKES} messages from it in this epoch, the last: {why}")));
            return true;
        }
        false
    }
}

/// Why a wait was interrupted.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Why {
    /// The coordinator is forming a new epoch.
    Freeze,
    /// These neighbours are gone: (peer, what was found).
    Lost(Vec<(PeerAddr, String)>),
}

/// How a wait ended.
#[derive(Debug)]
pub(crate) enum Waited {
    /// The iteration is complete.
    Done,
    /// A membership change is needed first.
    Interrupted(Why),
}

impl<G: Gossip, C: CoordinatorLink> Peer<G, C> {
    /// Step 2: applies neighbours' messages until the iteration's exchanges are complete.
    pub(super) async fn await_exchange(&mut self, shutdown: &CancellationToken) -> Result<Waited, NodeError> {
        let timeout = self.timeout();
        let mut last_progress = Instant::now();
        // A deadline, not a guard on an interval: a guard is read only when `select!` starts, so
        // an idle wait would never probe.
        let mut probe_at = last_progress + PROBE_AFTER;
        while self.core.phase() != Phase::NeedGradient {
            if let Some(why) = self.misbehaving() {
                return Ok(Waited::Interrupted(why));
            }
            let w0 = Instant::now();
            // Biased: the coordinator's word or a shutdown first (rarely ready, and a node whose
            // messages are always queued must still see them), then a message already here
            // before any timer, so a neighbour that delivered its last message and left is never
            // taken for dead.
            tokio::select! {
                biased;
                _ = self.control.changed() => match self.control.borrow().clone() {
                    Control::Abort(why) => return Err(NodeError::Aborted(why)),
                    Control::Freeze(epoch) if epoch >= self.core.epoch() => {
                        return Ok(Waited::Interrupted(Why::Freeze));
                    }
                    // A freeze for an epoch this node has already left: stale.
                    Control::Freeze(_) => {}
                    Control::Running => {}
                },
                _ = shutdown.cancelled() => return Err(NodeError::Shutdown(self.id)),
                event = self.gossip.next() => {
                    if let Some(why) = self.handle(event)? {
                        return Ok(Waited::Interrupted(why));
                    }
                    last_progress = Instant::now();
                    probe_at = last_progress + PROBE_AFTER;
                }
                _ = tokio::time::sleep_until(last_progress + timeout) => return Ok(Waited::Interrupted(self.timed_out())),
                _ = tokio::time::sleep_until(probe_at) => {
                    if let Some(why) = self.probe_missing().await? {
                        return Ok(Waited::Interrupted(why));
                    }
                    probe_at = Instant::now() + PROBE_AFTER;
                }
            }
            self.timing.wait_s += w0.elapsed().as_secs_f64();
        }
        Ok(Waited::Done)
    }

    /// Applies one gossip event: a message of this epoch to the core (its replies go out), a
    /// later epoch's kept for when the node gets there, an earlier epoch's dropped. A failed
    /// delivery means the neighbour is gone; one to a node that is no neighbour now (a link of
    /// an earlier epoch failing late, after the node left that epoch) is stale and ignored.
    pub(super) fn handle(&mut self, event: Option<GossipEvent>) -> Result<Option<Why>, NodeError> {
        match event {
            Some(GossipEvent::Message(m)) => {
                self.apply(m)?;
                Ok(self.misbehaving())
            }
            Some(GossipEvent::SendFailed(TransportError::Send { peer, .. }))
                if !self.peers.iter().any(|p| p.id == peer) =>
            {
                Ok(None)
            }
            Some(GossipEvent::SendFailed(TransportError::Send { peer, address, message, .. })) => {
                Ok(Some(Why::Lost(vec![(PeerAddr { id: peer, address }, message)])))
            }
            Some(GossipEvent::SendFailed(e)) => Err(e.into()),
            None => Err(NodeError::Shutdown(self.id)),
        }
    }

    /// A message, by its epoch. One the core refuses (duplicate, out of step, malformed) leaves
    /// its state unchanged: it is counted against its sender and the run goes on.
    pub(super) fn apply(&mut self, mut m: Inbound) -> Result<(), NodeError> {
        let epoch = self.core.epoch();
        if m.epoch > epoch {
            if self.future.len() < FUTURE_PER_NODE * self.run.n() {
                self.future.push(m);
            } else {
                let why =
                    format!("epoch {} message while {} others are already kept", m.epoch, self.future.len());
                self.refuse(m.from, &why);
                self.gossip.recycle(m.payload);
            }
            return Ok(());
        }
        if m.epoch < epoch {
            self.gossip.recycle(m.payload);
            return Ok(());
        }
        self.telemetry.received(&self.core, &m);
        // The core keeps an early message by taking its buffer (no copy); the spare it hands back
        // goes to the pool like the payload would have.
        let applied = self.core.handle_message_taking(m.from, m.iteration, m.exchange, &mut m.payload);
        self.gossip.recycle(m.payload);
        match applied {
            Err(e) if e.refused_from().is_some() => self.refuse(m.from, &e.to_string()),
            other => other?,
        }
        self.telemetry.observe(&self.core);
        self.send_ready();
        Ok(())
    }

    /// Counts and logs a refused message from `from`.
    fn refuse(&mut self, from: usize, why: &str) {
        self.telemetry.refused();
        tracing::warn!(node = self.id, from, "refused a message: {why}");
        if self.strikes.strike(from, why) {
            tracing::error!(
                node = self.id,
                from,
                "ending the link to node {from}: {STRIKES} refused messages"
            );
        }
    }

    /// A neighbour whose refused messages reached [`STRIKES`]: lost.
    fn misbehaving(&mut self) -> Option<Why> {
        let (id, reason) = self.strikes.ended.take()?;
        let peer = self.peers.iter().find(|p| p.id == id)?.clone();
        Some(Why::Lost(vec![(peer, reason)]))
    }

    /// Checks that the neighbours still awaited exist: one that a probe cannot reach is lost at
    /// once, instead of after the timeout.
    async fn probe_missing(&mut self) -> Result<Option<Why>, NodeError> {
        let missing = self.core.missing_peers();
        let Some(down) = self.gossip.probe(&missing).await else { return Ok(None) };
        // Its last message may have come in while we probed (it finished and left): apply what
        // is here before deciding that it is gone.
        while let Some(event) = self.gossip.try_next() {
            if let Some(why) = self.handle(Some(event))? {
                return Ok(Some(why));
            }
        }
        match self.core.phase() {
            Phase::Exchanging(_) if self.core.missing_peers().contains(&down.peer) => {
                let peer = PeerAddr { id: down.peer, address: down.address };
                Ok(Some(Why::Lost(vec![(peer, down.reason)])))
            }
            _ => Ok(None),
        }
    }

    /// Neighbours silent for the whole timeout are lost (the failure detector's one tolerance).
    fn timed_out(&self) -> Why {
        self.telemetry.timed_out();
        let address =
            |j: usize| self.peers.iter().find(|p| p.id == j).map(|p| p.address.clone()).unwrap_or_default();
        let reason = format!(
            "no message of iteration {} within {} s (cluster.timeout_s)",
            self.core.iteration(),
            self.timeout().as_secs_f64()
        );
        Why::Lost(
            self.core
                .missing_peers()
                .into_iter()
                .map(|j| (PeerAddr { id: j, address: address(j) }, reason.clone()))
                .collect(),
        )
    }
}
