use super::*;
use proptest::prelude::*;

fn spec_top(r: f64) -> CompressorSpec {
    CompressorSpec::TopK { ratio: r, values: ValueFormat::F32 }
}

fn q_of(spec: CompressorSpec, v: &[f32], seed: u64) -> (Compressed, Vec<f32>) {
    let mut c = Compressor::new(spec, v.len()).unwrap();
    let mut m = Compressed::new(v.len());
    c.compress(v, seed, &mut m);
    let mut d = vec![0.0; v.len()];
    m.to_dense(&mut d);
    (m, d)
}

fn sq(v: &[f32]) -> f64 {
    v.iter().map(|&x| (x as f64).powi(2)).sum()
}

fn err2(v: &[f32], q: &[f32]) -> f64 {
    v.iter().zip(q).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum()
}

/// Reference top-k: full sort by (|v| desc, index asc).
fn top_k_ref(v: &[f32], k: usize) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..v.len() as u32).collect();
    idx.sort_by(|&a, &b| v[b as usize].abs().total_cmp(&v[a as usize].abs()).then(a.cmp(&b)));
    let mut out = idx[..k].to_vec();
    out.sort();
    out
}

#[test]
fn k_is_max_one_ceil() {
    assert_eq!(k_of(0.3, 10), 3);
    assert_eq!(k_of(0.31, 10), 4);
    assert_eq!(k_of(0.001, 10), 1);
    assert_eq!(k_of(1.0, 7), 7);
    assert_eq!(k_of(0.07, 100), 7, "0.07 * 100 is 7.000000000000001 in f64");
    assert_eq!(k_of(0.017, 100_000), 1700);
}

#[test]
fn top_k_ties_go_to_lower_index() {
    let v = [1.0f32, -2.0, 2.0, 0.5, -2.0, 2.0];
    let mut idx = Vec::new();
    top_k(&v, 2, &mut Vec::new(), &mut idx);
    assert_eq!(idx, vec![1, 2]);
    top_k(&v, 4, &mut Vec::new(), &mut idx);
    assert_eq!(idx, vec![1, 2, 4, 5]);
    top_k(&v, 5, &mut Vec::new(), &mut idx);
    assert_eq!(idx, vec![0, 1, 2, 4, 5]);
}

proptest! {
    #[test]
    fn top_k_matches_sorting_reference(v in proptest::collection::vec(-4i8..4, 1..200), r in 0.01f64..1.0) {
        // Small integers make ties frequent.
        let v: Vec<f32> = v.into_iter().map(|x| x as f32 * 0.5).collect();
        let k = k_of(r, v.len());
        let mut idx = Vec::new();
        top_k(&v, k, &mut Vec::new(), &mut idx);
        prop_assert_eq!(idx, top_k_ref(&v, k));
    }

    #[test]
    fn top_k_matches_sorting_reference_across_exponents(
        v in proptest::collection::vec((-40i32..40, -1000i32..1000, 0u8..8), 1..600),
        r in 0.001f64..1.0,
    ) {
        // Magnitudes from 1e-12 to 1e12 and zeros, signs mixed: every level of the radix
        // selection decides somewhere.
        let v: Vec<f32> = v.into_iter()
            .map(|(e, m, z)| if z == 0 { 0.0 } else { m as f32 * 2f32.powi(e) })
            .collect();
        let k = k_of(r, v.len());
        let mut idx = Vec::new();
        top_k(&v, k, &mut Vec::new(), &mut idx);
        prop_assert_eq!(idx, top_k_ref(&v, k));
    }

    #[test]
    fn top_k_contraction_bound(v in proptest::collection::vec(-100f32..100.0, 1..300), r in 0.001f64..1.0) {
        let k = k_of(r, v.len());
        let (_, q) = q_of(spec_top(r), &v, 0);
        let bound = (1.0 - k as f64 / v.len() as f64) * sq(&v);
        prop_assert!(err2(&v, &q) <= bound * (1.0 + 1e-12) + 1e-30);
    }

    #[test]
    fn every_kind_round_trips(v in proptest::collection::vec(-10f32..10.0, 1..150), seed: u64, kind in 0usize..8) {
        let spec = [
            CompressorSpec::Identity { values: ValueFormat::F32 },
            CompressorSpec::Identity { values: ValueFormat::Bf16 },
            spec_top(0.2),
            CompressorSpec::TopK { ratio: 0.5, values: ValueFormat::F16 },
            CompressorSpec::RandK { ratio: 0.3, values: ValueFormat::F32 },
            CompressorSpec::Qsgd { levels: 1 },
            CompressorSpec::Qsgd { levels: 13 },
            CompressorSpec::Sign,
        ][kind].clone();
        let (m, _) = q_of(spec, &v, seed);
        let mut bytes = vec![0xAB]; // encode appends: prove it does not depend on out being empty
        m.encode(&mut bytes);
        prop_assert_eq!(bytes.len() - 1, m.encoded_len());
        let mut back = Compressed::new(0);
        back.decode_from(&bytes[1..], v.len()).unwrap();
        prop_assert_eq!(&back, &m);
        let mut z = Vec::new();
        Encoder::with_zstd(3).encode(&m, &mut z);
        let mut back2 = Compressed::new(0);
        back2.decode_from(&z, v.len()).unwrap();
        prop_assert_eq!(&back2, &m);
    }
}

