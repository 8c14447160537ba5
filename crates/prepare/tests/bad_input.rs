//! Bad inputs: every one must fail preparation with a message that names the problem.
//!
//! Each test starts from the small valid config [`BASE`] (4-node ring, 20 samples of 3 features in
//! `train.csv`) and changes one thing.

use std::path::{Path, PathBuf};

use dprox_prepare::{PrepareError, Prepared};
use tempfile::TempDir;

/// A valid config: every test below edits one line of it.
const BASE: &str = r#"
[run]
algorithm = "cdproxsgt"
iterations = 10
seed = 3

[topology]
kind = "ring"
nodes = 4

[data]
train = "train.csv"

[model]
kind = "logistic"

[optimizer]
lr = 0.1
gamma_x = 0.5

[compression]
x = { kind = "top_k", ratio = 0.5 }
"#;

/// `rows` lines of 3 features and a label (`label(i)`), after a header.
fn csv(rows: usize, features: usize, label: impl Fn(usize) -> String) -> String {
    let mut s = (0..features).map(|j| format!("f{j}")).collect::<Vec<_>>().join(",") + ",label\n";
    for i in 0..rows {
        for j in 0..features {
            s += &format!("{},", (i * 7 + j * 3) % 11);
        }
        s += &label(i);
        s += "\n";
    }
    s
}

/// A tempdir holding `train.csv` (20 rows, 3 features, labels alternating 0/1).
fn dir() -> TempDir {
    let d = TempDir::new().unwrap();
    std::fs::write(d.path().join("train.csv"), csv(20, 3, |i| (i % 2).to_string())).unwrap();
    d
}

/// `BASE` with `from` replaced by `to` (which must be there, so a test cannot edit nothing).
fn edit(base: &str, from: &str, to: &str) -> String {
    assert!(base.contains(from), "the base config has no `{from}`");
    base.replacen(from, to, 1)
}

/// Writes `toml` as `run.toml` into `dir` and prepares it.
fn prepare(dir: &Path, toml: &str) -> Result<Prepared, PrepareError> {
    let path = dir.join("run.toml");
    std::fs::write(&path, toml).unwrap();
    Prepared::from_file(&path)
}

/// The error message of preparing `toml` in `dir`; panics when preparation succeeds.
fn error(dir: &Path, toml: &str) -> String {
    match prepare(dir, toml) {
        Ok(_) => panic!("preparation succeeded, expected an error, for config:\n{toml}"),
        Err(e) => e.to_string(),
    }
}

/// Asserts that `msg` contains every one of `parts`.
#[track_caller]
fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message does not mention `{p}`:\n{msg}");
    }
}

