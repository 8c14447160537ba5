//! One node's state machine.
//!
//! # Layout
//! - this file: [`Node`], its inputs (`handle_gradient`, `handle_message`) and outputs
//!   (`poll_transmit`).
//! - `epoch`: membership changes ([`Node::start_epoch`]), a joining node's model
//!   ([`Node::set_params`]), and checkpoints ([`Node::snapshot_at`], [`Node::restore`]).

mod epoch;

pub use epoch::{EpochStart, NodeState};

use dprox_compress::{Compressed, Compressor};

use crate::algorithm::{Algorithm, Exchange, NodeConfig};
use crate::error::CoreError;
use crate::inbox::{Inbox, Incoming};
use crate::prox::Prox;

/// What the node is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The caller must compute g = grad F_i(x; B) at [`Node::params`] and pass it in.
    NeedGradient,
    /// The node waits for its neighbours' messages of this exchange.
    Exchanging(Exchange),
}

/// Messages a node under a time-varying schedule keeps from further ahead than its next
/// exchange. A sender can only be ahead by as many iterations as the chain of partners lets it
/// (about one period of the schedule); more than this is refused as out of step.
pub const LATER_MAX: usize = 64;

/// Who a message goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recipients {
    /// Every neighbour ([`Node::peers`]).
    All,
    /// One peer: the iteration's partner in a time-varying schedule.
    One(usize),
}

impl Recipients {
    /// Whether `peer` (a neighbour) gets the message.
    pub fn includes(self, peer: usize) -> bool {
        match self {
            Recipients::All => true,
            Recipients::One(j) => j == peer,
        }
    }
}

/// A message to send to its recipients. The payload is borrowed from the node; copy or encode
/// it before the next `handle_*` call.
#[derive(Debug)]
pub struct Transmit<'a> {
    /// Who it goes to.
    pub to: Recipients,
    /// The membership epoch it belongs to (receivers drop older epochs' messages).
    pub epoch: u64,
    /// Iteration t the message belongs to.
    pub iteration: u64,
    /// Which exchange of that iteration.
    pub exchange: Exchange,
    /// The (compressed) vector.
    pub payload: &'a Compressed,
}

/// The vectors that neighbour messages are summed into.
#[derive(Debug)]
struct Accumulators {
    /// Fresh sum for exact exchanges (dproxsgt, dpsgd, allreduce): zeroed when the exchange opens.
    acc: Vec<f64>,
    /// sx_i = sum_j w_ij xh_j (cdproxsgt, choco).
    sx: Vec<f64>,
    /// sy_i = sum_j w_ij yh_j (cdproxsgt).
    sy: Vec<f64>,
}

