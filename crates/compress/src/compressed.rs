//! A compressed vector in memory: what a node sends, and what its neighbours apply.

use crate::spec::ValueFormat;

/// One compressed d-vector Q(v). Buffers are reused from message to message: a compressor writes
/// into an existing `Compressed` without allocating once its vectors have grown to size.
#[derive(Clone, Debug, PartialEq)]
pub struct Compressed {
    /// Length d of the vector this represents.
    pub dim: usize,
    /// The representation.
    pub body: Body,
}

/// The representations, one per compressor family.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// All d values.
    Dense {
        /// Number format on the wire.
        format: ValueFormat,
        /// The values (already rounded to `format`).
        values: Vec<f32>,
    },
    /// Listed coordinates; every other coordinate is zero.
    Sparse {
        /// Number format on the wire.
        format: ValueFormat,
        /// Strictly ascending coordinates.
        indices: Vec<u32>,
        /// Their values (already rounded to `format`).
        values: Vec<f32>,
    },
    /// `rand_k`: like `Sparse`, but only the seed and the values travel; the indices are
    /// regenerated from the seed by the receiver ([`crate::rand_k_indices`]).
    RandK {
        /// Number format on the wire.
        format: ValueFormat,
        /// The seed the indices are drawn from.
        seed: u64,
        /// Strictly ascending coordinates (derived from `seed`; not sent).
        indices: Vec<u32>,
        /// Their values.
        values: Vec<f32>,
    },
    /// QSGD: value_j = scale * level_j.
    Qsgd {
        /// The number of levels s.
        levels: u32,
        /// ||v|| / (s tau).
        scale: f32,
        /// Signed level of each coordinate, in [-s, s].
        q: Vec<i16>,
    },
    /// Scaled sign: value_j = scale * (-1 if bit j is set else +1).
    Sign {
        /// ||v||_1 / d.
        scale: f32,
        /// Bit j (word j / 64, bit j % 64) set when coordinate j is negative.
        negative: Vec<u64>,
    },
}

/// Why a [`Compressed`] is not a well-formed message of its length.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Malformed {
    /// The body holds another number of values than the message's length (or than its indices).
    #[error("{what} has {got} entries, expected {expected}")]
    Length {
        /// Which part of the body.
        what: &'static str,
        /// Entries present.
        got: usize,
        /// Entries expected.
        expected: usize,
    },
    /// A coordinate past the end of the vector.
    #[error("index {index} is out of range for {dim} coordinates")]
    IndexOutOfRange {
        /// The index.
        index: u32,
        /// The vector's length.
        dim: usize,
    },
    /// Coordinates not strictly ascending.
    #[error("indices are not strictly ascending ({before} then {after})")]
    Unordered {
        /// The earlier index.
        before: u32,
        /// The one after it.
        after: u32,
    },
    /// A QSGD level outside [-s, s].
    #[error("level {level} is outside [-{levels}, {levels}]")]
    Level {
        /// The level.
        level: i16,
        /// s.
        levels: u32,
    },
    /// A scale that is not a finite number.
    #[error("the scale {0} is not finite")]
    Scale(f32),
}

impl Compressed {
    /// Checks that the body is a well-formed message of length `dim`: lengths, index range and
    /// order, QSGD levels, finite scales (what a decoded message satisfies by construction, and
    /// a message built in memory must satisfy before it is applied). O(nnz); values are not
    /// scanned (the wire decoder checks they are finite).
    pub fn check(&self) -> Result<(), Malformed> {
        let len = |what, got: usize, expected: usize| {
            if got == expected { Ok(()) } else { Err(Malformed::Length { what, got, expected }) }
        };
        match &self.body {
            Body::Dense { values, .. } => len("the dense body", values.len(), self.dim),
            Body::Sparse { indices, values, .. } | Body::RandK { indices, values, .. } => {
                len("the values", values.len(), indices.len())?;
                check_indices(indices, self.dim)
            }
            Body::Qsgd { levels, scale, q } => {
                len("the levels", q.len(), self.dim)?;
                if !scale.is_finite() {
                    return Err(Malformed::Scale(*scale));
                }
                match q.iter().find(|l| l.unsigned_abs() as u32 > *levels) {
                    Some(&level) => Err(Malformed::Level { level, levels: *levels }),
                    None => Ok(()),
                }
            }
            Body::Sign { scale, negative } => {
                len("the sign bits", negative.len(), self.dim.div_ceil(64))?;
                if scale.is_finite() { Ok(()) } else { Err(Malformed::Scale(*scale)) }
            }
        }
    }

    /// An empty dense message of length `dim` (to be overwritten by a compressor or decoder).
    pub fn new(dim: usize) -> Compressed {
        Compressed { dim, body: Body::Dense { format: ValueFormat::F32, values: Vec::new() } }
    }

    /// Makes `self` a copy of `src`, reusing `self`'s buffers when the representation matches
    /// (the derived `clone_from` would allocate anew).
    pub fn assign(&mut self, src: &Compressed) {
        self.dim = src.dim;
        match (&mut self.body, &src.body) {
            (Body::Dense { format, values }, Body::Dense { format: f, values: v }) => {
                *format = *f;
                values.clone_from(v);
            }
            (Body::Sparse { format, indices, values }, Body::Sparse { format: f, indices: i, values: v }) => {
                *format = *f;
                indices.clone_from(i);
                values.clone_from(v);
            }
            (
                Body::RandK { format, seed, indices, values },
                Body::RandK { format: f, seed: s, indices: i, values: v },
            ) => {
                *format = *f;
                *seed = *s;
                indices.clone_from(i);
                values.clone_from(v);
            }
            (Body::Qsgd { levels, scale, q }, Body::Qsgd { levels: l, scale: s, q: qq }) => {
                *levels = *l;
                *scale = *s;
                q.clone_from(qq);
            }
            (Body::Sign { scale, negative }, Body::Sign { scale: s, negative: n }) => {
                *scale = *s;
                negative.clone_from(n);
            }
            (body, src) => *body = src.clone(),
        }
    }

