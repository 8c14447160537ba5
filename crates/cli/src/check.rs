//! `dprox check-config`: validates a config, loads its data, and prints what the run would be.

use std::collections::BTreeMap;
use std::path::PathBuf;

use dprox_prepare::{Objectives, Prepared};

use crate::run_args::RunArgs;
use crate::serde_name;

/// `dprox check-config`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run config (TOML).
    config: PathBuf,
}

/// At most this many nodes are listed one per line; larger runs get a summary.
const LIST_NODES: usize = 32;

/// Prepares the run and prints its topology, model, data and nodes.
pub fn run(args: &Args, objectives: &Objectives) -> anyhow::Result<()> {
    let run_args = RunArgs { config: args.config.clone(), algorithm: None, iterations: None };
    let run = run_args.prepare(objectives)?;
    println!("{}: valid", args.config.display());
    for w in run.warnings() {
        println!("warning: {w}");
    }
    let topology = &run.config().topology;
    println!("\ntopology: {} ({} weights)", serde_name(&topology.kind), serde_name(&topology.weights));
    println!("{}", run.facts());
    if let Some(f) = run.schedule_facts() {
        let how = match topology.schedule {
            dprox_config::schema::ScheduleKind::RandomMatching => "one drawn per iteration from the seed",
            _ => "iteration t uses round t mod period",
        };
        println!("schedule:     {} ({} rounds; {how})", serde_name(&topology.schedule), f.period);
        println!("period rho:   {:.9}  (||W_last ... W_first - 11^T/n||_2 over one period)", f.rho);
        println!("period gap:   {:.4e}  (1 - period rho)", 1.0 - f.rho);
    }
    println!("degrees: {}", degrees(&run));
    println!("\nmodel: {}, {} parameters", serde_name(&run.config().model.kind), run.dim());
    let shape = run.shape();
    let samples: usize = (0..run.n()).map(|i| run.node_data(i).len()).sum();
    println!(
        "data: {} features, {} classes, {} training samples, {} test samples",
        shape.features,
        shape.classes.map(|c| c.to_string()).unwrap_or_else(|| "no".into()),
        samples,
        run.test_data().map_or(0, |t| t.len())
    );
    print_nodes(&run);
    Ok(())
}

/// `2 2 3 2` for small graphs; `2 (x 998), 3 (x 2)` (degree, number of nodes) for large ones.
fn degrees(run: &Prepared) -> String {
    let g = run.graph();
    if run.n() <= LIST_NODES {
        return (0..run.n()).map(|i| g.degree(i).to_string()).collect::<Vec<_>>().join(" ");
    }
    let mut count = BTreeMap::new();
    for i in 0..run.n() {
        *count.entry(g.degree(i)).or_insert(0usize) += 1;
    }
    count.iter().map(|(d, k)| format!("{d} (x {k})")).collect::<Vec<_>>().join(", ")
}

/// Each node's samples, classes and speed; beyond [`LIST_NODES`] nodes, the range of samples.
fn print_nodes(run: &Prepared) {
    let stats = run.node_stats();
    if stats.len() > LIST_NODES {
        let min = stats.iter().map(|s| s.samples).min().unwrap_or(0);
        let max = stats.iter().map(|s| s.samples).max().unwrap_or(0);
        println!("  {} nodes: {min} to {max} samples each", stats.len());
        return;
    }
    for (i, s) in stats.iter().enumerate() {
        let classes: Vec<String> = s
            .class_counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(k, c)| format!("{k}:{c}"))
            .collect();
        println!(
            "  node {i}: {} samples{}  speed {}",
            s.samples,
            if classes.is_empty() { String::new() } else { format!("; classes {}", classes.join(" ")) },
            run.speed(i)
        );
    }
}
