//! Config errors: each names the file or the key at fault.

use std::path::PathBuf;

/// Why a config could not be loaded, validated or turned into a run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key, or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("{key}: {reason}")]
    Invalid {
        /// The key, e.g. `optimizer.lr`.
        key: String,
        /// What is wrong.
        reason: String,
    },
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
        /// The device name as configured.
        device: String,
        /// Why.
        source: dprox_compute::ComputeError,
    },
    /// The algorithm core refused a node's configuration.
    #[error("{0}")]
    Core(#[from] dprox_core::CoreError),
}

pub(crate) fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), reason: reason.into() }
}
