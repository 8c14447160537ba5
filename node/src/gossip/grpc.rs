//! Gossip over gRPC: this node's `Gossip` server (refusing what is not of its run, from its
//! neighbours, within size) and one client link per neighbour.

use std::time::Duration;

use dprox_compress::Compressed;
use dprox_transport::{Auth, GossipService, Inbound, PayloadPool, TransportError, pb};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::task::AbortOnDropHandle;

use super::links::Links;
use super::{Gossip, GossipEvent, Outbound, PeerDown, Session};

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
    errors_tx: mpsc::UnboundedSender<TransportError>,
    errors: mpsc::UnboundedReceiver<TransportError>,
    pool: PayloadPool,
    links: Option<Links>,
    stop: watch::Sender<bool>,
    server: AbortOnDropHandle<Result<(), tonic::transport::Error>>,
}

impl GrpcGossip {
    /// Serves node `id`'s gossip (models of `dim` parameters) on `listener` at once, so that the
    /// address registered with the coordinator already answers.
    pub fn serve(id: usize, dim: usize, listener: TcpListener) -> Result<GrpcGossip, TransportError> {
        let address = listener
            .local_addr()
            .map_err(|e| TransportError::Internal(format!("the gossip listener has no address: {e}")))?
            .to_string();
        let (auth, auth_rx) = watch::channel::<Option<Auth>>(None);
        let (in_tx, inbound) = mpsc::channel::<Inbound>(1024);
        let (stop, mut stop_rx) = watch::channel(false);
        let pool = PayloadPool::default();
        let svc =
            GossipService::new(dim, auth_rx, in_tx, AUTH_WAIT).with_pool(pool.clone()).with_node_metrics(id);
        let server = dprox_transport::server().add_service(svc.into_server()).serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async move {
                let _ = stop_rx.wait_for(|&s| s).await;
            },
        );
        let (errors_tx, errors) = mpsc::unbounded_channel();
        Ok(GrpcGossip {
            id,
            dim,
            address,
            auth,
            inbound,
            errors_tx,
            errors,
            pool,
            links: None,
            stop,
            server: AbortOnDropHandle::new(tokio::spawn(server)),
        })
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
            peers: session.peers.iter().map(|p| p.id).collect(),
        }));
        self.links = Some(Links::new(self.id, self.dim, session, self.errors_tx.clone())?);
        Ok(())
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
