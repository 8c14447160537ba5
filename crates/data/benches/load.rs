//! Loading the bundled MNIST 5k CSV (5,000 rows of 785 integer fields, 9.8 MB of text): as
//! gzip (what runs load) and as plain text. Baselines measured in the same run: reading the plain
//! file's bytes, and splitting, trimming and parsing every field with the standard library.
use std::hint::black_box;
use std::io::Read;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dprox_data::{CsvOptions, LabelColumn, Task, load_csv};

fn bench(c: &mut Criterion) {
    let gz = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist_5k.csv.gz");
    let mut text = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(gz).expect("the bundled data"))
        .read_to_end(&mut text)
        .expect("valid gzip");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let plain = dir.path().join("mnist_5k.csv");
    std::fs::write(&plain, &text).expect("writable");
    let text = String::from_utf8(text).expect("ASCII");
    let opts = CsvOptions { label_column: LabelColumn::Last, classes: None, task: Task::Classification };

    let mut g = c.benchmark_group("mnist_5k");
    g.throughput(Throughput::Bytes(text.len() as u64)).sample_size(20);
    g.bench_function("baseline_read_bytes", |b| b.iter(|| std::fs::read(black_box(&plain)).unwrap()));
    g.bench_function("baseline_std_split_trim_parse", |b| {
        let mut row = Vec::with_capacity(785);
        b.iter(|| {
            let mut sum = 0.0f32;
            for line in black_box(&text).lines() {
                row.clear();
                row.extend(line.split(',').map(|f| f.trim().parse::<f32>().unwrap()));
                sum += row[row.len() - 1];
            }
            sum
        })
    });
    g.bench_function("load_csv_plain", |b| b.iter(|| load_csv(black_box(&plain), &opts).unwrap()));
    g.bench_function("load_csv_gzip", |b| b.iter(|| load_csv(black_box(gz), &opts).unwrap()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
