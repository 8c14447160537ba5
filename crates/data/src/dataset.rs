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

impl Dataset {
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
