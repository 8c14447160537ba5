//! `[model] kind = "custom"` and `Prepared::with_objective`: the error without a factory, the size
//! and x^0 taken from the factory's objective, the checks that every node's has the same size,
//! and the device keys a custom objective refuses.

use std::sync::Arc;

use dprox_config::parse;
use dprox_data::Dataset;
use dprox_objective::{Batch, Objective, Shape};
use dprox_prepare::{Objectives, Part, Placement, PrepareError, Prepared};

const BASE: &str = r#"
[run]
algorithm = "dproxsgt"
iterations = 5
seed = 4

[topology]
kind = "ring"
nodes = 3

[data]
synthetic = { kind = "least_squares", samples = 100, features = 5 }
test_fraction = 0.2

[model]
kind = "custom"

[optimizer]
lr = 0.1
"#;

fn prepare(text: &str) -> Result<Prepared, PrepareError> {
    Prepared::new(parse(text, "custom.toml".as_ref())?, ".".as_ref(), "custom".into())
}

/// f(x) = 0.5 ||x||^2 on `dim` parameters, whatever the data; only the size matters here.
struct Probe {
    dim: usize,
    samples: usize,
}

impl Objective for Probe {
    fn dim(&self) -> usize {
        self.dim
    }
    fn num_samples(&self) -> usize {
        self.samples
    }
    fn loss_grad(&mut self, x: &[f32], _batch: Batch<'_>, grad: &mut [f32]) -> f64 {
        grad.copy_from_slice(x);
        x.iter().map(|&v| 0.5 * f64::from(v) * f64::from(v)).sum()
    }
}

fn probe(dim: usize) -> impl Fn(Part, Arc<Dataset>, Shape) -> Box<dyn Objective> + Send + Sync + 'static {
    move |_part, data, _shape| Box::new(Probe { dim, samples: data.len() })
}

