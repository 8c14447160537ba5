//! The launched cluster while it runs: it shows progress, enacts the config's fault schedule on
//! the node processes (SIGKILL at a scheduled crash, SIGSTOP and SIGCONT around a pause, a
//! restart with `--join` for a scheduled rejoin), reports nodes that die, and ends when the
//! coordinator does. A node that dies is the coordinator's business: the run goes on without it
//! when enough nodes remain.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use dprox_coordinator::ResumePoint;
use dprox_eval::Summary;
use dprox_prepare::{Change, ChangeKind};
use dprox_transport::pb;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::Instant;

use super::procs::{FaultLine, NodeStart, Proc, Secured, start_coordinator, start_node, tail};
use super::{Args, Signals};

/// A fault line a node printed: (node, line).
type Announced = (usize, FaultLine);

/// The coordinator and node processes of a launched run.
pub(super) struct Cluster<'a> {
    args: &'a Args,
    secured: &'a Secured,
    config: PathBuf,
    pub addr: String,
    coordinator: Proc,
    /// By node id; None once a node's process has ended for good.
    nodes: Vec<Option<Proc>>,
    schedule: Vec<Change>,
    /// Fault lines from the nodes' stdout readers, (node, line): a sender for each new reader.
    faults: (UnboundedSender<Announced>, UnboundedReceiver<Announced>),
    /// Nodes to start again with `--join` once their process has ended.
    restart: std::collections::BTreeSet<usize>,
    /// Paused nodes and when they continue.
    paused: Vec<(Instant, usize)>,
    bar: indicatif::ProgressBar,
}

