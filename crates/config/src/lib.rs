//! The run config of dprox: the TOML schema and its validation, nothing else.
//!
//! One config file describes a whole experiment (algorithm, graph, data, model, regulariser,
//! step sizes, compression, simulated network, per-node overrides, cluster settings). This crate
//! parses it straight into typed values (enums, not strings matched later: a typo is a parse error
//! naming the key and the accepted values) and checks what can be checked without reading a file.
//! Turning a valid config into a run (loading and partitioning the data, building the graph, the
//! mixing weights and the objectives) is `dprox-prepare`'s job. This crate pulls in no compute
//! backend: a config is parsed and validated on any machine.
//!
//! # Layout
//! - [`schema`]: the serde structs, key by key (unknown keys are errors).
//! - `validate`: [`Config::validate`], the checks that need no files, section by section.
//! - [`error`]: [`ConfigError`], naming the file or the key at fault.
//!
//! ```
//! use dprox_config::parse;
//! let cfg = parse(r#"
//!     [run]
//!     algorithm = "cdproxsgt"
//!     iterations = 100
//!     [topology]
//!     kind = "ring"
//!     nodes = 4
//!     [data]
//!     synthetic = { kind = "least_squares", samples = 400, features = 20 }
//!     [model]
//!     kind = "least_squares"
//!     [optimizer]
//!     lr = 0.05
//!     batch_size = 16
//!     gamma_x = 0.5
//!     gamma_y = 0.5
//!     [compression]
//!     x = { kind = "top_k", ratio = 0.25 }
//!     y = { kind = "top_k", ratio = 0.25 }
//! "#, "inline.toml".as_ref()).unwrap();
//! assert_eq!(cfg.optimizer.batch_size, dprox_core::BatchSize::Samples(16));
//! assert!(cfg.validate().unwrap().is_empty());
//!
//! // Values are checked as they are parsed: the error names the key and what it accepts.
//! let bad = parse("[run]\nalgorithm = \"sgd\"", "bad.toml".as_ref()).unwrap_err();
//! assert!(bad.to_string().contains("unknown variant `sgd`"), "{bad}");
//! ```

pub mod error;
pub mod schema;
mod validate;

use std::path::Path;

pub use error::ConfigError;
pub use schema::Config;

/// Reads and parses a config file (without validating it).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    parse(&text, path)
}

/// Parses config text; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })
}
