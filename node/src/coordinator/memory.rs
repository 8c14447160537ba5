//! A coordinator in memory, for driving nodes in one process: it registers them, replies when all
//! have (with the peers and mixing weights of the run), records their reports and finishes, forms
//! membership epochs (a barrier over the members: when every member has synced, the next epoch
//! starts at the furthest iteration among them, planned by `Prepared::plan_epoch`; a member's
//! sync in the middle of an epoch tells the others to freeze, as the real coordinator does), and
//! lets a test abort the run or make the coordinator unreachable.

use std::sync::{Arc, Mutex};

use std::collections::BTreeMap;

use dprox_prepare::{Epoch, Prepared};
use dprox_transport::pb;
use tokio::sync::watch;

use super::{CoordinatorLink, LinkError};

#[derive(Debug)]
struct Book {
    registered: Vec<Option<String>>,
    /// (node, iteration, x) of every report, in arrival order.
    reports: Vec<(usize, u64, Vec<f32>)>,
    finished: Vec<(usize, String)>,
    /// Losses reported: (reporter, lost node, reason, when).
    losses: Vec<(usize, usize, String, tokio::time::Instant)>,
    heartbeats: usize,
    abort: Option<String>,
    unreachable: bool,
    /// The current epoch, and the members that have synced for the next one (at their iteration).
    epoch: Epoch,
    members: Vec<usize>,
    synced: BTreeMap<usize, u64>,
    freeze: bool,
    /// How long a heartbeat reply takes to reach its node after it was written.
    heartbeat_delay: std::time::Duration,
}

/// An in-memory coordinator for the run it was made with; clones share it.
#[derive(Clone, Debug)]
pub struct MemoryCoordinator {
    run: Arc<Prepared>,
    book: Arc<Mutex<Book>>,
    started: watch::Sender<bool>,
    /// The index of the latest epoch formed.
    epochs: watch::Sender<u64>,
}

impl MemoryCoordinator {
    /// A coordinator waiting for the nodes of `run`.
    pub fn new(run: Arc<Prepared>) -> MemoryCoordinator {
        let book = Book {
            registered: vec![None; run.n()],
            reports: Vec::new(),
            finished: Vec::new(),
            losses: Vec::new(),
            heartbeats: 0,
            abort: None,
            unreachable: false,
            epoch: run.initial_epoch(),
            members: (0..run.n()).collect(),
            synced: BTreeMap::new(),
            freeze: false,
            heartbeat_delay: std::time::Duration::ZERO,
        };
        MemoryCoordinator {
            run,
            book: Arc::new(Mutex::new(book)),
            started: watch::channel(false).0,
            epochs: watch::channel(0).0,
        }
    }

    /// Aborts the run: the next heartbeat of every node carries `why`.
    pub fn abort(&self, why: &str) {
        self.book().abort = Some(why.to_string());
    }

