//! Writes the seed corpus of each fuzz target into `fuzz/corpus/TARGET/seed-*`: messages of
//! every kind and value format (plain and zstd), the protobuf messages the servers accept, and
//! the repository's config files. Run from the repository root:
//! `cargo run -p dprox-fuzz-checks --example seeds`.

use std::path::Path;

use dprox_compress::{Compressed, Compressor, CompressorSpec, Encoder, ValueFormat};
use dprox_transport::pb;
use prost::Message;

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = Path::new("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
}

/// Encoded messages of every compressor and format, for a model of `dim`.
fn messages(dim: usize) -> Vec<(String, Vec<u8>)> {
    let v: Vec<f32> = (0..dim).map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0).collect();
    let mut specs = Vec::new();
    for values in [ValueFormat::F32, ValueFormat::F16, ValueFormat::Bf16] {
        specs.push(CompressorSpec::Identity { values });
        specs.push(CompressorSpec::TopK { ratio: 0.1, values });
        specs.push(CompressorSpec::RandK { ratio: 0.1, values });
    }
    specs.push(CompressorSpec::Qsgd { levels: 4 });
    specs.push(CompressorSpec::Sign);
    let mut out = Vec::new();
    for (k, spec) in specs.into_iter().enumerate() {
        let mut q = Compressor::new(spec, dim).unwrap();
        let mut m = Compressed::new(dim);
        q.compress(&v, 7, &mut m);
        for (zname, mut enc) in [("plain", Encoder::default()), ("zstd", Encoder::with_zstd(3))] {
            let mut bytes = Vec::new();
            enc.encode(&m, &mut bytes);
            out.push((format!("{dim}-{k}-{zname}"), bytes));
        }
    }
    out
}

fn main() {
    for dim in [1usize, 100, 1000] {
        let size = ((dim - 1) as u16).to_le_bytes();
        for (name, bytes) in messages(dim) {
            write("wire", &name, &[&size[..], &bytes].concat());
            write("stream", &name, &[&size[..], &[63u8][..], &bytes].concat());
        }
    }
    let header = pb::Header {
        run_id: "run-1".into(),
        token: vec![7; 16].into(),
        from: 1,
        iteration: 9,
        exchange: 1,
        length: 12,
        epoch: 2,
    };
    let encoded: Vec<Vec<u8>> = vec![
        pb::Chunk { header: Some(header), data: vec![1; 12].into(), slot: None }.encode_to_vec(),
        pb::PingRequest::default().encode_to_vec(),
        pb::FetchModelRequest { run_id: "run-1".into(), from: 2, epoch: 1, ..Default::default() }
            .encode_to_vec(),
        pb::RegisterRequest { id: 3, address: "127.0.0.1:7100".into(), dim: 7850, ..Default::default() }
            .encode_to_vec(),
        pb::HeartbeatRequest { id: 1, iteration: 40, epoch: 1 }.encode_to_vec(),
        pb::ReportRequest {
            id: 1,
            iteration: 20,
            x: vec![0; 40].into(),
            loss: Some(0.5),
            ..Default::default()
        }
        .encode_to_vec(),
        pb::FinishRequest { id: 1, iteration: 300, error: String::new() }.encode_to_vec(),
        pb::SyncRequest { id: 1, epoch: 1, iteration: 50, at_boundary: true }.encode_to_vec(),
        pb::LostRequest { id: 1, peer: 2, iteration: 50, reason: "gone".into() }.encode_to_vec(),
        pb::LeaveRequest { id: 1, iteration: 50, crash: true, ..Default::default() }.encode_to_vec(),
        pb::CheckpointedRequest { id: 1, iteration: 100 }.encode_to_vec(),
    ];
    for (which, bytes) in encoded.into_iter().enumerate() {
        write("messages", &format!("{which}"), &[&[which as u8][..], &bytes].concat());
    }
    let mut configs = 0;
    for dir in ["deploy/cluster", "deploy/examples"] {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "toml") && configs < 24 {
                let name = path.file_stem().unwrap().to_string_lossy().into_owned();
                write("config", &name, &std::fs::read(&path).unwrap());
                configs += 1;
            }
        }
    }
    println!("wrote the seed corpus; {configs} config files");
}
