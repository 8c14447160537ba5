//! Config errors: each names the file or the key at fault.

use std::path::PathBuf;

/// Why a config could not be read, parsed or validated.
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
}

/// The error for `key`: `reason`.
pub fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), reason: reason.into() }
}
