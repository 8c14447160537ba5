//! What can go wrong inside the algorithm core.

use crate::algorithm::Exchange;

/// Errors of the sans-IO core. Each names the node and, where there is one, the peer at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoreError {
    /// The node's configuration is inconsistent (weights, step sizes, compressor parameters).
    #[error("node {node}: invalid configuration: {reason}")]
    Config {
        /// The node.
        node: usize,
        /// What is wrong.
        reason: String,
    },
    /// A gradient of the wrong length was passed in.
    #[error("node {node}: gradient has length {got}, the model has {expected} parameters")]
    GradientLength {
        /// The node.
        node: usize,
        /// Parameters of the model.
        expected: usize,
        /// Length passed.
        got: usize,
    },
    /// The local gradient holds NaN or infinity (diverging step size, or bad data).
    #[error(
        "node {node}: non-finite gradient {value} at coordinate {index} in iteration {iteration} (the iterates diverged, or the objective overflowed: lower the step size)"
    )]
    NonFiniteGradient {
        /// The node.
        node: usize,
        /// Iteration.
        iteration: u64,
        /// Coordinate.
        index: usize,
        /// The value.
        value: f32,
    },
    /// A message the node is about to send holds NaN or infinity (the iterates diverged).
    #[error(
        "node {node}: the {exchange} message of iteration {iteration} holds non-finite value {value} at coordinate {index} (the iterates diverged: lower the step size)"
    )]
    NonFiniteMessage {
        /// The node.
        node: usize,
        /// Iteration.
        iteration: u64,
        /// Which exchange.
        exchange: Exchange,
        /// Coordinate.
        index: usize,
        /// The value.
        value: f32,
    },
    /// `handle_gradient` was called while the node was still exchanging.
    #[error(
        "node {node}: gradient for iteration {iteration} passed while still waiting for {exchange} messages"
    )]
    NotReadyForGradient {
        /// The node.
        node: usize,
        /// Current iteration.
        iteration: u64,
        /// The exchange in progress.
        exchange: Exchange,
    },
    /// A message from a node that is not a neighbour.
    #[error("node {node}: message from {from}, which is not a neighbour")]
    UnknownPeer {
        /// The receiver.
        node: usize,
        /// The sender.
        from: usize,
    },
    /// A message whose vector length differs from the model's.
    #[error("node {node}: message from {from} has length {got}, the model has {expected} parameters")]
    MessageLength {
        /// The receiver.
        node: usize,
        /// The sender.
        from: usize,
        /// Expected length.
        expected: usize,
        /// Length received.
        got: usize,
    },
    /// A message whose body is not a well-formed compressed vector (an index past the end, a
    /// short body, ...): refused before anything of it is applied.
    #[error("node {node}: malformed message from {from}: {reason}")]
    Malformed {
        /// The receiver.
        node: usize,
        /// The sender.
        from: usize,
        /// What is wrong.
        reason: dprox_compress::Malformed,
    },
    /// A second message from the same peer for the same exchange.
    #[error("node {node}: duplicate {exchange} message from {from} for iteration {iteration}")]
    Duplicate {
        /// The receiver.
        node: usize,
        /// The sender.
        from: usize,
        /// Iteration.
        iteration: u64,
        /// Exchange.
        exchange: Exchange,
    },
    /// A message from a peer that is not this node's partner in the round of its iteration
    /// (a time-varying schedule).
    #[error(
        "node {node}: a message from node {from} for iteration {iteration}, whose round pairs it with node {partner}"
    )]
    NotScheduled {
        /// The receiver.
        node: usize,
        /// The sender.
        from: usize,
        /// Iteration of the message.
        iteration: u64,
        /// The receiver's partner in that round (itself when it has none).
        partner: usize,
    },
    /// A message for an exchange that is neither the current one nor the next.
    #[error(
        "node {node}: {got_exchange} message of iteration {got_iteration} from {from} is out of step (expected iteration {iteration} {exchange}, or the one after)"
    )]
    OutOfStep {
        /// The receiver.
        node: usize,
        /// The sender.
        from: usize,
        /// Iteration of the message.
        got_iteration: u64,
        /// Exchange of the message.
        got_exchange: Exchange,
        /// Current iteration of the receiver.
        iteration: u64,
        /// Current exchange of the receiver.
        exchange: Exchange,
    },
}

impl CoreError {
    /// The neighbour whose message was refused, for the errors that refuse a message (unknown
    /// sender, wrong length, malformed, duplicate, out of step): the node's state is unchanged by
    /// them, so a driver may count the refusal and go on. None for the node's own errors.
    pub fn refused_from(&self) -> Option<usize> {
        match self {
            CoreError::UnknownPeer { from, .. }
            | CoreError::MessageLength { from, .. }
            | CoreError::Malformed { from, .. }
            | CoreError::Duplicate { from, .. }
            | CoreError::OutOfStep { from, .. }
            | CoreError::NotScheduled { from, .. } => Some(*from),
            _ => None,
        }
    }
}
