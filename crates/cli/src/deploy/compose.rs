//! `dprox deploy compose`: `compose.yaml` with the coordinator and one service per node on a
//! private network, each node reached at its service name, and `prometheus.yml` scraping them.
//!
//! `docker compose -f DIR/compose.yaml up --abort-on-container-exit` runs the cluster: the
//! coordinator writes `run/metrics.csv` and `run/summary.json` and exits first (nodes stay up
//! `--linger-s 30` after finishing, so a final scrape sees them), which stops the nodes.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::{Args, Bundle, MOUNT, NodeSpec, coordinator_args, flow, node_args, ports};

/// The service of one process.
fn service(
    out: &mut String,
    name: &str,
    image: &str,
    args: &[String],
    mounts: &[(String, String)],
    expose: &[u16],
) {
    let _ = writeln!(out, "  {name}:");
    let _ = writeln!(out, "    image: {image}");
    let _ = writeln!(out, "    hostname: {name}");
    let _ = writeln!(out, "    command: {}", flow(args));
    let _ = writeln!(out, "    networks: [dprox]");
    let _ = writeln!(out, "    expose: {}", flow(&expose.iter().map(u16::to_string).collect::<Vec<_>>()));
    let _ = writeln!(out, "    volumes:");
    for (from, to) in mounts {
        let _ = writeln!(out, "      - {from}:{to}{}", if to.ends_with("/run") { "" } else { ":ro" });
    }
}

/// Writes `compose.yaml` and `prometheus.yml` into the bundle.
pub fn write(b: &Bundle, args: &Args) -> anyhow::Result<Vec<PathBuf>> {
    let mut y = format!(
        "# The cluster of run `{}`, written by `dprox deploy compose`.\n\
         # docker compose -f compose.yaml up --abort-on-container-exit\n\
         # Results: run/metrics.csv, run/summary.json. Status page: the coordinator's port {}.\n\
         # (Compose v1 and v2 both read it: the version key is what v1 needs, v2 ignores it.)\n\
         version: \"3.8\"\nservices:\n",
        b.run.name(),
        ports::STATUS,
    );
    // What a process mounts: the config, the data, the results, and its own TLS folder.
    let mounts = |stem: &str| {
        let mut m: Vec<(String, String)> = ["config.toml", "data", "run"]
            .iter()
            .map(|f| (format!("./{f}"), format!("{MOUNT}/{f}")))
            .collect();
        if b.tls && !args.insecure {
            m.push((format!("./tls/{stem}"), format!("{MOUNT}/tls/{stem}")));
        }
        m
    };
    let expose = [ports::COORDINATOR, ports::STATUS, ports::METRICS];
    service(
        &mut y,
        "coordinator",
        &args.image,
        &coordinator_args(b, args.insecure),
        &mounts("coordinator"),
        &expose,
    );
    let coordinator = format!("coordinator:{}", ports::COORDINATOR);
    for i in 0..b.run.n() {
        let name = format!("node-{i}");
        let spec = NodeSpec {
            id: Some(i),
            advertise: Some(format!("{name}:{}", ports::GOSSIP)),
            coordinator: &coordinator,
            tls: (!args.insecure).then(|| format!("{MOUNT}/tls/{name}")),
        };
        let expose = [ports::GOSSIP, ports::METRICS];
        service(&mut y, &name, &args.image, &node_args(b, spec), &mounts(&name), &expose);
    }
    y.push_str("networks:\n  dprox:\n    driver: bridge\n    internal: true\n");
    let compose = b.dir.join("compose.yaml");
    std::fs::write(&compose, y)?;
    let targets: Vec<String> = std::iter::once("coordinator".to_string())
        .chain((0..b.run.n()).map(|i| format!("node-{i}")))
        .map(|h| format!("{h}:{}", ports::METRICS))
        .collect();
    let prom = b.dir.join("prometheus.yml");
    std::fs::write(&prom, prometheus(&targets))?;
    Ok(vec![compose, prom])
}

/// A Prometheus config scraping `targets` every 5 s.
pub fn prometheus(targets: &[String]) -> String {
    format!(
        "# Scrapes every dprox process (coordinator and nodes); dashboards: deploy/grafana/.\n\
         global:\n  scrape_interval: 5s\nscrape_configs:\n  - job_name: dprox\n    static_configs:\n      - targets: {}\n",
        flow(targets)
    )
}
