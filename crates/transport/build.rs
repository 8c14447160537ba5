//! Compiles proto/dprox/v1/*.proto with protox (pure Rust: no protoc on the machine).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [root.join("dprox/v1/gossip.proto"), root.join("dprox/v1/coordinator.proto")];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root])?;
    tonic_prost_build::configure().bytes(".").codec_path("crate::codec::Codec").compile_fds(fds)?;
    Ok(())
}
