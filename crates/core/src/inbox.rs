//! Ordered mixing: sum_j w_ij v_j in ascending j, whatever order the messages arrive in.
//!
//! Sums are kept in f64 with f64 weights: in f32 the weights of a row do not sum to exactly one
//! (3 x f32(1/3) = 1 + 3e-8) and small compressed deltas are swamped when added to a large running
//! sum, and both errors bias gradient tracking over thousands of iterations.
//!
//! docs/algorithms.md requires every mixing sum to run in ascending node id so that runs are
//! reproducible bit for bit. The inbox applies a message at once when it is the next term of the
//! sum (the common case when a driver delivers in id order: no copy), and otherwise keeps a copy
//! until the terms before it have arrived. Messages one exchange ahead of the current one (a fast
//! neighbour) are kept aside and replayed when the node gets there.

use dprox_compress::Compressed;

/// Where a term comes from when it is applied.
enum Src<'a> {
    Given(&'a Compressed),
    Buffered,
}

/// A neighbour's message as the caller hands it over: lent (kept by copying it) or given (kept
/// by swapping buffers: the caller gets a spare buffer of the same dimension back).
#[derive(Debug)]
pub(crate) enum Incoming<'a> {
    Lent(&'a Compressed),
    Given(&'a mut Compressed),
}

impl Incoming<'_> {
    /// The message.
    pub(crate) fn get(&self) -> &Compressed {
        match self {
            Incoming::Lent(m) => m,
            Incoming::Given(m) => m,
        }
    }

    /// Moves the message into `buf`: a copy of a lent one, a swap with a given one.
    pub(crate) fn store(self, buf: &mut Compressed) {
        match self {
            Incoming::Lent(m) => buf.assign(m),
            Incoming::Given(m) => std::mem::swap(buf, m),
        }
    }
}

/// The pending terms of one node's current exchange, plus those of the next.
#[derive(Debug)]
pub(crate) struct Inbox {
    /// Peers including the node itself, ascending.
    pub(crate) peers: Vec<usize>,
    /// w_ij, aligned with `peers`.
    pub(crate) weights: Vec<f64>,
    /// Position of the node itself in `peers`.
    pub(crate) own: usize,
    /// Whether a position takes part in the current exchange (all, unless a time-varying
    /// schedule leaves some out: they are skipped, as if their weight were not in the row).
    active: Vec<bool>,
    /// Next position to apply.
    cursor: usize,
    present: Vec<bool>,
    bufs: Vec<Compressed>,
    ahead_present: Vec<bool>,
    ahead_bufs: Vec<Compressed>,
}

impl Inbox {
    pub(crate) fn new(id: usize, row: &[(usize, f64)], dim: usize) -> Inbox {
        let n = row.len();
        Inbox {
            peers: row.iter().map(|&(j, _)| j).collect(),
            weights: row.iter().map(|&(_, w)| w).collect(),
            own: row.iter().position(|&(j, _)| j == id).expect("validated: row holds own weight"),
            active: vec![true; n],
            cursor: 0,
            present: vec![false; n],
            bufs: (0..n).map(|_| Compressed::new(dim)).collect(),
            ahead_present: vec![false; n],
            ahead_bufs: (0..n).map(|_| Compressed::new(dim)).collect(),
        }
    }

    /// Position of `peer` in the row (None when it is not a neighbour or is the node itself).
    pub(crate) fn position(&self, peer: usize) -> Option<usize> {
        self.peers.binary_search(&peer).ok().filter(|&p| p != self.own)
    }

    /// A round of a time-varying schedule: the node's own weight and its partner's, 1/2 each, or
    /// its own alone (weight 1). Set before the round's first exchange opens.
    pub(crate) fn set_partner(&mut self, partner: Option<usize>) {
        let own = self.own;
        let half = partner.and_then(|j| self.position(j));
        for (p, (w, a)) in self.weights.iter_mut().zip(self.active.iter_mut()).enumerate() {
            *a = p == own || Some(p) == half;
            *w = match (p == own, half) {
                (true, Some(_)) => 0.5,
                (true, None) => 1.0,
                (false, _) if Some(p) == half => 0.5,
                _ => 0.0,
            };
        }
    }

    /// True when this position already has its term for the current exchange.
    pub(crate) fn has(&self, pos: usize) -> bool {
        pos < self.cursor || self.present[pos]
    }

    /// True when this position already has a term for the next exchange.
    pub(crate) fn has_ahead(&self, pos: usize) -> bool {
        self.ahead_present[pos]
    }

    /// The neighbours whose term of the current exchange has not arrived yet.
    pub(crate) fn missing(&self) -> impl Iterator<Item = usize> + '_ {
        (self.cursor..self.peers.len())
            .filter(|&p| p != self.own && self.active[p] && !self.present[p])
            .map(|p| self.peers[p])
    }

    /// True when every term of the current exchange has been applied.
    pub(crate) fn complete(&self) -> bool {
        self.cursor == self.peers.len()
    }

    /// Offers a neighbour's message for the current exchange; applies what can be applied.
    pub(crate) fn offer(&mut self, pos: usize, msg: Incoming, acc: &mut [f64], own_msg: &Compressed) {
        self.drain(acc, own_msg);
        if pos == self.cursor {
            self.apply(Src::Given(msg.get()), acc, own_msg);
        } else {
            msg.store(&mut self.bufs[pos]);
            self.present[pos] = true;
        }
        self.drain(acc, own_msg);
    }

    /// Keeps a neighbour's message for the next exchange.
    pub(crate) fn offer_ahead(&mut self, pos: usize, msg: Incoming) {
        msg.store(&mut self.ahead_bufs[pos]);
        self.ahead_present[pos] = true;
    }

    /// The node's own message is ready (it stays in the node's outgoing buffer, no copy).
    pub(crate) fn offer_own(&mut self, acc: &mut [f64], own_msg: &Compressed) {
        self.present[self.own] = true;
        self.drain(acc, own_msg);
    }

    /// Moves to the next exchange: the kept-aside messages become current; applies what it can.
    pub(crate) fn advance(&mut self, acc: &mut [f64], own_msg: &Compressed) {
        std::mem::swap(&mut self.bufs, &mut self.ahead_bufs);
        std::mem::swap(&mut self.present, &mut self.ahead_present);
        self.ahead_present.fill(false);
        self.cursor = 0;
        self.drain(acc, own_msg);
    }

    fn drain(&mut self, acc: &mut [f64], own_msg: &Compressed) {
        while self.cursor < self.peers.len() {
            if !self.active[self.cursor] {
                self.cursor += 1;
            } else if self.present[self.cursor] {
                self.apply(Src::Buffered, acc, own_msg);
            } else {
                break;
            }
        }
    }

    fn apply(&mut self, src: Src<'_>, acc: &mut [f64], own_msg: &Compressed) {
        let p = self.cursor;
        let msg = match src {
            Src::Given(m) => m,
            Src::Buffered if p == self.own => own_msg,
            Src::Buffered => &self.bufs[p],
        };
        msg.add_scaled_to_f64(self.weights[p], acc);
        self.present[p] = false;
        self.cursor += 1;
    }
}
