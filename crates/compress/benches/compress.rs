//! Compressors and their encoding on d = 1e6. Throughput is reported in bytes of the input f32
//! vector (4 MB), so the figures compare directly with memory bandwidth (docs/benchmarks.md: ~10-12 GB/s for
//! large buffers on the 2-core machine). A `memcpy` of the same vector is measured as the baseline.
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dprox_compress::{Compressed, Compressor, CompressorSpec, Encoder, StreamDecoder, ValueFormat};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let d = 1_000_000;
    let v: Vec<f32> = (0..d).map(|i| ((i as f32) * 0.618).sin() * (1.0 + (i % 7) as f32)).collect();
    let mut g = c.benchmark_group("d=1e6");
    g.throughput(Throughput::Bytes(4 * d as u64));
    let mut copy = vec![0.0f32; d];
    g.bench_function("baseline_memcpy", |b| b.iter(|| copy.copy_from_slice(black_box(&v))));
    let specs = [
        ("identity", CompressorSpec::Identity { values: ValueFormat::F32 }),
        ("top_k_0.01", CompressorSpec::TopK { ratio: 0.01, values: ValueFormat::F32 }),
        ("top_k_0.3", CompressorSpec::TopK { ratio: 0.3, values: ValueFormat::F32 }),
        ("rand_k_0.01", CompressorSpec::RandK { ratio: 0.01, values: ValueFormat::F32 }),
        ("qsgd_16", CompressorSpec::Qsgd { levels: 16 }),
        ("sign", CompressorSpec::Sign),
    ];
    for (name, spec) in specs {
        let mut q = Compressor::new(spec, d).unwrap();
        let mut m = Compressed::new(d);
        let mut seed = 0;
        g.bench_function(format!("compress/{name}"), |b| {
            b.iter(|| {
                seed += 1;
                q.compress(black_box(&v), seed, &mut m)
            })
        });
        let mut buf = Vec::with_capacity(8 * d);
        g.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| {
                buf.clear();
                m.encode(&mut buf)
            })
        });
        let mut back = Compressed::new(d);
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| back.decode_from(black_box(&buf), d).unwrap())
        });
        if name == "identity" {
            // As the transport receives it: 1 MiB pieces fed to the stream decoder.
            let mut dec = StreamDecoder::default();
            g.bench_function("decode_stream_1MiB/identity", |b| {
                b.iter(|| {
                    dec.begin(d);
                    for piece in black_box(&buf).chunks(1 << 20) {
                        dec.feed(piece, &mut back);
                    }
                    dec.finish(&mut back).unwrap()
                })
            });
        }
        if name == "top_k_0.01" {
            let mut enc = Encoder::with_zstd(3);
            g.bench_function("encode_zstd/top_k_0.01", |b| {
                b.iter(|| {
                    buf.clear();
                    enc.encode(&m, &mut buf)
                })
            });
        }
        let mut acc = vec![0.0f32; d];
        g.bench_function(format!("apply/{name}"), |b| b.iter(|| m.add_scaled_to(0.5, &mut acc)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
