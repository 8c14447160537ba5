//! `dprox certs DIR --config CONFIG`: a cluster's CA and one key and certificate per node, for
//! the coordinator and for an operator, each naming its identity (see `dprox_net::certs`).

use std::path::PathBuf;

use anyhow::Context;

/// `dprox certs`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Folder to write them in (an existing CA there is reused and existing certificates kept:
    /// the same command adds the nodes added to a config).
    pub dir: PathBuf,
    /// The run config whose nodes get certificates.
    #[arg(long)]
    pub config: PathBuf,
}

/// Makes what is missing and says what each process needs.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let config = dprox_config::load(&args.config)?;
    let n = config.topology.nodes;
    let written = dprox_net::certs::make(&args.dir, n)
        .with_context(|| format!("making certificates in {}", args.dir.display()))?;
    for p in &written {
        println!("wrote {}", p.display());
    }
    if written.is_empty() {
        println!("{} already holds the certificates of all {n} nodes", args.dir.display());
    }
    println!(
        "each process needs ca.pem and its own STEM.pem and STEM.key (node-ID, coordinator, operator) \
         in the folder it is given with --tls-dir; keep ca.key off the cluster (it signs new identities)"
    );
    Ok(())
}