fn path_in(dir: &TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

#[test]
fn base_config_is_valid() {
    let d = dir();
    let run = prepare(d.path(), BASE).unwrap_or_else(|e| panic!("base config fails: {e}"));
    assert_eq!(run.n(), 4);
    assert_eq!(run.dim(), 4);
    assert_eq!((0..run.n()).map(|i| run.node_data(i).len()).sum::<usize>(), 20);
}

#[test]
fn unknown_top_level_key() {
    let d = dir();
    let msg = error(d.path(), &edit(BASE, "[run]", "iterationz = 10\n\n[run]"));
    assert_mentions(&msg, &["run.toml", "unknown field", "`iterationz`"]);
}

#[test]
fn unknown_key_in_a_section() {
    let d = dir();
    let msg = error(d.path(), &edit(BASE, "lr = 0.1", "lr = 0.1\nmomentum = 0.9"));
    assert_mentions(&msg, &["run.toml", "unknown field", "`momentum`", "`lr`"]);
}

#[test]
fn unknown_key_in_an_inline_table() {
    let d = dir();
    let msg = error(d.path(), &edit(BASE, "ratio = 0.5", "ratio = 0.5, fraction = 0.1"));
    assert_mentions(&msg, &["unknown field", "`fraction`"]);
}

#[test]
fn wrong_type() {
    let d = dir();
    let msg = error(d.path(), &edit(BASE, "iterations = 10", "iterations = \"ten\""));
    assert_mentions(&msg, &["run.toml", "line 4", "iterations", "invalid type", "\"ten\"", "expected u64"]);
}

#[test]
fn missing_required_key() {
    let d = dir();
    let msg = error(d.path(), &edit(BASE, "lr = 0.1\n", ""));
    assert_mentions(&msg, &["run.toml", "[optimizer]", "missing field `lr`"]);
}

#[test]
fn missing_required_section() {
    let d = dir();
    let msg = error(d.path(), &edit(BASE, "[model]\nkind = \"logistic\"\n", ""));
    assert_mentions(&msg, &["missing field `model`"]);
}

#[test]
fn disconnected_edge_list() {
    let d = dir();
    let msg = error(d.path(), &edit(BASE, "kind = \"ring\"", "kind = \"edges\"\nedges = [[0, 1], [2, 3]]"));
    assert_mentions(&msg, &["topology", "not connected", "2 components", "2, 3"]);
}

#[test]
fn explicit_matrix_asymmetric() {
    let d = dir();
    let topo = r#"kind = "complete"
nodes = 3
weights = "explicit"
matrix = [[0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.25, 0.25, 0.5]]"#;
    let msg = error(d.path(), &edit(BASE, "kind = \"ring\"\nnodes = 4", topo));
    assert_mentions(&msg, &["topology", "not symmetric", "W[0][1] = 0.25", "W[1][0] = 0.5"]);
}

#[test]
fn explicit_matrix_rows_do_not_sum_to_one() {
    let d = dir();
    let topo = r#"kind = "complete"
nodes = 3
weights = "explicit"
matrix = [[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.4]]"#;
    let msg = error(d.path(), &edit(BASE, "kind = \"ring\"\nnodes = 4", topo));
    assert_mentions(&msg, &["topology", "row 2", "sums to 0.9", "not 1"]);
}

#[test]
fn hypercube_of_six_nodes() {
    let d = dir();
    let msg = error(d.path(), &edit(BASE, "kind = \"ring\"\nnodes = 4", "kind = \"hypercube\"\nnodes = 6"));
    assert_mentions(&msg, &["topology", "hypercube", "power of two", "n = 6"]);
}

#[test]
fn node_id_outside_the_topology() {
    let d = dir();
    let msg = error(d.path(), &format!("{BASE}\n[[nodes]]\nid = 4\nspeed = 2.0\n"));
    assert_mentions(&msg, &["nodes[0]", "id 4", "4-node topology"]);
}

#[test]
fn duplicate_node_id() {
    let d = dir();
    let msg = error(
        d.path(),
        &format!("{BASE}\n[[nodes]]\nid = 1\nspeed = 2.0\n\n[[nodes]]\nid = 1\nspeed = 0.5\n"),
    );
    assert_mentions(&msg, &["nodes[1]", "node 1 appears twice"]);
}

#[test]
fn node_train_file_with_other_feature_count() {
    let d = dir();
    std::fs::write(path_in(&d, "wide.csv"), csv(5, 4, |i| (i % 2).to_string())).unwrap();
    let msg = error(d.path(), &format!("{BASE}\n[[nodes]]\nid = 2\ntrain = \"wide.csv\"\n"));
    assert_mentions(&msg, &["nodes[0].train", "node 2", "wide.csv", "4 features", "train.csv", "has 3"]);
}

#[test]
fn node_0_train_file_with_other_feature_count() {
    // Node 0 is the odd one out: the message must still blame node 0's file, not the others.
    let d = dir();
    std::fs::write(path_in(&d, "wide.csv"), csv(5, 4, |i| (i % 2).to_string())).unwrap();
    let msg = error(d.path(), &format!("{BASE}\n[[nodes]]\nid = 0\ntrain = \"wide.csv\"\n"));
    assert_mentions(&msg, &["nodes[0].train", "node 0", "wide.csv", "4 features", "train.csv", "has 3"]);
    assert!(!msg.contains("node 1"), "blames another node:\n{msg}");
}

#[test]
fn node_train_file_with_other_feature_count_and_scaling() {
    // Scaling is fitted on the shared data; the feature check must come first, with its message.
    let d = dir();
    std::fs::write(path_in(&d, "wide.csv"), csv(5, 4, |i| (i % 2).to_string())).unwrap();
    let toml = edit(BASE, "train = \"train.csv\"", "train = \"train.csv\"\nfeature_scale = \"max_abs\"");
    let msg = error(d.path(), &format!("{toml}\n[[nodes]]\nid = 3\ntrain = \"wide.csv\"\n"));
    assert_mentions(&msg, &["nodes[0].train", "node 3", "wide.csv", "4 features", "has 3"]);
}

#[test]
fn test_file_with_other_feature_count_and_scaling() {
    let d = dir();
    std::fs::write(path_in(&d, "test.csv"), csv(5, 4, |i| (i % 2).to_string())).unwrap();
    let toml = edit(
        BASE,
        "train = \"train.csv\"",
        "train = \"train.csv\"\ntest = \"test.csv\"\nfeature_scale = \"standardize\"",
    );
    let msg = error(d.path(), &toml);
    assert_mentions(&msg, &["data.test", "test.csv", "4 features", "has 3"]);
}

#[test]
fn label_outside_the_class_range() {
    let d = dir();
    // Line 1 is the header: the label 3 of row 7 is on line 8.
    std::fs::write(
        path_in(&d, "labels.csv"),
        csv(20, 3, |i| if i == 6 { "3".into() } else { (i % 2).to_string() }),
    )
    .unwrap();
    let msg = error(d.path(), &edit(BASE, "train = \"train.csv\"", "train = \"labels.csv\"\nclasses = 2"));
    let path = path_in(&d, "labels.csv").display().to_string();
    assert_mentions(&msg, &["data", &path, "label 3", "line 8", "class range 0..2"]);
}

#[test]
fn label_skew_leaves_a_node_empty() {
    // 18 samples of class 0, 2 of class 1; with one class per node, class 1 goes to nodes 1, 3
    // and 5, and node 5 gets nothing.
    let d = dir();
    std::fs::write(path_in(&d, "skewed.csv"), csv(20, 3, |i| if i < 2 { "1".into() } else { "0".into() }))
        .unwrap();
    let toml = edit(BASE, "nodes = 4", "nodes = 6");
    let toml = edit(
        &toml,
        "train = \"train.csv\"",
        "train = \"skewed.csv\"\npartition = { kind = \"label_skew\", classes_per_node = 1 }",
    );
    let msg = error(d.path(), &toml);
    assert_mentions(&msg, &["data", "node 5 received no samples", "label skew", "classes_per_node = 1"]);
}

#[test]
fn label_skew_more_classes_per_node_than_classes() {
    let d = dir();
    let toml = edit(
        BASE,
        "train = \"train.csv\"",
        "train = \"train.csv\"\npartition = { kind = \"label_skew\", classes_per_node = 3 }",
    );
    let msg = error(d.path(), &toml);
    assert_mentions(&msg, &["data", "classes_per_node = 3", "1..=2", "number of classes"]);
}

#[test]
fn nan_in_the_data_file() {
    let d = dir();
    let mut text = csv(20, 3, |i| (i % 2).to_string());
    text = text.replacen("\n4,", "\nnan,", 1);
    let line = text.lines().position(|l| l.starts_with("nan,")).unwrap() + 1;
    std::fs::write(path_in(&d, "nan.csv"), text).unwrap();
    let msg = error(d.path(), &edit(BASE, "train = \"train.csv\"", "train = \"nan.csv\""));
    let path = path_in(&d, "nan.csv").display().to_string();
    assert_mentions(&msg, &["data", &path, &format!("line {line},"), "column 1", "`nan`", "not finite"]);
}

#[test]
fn missing_data_file() {
    let d = dir();
    let msg = error(d.path(), &edit(BASE, "train = \"train.csv\"", "train = \"absent/train.csv\""));
    let path = path_in(&d, "absent/train.csv").display().to_string();
    assert_mentions(&msg, &["data", &path, "file not found"]);
}

#[test]
fn test_fraction_out_of_range() {
    let d = dir();
    for f in ["1.0", "-0.1", "2.5"] {
        let toml =
            edit(BASE, "train = \"train.csv\"", &format!("train = \"train.csv\"\ntest_fraction = {f}"));
        let msg = error(d.path(), &toml);
        assert_mentions(&msg, &["data.test_fraction", "must be in [0, 1)"]);
    }
}

#[test]
fn zero_learning_rate() {
    let d = dir();
    let msg = error(d.path(), &edit(BASE, "lr = 0.1", "lr = 0"));
    assert_mentions(&msg, &["optimizer.lr", "must be positive", "got 0"]);
}

#[test]
fn gamma_x_above_one() {
    let d = dir();
    let msg = error(d.path(), &edit(BASE, "gamma_x = 0.5", "gamma_x = 1.5"));
    assert_mentions(&msg, &["optimizer.gamma_x", "(0, 1]", "got 1.5"]);
}

#[test]
fn top_k_ratio_zero() {
    let d = dir();
    let msg = error(d.path(), &edit(BASE, "ratio = 0.5", "ratio = 0.0"));
    assert_mentions(&msg, &["compression.x", "ratio", "(0, 1]", "got 0"]);
}

#[test]
fn logistic_model_on_ten_classes() {
    let d = dir();
    let data = "synthetic = { kind = \"gaussian_mixture\", samples = 200, features = 3, classes = 10 }";
    let msg = error(d.path(), &edit(BASE, "train = \"train.csv\"", data));
    assert_mentions(&msg, &["model", "logistic regression needs 2 classes", "has 10", "softmax"]);
}

#[test]
fn link_that_is_not_an_edge() {
    let d = dir();
    let msg = error(d.path(), &format!("{BASE}\n[[links]]\na = 0\nb = 2\nlatency_ms = 5.0\n"));
    assert_mentions(&msg, &["links[0]", "0-2", "not an edge"]);
}

#[test]
fn mnist_ring_example_prepares() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples/mnist-ring.toml");
    let run = Prepared::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(run.name(), "mnist-ring");
    assert_eq!(run.n(), 8);
    assert_eq!(run.dim(), 7850);
    assert_eq!(run.shape().features, 784);
    assert_eq!(run.shape().classes, Some(10));
    let stats = run.node_stats();
    let held: Vec<usize> = (0..10).filter(|&c| stats[0].class_counts[c] > 0).collect();
    assert_eq!(held, [0, 9]);
    assert_eq!(stats.iter().map(|s| s.samples).sum::<usize>(), 4000);
    assert_eq!(run.test_data().as_ref().map(|t| t.len()), Some(1000));
    assert!(run.warnings().is_empty(), "{:?}", run.warnings());
}

