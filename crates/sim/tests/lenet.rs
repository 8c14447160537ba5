//! A short run of the committed LeNet example (`deploy/examples/mnist-lenet.toml`): the same
//! config, cut to a few iterations so that it stays quick in the debug profile, must train.

use std::path::Path;

#[test]
fn mnist_lenet_example_trains_for_a_few_iterations() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples/mnist-lenet.toml");
    let mut config = dprox_config::load(&path).unwrap();
    config.run.iterations = 20;
    config.run.eval_every = 20;
    let run = dprox_prepare::Prepared::new(config, path.parent().unwrap(), "short".into()).unwrap();
    assert_eq!(run.dim(), 61_706);
    let mut rows = Vec::new();
    dprox_sim::simulate(&run, None, |e| {
        if let dprox_sim::Event::Row(r) = e {
            rows.push((r.eval.objective, r.eval.test_accuracy.unwrap()));
        }
    })
    .unwrap();
    let [(first, acc0), (last, acc)] = rows[..] else { panic!("rows {rows:?}") };
    assert!(last < 0.7 * first, "objective {first} -> {last}");
    assert!(acc > acc0, "test accuracy {acc0} -> {acc}");
}
