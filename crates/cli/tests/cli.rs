//! The `dprox` binary, run as a subprocess: `sim` outputs, overrides, `check-config`, failures,
//! `plot`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

const HEADER: &str = "iter,objective,consensus_error,test_accuracy,density,bytes_sent,sim_time_s,wall_time_s,loss,grad_mapping";

/// Ring of 4, least squares on 200 x 10 synthetic samples, 30 iterations, a row every 10.
const TINY: &str = r#"
[run]
algorithm = "dproxsgt"
iterations = 30
seed = 7
eval_every = 10

[topology]
kind = "ring"
nodes = 4

[data]
synthetic = { kind = "least_squares", samples = 200, features = 10 }

[model]
kind = "least_squares"

[optimizer]
lr = 0.05
"#;

fn dprox(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dprox"));
    for a in args {
        cmd.arg(a);
    }
    cmd.output().expect("the dprox binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

/// Stdout and stderr, for assertion messages.
fn show(out: &Output) -> String {
    format!("status {:?}\n--- stdout\n{}--- stderr\n{}", out.status, text(&out.stdout), text(&out.stderr))
}

/// No progress-bar artifacts: carriage returns or ANSI escapes.
#[track_caller]
fn assert_plain(out: &Output) {
    for (name, s) in [("stdout", text(&out.stdout)), ("stderr", text(&out.stderr))] {
        assert!(
            !s.contains('\r') && !s.contains('\u{1b}'),
            "{name} holds terminal control characters:\n{s:?}"
        );
    }
}

/// Writes `toml` as `tiny.toml` into a fresh tempdir.
fn config(toml: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("tiny.toml");
    std::fs::write(&path, toml).unwrap();
    (dir, path)
}

/// metrics.csv as (header, rows of fields).
fn metrics(out: &Path) -> (String, Vec<Vec<String>>) {
    let csv = std::fs::read_to_string(out.join("metrics.csv")).expect("metrics.csv exists");
    let mut lines = csv.lines();
    let header = lines.next().unwrap_or_default().to_string();
    let rows = lines.map(|l| l.split(',').map(String::from).collect()).collect();
    (header, rows)
}

fn column<'a>(rows: &'a [Vec<String>], header: &str, name: &str) -> Vec<&'a str> {
    let k = header.split(',').position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"));
    rows.iter().map(|r| r[k].as_str()).collect()
}

fn summary(out: &Path) -> serde_json::Value {
    let s = std::fs::read_to_string(out.join("summary.json")).expect("summary.json exists");
    serde_json::from_str(&s).expect("summary.json parses")
}

#[test]
fn sim_writes_metrics_summary_and_config() {
    let (dir, cfg) = config(TINY);
    let out = dir.path().join("out");
    let run = dprox(&[&"sim", &cfg, &"--out", &out]);
    assert!(run.status.success(), "{}", show(&run));
    assert_plain(&run);

    let (header, rows) = metrics(&out);
    assert_eq!(header, HEADER);
    assert_eq!(column(&rows, &header, "iter"), ["0", "10", "20", "30"]);
    for r in &rows {
        assert_eq!(r.len(), 10, "row {r:?}");
    }
    let objective: Vec<f64> =
        column(&rows, &header, "objective").iter().map(|v| v.parse().unwrap()).collect();
    assert!(objective.iter().all(|v| v.is_finite()), "{objective:?}");
    assert!(objective[3] < objective[0], "no progress: {objective:?}");

    let s = summary(&out);
    assert_eq!(s["status"], "completed", "{s}");
    assert!(s["error"].is_null(), "{s}");
    assert_eq!(s["iterations"], 30);
    assert_eq!(s["name"], "tiny");
    assert_eq!(s["algorithm"], "dproxsgt");
    assert_eq!(s["nodes"], 4);
    let last_bytes: u64 = column(&rows, &header, "bytes_sent")[3].parse().unwrap();
    assert!(last_bytes > 0);
    assert_eq!(s["bytes_sent"].as_u64(), Some(last_bytes), "{s}");

    // The config as it ran: the same run (named), runnable as is.
    let copied = dprox_config::load(&out.join("config.toml")).unwrap();
    let mut original = dprox_config::parse(TINY, "tiny.toml".as_ref()).unwrap();
    original.run.name = Some("tiny".into());
    assert_eq!(copied, original);

    // The summary on stdout.
    let stdout = text(&run.stdout);
    assert!(stdout.contains("iterations     30"), "{}", show(&run));
    assert!(stdout.contains("metrics.csv"), "{}", show(&run));
}

