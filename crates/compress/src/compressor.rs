//! The compressors: `compress(v, seed, &mut out)` writes Q(v) into a reused [`Compressed`].

use crate::compressed::{Body, Compressed};
use crate::spec::{CompressorSpec, ValueFormat, k_of};

/// A compressor for vectors of one length, with the scratch space it reuses between calls.
#[derive(Clone, Debug)]
pub struct Compressor {
    spec: CompressorSpec,
    dim: usize,
    k: usize,
    /// |v| bit patterns for the top-k threshold selection.
    mags: Vec<u32>,
    /// Membership bits for rand-k sampling (cleared after each use).
    marks: Vec<u64>,
}

impl Compressor {
    /// A compressor for `dim`-vectors. Fails when the spec's parameters are out of range.
    pub fn new(spec: CompressorSpec, dim: usize) -> Result<Compressor, String> {
        spec.validate()?;
        let k = match &spec {
            CompressorSpec::TopK { ratio, .. } | CompressorSpec::RandK { ratio, .. } => k_of(*ratio, dim),
            _ => dim,
        };
        Ok(Compressor { spec, dim, k, mags: Vec::new(), marks: Vec::new() })
    }

    /// The spec this was built from.
    pub fn spec(&self) -> &CompressorSpec {
        &self.spec
    }

    /// Entries kept by a sparsifier (d for the others).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Writes Q(v) into `out`. `seed` drives the randomness of `rand_k` (index choice, also sent)
    /// and `qsgd` (stochastic rounding); deterministic compressors ignore it.
    pub fn compress(&mut self, v: &[f32], seed: u64, out: &mut Compressed) {
        assert_eq!(v.len(), self.dim, "compress: vector length {} != dim {}", v.len(), self.dim);
        out.dim = self.dim;
        match self.spec.clone() {
            CompressorSpec::Identity { values: format } => {
                let values = dense_slot(out, format);
                values.clear();
                match format {
                    ValueFormat::F32 => values.extend_from_slice(v),
                    _ => values.extend(v.iter().map(|&x| format.round(x))),
                }
            }
            CompressorSpec::TopK { values: format, .. } => {
                let (indices, values) = sparse_slot(out, format);
                top_k(v, self.k, &mut self.mags, indices);
                values.clear();
                values.extend(indices.iter().map(|&i| format.round(v[i as usize])));
            }
            CompressorSpec::RandK { values: format, .. } => {
                let (indices, values) = randk_slot(out, format, seed);
                rand_k_indices_into(seed, self.dim, self.k, &mut self.marks, indices);
                values.clear();
                values.extend(indices.iter().map(|&i| format.round(v[i as usize])));
            }
            CompressorSpec::Qsgd { levels } => qsgd(v, levels, seed, out),
            CompressorSpec::Sign => sign(v, out),
        }
    }
}

fn dense_slot(out: &mut Compressed, fmt: ValueFormat) -> &mut Vec<f32> {
    if !matches!(out.body, Body::Dense { .. }) {
        out.body = Body::Dense { format: fmt, values: Vec::new() };
    }
    match &mut out.body {
        Body::Dense { format, values } => {
            *format = fmt;
            values
        }
        _ => unreachable!(),
    }
}

fn sparse_slot(out: &mut Compressed, fmt: ValueFormat) -> (&mut Vec<u32>, &mut Vec<f32>) {
    if !matches!(out.body, Body::Sparse { .. }) {
        out.body = Body::Sparse { format: fmt, indices: Vec::new(), values: Vec::new() };
    }
    match &mut out.body {
        Body::Sparse { format, indices, values } => {
            *format = fmt;
            (indices, values)
        }
        _ => unreachable!(),
    }
}

fn randk_slot(out: &mut Compressed, fmt: ValueFormat, s: u64) -> (&mut Vec<u32>, &mut Vec<f32>) {
    if !matches!(out.body, Body::RandK { .. }) {
        out.body = Body::RandK { format: fmt, seed: s, indices: Vec::new(), values: Vec::new() };
    }
    match &mut out.body {
        Body::RandK { format, seed, indices, values } => {
            *format = fmt;
            *seed = s;
            (indices, values)
        }
        _ => unreachable!(),
    }
}

