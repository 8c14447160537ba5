//! The metric names dprox publishes. Every series carries a `node` label (the node id) where it
//! is about one node, and `peer` where it is about one link (the other end's id), so one
//! Prometheus can scrape a whole cluster and a dashboard can break anything down by worker or
//! link. `deploy/grafana/dprox.json` and the tests use these names.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Gauge {node}: iterations this node has completed.
pub const ITERATION: &str = "dprox_iteration";
/// Gauge {node}: the loss of the node's last local (minibatch) gradient evaluation.
pub const LOCAL_LOSS: &str = "dprox_local_loss";
/// Histogram {node}: seconds spent computing one local gradient.
pub const GRADIENT_SECONDS: &str = "dprox_gradient_seconds";
/// Histogram {node, peer}: seconds from the start of an exchange until the peer's message for it
/// was applied (zero when it had arrived early): which neighbour a node waits for.
pub const WAIT_SECONDS: &str = "dprox_wait_seconds";
/// Counter {node, peer, kind = payload | framed}: bytes sent to the peer. `payload` is the encoded
/// message (what the simulator counts); `framed` adds protobuf and gRPC framing.
pub const BYTES_SENT: &str = "dprox_bytes_sent_total";
/// Counter {node, peer, kind = payload | framed}: bytes received from the peer.
pub const BYTES_RECEIVED: &str = "dprox_bytes_received_total";
/// Counter {node, peer}: messages sent to the peer.
pub const MESSAGES_SENT: &str = "dprox_messages_sent_total";
/// Gauge {node}: dense f32 size over encoded size of the node's last message (1 uncompressed,
/// about 50 for top-k 1%).
pub const COMPRESSION_RATIO: &str = "dprox_compression_ratio";
/// Counter {node, kind}: failures: `refused` (a message this node rejected: authentication,
/// size, malformed), `send` (a message that could not be delivered), `timeout` (a neighbour that
/// went silent), `fatal` (the node stopped on an error).
pub const ERRORS: &str = "dprox_errors_total";

/// Gauge {node}: the node's share of the consensus error, ||x_i - xbar||^2 / n, at the last
/// evaluation point (published by the coordinator, which sees every x_i).
pub const CONSENSUS_CONTRIBUTION: &str = "dprox_consensus_contribution";
/// Gauge: the global objective phi(xbar) at the last evaluation point.
pub const OBJECTIVE: &str = "dprox_objective";
/// Gauge: the consensus error (1/n) sum ||x_i - xbar||^2 at the last evaluation point.
pub const CONSENSUS_ERROR: &str = "dprox_consensus_error";
/// Gauge: test accuracy of xbar at the last evaluation point (when there is a test set).
pub const TEST_ACCURACY: &str = "dprox_test_accuracy";
/// Gauge: payload bytes all nodes had sent at the last evaluation point (the `bytes_sent`
/// column; coordinator and simulator).
pub const RUN_BYTES_SENT: &str = "dprox_run_bytes_sent";
/// Gauge: the iteration of the last evaluation point.
pub const EVAL_ITERATION: &str = "dprox_eval_iteration";
/// Gauge: nodes registered with the coordinator.
pub const NODES_REGISTERED: &str = "dprox_nodes_registered";
/// Gauge {node}: seconds since the coordinator last heard from the node.
pub const HEARTBEAT_AGE_SECONDS: &str = "dprox_heartbeat_age_seconds";
/// Gauge: the membership epoch (a node's own, or the coordinator's current one without label).
pub const EPOCH: &str = "dprox_epoch";
/// Gauge: the nodes taking part in the current epoch (coordinator).
pub const LIVE_NODES: &str = "dprox_live_nodes";
/// Counter, by `kind` (leave, crash, lost, rejoin, link_down, link_up, pause): membership
/// changes (coordinator).
pub const MEMBERSHIP_CHANGES: &str = "dprox_membership_changes_total";

/// Histogram buckets for the `_seconds` metrics: 100 us to 60 s.
pub const SECONDS_BUCKETS: &[f64] =
    &[1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 60.0];

/// Registers the help text and unit of every metric with the installed recorder.
pub fn describe() {
    describe_gauge!(ITERATION, "Iterations this node has completed");
    describe_gauge!(LOCAL_LOSS, "Loss of the last local gradient evaluation");
    describe_histogram!(GRADIENT_SECONDS, Unit::Seconds, "Time to compute one local gradient");
    describe_histogram!(
        WAIT_SECONDS,
        Unit::Seconds,
        "Time from the start of an exchange until this peer's message was applied"
    );
    describe_counter!(BYTES_SENT, Unit::Bytes, "Bytes sent to the peer (payload, or framed)");
    describe_counter!(BYTES_RECEIVED, Unit::Bytes, "Bytes received from the peer (payload, or framed)");
    describe_counter!(MESSAGES_SENT, "Messages sent to the peer");
    describe_gauge!(COMPRESSION_RATIO, "Dense f32 size over encoded size of the last message");
    describe_counter!(ERRORS, "Failures by kind: refused, send, timeout, fatal");
    describe_gauge!(CONSENSUS_CONTRIBUTION, "This node's share of the consensus error");
    describe_gauge!(OBJECTIVE, "Global objective phi(xbar) at the last evaluation point");
    describe_gauge!(CONSENSUS_ERROR, "Consensus error at the last evaluation point");
    describe_gauge!(TEST_ACCURACY, "Test accuracy of xbar at the last evaluation point");
    describe_gauge!(EVAL_ITERATION, "Iteration of the last evaluation point");
    describe_gauge!(
        RUN_BYTES_SENT,
        Unit::Bytes,
        "Payload bytes all nodes had sent at the last evaluation point"
    );
    describe_gauge!(NODES_REGISTERED, "Nodes registered with the coordinator");
    describe_gauge!(HEARTBEAT_AGE_SECONDS, Unit::Seconds, "Seconds since the node was last heard from");
    describe_gauge!(EPOCH, "The membership epoch");
    describe_gauge!(LIVE_NODES, "Nodes taking part in the current epoch");
    describe_counter!(MEMBERSHIP_CHANGES, "Membership changes by kind");
}
