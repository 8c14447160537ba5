//! The coordinator link over gRPC.

use dprox_transport::pb;
use tonic::transport::Channel;

use super::{CoordinatorLink, LinkError};

/// The gRPC client of the coordinator at one address (connected on first use, then reused).
#[derive(Clone, Debug)]
pub struct GrpcCoordinator {
    address: String,
    /// The cluster secret presented at registration (none when empty).
    secret: String,
    client: pb::coordinator_client::CoordinatorClient<Channel>,
}

impl GrpcCoordinator {
    /// A client for the coordinator at `address` (host:port) of a run whose models have `dim`
    /// parameters (reports carry one: calls may be that large), secured by `security`.
    pub fn new(
        address: &str,
        dim: usize,
        security: &dprox_net::Security,
    ) -> Result<GrpcCoordinator, LinkError> {
        let channel = dprox_transport::endpoint(security, address, dprox_net::Peer::Coordinator)
            .map_err(|e| LinkError::Refused(format!("invalid coordinator address {address}: {e}")))?
            .connect_lazy();
        let max = dprox_net::limits::coordinator_message_bytes(dim);
        let client = pb::coordinator_client::CoordinatorClient::new(channel)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        Ok(GrpcCoordinator { address: address.to_string(), secret: String::new(), client })
    }

    /// Presents `secret` when registering.
    pub fn with_secret(mut self, secret: &str) -> GrpcCoordinator {
        self.secret = secret.to_string();
        self
    }
}

fn link_error(s: tonic::Status) -> LinkError {
    match s.code() {
        tonic::Code::Unavailable => LinkError::Unreachable(dprox_transport::describe(&s)),
        _ => LinkError::Refused(s.message().to_string()),
    }
}

impl CoordinatorLink for GrpcCoordinator {
    fn address(&self) -> String {
        self.address.clone()
    }

    async fn register(&mut self, mut req: pb::RegisterRequest) -> Result<pb::RegisterReply, LinkError> {
        req.secret = self.secret.clone();
        self.client.register(req).await.map(tonic::Response::into_inner).map_err(link_error)
    }

    async fn report(&mut self, req: pb::ReportRequest) -> Result<(), LinkError> {
        self.client.report(req).await.map(drop).map_err(link_error)
    }

    async fn heartbeat(&mut self, req: pb::HeartbeatRequest) -> Result<pb::HeartbeatReply, LinkError> {
        self.client.heartbeat(req).await.map(tonic::Response::into_inner).map_err(link_error)
    }

    async fn finish(&mut self, req: pb::FinishRequest) -> Result<(), LinkError> {
        self.client.finish(req).await.map(drop).map_err(link_error)
    }

    async fn sync(&mut self, req: pb::SyncRequest) -> Result<pb::SyncReply, LinkError> {
        self.client.sync(req).await.map(tonic::Response::into_inner).map_err(link_error)
    }

    async fn lost(&mut self, req: pb::LostRequest) -> Result<(), LinkError> {
        self.client.lost(req).await.map(drop).map_err(link_error)
    }

    async fn leave(&mut self, req: pb::LeaveRequest) -> Result<(), LinkError> {
        self.client.leave(req).await.map(drop).map_err(link_error)
    }

    async fn checkpointed(&mut self, req: pb::CheckpointedRequest) -> Result<u64, LinkError> {
        self.client.checkpointed(req).await.map(|r| r.into_inner().kept_from).map_err(link_error)
    }
}
