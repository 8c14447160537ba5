//! The `device` keys: `[run] device` is every node's default, `[[nodes]] device` overrides it,
//! names are checked when the config is validated, and devices are opened when a node's
//! objective is built (so a machine without a GPU can validate a config of GPU nodes).

use dprox_compute::Device;
use dprox_config::parse;
use dprox_prepare::{Part, Placement, PrepareError, Prepared};

const BASE: &str = r#"
[run]
algorithm = "dproxsgt"
iterations = 5
seed = 2

[topology]
kind = "ring"
nodes = 3

[data]
synthetic = { kind = "gaussian_mixture", samples = 60, features = 4, classes = 3 }
test_fraction = 0.2

[model]
kind = "softmax"

[optimizer]
lr = 0.1
"#;

fn prepare(text: &str) -> Result<Prepared, PrepareError> {
    Prepared::new(parse(text, "device.toml".as_ref())?, ".".as_ref(), "device".into())
}

#[test]
fn default_is_cpu_and_nodes_override_the_run() {
    let run = prepare(BASE).unwrap();
    assert_eq!((0..3).map(|i| run.device(i)).collect::<Vec<_>>(), [Device::Cpu; 3]);

    let text =
        BASE.replace("seed = 2", "seed = 2\ndevice = \"auto\"") + "\n[[nodes]]\nid = 1\ndevice = \"cpu\"\n";
    let run = prepare(&text).unwrap();
    assert_eq!((0..3).map(|i| run.device(i)).collect::<Vec<_>>(), [Device::Auto, Device::Cpu, Device::Auto]);
    // "auto" always builds: CUDA device 0 when it opens, else the CPU.
    for i in 0..3 {
        run.objective(Part::Node(i), Placement::Configured).unwrap();
    }
    assert!(run.test_objective(Placement::Configured).unwrap().is_some());
}

#[test]
fn bad_names_fail_validation_naming_the_key() {
    let text = BASE.replace("seed = 2", "seed = 2\ndevice = \"gpu\"");
    let err = prepare(&text).expect_err("a bad run.device fails");
    // Refused as the file is parsed: the message shows the line and the key.
    let msg = err.to_string();
    assert!(msg.starts_with("device.toml: TOML parse error at line 6"), "{msg}");
    assert!(msg.contains("device = \"gpu\""), "{msg}");
    assert!(
        msg.contains("unknown device `gpu`: expected \"cpu\", \"cuda\", \"cuda:N\" or \"auto\""),
        "{msg}"
    );
    let text = BASE.to_string() + "\n[[nodes]]\nid = 2\ndevice = \"cuda:x\"\n";
    let err = prepare(&text).expect_err("a bad nodes[0].device fails");
    let msg = err.to_string();
    assert!(msg.contains("device = \"cuda:x\""), "{msg}");
    assert!(
        msg.contains("unknown device `cuda:x`: expected \"cpu\", \"cuda\", \"cuda:N\" or \"auto\""),
        "{msg}"
    );
}

/// A CUDA node validates everywhere; building its objective opens the device, and fails with the
/// device's own reason where it cannot (no `cuda` feature, no driver), naming the node.
#[test]
fn cuda_nodes_open_their_device_when_built() {
    let text = BASE.to_string() + "\n[[nodes]]\nid = 1\ndevice = \"cuda:0\"\n";
    let run = prepare(&text).unwrap();
    assert_eq!(run.device(1), Device::Cuda(0));
    run.objective(Part::Node(0), Placement::Configured).unwrap();
    match (dprox_compute::Backend::open(Device::Cuda(0)), run.objective(Part::Node(1), Placement::Configured))
    {
        (Ok(_), Ok(f)) => assert_eq!(f.dim(), run.dim()),
        (Err(reason), Err(err)) => {
            assert!(matches!(err, PrepareError::Device { .. }), "{err:?}");
            assert_eq!(err.to_string(), format!("node 1 on device `cuda:0`: {reason}"));
        }
        (a, b) => panic!("cuda:0 resolves as {a:?} but node 1's objective as {:?}", b.map(|_| ())),
    }
}
