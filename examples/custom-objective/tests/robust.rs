//! What the Huber loss is for: with one training target in ten pushed far off (outliers), the
//! Huber fit predicts clean held-out data better than plain least squares (the built-in
//! `least_squares` model) trained the same way on the same data.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use dprox_data::{Dataset, Features, SyntheticSpec};
use dprox_example_custom_objective::Huber;
use dprox_objective::{Batch, LeastSquares, Objective};
use dprox_prepare::Prepared;
use dprox_sim::Simulation;

fn write_csv(path: &Path, data: &Dataset, rows: std::ops::Range<usize>, outliers: bool) {
    let Features::Dense(m) = &data.features else { unreachable!("dense synthetic data") };
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for j in rows {
        let mut y = data.targets[j];
        // One-sided, large and frequent enough to drag a least-squares fit.
        if outliers && j % 10 == 0 {
            y += 25.0;
        }
        let features: Vec<String> = m.row(j).iter().map(|v| v.to_string()).collect();
        writeln!(f, "{},{y}", features.join(",")).unwrap();
    }
}

const CONFIG: &str = r#"
[run]
algorithm = "dproxsgt"
iterations = 300
eval_every = 300
seed = 5

[topology]
kind = "ring"
nodes = 4

[data]
train = "train.csv"
test = "test.csv"
format = "csv"
label_column = "last"

[model]
kind = "MODEL"

[optimizer]
lr = 0.3
batch_size = "full"
"#;

/// Trains `model` on `dir`'s data; returns the final average model xbar.
fn train(dir: &Path, model: &str) -> (Arc<Prepared>, Vec<f32>) {
    let config = dprox_config::parse(&CONFIG.replace("MODEL", model), "robust.toml".as_ref()).unwrap();
    let mut run = Prepared::new(config, dir, model.into()).unwrap();
    if model == "custom" {
        run = run.with_objective(Huber::factory(1.0).unwrap()).unwrap();
    }
    let mut sim = Simulation::new(&run).unwrap();
    while sim.iteration() < run.config().run.iterations {
        sim.step().unwrap();
    }
    sim.evaluate();
    let xbar = sim.xbar().to_vec();
    drop(sim);
    (Arc::new(run), xbar)
}

#[test]
fn huber_beats_least_squares_on_clean_data_when_training_has_outliers() {
    let spec = SyntheticSpec {
        samples: 1200,
        features: 10,
        support: 10,
        noise: 0.1,
        seed: 11,
        ..Default::default()
    };
    let data = dprox_data::least_squares(&spec).unwrap().data;
    let dir = tempfile::tempdir().unwrap();
    write_csv(&dir.path().join("train.csv"), &data, 0..1000, true);
    write_csv(&dir.path().join("test.csv"), &data, 1000..1200, false);

    let (huber_run, huber) = train(dir.path(), "custom");
    let (squares_run, squares) = train(dir.path(), "least_squares");
    assert_eq!(huber.len(), squares.len(), "both are [weights, bias]");

    // The clean error: 0.5 mean squared residual on the held-out clean samples.
    let test = squares_run.test_data().cloned().unwrap();
    let mut clean = LeastSquares::new(test.clone(), true).unwrap();
    let (huber_error, squares_error) = (clean.loss(&huber, Batch::Full), clean.loss(&squares, Batch::Full));
    // The layouts agree: a Huber loss with a huge delta is least squares.
    let mut wide = Huber::new(test, 1e12).unwrap();
    assert!((wide.loss(&squares, Batch::Full) - squares_error).abs() < 1e-9 * squares_error);
    assert!(huber_run.objective(dprox_prepare::Part::Node(0), dprox_prepare::Placement::Configured).is_ok());

    println!("clean test error: huber {huber_error}, least squares {squares_error}");
    // Least squares absorbs the mean outlier shift (2.5) in its bias: an error of about 2.5^2 / 2.
    // Huber's shift is about delta / 9, with an error near the noise's 0.1^2 / 2.
    assert!(squares_error > 2.0, "least squares {squares_error}");
    assert!(huber_error < 0.1, "huber {huber_error}");
    assert!(huber_error * 20.0 < squares_error, "huber {huber_error} vs least squares {squares_error}");
}
