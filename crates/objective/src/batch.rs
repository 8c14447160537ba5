//! What every model shares: walking a batch in chunks, the dense gather scratch, grow-only scratch
//! matrices, and the affine map on the raw features (a GEMM for dense data, row loops for CSR).
//!
//! Batches are processed in chunks of at most [`CHUNK`] samples so that a full-batch evaluation of
//! a large local data set (or a wide MLP) never needs scratch proportional to the data; a chunk's
//! contribution is added to the gradient in a fixed order, so results stay deterministic.

use dprox_data::{Csr, Dataset, Features};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut2, s};

use crate::Batch;

/// Most samples one chunk holds. Big enough for GEMMs to run at full speed, small enough that
/// the scratch of a wide MLP stays a few megabytes.
pub(crate) const CHUNK: usize = 1024;

/// The samples of one chunk: a contiguous range of local samples, or a slice of a minibatch.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Sel<'a> {
    /// Samples `start..end`.
    Range(usize, usize),
    /// The listed samples.
    List(&'a [usize]),
}

impl Sel<'_> {
    /// Number of samples in the chunk.
    pub(crate) fn len(&self) -> usize {
        match *self {
            Sel::Range(a, b) => b - a,
            Sel::List(l) => l.len(),
        }
    }

    /// The local index of the chunk's `r`-th sample.
    #[inline]
    pub(crate) fn get(&self, r: usize) -> usize {
        match *self {
            Sel::Range(a, _) => a + r,
            Sel::List(l) => l[r],
        }
    }
}

/// Number of samples `batch` covers on a data set of `n` samples.
pub(crate) fn batch_len(batch: Batch<'_>, n: usize) -> usize {
    match batch {
        Batch::Full => n,
        Batch::Indices(ix) => ix.len(),
    }
}

/// The chunks of `batch`, in order.
pub(crate) fn chunks<'a>(batch: Batch<'a>, n: usize) -> impl Iterator<Item = Sel<'a>> {
    chunks_of(batch, n, CHUNK)
}

/// The chunks of at most `size` samples of `batch`, in order (for models whose per-sample
/// scratch is too large for [`CHUNK`]).
pub(crate) fn chunks_of<'a>(batch: Batch<'a>, n: usize, size: usize) -> impl Iterator<Item = Sel<'a>> {
    (0..batch_len(batch, n).div_ceil(size)).map(move |i| chunk(batch, n, size, i))
}

/// Chunk `i` of `batch` in chunks of `size` (see [`chunks_of`]).
pub(crate) fn chunk(batch: Batch<'_>, n: usize, size: usize, i: usize) -> Sel<'_> {
    let len = batch_len(batch, n);
    let (a, b) = (i * size, ((i + 1) * size).min(len));
    match batch {
        Batch::Full => Sel::Range(a, b),
        Batch::Indices(ix) => Sel::List(&ix[a..b]),
    }
}

/// The first `rows` rows of a grow-only scratch matrix with `cols` columns. It reallocates only
/// when more rows are needed than ever before, which keeps the hot path allocation-free.
pub(crate) fn scratch(buf: &mut Array2<f32>, rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    if buf.ncols() != cols || buf.nrows() < rows {
        *buf = Array2::zeros((rows.max(buf.nrows()), cols));
    }
    buf.slice_mut(s![..rows, ..])
}

/// The features of one chunk, ready for an affine map.
pub(crate) enum Input<'a> {
    /// Dense rows (a view into the data, or the gathered rows of a minibatch).
    Dense(ArrayView2<'a, f32>),
    /// Sparse rows, read in place.
    Sparse(&'a Csr, Sel<'a>),
}

/// Scratch for gathering the dense rows of a minibatch into one contiguous matrix.
#[derive(Debug, Default)]
pub(crate) struct Gather {
    buf: Array2<f32>,
}

impl Gather {
    /// An empty gather buffer; it grows on first use.
    pub(crate) fn new() -> Self {
        Gather { buf: Array2::zeros((0, 0)) }
    }

    /// The features of the chunk `sel`. A dense range is a view of the data matrix itself (no
    /// copy); a dense index list is copied into the scratch; sparse rows are read in place.
    pub(crate) fn input<'a>(&'a mut self, data: &'a Dataset, sel: Sel<'a>) -> Input<'a> {
        match (&data.features, sel) {
            (Features::Dense(m), Sel::Range(a, b)) => Input::Dense(m.slice(s![a..b, ..])),
            (Features::Dense(m), Sel::List(ix)) => {
                let mut buf = scratch(&mut self.buf, ix.len(), m.ncols());
                for (mut row, &i) in buf.rows_mut().into_iter().zip(ix) {
                    row.assign(&m.row(i));
                }
                Input::Dense(self.buf.slice(s![..ix.len(), ..]))
            }
            (Features::Sparse(c), sel) => Input::Sparse(c, sel),
        }
    }

    /// The features of the chunk `sel` as one contiguous row-major (rows x features) slice: a
    /// contiguous dense range in place, anything else (an index list, a strided matrix, sparse
    /// rows, which are densified) copied into the scratch.
    pub(crate) fn dense<'a>(&'a mut self, data: &'a Dataset, sel: Sel<'a>) -> &'a [f32] {
        let p = data.num_features();
        match (&data.features, sel) {
            (Features::Dense(m), Sel::Range(a, b)) if m.slice(s![a..b, ..]).is_standard_layout() => {
                m.slice(s![a..b, ..]).to_slice().expect("standard layout is contiguous")
            }
            (Features::Dense(m), sel) => {
                let mut buf = scratch(&mut self.buf, sel.len(), p);
                for (r, mut row) in buf.rows_mut().into_iter().enumerate() {
                    row.assign(&m.row(sel.get(r)));
                }
                self.contiguous(sel.len(), p)
            }
            (Features::Sparse(c), sel) => {
                let mut buf = scratch(&mut self.buf, sel.len(), p);
                buf.fill(0.0);
                for (r, mut row) in buf.rows_mut().into_iter().enumerate() {
                    let (ix, vals) = c.row(sel.get(r));
                    for (&j, &v) in ix.iter().zip(vals) {
                        row[j as usize] = v;
                    }
                }
                self.contiguous(sel.len(), p)
            }
        }
    }

    /// The first `rows` rows of the scratch as a slice.
    fn contiguous(&self, rows: usize, cols: usize) -> &[f32] {
        &self.buf.as_slice().expect("scratch is standard layout")[..rows * cols]
    }
}

