//! The cluster across real containers: `deploy/docker/build-image.sh` builds the image from the
//! `dprox` under test, `dprox deploy compose` writes the deployment, and Docker Compose runs each
//! node in its own container on a private network (mutual TLS, addresses by service name).
//!
//! Needs Docker and Compose (`docker-compose` or `docker compose`); without them the tests skip
//! with a message, unless DPROX_REQUIRE_DOCKER is set (as CI sets it): then they fail.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::*;

const IMAGE: &str = "dprox:test";

/// The Compose command here, if any.
fn compose() -> Option<Vec<String>> {
    let ok = |cmd: &[&str]| Command::new(cmd[0]).args(&cmd[1..]).output().is_ok_and(|o| o.status.success());
    if !ok(&["docker", "info"]) {
        return None;
    }
    if ok(&["docker", "compose", "version"]) {
        return Some(vec!["docker".into(), "compose".into()]);
    }
    ok(&["docker-compose", "version"]).then(|| vec!["docker-compose".into()])
}

fn compose_or_skip(what: &str) -> Option<Vec<String>> {
    let c = compose();
    if c.is_none() {
        assert!(
            std::env::var_os("DPROX_REQUIRE_DOCKER").is_none(),
            "DPROX_REQUIRE_DOCKER is set but Docker with Compose is not usable"
        );
        eprintln!(
            "skipping {what}: Docker with Compose is not available (set DPROX_REQUIRE_DOCKER to make this a failure)"
        );
    }
    c
}

/// Builds the image from the binary under test (once per test binary; idempotent).
fn build_image() {
    let o = Command::new(repo("deploy/docker/build-image.sh"))
        .arg(env!("CARGO_BIN_EXE_dprox"))
        .env("DPROX_IMAGE", IMAGE)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    eprintln!("{}", String::from_utf8_lossy(&o.stdout).trim());
}

fn deploy(cfg: &Path, out: &Path) {
    let o = dprox()
        .args(["deploy", "compose"])
        .arg(cfg)
        .arg("--out")
        .arg(out)
        .args(["--image", IMAGE])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Runs Compose in `dir` as project `project`.
fn run(compose: &[String], dir: &Path, project: &str, args: &[&str]) -> std::process::Output {
    Command::new(&compose[0])
        .args(&compose[1..])
        .args(["-f", "compose.yaml", "-p", project])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Takes the project down whatever happens.
struct Down(Vec<String>, PathBuf, String);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = run(&self.0, &self.1, &self.2, &["down", "-v", "-t", "1"]);
    }
}

#[test]
fn a_four_node_ring_in_containers_reproduces_the_simulator() {
    let Some(compose) = compose_or_skip("the Compose ring") else { return };
    build_image();
    let dir = tempfile::tempdir().unwrap();
    let cfg = ring4(dir.path(), 100, "");
    let out = dir.path().join("deploy");
    deploy(&cfg, &out);
    let project = format!("dproxring{}", std::process::id());
    let _down = Down(compose.clone(), out.clone(), project.clone());
    let t0 = Instant::now();
    let o = run(&compose, &out, &project, &["up", "--abort-on-container-exit"]);
    let log = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{log}\n{}", String::from_utf8_lossy(&o.stderr));
    eprintln!("compose up to the end: {:.1} s", t0.elapsed().as_secs_f64());
    assert!(log.contains("run ring4 completed: 100 iterations"), "{log}");
    let real = columns(&out.join("run/metrics.csv"), &SIM_COLUMNS);
    assert_eq!(real.len(), 6, "iterations 0, 20, ..., 100");
    assert_eq!(real, sim_columns(&cfg, dir.path()), "the containers must reproduce the simulator");
}

/// The id of service `name`'s container.
fn container(compose: &[String], dir: &Path, project: &str, name: &str) -> String {
    String::from_utf8(run(compose, dir, project, &["ps", "-q", name]).stdout).unwrap().trim().to_string()
}

fn docker(args: &[&str]) -> String {
    let o = Command::new("docker").args(args).output().unwrap();
    assert!(o.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn a_killed_and_a_disconnected_container_are_lost_and_the_run_completes_without_them() {
    let Some(compose) = compose_or_skip("killing containers") else { return };
    build_image();
    let dir = tempfile::tempdir().unwrap();
    let cfg = ring4(dir.path(), 3000, "[cluster]\ntimeout_s = 5\nmin_nodes = 2\n");
    let out = dir.path().join("deploy");
    deploy(&cfg, &out);
    let project = format!("dproxkill{}", std::process::id());
    let _down = Down(compose.clone(), out.clone(), project.clone());
    let t0 = Instant::now();
    let o = run(&compose, &out, &project, &["up", "-d"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let coordinator = container(&compose, &out, &project, "coordinator");
    wait_until("node 1 at iteration 200", 120, || {
        std::fs::read_to_string(out.join("run/nodes/node-1.csv")).is_ok_and(|t| t.lines().count() > 11)
    })
    .unwrap();
    docker(&["kill", &container(&compose, &out, &project, "node-1")]);
    let network = docker(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}",
        &coordinator,
    ]);
    docker(&["network", "disconnect", &network, &container(&compose, &out, &project, "node-3")]);
    let code = docker(&["wait", &coordinator]);
    eprintln!("kill and disconnect to the end: {:.1} s", t0.elapsed().as_secs_f64());
    let summary = std::fs::read_to_string(out.join("run/summary.json")).unwrap();
    assert_eq!(code, "0", "{summary}\n{}", docker(&["logs", "--tail", "30", &coordinator]));
    let s: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(s["status"], "completed", "{summary}");
    let lost: Vec<u64> = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "lost")
        .map(|e| e["node"].as_u64().unwrap())
        .collect();
    assert!(lost.contains(&1) && lost.contains(&3), "both named: {summary}");
    let rows = std::fs::read_to_string(out.join("run/metrics.csv")).unwrap().lines().count() - 1;
    assert_eq!(rows, 3000 / 20 + 1, "every row, before and after the losses");
}
