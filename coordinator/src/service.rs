//! The Coordinator gRPC service: each call translated to [`Shared`] and back.

use std::sync::Arc;

use dprox_net::Peer;
use dprox_transport::pb;
use tonic::{Request, Response, Status};

use crate::shared::{Refusal, Shared};

/// The gRPC face of the coordinator.
pub(crate) struct CoordinatorService {
    pub shared: Arc<Shared>,
    /// Whether callers come with certificates (mutual TLS): then each call is checked against
    /// the identity they name.
    pub tls: bool,
}

impl From<Refusal> for Status {
    fn from(r: Refusal) -> Status {
        match r {
            Refusal::Unauthenticated(m) => Status::unauthenticated(m),
            Refusal::Precondition(m) => Status::failed_precondition(m),
            Refusal::Invalid(m) => Status::invalid_argument(m),
            Refusal::Aborted(m) => Status::aborted(m),
            Refusal::Unavailable(m) => Status::unavailable(m),
            Refusal::Exhausted(m) => Status::resource_exhausted(m),
        }
    }
}

impl CoordinatorService {
    /// With TLS, the caller must be node `id` (its certificate names it): a node reports,
    /// heartbeats, syncs and finishes for itself only. Without TLS anyone may (`--insecure`).
    fn as_node<T>(&self, req: &Request<T>, id: u32) -> Result<(), Status> {
        if !self.tls {
            return Ok(());
        }
        match Peer::of_request(req) {
            Some(Peer::Node(n)) if n == id as usize => Ok(()),
            Some(other) => Err(Status::permission_denied(format!("{other} may not act for node {id}"))),
            None => Err(Status::unauthenticated("no certificate of this cluster")),
        }
    }

    /// With TLS, the caller must hold a certificate of this cluster (any identity may read the
    /// status).
    fn member<T>(&self, req: &Request<T>) -> Result<(), Status> {
        match !self.tls || Peer::of_request(req).is_some() {
            true => Ok(()),
            false => Err(Status::unauthenticated("no certificate of this cluster")),
        }
    }
}

#[tonic::async_trait]
impl pb::coordinator_server::Coordinator for CoordinatorService {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterReply>, Status> {
        self.as_node(&req, req.get_ref().id)?;
        Ok(Response::new(self.shared.register(req.into_inner()).await?))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatReply>, Status> {
        self.as_node(&req, req.get_ref().id)?;
        Ok(Response::new(self.shared.heartbeat(req.into_inner())))
    }

    async fn report(&self, req: Request<pb::ReportRequest>) -> Result<Response<pb::ReportReply>, Status> {
        self.as_node(&req, req.get_ref().id)?;
        self.shared.report(req.into_inner()).await?;
        Ok(Response::new(pb::ReportReply {}))
    }

    async fn finish(&self, req: Request<pb::FinishRequest>) -> Result<Response<pb::FinishReply>, Status> {
        self.as_node(&req, req.get_ref().id)?;
        self.shared.finish(req.into_inner())?;
        Ok(Response::new(pb::FinishReply {}))
    }

    async fn status(&self, req: Request<pb::StatusRequest>) -> Result<Response<pb::StatusReply>, Status> {
        self.member(&req)?;
        Ok(Response::new(self.shared.progress()))
    }

    async fn sync(&self, req: Request<pb::SyncRequest>) -> Result<Response<pb::SyncReply>, Status> {
        self.as_node(&req, req.get_ref().id)?;
        Ok(Response::new(self.shared.sync(req.into_inner()).await?))
    }

    async fn lost(&self, req: Request<pb::LostRequest>) -> Result<Response<pb::LostReply>, Status> {
        self.as_node(&req, req.get_ref().id)?;
        self.shared.lost(req.into_inner());
        Ok(Response::new(pb::LostReply {}))
    }

    async fn leave(&self, req: Request<pb::LeaveRequest>) -> Result<Response<pb::LeaveReply>, Status> {
        self.as_node(&req, req.get_ref().id)?;
        self.shared.leave(req.into_inner());
        Ok(Response::new(pb::LeaveReply {}))
    }

    async fn checkpointed(
        &self,
        req: Request<pb::CheckpointedRequest>,
    ) -> Result<Response<pb::CheckpointedReply>, Status> {
        self.as_node(&req, req.get_ref().id)?;
        let kept_from = self.shared.checkpointed(req.into_inner());
        Ok(Response::new(pb::CheckpointedReply { kept_from }))
    }
}
