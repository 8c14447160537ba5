//! An in-memory cluster of [`Node`]s driven in lockstep: the reusable driver behind the core's
//! tests and the simulator (raft-rs's `harness`, quinn's test pair). No clock and no sockets: a
//! round lets every node send what it has, then delivers every message in a chosen order.

use dprox_compress::Compressed;

use crate::algorithm::{Exchange, NodeConfig};
use crate::error::CoreError;
use crate::node::{Node, Phase, Recipients, Transmit};

/// In which order a round's messages are handed to their receivers. The iterates must not depend
/// on it (the nodes sum in ascending id whatever the arrival order), which tests check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Receivers in id order, each getting its neighbours' messages in ascending sender id
    /// (every message is applied on arrival: no copies).
    Ascending,
    /// Senders in descending id order (every message but one is buffered first).
    Descending,
    /// A seeded random order of all (sender, receiver) pairs.
    Shuffled(u64),
}

/// One message as it leaves a node: for byte counting and timing by the driver.
#[derive(Debug)]
pub struct Sent<'a> {
    /// The sender.
    pub from: usize,
    /// Number of receivers (the sender's degree, or 1 in a time-varying schedule).
    pub recipients: usize,
    /// The message.
    pub transmit: &'a Transmit<'a>,
}

/// Who applies a round's messages when they are delivered in [`Delivery::Ascending`] order:
/// each receiver's messages in ascending sender order, receivers independent of one another (a
/// node's state depends only on the messages it gets), so they may be served side by side. The
/// core starts no threads: [`InOrder`] serves them one after another, a driver with a thread
/// pool may serve them at once (the simulator does). The same holds for the senders, whose
/// messages of a round are copied into their outboxes before delivery ([`Receivers::each_sender`]).
pub trait Receivers {
    /// Calls `apply(i, &mut nodes[i])` once for every node, in any order or at once, and
    /// returns the error of the lowest `i` whose call failed (the one a delivery in order meets
    /// first).
    fn each(
        &mut self,
        nodes: &mut [Node],
        apply: &(dyn Fn(usize, &mut Node) -> Result<(), CoreError> + Sync),
    ) -> Result<(), CoreError>;

    /// Calls `collect(i, &mut nodes[i], &mut outboxes[i])` once for every node, in any order or
    /// at once: each sender's messages of a round copied into its own outbox (by default one
    /// after another on the calling thread).
    fn each_sender(
        &mut self,
        nodes: &mut [Node],
        outboxes: &mut [Outbox],
        collect: &(dyn Fn(usize, &mut Node, &mut Outbox) + Sync),
    ) {
        for (i, (node, outbox)) in nodes.iter_mut().zip(outboxes).enumerate() {
            collect(i, node, outbox);
        }
    }
}

/// One sender's messages of the current round, held by the harness until they are delivered.
#[derive(Debug, Default)]
pub struct Outbox {
    /// One slot per exchange, so a slot always holds the same compressor's output and its
    /// buffers are reused without reallocation.
    slots: Vec<Slot>,
    /// The slots sent this round, in sending order (usually one).
    order: Vec<usize>,
}

/// A message in an [`Outbox`].
#[derive(Debug)]
struct Slot {
    epoch: u64,
    iteration: u64,
    exchange: Exchange,
    to: Recipients,
    payload: Compressed,
}

impl Outbox {
    /// Takes every message `node` has to send this round (none when it is inactive).
    fn collect(&mut self, node: &mut Node, active: bool) {
        self.order.clear();
        if !active {
            return;
        }
        let exchanges = node.algorithm().exchanges();
        while let Some(t) = node.poll_transmit() {
            let stage = exchanges.iter().position(|&e| e == t.exchange).unwrap_or(0);
            if self.slots.len() <= stage {
                self.slots.resize_with(stage + 1, || Slot {
                    epoch: 0,
                    iteration: 0,
                    exchange: Exchange::X,
                    to: Recipients::All,
                    payload: Compressed::new(0),
                });
            }
            let slot = &mut self.slots[stage];
            (slot.epoch, slot.iteration, slot.exchange, slot.to) = (t.epoch, t.iteration, t.exchange, t.to);
            slot.payload.assign(t.payload);
            self.order.push(stage);
        }
    }

