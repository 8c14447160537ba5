//! Gradient time per call, CPU against CUDA, on MNIST-shaped data (the bundled 5,000 digits).
//!
//! ```sh
//! cargo run --release -p dprox-compute --features cuda --example gpu_timing [-- DATA.csv.gz]
//! ```
//!
//! For softmax regression, an MLP and LeNet-5 (on CUDA where the backend supports it), at batch sizes 32, 256 and 4096, it times `loss_grad` on the CPU and on CUDA device 0
//! and prints a markdown table with the speedup and the GPU's gradient error relative to the CPU.
//! Without a CUDA device (or without the `cuda` feature) it prints the CPU times and
//! "cuda: unavailable (reason)". With `OUT` set, the table is also written to `$OUT/gpu-table.md`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use dprox_compute::{Backend, Device, build_on};
use dprox_data::{CsvOptions, Dataset, LabelColumn, Task};
use dprox_objective::{Activation, Batch, ModelKind, ModelSpec, Objective, Shape};

const BATCHES: [usize; 3] = [32, 256, 4096];

/// Each timing runs at least this long (and at least `MIN_CALLS` calls, at most `MAX_CALLS`).
const MIN_TIME: Duration = Duration::from_millis(400);
const MIN_CALLS: usize = 3;
const MAX_CALLS: usize = 200;

/// Mean seconds per `loss_grad` call, after two warm-up calls (which also size the buffers).
fn time(f: &mut dyn Objective, x: &[f32], batch: &[usize], grad: &mut [f32]) -> f64 {
    for _ in 0..2 {
        f.loss_grad(x, Batch::Indices(batch), grad);
    }
    let start = Instant::now();
    let mut calls = 0;
    while calls < MIN_CALLS || (start.elapsed() < MIN_TIME && calls < MAX_CALLS) {
        f.loss_grad(x, Batch::Indices(batch), grad);
        calls += 1;
    }
    start.elapsed().as_secs_f64() / calls as f64
}

/// max |a - b| / max |b|.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let num = a.iter().zip(b).map(|(x, y)| f64::from((x - y).abs())).fold(0.0, f64::max);
    let den = b.iter().map(|y| f64::from(y.abs())).fold(0.0, f64::max);
    if den == 0.0 { num } else { num / den }
}

fn models() -> Vec<(&'static str, ModelSpec)> {
    let mut mlp = ModelSpec::new(ModelKind::Mlp);
    mlp.hidden = vec![256, 128];
    mlp.activation = Activation::Relu;
    // LeNet-5 with its defaults: 1x28x28 inferred from 784 features, [6, 16] channels, 120-84.
    vec![
        ("softmax", ModelSpec::new(ModelKind::Softmax)),
        ("mlp 784-256-128-10", mlp),
        ("lenet-5", ModelSpec::new(ModelKind::LeNet)),
    ]
}

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist_5k.csv.gz").to_string());
    let mut data = dprox_data::load_csv(
        &path,
        &CsvOptions { label_column: LabelColumn::Last, classes: Some(10), task: Task::Classification },
    )
    .with_context(|| format!("loading {path}"))?;
    let scaler = dprox_data::fit_scaler(&data, dprox_data::Scale::Factor(1.0 / 255.0))?;
    scaler.apply(&mut data)?;
    let shape = Shape::of(&data);
    let data: Arc<Dataset> = Arc::new(data);
    println!("data: {path}: {} samples x {} features, 10 classes", data.len(), shape.features);
    println!("cpu threads: {}", std::thread::available_parallelism().map_or(1, |n| n.get()));

    let gpu = match Backend::open(Device::Cuda(0)) {
        Ok(b) => {
            println!("cuda: {b}");
            Some(b)
        }
        Err(e) => {
            println!("cuda: unavailable ({e})");
            None
        }
    };

    let mut table = String::new();
    writeln!(table, "| model | batch | cpu ms | gpu ms | speedup | gpu grad rel. err |")?;
    writeln!(table, "|---|---:|---:|---:|---:|---:|")?;
    for (name, spec) in models() {
        let mut cpu = build_on(&Backend::Cpu, &spec, data.clone(), shape)?;
        let mut dev = match &gpu {
            Some(b) => match build_on(b, &spec, data.clone(), shape) {
                Ok(f) => Some(f),
                Err(e) => {
                    println!("{name}: not on {b}: {e}");
                    None
                }
            },
            None => None,
        };
        let mut x = vec![0.0f32; cpu.dim()];
        cpu.init(7, &mut x);
        let mut rng = dprox_rng::stream(11, &[1]);
        for b in BATCHES {
            let batch: Vec<usize> = (0..b).map(|_| rng.below_usize(data.len())).collect();
            let mut g_cpu = vec![0.0f32; cpu.dim()];
            let t_cpu = time(cpu.as_mut(), &x, &batch, &mut g_cpu);
            let (t_gpu, err) = match dev.as_mut() {
                Some(f) => {
                    let mut g = vec![0.0f32; f.dim()];
                    let t = time(f.as_mut(), &x, &batch, &mut g);
                    (Some(t), Some(rel_err(&g, &g_cpu)))
                }
                None => (None, None),
            };
            let ms = |t: Option<f64>| t.map_or("-".to_string(), |t| format!("{:.3}", t * 1e3));
            let speedup = t_gpu.map_or("-".to_string(), |t| format!("{:.1}x", t_cpu / t));
            let err = err.map_or("-".to_string(), |e| format!("{e:.1e}"));
            let row = format!("| {name} | {b} | {} | {} | {speedup} | {err} |", ms(Some(t_cpu)), ms(t_gpu));
            println!("{row}");
            writeln!(table, "{row}")?;
        }
    }
    println!("\n{table}");
    if let Ok(out) = std::env::var("OUT") {
        let file = std::path::Path::new(&out).join("gpu-table.md");
        let head = match &gpu {
            Some(b) => format!("Gradient time per call on {path} (cpu vs {b}).\n\n"),
            None => format!("Gradient time per call on {path} (cpu only; cuda unavailable).\n\n"),
        };
        std::fs::write(&file, head + &table).with_context(|| format!("writing {}", file.display()))?;
        println!("wrote {}", file.display());
    }
    Ok(())
}