#[test]
fn exact_sizes() {
    let v: Vec<f32> =
        (0..1000).map(|i| if [0, 5, 300].contains(&i) { 1.0 + i as f32 } else { 0.0 }).collect();
    let (m, _) = q_of(spec_top(0.003), &v, 0);
    // tag + flags + dim(1000 -> 2 bytes) + k + gaps 0, 4, 294 (1 + 1 + 2) + 3 f32
    assert_eq!(m.encoded_len(), 2 + 2 + 1 + 4 + 12);
    let (m, _) = q_of(CompressorSpec::default(), &v, 0);
    assert_eq!(m.encoded_len(), 4 + 4000);
    let (m, _) = q_of(CompressorSpec::Identity { values: ValueFormat::Bf16 }, &v, 0);
    assert_eq!(m.encoded_len(), 4 + 2000);
    let (m, _) = q_of(CompressorSpec::Sign, &v, 0);
    assert_eq!(m.encoded_len(), 4 + 4 + 125);
    let (m, _) = q_of(CompressorSpec::Qsgd { levels: 1 }, &v, 0); // 3 states -> 2 bits
    assert_eq!(m.encoded_len(), 4 + 1 + 4 + 250);
    let (m, _) = q_of(CompressorSpec::Qsgd { levels: 4 }, &v, 0); // 9 states -> 4 bits
    assert_eq!(m.encoded_len(), 4 + 1 + 4 + 500);
    let (m, _) = q_of(CompressorSpec::RandK { ratio: 0.01, values: ValueFormat::F32 }, &v, 9);
    assert_eq!(m.encoded_len(), 4 + 8 + 1 + 40);
}

#[test]
fn zstd_shrinks_dense_index_blocks() {
    let d = 100_000;
    let v: Vec<f32> = (0..d).map(|i| ((i * 7919) % 1000) as f32 - 500.0).collect();
    let (m, _) = q_of(spec_top(0.05), &v, 0);
    let mut plain = Vec::new();
    m.encode(&mut plain);
    let mut z = Vec::new();
    Encoder::with_zstd(3).encode(&m, &mut z);
    assert!(z.len() < plain.len(), "zstd {} vs plain {}", z.len(), plain.len());
}

#[test]
fn rand_k_is_reproducible_distinct_and_sorted() {
    let mut a = Vec::new();
    let mut b = Vec::new();
    rand_k_indices(77, 1000, 100, &mut a);
    rand_k_indices(77, 1000, 100, &mut b);
    assert_eq!(a, b);
    assert_eq!(a.len(), 100);
    assert!(a.windows(2).all(|w| w[0] < w[1]) && *a.last().unwrap() < 1000);
    rand_k_indices(78, 1000, 100, &mut b);
    assert_ne!(a, b);
    rand_k_indices(1, 10, 10, &mut b);
    assert_eq!(b, (0..10).collect::<Vec<u32>>());
}

#[test]
fn rand_k_contracts_in_expectation() {
    let v: Vec<f32> = (0..200).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut mean = 0.0;
    for s in 0..2000 {
        let (_, q) = q_of(CompressorSpec::RandK { ratio: 0.25, values: ValueFormat::F32 }, &v, s);
        mean += err2(&v, &q) / 2000.0;
    }
    let expect = 0.75 * sq(&v);
    assert!((mean - expect).abs() < 0.03 * expect, "{mean} vs {expect}");
}

#[test]
fn qsgd_contracts_and_is_unbiased_up_to_tau() {
    let d = 64;
    let v: Vec<f32> = (0..d).map(|i| (i as f32 * 1.3).cos() * (1 + i % 5) as f32).collect();
    let s = 4u32;
    let tau = 1.0 + (d as f64 / 16.0).min((d as f64).sqrt() / 4.0);
    let (mut mean_err, mut mean_q) = (0.0, vec![0.0f64; d]);
    let n = 4000;
    for seed in 0..n {
        let (m, q) = q_of(CompressorSpec::Qsgd { levels: s }, &v, seed);
        if let Body::Qsgd { q: l, .. } = &m.body {
            assert!(l.iter().all(|&x| x.unsigned_abs() <= s as u16));
        }
        mean_err += err2(&v, &q) / n as f64;
        for (a, &b) in mean_q.iter_mut().zip(&q) {
            *a += b as f64 * tau / n as f64;
        }
    }
    // Contractive with delta = 1 / tau: E||v - Q||^2 <= (1 - 1/tau) ||v||^2.
    assert!(mean_err <= (1.0 - 1.0 / tau) * sq(&v) * 1.02, "{mean_err}");
    for (a, &b) in mean_q.iter().zip(&v) {
        assert!((a - b as f64).abs() < 0.1 * (1.0 + b.abs() as f64), "{a} vs {b}");
    }
}

