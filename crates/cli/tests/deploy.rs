//! `dprox deploy kubernetes|compose|slurm` write deployments whose every container or task
//! command line the binary itself accepts, and whose Kubernetes manifests pass the Kubernetes
//! schemas offline (kubernetes-validate, strict). Slurm is not run here: its script is checked
//! by `bash -n` and by the same command-line check.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn deploy(target: &str, config: &str, out: &Path) {
    let o = dprox().args(["deploy", target]).arg(repo(config)).arg("--out").arg(out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The JSON-style argument lists after `key: ` in `text` (how the manifests write them).
fn arg_lists(text: &str, key: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(key))
        .map(|l| serde_json::from_str::<Vec<String>>(l.trim()).unwrap())
        .collect()
}

/// The binary accepts `args` (checked with `--help` appended: clap rejects an unknown flag or a
/// bad value before it prints the help).
fn accepted(args: &[String]) {
    let o = dprox().args(args).arg("--help").output().unwrap();
    assert!(o.status.success(), "dprox {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// kubernetes-validate: $DPROX_KUBE_VALIDATE, else beside $DPROX_PYTHON, else on PATH.
fn kube_validate() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("DPROX_KUBE_VALIDATE").map(PathBuf::from),
        std::env::var_os("DPROX_PYTHON").map(|p| PathBuf::from(p).with_file_name("kubernetes-validate")),
        Some(PathBuf::from("kubernetes-validate")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
}

#[test]
fn kubernetes_manifests_pass_the_schemas_and_their_arguments_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    deploy("kubernetes", "deploy/cluster/torus8.toml", dir.path());
    let manifest = dir.path().join("dprox.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let lists = arg_lists(&text, "args: ");
    assert_eq!(lists.len(), 2, "the coordinator's and the nodes'");
    for args in &lists {
        accepted(args);
    }
    assert!(text.contains("completionMode: Indexed") && text.contains("completions: 8"));
    assert!(!lists[1].contains(&"--id".to_string()), "a node's id is its completion index");
    match kube_validate() {
        Some(bin) => {
            let o = Command::new(bin).args(["--strict", "--no-warn"]).arg(&manifest).output().unwrap();
            let report = String::from_utf8_lossy(&o.stdout);
            assert!(o.status.success(), "{report}{}", String::from_utf8_lossy(&o.stderr));
            for kind in ["configmap", "secret", "deployment", "service", "job"] {
                assert!(report.contains(&format!("passed for resource {kind}/")), "{kind}: {report}");
            }
        }
        None => {
            assert!(
                std::env::var_os("DPROX_REQUIRE_KUBE_VALIDATE").is_none(),
                "DPROX_REQUIRE_KUBE_VALIDATE is set but kubernetes-validate was not found"
            );
            eprintln!(
                "skipping the schema check: kubernetes-validate not found (pip install kubernetes-validate)"
            );
        }
    }
}

#[test]
fn compose_and_slurm_commands_are_ones_the_binary_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let compose = dir.path().join("compose");
    deploy("compose", "deploy/cluster/torus8.toml", &compose);
    let text = std::fs::read_to_string(compose.join("compose.yaml")).unwrap();
    let lists = arg_lists(&text, "command: ");
    assert_eq!(lists.len(), 9, "the coordinator and 8 nodes");
    for args in &lists {
        accepted(args);
    }
    let slurm = dir.path().join("slurm");
    deploy("slurm", "deploy/cluster/torus8.toml", &slurm);
    let script = slurm.join("dprox.sbatch");
    let o = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("#SBATCH --ntasks=8"), "{text}");
    // The two command lines, as the shell would split them (with the coordinator's host set).
    let lines: Vec<&str> =
        text.lines().filter(|l| l.starts_with("\"$DPROX\" ") || l.starts_with("srun ")).collect();
    assert_eq!(lines.len(), 2, "{text}");
    for line in lines {
        let words = line.split("\"$DPROX\" ").nth(1).unwrap().split(" > ").next().unwrap();
        let words: Vec<String> = words
            .replace("\"$COORD:", "coordinator-host:")
            .replace("7000\"", "7000")
            .split_whitespace()
            .map(|w| w.trim_matches('\'').to_string())
            .collect();
        accepted(&words);
    }
}
