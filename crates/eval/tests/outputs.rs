//! The metrics and the files of a run: the gradient mapping at f64 resolution, and a summary that
//! reads back as it was written, whatever its values.

use std::sync::Arc;

use dprox_core::{Algorithm, Prox};
use dprox_data::{Dataset, Features};
use dprox_eval::{Evaluator, MetricsRow, Recorder, RunHeader, RunStatus, Summary};
use dprox_objective::{ModelKind, ModelSpec, Objective, Shape, build};

/// f(x) = mean 0.5 (x - y_j)^2 over the targets `ys` (least squares on a constant feature).
fn mean_objective(ys: &[f32]) -> Box<dyn Objective> {
    let rows = ys.len();
    let data = Dataset {
        features: Features::Dense(ndarray::Array2::from_elem((rows, 1), 1.0f32)),
        targets: ys.to_vec(),
        classes: None,
    };
    let spec = ModelSpec { bias: false, ..ModelSpec::new(ModelKind::LeastSquares) };
    build(&spec, Arc::new(data), Shape { features: 1, classes: None }).unwrap()
}

#[test]
fn the_gradient_mapping_sees_a_step_below_half_an_ulp_of_x() {
    // Both nodes at x = 1. Node 0's targets give gradient 0 there, node 1's (1 and 1 - 2^-23)
    // gradient 2^-24: the mean gradient is 2^-25 (3e-8), and with lr = 0.1 the step 3e-9 is below
    // half an ulp of 1.0 in f32, so an f32 computation of x - prox(x - lr g) reads 0. Without a
    // regulariser the mapping is the mean gradient itself.
    assert_eq!(1.0f32 - 0.1 * 2.0f32.powi(-25), 1.0);
    let mut objectives = vec![mean_objective(&[1.0]), mean_objective(&[1.0, 1.0 - 2.0f32.powi(-23)])];
    let mut ev = Evaluator::new(1, Prox::None, 0.1);
    let e = ev.evaluate(&[&[1.0], &[1.0]], &mut objectives, None);
    // Node 1's gradient at 1: mean(0, 2^-23) = 2^-24; the mean over the nodes 2^-25.
    let expected = 2.0f64.powi(-25);
    assert!((e.grad_mapping - expected).abs() < 1e-6 * expected, "{} vs {expected}", e.grad_mapping);
    // With l1 (mu = 1) the same point is stationary: the soft threshold absorbs the step.
    let mut ev = Evaluator::new(1, Prox::L1 { mu: 1.0 }, 0.1);
    let e = ev.evaluate(&[&[0.0], &[0.0]], &mut objectives, None);
    assert_eq!(e.grad_mapping, 0.0);
}

fn header() -> RunHeader {
    RunHeader {
        name: "r".into(),
        algorithm: Algorithm::Cdproxsgt,
        nodes: 4,
        edges: 4,
        spectral_gap: 0.25,
        dim: 3,
        config: serde_json::json!({ "run": { "iterations": 20 } }),
    }
}

#[test]
fn a_failed_run_keeps_its_rows_and_its_summary_reads_back_with_non_finite_values() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut rec = Recorder::create(Some(&out), header()).unwrap();
    let mut ev = Evaluator::new(1, Prox::Box { lo: 0.0, hi: 0.5 }, 0.1);
    let mut objectives = vec![mean_objective(&[1.0])];
    // x = 2 lies outside the box: r(x) = +inf, an objective JSON writes as null.
    let eval = ev.evaluate(&[&[2.0]], &mut objectives, None);
    assert_eq!(eval.objective, f64::INFINITY);
    let row = MetricsRow { iter: 10, eval, bytes_sent: 640, sim_time_s: 1.5, wall_time_s: 0.25 };
    rec.row(&row).unwrap();
    rec.progress(13, 700, 1.9);
    let s = rec.finish(Err("node 2 diverged".into()), 3.0).unwrap();
    assert_eq!((s.status, s.iterations, s.bytes_sent, s.sim_time_s), (RunStatus::Failed, 13, 700, 1.9));
    let text = std::fs::read_to_string(out.join("summary.json")).unwrap();
    assert!(
        text.contains("\"status\": \"failed\"") && text.contains("\"error\": \"node 2 diverged\""),
        "{text}"
    );
    let back = Summary::read(&out.join("summary.json")).unwrap();
    assert_eq!(back.run, header());
    assert_eq!(
        (back.status, back.iterations, back.error.as_deref()),
        (RunStatus::Failed, 13, Some("node 2 diverged"))
    );
    let last = back.last.unwrap();
    assert!(last.eval.objective.is_nan(), "null reads back as NaN");
    assert_eq!((last.iter, last.bytes_sent), (10, 640));
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2);
    assert!(csv.lines().nth(1).unwrap().starts_with("10,inf,"), "{csv}");
}

#[test]
fn reading_a_missing_or_malformed_summary_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("summary.json");
    let e = Summary::read(&p).unwrap_err().to_string();
    assert!(e.starts_with(&p.display().to_string()), "{e}");
    std::fs::write(&p, "{\"name\": 1}").unwrap();
    let e = Summary::read(&p).unwrap_err().to_string();
    assert!(e.starts_with(&p.display().to_string()) && e.contains("missing field `status`"), "{e}");
}
