//! `dprox deploy slurm` for real: the script submitted with `sbatch` to a one-host Slurm
//! (`scripts/slurm-one-host.sh` starts one; CI installs Debian's slurm-wlm and runs it). Each
//! node is a task whose id is its SLURM_PROCID; the run completes with the simulator's metrics.
//!
//! Without a running Slurm the test skips with a message, unless DPROX_REQUIRE_SLURM is set.

mod common;

use std::process::Command;
use std::time::Instant;

use common::*;

fn slurm_up() -> bool {
    Command::new("sinfo").args(["-h", "-o", "%T"]).output().is_ok_and(|o| {
        let s = String::from_utf8_lossy(&o.stdout);
        o.status.success() && (s.contains("idle") || s.contains("mix") || s.contains("alloc"))
    })
}

#[test]
fn the_sbatch_script_runs_the_cluster_on_slurm() {
    if !slurm_up() {
        assert!(
            std::env::var_os("DPROX_REQUIRE_SLURM").is_none(),
            "DPROX_REQUIRE_SLURM is set but no Slurm answers sinfo"
        );
        eprintln!("skipping: no Slurm here (scripts/slurm-one-host.sh starts one)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = ring4(dir.path(), 100, "");
    let out = dir.path().join("slurm");
    let o = dprox().args(["deploy", "slurm"]).arg(&cfg).arg("--out").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t0 = Instant::now();
    let o = Command::new("sbatch")
        .args(["--parsable", &format!("--export=ALL,DPROX={}", env!("CARGO_BIN_EXE_dprox"))])
        .arg(out.join("dprox.sbatch"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let job = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let queued = || {
        let o = Command::new("squeue").args(["-h", "-j", &job, "-o", "%T"]).output().unwrap();
        !String::from_utf8_lossy(&o.stdout).trim().is_empty()
    };
    let done = wait_until("the Slurm job to end", 180, || !queued());
    if done.is_err() {
        let _ = Command::new("scancel").arg(&job).status();
    }
    let log = |f: &str| std::fs::read_to_string(out.join("run/logs").join(f)).unwrap_or_default();
    done.unwrap_or_else(|e| panic!("{e}\n{}", log("coordinator.log")));
    eprintln!("sbatch to the end: {:.1} s", t0.elapsed().as_secs_f64());
    assert!(log("coordinator.log").contains("completed: 100 iterations"), "{}", log("coordinator.log"));
    assert!(log("node-2.log").contains("node id 2 from SLURM_PROCID"), "{}", log("node-2.log"));
    let real = columns(&out.join("run/metrics.csv"), &SIM_COLUMNS);
    assert_eq!(real.len(), 6);
    assert_eq!(real, sim_columns(&cfg, dir.path()));
}
