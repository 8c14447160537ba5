//! The node's link to the coordinator, behind the [`CoordinatorLink`] trait: [`GrpcCoordinator`]
//! over the network, [`MemoryCoordinator`] in one process (tests, in virtual time). The messages
//! are those of `proto/dprox/v1/coordinator.proto`.

mod grpc;
mod memory;

use std::future::Future;

use dprox_transport::pb;

pub use grpc::GrpcCoordinator;
pub use memory::MemoryCoordinator;

/// Why a call to the coordinator failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The coordinator cannot be reached (not started yet, gone, or the network is down).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The coordinator answered with an error (a refusal, or the run's abort).
    #[error("{0}")]
    Refused(String),
}

/// The calls a node makes to the coordinator. A link is cheap to clone (the heartbeat runs on a
/// clone of it).
pub trait CoordinatorLink: Clone + Send + Sync + 'static {
    /// Where the coordinator is, for messages.
    fn address(&self) -> String;

    /// Registers this node; the reply comes when every node has registered (the start signal).
    fn register(
        &mut self,
        req: pb::RegisterRequest,
    ) -> impl Future<Output = Result<pb::RegisterReply, LinkError>> + Send;

    /// Sends this node's iterate and counters at an evaluation point.
    fn report(&mut self, req: pb::ReportRequest) -> impl Future<Output = Result<(), LinkError>> + Send;

    /// A sign of life; the reply carries the run's abort reason, if it was aborted.
    fn heartbeat(
        &mut self,
        req: pb::HeartbeatRequest,
    ) -> impl Future<Output = Result<pb::HeartbeatReply, LinkError>> + Send;

    /// This node finished (or failed, with the reason).
    fn finish(&mut self, req: pb::FinishRequest) -> impl Future<Output = Result<(), LinkError>> + Send;

    /// Waits for the next membership epoch (at a planned change, or after a freeze).
    fn sync(&mut self, req: pb::SyncRequest)
    -> impl Future<Output = Result<pb::SyncReply, LinkError>> + Send;

    /// Reports a neighbour that cannot be reached.
    fn lost(&mut self, req: pb::LostRequest) -> impl Future<Output = Result<(), LinkError>> + Send;

    /// This node leaves at a scheduled fault (or is about to be killed).
    fn leave(&mut self, req: pb::LeaveRequest) -> impl Future<Output = Result<(), LinkError>> + Send;

    /// This node has written its checkpoint of an iteration; the answer is the iteration from
    /// which it must keep its checkpoints (the coordinator's latest one on disk).
    fn checkpointed(
        &mut self,
        req: pb::CheckpointedRequest,
    ) -> impl Future<Output = Result<u64, LinkError>> + Send;
}