fn message<T>(r: Result<T, PrepareError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn custom_without_a_factory_fails_at_objective_with_the_pointer() {
    let run = prepare(BASE).unwrap();
    assert_eq!(run.dim(), 0);
    assert!(run.x0().is_empty());
    assert!(run.warnings().is_empty(), "{:?}", run.warnings());
    let expected = "model: model kind `custom`: the objective is supplied by the program embedding dprox \
                    \u{2014} register it with `dprox_cli::main_with` and select it with `[model] name`, or call \
                    `Prepared::with_objective` (see examples/custom-objective)";
    assert_eq!(message(run.objective(Part::Node(0), Placement::Configured)), expected);
    assert_eq!(message(run.objective(Part::Node(2), Placement::Configured)), expected);
    assert_eq!(message(run.test_objective(Placement::Configured)), expected);
    // On a GPU device too: the missing objective is the problem, not the device.
    let gpu = prepare(&BASE.replace("seed = 4", "seed = 4\ndevice = \"cuda:3\"")).unwrap();
    assert_eq!(message(gpu.objective(Part::Node(1), Placement::Configured)), expected);
}

#[test]
fn the_factory_sets_dim_and_x0_and_builds_every_objective() {
    let run = prepare(BASE).unwrap().with_objective(probe(7)).unwrap();
    assert_eq!(run.dim(), 7);
    assert_eq!(run.x0(), vec![0.0; 7]);
    for i in 0..3 {
        let f = run.objective(Part::Node(i), Placement::Configured).unwrap();
        assert_eq!((f.dim(), f.num_samples()), (7, run.node_data(i).len()));
    }
    let test = run.test_objective(Placement::Configured).unwrap().unwrap();
    assert_eq!(test.num_samples(), run.test_data().as_ref().unwrap().len());
    assert_eq!(run.node_config(1).x0, run.x0());
    // The factory does not show in Debug, but Prepared still has one, and can be shared.
    assert!(format!("{run:?}").contains("ObjectiveFactory"));
    fn shared<T: Send + Sync + 'static>(_: &T) {}
    shared(&Arc::new(run));
}

#[test]
fn seeded_init_comes_from_the_custom_objective() {
    let text = BASE.replace("kind = \"custom\"", "kind = \"custom\"\ninit = \"seeded\"");
    let run = prepare(&text).unwrap().with_objective(probe(6)).unwrap();
    let mut expected = vec![0.0f32; 6];
    Probe { dim: 6, samples: 1 }.init(4, &mut expected);
    assert_eq!(run.x0(), expected);
    assert!(run.x0().iter().any(|&v| v != 0.0));
}

#[test]
fn factory_with_mismatched_dims_names_the_node() {
    // A common mistake: sizing the model by the node's own data rather than by the shape.
    let text = BASE.replace("samples = 100", "samples = 101").replace("test_fraction = 0.2", "");
    let run = prepare(&text).unwrap();
    let sizes: Vec<usize> = (0..run.n()).map(|i| run.node_data(i).len()).collect();
    let node = (1..3).find(|&i| sizes[i] != sizes[0]).expect("101 samples do not split evenly over 3 nodes");
    let e = message(
        run.with_objective(|_part, data, _shape| Box::new(Probe { dim: data.len(), samples: data.len() })),
    );
    assert_eq!(
        e,
        format!(
            "model: the custom objective of node {node} has {} parameters, node 0's has {}: every node \
             must build the same parameter vector (size it by the `Shape` argument, not by the node's \
             own data)",
            sizes[node], sizes[0]
        )
    );
}

#[test]
fn a_test_set_objective_of_another_size_is_refused() {
    let run = prepare(BASE).unwrap();
    // 100 samples: 20 held out, 80 over 3 nodes.
    let test = run.test_data().as_ref().unwrap().len();
    assert!((0..run.n()).all(|i| run.node_data(i).len() != test));
    let e = message(run.with_objective(move |_part, data, _shape| {
        let dim = if data.len() == test { 4 } else { 3 };
        Box::new(Probe { dim, samples: data.len() })
    }));
    assert!(
        e.starts_with("model: the custom objective of the test set has 4 parameters, node 0's has 3"),
        "{e}"
    );
}

#[test]
fn an_objective_without_parameters_is_refused() {
    let e = message(prepare(BASE).unwrap().with_objective(probe(0)));
    assert_eq!(e, "model: the custom objective of node 0 has no parameters (dim() is 0)");
}

#[test]
fn gpu_devices_are_refused_naming_the_key_cpu_and_auto_are_not() {
    let run_gpu = BASE.replace("seed = 4", "seed = 4\ndevice = \"cuda\"");
    let e = message(prepare(&run_gpu).unwrap().with_objective(probe(2)));
    assert!(
        e.starts_with("run.device: the run on device `cuda:0`: a custom objective runs where its own code"),
        "{e}"
    );
    let node_gpu = format!("{BASE}\n[[nodes]]\nid = 0\n\n[[nodes]]\nid = 2\ndevice = \"cuda:1\"\n");
    let e = message(prepare(&node_gpu).unwrap().with_objective(probe(2)));
    assert!(e.starts_with("nodes[1].device: node 2 on device `cuda:1`"), "{e}");
    let fine = format!(
        "{}\n[[nodes]]\nid = 1\ndevice = \"cpu\"\n",
        BASE.replace("seed = 4", "seed = 4\ndevice = \"auto\"")
    );
    let run = prepare(&fine).unwrap().with_objective(probe(2)).unwrap();
    assert_eq!(run.objective(Part::Node(0), Placement::Configured).unwrap().dim(), 2);
}

#[test]
fn a_built_in_model_can_be_superseded() {
    let text = BASE.replace("kind = \"custom\"", "kind = \"least_squares\"");
    let run = prepare(&text).unwrap();
    assert_eq!(run.dim(), 6);
    let run = run.with_objective(probe(9)).unwrap();
    assert_eq!((run.dim(), run.x0().len()), (9, 9));
    assert_eq!(run.objective(Part::Node(0), Placement::Configured).unwrap().dim(), 9);
}

#[test]
fn custom_data_is_regression_unless_classes_are_counted() {
    let text = BASE.replace(
        "synthetic = { kind = \"least_squares\", samples = 100, features = 5 }",
        "synthetic = { kind = \"gaussian_mixture\", samples = 90, features = 5, classes = 3 }",
    );
    let run = prepare(&text).unwrap();
    assert_eq!(run.shape(), Shape { features: 5, classes: None });
    let run = prepare(&text.replace("test_fraction = 0.2", "test_fraction = 0.2\nclasses = 3")).unwrap();
    assert_eq!(run.shape(), Shape { features: 5, classes: Some(3) });
}

#[test]
fn built_in_model_keys_warn_on_a_custom_model() {
    let run = prepare(&BASE.replace("kind = \"custom\"", "kind = \"custom\"\nhidden = [8]")).unwrap();
    assert_eq!(run.warnings().len(), 1);
    assert!(run.warnings()[0].contains("no effect on kind = \"custom\""), "{:?}", run.warnings());
}

/// What `dprox_cli::main_with` does: `[model] name` picks a registered factory, which is told whose
/// objective it builds.
#[test]
fn a_registered_objective_is_selected_by_name_and_told_whose_it_is() {
    use std::sync::Mutex;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let objectives = Objectives::new().with("probe", probe(3)).with("logged", move |part, data, _shape| {
        log.lock().unwrap().push(part);
        Box::new(Probe { dim: 4, samples: data.len() })
    });
    assert_eq!(objectives.names().collect::<Vec<_>>(), ["logged", "probe"]);
    let named =
        |name: &str| BASE.replace("kind = \"custom\"", &format!("kind = \"custom\"\nname = \"{name}\""));
    let run = prepare(&named("logged")).unwrap().with_registered(&objectives).unwrap();
    assert_eq!(run.dim(), 4);
    // Node 0 sizes the model, the others and the test set are checked against it.
    assert_eq!(*seen.lock().unwrap(), [Part::Node(0), Part::Node(1), Part::Node(2), Part::Test]);
    run.objective(Part::Node(2), Placement::Cpu).unwrap();
    assert_eq!(seen.lock().unwrap().last(), Some(&Part::Node(2)));
    assert_eq!(prepare(&named("probe")).unwrap().with_registered(&objectives).unwrap().dim(), 3);

    let e = message(prepare(&named("huber")).unwrap().with_registered(&objectives));
    assert_eq!(
        e,
        "model.name: no custom objective `huber` is registered in this program (registered: logged, probe)"
    );
    let e = message(prepare(BASE).unwrap().with_registered(&objectives));
    assert_eq!(
        e,
        "model.name: kind = \"custom\" needs the name of a registered objective (registered: logged, probe)"
    );
    let e = message(prepare(&named("huber")).unwrap().with_registered(&Objectives::new()));
    assert!(e.contains("(registered: none: the stock dprox command has no custom objectives"), "{e}");
    // A built-in kind ignores the registry, and may not name a custom objective.
    let builtin = BASE.replace("kind = \"custom\"", "kind = \"least_squares\"");
    assert_eq!(prepare(&builtin).unwrap().with_registered(&objectives).unwrap().dim(), 6);
    let e = message(prepare(&builtin.replace(
        "[model]\nkind = \"least_squares\"",
        "[model]\nkind = \"least_squares\"\nname = \"probe\"",
    )));
    assert_eq!(e, "model.name: names a custom objective (`probe`): it only applies to kind = \"custom\"");
}
