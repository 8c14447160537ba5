//! The heartbeat: every `[cluster] heartbeat_s`, the node's iteration to the coordinator; the
//! reply carries the run's abort. A coordinator that stops answering aborts the node.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dprox_transport::pb;
use tokio::sync::watch;
use tokio_util::task::AbortOnDropHandle;

use crate::coordinator::{CoordinatorLink, LinkError};

/// Consecutive failed heartbeats after which the coordinator counts as gone.
pub const MISSED_HEARTBEATS: u32 = 10;

/// Starts the heartbeat of node `id`; it stops when the handle is dropped, and after sending an
/// abort on `abort`.
pub(crate) fn spawn<C: CoordinatorLink>(
    coordinator: C,
    id: usize,
    progress: Arc<AtomicU64>,
    every: Duration,
    abort: watch::Sender<String>,
) -> AbortOnDropHandle<()> {
    AbortOnDropHandle::new(tokio::spawn(beat(coordinator, id, progress, every, abort)))
}

async fn beat<C: CoordinatorLink>(
    mut coordinator: C,
    id: usize,
    progress: Arc<AtomicU64>,
    every: Duration,
    abort: watch::Sender<String>,
) {
    let mut tick = tokio::time::interval(every);
    let mut failures = 0;
    loop {
        tick.tick().await;
        let req = pb::HeartbeatRequest { id: id as u32, iteration: progress.load(Ordering::Relaxed) };
        // An answer slower than a few beats counts as a failure, like no answer.
        let limit = every.max(Duration::from_secs(1)) * 5;
        let reply = tokio::time::timeout(limit, coordinator.heartbeat(req))
            .await
            .unwrap_or_else(|_| Err(LinkError::Unreachable("no answer to a heartbeat".into())));
        match reply {
            Ok(r) if !r.abort.is_empty() => {
                let _ = abort.send(r.abort);
                return;
            }
            Ok(_) => failures = 0,
            Err(e) => {
                failures += 1;
                if failures >= MISSED_HEARTBEATS {
                    let _ = abort.send(format!("the coordinator stopped answering: {e}"));
                    return;
                }
            }
        }
    }
}
