//! Prox operators and one node's mixing on d = 1e6. Throughput is in bytes of the f32 vector
//! (4 MB); `memcpy` of the same vector in the same run is the memory-bandwidth baseline.
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dprox_compress::{Compressed, Compressor, CompressorSpec, ValueFormat};
use dprox_core::{Algorithm, Cluster, Delivery, NodeConfig, Prox};

fn prox(c: &mut Criterion) {
    let d = 1_000_000;
    let mut g = c.benchmark_group("prox_step_d=1e6");
    g.throughput(Throughput::Bytes(4 * d as u64));
    let dir: Vec<f32> = (0..d).map(|i| ((i as f32) * 0.37).sin()).collect();
    let mut x: Vec<f32> = (0..d).map(|i| ((i as f32) * 0.11).cos()).collect();
    let mut copy = vec![0.0f32; d];
    g.bench_function("baseline_memcpy", |b| b.iter(|| copy.copy_from_slice(black_box(&dir))));
    for (name, p) in [
        ("none", Prox::None),
        ("l1", Prox::L1 { mu: 1e-3 }),
        ("l2", Prox::L2 { lambda: 1e-3 }),
        ("elastic_net", Prox::ElasticNet { mu: 1e-3, lambda: 1e-3 }),
        ("box", Prox::Box { lo: -1.0, hi: 1.0 }),
        ("nonneg", Prox::Nonneg),
    ] {
        g.bench_function(name, |b| b.iter(|| p.step(1e-6, black_box(&mut x), &dir)));
    }
    g.finish();

    // Applying one neighbour's message to a running f64 sum (the mixing inner loop).
    let mut g = c.benchmark_group("mix_term_d=1e6");
    g.throughput(Throughput::Bytes(4 * d as u64));
    let mut acc = vec![0.0f64; d];
    for (name, spec) in [
        ("dense", CompressorSpec::default()),
        ("top_k_0.01", CompressorSpec::TopK { ratio: 0.01, values: ValueFormat::F32 }),
    ] {
        let mut q = Compressor::new(spec, d).unwrap();
        let mut m = Compressed::new(d);
        q.compress(&dir, 0, &mut m);
        g.bench_function(name, |b| b.iter(|| m.add_scaled_to_f64(black_box(0.25), &mut acc)));
    }
    g.finish();
}

fn node_iteration(c: &mut Criterion) {
    // A ring of 8 nodes, d = 1e5: one full iteration of every node (gradient given), per algorithm.
    let (n, d) = (8usize, 100_000usize);
    let mut g = c.benchmark_group("ring8_iteration_d=1e5");
    g.throughput(Throughput::Elements(n as u64));
    for (alg, q) in [
        (Algorithm::Dproxsgt, CompressorSpec::default()),
        (Algorithm::Cdproxsgt, CompressorSpec::TopK { ratio: 0.01, values: ValueFormat::F32 }),
        (Algorithm::Dpsgd, CompressorSpec::default()),
        (Algorithm::Choco, CompressorSpec::TopK { ratio: 0.01, values: ValueFormat::F32 }),
    ] {
        let cfgs = (0..n)
            .map(|i| {
                let mut row = vec![((i + n - 1) % n, 1.0 / 3.0), (i, 1.0 / 3.0), ((i + 1) % n, 1.0 / 3.0)];
                row.sort_by_key(|r| r.0);
                NodeConfig {
                    id: i,
                    algorithm: alg,
                    row,
                    lr: 0.01,
                    gamma_x: 0.5,
                    gamma_y: 0.5,
                    prox: Prox::L1 { mu: 1e-4 },
                    compress_x: q.clone(),
                    compress_y: q.clone(),
                    seed: 1,
                    x0: vec![0.0; d],
                    rounds: None,
                }
            })
            .collect();
        let mut cluster = Cluster::new(cfgs).unwrap();
        let mut t = 0u32;
        g.bench_function(format!("{alg}"), |b| {
            b.iter(|| {
                t += 1;
                let s = t as f32;
                cluster
                    .step(
                        |i, x, g| g.iter_mut().zip(x).for_each(|(g, &x)| *g = x - s * 1e-3 * i as f32),
                        Delivery::Ascending,
                        |_| {},
                    )
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = prox, node_iteration
}
criterion_main!(benches);