#[test]
fn sign_error_is_exactly_norm_minus_l1_squared_over_d() {
    let v = [3.0f32, -1.0, 0.0, 0.5, -2.5];
    let (_, q) = q_of(CompressorSpec::Sign, &v, 0);
    let l1: f64 = v.iter().map(|x| x.abs() as f64).sum();
    assert_eq!(q, vec![1.4, -1.4, 1.4, 1.4, -1.4]);
    assert!((err2(&v, &q) - (sq(&v) - l1 * l1 / 5.0)).abs() < 1e-9);
}

#[test]
fn narrow_formats_round_at_the_sender() {
    let v = [1.0f32 + 1e-3, -3.140_59];
    let (m, q) = q_of(CompressorSpec::Identity { values: ValueFormat::Bf16 }, &v, 0);
    assert_eq!(q, vec![1.0, -3.140_625]);
    let mut bytes = Vec::new();
    m.encode(&mut bytes);
    let mut back = Compressed::new(2);
    back.decode_from(&bytes, 2).unwrap();
    assert_eq!(back, m);
}

/// Dense values are checked block by block as they are copied: the first non-finite value is
/// named wherever it is (first, middle or last block, a block's edges), in every value format,
/// and a vector without one decodes to the values sent.
#[test]
fn dense_decoding_names_the_first_non_finite_value_in_any_block() {
    let dim = 700; // two full blocks of 256 and a partial one
    for format in [ValueFormat::F32, ValueFormat::F16, ValueFormat::Bf16] {
        // Exact in every format (quarters from -8 to 7.75).
        let values: Vec<f32> = (0..dim).map(|i| ((i % 64) as f32 - 32.0) * 0.25).collect();
        let clean = Compressed { dim, body: Body::Dense { format, values: values.clone() } };
        let mut bytes = Vec::new();
        clean.encode(&mut bytes);
        let mut out = Compressed::new(dim);
        out.decode_from(&bytes, dim).unwrap();
        let mut back = vec![0.0; dim];
        out.to_dense(&mut back);
        assert_eq!(back, values, "{format:?}");
        for (at, bad) in [(0, f32::NAN), (255, f32::INFINITY), (256, f32::NEG_INFINITY), (699, f32::NAN)] {
            let mut v = values.clone();
            v[at] = bad;
            // A second bad value later: the first is the one named.
            v[(at + 300).min(dim - 1)] = f32::NAN;
            let mut bytes = Vec::new();
            Compressed { dim, body: Body::Dense { format, values: v } }.encode(&mut bytes);
            let e = out.decode_from(&bytes, dim).unwrap_err().to_string();
            assert!(e.starts_with(&format!("non-finite value {bad} at coordinate {at}")), "{format:?}: {e}");
        }
    }
}

#[test]
fn malformed_messages_are_refused() {
    let v = [0.0f32, 2.0, 0.0, -1.0];
    let (m, _) = q_of(spec_top(0.5), &v, 0);
    let mut good = Vec::new();
    m.encode(&mut good);
    let mut out = Compressed::new(4);
    let err = |b: &[u8], d: usize| Compressed::new(d).decode_from(b, d).unwrap_err().to_string();
    assert_eq!(err(&good, 5), "vector length 4 does not match the model's 5");
    assert_eq!(err(&good[..good.len() - 1], 4), "message truncated: values");
    assert_eq!(err(&[], 4), "message truncated: tag");
    let mut t = good.clone();
    t.push(0);
    assert_eq!(err(&t, 4), "1 trailing bytes after the message");
    t = good.clone();
    t[0] = 9;
    assert_eq!(err(&t, 4), "unknown message tag 9");
    t = good.clone();
    t[1] = 0x80;
    assert_eq!(err(&t, 4), "invalid flags 0x80");
    // k = 5 > dim 4
    t = good.clone();
    t[3] = 5;
    assert!(err(&t, 4).contains("5 entries for a vector of length 4"));
    // second gap pushes the index past the end
    t = good.clone();
    t[5] = 3;
    assert!(err(&t, 4).contains("index past the end"));
    // NaN value
    t = good.clone();
    let n = t.len();
    t[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(err(&t, 4).starts_with("non-finite value NaN at coordinate 3"));
    // zstd flag with garbage
    t = vec![2, 4, 4, 1, 3, 1, 2, 3];
    assert!(err(&t, 4).starts_with("zstd index block invalid"));
    assert!(out.decode_from(&good, 4).is_ok());
}