    /// The `m`-th message sent this round.
    fn sent(&self, m: usize) -> &Slot {
        &self.slots[self.order[m]]
    }
}

/// Receivers served one after another on the calling thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct InOrder;

impl Receivers for InOrder {
    fn each(
        &mut self,
        nodes: &mut [Node],
        apply: &(dyn Fn(usize, &mut Node) -> Result<(), CoreError> + Sync),
    ) -> Result<(), CoreError> {
        nodes.iter_mut().enumerate().try_for_each(|(i, node)| apply(i, node))
    }
}

/// n nodes and the in-flight messages between them.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Node>,
    /// Nodes taking part (all, until a membership change says otherwise). Inactive nodes are
    /// neither stepped nor delivered to; their state stays as it was.
    active: Vec<bool>,
    /// Per sender, the messages of the current round.
    outboxes: Vec<Outbox>,
    pairs: Vec<(usize, usize, usize)>,
    /// Per receiver, its range of `pairs` (ascending delivery).
    ranges: Vec<std::ops::Range<usize>>,
    grad: Vec<f32>,
}

impl Cluster {
    /// Builds one node per config (configs in node-id order).
    pub fn new(configs: Vec<NodeConfig>) -> Result<Cluster, CoreError> {
        let nodes = configs.into_iter().map(Node::new).collect::<Result<Vec<_>, _>>()?;
        let n = nodes.len();
        Ok(Cluster {
            active: vec![true; n],
            nodes,
            outboxes: (0..n).map(|_| Outbox { slots: Vec::new(), order: Vec::with_capacity(2) }).collect(),
            pairs: Vec::new(),
            ranges: vec![0..0; n],
            grad: Vec::new(),
        })
    }

    /// The nodes, by id.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Mutable access to the nodes (to hand them gradients, possibly in parallel).
    pub fn nodes_mut(&mut self) -> &mut [Node] {
        &mut self.nodes
    }

    /// Whether node `id` takes part in the run now.
    pub fn is_active(&self, id: usize) -> bool {
        self.active[id]
    }

    /// Takes node `id` out of the run (it left or crashed) or back in (it joined): inactive
    /// nodes are neither stepped nor delivered to. The rows of the active nodes must only name
    /// active peers ([`Node::start_epoch`]).
    pub fn set_active(&mut self, id: usize, active: bool) {
        self.active[id] = active;
    }

    /// Replaces node `id` (a node that joins with a state of its own).
    pub fn replace(&mut self, id: usize, node: Node) {
        self.nodes[id] = node;
    }

