//! Several hosts without containers: the coordinator and four nodes in network namespaces of
//! their own with their own addresses, started by hand as docs/cluster.md describes
//! (`scripts/netns-cluster.sh`). The run completes with the simulator's metrics.
//!
//! Needs root and iproute2; without them the test skips with a message, unless
//! DPROX_REQUIRE_NETNS is set (as CI sets it).

mod common;

use std::process::Command;
use std::time::Instant;

use common::*;

fn netns_usable() -> bool {
    let name = format!("dpxprobe{}", std::process::id());
    let ok = Command::new("ip").args(["netns", "add", &name]).output().is_ok_and(|o| o.status.success());
    if ok {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
    }
    ok
}

#[test]
fn nodes_in_their_own_network_namespaces_complete_the_run_as_the_docs_say() {
    if !netns_usable() {
        assert!(
            std::env::var_os("DPROX_REQUIRE_NETNS").is_none(),
            "DPROX_REQUIRE_NETNS is set but ip netns is not usable"
        );
        eprintln!("skipping: ip netns is not usable here (needs root and iproute2)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hosts: String =
        (0..4).map(|i| format!("\n[[nodes]]\nid = {i}\naddress = \"10.77.0.{}:7100\"\n", 11 + i)).collect();
    let cfg = ring4(dir.path(), 100, &hosts);
    let out = dir.path().join("hosts");
    let t0 = Instant::now();
    let o = Command::new(repo("scripts/netns-cluster.sh"))
        .arg(env!("CARGO_BIN_EXE_dprox"))
        .arg(&cfg)
        .arg(&out)
        .output()
        .unwrap();
    let logs = || std::fs::read_to_string(out.join("logs/coordinator.log")).unwrap_or_default();
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stderr), logs());
    eprintln!("four namespaces to the end: {:.1} s", t0.elapsed().as_secs_f64());
    let node0 = std::fs::read_to_string(out.join("logs/node-0.log")).unwrap();
    assert!(node0.contains("reached at 10.77.0.11:7100"), "{node0}");
    let real = columns(&out.join("run/metrics.csv"), &SIM_COLUMNS);
    assert_eq!(real.len(), 6);
    assert_eq!(real, sim_columns(&cfg, dir.path()));
}
