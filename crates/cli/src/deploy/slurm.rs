//! `dprox deploy slurm`: `dprox.sbatch`, one task per node plus the coordinator on the
//! allocation's first host. The bundle stays where it was written (a shared file system every
//! host of the allocation sees); each node's id is its task rank (`SLURM_PROCID`) and it
//! advertises its host name with a free port (several tasks may share a host; their metrics
//! endpoints take free ports too, logged as `metrics endpoint`).
//!
//! `sbatch DIR/dprox.sbatch` runs it; results land in `DIR/run/`, logs in `DIR/run/logs/`.

use std::path::PathBuf;

use super::{Args, Bundle, NodeSpec, coordinator_args, node_args, ports};

/// A shell word, quoted.
fn quote(w: &str) -> String {
    if w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,".contains(c)) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

fn line(words: &[String]) -> String {
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

/// Writes `dprox.sbatch`.
pub fn write(b: &Bundle, args: &Args) -> anyhow::Result<Vec<PathBuf>> {
    let n = b.run.n();
    let coordinator = format!("$COORD:{}", ports::COORDINATOR);
    let tls = (b.tls && !args.insecure).then(|| b.mounted("tls/nodes"));
    let spec = NodeSpec { id: None, advertise: None, coordinator: &coordinator, tls };
    let mut nargs = node_args(b, spec);
    // The coordinator's host is known only when the job runs; several tasks may share a host,
    // so nodes take free ports (and advertise their host name with the port they got).
    // The job ends when its tasks and the coordinator have: no need to linger.
    if let Some(i) = nargs.iter().position(|a| a == "--linger-s") {
        nargs.drain(i..i + 2);
    }
    for a in &mut nargs {
        if a == &coordinator {
            *a = "COORDINATOR".into();
        } else if a.starts_with("0.0.0.0:") {
            *a = "0.0.0.0:0".into();
        }
    }
    let node_line = line(&nargs).replace("COORDINATOR", &format!("\"$COORD:{}\"", ports::COORDINATOR));
    let script = format!(
        r#"#!/bin/bash
# The cluster of run `{name}`, written by `dprox deploy slurm`: sbatch {dir}/dprox.sbatch
# One task per node (its id is SLURM_PROCID); the coordinator runs beside task 0, on the first
# host. Every host must see {dir} (a shared file system) and have `dprox` on its PATH (or set
# DPROX to it).
#SBATCH --job-name=dprox-{name}
#SBATCH --ntasks={n}
#SBATCH --output={dir}/run/logs/slurm-%j.out
set -euo pipefail
DPROX="${{DPROX:-dprox}}"
mkdir -p {dir}/run/logs
COORD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
"$DPROX" {coord} > {dir}/run/logs/coordinator.log 2>&1 &
coordinator=$!
srun --ntasks={n} --kill-on-bad-exit=1 bash -c 'exec "$0" "$@" 2> {dir}/run/logs/node-$SLURM_PROCID.log' "$DPROX" {node_line}
wait "$coordinator"
"#,
        name = b.run.name(),
        dir = b.dir.canonicalize()?.display(),
        coord = line(&coordinator_args(b, args.insecure)),
    );
    // Slurm opens the --output file before the script runs: its folder must exist.
    std::fs::create_dir_all(b.dir.join("run/logs"))?;
    let path = b.dir.join("dprox.sbatch");
    std::fs::write(&path, script)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(vec![path])
}