/// A node of DProxSGT, CDProxSGT, D-PSGD, CHOCO-SGD or all-reduce SGD, without any I/O: it takes
/// gradients and received messages and hands out the messages to send. Time, sockets and threads
/// belong to the driver (the simulator, or the gRPC node), which is why both produce the same
/// iterates.
///
/// # Call order
///
/// ```text
/// loop {
///     // phase() == NeedGradient
///     g = gradient of F_i at node.params() on the minibatch of iteration node.iteration()
///     node.handle_gradient(&g)?
///     drain node.poll_transmit() -> send each payload to every node.peers()
///     while node.phase() != NeedGradient {
///         wait for any message (from, iteration, exchange, payload)
///         node.handle_message(from, iteration, exchange, &payload)?
///         drain node.poll_transmit() -> send ...
///     }
/// }
/// ```
///
/// Drain `poll_transmit` after every `handle_*` call: a slow node may finish an exchange inside
/// `handle_gradient` (all its neighbours' messages were already in) and have two messages queued.
/// Messages may arrive in any order and up to one exchange early; the node sums them in ascending
/// node id regardless, so the arrival order never changes a bit of the result.
#[derive(Debug)]
pub struct Node {
    id: usize,
    algorithm: Algorithm,
    lr: f32,
    gamma_x: f32,
    gamma_y: f32,
    prox: Prox,
    seed: u64,
    /// The membership epoch the node is in (0 until the first change).
    epoch: u64,
    iteration: u64,
    /// Index into `algorithm.exchanges()` of the exchange in progress (or next, before the gradient).
    stage: usize,
    waiting_gradient: bool,
    /// x_i (holds x_i^{t+1/2} between the local step and the end of the x exchange).
    x: Vec<f32>,
    /// y_i (holds y_i^{t-1/2} between the gradient and the end of the y exchange).
    y: Vec<f32>,
    g_prev: Vec<f32>,
    /// The current gradient (dpsgd applies it after mixing; all-reduce keeps the mean here).
    g: Vec<f32>,
    /// Public estimates: running sums of the compressed deltas, in f64 like the weighted sums.
    xh: Vec<f64>,
    yh: Vec<f64>,
    scratch: Vec<f32>,
    sums: Accumulators,
    qx: Compressor,
    qy: Compressor,
    /// Identity at full precision: messages carry the vector itself, not a delta (see `exact`).
    exact_x: bool,
    exact_y: bool,
    /// One outgoing buffer per exchange of an iteration, with its (iteration, exchange) and
    /// whether the driver still has to take it.
    outs: Vec<Compressed>,
    out_meta: Vec<(u64, Exchange, bool)>,
    inbox: Inbox,
    /// x at the start of the current iteration, for the algorithms that change x mid-iteration
    /// (cdproxsgt, choco; empty for the others, whose x changes only when the iteration ends): an
    /// epoch change restarts the iteration from it.
    x_start: Vec<f32>,
    /// The node's part of a time-varying schedule (`None`: the row every iteration).
    rounds: Option<dprox_topology::NodeRounds>,
    /// Under a schedule, messages from further ahead than the next exchange (a sender whose
    /// own partners let it run ahead; it is not waiting for this node): kept until the node
    /// gets there, at most [`LATER_MAX`], with spare buffers for reuse.
    later: Vec<(usize, u64, Exchange, Compressed)>,
    later_spare: Vec<Compressed>,
    /// A checkpoint requested for the start of this iteration, and the one taken.
    snapshot_at: Option<u64>,
    snapshot: Option<NodeState>,
}

impl Node {
    /// A node at iteration 0 with x^0 = `cfg.x0`, y^{-1} = 0, g^{-1} = 0 and zero public estimates.
    pub fn new(cfg: NodeConfig) -> Result<Node, CoreError> {
        cfg.validate()?;
        let d = cfg.x0.len();
        let compressor = |spec, name| {
            Compressor::new(spec, d)
                .map_err(|e| CoreError::Config { node: cfg.id, reason: format!("compression.{name}: {e}") })
        };
        // With an exact identity compressor CDProxSGT/CHOCO send the vector itself and rebuild the
        // weighted sum from scratch: the public estimate then equals the vector bit for bit, which
        // makes CDProxSGT(identity, gamma = 1) reproduce DProxSGT exactly. Sending deltas would be
        // the same in exact arithmetic, but in f32 `yh + (y - yh)` is not always `y`.
        let exact = crate::algorithm::is_exact;
        let needs_estimates = matches!(cfg.algorithm, Algorithm::Cdproxsgt | Algorithm::Choco);
        let vec_if = |b: bool| if b { vec![0.0f32; d] } else { Vec::new() };
        let vec64_if = |b: bool| if b { vec![0.0f64; d] } else { Vec::new() };
        let stages = cfg.algorithm.exchanges().len();
        let mut node = Node {
            id: cfg.id,
            algorithm: cfg.algorithm,
            lr: cfg.lr,
            gamma_x: cfg.gamma_x,
            gamma_y: cfg.gamma_y,
            prox: cfg.prox,
            seed: cfg.seed,
            epoch: 0,
            iteration: 0,
            stage: 0,
            waiting_gradient: true,
            y: vec_if(matches!(cfg.algorithm, Algorithm::Dproxsgt | Algorithm::Cdproxsgt)),
            g_prev: vec_if(matches!(cfg.algorithm, Algorithm::Dproxsgt | Algorithm::Cdproxsgt)),
            g: vec_if(matches!(cfg.algorithm, Algorithm::Dpsgd | Algorithm::Allreduce)),
            xh: vec64_if(needs_estimates),
            yh: vec64_if(cfg.algorithm == Algorithm::Cdproxsgt),
            scratch: vec_if(needs_estimates),
            sums: Accumulators {
                acc: vec64_if(!needs_estimates),
                sx: vec64_if(needs_estimates),
                sy: vec64_if(cfg.algorithm == Algorithm::Cdproxsgt),
            },
            exact_x: exact(&cfg.compress_x),
            exact_y: exact(&cfg.compress_y),
            qx: compressor(cfg.compress_x, "x")?,
            qy: compressor(cfg.compress_y, "y")?,
            outs: (0..stages).map(|_| Compressed::new(d)).collect(),
            out_meta: vec![(0, Exchange::X, false); stages],
            inbox: Inbox::new(cfg.id, &cfg.row, d),
            x_start: if needs_estimates { cfg.x0.clone() } else { Vec::new() },
            rounds: cfg.rounds,
            later: Vec::new(),
            later_spare: Vec::new(),
            snapshot_at: None,
            snapshot: None,
            x: cfg.x0,
        };
        node.begin_iteration();
        Ok(node)
    }