/// A tempdir whose `train.csv` holds 20 images of 12 x 12 (144 features), labels 0/1.
fn image_dir() -> TempDir {
    let d = TempDir::new().unwrap();
    std::fs::write(d.path().join("train.csv"), csv(20, 144, |i| (i % 2).to_string())).unwrap();
    d
}

#[test]
fn lenet_image_shape_that_does_not_match_the_features() {
    let d = image_dir();
    let lenet = edit(BASE, "kind = \"logistic\"", "kind = \"lenet\"\nimage = [1, 12, 13]");
    let msg = error(d.path(), &lenet);
    assert_mentions(&msg, &["model", "image = [1, 12, 13]", "156 values per sample", "144 features"]);
    // Without `image`, 144 features are a 12 x 12 square: the same config then prepares.
    let inferred = edit(BASE, "kind = \"logistic\"", "kind = \"lenet\"");
    let run = prepare(d.path(), &inferred).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.model().image, None);
    // 12 -> 6 -> 2 -> 1: the first dense layer sees 16 values.
    assert_eq!(run.dim(), (6 * 25 + 6) + (16 * 150 + 16) + (120 * 16 + 120) + (84 * 120 + 84) + (2 * 84 + 2));
}

#[test]
fn lenet_on_features_that_are_not_an_image() {
    let d = TempDir::new().unwrap();
    std::fs::write(d.path().join("train.csv"), csv(20, 5, |i| (i % 2).to_string())).unwrap();
    let msg = error(d.path(), &edit(BASE, "kind = \"logistic\"", "kind = \"lenet\""));
    assert_mentions(
        &msg,
        &["model", "cannot infer the image shape of 5 features", "image = [channels, height, width]"],
    );
}