/// The coordinates of the k entries of largest |v|, ascending, ties to the lower index, in O(d):
/// one `select_nth_unstable` finds the k-th magnitude t, then one pass keeps every |v_j| > t and
/// the first (k - #{|v| > t}) coordinates with |v_j| == t.
///
/// Magnitudes are compared as the bit patterns of |v_j| (for non-negative IEEE floats the integer
/// order is the numeric order), which makes the selection several times faster than comparing
/// floats.
pub fn top_k(v: &[f32], k: usize, mags: &mut Vec<u32>, indices: &mut Vec<u32>) {
    indices.clear();
    let d = v.len();
    if k >= d {
        indices.extend(0..d as u32);
        return;
    }
    mags.clear();
    mags.extend(v.iter().map(|x| x.abs().to_bits()));
    let (above, &mut t, _) = mags.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
    let strictly_above = above.iter().filter(|&&m| m > t).count();
    let mut ties_left = k - strictly_above;
    for (j, x) in v.iter().enumerate() {
        let m = x.abs().to_bits();
        if m > t {
            indices.push(j as u32);
        } else if m == t && ties_left > 0 {
            ties_left -= 1;
            indices.push(j as u32);
        }
    }
    debug_assert_eq!(indices.len(), k);
}

/// The `k` distinct coordinates of `0..dim` that `rand_k` keeps for `seed`, ascending. Sender and
/// receiver both call this, so only the seed travels.
pub fn rand_k_indices(seed: u64, dim: usize, k: usize, out: &mut Vec<u32>) {
    rand_k_indices_into(seed, dim, k, &mut Vec::new(), out)
}

/// Robert Floyd's sampling (k draws, O(k) expected) followed by a sort of the k picks.
fn rand_k_indices_into(seed: u64, dim: usize, k: usize, marks: &mut Vec<u64>, out: &mut Vec<u32>) {
    out.clear();
    let words = dim.div_ceil(64);
    if marks.len() < words {
        marks.resize(words, 0);
    }
    let mut rng = dprox_rng::Rng::seed_from(seed);
    for j in (dim - k)..dim {
        let t = rng.below_usize(j + 1);
        let pick = if marks[t / 64] >> (t % 64) & 1 == 1 { j } else { t };
        marks[pick / 64] |= 1 << (pick % 64);
        out.push(pick as u32);
    }
    for &i in out.iter() {
        marks[i as usize / 64] = 0;
    }
    out.sort_unstable();
}

fn qsgd(v: &[f32], s: u32, seed: u64, out: &mut Compressed) {
    let d = v.len();
    let norm = v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt();
    let sf = s as f64;
    let tau = 1.0 + (d as f64 / (sf * sf)).min((d as f64).sqrt() / sf);
    if !matches!(out.body, Body::Qsgd { .. }) {
        out.body = Body::Qsgd { levels: s, scale: 0.0, q: Vec::new() };
    }
    let Body::Qsgd { levels, scale, q } = &mut out.body else { unreachable!() };
    *levels = s;
    *scale = (norm / (sf * tau)) as f32;
    q.clear();
    if norm == 0.0 {
        q.resize(d, 0);
        return;
    }
    let mut rng = dprox_rng::Rng::seed_from(seed);
    let r_scale = sf / norm;
    q.extend(v.iter().map(|&x| {
        let r = (x.abs() as f64 * r_scale).min(sf);
        let lower = r.floor();
        let up = rng.uniform_f64() < r - lower;
        let level = (lower as i16) + up as i16;
        if x < 0.0 { -level } else { level }
    }));
}

fn sign(v: &[f32], out: &mut Compressed) {
    let d = v.len();
    let l1: f64 = v.iter().map(|&x| x.abs() as f64).sum();
    if !matches!(out.body, Body::Sign { .. }) {
        out.body = Body::Sign { scale: 0.0, negative: Vec::new() };
    }
    let Body::Sign { scale, negative } = &mut out.body else { unreachable!() };
    *scale = if d == 0 { 0.0 } else { (l1 / d as f64) as f32 };
    negative.clear();
    negative.resize(d.div_ceil(64), 0);
    for (j, &x) in v.iter().enumerate() {
        // sign(0) is sent as +1: with one bit a coordinate there is no zero, and the
        // contraction ||v - Q(v)||^2 = ||v||^2 - ||v||_1^2 / d holds either way.
        if x < 0.0 {
            negative[j / 64] |= 1 << (j % 64);
        }
    }
}
