//! `model.safetensors` outside dprox: Python's `safetensors` reads it and NumPy evaluates it on
//! the test split (`dprox eval --write-test`), giving the accuracy dprox reports. Needs Python 3
//! with numpy and safetensors (`DPROX_PYTHON`, else `python3`); without them the tests skip with
//! a message, and fail when `DPROX_REQUIRE_PYTHON` is set (as in CI).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The Python to run, if it has numpy and safetensors.
fn python() -> Option<PathBuf> {
    let bin = PathBuf::from(std::env::var_os("DPROX_PYTHON").unwrap_or_else(|| "python3".into()));
    let ok = Command::new(&bin)
        .args(["-c", "import numpy, safetensors.numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(bin);
    }
    let why = format!("{} with numpy and safetensors is not available", bin.display());
    assert!(std::env::var_os("DPROX_REQUIRE_PYTHON").is_none(), "DPROX_REQUIRE_PYTHON is set but {why}");
    eprintln!("skipped: {why} (pip install numpy safetensors)");
    None
}

/// Loads the model and the test split, runs the model's forward pass in NumPy and prints the
/// number of correct predictions and of samples.
const CHECK: &str = r#"
import sys
import numpy as np
from safetensors.numpy import load_file
model, test = load_file(sys.argv[1]), load_file(sys.argv[2])
h, y = test["features"].astype(np.float64), test["labels"].astype(np.int64)
if "weight" in model:                       # softmax regression: one affine layer
    layers = [""]
else:                                       # an MLP: layers.0., layers.1., ... (torch.nn.Linear)
    layers = sorted({k.rsplit(".", 1)[0] + "." for k in model}, key=lambda p: int(p.split(".")[1]))
for k, p in enumerate(layers):
    w, b = model[p + "weight"].astype(np.float64), model[p + "bias"].astype(np.float64)
    assert w.shape[1] == h.shape[1], (p, w.shape, h.shape)
    h = h @ w.T + b
    if k < len(layers) - 1:
        h = np.maximum(h, 0.0)
print(int((h.argmax(axis=1) == y).sum()), len(y))
"#;

/// Simulates `config`, then checks its model in Python against the accuracy dprox reported.
fn check_in_python(config: &Path, args: &[&str]) {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = dprox().arg("sim").arg(config).arg("--out").arg(&out).arg("-q").args(args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = dprox_eval::Summary::read(&out.join("summary.json")).unwrap();
    let reported = summary.last.unwrap().eval.test_accuracy.unwrap();
    let test = dir.path().join("test.safetensors");
    let o = dprox()
        .arg("eval")
        .arg(out.join("model.safetensors"))
        .arg(out.join("config.toml"))
        .arg("--write-test")
        .arg(&test)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(&python)
        .args(["-c", CHECK])
        .arg(out.join("model.safetensors"))
        .arg(&test)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let v: Vec<usize> = text.split_whitespace().map(|t| t.parse().unwrap()).collect();
    let (correct, total) = (v[0], v[1]);
    assert_eq!(
        correct,
        (reported * total as f64).round() as usize,
        "NumPy: {correct}/{total}, dprox: {reported}"
    );
}

#[test]
fn the_main_jobs_model_gives_the_reported_accuracy_in_numpy() {
    check_in_python(&repo("deploy/examples/mnist-ring.toml"), &[]);
}

#[test]
fn an_mlps_model_is_laid_out_as_torch_linear_layers() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo("deploy/examples/mnist-ring.toml")).unwrap();
    let mut t: toml::Table = text.parse().unwrap();
    let train = repo("data/mnist_5k.csv.gz").canonicalize().unwrap().display().to_string();
    t["data"].as_table_mut().unwrap().insert("train".into(), train.into());
    let model = t["model"].as_table_mut().unwrap();
    model.insert("kind".into(), "mlp".into());
    model.remove("init");
    model.insert("hidden".into(), toml::Value::Array(vec![32.into(), 16.into()]));
    let cfg = dir.path().join("mlp.toml");
    std::fs::write(&cfg, toml::to_string(&t).unwrap()).unwrap();
    check_in_python(&cfg, &["--iterations", "100"]);
}