#[test]
fn lenet_image_too_small_zero_or_channels_malformed() {
    let d = image_dir();
    let lenet = |extra: &str| edit(BASE, "kind = \"logistic\"", &format!("kind = \"lenet\"\n{extra}"));
    let msg = error(d.path(), &lenet("image = [4, 6, 6]"));
    assert_mentions(&msg, &["model", "at least 12x12", "got 6x6"]);
    let msg = error(d.path(), &lenet("image = [0, 12, 12]"));
    assert_mentions(&msg, &["model.image", "all positive", "[0, 12, 12]"]);
    let msg = error(d.path(), &lenet("channels = [6, 16, 32]"));
    assert_mentions(&msg, &["model.channels", "[c1, c2]", "[6, 16, 32]"]);
    let msg = error(d.path(), &lenet("pool = \"median\""));
    assert_mentions(&msg, &["unknown variant `median`", "max", "average"]);
}

#[test]
fn lenet_settings_on_another_model_warn() {
    let d = dir();
    let run =
        prepare(d.path(), &edit(BASE, "kind = \"logistic\"", "kind = \"logistic\"\npool = \"average\""))
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.warnings().len(), 1, "{:?}", run.warnings());
    assert!(run.warnings()[0].contains("no effect"), "{:?}", run.warnings());
}

