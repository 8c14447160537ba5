//! Why a config could not be turned into a run: each error names the key, file or node at fault.

use dprox_config::ConfigError;

/// Why a run could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The config could not be read, parsed or validated (or a key is inconsistent with the data).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The topology is not a valid graph or mixing matrix.
    #[error("topology: {0}")]
    Topology(#[from] dprox_topology::TopologyError),
    /// The data could not be loaded, scaled, split or partitioned.
    #[error("data: {0}")]
    Data(#[from] dprox_data::DataError),
    /// The model does not fit the data.
    #[error("model: {0}")]
    Model(#[from] dprox_objective::ObjectiveError),
    /// A node's compute device cannot be opened, or cannot run the model.
    #[error("{what} on device `{device}`: {source}")]
    Device {
        /// Whose objective: "node 3" or "the test set".
        what: String,
        /// The device.
        device: dprox_objective::Device,
        /// Why.
        source: dprox_compute::ComputeError,
    },
    /// The algorithm core refused a node's configuration.
    #[error("{0}")]
    Core(#[from] dprox_core::CoreError),
    /// The config asks for more memory than this machine has; refused before allocating it.
    #[error(
        "{key}: {what} needs about {}, more than this machine's memory ({})",
        bytes_text(*.bytes), bytes_text(*.available)
    )]
    TooLarge {
        /// The key that asks for it.
        key: String,
        /// What would be allocated, in words.
        what: String,
        /// Its size in bytes (saturating).
        bytes: u64,
        /// The memory of this machine, in bytes.
        available: u64,
    },
}

/// `1.5 GiB`, `12.0 TiB`: a byte count for people.
pub fn bytes_text(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{b} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

pub(crate) fn invalid(key: &str, reason: impl Into<String>) -> PrepareError {
    PrepareError::Config(dprox_config::error::invalid(key, reason))
}
