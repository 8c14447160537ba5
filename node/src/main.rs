//! `dprox-node CONFIG.toml --id N --coordinator HOST:PORT`: thin; see the library.
fn main() -> anyhow::Result<()> {
    use clap::Parser;
    #[derive(clap::Parser)]
    #[command(name = "dprox-node", version, about = "A dprox peer")]
    struct Cli {
        #[command(flatten)]
        args: dprox_node::cli::Args,
    }
    dprox_node::cli::main(Cli::parse().args)
}
