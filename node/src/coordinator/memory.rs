//! A coordinator in memory, for driving nodes in one process: it registers them, replies when all
//! have (with the peers and mixing weights of the run), records their reports and finishes, and
//! lets a test abort the run or make the coordinator unreachable.

use std::sync::{Arc, Mutex};

use dprox_prepare::Prepared;
use dprox_transport::pb;
use tokio::sync::watch;

use super::{CoordinatorLink, LinkError};

#[derive(Debug)]
struct Book {
    registered: Vec<Option<String>>,
    /// (node, iteration, x) of every report, in arrival order.
    reports: Vec<(usize, u64, Vec<f32>)>,
    finished: Vec<(usize, String)>,
    heartbeats: usize,
    abort: Option<String>,
    unreachable: bool,
}

/// An in-memory coordinator for the run it was made with; clones share it.
#[derive(Clone, Debug)]
pub struct MemoryCoordinator {
    run: Arc<Prepared>,
    book: Arc<Mutex<Book>>,
    started: watch::Sender<bool>,
}

impl MemoryCoordinator {
    /// A coordinator waiting for the nodes of `run`.
    pub fn new(run: Arc<Prepared>) -> MemoryCoordinator {
        let book = Book {
            registered: vec![None; run.n()],
            reports: Vec::new(),
            finished: Vec::new(),
            heartbeats: 0,
            abort: None,
            unreachable: false,
        };
        MemoryCoordinator { run, book: Arc::new(Mutex::new(book)), started: watch::channel(false).0 }
    }

    /// Aborts the run: the next heartbeat of every node carries `why`.
    pub fn abort(&self, why: &str) {
        self.book().abort = Some(why.to_string());
    }

    /// From now on every call fails as if the coordinator were gone.
    pub fn disconnect(&self) {
        self.book().unreachable = true;
    }

    /// The reports received, as (node, iteration), in arrival order.
    pub fn reports(&self) -> Vec<(usize, u64)> {
        self.book().reports.iter().map(|r| (r.0, r.1)).collect()
    }

    /// The iterate node `id` reported at `iteration`, if it did.
    pub fn iterate(&self, id: usize, iteration: u64) -> Option<Vec<f32>> {
        self.book().reports.iter().find(|r| (r.0, r.1) == (id, iteration)).map(|r| r.2.clone())
    }

    /// The nodes that finished, with their error (empty when they completed), in order.
    pub fn finished(&self) -> Vec<(usize, String)> {
        self.book().finished.clone()
    }

    /// Heartbeats answered so far.
    pub fn heartbeats(&self) -> usize {
        self.book().heartbeats
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().expect("not poisoned")
    }

    fn reachable(&self) -> Result<(), LinkError> {
        if self.book().unreachable {
            return Err(LinkError::Unreachable("the coordinator is disconnected".into()));
        }
        Ok(())
    }
}

impl CoordinatorLink for MemoryCoordinator {
    fn address(&self) -> String {
        "memory:coordinator".into()
    }

    async fn register(&mut self, req: pb::RegisterRequest) -> Result<pb::RegisterReply, LinkError> {
        self.reachable()?;
        let id = req.id as usize;
        let all = {
            let mut book = self.book();
            book.registered[id] = Some(req.address);
            book.registered.iter().all(Option::is_some)
        };
        if all {
            self.started.send_replace(true);
        }
        let _ = self.started.subscribe().wait_for(|&s| s).await;
        let book = self.book();
        let peers = self
            .run
            .peers(id)
            .into_iter()
            .map(|j| pb::Peer { id: j as u32, address: book.registered[j].clone().unwrap_or_default() })
            .collect();
        let row =
            self.run.node_config(id).row.iter().map(|&(j, w)| pb::Weight { peer: j as u32, w }).collect();
        Ok(pb::RegisterReply {
            run_id: "memory".into(),
            token: bytes::Bytes::from_static(b"token"),
            peers,
            row,
        })
    }

    async fn report(&mut self, req: pb::ReportRequest) -> Result<(), LinkError> {
        self.reachable()?;
        let x = req.x.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        self.book().reports.push((req.id as usize, req.iteration, x));
        Ok(())
    }

    async fn heartbeat(&mut self, _req: pb::HeartbeatRequest) -> Result<pb::HeartbeatReply, LinkError> {
        self.reachable()?;
        let mut book = self.book();
        book.heartbeats += 1;
        Ok(pb::HeartbeatReply { abort: book.abort.clone().unwrap_or_default() })
    }

    async fn finish(&mut self, req: pb::FinishRequest) -> Result<(), LinkError> {
        self.reachable()?;
        self.book().finished.push((req.id as usize, req.error));
        Ok(())
    }
}
