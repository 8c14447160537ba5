//! The wire format of a compressed vector, its exact size, and a validating decoder.
//!
//! ```text
//! u8   tag        1 dense, 2 sparse, 3 rand_k, 4 qsgd, 5 sign
//! u8   flags      bits 0-1: value format (0 f32, 1 f16, 2 bf16); bit 2: index block is zstd
//! var  dim        LEB128 varint
//! dense   values: dim x width bytes, little endian
//! sparse  var k; index block; values: k x width
//!         index block = varint(i_0), varint(i_1 - i_0 - 1), ... (ascending, gaps minus one);
//!         with the zstd flag: var n, then n bytes of zstd holding that block
//! rand_k  u64 seed; var k; values: k x width (the receiver regenerates the indices)
//! qsgd    var s; f32 scale; levels q_j + s packed LSB-first in b = ceil(log2(2s + 1)) bits each
//! sign    f32 scale; ceil(dim / 8) bytes, bit j set when coordinate j is negative
//! ```

use crate::compressed::{Body, Compressed};
use crate::compressor::rand_k_indices;
use crate::spec::ValueFormat;

pub(crate) const TAG_DENSE: u8 = 1;
const TAG_SPARSE: u8 = 2;
const TAG_RANDK: u8 = 3;
const TAG_QSGD: u8 = 4;
const TAG_SIGN: u8 = 5;
pub(crate) const FLAG_ZSTD: u8 = 4;

