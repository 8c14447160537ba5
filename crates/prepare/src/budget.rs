//! Refusing sizes this machine cannot hold, before allocating them.
//!
//! A config can ask for absurd sizes in a few characters (`nodes = 100000`, `hidden =
//! [4000000000]`, `samples = 1e11`, a LIBSVM feature index of 4e9). Allocating them would abort
//! the process ("memory allocation failed") or push the machine into swap, naming nothing. Each
//! large allocation of preparation is estimated first and refused, naming the key, when it
//! exceeds the machine's memory. The estimates are lower bounds of what the run holds (rounded
//! for the error message), so a refused config could never have run here.

use dprox_config::Config;
use dprox_config::schema::SyntheticSection;
use dprox_objective::ModelKind;

use crate::error::PrepareError;

/// Bytes of run state per parameter and node, a lower bound: the f32 model, tracker, previous
/// gradient, gradient and two outgoing messages (24 bytes) and the f64 mixing sums (16 bytes).
pub const BYTES_PER_PARAMETER_AND_NODE: u64 = 40;

/// The memory of this machine in bytes: `MemTotal` of `/proc/meminfo`, or 64 GiB where that
/// cannot be read (not Linux).
pub fn machine_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib.saturating_mul(1024))
        })
        .unwrap_or(64 << 30)
}

/// A memory budget to check allocations against.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    available: u64,
}

impl Budget {
    /// This machine's memory.
    pub fn of_machine() -> Budget {
        Budget { available: machine_memory() }
    }

    /// A budget of `bytes` (tests).
    pub fn of(bytes: u64) -> Budget {
        Budget { available: bytes }
    }

    /// Refuses `bytes` for `what` (asked for by `key`) when they exceed the budget.
    pub fn check(&self, key: &str, what: impl FnOnce() -> String, bytes: u64) -> Result<(), PrepareError> {
        if bytes <= self.available {
            return Ok(());
        }
        Err(PrepareError::TooLarge { key: key.into(), what: what(), bytes, available: self.available })
    }

    /// An n-node topology: its mixing rows and the spectral solve. Up to
    /// [`dprox_topology::spectral::DENSE_MAX`] nodes that is a dense eigenproblem (tiny); above,
    /// Lanczos holds three f64 vectors, and each row at least its diagonal entry (16 bytes) and
    /// the graph a neighbour list: at least 48 bytes per node, whatever the graph.
    pub fn check_topology(&self, c: &Config) -> Result<(), PrepareError> {
        let n = c.topology.nodes as u64;
        let bytes = n.saturating_mul(48);
        self.check("topology.nodes", || format!("the mixing rows and spectral solve of {n} nodes"), bytes)
    }

    /// Synthetic data: dense f32 features, or CSR (f32 value and u32 index) at `density`.
    pub fn check_synthetic(&self, s: &SyntheticSection) -> Result<(), PrepareError> {
        let cells = (s.samples as u64).saturating_mul(s.features as u64);
        let bytes =
            if s.density < 1.0 { (cells as f64 * s.density * 8.0) as u64 } else { cells.saturating_mul(4) };
        self.check("data.synthetic", || format!("{} samples of {} features", s.samples, s.features), bytes)
    }

    /// The run state of `dim` parameters on each of `nodes` nodes.
    pub fn check_model(&self, c: &Config, dim: usize, features: usize) -> Result<(), PrepareError> {
        let nodes = c.topology.nodes as u64;
        let bytes = (dim as u64).saturating_mul(nodes).saturating_mul(BYTES_PER_PARAMETER_AND_NODE);
        let key = match c.model.kind {
            ModelKind::Mlp | ModelKind::LeNet if !c.model.hidden.is_empty() => "model.hidden",
            _ => "model",
        };
        self.check(
            key,
            || format!("a model of {dim} parameters ({features} input features) on each of {nodes} nodes"),
            bytes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_has_some_memory() {
        assert!(machine_memory() >= 64 << 20);
    }

    #[test]
    fn refusals_name_the_key_and_the_sizes() {
        let b = Budget::of(1 << 30);
        b.check("k", || "small".into(), 1 << 30).unwrap();
        let e = b.check("topology.nodes", || "a thing".into(), 3 << 30).unwrap_err();
        assert_eq!(
            e.to_string(),
            "topology.nodes: a thing needs about 3.0 GiB, more than this machine's memory (1.0 GiB)"
        );
    }
}
