//! Data for dprox: loading data sets, scaling them, holding out a test set, dealing the samples
//! out to `n` nodes (IID or with label skew), and generating seeded synthetic problems.
//!
//! This crate owns the in-memory [`Dataset`] that every objective consumes and everything that
//! produces one. It does no training and no networking. Every random choice goes through
//! `dprox-rng` streams keyed by the caller's seed, so the same seed gives the same split,
//! partition and synthetic data on every machine.
//!
//! # Layout
//! - [`dataset`]: [`Dataset`], [`Features`] (dense or [`Csr`] sparse) and [`Task`].
//! - [`csv`]: [`load_csv`] for numeric CSV (plain or gzip), label first or last.
//! - [`libsvm`]: [`load_libsvm`] for LIBSVM/svmlight files, stored sparse.
//! - [`idx`]: [`load_idx`] for MNIST's IDX image/label files.
//! - [`scale`]: [`Scale`], [`fit_scaler`] and [`Scaler::apply`]: fit on train, apply to test.
//! - [`split`]: [`split_test`], a seeded train/test split.
//! - [`partition`]: [`partition_iid`], [`partition_label_skew`], [`partition_dirichlet`] and
//!   [`PartitionStats`].
//! - [`synthetic`]: [`sparse_logistic`], [`least_squares`] and [`gaussian_mixture`].
//! - [`error`]: [`DataError`], whose messages name the file, line, column and offending value.
//!
//! # Example
//! ```
//! use dprox_data::{
//!     fit_scaler, gaussian_mixture, partition_label_skew, split_test, PartitionStats, Scale,
//! };
//!
//! // 10 balanced classes, 50 samples each.
//! let data = gaussian_mixture(500, 4, 10, 3.0, 7)?.data;
//! let (mut train, mut test) = split_test(&data, 0.2, 7)?;
//! assert_eq!((train.len(), test.len()), (400, 100));
//!
//! // Standardize with the training statistics only.
//! let scaler = fit_scaler(&train, Scale::Standardize)?;
//! scaler.apply(&mut train)?;
//! scaler.apply(&mut test)?;
//!
//! // Five nodes, two classes each: node i holds classes i and 9 - i.
//! let parts = partition_label_skew(&train, 5, 2, 7)?;
//! let stats = PartitionStats::new(&train, &parts);
//! assert_eq!(stats.classes_of(0), vec![0, 9]);
//! assert_eq!(stats.sizes.iter().sum::<usize>(), train.len());
//! let node0 = train.subset(&parts[0]);
//! assert_eq!(node0.len(), stats.sizes[0]);
//! # Ok::<(), dprox_data::DataError>(())
//! ```

pub mod csv;
pub mod dataset;
pub mod error;
pub mod idx;
pub mod libsvm;
pub mod partition;
mod read;
pub mod scale;
pub mod split;
pub mod synthetic;

pub use csv::{CsvOptions, LabelColumn, load_csv};
pub use dataset::{Csr, Dataset, Features, InvalidDataset, Task};
pub use error::DataError;
pub use idx::{IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, load_idx};
pub use libsvm::{LibsvmOptions, load_libsvm};
pub use partition::{
    PartitionStats, Partitioner, label_skew_classes, partition, partition_dirichlet, partition_iid,
    partition_label_skew,
};
pub use scale::{Scale, Scaler, fit_scaler};
pub use split::split_test;
pub use synthetic::{Synthetic, SyntheticSpec, gaussian_mixture, least_squares, sparse_logistic};
