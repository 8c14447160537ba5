//! `dprox-coordinator CONFIG.toml --listen HOST:PORT --out DIR`: thin; see the library.
fn main() -> anyhow::Result<()> {
    use clap::Parser;
    #[derive(clap::Parser)]
    #[command(name = "dprox-coordinator", version, about = "The dprox coordinator")]
    struct Cli {
        #[command(flatten)]
        args: dprox_coordinator::cli::Args,
    }
    dprox_coordinator::cli::main(Cli::parse().args)
}
