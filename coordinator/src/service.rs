//! The Coordinator gRPC service: each call translated to [`Shared`] and back.

use std::sync::Arc;

use dprox_transport::pb;
use tonic::{Request, Response, Status};

use crate::shared::{Refusal, Shared};

/// The gRPC face of the coordinator.
pub(crate) struct CoordinatorService(pub Arc<Shared>);

impl From<Refusal> for Status {
    fn from(r: Refusal) -> Status {
        match r {
            Refusal::Unauthenticated(m) => Status::unauthenticated(m),
            Refusal::Precondition(m) => Status::failed_precondition(m),
            Refusal::Invalid(m) => Status::invalid_argument(m),
            Refusal::Aborted(m) => Status::aborted(m),
            Refusal::Unavailable(m) => Status::unavailable(m),
        }
    }
}

#[tonic::async_trait]
impl pb::coordinator_server::Coordinator for CoordinatorService {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterReply>, Status> {
        Ok(Response::new(self.0.register(req.into_inner()).await?))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatReply>, Status> {
        Ok(Response::new(self.0.heartbeat(req.into_inner())))
    }

    async fn report(&self, req: Request<pb::ReportRequest>) -> Result<Response<pb::ReportReply>, Status> {
        self.0.report(req.into_inner())?;
        Ok(Response::new(pb::ReportReply {}))
    }

    async fn finish(&self, req: Request<pb::FinishRequest>) -> Result<Response<pb::FinishReply>, Status> {
        self.0.finish(req.into_inner());
        Ok(Response::new(pb::FinishReply {}))
    }

    async fn status(&self, _: Request<pb::StatusRequest>) -> Result<Response<pb::StatusReply>, Status> {
        Ok(Response::new(self.0.progress()))
    }

    async fn sync(&self, req: Request<pb::SyncRequest>) -> Result<Response<pb::SyncReply>, Status> {
        Ok(Response::new(self.0.sync(req.into_inner()).await?))
    }

    async fn lost(&self, req: Request<pb::LostRequest>) -> Result<Response<pb::LostReply>, Status> {
        self.0.lost(req.into_inner());
        Ok(Response::new(pb::LostReply {}))
    }

    async fn leave(&self, req: Request<pb::LeaveRequest>) -> Result<Response<pb::LeaveReply>, Status> {
        self.0.leave(req.into_inner());
        Ok(Response::new(pb::LeaveReply {}))
    }

    async fn checkpointed(
        &self,
        req: Request<pb::CheckpointedRequest>,
    ) -> Result<Response<pb::CheckpointedReply>, Status> {
        let kept_from = self.0.checkpointed(req.into_inner());
        Ok(Response::new(pb::CheckpointedReply { kept_from }))
    }
}