    /// This node's id.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The membership epoch the node is in (0 until the first change).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The algorithm it runs.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Number of parameters d.
    pub fn dim(&self) -> usize {
        self.x.len()
    }

    /// The iteration t in progress (the number of completed iterations).
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// What the node waits for.
    pub fn phase(&self) -> Phase {
        if self.waiting_gradient { Phase::NeedGradient } else { Phase::Exchanging(self.exchange()) }
    }

    /// The neighbours whose message for the current exchange has not arrived yet (for timeouts
    /// that name the slow or dead neighbour).
    pub fn missing_peers(&self) -> Vec<usize> {
        self.inbox.missing().collect()
    }

    /// The neighbours a message may go to (ascending; the node itself excluded): every one of
    /// them, or with a time-varying schedule the one that [`Transmit::to`] names.
    pub fn peers(&self) -> impl Iterator<Item = usize> + '_ {
        self.inbox.peers.iter().copied().filter(move |&j| j != self.id)
    }

    /// x_i^t, the point at which the next gradient is to be computed. Meaningful in
    /// `Phase::NeedGradient` (mid-exchange it may hold an intermediate x_i^{t+1/2}).
    pub fn params(&self) -> &[f32] {
        &self.x
    }

    /// The gradient tracker y_i^{t-1} (empty for algorithms without one).
    pub fn tracker(&self) -> &[f32] {
        &self.y
    }

    /// The public estimates (xh_i, yh_i) of CDProxSGT/CHOCO (empty otherwise; stale in exact mode).
    pub fn estimates(&self) -> (&[f64], &[f64]) {
        (&self.xh, &self.yh)
    }

    fn exchange(&self) -> Exchange {
        self.algorithm.exchanges()[self.stage]
    }

    fn next_slot(&self) -> (u64, Exchange) {
        let ex = self.algorithm.exchanges();
        if self.stage + 1 < ex.len() {
            (self.iteration, ex[self.stage + 1])
        } else {
            (self.iteration + 1, ex[0])
        }
    }

    /// Step 1: the stochastic gradient g_i^t at `params()`. Produces this iteration's first
    /// message (and, when every neighbour's is already in, possibly more).
    pub fn handle_gradient(&mut self, g: &[f32]) -> Result<(), CoreError> {
        if !self.waiting_gradient {
            return Err(CoreError::NotReadyForGradient {
                node: self.id,
                iteration: self.iteration,
                exchange: self.exchange(),
            });
        }
        if g.len() != self.dim() {
            return Err(CoreError::GradientLength { node: self.id, expected: self.dim(), got: g.len() });
        }
        if let Some(index) = g.iter().position(|v| !v.is_finite()) {
            return Err(CoreError::NonFiniteGradient {
                node: self.id,
                iteration: self.iteration,
                index,
                value: g[index],
            });
        }
        let t = self.iteration;
        match self.algorithm {
            Algorithm::Dproxsgt => {
                // y^{t-1/2} = y^{t-1} + g^t - g^{t-1}, written straight into the message.
                let out = dense_out(&mut self.outs[0]);
                out.clear();
                out.extend(
                    self.y.iter().zip(g).zip(&self.g_prev).map(|((&y, &gn), &gp)| tracker_half(y, gn, gp)),
                );
                self.g_prev.copy_from_slice(g);
            }
            Algorithm::Cdproxsgt => {
                for ((y, &gn), gp) in self.y.iter_mut().zip(g).zip(self.g_prev.iter_mut()) {
                    *y = tracker_half(*y, gn, *gp);
                    *gp = gn;
                }
                let seed = dprox_rng::mix(self.seed, &[self.id as u64, t, Exchange::Y.code() as u64]);
                Self::make_message(
                    &mut self.qy,
                    self.exact_y,
                    &self.y,
                    &mut self.yh,
                    &mut self.scratch,
                    seed,
                    &mut self.outs[0],
                );
            }
            Algorithm::Dpsgd => {
                self.g.copy_from_slice(g);
                let out = dense_out(&mut self.outs[0]);
                out.clone_from(&self.x);
            }
            Algorithm::Choco => {
                self.prox.step(self.lr, &mut self.x, g);
                self.make_x_message(0);
            }
            Algorithm::Allreduce => {
                let out = dense_out(&mut self.outs[0]);
                out.clear();
                out.extend_from_slice(g);
            }
        }
        self.waiting_gradient = false;
        self.queue_own(0)?;
        self.finish_completed()?;
        self.replay_later()
    }

    /// A neighbour's message. Messages for the current exchange and the next one are accepted
    /// (the next is kept until the node gets there); under a time-varying schedule, so are
    /// messages from further ahead (up to [`LATER_MAX`]); anything else is refused.
    pub fn handle_message(
        &mut self,
        from: usize,
        iteration: u64,
        exchange: Exchange,
        payload: &Compressed,
    ) -> Result<(), CoreError> {
        self.accept_message(from, iteration, exchange, Incoming::Lent(payload))?;
        self.replay_later()
    }

    /// [`Node::handle_message`] for a caller that gives the payload's buffer away: where the
    /// message is kept (it arrived before the node can apply it), the node swaps buffers instead
    /// of copying, and `payload` comes back holding a spare buffer of the same dimension (its
    /// contents unspecified) for the caller to reuse. The iterates are the same.
    pub fn handle_message_taking(
        &mut self,
        from: usize,
        iteration: u64,
        exchange: Exchange,
        payload: &mut Compressed,
    ) -> Result<(), CoreError> {
        self.accept_message(from, iteration, exchange, Incoming::Given(payload))?;
        self.replay_later()
    }

    /// Applies the kept messages that the node has now reached.
    fn replay_later(&mut self) -> Result<(), CoreError> {
        let now = (self.iteration, self.exchange());
        let next = self.next_slot();
        while let Some(k) = self.later.iter().position(|m| (m.1, m.2) == now || (m.1, m.2) == next) {
            let (from, it, ex, payload) = self.later.swap_remove(k);
            let r = self.accept_message(from, it, ex, Incoming::Lent(&payload));
            self.later_spare.push(payload);
            r?;
            if (self.iteration, self.exchange()) != now {
                return self.replay_later();
            }
        }
        Ok(())
    }

    /// Keeps a message from further ahead than the next exchange, under a schedule.
    fn keep_later(&mut self, from: usize, iteration: u64, exchange: Exchange, payload: Incoming) -> bool {
        let stage = |e: Exchange| self.algorithm.exchanges().iter().position(|&x| x == e);
        let (next_it, next_ex) = self.next_slot();
        let ahead = match (stage(exchange), stage(next_ex)) {
            (Some(s), Some(n)) => (iteration, s) > (next_it, n),
            _ => false,
        };
        let dup = self.later.iter().any(|m| (m.0, m.1, m.2) == (from, iteration, exchange));
        if self.rounds.is_none() || !ahead || dup || self.later.len() >= LATER_MAX {
            return false;
        }
        if self.check_partner(from, iteration).is_err() {
            return false;
        }
        let mut buf = self.later_spare.pop().unwrap_or_else(|| Compressed::new(payload.get().dim));
        payload.store(&mut buf);
        self.later.push((from, iteration, exchange, buf));
        true
    }

    fn accept_message(
        &mut self,
        from: usize,
        iteration: u64,
        exchange: Exchange,
        incoming: Incoming,
    ) -> Result<(), CoreError> {
        let payload = incoming.get();
        let pos = self.inbox.position(from).ok_or(CoreError::UnknownPeer { node: self.id, from })?;
        if payload.dim != self.dim() {
            return Err(CoreError::MessageLength {
                node: self.id,
                from,
                expected: self.dim(),
                got: payload.dim,
            });
        }
        payload.check().map_err(|reason| CoreError::Malformed { node: self.id, from, reason })?;
        let dup = CoreError::Duplicate { node: self.id, from, iteration, exchange };
        let slot = (iteration, exchange);
        if slot == (self.iteration, self.exchange()) || slot == self.next_slot() {
            self.check_partner(from, iteration)?;
        }
        if (iteration, exchange) == (self.iteration, self.exchange()) {
            if self.inbox.has(pos) {
                return Err(dup);
            }
            let acc = self.sums.for_exchange(self.algorithm, self.exchange());
            self.inbox.offer(pos, incoming, acc, &self.outs[self.stage]);
            self.finish_completed()
        } else if (iteration, exchange) == self.next_slot() {
            if self.inbox.has_ahead(pos) {
                return Err(dup);
            }
            self.inbox.offer_ahead(pos, incoming);
            Ok(())
        } else if self.keep_later(from, iteration, exchange, incoming) {
            Ok(())
        } else {
            Err(CoreError::OutOfStep {
                node: self.id,
                from,
                got_iteration: iteration,
                got_exchange: exchange,
                iteration: self.iteration,
                exchange: self.exchange(),
            })
        }
    }

    /// With a schedule: a message of `iteration` must come from that round's partner.
    fn check_partner(&self, from: usize, iteration: u64) -> Result<(), CoreError> {
        let Some(rounds) = &self.rounds else { return Ok(()) };
        let partner = rounds.at(iteration).map(|p| p.from);
        if partner == Some(from) {
            return Ok(());
        }
        Err(CoreError::NotScheduled { node: self.id, from, iteration, partner: partner.unwrap_or(self.id) })
    }

    /// Who the messages of `iteration` go to; `None` when nobody does (a round without a
    /// partner).
    fn recipients(&self, iteration: u64) -> Option<Recipients> {
        match &self.rounds {
            None => Some(Recipients::All),
            Some(r) => r.at(iteration).map(|p| Recipients::One(p.to)),
        }
    }

    /// The next message to send, if any (oldest first).
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        let s = self.out_meta.iter().position(|m| m.2)?;
        let (iteration, exchange, _) = self.out_meta[s];
        self.out_meta[s].2 = false;
        let to = self.recipients(iteration).expect("only messages with recipients are queued");
        Some(Transmit { to, epoch: self.epoch, iteration, exchange, payload: &self.outs[s] })
    }

    /// Checks the message of `stage`, queues it for sending, and offers it to the own inbox slot.
    fn queue_own(&mut self, stage: usize) -> Result<(), CoreError> {
        let exchange = self.algorithm.exchanges()[stage];
        if let Some((index, value)) = self.outs[stage].first_non_finite() {
            return Err(CoreError::NonFiniteMessage {
                node: self.id,
                iteration: self.iteration,
                exchange,
                index,
                value,
            });
        }
        let send = self.recipients(self.iteration).is_some();
        self.out_meta[stage] = (self.iteration, exchange, send);
        let acc = self.sums.for_exchange(self.algorithm, exchange);
        self.inbox.offer_own(acc, &self.outs[stage]);
        Ok(())
    }

    /// Zeroes the sum of the exchange that starts now (when it is rebuilt each time) and applies
    /// the messages that arrived early.
    fn open_exchange(&mut self) {
        let ex = self.exchange();
        let fresh = match (self.algorithm, ex) {
            (Algorithm::Cdproxsgt, Exchange::Y) => self.exact_y,
            (Algorithm::Cdproxsgt | Algorithm::Choco, _) => self.exact_x,
            _ => true,
        };
        let acc = self.sums.for_exchange(self.algorithm, ex);
        if fresh {
            acc.fill(0.0);
        }
        self.inbox.advance(acc, &self.outs[self.stage]);
    }

    /// Finishes every exchange whose terms are all in (several when messages came early).
    fn finish_completed(&mut self) -> Result<(), CoreError> {
        while self.inbox.complete() {
            let last = self.stage + 1 == self.algorithm.exchanges().len();
            self.finish_exchange();
            if last {
                self.iteration += 1;
                self.stage = 0;
                self.waiting_gradient = true;
                self.begin_iteration();
                return Ok(());
            }
            self.stage += 1;
            self.open_exchange();
            self.queue_own(self.stage)?;
        }
        Ok(())
    }

    /// The state update at the end of the current exchange; writes the next exchange's message.
    fn finish_exchange(&mut self) {
        let exchange = self.exchange();
        let Accumulators { acc, sx, sy } = &mut self.sums;
        match (self.algorithm, exchange) {
            (Algorithm::Dproxsgt, Exchange::Y) => {
                round_into(&mut self.y, acc); // y^t = sum_j w_ij y_j^{t-1/2}
                let out = dense_out(&mut self.outs[1]);
                out.clone_from(&self.x);
                self.prox.step(self.lr, out, &self.y); // x^{t+1/2}
            }
            (Algorithm::Dproxsgt, _) => round_into(&mut self.x, acc),
            (Algorithm::Cdproxsgt, Exchange::Y) => {
                consensus_step(&mut self.y, &self.yh, sy, self.gamma_y, self.exact_y);
                self.prox.step(self.lr, &mut self.x, &self.y);
                self.make_x_message(1);
            }
            (Algorithm::Cdproxsgt | Algorithm::Choco, _) => {
                consensus_step(&mut self.x, &self.xh, sx, self.gamma_x, self.exact_x)
            }
            (Algorithm::Dpsgd, _) => {
                round_into(&mut self.x, acc);
                self.prox.step(self.lr, &mut self.x, &self.g);
            }
            (Algorithm::Allreduce, _) => {
                round_into(&mut self.g, acc); // the exact mean gradient
                self.prox.step(self.lr, &mut self.x, &self.g);
            }
        }
    }

    fn make_x_message(&mut self, stage: usize) {
        let seed = dprox_rng::mix(self.seed, &[self.id as u64, self.iteration, Exchange::X.code() as u64]);
        Self::make_message(
            &mut self.qx,
            self.exact_x,
            &self.x,
            &mut self.xh,
            &mut self.scratch,
            seed,
            &mut self.outs[stage],
        );
    }

    /// q = Q(v - vh); vh += q (or, exact, the vector itself).
    fn make_message(
        q: &mut Compressor,
        exact: bool,
        v: &[f32],
        vh: &mut [f64],
        scratch: &mut [f32],
        seed: u64,
        out: &mut Compressed,
    ) {
        if exact {
            let o = dense_out(out);
            o.clear();
            o.extend_from_slice(v);
            return;
        }
        for ((s, &a), &b) in scratch.iter_mut().zip(v).zip(vh.iter()) {
            *s = (a as f64 - b) as f32;
        }
        q.compress(scratch, seed, out);
        out.add_scaled_to_f64(1.0, vh);
    }
}