    /// From now on every heartbeat reply reaches its node `delay` after the coordinator wrote
    /// it (a slow link): a freeze can then arrive after the epoch it was for has formed.
    pub fn delay_heartbeat_replies(&self, delay: std::time::Duration) {
        self.book().heartbeat_delay = delay;
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

    /// The losses reported, as (reporter, lost node, reason, when), in arrival order.
    pub fn losses(&self) -> Vec<(usize, usize, String, tokio::time::Instant)> {
        self.book().losses.clone()
    }

    /// The index of the latest membership epoch formed (0: the initial one).
    pub fn epoch(&self) -> u64 {
        *self.epochs.borrow()
    }

    /// Heartbeats answered so far.
    pub fn heartbeats(&self) -> usize {
        self.book().heartbeats
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().expect("not poisoned")
    }

    /// Forms the next epoch when every member has synced.
    fn maybe_form(&self) {
        let mut book = self.book();
        if book.members.is_empty() || !book.members.iter().all(|m| book.synced.contains_key(m)) {
            return;
        }
        let start = book.synced.values().copied().max().unwrap_or(0);
        let index = book.epoch.index + 1;
        let epoch = self.run.plan_epoch(index, start, &book.members, &[]).expect("a connected membership");
        book.epoch = epoch;
        book.synced.clear();
        book.freeze = false;
        drop(book);
        self.epochs.send_replace(index);
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
            epoch: 0,
            iteration: 0,
            batch_size: 0,
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
        let (reply, delay) = {
            let mut book = self.book();
            book.heartbeats += 1;
            let reply =
                pb::HeartbeatReply { abort: book.abort.clone().unwrap_or_default(), freeze: book.freeze };
            (reply, book.heartbeat_delay)
        };
        tokio::time::sleep(delay).await;
        Ok(reply)
    }

    async fn sync(&mut self, req: pb::SyncRequest) -> Result<pb::SyncReply, LinkError> {
        self.reachable()?;
        let id = req.id as usize;
        {
            let mut book = self.book();
            // The real coordinator's rule: a member's sync in the middle of an epoch, with no
            // change forming, gets an epoch of the same members (the others are told to freeze
            // and sync), rather than leaving the node waiting.
            let ahead = book.epoch.index > req.epoch;
            if !ahead && !req.at_boundary && !book.freeze && book.members.contains(&id) {
                book.freeze = true;
            }
            book.synced.insert(id, req.iteration);
        }
        self.maybe_form();
        let _ = self.epochs.subscribe().wait_for(|&e| e > req.epoch).await;
        let book = self.book();
        let e = &book.epoch;
        let Some(row) = e.row(id) else {
            return Ok(pb::SyncReply { epoch: None, excluded: true, abort: String::new() });
        };
        let peers = e
            .peers(id)
            .into_iter()
            .map(|j| pb::Peer { id: j as u32, address: format!("memory:{j}") })
            .collect();
        let row = row.iter().map(|&(j, w)| pb::Weight { peer: j as u32, w }).collect();
        let epoch = pb::EpochInfo { index: e.index, start: e.start, peers, row };
        Ok(pb::SyncReply { epoch: Some(epoch), excluded: false, abort: String::new() })
    }

    async fn lost(&mut self, req: pb::LostRequest) -> Result<(), LinkError> {
        self.reachable()?;
        let mut book = self.book();
        book.losses.push((
            req.id as usize,
            req.peer as usize,
            req.reason.clone(),
            tokio::time::Instant::now(),
        ));
        book.members.retain(|&m| m != req.peer as usize);
        book.synced.remove(&(req.peer as usize));
        book.freeze = true;
        drop(book);
        self.maybe_form();
        Ok(())
    }

    async fn leave(&mut self, req: pb::LeaveRequest) -> Result<(), LinkError> {
        self.reachable()?;
        self.book().members.retain(|&m| m != req.id as usize);
        self.maybe_form();
        Ok(())
    }

    async fn checkpointed(&mut self, _req: pb::CheckpointedRequest) -> Result<u64, LinkError> {
        self.reachable().map(|()| u64::MAX)
    }

    async fn finish(&mut self, req: pb::FinishRequest) -> Result<(), LinkError> {
        self.reachable()?;
        self.book().finished.push((req.id as usize, req.error));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(nodes: usize) -> Arc<Prepared> {
        let text = format!(
            "[run]\nalgorithm = \"dproxsgt\"\niterations = 20\n[topology]\nkind = \"ring\"\nnodes = {nodes}\n\
             [data]\nsynthetic = {{ kind = \"least_squares\", samples = 60, features = 4 }}\n\
             [model]\nkind = \"least_squares\"\n[optimizer]\nlr = 0.05\nbatch_size = 4\n"
        );
        let cfg = dprox_config::parse(&text, "m.toml".as_ref()).unwrap();
        Arc::new(Prepared::new(cfg, ".".as_ref(), "m".into()).unwrap())
    }

    fn sync(id: u32, iteration: u64, at_boundary: bool) -> pb::SyncRequest {
        pb::SyncRequest { id, epoch: 0, iteration, at_boundary }
    }

    #[tokio::test]
    async fn a_sync_with_no_change_forming_freezes_the_others_and_forms_an_epoch_of_the_same_members() {
        let c = MemoryCoordinator::new(ring(3));
        let beat = || pb::HeartbeatRequest { id: 1, ..Default::default() };
        assert!(!c.clone().heartbeat(beat()).await.unwrap().freeze);
        let first = tokio::spawn({
            let mut c = c.clone();
            async move { c.sync(sync(0, 5, false)).await }
        });
        tokio::task::yield_now().await;
        assert!(c.clone().heartbeat(beat()).await.unwrap().freeze, "the others are told to freeze");
        assert_eq!(c.epoch(), 0, "no epoch before every member synced");
        let (mut c1, mut c2) = (c.clone(), c.clone());
        let (r1, r2) = tokio::join!(c1.sync(sync(1, 4, false)), c2.sync(sync(2, 5, false)));
        for reply in [first.await.unwrap(), r1, r2] {
            let e = reply.unwrap().epoch.expect("an epoch");
            assert_eq!((e.index, e.start, e.peers.len()), (1, 5, 2));
        }
        assert!(!c.clone().heartbeat(beat()).await.unwrap().freeze);
    }

    #[tokio::test]
    async fn syncs_at_a_boundary_do_not_freeze_anyone() {
        let c = MemoryCoordinator::new(ring(3));
        let first = tokio::spawn({
            let mut c = c.clone();
            async move { c.sync(sync(0, 8, true)).await }
        });
        tokio::task::yield_now().await;
        let beat = pb::HeartbeatRequest { id: 1, ..Default::default() };
        assert!(!c.clone().heartbeat(beat).await.unwrap().freeze);
        first.abort();
    }
}
