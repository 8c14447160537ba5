//! `dprox-coordinator CONFIG.toml --listen HOST:PORT --out DIR`: thin; see the library.
// mimalloc keeps large message buffers mapped between messages; glibc's malloc hands them back
// to the kernel and page-faults them in again (measured: 2x on 4-40 MB gossip messages).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    use clap::Parser;
    #[derive(clap::Parser)]
    #[command(name = "dprox-coordinator", version, about = "The dprox coordinator")]
    struct Cli {
        #[command(flatten)]
        args: dprox_coordinator::cli::Args,
    }
    dprox_coordinator::cli::main(Cli::parse().args, &dprox_prepare::Objectives::new())
}
