//! Compressors for gossip messages, and their wire format.
//!
//! CDProxSGT and CHOCO send Q(v), a compressed version of a difference vector v, instead of v.
//! This crate owns the compressors of docs/algorithms.md (identity, top_k, rand_k, qsgd, sign), the
//! in-memory form of a compressed vector that neighbours apply, and the byte encoding that travels
//! (with its exact size, which is what `bytes_sent` counts).
//!
//! # Layout
//! - [`spec`]: [`CompressorSpec`] (the `[compression]` config) and [`ValueFormat`] (f32/f16/bf16).
//! - [`compressed`]: [`Compressed`], a reusable buffer holding Q(v), and how to add it to a vector.
//! - [`compressor`]: [`Compressor::compress`], O(d) top-k selection, seeded rand-k indices.
//! - [`wire`]: [`Compressed::encode`], [`Compressed::encoded_len`], [`Compressed::decode_from`],
//!   and an [`Encoder`] that zstd-compresses sparse index blocks where that pays.
//! - [`stream`]: [`StreamDecoder`], the same decoding for a message that arrives in pieces.
//!
//! ```
//! use dprox_compress::{Compressed, Compressor, CompressorSpec, ValueFormat};
//! let v = [0.1f32, -3.0, 0.0, 2.0, 0.5];
//! let mut q = Compressor::new(CompressorSpec::TopK { ratio: 0.4, values: ValueFormat::F32 }, 5).unwrap();
//! let mut msg = Compressed::new(5);
//! q.compress(&v, 0, &mut msg);
//! let mut dense = [0.0f32; 5];
//! msg.to_dense(&mut dense);
//! assert_eq!(dense, [0.0, -3.0, 0.0, 2.0, 0.0]);
//! let mut bytes = Vec::new();
//! msg.encode(&mut bytes);
//! assert_eq!(bytes.len(), msg.encoded_len()); // 2 header + 1 dim + 1 k + 2 indices + 8 values
//! assert_eq!(bytes.len(), 14);
//! let mut back = Compressed::new(5);
//! back.decode_from(&bytes, 5).unwrap();
//! assert_eq!(back, msg);
//! ```

pub mod compressed;
pub mod compressor;
pub mod spec;
pub mod stream;
pub mod wire;

pub use compressed::{Body, Compressed, Malformed};
pub use compressor::{Compressor, rand_k_indices, top_k};
pub use spec::{CompressorSpec, ValueFormat, k_of};
pub use stream::StreamDecoder;
pub use wire::{Encoder, WireError};

#[cfg(test)]
mod tests;