#[test]
fn mnist_lenet_example_prepares() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples/mnist-lenet.toml");
    let run = Prepared::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(run.name(), "mnist-lenet");
    assert_eq!(run.n(), 5);
    assert_eq!(run.dim(), 61_706);
    assert_eq!(run.model().image, Some([1, 28, 28]));
    assert!(run.x0().iter().any(|&v| v != 0.0), "seeded init");
    let stats = run.node_stats();
    let held: Vec<usize> = (0..10).filter(|&c| stats[1].class_counts[c] > 0).collect();
    assert_eq!(held, [1, 8]);
    assert!(run.warnings().is_empty(), "{:?}", run.warnings());
}

#[test]
fn cluster_durations_must_be_positive_numbers_of_seconds_a_duration_holds() {
    let d = dir();
    for (key, value) in [
        ("timeout_s", "0"),
        ("heartbeat_s", "-1"),
        ("register_timeout_s", "nan"),
        ("register_timeout_s", "1e300"),
        ("timeout_s", "inf"),
    ] {
        let msg = error(d.path(), &format!("{BASE}\n[cluster]\n{key} = {value}\n"));
        assert_mentions(&msg, &[&format!("cluster.{key}"), "must be a positive number of seconds, got"]);
    }
    let run = prepare(d.path(), &format!("{BASE}\n[cluster]\nregister_timeout_s = 30\n")).unwrap();
    assert_eq!(run.config().cluster.register_timeout_s, 30.0);
    assert_eq!(prepare(d.path(), BASE).unwrap().config().cluster.register_timeout_s, 600.0, "the default");
}

