//! The in-memory data set every loader produces and every objective consumes.

use ndarray::Array2;

/// Features of a data set: one row per sample.
#[derive(Clone, Debug, PartialEq)]
pub enum Features {
    /// Row-major dense matrix, samples x features.
    Dense(Array2<f32>),
    /// Compressed sparse rows (LIBSVM data, large synthetic problems).
    Sparse(Csr),
}

/// A compressed-sparse-row matrix of f32.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Csr {
    /// Number of rows (samples).
    pub rows: usize,
    /// Number of columns (features).
    pub cols: usize,
    /// Row `r` occupies `indices[indptr[r]..indptr[r + 1]]`; length `rows + 1`.
    pub indptr: Vec<usize>,
    /// Column indices, ascending within a row.
    pub indices: Vec<u32>,
    /// Values, aligned with `indices`.
    pub values: Vec<f32>,
}

impl Csr {
    /// The (indices, values) of row `r`.
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[r], self.indptr[r + 1]);
        (&self.indices[a..b], &self.values[a..b])
    }
}

/// What the targets of a file are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Task {
    /// Class labels: stored as exact integers `0..classes`.
    #[default]
    Classification,
    /// Real-valued targets; the data set's `classes` is `None`.
    Regression,
}

/// A labelled data set. Class labels are stored as exact integers in `targets` (0..classes);
/// regression targets are arbitrary reals and `classes` is `None`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// The samples.
    pub features: Features,
    /// One target per sample: a class index (as f32) or a real value.
    pub targets: Vec<f32>,
    /// Number of classes for classification data, `None` for regression.
    pub classes: Option<usize>,
}

/// What [`Dataset::validate`] finds wrong with a data set put together by hand (the loaders and
/// generators of this crate never produce one of these).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDataset {
    /// No samples, so a mean loss is undefined.
    #[error("the data set has no samples")]
    Empty,
    /// The number of feature rows differs from the number of targets.
    #[error("the features have {rows} rows but there are {targets} targets")]
    TargetCount {
        /// Rows of the feature matrix.
        rows: usize,
        /// Length of `targets`.
        targets: usize,
    },
    /// The CSR arrays are inconsistent: reading them would go out of bounds or read the wrong
    /// weights.
    #[error("malformed sparse features: {reason}")]
    MalformedCsr {
        /// What is wrong, in words.
        reason: String,
    },
}

impl Dataset {
    /// Checks what an objective relies on to index without further checks: as many targets as
    /// feature rows, at least one sample, and for sparse features offsets that start at 0 and
    /// never decrease, arrays whose lengths match the last offset, and columns in range. Custom
    /// objectives call it in their constructor, as the built-in ones do.
    pub fn validate(&self) -> Result<(), InvalidDataset> {
        let rows = match &self.features {
            Features::Dense(m) => m.nrows(),
            Features::Sparse(c) => {
                let bad = |reason: String| Err(InvalidDataset::MalformedCsr { reason });
                if c.indptr.len() != c.rows + 1 {
                    return bad(format!("indptr has {} entries for {} rows", c.indptr.len(), c.rows));
                }
                if c.indptr[0] != 0 || c.indptr.windows(2).any(|w| w[0] > w[1]) {
                    return bad("indptr does not start at 0 and never decrease".into());
                }
                let nnz = c.indptr[c.rows];
                if c.indices.len() != nnz || c.values.len() != nnz {
                    return bad(format!(
                        "indptr ends at {nnz} but there are {} indices and {} values",
                        c.indices.len(),
                        c.values.len()
                    ));
                }
                if let Some(&col) = c.indices.iter().find(|&&col| col as usize >= c.cols) {
                    return bad(format!("column index {col} is out of range for {} columns", c.cols));
                }
                c.rows
            }
        };
        if rows != self.targets.len() {
            return Err(InvalidDataset::TargetCount { rows, targets: self.targets.len() });
        }
        if rows == 0 {
            return Err(InvalidDataset::Empty);
        }
        Ok(())
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Number of features (columns).
    pub fn num_features(&self) -> usize {
        match &self.features {
            Features::Dense(m) => m.ncols(),
            Features::Sparse(c) => c.cols,
        }
    }

    /// The class of sample `i` (classification data only).
    pub fn class_of(&self, i: usize) -> usize {
        self.targets[i] as usize
    }

    /// A new data set holding the samples `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let features = match &self.features {
            Features::Dense(m) => {
                let mut out = Array2::<f32>::zeros((idx.len(), m.ncols()));
                for (r, &i) in idx.iter().enumerate() {
                    out.row_mut(r).assign(&m.row(i));
                }
                Features::Dense(out)
            }
            Features::Sparse(c) => {
                let mut out = Csr { rows: idx.len(), cols: c.cols, indptr: vec![0], ..Csr::default() };
                for &i in idx {
                    let (ix, v) = c.row(i);
                    out.indices.extend_from_slice(ix);
                    out.values.extend_from_slice(v);
                    out.indptr.push(out.indices.len());
                }
                Features::Sparse(out)
            }
        };
        Dataset { features, targets: idx.iter().map(|&i| self.targets[i]).collect(), classes: self.classes }
    }

    /// Number of samples of each class (`classes` entries; empty for regression data).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.unwrap_or(0)];
        if !counts.is_empty() {
            for i in 0..self.len() {
                counts[self.class_of(i)] += 1;
            }
        }
        counts
    }

    /// The sample indices of each class, ascending (`classes` lists; empty for regression data).
    pub fn indices_by_class(&self) -> Vec<Vec<usize>> {
        let mut by = vec![Vec::new(); self.classes.unwrap_or(0)];
        if !by.is_empty() {
            for i in 0..self.len() {
                by[self.class_of(i)].push(i);
            }
        }
        by
    }
}
