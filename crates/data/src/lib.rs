//! Data for dprox (placeholder lib root; see dataset.rs).
pub mod dataset;
pub use dataset::{Csr, Dataset, Features};