/// Why a received message was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    /// The message ended before a field it announced.
    #[error("message truncated: {0}")]
    Truncated(&'static str),
    /// An unknown message kind.
    #[error("unknown message tag {0}")]
    UnknownTag(u8),
    /// Unknown flag bits or value format.
    #[error("invalid flags {0:#04x}")]
    BadFlags(u8),
    /// The vector length differs from the model's.
    #[error("vector length {got} does not match the model's {expected}")]
    DimMismatch {
        /// Length in the message.
        got: usize,
        /// Length the receiver expects.
        expected: usize,
    },
    /// More entries than coordinates, or a coordinate out of range.
    #[error("sparse message invalid: {0}")]
    BadIndex(String),
    /// A QSGD level outside [-s, s] or s == 0.
    #[error("qsgd message invalid: {0}")]
    BadLevels(String),
    /// NaN or infinity in the values.
    #[error("non-finite value {value} at coordinate {index}")]
    NonFinite {
        /// Coordinate.
        index: usize,
        /// The value.
        value: f32,
    },
    /// Bytes left after the message.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    /// A varint longer than 10 bytes or overflowing.
    #[error("malformed varint")]
    Varint,
    /// The zstd index block did not decompress to a valid block.
    #[error("zstd index block invalid: {0}")]
    Zstd(String),
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn format_code(f: ValueFormat) -> u8 {
    match f {
        ValueFormat::F32 => 0,
        ValueFormat::F16 => 1,
        ValueFormat::Bf16 => 2,
    }
}

fn qsgd_bits(s: u32) -> usize {
    let states = 2 * s as u64 + 1;
    (64 - (states - 1).leading_zeros()) as usize
}

fn index_block_len(indices: &[u32]) -> usize {
    let mut prev: Option<u32> = None;
    indices
        .iter()
        .map(|&i| {
            let gap = match prev {
                None => i as u64,
                Some(p) => (i - p - 1) as u64,
            };
            prev = Some(i);
            varint_len(gap)
        })
        .sum()
}

fn put_index_block(out: &mut Vec<u8>, indices: &[u32]) {
    let mut prev: Option<u32> = None;
    for &i in indices {
        let gap = match prev {
            None => i as u64,
            Some(p) => (i - p - 1) as u64,
        };
        prev = Some(i);
        put_varint(out, gap);
    }
}

fn put_values(out: &mut Vec<u8>, format: ValueFormat, values: &[f32]) {
    if format == ValueFormat::F32 && cfg!(target_endian = "little") {
        // The in-memory form is the wire's: one copy, without zeroing the space first.
        out.extend_from_slice(bytemuck::cast_slice::<f32, u8>(values));
        return;
    }
    // Grow once, then write fixed-size chunks.
    let start = out.len();
    out.resize(start + values.len() * format.width(), 0);
    let dst = &mut out[start..];
    match format {
        ValueFormat::F32 if cfg!(target_endian = "little") => {
            dst.copy_from_slice(bytemuck::cast_slice::<f32, u8>(values))
        }
        ValueFormat::F32 => {
            dst.chunks_exact_mut(4).zip(values).for_each(|(c, v)| c.copy_from_slice(&v.to_le_bytes()))
        }
        ValueFormat::F16 => dst
            .chunks_exact_mut(2)
            .zip(values)
            .for_each(|(c, &v)| c.copy_from_slice(&half::f16::from_f32(v).to_le_bytes())),
        ValueFormat::Bf16 => dst
            .chunks_exact_mut(2)
            .zip(values)
            .for_each(|(c, &v)| c.copy_from_slice(&half::bf16::from_f32(v).to_le_bytes())),
    }
}

impl Compressed {
    /// The exact number of bytes [`Compressed::encode`] writes (without zstd).
    pub fn encoded_len(&self) -> usize {
        let head = 2 + varint_len(self.dim as u64);
        head + match &self.body {
            Body::Dense { format, values } => values.len() * format.width(),
            Body::Sparse { format, indices, values } => {
                varint_len(indices.len() as u64) + index_block_len(indices) + values.len() * format.width()
            }
            Body::RandK { format, values, .. } => {
                8 + varint_len(values.len() as u64) + values.len() * format.width()
            }
            Body::Qsgd { levels, .. } => {
                varint_len(*levels as u64) + 4 + (self.dim * qsgd_bits(*levels)).div_ceil(8)
            }
            Body::Sign { .. } => 4 + self.dim.div_ceil(8),
        }
    }

    /// Appends the wire encoding to `out` (see the module doc), without zstd.
    pub fn encode(&self, out: &mut Vec<u8>) {
        Encoder::default().encode(self, out)
    }

    /// Decodes `bytes` into `self` (reusing its buffers), refusing anything malformed, of the wrong
    /// length, or carrying a non-finite value. On error `self` holds unspecified contents.
    pub fn decode_from(&mut self, bytes: &[u8], expected_dim: usize) -> Result<(), WireError> {
        let mut r = Reader { b: bytes };
        let Prefix { tag, format, zstd, dim } = r.prefix(expected_dim)?;
        self.dim = dim;
        // Dense values are checked as they are copied; the other bodies after decoding.
        let mut finite = false;
        match tag {
            TAG_DENSE => {
                let values = take_dense(&mut self.body, format);
                finite = r.values(format, dim, values)?;
            }
            TAG_SPARSE => decode_sparse(&mut r, &mut self.body, format, zstd, dim)?,
            TAG_RANDK => decode_rand_k(&mut r, &mut self.body, format, dim)?,
            TAG_QSGD => decode_qsgd(&mut r, &mut self.body, dim)?,
            TAG_SIGN => decode_sign(&mut r, &mut self.body, dim)?,
            t => return Err(WireError::UnknownTag(t)),
        }
        if !r.b.is_empty() {
            return Err(WireError::Trailing(r.b.len()));
        }
        if !finite && let Some((index, value)) = self.first_non_finite() {
            return Err(WireError::NonFinite { index, value });
        }
        Ok(())
    }
}

/// The body of a sparse message (after the prefix) into `body`: k, the index block (plain, or
/// zstd-compressed with the flag), then k values. The format is set last, once all is read.
#[inline]
fn decode_sparse(
    r: &mut Reader<'_>,
    body: &mut Body,
    format: ValueFormat,
    zstd: bool,
    dim: usize,
) -> Result<(), WireError> {
    let k = r.count(dim)?;
    let (indices, values) = take_sparse(body);
    if zstd {
        let n = r.varint()? as usize;
        let packed = r.take(n, "zstd index block")?;
        // A block of k varints is at most 5k bytes: refuse anything larger (zip bombs).
        let block = zstd::bulk::decompress(packed, 5 * k + 16).map_err(|e| WireError::Zstd(e.to_string()))?;
        let mut br = Reader { b: &block };
        br.index_block(k, dim, indices)?;
        if !br.b.is_empty() {
            return Err(WireError::Zstd(format!("{} bytes after {k} indices", br.b.len())));
        }
    } else {
        r.index_block(k, dim, indices)?;
    }
    r.values(format, k, values)?; // checked by `decode_from`
    if let Body::Sparse { format: f, .. } = body {
        *f = format;
    }
    Ok(())
}

/// The body of a rand_k message into `body`: the seed, k and the k values; the indices are
/// regenerated from the seed, as the sender drew them.
#[inline]
fn decode_rand_k(
    r: &mut Reader<'_>,
    body: &mut Body,
    format: ValueFormat,
    dim: usize,
) -> Result<(), WireError> {
    let seed = u64::from_le_bytes(r.take(8, "rand_k seed")?.try_into().unwrap());
    let k = r.count(dim)?;
    if !matches!(body, Body::RandK { .. }) {
        *body = Body::RandK { format, seed, indices: Vec::new(), values: Vec::new() };
    }
    let Body::RandK { format: f, seed: s, indices, values } = body else { unreachable!() };
    *f = format;
    *s = seed;
    r.values(format, k, values)?; // checked by `decode_from`
    rand_k_indices(seed, dim, k, indices);
    Ok(())
}

/// The body of a QSGD message into `body`: s (checked to be in 1..=32767), the scale, then the
/// dim packed levels, each checked to be within [-s, s].
#[inline]
fn decode_qsgd(r: &mut Reader<'_>, body: &mut Body, dim: usize) -> Result<(), WireError> {
    let s = r.varint()?;
    if s == 0 || s > 32767 {
        return Err(WireError::BadLevels(format!("levels {s} outside 1..=32767")));
    }
    let scale = r.f32("qsgd scale")?;
    let bits = qsgd_bits(s as u32);
    let packed = r.take((dim * bits).div_ceil(8), "qsgd levels")?;
    if !matches!(body, Body::Qsgd { .. }) {
        *body = Body::Qsgd { levels: 0, scale: 0.0, q: Vec::new() };
    }
    let Body::Qsgd { levels, scale: sc, q } = body else { unreachable!() };
    *levels = s as u32;
    *sc = scale;
    unpack_levels(packed, bits, s, dim, q)
}

/// Unpacks `dim` levels of `bits` bits each (LSB first) from `packed` into `q` (cleared first),
/// shifted back from u = q_j + s to q_j; refuses a level outside [-s, s]. `packed` holds at
/// least `dim * bits` bits (checked by the caller).
#[inline]
fn unpack_levels(packed: &[u8], bits: usize, s: u64, dim: usize, q: &mut Vec<i16>) -> Result<(), WireError> {
    q.clear();
    let (mut acc, mut avail, mut bytes) = (0u64, 0usize, packed.iter());
    let mask = (1u64 << bits) - 1;
    for j in 0..dim {
        while avail < bits {
            acc |= (*bytes.next().expect("length checked above") as u64) << avail;
            avail += 8;
        }
        let u = acc & mask;
        acc >>= bits;
        avail -= bits;
        if u > 2 * s {
            return Err(WireError::BadLevels(format!(
                "level {} at coordinate {j} outside [-{s}, {s}]",
                u as i64 - s as i64
            )));
        }
        q.push((u as i64 - s as i64) as i16);
    }
    Ok(())
}

/// The body of a sign message into `body`: the scale, then one bit per coordinate, gathered
/// into 64-bit words (byte i of the message is byte i % 8 of word i / 8).
#[inline]
fn decode_sign(r: &mut Reader<'_>, body: &mut Body, dim: usize) -> Result<(), WireError> {
    let scale = r.f32("sign scale")?;
    let packed = r.take(dim.div_ceil(8), "sign bits")?;
    if !matches!(body, Body::Sign { .. }) {
        *body = Body::Sign { scale: 0.0, negative: Vec::new() };
    }
    let Body::Sign { scale: sc, negative } = body else { unreachable!() };
    *sc = scale;
    negative.clear();
    negative.resize(dim.div_ceil(64), 0);
    for (i, &byte) in packed.iter().enumerate() {
        negative[i / 8] |= (byte as u64) << (8 * (i % 8));
    }
    Ok(())
}

pub(crate) fn take_dense(body: &mut Body, fmt: ValueFormat) -> &mut Vec<f32> {
    if !matches!(body, Body::Dense { .. }) {
        *body = Body::Dense { format: fmt, values: Vec::new() };
    }
    let Body::Dense { values, format } = body else { unreachable!() };
    *format = fmt;
    values
}

fn take_sparse(body: &mut Body) -> (&mut Vec<u32>, &mut Vec<f32>) {
    if !matches!(body, Body::Sparse { .. }) {
        *body = Body::Sparse { format: ValueFormat::F32, indices: Vec::new(), values: Vec::new() };
    }
    let Body::Sparse { indices, values, .. } = body else { unreachable!() };
    (indices, values)
}

/// Encodes messages, optionally zstd-compressing the sparse index block (which compresses about
/// 2.8x; the f32 values do not, so they are left alone).
#[derive(Debug, Default)]
pub struct Encoder {
    /// zstd level for sparse index blocks; `None` writes them plain.
    pub zstd_level: Option<i32>,
    scratch: Vec<u8>,
}

impl Encoder {
    /// An encoder that zstd-compresses sparse index blocks at `level` when that is smaller.
    pub fn with_zstd(level: i32) -> Encoder {
        Encoder { zstd_level: Some(level), scratch: Vec::new() }
    }

    /// Appends the encoding of `msg` to `out`.
    pub fn encode(&mut self, msg: &Compressed, out: &mut Vec<u8>) {
        let (tag, fmt) = match &msg.body {
            Body::Dense { format, .. } => (TAG_DENSE, format_code(*format)),
            Body::Sparse { format, .. } => (TAG_SPARSE, format_code(*format)),
            Body::RandK { format, .. } => (TAG_RANDK, format_code(*format)),
            Body::Qsgd { .. } => (TAG_QSGD, 0),
            Body::Sign { .. } => (TAG_SIGN, 0),
        };
        let flag_pos = out.len() + 1;
        out.push(tag);
        out.push(fmt);
        put_varint(out, msg.dim as u64);
        match &msg.body {
            Body::Dense { format, values } => put_values(out, *format, values),
            Body::Sparse { format, indices, values } => {
                put_varint(out, indices.len() as u64);
                let mut zipped = false;
                if let Some(level) = self.zstd_level {
                    self.scratch.clear();
                    put_index_block(&mut self.scratch, indices);
                    if let Ok(z) = zstd::bulk::compress(&self.scratch, level)
                        && varint_len(z.len() as u64) + z.len() < self.scratch.len()
                    {
                        out[flag_pos] |= FLAG_ZSTD;
                        put_varint(out, z.len() as u64);
                        out.extend_from_slice(&z);
                        zipped = true;
                    }
                }
                if !zipped {
                    put_index_block(out, indices);
                }
                put_values(out, *format, values);
            }
            Body::RandK { format, seed, values, .. } => {
                out.extend_from_slice(&seed.to_le_bytes());
                put_varint(out, values.len() as u64);
                put_values(out, *format, values);
            }
            Body::Qsgd { levels, scale, q } => {
                put_varint(out, *levels as u64);
                out.extend_from_slice(&scale.to_le_bytes());
                let bits = qsgd_bits(*levels);
                let start = out.len();
                out.resize(start + (msg.dim * bits).div_ceil(8), 0);
                // A 64-bit accumulator: at most 7 + 16 bits are pending at any time.
                let (mut acc, mut pending, mut pos) = (0u64, 0usize, start);
                for &l in q {
                    acc |= ((l as i64 + *levels as i64) as u64) << pending;
                    pending += bits;
                    while pending >= 8 {
                        out[pos] = acc as u8;
                        pos += 1;
                        acc >>= 8;
                        pending -= 8;
                    }
                }
                if pending > 0 {
                    out[pos] = acc as u8;
                }
            }
            Body::Sign { scale, negative } => {
                out.extend_from_slice(&scale.to_le_bytes());
                let n = msg.dim.div_ceil(8);
                out.extend((0..n).map(|i| (negative[i / 8] >> (8 * (i % 8))) as u8));
            }
        }
    }
}

/// The fields every message opens with.
pub(crate) struct Prefix {
    pub(crate) tag: u8,
    pub(crate) format: ValueFormat,
    pub(crate) zstd: bool,
    pub(crate) dim: usize,
}

pub(crate) struct Reader<'a> {
    pub(crate) b: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Tag, flags and length, checked in this order (the stream decoder relies on the same order
    /// to report the same error as [`Compressed::decode_from`]).
    pub(crate) fn prefix(&mut self, expected_dim: usize) -> Result<Prefix, WireError> {
        let tag = self.u8("tag")?;
        let flags = self.u8("flags")?;
        if flags & !(3 | FLAG_ZSTD) != 0 || flags & 3 == 3 {
            return Err(WireError::BadFlags(flags));
        }
        let format = [ValueFormat::F32, ValueFormat::F16, ValueFormat::Bf16][(flags & 3) as usize];
        let zstd = flags & FLAG_ZSTD != 0;
        let dim = self.varint()? as usize;
        if dim != expected_dim {
            return Err(WireError::DimMismatch { got: dim, expected: expected_dim });
        }
        Ok(Prefix { tag, format, zstd, dim })
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.b.len() < n {
            return Err(WireError::Truncated(what));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }
    fn f32(&mut self, what: &'static str) -> Result<f32, WireError> {
        Ok(f32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn varint(&mut self) -> Result<u64, WireError> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = *self.b.first().ok_or(WireError::Truncated("varint"))?;
            self.b = &self.b[1..];
            if shift == 63 && byte > 1 {
                return Err(WireError::Varint);
            }
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(WireError::Varint)
    }
    fn count(&mut self, dim: usize) -> Result<usize, WireError> {
        let k = self.varint()?;
        if k > dim as u64 {
            return Err(WireError::BadIndex(format!("{k} entries for a vector of length {dim}")));
        }
        Ok(k as usize)
    }
    fn index_block(&mut self, k: usize, dim: usize, out: &mut Vec<u32>) -> Result<(), WireError> {
        out.clear();
        let mut next = 0u64;
        for _ in 0..k {
            let i = next.checked_add(self.varint()?).filter(|&i| i < dim as u64);
            let i = i.ok_or_else(|| {
                WireError::BadIndex(format!("index past the end of a vector of length {dim}"))
            })?;
            out.push(i as u32);
            next = i + 1;
        }
        Ok(())
    }
    /// Reads `n` values into `out`; whether they are all finite.
    fn values(&mut self, format: ValueFormat, n: usize, out: &mut Vec<f32>) -> Result<bool, WireError> {
        let bytes =
            self.take(n.checked_mul(format.width()).ok_or(WireError::Truncated("values"))?, "values")?;
        out.clear();
        Ok(push_values(format, bytes, out))
    }
}

/// Appends the values encoded in `bytes` (whole values only: `bytes.len()` is a multiple of the
/// width) to `out`; returns whether they are all finite. Each block is checked right after it is
/// written, while it is in the L1 cache, instead of in a second pass over the whole vector.
pub(crate) fn push_values(format: ValueFormat, bytes: &[u8], out: &mut Vec<f32>) -> bool {
    const BLOCK: usize = 256;
    let start = out.len();
    let width = format.width();
    if format == ValueFormat::F32 && cfg!(target_endian = "little") {
        // Block by block, each checked while it is in cache; written once (no zeroing first),
        // whatever the alignment of the received bytes.
        out.reserve(bytes.len() / 4);
        let mut finite = true;
        for src in bytes.chunks(BLOCK * 4) {
            let at = out.len();
            out.extend(src.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
            finite &= out[at..].iter().fold(true, |ok, x| ok & x.is_finite());
        }
        return finite;
    }
    out.resize(start + bytes.len() / width, 0.0);
    let mut finite = true;
    for (dst, src) in out[start..].chunks_mut(BLOCK).zip(bytes.chunks(BLOCK * width)) {
        match format {
            ValueFormat::F32 => dst
                .iter_mut()
                .zip(src.chunks_exact(4))
                .for_each(|(o, c)| *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ValueFormat::F16 => dst
                .iter_mut()
                .zip(src.chunks_exact(2))
                .for_each(|(o, c)| *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
            ValueFormat::Bf16 => dst
                .iter_mut()
                .zip(src.chunks_exact(2))
                .for_each(|(o, c)| *o = half::bf16::from_le_bytes([c[0], c[1]]).to_f32()),
        }
        finite &= dst.iter().fold(true, |ok, x| ok & x.is_finite());
    }
    finite
}
