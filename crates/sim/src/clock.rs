//! The virtual clock: when each node would finish each exchange on the configured network.
//!
//! Synchronisation in dprox is per neighbour, so the timing is a max-plus recursion rather than a
//! global barrier. With c_i node i's compute time, lat/bw a link's latency and bandwidth and b_j^s
//! the bytes node j sends in exchange s:
//!
//! ```text
//! send_i^0 = T_i + c_i                      (the gradient is done)
//! recv_i^s = max(send_i^s, max_{j ~ i} send_j^s + lat_ji + b_j^s / bw_ji)
//! send_i^s = recv_i^{s-1}                   (s > 0: the next message leaves when the last arrived)
//! T_i     <- recv_i^{S-1}                   (the iteration is over for node i)
//! ```
//!
//! A straggler delays its neighbours, who delay theirs one exchange later, and so on: exactly what
//! a real cluster with per-neighbour waits does, and what the cluster node measures.

/// One directed link into a node: (peer, latency s, bandwidth bytes/s).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InLink {
    /// The sending neighbour.
    pub from: usize,
    /// One-way latency, seconds.
    pub latency_s: f64,
    /// Bandwidth, bytes per second.
    pub bytes_per_s: f64,
}

/// Per-node virtual times.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Clock {
    /// Node i's time at the start of its next iteration.
    time: Vec<f64>,
    send: Vec<f64>,
    recv: Vec<f64>,
    links: Vec<Vec<InLink>>,
}

impl Clock {
    /// A clock at time 0 for nodes with these incoming links.
    pub fn new(links: Vec<Vec<InLink>>) -> Clock {
        let n = links.len();
        Clock { time: vec![0.0; n], send: vec![0.0; n], recv: vec![0.0; n], links }
    }

    /// Advances every node through one iteration: `compute[i]` seconds of gradient, then the
    /// exchanges, `bytes[i][s]` being what node i sends (to each neighbour) in exchange s.
    pub fn advance(&mut self, compute: &[f64], bytes: &[Vec<u64>]) {
        self.advance_over(compute, bytes, |_, _| true);
    }

    /// As [`Clock::advance`], over the links `(to, from)` for which `carries` is true (this
    /// iteration's round of a time-varying schedule); the others carry nothing and wait for
    /// nothing.
    pub fn advance_over(
        &mut self,
        compute: &[f64],
        bytes: &[Vec<u64>],
        carries: impl Fn(usize, usize) -> bool,
    ) {
        let stages = bytes.first().map_or(0, |b| b.len());
        for (i, s) in self.send.iter_mut().enumerate() {
            *s = self.time[i] + compute[i];
        }
        // `s` indexes the inner dimension of `bytes[from][s]`: a range loop is the clear form.
        #[allow(clippy::needless_range_loop)]
        for s in 0..stages {
            for (i, links) in self.links.iter().enumerate() {
                let mut t = self.send[i];
                for l in links.iter().filter(|l| carries(i, l.from)) {
                    t = t.max(self.send[l.from] + l.latency_s + bytes[l.from][s] as f64 / l.bytes_per_s);
                }
                self.recv[i] = t;
            }
            std::mem::swap(&mut self.send, &mut self.recv);
        }
        self.time.copy_from_slice(&self.send);
    }

    /// The links of a new membership epoch (nodes that are away have none).
    pub fn set_links(&mut self, links: Vec<Vec<InLink>>) {
        self.links = links;
    }

    /// Node `i` stops for `seconds` before its next iteration (a scheduled pause).
    pub fn delay(&mut self, i: usize, seconds: f64) {
        self.time[i] += seconds;
    }

    /// Node `i` joins (again) at time `t`, if that is later than its own.
    pub fn join_at(&mut self, i: usize, t: f64) {
        self.time[i] = self.time[i].max(t);
    }

    /// The time at which every node has finished the iterations so far.
    pub fn now(&self) -> f64 {
        self.time.iter().copied().fold(0.0, f64::max)
    }

    /// Node i's own time.
    pub fn node_time(&self, i: usize) -> f64 {
        self.time[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(from: usize) -> InLink {
        InLink { from, latency_s: 0.01, bytes_per_s: 1000.0 }
    }

    #[test]
    fn two_nodes_two_exchanges() {
        // Node 0 computes 1 s, node 1 2 s; 100-byte messages take 0.01 + 0.1 s.
        let mut c = Clock::new(vec![vec![link(1)], vec![link(0)]]);
        c.advance(&[1.0, 2.0], &[vec![100, 100], vec![100, 100]]);
        // Exchange 0: node 0 gets node 1's message at 2.11, node 1 gets node 0's at 1.11 (waits
        // for itself: 2.0). Exchange 1: node 0 at max(2.11, 2.0 + 0.11) = 2.11, node 1 at 2.22.
        assert!((c.node_time(0) - 2.11).abs() < 1e-12);
        assert!((c.node_time(1) - 2.22).abs() < 1e-12);
        assert!((c.now() - 2.22).abs() < 1e-12);
    }

    #[test]
    fn a_straggler_delays_the_path_one_hop_per_exchange() {
        // Path 0 - 1 - 2 - 3, node 0 slow (10 s), one exchange of 0 bytes, zero latency.
        let z = |from| InLink { from, latency_s: 0.0, bytes_per_s: 1.0 };
        let mut c = Clock::new(vec![vec![z(1)], vec![z(0), z(2)], vec![z(1), z(3)], vec![z(2)]]);
        c.advance(&[10.0, 1.0, 1.0, 1.0], &[vec![0], vec![0], vec![0], vec![0]]);
        assert_eq!([c.node_time(0), c.node_time(1), c.node_time(2), c.node_time(3)], [10.0, 10.0, 1.0, 1.0]);
        c.advance(&[10.0, 1.0, 1.0, 1.0], &[vec![0], vec![0], vec![0], vec![0]]);
        assert_eq!([c.node_time(0), c.node_time(1), c.node_time(2), c.node_time(3)], [20.0, 20.0, 11.0, 2.0]);
    }
}
