//! Seeded minibatches: which local samples node i uses in iteration t.

/// How many samples a stochastic gradient uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchSize {
    /// The whole local data set (deterministic gradient).
    Full,
    /// A minibatch of this many samples (the whole set when it is at least the local size).
    Samples(usize),
}

/// In a config: a number of samples, or `"full"`.
impl serde::Serialize for BatchSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BatchSize::Full => s.serialize_str("full"),
            BatchSize::Samples(b) => s.serialize_u64(*b as u64),
        }
    }
}

impl<'de> serde::Deserialize<'de> for BatchSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<BatchSize, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = BatchSize;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of samples (at least 1) or \"full\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<BatchSize, E> {
                match usize::try_from(v) {
                    Ok(b) if b > 0 => Ok(BatchSize::Samples(b)),
                    _ => Err(E::custom(format!("a batch size must be at least 1, got {v}"))),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<BatchSize, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<BatchSize, E> {
                match v {
                    "full" => Ok(BatchSize::Full),
                    _ => Err(E::custom(format!("a batch size is a number or \"full\", got \"{v}\""))),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Draws node i's minibatches epoch by epoch: each epoch is a fresh permutation of the local
/// samples from the stream (seed, node, epoch), cut into consecutive batches; a batch that runs
/// past the end of an epoch continues into the next one. The sequence depends only on
/// (seed, node, number of samples, batch size), so the simulator and a cluster node draw the same.
#[derive(Clone, Debug)]
pub struct BatchSampler {
    seed: u64,
    node: u64,
    size: Option<usize>,
    perm: Vec<usize>,
    pos: usize,
    epoch: u64,
    batch: Vec<usize>,
}

impl BatchSampler {
    /// A sampler over `samples` local samples.
    pub fn new(seed: u64, node: usize, samples: usize, size: BatchSize) -> BatchSampler {
        let size = match size {
            BatchSize::Samples(b) if b < samples => Some(b.max(1)),
            _ => None,
        };
        let mut s = BatchSampler {
            seed,
            node: node as u64,
            size,
            perm: (0..samples).collect(),
            pos: 0,
            epoch: 0,
            batch: Vec::with_capacity(size.unwrap_or(0)),
        };
        s.shuffle();
        s
    }

    fn shuffle(&mut self) {
        if self.size.is_some() {
            self.perm.sort_unstable();
            dprox_rng::stream(self.seed, &[0xBA7C, self.node, self.epoch]).shuffle(&mut self.perm);
        }
    }

    /// Moves to the position after `batches` batches from the start, as if they had been drawn
    /// (a node that resumes from a checkpoint or rejoins at iteration t draws batch t next).
    pub fn seek(&mut self, batches: u64) {
        let Some(b) = self.size else { return };
        let total = batches.saturating_mul(b as u64);
        let len = self.perm.len() as u64;
        self.epoch = total / len;
        self.pos = (total % len) as usize;
        self.shuffle();
    }

    /// The next batch: `None` for the full local set, else the sample indices.
    pub fn next_batch(&mut self) -> Option<&[usize]> {
        let b = self.size?;
        self.batch.clear();
        while self.batch.len() < b {
            if self.pos == self.perm.len() {
                self.epoch += 1;
                self.pos = 0;
                self.shuffle();
            }
            let take = (b - self.batch.len()).min(self.perm.len() - self.pos);
            self.batch.extend_from_slice(&self.perm[self.pos..self.pos + take]);
            self.pos += take;
        }
        Some(&self.batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_cover_every_sample_once_and_are_reproducible() {
        let mut a = BatchSampler::new(9, 2, 10, BatchSize::Samples(4));
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.extend_from_slice(a.next_batch().unwrap());
        }
        let mut e0 = seen[..10].to_vec();
        e0.sort();
        assert_eq!(e0, (0..10).collect::<Vec<_>>());
        let mut e1 = seen[10..20].to_vec();
        e1.sort();
        assert_eq!(e1, (0..10).collect::<Vec<_>>());
        assert_ne!(seen[..10], seen[10..20], "each epoch reshuffles");
        let mut b = BatchSampler::new(9, 2, 10, BatchSize::Samples(4));
        let again: Vec<usize> = (0..5).flat_map(|_| b.next_batch().unwrap().to_vec()).collect();
        assert_eq!(seen, again);
        let mut c = BatchSampler::new(9, 3, 10, BatchSize::Samples(4));
        assert_ne!(c.next_batch().unwrap(), &seen[..4], "nodes draw different batches");
    }

    #[test]
    fn seeking_draws_what_drawing_would_have() {
        for (samples, b) in [(10, 4), (12, 4), (7, 3)] {
            let mut a = BatchSampler::new(3, 1, samples, BatchSize::Samples(b));
            let drawn: Vec<Vec<usize>> = (0..20).map(|_| a.next_batch().unwrap().to_vec()).collect();
            for k in [0u64, 1, 2, 3, 5, 9, 17] {
                let mut s = BatchSampler::new(3, 1, samples, BatchSize::Samples(b));
                s.seek(k);
                assert_eq!(
                    s.next_batch().unwrap(),
                    &drawn[k as usize][..],
                    "{samples} samples, batch {b}, seek {k}"
                );
            }
        }
        let mut full = BatchSampler::new(3, 1, 5, BatchSize::Full);
        full.seek(7);
        assert_eq!(full.next_batch(), None);
    }

    #[test]
    fn full_and_oversized_batches_mean_the_whole_set() {
        assert_eq!(BatchSampler::new(1, 0, 5, BatchSize::Full).next_batch(), None);
        assert_eq!(BatchSampler::new(1, 0, 5, BatchSize::Samples(5)).next_batch(), None);
        assert_eq!(BatchSampler::new(1, 0, 5, BatchSize::Samples(4)).next_batch().map(|b| b.len()), Some(4));
    }
}
