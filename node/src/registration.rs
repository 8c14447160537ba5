//! Registering with the coordinator: the node's address, device, model size and measured
//! throughput go in; the run's id, token, neighbours and mixing row come back when every node is in.

use std::time::Duration;

use dprox_objective::{Batch, Objective};
use dprox_prepare::Prepared;
use dprox_transport::pb;
use tokio::time::Instant;

use crate::NodeError;
use crate::coordinator::{CoordinatorLink, LinkError};
use crate::gossip::Gossip;
use crate::peer::Pace;

/// How long a node keeps trying to reach a coordinator that is not (yet) there.
pub const REACH_COORDINATOR: Duration = Duration::from_secs(30);

/// Registers node `id`; retries while the coordinator cannot be reached (it may still be
/// starting), saying so in the log at once, for at most [`REACH_COORDINATOR`].
pub(crate) async fn register(
    id: usize,
    run: &Prepared,
    objective: &mut dyn Objective,
    gossip: &impl Gossip,
    coordinator: &mut impl CoordinatorLink,
    (join, resume): (bool, bool),
    pace: Pace,
) -> Result<pb::RegisterReply, NodeError> {
    let request = pb::RegisterRequest {
        id: id as u32,
        address: gossip.address(),
        device: objective.device(),
        dim: run.dim() as u64,
        // An emulated speed counts: the rate the node will run at, not the machine's.
        throughput: pace.rate(measure_throughput(objective, run.dim())),
        secret: String::new(),
        join,
        resume,
    };
    let deadline = Instant::now() + REACH_COORDINATOR;
    let mut warned = false;
    let address = coordinator.address();
    let error = |message: String| NodeError::Coordinator { address: address.clone(), message };
    loop {
        match coordinator.register(request.clone()).await {
            Ok(reply) => return Ok(reply),
            Err(LinkError::Unreachable(why)) if Instant::now() < deadline => {
                if !warned {
                    tracing::warn!(node = id, coordinator = %address, "the coordinator cannot be reached yet ({why}); retrying for {} s", REACH_COORDINATOR.as_secs());
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(LinkError::Unreachable(why)) => {
                return Err(error(format!(
                    "could not be reached within {} s: {why}",
                    REACH_COORDINATOR.as_secs()
                )));
            }
            Err(LinkError::Refused(why)) => {
                return Err(error(format!("registration of node {id} refused: {why}")));
            }
        }
    }
}

/// Gradient samples per second on a batch of up to 64 samples, reported at registration (the
/// coordinator shows it; `balance = "throughput"` sizes the minibatches by it): the fastest of
/// the timed gradients after one that warms the caches and the scratch buffers. At least three
/// are timed, and more until [`MEASURE_FOR`] has passed (at most [`MEASURE_REPS`]): nodes that
/// start together on a busy machine are preempted during some of them, and a tiny model's three
/// gradients could all be hit.
fn measure_throughput(objective: &mut dyn Objective, dim: usize) -> f64 {
    let n = objective.num_samples().min(64);
    if n == 0 {
        return 0.0;
    }
    let idx: Vec<usize> = (0..n).collect();
    let x = vec![0.0f32; dim];
    let mut g = vec![0.0f32; dim];
    objective.loss_grad(&x, Batch::Indices(&idx), &mut g);
    let started = std::time::Instant::now();
    let mut best = f64::INFINITY;
    let mut reps = 0;
    while reps < 3 || (reps < MEASURE_REPS && started.elapsed() < MEASURE_FOR) {
        let t = std::time::Instant::now();
        objective.loss_grad(&x, Batch::Indices(&idx), &mut g);
        best = best.min(t.elapsed().as_secs_f64());
        reps += 1;
    }
    n as f64 / best.max(1e-9)
}

/// How long a node keeps timing gradients for its throughput (after the first three).
const MEASURE_FOR: Duration = Duration::from_millis(20);
/// The most gradients it times.
const MEASURE_REPS: usize = 1000;