/// v <- v + gamma (s - vh), computed as (v - gamma vh) + gamma s so that with gamma = 1 and an
/// exact compressor (vh = v) the result is s to the last bit.
fn consensus_step(v: &mut [f32], vh: &[f64], s: &[f64], gamma: f32, exact: bool) {
    let gamma = gamma as f64;
    if exact {
        for (a, &b) in v.iter_mut().zip(s) {
            let a64 = *a as f64;
            *a = ((a64 - gamma * a64) + gamma * b) as f32;
        }
    } else {
        for ((a, &h), &b) in v.iter_mut().zip(vh).zip(s) {
            *a = ((*a as f64 - gamma * h) + gamma * b) as f32;
        }
    }
}

/// y^{t-1/2} = y^{t-1} + g^t - g^{t-1}, rounded once.
#[inline]
fn tracker_half(y: f32, g: f32, g_prev: f32) -> f32 {
    ((y as f64 + g as f64) - g_prev as f64) as f32
}

/// dst = src rounded to f32.
fn round_into(dst: &mut [f32], src: &[f64]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = s as f32;
    }
}

fn dense_out(out: &mut Compressed) -> &mut Vec<f32> {
    use dprox_compress::{Body, ValueFormat};
    if !matches!(out.body, Body::Dense { .. }) {
        out.body = Body::Dense { format: ValueFormat::F32, values: Vec::new() };
    }
    let Body::Dense { values, .. } = &mut out.body else { unreachable!() };
    values
}

impl Accumulators {
    fn for_exchange(&mut self, algorithm: Algorithm, ex: Exchange) -> &mut Vec<f64> {
        match (algorithm, ex) {
            (Algorithm::Cdproxsgt, Exchange::Y) => &mut self.sy,
            (Algorithm::Cdproxsgt | Algorithm::Choco, _) => &mut self.sx,
            _ => &mut self.acc,
        }
    }
}