impl<'a> Cluster<'a> {
    /// Starts the coordinator and the nodes of a fresh run, or (`resume`) of the run in the
    /// folder from its last complete checkpoint: its live members resume, and the nodes away
    /// with a rejoin ahead start to join.
    pub fn start(
        args: &'a Args,
        config: &Path,
        n: usize,
        secured: &'a Secured,
        schedule: Vec<Change>,
        resume: Option<&ResumePoint>,
    ) -> anyhow::Result<Cluster<'a>> {
        let (coordinator, addr) = start_coordinator(args, config, secured, (resume.is_some(), n))?;
        let mut c = Cluster {
            args,
            secured,
            config: config.to_path_buf(),
            addr,
            coordinator,
            nodes: (0..n).map(|_| None).collect(),
            schedule,
            faults: unbounded_channel(),
            restart: Default::default(),
            paused: Vec::new(),
            bar: indicatif::ProgressBar::hidden(),
        };
        for id in 0..n {
            let start = match resume {
                None => Some(NodeStart::Fresh),
                Some(r) if r.live.contains(&id) => Some(NodeStart::Resume),
                Some(r) if r.rejoining.contains(&id) => Some(NodeStart::Join),
                Some(_) => None,
            };
            if let Some(start) = start {
                c.start_node(id, start)?;
            }
        }
        Ok(c)
    }

    fn start_node(&mut self, id: usize, start: NodeStart) -> anyhow::Result<()> {
        let tx = self.faults.0.clone();
        let nodes = (id, self.nodes.len());
        self.nodes[id] =
            Some(start_node(self.args, &self.config, self.secured, &self.addr, nodes, start, tx)?);
        Ok(())
    }

    /// A line above the progress bar (on stderr when there is no bar), unless quiet.
    fn say(&self, line: String) {
        match (self.args.quiet, self.bar.is_hidden()) {
            (true, _) => {}
            (false, true) => eprintln!("{line}"),
            (false, false) => self.bar.println(line),
        }
    }

    /// Watches the run to its end (the coordinator's exit), showing progress on `bar`.
    pub async fn watch(&mut self, bar: indicatif::ProgressBar, signals: &mut Signals) -> anyhow::Result<()> {
        self.bar = bar;
        // A status call that hangs (a wedged coordinator) must not stall the watch.
        let security = self.secured.client();
        let channel = dprox_transport::endpoint(&security, &self.addr, dprox_net::Peer::Coordinator)?
            .timeout(Duration::from_secs(2))
            .connect_lazy();
        let mut status = pb::coordinator_client::CoordinatorClient::new(channel);
        let mut next_look = Instant::now();
        loop {
            tokio::select! {
                _ = signals.interrupt.recv() => bail!("interrupted: stopped the coordinator and every node"),
                _ = signals.terminate.recv() => bail!("terminated (SIGTERM): stopped the coordinator and every node"),
                Some((id, f)) = self.faults.1.recv() => self.enact(id, f)?,
                _ = tokio::time::sleep_until(next_look) => {
                    next_look = Instant::now() + Duration::from_millis(200);
                    self.continue_paused();
                    self.reap_nodes()?;
                    if let Some(end) = self.coordinator_end() {
                        return end;
                    }
                    if let Ok(s) = status.status(pb::StatusRequest {}).await {
                        self.show(&s.into_inner());
                    }
                }
            }
        }
    }

    /// Whether the schedule has node `id` rejoin after iteration `t`.
    fn rejoins_after(&self, id: usize, t: u64) -> bool {
        self.schedule.iter().any(|c| c.node == id && c.kind == ChangeKind::Rejoin && c.iteration > t)
    }

    /// Enacts the scheduled fault node `id` announced.
    fn enact(&mut self, id: usize, fault: FaultLine) -> anyhow::Result<()> {
        let Some(p) = self.nodes[id].as_mut() else { return Ok(()) };
        match fault {
            FaultLine::Crash(t) => {
                p.kill();
                self.nodes[id] = None;
                self.say(format!("node {id}: killed (SIGKILL) at iteration {t} as scheduled"));
                if self.rejoins_after(id, t) {
                    self.start_node(id, NodeStart::Join)?;
                    self.say(format!("node {id}: restarted to rejoin"));
                }
            }
            FaultLine::Leave(t) => {
                if self.rejoins_after(id, t) {
                    self.restart.insert(id);
                }
            }
            FaultLine::Pause(s) => {
                p.signal(nix::sys::signal::Signal::SIGSTOP);
                self.paused.push((Instant::now() + Duration::from_secs_f64(s), id));
                self.say(format!("node {id}: paused (SIGSTOP) for {s} s as scheduled"));
            }
        }
        Ok(())
    }

    /// Sends SIGCONT to the paused nodes whose pause is over.
    fn continue_paused(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = self.paused.drain(..).partition(|&(at, _)| at <= now);
        self.paused = later;
        for (_, id) in due {
            if let Some(p) = self.nodes[id].as_mut() {
                p.signal(nix::sys::signal::Signal::SIGCONT);
            }
        }
    }

    /// Nodes whose process ended: restarted for their scheduled rejoin, or reported.
    fn reap_nodes(&mut self) -> anyhow::Result<()> {
        for id in 0..self.nodes.len() {
            let Some(p) = self.nodes[id].as_mut() else { continue };
            let Some(code) = p.child.try_wait()? else { continue };
            let log = p.log.clone();
            self.nodes[id] = None;
            if self.restart.remove(&id) {
                self.start_node(id, NodeStart::Join)?;
                self.say(format!("node {id}: left as scheduled; restarted to rejoin"));
            } else if !code.success() {
                let how = if code.code() == Some(1) { "stopped with an error" } else { "died" };
                let last = tail(&log, 1);
                self.say(format!("node {id} {how} ({code}): {last}"));
            }
        }
        Ok(())
    }

    /// The end of the run, once the coordinator has exited.
    fn coordinator_end(&mut self) -> Option<anyhow::Result<()>> {
        let code = self.coordinator.child.try_wait().ok()??;
        if code.success() {
            return Some(Ok(()));
        }
        let log = tail(&self.coordinator.log, 5);
        let resume = Summary::read(&self.args.out.join("summary.json"))
            .ok()
            .and_then(|s| s.resume)
            .map(|r| {
                format!(
                    "\nits last complete checkpoint is of iteration {}; resume with:\n  {}",
                    r.iteration, r.command
                )
            })
            .unwrap_or_default();
        let how = if code.code().is_some() { "stopped" } else { "died" };
        Some(Err(anyhow::anyhow!("the coordinator {how} ({code}):\n{log}{resume}")))
    }

    /// The progress bar: the slowest node taking part, and the latest objective.
    fn show(&self, s: &pb::StatusReply) {
        let taking_part = |n: &&pb::NodeStatus| matches!(n.state.as_str(), "running" | "silent" | "done");
        if let Some(min) = s.nodes.iter().filter(taking_part).map(|n| n.iteration).min() {
            self.bar.set_position(min);
        }
        if let Some(obj) = s.last_row.split(',').nth(1) {
            self.bar.set_message(format!("objective {obj}"));
        }
    }
}