#[test]
fn sim_is_deterministic() {
    let (dir, cfg) = config(TINY);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for out in [&a, &b] {
        let run = dprox(&[&"sim", &cfg, &"--out", out, &"--quiet"]);
        assert!(run.status.success(), "{}", show(&run));
    }
    let ((ha, ra), (hb, rb)) = (metrics(&a), metrics(&b));
    assert_eq!(ra.len(), 4);
    for col in ["iter", "objective", "consensus_error", "bytes_sent", "sim_time_s", "loss", "grad_mapping"] {
        assert_eq!(column(&ra, &ha, col), column(&rb, &hb, col), "column {col} differs between runs");
    }
}

#[test]
fn sim_algorithm_override() {
    let (dir, cfg) = config(TINY);
    let out = dir.path().join("out");
    let run = dprox(&[&"sim", &cfg, &"--out", &out, &"--algorithm", &"dpsgd"]);
    assert!(run.status.success(), "{}", show(&run));
    assert_plain(&run);
    let s = summary(&out);
    assert_eq!(s["algorithm"], "dpsgd", "{s}");
    assert_eq!(s["name"], "tiny-dpsgd", "{s}");
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(metrics(&out).1.len(), 4);
}

#[test]
fn sim_unknown_algorithm_fails() {
    let (dir, cfg) = config(TINY);
    let out = dir.path().join("out");
    let run = dprox(&[&"sim", &cfg, &"--out", &out, &"--algorithm", &"foo"]);
    assert!(!run.status.success(), "{}", show(&run));
    let stderr = text(&run.stderr);
    assert!(stderr.contains("unknown algorithm `foo`"), "{}", show(&run));
    assert!(stderr.contains("--algorithm"), "{}", show(&run));
    assert!(!out.exists(), "a refused run must not create its output folder");
}

#[test]
fn launch_refuses_bad_flags_before_starting_anything() {
    let (dir, cfg) = config(TINY);
    let out = dir.path().join("out");
    let refused = |args: &[&dyn AsRef<std::ffi::OsStr>], says: &str| {
        let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"launch", &cfg, &"--out", &out];
        all.extend_from_slice(args);
        let run = dprox(&all);
        assert!(!run.status.success(), "{}", show(&run));
        assert!(text(&run.stderr).contains(says), "expected {says:?}: {}", show(&run));
        assert!(!out.exists(), "nothing may start: {}", show(&run));
    };
    refused(
        &[&"--http-addr", &"127.0.0.1:0", &"--http-linger-s=-1"],
        "invalid value '-1' for '--http-linger-s <SECONDS>': must be a number of seconds >= 0, not -1",
    );
    refused(
        &[&"--http-addr", &"127.0.0.1:0", &"--http-linger-s", &"1e20"],
        "1e20 seconds is more than a duration can hold",
    );
    refused(&[&"--http-linger-s", &"3"], "--http-addr");
    refused(
        &[&"--metrics-port", &"65533"],
        "--metrics-port 65533: the 4 nodes need ports 65534 to 65537, past 65535",
    );
}

#[test]
fn check_config_on_the_mnist_example() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples/mnist-ring.toml");
    let run = dprox(&[&"check-config", &path]);
    assert!(run.status.success(), "{}", show(&run));
    assert_plain(&run);
    let stdout = text(&run.stdout);
    let has_line = |p: &dyn Fn(&str) -> bool| stdout.lines().any(p);
    assert!(has_line(&|l| l.ends_with(": valid")), "{stdout}");
    assert!(has_line(&|l| l.starts_with("nodes:") && l.split_whitespace().nth(1) == Some("8")), "{stdout}");
    assert!(stdout.contains("spectral gap"), "{stdout}");
    assert!(
        stdout.contains("data: 784 features, 10 classes, 4000 training samples, 1000 test samples"),
        "{stdout}"
    );
    assert!(stdout.contains("7850 parameters"), "{stdout}");
    let node_lines: Vec<&str> = stdout.lines().filter(|l| l.trim_start().starts_with("node ")).collect();
    assert_eq!(node_lines.len(), 8, "{stdout}");
    for (i, l) in node_lines.iter().enumerate() {
        assert!(l.trim_start().starts_with(&format!("node {i}: ")), "{l}");
        assert!(l.contains("samples; classes "), "{l}");
    }
    // Node 0 holds classes 0 and 9 and nothing else.
    let classes: Vec<&str> = node_lines[0]
        .split("classes ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .take_while(|t| t.contains(':'))
        .map(|t| t.split(':').next().unwrap())
        .collect();
    assert_eq!(classes, ["0", "9"], "{}", node_lines[0]);
}

