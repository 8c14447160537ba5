//! The heartbeat: every `[cluster] heartbeat_s`, the node's iteration and epoch to the coordinator;
//! the reply carries the run's abort, or a freeze while a membership change is being formed. A
//! coordinator that stops answering aborts the node.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dprox_transport::pb;
use tokio::sync::watch;
use tokio_util::task::AbortOnDropHandle;

use crate::coordinator::{CoordinatorLink, LinkError};

/// Consecutive failed heartbeats after which the coordinator counts as gone.
pub const MISSED_HEARTBEATS: u32 = 10;

/// What the coordinator tells a node between its calls.
#[derive(Clone, Debug, PartialEq)]
pub enum Control {
    /// Go on.
    Running,
    /// Stop where you are and sync: a membership change is being formed, seen by a heartbeat
    /// the node sent from this epoch. A node already past it (the new epoch's Sync reply came
    /// first) ignores it: it would otherwise wait for an epoch nobody forms.
    Freeze(u64),
    /// The run is over for everyone: the reason.
    Abort(String),
}

/// What the heartbeat reads of the node.
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress {
    /// Iterations completed.
    pub iteration: Arc<AtomicU64>,
    /// The membership epoch the node is in.
    pub epoch: Arc<AtomicU64>,
}

/// Starts the heartbeat of node `id`; it stops when the handle is dropped, and after sending an
/// abort on `control`.
pub(crate) fn spawn<C: CoordinatorLink>(
    coordinator: C,
    id: usize,
    progress: Progress,
    every: Duration,
    control: Arc<watch::Sender<Control>>,
) -> AbortOnDropHandle<()> {
    AbortOnDropHandle::new(tokio::spawn(beat(coordinator, id, progress, every, control)))
}

async fn beat<C: CoordinatorLink>(
    mut coordinator: C,
    id: usize,
    progress: Progress,
    every: Duration,
    control: Arc<watch::Sender<Control>>,
) {
    let mut tick = tokio::time::interval(every);
    let mut failures = 0;
    loop {
        tick.tick().await;
        let req = pb::HeartbeatRequest {
            id: id as u32,
            iteration: progress.iteration.load(Ordering::Relaxed),
            epoch: progress.epoch.load(Ordering::Relaxed),
        };
        // An answer slower than a few beats counts as a failure, like no answer.
        let limit = every.max(Duration::from_secs(1)) * 5;
        let reply = tokio::time::timeout(limit, coordinator.heartbeat(req))
            .await
            .unwrap_or_else(|_| Err(LinkError::Unreachable("no answer to a heartbeat".into())));
        match reply {
            Ok(r) if !r.abort.is_empty() => {
                control.send_replace(Control::Abort(r.abort));
                return;
            }
            Ok(r) => {
                failures = 0;
                if r.freeze {
                    let freeze = Control::Freeze(req.epoch);
                    control.send_if_modified(|c| std::mem::replace(c, freeze.clone()) != freeze);
                }
            }
            Err(e) => {
                failures += 1;
                if failures >= MISSED_HEARTBEATS {
                    control.send_replace(Control::Abort(format!("the coordinator stopped answering: {e}")));
                    return;
                }
            }
        }
    }
}