/// Absurd sizes are refused before anything of that size is allocated, naming the key and the
/// size (they used to abort the process with "memory allocation failed").
#[test]
fn absurd_sizes_are_refused_naming_the_key_and_the_size() {
    let d = dir();
    // A billion nodes: their mixing rows and the Lanczos vectors alone would take 45 GiB.
    let msg = error(d.path(), &edit(BASE, "nodes = 4", "nodes = 1000000000"));
    assert_mentions(
        &msg,
        &["topology.nodes:", "1000000000 nodes", "needs about 44.7 GiB", "more than this machine's memory"],
    );
    // An MLP with a hidden layer of 4e9 units.
    let mlp = edit(BASE, "kind = \"logistic\"", "kind = \"mlp\"\nhidden = [4000000000]");
    let msg = error(d.path(), &mlp);
    assert_mentions(&msg, &["model.hidden:", "a model of 24000000002 parameters", "needs about 3.5 TiB"]);
    // 1e11 synthetic samples.
    let synth = edit(
        BASE,
        "train = \"train.csv\"",
        "synthetic = { kind = \"sparse_logistic\", samples = 100000000000, features = 20 }",
    );
    let msg = error(d.path(), &synth);
    assert_mentions(&msg, &["data.synthetic:", "100000000000 samples of 20 features", "needs about 7.3 TiB"]);
    // A LIBSVM file whose feature index is 4e9: the model over it would not fit.
    std::fs::write(
        path_in(&d, "wide.svm"),
        "1 3:0.5 4000000000:1\n0 1:1\n1 2:1\n0 5:2\n1 7:1\n0 9:1\n1 4:1\n0 6:1\n",
    )
    .unwrap();
    let libsvm = edit(BASE, "train = \"train.csv\"", "train = \"wide.svm\"\nformat = \"libsvm\"");
    let msg = error(d.path(), &libsvm);
    assert_mentions(&msg, &["model:", "a model of 4000000001 parameters (4000000000 input features)"]);
}

#[test]
fn networks_start_from_a_seeded_init_and_refuse_zeros() {
    let d = dir();
    let mlp = edit(BASE, "kind = \"logistic\"", "kind = \"mlp\"\nhidden = [4]");
    let run = prepare(d.path(), &mlp).unwrap();
    assert!(run.x0().iter().any(|&v| v != 0.0), "mlp defaults to the seeded init");
    let msg = error(d.path(), &edit(&mlp, "hidden = [4]", "hidden = [4]\ninit = \"zeros\""));
    assert_mentions(&msg, &["model.init:", "\"zeros\" cannot train a network", "use \"seeded\""]);
    // The linear models still start from zeros.
    assert!(prepare(d.path(), BASE).unwrap().x0().iter().all(|&v| v == 0.0));
}

#[test]
fn a_missing_data_file_is_named_by_its_resolved_path() {
    let d = dir();
    std::fs::create_dir(path_in(&d, "cfg")).unwrap();
    let path = path_in(&d, "cfg/run.toml");
    std::fs::write(&path, edit(BASE, "train = \"train.csv\"", "train = \"../absent.csv\"")).unwrap();
    // Loaded through a relative path, as `dprox sim cfg/run.toml` from the folder would.
    let here = std::env::current_dir().unwrap();
    std::env::set_current_dir(d.path()).unwrap();
    let e = Prepared::from_file(std::path::Path::new("cfg/run.toml")).map(|_| ()).unwrap_err().to_string();
    std::env::set_current_dir(here).unwrap();
    let resolved = d.path().canonicalize().unwrap().join("absent.csv");
    assert_mentions(&e, &[&resolved.display().to_string(), "file not found"]);
    assert!(!e.contains(".."), "{e}");
}
