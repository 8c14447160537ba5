//! `dprox deploy compose|kubernetes|slurm CONFIG --out DIR`: the files that run a config's
//! cluster on real infrastructure, one container, pod or task per node plus the coordinator.
//!
//! Every target gets the same bundle ([`Bundle`]): the config with its data files copied beside
//! it (paths rewritten to where the bundle is mounted), each process's TLS files in a folder of
//! its own, an output folder, and a Prometheus scrape config. Then one module per target writes
//! its manifest: `compose`, `kubernetes`, `slurm`.

mod bundle;
mod compose;
mod kubernetes;
mod slurm;

use std::path::PathBuf;

pub use bundle::Bundle;

/// Ports inside every container or host: the coordinator's gRPC, its status page, the metrics
/// endpoints, a node's gossip.
pub mod ports {
    /// The coordinator's gRPC.
    pub const COORDINATOR: u16 = 7000;
    /// The coordinator's status page and `/api/status`.
    pub const STATUS: u16 = 8080;
    /// Every process's Prometheus endpoint.
    pub const METRICS: u16 = 9400;
    /// A node's gossip.
    pub const GOSSIP: u16 = 7100;
}

/// Where a bundle is mounted inside a container.
pub const MOUNT: &str = "/dprox";

/// The deployment targets.
#[derive(clap::Subcommand, Debug)]
pub enum Target {
    /// Docker Compose: one service per node and the coordinator on a private network;
    /// `docker compose -f DIR/compose.yaml up --abort-on-container-exit` runs the cluster.
    Compose(Args),
    /// Kubernetes: the coordinator as a Deployment and Service, the nodes as an Indexed Job
    /// behind a headless Service, the config as a ConfigMap, certificates as Secrets.
    Kubernetes(Args),
    /// Slurm: an sbatch script that starts the coordinator on the allocation's first node and
    /// one node per task with srun.
    Slurm(Args),
}

/// What every target takes.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run config / topology file.
    pub config: PathBuf,
    /// The folder to write the deployment into.
    #[arg(long)]
    pub out: PathBuf,
    /// The container image holding the `dprox` binary (Compose and Kubernetes).
    #[arg(long, default_value = "dprox:local")]
    pub image: String,
    /// Plaintext gRPC instead of mutual TLS (not recommended off a private network).
    #[arg(long)]
    pub insecure: bool,
}

/// A target's writer: the files it wrote.
type Writer = fn(&Bundle, &Args) -> anyhow::Result<Vec<PathBuf>>;

/// Writes the deployment for `target`.
pub fn run(target: &Target) -> anyhow::Result<()> {
    let (args, write): (&Args, Writer) = match target {
        Target::Compose(a) => (a, compose::write),
        Target::Kubernetes(a) => (a, kubernetes::write),
        Target::Slurm(a) => (a, slurm::write),
    };
    let mount = match target {
        Target::Slurm(_) => std::path::absolute(&args.out)?,
        _ => PathBuf::from(MOUNT),
    };
    let bundle = Bundle::write(&args.config, &args.out, &mount, !args.insecure)?;
    for p in write(&bundle, args)? {
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// The command line of the coordinator inside the deployment.
fn coordinator_args(b: &Bundle, insecure: bool) -> Vec<String> {
    let mut a = vec![
        "coordinator".to_string(),
        b.mounted("config.toml"),
        "--listen".into(),
        format!("0.0.0.0:{}", ports::COORDINATOR),
        "--out".into(),
        b.mounted("run"),
        "--http-addr".into(),
        format!("0.0.0.0:{}", ports::STATUS),
        "--http-linger-s".into(),
        "0".into(),
        "--metrics-addr".into(),
        format!("0.0.0.0:{}", ports::METRICS),
    ];
    match insecure {
        true => a.push("--insecure".into()),
        false => a.extend(["--tls-dir".into(), b.mounted("tls/coordinator")]),
    }
    a
}

/// A YAML flow sequence of strings (JSON syntax, which is valid YAML).
fn flow(items: &[String]) -> String {
    serde_json::to_string(items).expect("strings serialize")
}

/// How a node of the deployment is started.
struct NodeSpec<'a> {
    /// Its id (None: from the scheduler's environment).
    id: Option<usize>,
    /// The address peers dial (None: its host name with the gossip port).
    advertise: Option<String>,
    /// Where the coordinator is.
    coordinator: &'a str,
    /// Its TLS folder, inside the deployment (None: plaintext).
    tls: Option<String>,
}

/// The command line of a node.
fn node_args(b: &Bundle, n: NodeSpec<'_>) -> Vec<String> {
    let NodeSpec { id, advertise, coordinator, tls } = n;
    let mut a = vec!["node".to_string(), b.mounted("config.toml")];
    if let Some(id) = id {
        a.extend(["--id".into(), id.to_string()]);
    }
    a.extend([
        "--coordinator".into(),
        coordinator.to_string(),
        "--listen".into(),
        format!("0.0.0.0:{}", ports::GOSSIP),
    ]);
    if let Some(adv) = advertise {
        a.extend(["--advertise".into(), adv]);
    }
    a.extend([
        "--out".into(),
        b.mounted("run"),
        "--metrics-addr".into(),
        format!("0.0.0.0:{}", ports::METRICS),
        "--linger-s".into(),
        "30".into(),
    ]);
    match tls {
        Some(dir) => a.extend(["--tls-dir".into(), dir]),
        None => a.push("--insecure".into()),
    }
    a
}