    /// Heap bytes its buffers hold (their capacity): what keeping it in a pool costs.
    pub fn capacity_bytes(&self) -> usize {
        match &self.body {
            Body::Dense { values, .. } => 4 * values.capacity(),
            Body::Sparse { indices, values, .. } | Body::RandK { indices, values, .. } => {
                4 * (indices.capacity() + values.capacity())
            }
            Body::Qsgd { q, .. } => 2 * q.capacity(),
            Body::Sign { negative, .. } => 8 * negative.capacity(),
        }
    }

    /// Number of coordinates whose value is carried explicitly (d for dense formats, k for sparse).
    pub fn nnz(&self) -> usize {
        match &self.body {
            Body::Dense { values, .. } => values.len(),
            Body::Sparse { indices, .. } | Body::RandK { indices, .. } => indices.len(),
            Body::Qsgd { q, .. } => q.iter().filter(|&&l| l != 0).count(),
            Body::Sign { .. } => self.dim,
        }
    }

    /// acc += w * Q, coordinate by coordinate (sparse bodies touch only their k coordinates).
    pub fn add_scaled_to(&self, w: f32, acc: &mut [f32]) {
        debug_assert_eq!(acc.len(), self.dim);
        match &self.body {
            Body::Dense { values, .. } => {
                for (a, &v) in acc.iter_mut().zip(values) {
                    *a += w * v;
                }
            }
            Body::Sparse { indices, values, .. } | Body::RandK { indices, values, .. } => {
                for (&i, &v) in indices.iter().zip(values) {
                    acc[i as usize] += w * v;
                }
            }
            Body::Qsgd { scale, q, .. } => {
                for (a, &l) in acc.iter_mut().zip(q) {
                    if l != 0 {
                        *a += w * (scale * l as f32);
                    }
                }
            }
            Body::Sign { scale, negative } => {
                let (pos, neg) = (w * scale, w * -scale);
                for (j, a) in acc.iter_mut().enumerate() {
                    *a += if negative[j / 64] >> (j % 64) & 1 == 1 { neg } else { pos };
                }
            }
        }
    }

    /// acc += w * Q in f64: for running sums (public estimates, weighted neighbour sums) that
    /// must not lose small increments to f32 rounding over many iterations.
    pub fn add_scaled_to_f64(&self, w: f64, acc: &mut [f64]) {
        debug_assert_eq!(acc.len(), self.dim);
        match &self.body {
            Body::Dense { values, .. } => {
                for (a, &v) in acc.iter_mut().zip(values) {
                    *a += w * v as f64;
                }
            }
            Body::Sparse { indices, values, .. } | Body::RandK { indices, values, .. } => {
                for (&i, &v) in indices.iter().zip(values) {
                    acc[i as usize] += w * v as f64;
                }
            }
            Body::Qsgd { scale, q, .. } => {
                for (a, &l) in acc.iter_mut().zip(q) {
                    if l != 0 {
                        *a += w * (scale * l as f32) as f64;
                    }
                }
            }
            Body::Sign { scale, negative } => {
                let (pos, neg) = (w * *scale as f64, w * -*scale as f64);
                for (j, a) in acc.iter_mut().enumerate() {
                    *a += if negative[j / 64] >> (j % 64) & 1 == 1 { neg } else { pos };
                }
            }
        }
    }

    /// Writes the dense vector Q into `out` (length d).
    pub fn to_dense(&self, out: &mut [f32]) {
        out.fill(0.0);
        self.add_scaled_to(1.0, out);
    }

    /// The dense values when this is a `Dense` body (identity messages), else `None`.
    pub fn dense_values(&self) -> Option<&[f32]> {
        match &self.body {
            Body::Dense { values, .. } => Some(values),
            _ => None,
        }
    }

    /// The first non-finite value carried, as (coordinate, value), if any.
    pub fn first_non_finite(&self) -> Option<(usize, f32)> {
        match &self.body {
            // The position is looked up only when something is wrong.
            Body::Dense { values, .. } if all_finite(values) => None,
            Body::Dense { values, .. } => values.iter().position(|v| !v.is_finite()).map(|i| (i, values[i])),
            Body::Sparse { indices, values, .. } | Body::RandK { indices, values, .. } => {
                values.iter().position(|v| !v.is_finite()).map(|p| (indices[p] as usize, values[p]))
            }
            Body::Qsgd { scale, .. } | Body::Sign { scale, .. } => {
                (!scale.is_finite()).then_some((0, *scale))
            }
        }
    }
}

/// Whether every value is finite. A short-circuiting `all` tests and branches per value; folding
/// fixed blocks without a branch lets the compiler vectorise the test (about 10x faster).
fn all_finite(v: &[f32]) -> bool {
    v.chunks(256).all(|block| block.iter().fold(true, |ok, x| ok & x.is_finite()))
}

/// Indices strictly ascending and below `dim`.
fn check_indices(indices: &[u32], dim: usize) -> Result<(), Malformed> {
    for w in indices.windows(2) {
        if w[0] >= w[1] {
            return Err(Malformed::Unordered { before: w[0], after: w[1] });
        }
    }
    match indices.last() {
        Some(&index) if index as usize >= dim => Err(Malformed::IndexOutOfRange { index, dim }),
        _ => Ok(()),
    }
}