/// `out = input W^T + b`, where `w` is the row-major (out x in) weight matrix and `out` is
/// (rows x out).
pub(crate) fn affine_forward(
    input: &Input<'_>,
    w: &[f32],
    b: Option<&[f32]>,
    out: &mut ArrayViewMut2<'_, f32>,
) {
    let m = out.ncols();
    match b {
        Some(b) => {
            let b = ArrayView1::from(b);
            for mut row in out.rows_mut() {
                row.assign(&b);
            }
        }
        None => out.fill(0.0),
    }
    match input {
        Input::Dense(x) => {
            let w = ArrayView2::from_shape((m, x.ncols()), w).expect("weight slice matches layer shape");
            general_mat_mul(1.0, x, &w.t(), 1.0, out);
        }
        Input::Sparse(csr, sel) => {
            let p = csr.cols;
            for (r, mut row) in out.rows_mut().into_iter().enumerate() {
                let (ix, vals) = csr.row(sel.get(r));
                for (j, o) in row.iter_mut().enumerate() {
                    let wj = &w[j * p..(j + 1) * p];
                    let mut acc = 0.0f32;
                    for (&c, &v) in ix.iter().zip(vals) {
                        acc += wj[c as usize] * v;
                    }
                    *o += acc;
                }
            }
        }
    }
}

/// Adds the weight gradient `d^T input` to `gw` (row-major out x in) and the column sums of `d`
/// to `gb`, where `d` (rows x out) holds dLoss/d(out) for the chunk.
pub(crate) fn affine_backward(
    input: &Input<'_>,
    d: ArrayView2<'_, f32>,
    gw: &mut [f32],
    gb: Option<&mut [f32]>,
) {
    let m = d.ncols();
    match input {
        Input::Dense(x) => {
            let mut g =
                ArrayViewMut2::from_shape((m, x.ncols()), gw).expect("gradient slice matches layer shape");
            general_mat_mul(1.0, &d.t(), x, 1.0, &mut g);
        }
        Input::Sparse(csr, sel) => {
            let p = csr.cols;
            for (r, drow) in d.rows().into_iter().enumerate() {
                let (ix, vals) = csr.row(sel.get(r));
                for (j, &dj) in drow.iter().enumerate() {
                    let gj = &mut gw[j * p..(j + 1) * p];
                    for (&c, &v) in ix.iter().zip(vals) {
                        gj[c as usize] += dj * v;
                    }
                }
            }
        }
    }
    if let Some(gb) = gb {
        // Row by row, in sample order: a fixed summation order, so the result is deterministic.
        for drow in d.rows() {
            for (g, &dj) in gb.iter_mut().zip(drow) {
                *g += dj;
            }
        }
    }
}

/// Checks the shape of the data and the consistency of its CSR arrays, so that the models can
/// index without further checks (an out-of-range column would silently read another row of W).
pub(crate) fn check_data(data: &Dataset) -> Result<(), crate::ObjectiveError> {
    Ok(data.validate()?)
}

/// Checks that every target is an exact class index in `0..classes`.
pub(crate) fn check_labels(data: &Dataset, classes: usize) -> Result<(), crate::ObjectiveError> {
    for (index, &label) in data.targets.iter().enumerate() {
        if !(label >= 0.0 && label.fract() == 0.0 && (label as usize) < classes) {
            return Err(crate::ObjectiveError::BadLabel { index, label, classes });
        }
    }
    Ok(())
}
