//! The watchdog: a live member silent for `[cluster] timeout_s` is lost (the failure detector's
//! one tolerance; neighbours that find a node unreachable report it at once), and a run whose
//! nodes do not all register within `[cluster] register_timeout_s` is given up. It also
//! publishes the cluster's health gauges.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use crate::shared::Shared;
use crate::state::State;

/// How often the watchdog looks.
const PERIOD: Duration = Duration::from_millis(200);

/// Starts the watchdog of `shared`'s run; it stops when the handle is dropped.
pub(crate) fn spawn(shared: Arc<Shared>) -> AbortOnDropHandle<()> {
    let cluster = &shared.run.config().cluster;
    let limit = Duration::from_secs_f64(cluster.timeout_s);
    let register_limit = Duration::from_secs_f64(cluster.register_timeout_s);
    AbortOnDropHandle::new(tokio::spawn(async move {
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut last, mut skipped) = (Instant::now(), false);
        loop {
            tick.tick().await;
            // When this process itself stalled (a loaded machine), the heartbeats that arrived
            // meanwhile may not be handled yet: judge liveness on the next tick instead (one
            // tick, not every late one, so that a machine that stays loaded is still watched).
            let punctual = last.elapsed() < 5 * PERIOD || skipped;
            skipped = !punctual;
            last = Instant::now();
            let aborted = {
                let mut state = shared.state();
                publish_health(&state, Instant::now());
                state.check_registration(Instant::now(), register_limit)
            };
            if aborted {
                shared.note_over();
            }
            if punctual {
                shared.watch_liveness(limit);
            }
        }
    }))
}

/// Registered nodes and how long since each was heard from.
fn publish_health(state: &State, now: Instant) {
    use dprox_telemetry::names;
    let registered = state.nodes.iter().filter(|b| b.registration.is_some()).count();
    metrics::gauge!(names::NODES_REGISTERED).set(registered as f64);
    for (i, b) in state.nodes.iter().enumerate() {
        let age = now.saturating_duration_since(b.heartbeat.at).as_secs_f64();
        metrics::gauge!(names::HEARTBEAT_AGE_SECONDS, "node" => i.to_string()).set(age);
    }
}
