//! Decoding a message that arrives in pieces (the transport's 1 MiB chunks).
//!
//! A dense vector of 1e7 f32 is 40 MB on the wire. Reassembling it before decoding costs a copy
//! of the whole message and makes the receiver idle while the chunks arrive; [`StreamDecoder`]
//! instead converts the values of each chunk as it comes, straight into the reused
//! [`Compressed`]. Other kinds (sparse, rand_k, qsgd, sign) are at most a fraction of the dense
//! size and need their whole index block before any value is placed, so they are buffered and
//! decoded at the end by [`Compressed::decode_from`].
//!
//! The outcome is exactly that of `decode_from` on the concatenated bytes: the same vector, or the
//! same [`WireError`] (the tests feed every compressor's output in random splits).

use crate::compressed::Compressed;
use crate::spec::ValueFormat;
use crate::wire::{Prefix, Reader, TAG_DENSE, WireError, push_values, take_dense};

/// Longest message prefix: tag, flags and a 10-byte varint.
const MAX_PREFIX: usize = 12;

#[derive(Debug, Default)]
enum State {
    /// Waiting for the tag, flags and length (held in `buf`).
    #[default]
    Prefix,
    /// A dense vector: values are decoded as they arrive.
    Dense {
        format: ValueFormat,
        /// Bytes of a value split across two pieces.
        carry: [u8; 4],
        carry_len: usize,
        /// Value bytes seen so far (including any past the announced length).
        seen: usize,
    },
    /// Any other kind: the whole message is kept in `buf` and decoded by `finish`.
    Buffered,
    /// `feed` returned an error; the message is refused.
    Failed(WireError),
}

/// Decodes one message from consecutive pieces: [`begin`](StreamDecoder::begin), then
/// [`feed`](StreamDecoder::feed) each piece in order, then [`finish`](StreamDecoder::finish).
/// The decoder and the output keep their buffers from one message to the next.
///
/// ```
/// use dprox_compress::{Body, Compressed, StreamDecoder, ValueFormat};
/// let values: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5).collect();
/// let msg = Compressed { dim: 1000, body: Body::Dense { format: ValueFormat::F32, values } };
/// let mut bytes = Vec::new();
/// msg.encode(&mut bytes);
/// let (mut dec, mut out) = (StreamDecoder::default(), Compressed::new(1000));
/// dec.begin(1000);
/// for piece in bytes.chunks(333) {
///     dec.feed(piece, &mut out);
/// }
/// dec.finish(&mut out).unwrap();
/// assert_eq!(out, msg);
/// ```
#[derive(Debug, Default)]
pub struct StreamDecoder {
    expected_dim: usize,
    state: State,
    buf: Vec<u8>,
    /// Whether every dense value decoded so far is finite.
    finite: bool,
}

impl StreamDecoder {
    /// Starts a message for a model of `expected_dim` parameters.
    pub fn begin(&mut self, expected_dim: usize) {
        self.expected_dim = expected_dim;
        self.state = State::Prefix;
        self.buf.clear();
        self.finite = true;
    }

    /// Takes the next piece. Errors are kept and reported by `finish`, so the caller can keep
    /// draining its stream (or stop early: `failed` says whether anything is wrong yet).
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Compressed) {
        if let State::Prefix = self.state {
            let take = bytes.len().min(MAX_PREFIX.saturating_sub(self.buf.len()));
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            let mut r = Reader { b: &self.buf };
            match r.prefix(self.expected_dim) {
                // Not enough bytes yet for the whole prefix: wait for more.
                Err(WireError::Truncated(_)) if bytes.is_empty() && self.buf.len() < MAX_PREFIX => return,
                Err(e) => {
                    self.state = State::Failed(e);
                    return;
                }
                Ok(Prefix { tag: TAG_DENSE, format, dim, .. }) => {
                    let rest = r.b.len();
                    let values = take_dense(&mut out.body, format);
                    values.clear();
                    values.reserve(dim);
                    out.dim = dim;
                    self.state = State::Dense { format, carry: [0; 4], carry_len: 0, seen: 0 };
                    // Bytes of the prefix buffer past the prefix are the first values.
                    let head = std::mem::take(&mut self.buf);
                    self.dense(&head[head.len() - rest..], out);
                    self.buf = head;
                    self.buf.clear();
                }
                Ok(_) => self.state = State::Buffered,
            }
        }
        match self.state {
            State::Dense { .. } => self.dense(bytes, out),
            State::Buffered => self.buf.extend_from_slice(bytes),
            State::Prefix | State::Failed(_) => {}
        }
    }

    /// Whether the message is already known to be malformed.
    pub fn failed(&self) -> bool {
        matches!(self.state, State::Failed(_))
    }

    /// Ends the message: `out` holds the decoded vector, or the error is what
    /// [`Compressed::decode_from`] would report for the same bytes.
    pub fn finish(&mut self, out: &mut Compressed) -> Result<(), WireError> {
        match std::mem::take(&mut self.state) {
            State::Prefix => out.decode_from(&self.buf, self.expected_dim),
            State::Failed(e) => Err(e),
            State::Buffered => out.decode_from(&self.buf, self.expected_dim),
            State::Dense { format, seen, .. } => {
                let want = self.expected_dim * format.width();
                if seen < want {
                    return Err(WireError::Truncated("values"));
                }
                if seen > want {
                    return Err(WireError::Trailing(seen - want));
                }
                // Each piece was checked as it was decoded, while in cache; the position of a
                // bad value is looked up only now.
                if !self.finite {
                    let (index, value) = out.first_non_finite().expect("a non-finite value was seen");
                    return Err(WireError::NonFinite { index, value });
                }
                Ok(())
            }
        }
    }

    fn dense(&mut self, bytes: &[u8], out: &mut Compressed) {
        let State::Dense { format, carry, carry_len, seen } = &mut self.state else { return };
        let w = format.width();
        // Bytes past the announced length are only counted (finish reports them as trailing).
        let room = (self.expected_dim * w).saturating_sub(*seen);
        *seen += bytes.len();
        let mut b = &bytes[..bytes.len().min(room)];
        let values = take_dense(&mut out.body, *format);
        if *carry_len > 0 {
            let n = (w - *carry_len).min(b.len());
            carry[*carry_len..*carry_len + n].copy_from_slice(&b[..n]);
            *carry_len += n;
            b = &b[n..];
            if *carry_len < w {
                return;
            }
            self.finite &= push_values(*format, &carry[..w], values);
            *carry_len = 0;
        }
        let whole = b.len() / w * w;
        self.finite &= push_values(*format, &b[..whole], values);
        let tail = &b[whole..];
        carry[..tail.len()].copy_from_slice(tail);
        *carry_len = tail.len();
    }
}
