//! Per-link network shaping in the application: delay, bandwidth cap and loss. The kernel here
//! has no netem, so a local cluster behaves like a WAN by waiting in the sender, with the same
//! cost model as the simulator's clock (latency + bytes / bandwidth) plus seeded losses.

use std::time::Duration;

/// How one directed link behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkShape {
    /// One-way delay added to every message.
    pub latency: Duration,
    /// Bytes per second (infinite: no cap).
    pub bytes_per_s: f64,
    /// Probability that a chunk is lost and must be sent again after `retransmit`.
    pub loss: f64,
    /// Time before a lost chunk is sent again.
    pub retransmit: Duration,
}

impl LinkShape {
    /// No shaping at all.
    pub const NONE: LinkShape = LinkShape {
        latency: Duration::ZERO,
        bytes_per_s: f64::INFINITY,
        loss: 0.0,
        retransmit: Duration::ZERO,
    };

    /// True when the link adds nothing.
    pub fn is_none(&self) -> bool {
        self.latency.is_zero() && self.bytes_per_s.is_infinite() && self.loss == 0.0
    }
}

/// A link's shaper: decides how long each message waits, drawing its losses from a seeded stream
/// so that a run's delays are reproducible.
#[derive(Clone, Debug)]
pub struct Shaper {
    shape: LinkShape,
    rng: dprox_rng::Rng,
}

impl Shaper {
    /// A shaper for `shape`, with losses drawn from stream (seed, from, to).
    pub fn new(shape: LinkShape, seed: u64, from: usize, to: usize) -> Shaper {
        Shaper { shape, rng: dprox_rng::stream(seed, &[0x5A4E, from as u64, to as u64]) }
    }

    /// The link's shape.
    pub fn shape(&self) -> LinkShape {
        self.shape
    }

    /// How long a message of `bytes` sent as `chunks` chunks waits before it is delivered:
    /// latency + bytes / bandwidth + one retransmission delay per lost chunk.
    pub fn delay(&mut self, bytes: usize, chunks: usize) -> Duration {
        if self.shape.is_none() {
            return Duration::ZERO;
        }
        let mut d = self.shape.latency.as_secs_f64() + bytes as f64 / self.shape.bytes_per_s;
        for _ in 0..chunks {
            while self.shape.loss > 0.0 && self.rng.uniform_f64() < self.shape.loss {
                d += self.shape.retransmit.as_secs_f64();
            }
        }
        // Saturating: a tiny bandwidth in a config is a very long wait, not a panic.
        Duration::try_from_secs_f64(d).unwrap_or(Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_is_latency_plus_serialisation_plus_retransmissions() {
        let shape = LinkShape {
            latency: Duration::from_millis(10),
            bytes_per_s: 1e6,
            loss: 0.0,
            retransmit: Duration::from_millis(50),
        };
        let mut s = Shaper::new(shape, 1, 0, 1);
        assert_eq!(s.delay(500_000, 1), Duration::from_millis(510));
        let mut lossy = Shaper::new(LinkShape { loss: 0.5, ..shape }, 1, 0, 1);
        let total: f64 = (0..2000).map(|_| lossy.delay(0, 1).as_secs_f64()).sum();
        // Expected retransmissions per chunk with p = 0.5: p / (1 - p) = 1.
        let mean_extra = total / 2000.0 - 0.010;
        assert!((mean_extra - 0.050).abs() < 0.005, "{mean_extra}");
        assert_eq!(Shaper::new(LinkShape::NONE, 0, 0, 1).delay(1 << 20, 1), Duration::ZERO);
        // A bandwidth so small that the wait overflows a Duration saturates instead of panicking.
        let mut crawl = Shaper::new(LinkShape { bytes_per_s: 1e-300, ..shape }, 1, 0, 1);
        assert_eq!(crawl.delay(1000, 1), Duration::MAX);
    }
}
