//! One simulated iteration of 64 nodes (8 x 8 torus) of a small model: node-iterations per second,
//! for each algorithm, with gradients included (softmax on 20 features, 4 classes, batch 32).
//! The step sizes are ones that stay stable for the tens of thousands of iterations criterion runs
//! (top-k 10% with gamma 0.5 diverges after ~2,600 iterations here: gamma must shrink with k/d).
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn sim(c: &mut Criterion) {
    let mut g = c.benchmark_group("sim_64_nodes_iteration");
    g.throughput(Throughput::Elements(64));
    for (alg, comp) in [
        ("dproxsgt", ""),
        ("cdproxsgt", "x = { kind = \"top_k\", ratio = 0.3 }\ny = { kind = \"top_k\", ratio = 0.3 }"),
        ("dpsgd", ""),
        ("choco", "x = { kind = \"top_k\", ratio = 0.3 }"),
        ("allreduce", ""),
    ] {
        let text = format!(
            r#"
            [run]
            algorithm = "{alg}"
            iterations = 1000000
            [topology]
            kind = "torus"
            nodes = 64
            [data]
            synthetic = {{ kind = "gaussian_mixture", samples = 12800, features = 20, classes = 4 }}
            partition = {{ kind = "label_skew", classes_per_node = 2 }}
            [model]
            kind = "softmax"
            [regularizer]
            kind = "l1"
            mu = 0.001
            [optimizer]
            lr = 0.01
            batch_size = 32
            gamma_x = 0.5
            gamma_y = 0.5
            [compression]
            {comp}
            "#
        );
        let cfg = dprox_config::parse(&text, "bench.toml".as_ref()).unwrap();
        let run = dprox_prepare::Prepared::new(cfg, ".".as_ref(), "bench".into()).unwrap();
        let mut s = dprox_sim::Simulation::new(&run).unwrap();
        g.bench_function(alg, |b| b.iter(|| s.step().unwrap()));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = sim
}
criterion_main!(benches);
