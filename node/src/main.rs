//! `dprox-node CONFIG.toml --id N --coordinator HOST:PORT`: thin; see the library.
// mimalloc keeps large message buffers mapped between messages; glibc's malloc hands them back
// to the kernel and page-faults them in again (measured: 2x on 4-40 MB gossip messages).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    use clap::Parser;
    #[derive(clap::Parser)]
    #[command(name = "dprox-node", version, about = "A dprox peer")]
    struct Cli {
        #[command(flatten)]
        args: dprox_node::cli::Args,
    }
    dprox_node::cli::main(Cli::parse().args, &dprox_prepare::Objectives::new())
}
