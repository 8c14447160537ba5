//! Local objectives (placeholder root).
pub mod objective;
pub use objective::{Batch, Objective};