#[test]
fn check_config_rejects_a_disconnected_graph() {
    let toml = TINY.replace("kind = \"ring\"", "kind = \"edges\"\nedges = [[0, 1], [2, 3]]");
    assert_ne!(toml, TINY);
    let (_dir, cfg) = config(&toml);
    let run = dprox(&[&"check-config", &cfg]);
    assert!(!run.status.success(), "{}", show(&run));
    assert_plain(&run);
    let stderr = text(&run.stderr);
    assert!(stderr.starts_with("error: "), "{}", show(&run));
    assert!(stderr.contains("topology: graph is not connected"), "{}", show(&run));
    assert!(!text(&run.stdout).contains("valid"), "{}", show(&run));
}

#[test]
fn diverging_run_fails_and_keeps_its_rows() {
    let toml = TINY.replace("lr = 0.05", "lr = 1e30");
    assert_ne!(toml, TINY);
    let (dir, cfg) = config(&toml);
    let out = dir.path().join("out");
    let run = dprox(&[&"sim", &cfg, &"--out", &out]);
    assert!(!run.status.success(), "{}", show(&run));
    assert_eq!(run.status.code(), Some(1), "{}", show(&run));
    assert_plain(&run);
    let stderr = text(&run.stderr);
    assert!(stderr.contains("non-finite"), "{}", show(&run));
    assert!(stderr.contains("diverged"), "{}", show(&run));
    assert!(
        stderr.contains(&out.display().to_string()),
        "the error names the output folder:\n{}",
        show(&run)
    );

    let (header, rows) = metrics(&out);
    assert_eq!(header, HEADER);
    assert!(!rows.is_empty(), "metrics.csv lost the rows computed before the failure");
    assert_eq!(rows[0][0], "0");
    assert!(rows.len() < 4, "the run cannot have completed: {rows:?}");

    let s = summary(&out);
    assert_eq!(s["status"], "failed", "{s}");
    let error = s["error"].as_str().unwrap_or_else(|| panic!("no error string: {s}"));
    assert!(error.contains("non-finite"), "{s}");
    assert!(s["iterations"].as_u64().unwrap() < 30, "{s}");
}

#[test]
fn plot_draws_two_sim_runs_into_png_and_svg() {
    let (dir, cfg) = config(TINY);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for (out, algorithm) in [(&a, "dproxsgt"), (&b, "dpsgd")] {
        let run = dprox(&[&"sim", &cfg, &"--out", out, &"--algorithm", &algorithm, &"--quiet"]);
        assert!(run.status.success(), "{}", show(&run));
    }

    let png = dir.path().join("figs/tiny.png");
    let run = dprox(&[&"plot", &a, &b, &"--out", &png, &"--width", &"900", &"--height", &"500"]);
    assert!(run.status.success(), "{}", show(&run));
    assert_plain(&run);
    let bytes = std::fs::read(&png).expect("the figure is written");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    // IHDR, the first chunk: width and height, big-endian.
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |k: usize| u32::from_be_bytes(bytes[k..k + 4].try_into().unwrap());
    assert_eq!((be(16), be(20)), (900, 500));
    let stdout = text(&run.stdout);
    assert!(stdout.contains("tiny-dproxsgt") && stdout.contains("tiny-dpsgd"), "{}", show(&run));
    // Least squares has no test accuracy: an empty panel, said once, not an error.
    assert!(stdout.contains("note: test accuracy:"), "{}", show(&run));

    let svg = dir.path().join("tiny.svg");
    let run = dprox(&[&"plot", &a, &b, &"--out", &svg, &"--title", &"two tiny runs", &"-q"]);
    assert!(run.status.success(), "{}", show(&run));
    assert_eq!(text(&run.stdout), "", "--quiet prints nothing");
    let svg = std::fs::read_to_string(&svg).unwrap();
    for t in ["two tiny runs", "tiny-dproxsgt", "tiny-dpsgd", "consensus error (log)"] {
        assert!(svg.contains(t), "the SVG lacks {t}");
    }

    let run = dprox(&[&"plot", &a, &"--out", &dir.path().join("tiny.jpg")]);
    assert_eq!(run.status.code(), Some(1), "{}", show(&run));
    assert!(text(&run.stderr).contains("use .png or .svg"), "{}", show(&run));
    let missing = dir.path().join("nowhere");
    let run = dprox(&[&"plot", &a, &missing, &"--out", &png]);
    assert_eq!(run.status.code(), Some(1), "{}", show(&run));
    let stderr = text(&run.stderr);
    assert!(stderr.contains(&format!("run folder {} does not exist", missing.display())), "{}", show(&run));
}
