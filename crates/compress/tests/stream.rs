//! The stream decoder gives exactly what `decode_from` gives on the concatenated bytes: the same
//! vector for every compressor, and the same error for every malformed message, however the
//! message is split.
use dprox_compress::{Body, Compressed, Compressor, CompressorSpec, Encoder, StreamDecoder, ValueFormat};
use proptest::prelude::*;

fn specs() -> Vec<CompressorSpec> {
    vec![
        CompressorSpec::Identity { values: ValueFormat::F32 },
        CompressorSpec::Identity { values: ValueFormat::F16 },
        CompressorSpec::Identity { values: ValueFormat::Bf16 },
        CompressorSpec::TopK { ratio: 0.2, values: ValueFormat::F32 },
        CompressorSpec::RandK { ratio: 0.3, values: ValueFormat::Bf16 },
        CompressorSpec::Qsgd { levels: 5 },
        CompressorSpec::Sign,
    ]
}

/// Feeds `bytes` in pieces cut at `cuts` (positions, any order, may repeat).
fn streamed(
    bytes: &[u8],
    dim: usize,
    cuts: &[usize],
    dec: &mut StreamDecoder,
    out: &mut Compressed,
) -> Result<(), String> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c % (bytes.len() + 1)).collect();
    cuts.push(0);
    cuts.push(bytes.len());
    cuts.sort();
    dec.begin(dim);
    for w in cuts.windows(2) {
        dec.feed(&bytes[w[0]..w[1]], out);
    }
    dec.finish(out).map_err(|e| e.to_string())
}

fn whole(bytes: &[u8], dim: usize) -> Result<Compressed, String> {
    let mut c = Compressed::new(dim);
    c.decode_from(bytes, dim).map(|_| c).map_err(|e| e.to_string())
}

proptest! {
    #[test]
    fn any_split_decodes_like_the_whole(
        v in proptest::collection::vec(-10f32..10.0, 1..200),
        kind in 0usize..7,
        seed: u64,
        cuts in proptest::collection::vec(0usize..2000, 0..12),
        zstd: bool,
    ) {
        let dim = v.len();
        let mut c = Compressor::new(specs()[kind].clone(), dim).unwrap();
        let mut m = Compressed::new(dim);
        c.compress(&v, seed, &mut m);
        let mut bytes = Vec::new();
        if zstd { Encoder::with_zstd(3).encode(&m, &mut bytes) } else { m.encode(&mut bytes) }
        // The decoder and output are reused across messages, as in the transport: start dirty.
        let (mut dec, mut out) = (StreamDecoder::default(), Compressed::new(3));
        let _ = streamed(&[1, 0, 3, 0, 0, 0, 0], 3, &[], &mut dec, &mut out);
        prop_assert_eq!(streamed(&bytes, dim, &cuts, &mut dec, &mut out), Ok(()));
        prop_assert_eq!(&out, &m);
    }

    #[test]
    fn any_corruption_fails_like_the_whole(
        dim in 1usize..40,
        kind in 0usize..7,
        edits in proptest::collection::vec((0usize..400, any::<u8>()), 1..4),
        cut_len in proptest::option::of(0usize..400),
        extra in proptest::collection::vec(any::<u8>(), 0..6),
        cuts in proptest::collection::vec(0usize..400, 0..6),
    ) {
        let v: Vec<f32> = (0..dim).map(|i| (i as f32 - 7.0) * 0.25).collect();
        let mut c = Compressor::new(specs()[kind].clone(), dim).unwrap();
        let mut m = Compressed::new(dim);
        c.compress(&v, 1, &mut m);
        let mut bytes = Vec::new();
        m.encode(&mut bytes);
        for (at, b) in edits {
            let n = bytes.len();
            bytes[at % n] = b;
        }
        if let Some(l) = cut_len {
            bytes.truncate(l.min(bytes.len()));
        }
        bytes.extend_from_slice(&extra);
        let expected = whole(&bytes, dim).map(|_| ());
        let (mut dec, mut out) = (StreamDecoder::default(), Compressed::new(dim));
        prop_assert_eq!(streamed(&bytes, dim, &cuts, &mut dec, &mut out), expected);
    }
}

#[test]
fn named_errors_of_a_dense_stream() {
    let values: Vec<f32> = vec![1.0, -2.0, 3.0, 4.0];
    let m = Compressed { dim: 4, body: Body::Dense { format: ValueFormat::F32, values } };
    let mut good = Vec::new();
    m.encode(&mut good);
    let run = |b: &[u8], dim: usize| {
        let (mut dec, mut out) = (StreamDecoder::default(), Compressed::new(dim));
        streamed(b, dim, &[1, 5, 6], &mut dec, &mut out).unwrap_err()
    };
    assert_eq!(run(&good, 5), "vector length 4 does not match the model's 5");
    assert_eq!(run(&good[..good.len() - 1], 4), "message truncated: values");
    assert_eq!(run(&good[..2], 4), "message truncated: varint");
    assert_eq!(run(&[], 4), "message truncated: tag");
    let mut t = good.clone();
    t.extend_from_slice(&[0, 0, 0]);
    assert_eq!(run(&t, 4), "3 trailing bytes after the message");
    t = good.clone();
    t[1] = 0x83;
    assert_eq!(run(&t, 4), "invalid flags 0x83");
    t = good.clone();
    let n = t.len();
    t[n - 8..n - 4].copy_from_slice(&f32::INFINITY.to_le_bytes());
    assert_eq!(run(&t, 4), "non-finite value inf at coordinate 2");
}

#[test]
fn a_dense_stream_fails_early_on_a_bad_prefix() {
    let mut dec = StreamDecoder::default();
    let mut out = Compressed::new(4);
    dec.begin(4);
    dec.feed(&[1, 0, 9], &mut out);
    assert!(dec.failed(), "a length of 9 for a 4-parameter model is known after 3 bytes");
}