    /// One full iteration: `grad(node, x, g)` writes node i's gradient at x into g; then the
    /// exchanges run to completion. `on_send` sees each message once as it leaves its sender.
    pub fn step(
        &mut self,
        mut grad: impl FnMut(usize, &[f32], &mut [f32]),
        delivery: Delivery,
        on_send: impl FnMut(Sent<'_>),
    ) -> Result<(), CoreError> {
        for node in self.nodes.iter_mut().filter(|n| self.active[n.id()]) {
            self.grad.resize(node.dim(), 0.0);
            grad(node.id(), node.params(), &mut self.grad);
            node.handle_gradient(&self.grad)?;
        }
        self.exchange(delivery, on_send)
    }

    /// After every node has had its gradient: runs rounds until every node needs a gradient again.
    pub fn exchange(&mut self, delivery: Delivery, on_send: impl FnMut(Sent<'_>)) -> Result<(), CoreError> {
        self.exchange_with(delivery, &mut InOrder, on_send)
    }

    /// [`Cluster::exchange`], with the messages of an ascending delivery applied by `receivers`
    /// (the iterates are the same whoever applies them).
    pub fn exchange_with(
        &mut self,
        delivery: Delivery,
        receivers: &mut dyn Receivers,
        mut on_send: impl FnMut(Sent<'_>),
    ) -> Result<(), CoreError> {
        let mut round = 0u64;
        loop {
            // The payload copies are most of this: the senders side by side, then `on_send` in
            // node order.
            let active = &self.active;
            receivers.each_sender(&mut self.nodes, &mut self.outboxes, &|i, node, outbox| {
                outbox.collect(node, active[i]);
            });
            let mut any = false;
            for (i, outbox) in self.outboxes.iter().enumerate() {
                any |= !outbox.order.is_empty();
                let degree = self.nodes[i].peers().count();
                for m in 0..outbox.order.len() {
                    let s = outbox.sent(m);
                    let t = Transmit {
                        to: s.to,
                        epoch: s.epoch,
                        iteration: s.iteration,
                        exchange: s.exchange,
                        payload: &s.payload,
                    };
                    let recipients = if t.to == Recipients::All { degree } else { 1 };
                    on_send(Sent { from: i, recipients, transmit: &t });
                }
            }
            if !any {
                break;
            }
            self.deliver(delivery, round, receivers)?;
            round += 1;
        }
        if let Some(node) =
            self.nodes.iter().find(|n| self.active[n.id()] && n.phase() != Phase::NeedGradient)
        {
            // Every message was delivered and still some node waits: a peer never sent (cannot
            // happen with symmetric rows; reported rather than looping forever).
            return Err(CoreError::Config {
                node: node.id(),
                reason: format!("stalled in {:?}: mixing rows are not symmetric", node.phase()),
            });
        }
        Ok(())
    }

    fn deliver(
        &mut self,
        delivery: Delivery,
        round: u64,
        receivers: &mut dyn Receivers,
    ) -> Result<(), CoreError> {
        self.pairs.clear();
        for (to, node) in self.nodes.iter().enumerate().filter(|(to, _)| self.active[*to]) {
            for from in node.peers() {
                for m in 0..self.outboxes[from].order.len() {
                    if self.outboxes[from].sent(m).to.includes(to) {
                        self.pairs.push((from, to, m));
                    }
                }
            }
        }
        match delivery {
            Delivery::Ascending => return self.deliver_to_each(receivers),
            Delivery::Descending => {
                self.pairs.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)))
            }
            Delivery::Shuffled(seed) => {
                dprox_rng::stream(seed, &[round]).shuffle(&mut self.pairs);
                // A link is FIFO: renumber each (sender, receiver)'s messages in their new order.
                let mut per_link = std::collections::HashMap::new();
                for p in &mut self.pairs {
                    let c = per_link.entry((p.0, p.1)).or_insert(0usize);
                    p.2 = *c;
                    *c += 1;
                }
            }
        }
        for &(from, to, m) in &self.pairs {
            let s = self.outboxes[from].sent(m);
            self.nodes[to].handle_message(from, s.iteration, s.exchange, &s.payload)?;
        }
        Ok(())
    }

    /// The round's messages in ascending order (`pairs` is grouped by receiver, senders
    /// ascending), each receiver's applied by `receivers`, possibly side by side.
    fn deliver_to_each(&mut self, receivers: &mut dyn Receivers) -> Result<(), CoreError> {
        let mut start = 0;
        for (to, range) in self.ranges.iter_mut().enumerate() {
            let end = start + self.pairs[start..].iter().take_while(|p| p.1 == to).count();
            *range = start..end;
            start = end;
        }
        let (pairs, ranges, outboxes) = (&self.pairs, &self.ranges, &self.outboxes);
        receivers.each(&mut self.nodes, &|to, node| {
            for &(from, _, m) in &pairs[ranges[to].clone()] {
                let s = outboxes[from].sent(m);
                node.handle_message(from, s.iteration, s.exchange, &s.payload)?;
            }
            Ok(())
        })
    }
}
