//! Gossip over gRPC: this node's `Gossip` server (refusing what is not of its run, from its
//! neighbours, within size) and one client link per neighbour.

use std::time::Duration;

use std::sync::Arc;

use bytes::Bytes;
use dprox_compress::Compressed;
use dprox_net::Security;
use dprox_transport::{
    Auth, GossipService, Inbound, PayloadPool, PeerClient, PublishedModel, TransportError, pb,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::task::AbortOnDropHandle;

use super::links::Links;
use super::{Gossip, GossipEvent, Outbound, PeerAddr, PeerDown, Session};

/// How long an early message (a neighbour that started first) may wait for this node to learn
/// the run's token.
const AUTH_WAIT: Duration = Duration::from_secs(30);

/// The gRPC gossip of one node: serving from [`GrpcGossip::serve`] on, linked to the neighbours
/// from [`Gossip::connect`] on.
pub struct GrpcGossip {
    id: usize,
    dim: usize,
    address: String,
    auth: watch::Sender<Option<Auth>>,
    inbound: mpsc::Receiver<Inbound>,
    /// Failed deliveries of the current session's links (a fresh channel per session).
    errors: mpsc::UnboundedReceiver<TransportError>,
    pool: PayloadPool,
    links: Option<Links>,
    /// Bytes sent over the links of earlier epochs (payload, framed).
    retired: (u64, u64),
    /// The run's id and token, for FetchModel requests.
    credentials: Option<(String, Bytes)>,
    model: watch::Sender<Option<PublishedModel>>,
    stop: watch::Sender<bool>,
    server: AbortOnDropHandle<Result<(), tonic::transport::Error>>,
    security: Security,
    /// Whether links ask neighbours on this host for shared memory.
    shared_memory: bool,
}

impl GrpcGossip {
    /// Serves node `id`'s gossip (models of `dim` parameters) on `listener` at once, so that the
    /// address registered with the coordinator already answers; secured by `security`, under
    /// the limits of [`dprox_net::limits::GOSSIP`]. With `shared_memory`, neighbours on this host
    /// hand their messages over in shared memory, and this node does so to them (see
    /// [`dprox_transport::memory`]).
    pub fn serve(
        id: usize,
        dim: usize,
        listener: TcpListener,
        security: Security,
        shared_memory: bool,
    ) -> Result<GrpcGossip, TransportError> {
        let address = listener
            .local_addr()
            .map_err(|e| TransportError::Internal(format!("the gossip listener has no address: {e}")))?
            .to_string();
        let (auth, auth_rx) = watch::channel::<Option<Auth>>(None);
        let (in_tx, inbound) = mpsc::channel::<Inbound>(1024);
        let (stop, mut stop_rx) = watch::channel(false);
        let pool = PayloadPool::default();
        let (model, model_rx) = watch::channel(None);
        let svc = GossipService::new(dim, auth_rx, in_tx, AUTH_WAIT)
            .with_pool(pool.clone())
            .with_node_metrics(id)
            .with_model(model_rx)
            .with_stop(stop_rx.clone())
            .with_tls(security.is_tls())
            .with_shared_memory(shared_memory);
        let limits = dprox_net::limits::GOSSIP;
        let server = dprox_transport::server(&security, &limits)
            .map_err(|e| TransportError::Internal(e.to_string()))?
            .add_service(svc.into_server())
            .serve_with_incoming_shutdown(
                dprox_net::incoming(listener, limits, "gossip", security.is_tls()),
                async move {
                    let _ = stop_rx.wait_for(|&s| s).await;
                },
            );
        Ok(GrpcGossip {
            id,
            dim,
            address,
            auth,
            inbound,
            errors: mpsc::unbounded_channel().1,
            pool,
            links: None,
            retired: (0, 0),
            credentials: None,
            model,
            stop,
            server: AbortOnDropHandle::new(tokio::spawn(server)),
            security,
            shared_memory,
        })
    }
}

impl GrpcGossip {
    /// Registers `address` (a host name or IP and port peers can dial) instead of the
    /// listener's own address.
    pub fn advertising(mut self, address: &str) -> GrpcGossip {
        self.address = address.to_string();
        self
    }
}

impl Gossip for GrpcGossip {
    fn address(&self) -> String {
        self.address.clone()
    }

    fn connect(&mut self, session: &Session) -> Result<(), TransportError> {
        self.auth.send_replace(Some(Auth {
            run_id: session.run_id.clone(),
            token: session.token.to_vec(),
            peers: (0..session.nodes).filter(|&j| j != self.id).collect(),
        }));
        self.credentials = Some((session.run_id.clone(), session.token.clone()));
        if let Some(old) = self.links.take() {
            let (p, f) = old.totals();
            self.retired = (self.retired.0 + p, self.retired.1 + f);
        }
        // The old links' tasks end with them, and their failures with their channel: a delivery
        // of the last epoch that failed before this point is no news in this one (its peer, if
        // it is gone, fails this epoch's links or probes too).
        let (errors_tx, errors) = mpsc::unbounded_channel();
        self.errors = errors;
        self.links =
            Some(Links::new(self.id, self.dim, session, (&self.security, self.shared_memory), errors_tx)?);
        Ok(())
    }

    fn publish(&mut self, epoch: u64, x: &[f32]) {
        self.model.send_replace(Some(PublishedModel { epoch, x: Arc::new(x.to_vec()) }));
    }

    async fn fetch(&mut self, peer: &PeerAddr, epoch: u64, dim: usize) -> Result<Vec<f32>, TransportError> {
        let (run_id, token) = self
            .credentials
            .clone()
            .ok_or_else(|| TransportError::Internal("fetch before connect".into()))?;
        PeerClient::new(peer.id, &peer.address, &self.security)?
            .fetch_model(&run_id, &token, self.id, epoch, dim)
            .await
    }

    fn send(&mut self, message: Outbound) {
        if let Some(links) = &mut self.links {
            links.send(message);
        }
    }

    async fn next(&mut self) -> Option<GossipEvent> {
        // Failed deliveries first: a node whose inbox is always busy must still see them.
        tokio::select! {
            biased;
            Some(e) = self.errors.recv() => Some(GossipEvent::SendFailed(e)),
            m = self.inbound.recv() => m.map(GossipEvent::Message),
        }
    }

    fn try_next(&mut self) -> Option<GossipEvent> {
        if let Ok(e) = self.errors.try_recv() {
            return Some(GossipEvent::SendFailed(e));
        }
        self.inbound.try_recv().ok().map(GossipEvent::Message)
    }

    async fn probe(&mut self, peers: &[usize]) -> Option<PeerDown> {
        match &mut self.links {
            Some(links) => links.probe(peers).await,
            None => None,
        }
    }

    fn recycle(&mut self, payload: Compressed) {
        self.pool.give(payload);
    }

    fn traffic(&self) -> Vec<pb::LinkBytes> {
        self.links.as_ref().map(Links::traffic).unwrap_or_default()
    }

    fn totals(&self) -> (u64, u64) {
        let (p, f) = self.links.as_ref().map(Links::totals).unwrap_or_default();
        (self.retired.0 + p, self.retired.1 + f)
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        if let Some(links) = &mut self.links {
            links.close().await?;
        }
        // A delivery that failed at the very end.
        match self.errors.try_recv() {
            Ok(e) => Err(e),
            Err(_) => Ok(()),
        }
    }

    async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        // Graceful, but bounded: a peer that died mid-stream must not keep this process alive
        // (the handle aborts the server when the wait runs out).
        let _ = tokio::time::timeout(Duration::from_secs(3), &mut self.server).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dprox_core::{Exchange, Recipients};

    fn session(epoch: u64, peers: Vec<PeerAddr>) -> Session {
        let shapes = vec![None; peers.len()];
        Session {
            run_id: "r".into(),
            token: Bytes::from_static(b"t"),
            nodes: 3,
            epoch,
            peers,
            shapes,
            seed: 1,
        }
    }

    /// Node 1 at an address that refuses connections (a port just bound and released).
    fn gone() -> PeerAddr {
        let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        PeerAddr { id: 1, address }
    }

    fn message(epoch: u64) -> Outbound {
        let data = Bytes::from(vec![0u8; 16]);
        Outbound { to: Recipients::All, epoch, iteration: 0, exchange: Exchange::X, data }
    }

    /// A delivery of the last epoch that failed before the node connected the next one is not
    /// reported in the new session (it would be taken for a new loss there); within its
    /// session, it is.
    #[tokio::test]
    async fn a_failure_of_the_last_sessions_links_is_not_reported_in_the_next() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut gossip = GrpcGossip::serve(0, 4, listener, Security::Insecure, true).unwrap();
        gossip.connect(&session(0, vec![gone()])).unwrap();
        gossip.send(message(0));
        tokio::time::timeout(Duration::from_secs(10), async {
            while gossip.errors.is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the delivery to a closed port fails within 10 s");
        gossip.connect(&session(1, vec![])).unwrap();
        assert!(gossip.try_next().is_none(), "the old session's failure is gone with it");

        gossip.connect(&session(2, vec![gone()])).unwrap();
        gossip.send(message(2));
        match tokio::time::timeout(Duration::from_secs(10), gossip.next())
            .await
            .expect("an event within 10 s")
        {
            Some(GossipEvent::SendFailed(TransportError::Send { peer: 1, iteration: 0, .. })) => {}
            other => panic!("expected the failed delivery to node 1, got {other:?}"),
        }
    }
}
