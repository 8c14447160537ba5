//! From a validated config to a run ready to start: the graph and its mixing weights, each node's
//! data and objective (on its device), the test set, the initial point and the per-node core
//! configs. The simulator, the coordinator and every cluster node start here, so they see the same
//! data and the same x^0.
//!
//! # Layout
//! - this file: [`Prepared`] and what it answers (sizes, per-node settings, core configs).
//! - `topology`: the graph and mixing matrix the config describes.
//! - `data`: reading, splitting, scaling and partitioning the data.
//! - `objectives`: [`Prepared::objective`] (one way to get any objective, on its device or on the
//!   CPU), custom objectives ([`Objectives`], [`Prepared::with_objective`]).
//! - `membership`: epochs (who takes part, the graph and W) and the fault schedule.
//! - `budget`: sizes this machine cannot hold, refused before they are allocated.
//! - `resolved`: the config as a run folder keeps it (data paths made absolute).
//! - [`error`]: [`PrepareError`], naming the key, file or node at fault.
//!
//! ```
//! use dprox_prepare::{Part, Placement, Prepared};
//! let cfg = dprox_config::parse(r#"
//!     [run]
//!     algorithm = "cdproxsgt"
//!     iterations = 100
//!     [topology]
//!     kind = "ring"
//!     nodes = 4
//!     [data]
//!     synthetic = { kind = "least_squares", samples = 400, features = 20 }
//!     [model]
//!     kind = "least_squares"
//!     [optimizer]
//!     lr = 0.05
//! "#, "inline.toml".as_ref()).unwrap();
//! let run = Prepared::new(cfg, ".".as_ref(), "doc".into()).unwrap();
//! assert_eq!(run.n(), 4);
//! assert_eq!(run.dim(), 21); // 20 weights and a bias
//! assert_eq!((0..4).map(|i| run.node_data(i).len()).sum::<usize>(), 400);
//! let f = run.objective(Part::Node(1), Placement::Configured).unwrap();
//! assert_eq!(f.num_samples(), run.node_data(1).len());
//! ```

mod budget;
mod data;
pub mod error;
mod membership;
mod objectives;
mod resolved;
mod topology;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dprox_config::Config;
use dprox_config::schema::{Balance, InitKind, NodeSection};
use dprox_core::{Algorithm, BatchSize, NodeConfig};
use dprox_data::Dataset;
use dprox_objective::{Device, ModelKind, ModelSpec, Shape};
use dprox_topology::{Graph, MixingMatrix, TopologyFacts};

pub use budget::{Budget, machine_memory};
pub use data::resolve;
pub use error::PrepareError;
pub use membership::{Change, ChangeKind, Epoch};
pub use objectives::{Factory, Objectives, Part, Placement};
pub use topology::ScheduleFacts;

use objectives::ObjectiveFactory;

/// A run, ready to start: built once from a config, shared by every driver.
#[derive(Debug)]
pub struct Prepared {
    config: Config,
    name: String,
    /// The folder relative data paths were resolved against.
    base: PathBuf,
    graph: Graph,
    mixing: MixingMatrix,
    facts: TopologyFacts,
    /// A time-varying schedule and the facts of one period.
    schedule: Option<(dprox_topology::Schedule, topology::ScheduleFacts)>,
    shape: Shape,
    /// The model as configured (superseded once a custom objective is given).
    model: ModelSpec,
    /// Number of parameters (0 for `kind = "custom"` until its objective is given).
    dim: usize,
    /// x^0, identical on every node.
    x0: Vec<f32>,
    node_data: Vec<Arc<Dataset>>,
    test: Option<Arc<Dataset>>,
    warnings: Vec<String>,
    /// The embedding program's objective, once given; it then builds every objective.
    custom: Option<ObjectiveFactory>,
}

/// `total` split in proportion to `weights` by largest remainders (ties to the lower index),
/// each part at least 1 (taken from the largest parts when `total` is small).
pub fn split_by_weight(total: usize, weights: &[f64]) -> Vec<usize> {
    let sum: f64 = weights.iter().sum();
    let exact: Vec<f64> = weights.iter().map(|w| total as f64 * w / sum).collect();
    let mut parts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())).then(a.cmp(&b))
    });
    let short = total.saturating_sub(parts.iter().sum());
    for &k in order.iter().take(short) {
        parts[k] += 1;
    }
    while let Some(k) = parts.iter().position(|&p| p == 0) {
        let largest = (0..parts.len()).max_by_key(|&j| (parts[j], std::cmp::Reverse(j))).expect("non-empty");
        if parts[largest] <= 1 {
            parts[k] = 1;
        } else {
            parts[largest] -= 1;
            parts[k] = 1;
        }
    }
    parts
}

/// A link's cost: in the simulator's model, and in a shaped cluster's transport.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkCost {
    /// One-way latency, seconds.
    pub latency_s: f64,
    /// Bandwidth, bytes per second.
    pub bytes_per_s: f64,
    /// Probability that a chunk is lost and resent (shaped clusters only).
    pub loss: f64,
}

/// What one node holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeDataStats {
    /// Local samples.
    pub samples: usize,
    /// Samples per class (empty for regression).
    pub class_counts: Vec<usize>,
}

impl Prepared {
    /// Loads, validates and prepares the config at `path` (data paths relative to its folder;
    /// the run's name is `[run] name`, else the file's stem).
    pub fn from_file(path: &Path) -> Result<Prepared, PrepareError> {
        let config = dprox_config::load(path)?;
        let name = config.run.name.clone().unwrap_or_else(|| stem(path));
        Prepared::new(config, path.parent().unwrap_or(Path::new(".")), name)
    }

    /// Validates `config` and builds the run; relative data paths are resolved against `base`.
    /// Sizes this machine cannot hold are refused before they are allocated.
    pub fn new(config: Config, base: &Path, name: String) -> Result<Prepared, PrepareError> {
        Prepared::new_within(config, base, name, &Budget::of_machine())
    }

    /// As [`Prepared::new`], refusing what exceeds `budget` rather than this machine's memory.
    pub fn new_within(
        config: Config,
        base: &Path,
        name: String,
        budget: &Budget,
    ) -> Result<Prepared, PrepareError> {
        let warnings = config.validate()?;
        let topology::Topology { graph, mixing, facts, schedule } = topology::build(&config, budget)?;
        let raw = data::read(&config, base, budget)?;
        let shape = raw.shape(&config);
        let model = ModelSpec {
            kind: config.model.kind,
            hidden: config.model.hidden.clone(),
            activation: config.model.activation,
            bias: config.model.bias,
            image: config.model.image,
            channels: config.model.channels.clone(),
            pool: config.model.pool,
        };
        // A custom model has no size until its objective is given: dim 0, empty x^0.
        let dim = if model.kind == ModelKind::Custom { 0 } else { model.dim(shape)? };
        budget.check_model(&config, dim, shape.features)?;
        let data = raw.finish(&config)?;
        let mut x0 = vec![0.0f32; dim];
        if model.kind != ModelKind::Custom {
            // Node 0's objective checks that the model fits the data, and gives x^0.
            let first = dprox_objective::build(&model, data.nodes[0].clone(), shape)?;
            if config.model.init() == InitKind::Seeded {
                first.init(config.run.seed, &mut x0);
            }
        }
        Ok(Prepared {
            base: data::resolve(base, "."),
            name,
            graph,
            mixing,
            facts,
            schedule,
            shape,
            model,
            dim,
            x0,
            node_data: data.nodes,
            test: data.test,
            warnings,
            config,
            custom: None,
        })
    }

    /// The config the run was prepared from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The run's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of nodes n.
    pub fn n(&self) -> usize {
        self.config.topology.nodes
    }

    /// Number of parameters d (0 for `kind = "custom"` until its objective is given).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The initial point x^0, the same on every node.
    pub fn x0(&self) -> &[f32] {
        &self.x0
    }

    /// The communication graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Its mixing matrix W.
    pub fn mixing(&self) -> &MixingMatrix {
        &self.mixing
    }

    /// Degrees and spectral gap.
    pub fn facts(&self) -> &TopologyFacts {
        &self.facts
    }

    /// The global data shape (features, classes).
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The model as configured (superseded by a custom objective once one is given).
    pub fn model(&self) -> &ModelSpec {
        &self.model
    }

    /// Node `i`'s local training data.
    pub fn node_data(&self, i: usize) -> &Arc<Dataset> {
        &self.node_data[i]
    }

    /// The held-out test set, if any.
    pub fn test_data(&self) -> Option<&Arc<Dataset>> {
        self.test.as_ref()
    }

    /// Warnings from validation (settings without effect).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The core configuration of node `i`.
    pub fn node_config(&self, i: usize) -> NodeConfig {
        let c = &self.config;
        let n = self.n();
        NodeConfig {
            id: i,
            algorithm: c.run.algorithm,
            row: if c.run.algorithm == Algorithm::Allreduce {
                (0..n).map(|j| (j, 1.0 / n as f64)).collect()
            } else if self.schedule.is_some() {
                // Every possible partner, at weight 0: each round sets the weights.
                self.mixing.row(i).iter().map(|&(j, _)| (j, if j == i { 1.0 } else { 0.0 })).collect()
            } else {
                self.mixing.row(i).to_vec()
            },
            lr: c.optimizer.lr,
            gamma_x: c.optimizer.gamma_x,
            gamma_y: c.optimizer.gamma_y,
            prox: c.regularizer,
            compress_x: c.compression.x.clone(),
            compress_y: c.compression.y.clone(),
            seed: c.run.seed,
            x0: self.x0.clone(),
            rounds: self.schedule.as_ref().map(|(s, _)| s.node(i)),
        }
    }

    /// The time-varying schedule, if the config sets one.
    pub fn mixing_schedule(&self) -> Option<&dprox_topology::Schedule> {
        self.schedule.as_ref().map(|(s, _)| s)
    }

    /// The facts of one period of the schedule, if any.
    pub fn schedule_facts(&self) -> Option<ScheduleFacts> {
        self.schedule.as_ref().map(|(_, f)| *f)
    }

    /// The peers node `i` exchanges messages with (its graph neighbours; every other node for
    /// all-reduce), ascending.
    pub fn peers(&self, i: usize) -> Vec<usize> {
        if self.config.run.algorithm == Algorithm::Allreduce {
            return (0..self.n()).filter(|&j| j != i).collect();
        }
        self.mixing.row(i).iter().map(|&(j, _)| j).filter(|&j| j != i).collect()
    }

    /// Node `i`'s minibatch size.
    pub fn batch_size(&self, i: usize) -> BatchSize {
        match self.config.run.balance {
            Balance::Speed | Balance::Throughput => self.balanced_batch(i),
            Balance::None => self.configured_batch(i),
        }
    }

    /// Node `i`'s batch size as configured (`[[nodes]] batch_size`, else `[optimizer]`).
    fn configured_batch(&self, i: usize) -> BatchSize {
        self.node_section(i).and_then(|s| s.batch_size).unwrap_or(self.config.optimizer.batch_size)
    }

    /// `balance = "speed"` (and `"throughput"` in the simulator): node `i`'s share of
    /// [`Prepared::balanced_batches`] by the nodes' speeds.
    fn balanced_batch(&self, i: usize) -> BatchSize {
        let speeds: Vec<f64> = (0..self.n()).map(|j| self.speed(j)).collect();
        self.balanced_batches(&speeds)[i]
    }

    /// Every node's minibatch with the total of the configured batch sizes split in proportion
    /// to `weights` (one per node, positive and finite) by largest remainders (so the sizes add
    /// up to the total exactly), at least one sample each. Full-batch nodes keep their full
    /// batch and are left out of the split. The coordinator calls this with the throughputs the
    /// nodes measured (`balance = "throughput"` in a cluster).
    pub fn balanced_batches(&self, weights: &[f64]) -> Vec<BatchSize> {
        assert_eq!(weights.len(), self.n(), "one weight per node");
        let sizes: Vec<BatchSize> = (0..self.n()).map(|j| self.configured_batch(j)).collect();
        let counted = |b: &BatchSize| match b {
            BatchSize::Samples(b) => Some(*b),
            BatchSize::Full => None,
        };
        let members: Vec<usize> = (0..self.n()).filter(|&j| counted(&sizes[j]).is_some()).collect();
        let total: usize = members.iter().filter_map(|&j| counted(&sizes[j])).sum();
        let split = split_by_weight(total, &members.iter().map(|&j| weights[j]).collect::<Vec<_>>());
        let mut out = sizes;
        for (&j, &b) in members.iter().zip(&split) {
            out[j] = BatchSize::Samples(b);
        }
        out
    }

    /// Node `i`'s relative compute speed (1 unless its `[[nodes]]` entry says otherwise).
    pub fn speed(&self, i: usize) -> f64 {
        self.node_section(i).and_then(|s| s.speed).unwrap_or(1.0)
    }

    /// Node `i`'s modelled compute time per sample for an objective of `flops_per_sample`:
    /// `flops_per_sample / (gflops x speed)`, the simulator's cost model (and a shaped cluster's
    /// pace).
    pub fn compute_secs_per_sample(&self, i: usize, flops_per_sample: f64) -> f64 {
        flops_per_sample / (self.config.network.gflops * 1e9 * self.speed(i))
    }

    /// The cost of the link between `i` and `j` (`[[links]]`, else `[network]`).
    pub fn link(&self, i: usize, j: usize) -> LinkCost {
        let net = &self.config.network;
        let l = self.config.links.iter().find(|l| (l.a, l.b) == (i, j) || (l.b, l.a) == (i, j));
        LinkCost {
            latency_s: l.and_then(|l| l.latency_ms).unwrap_or(net.latency_ms) / 1e3,
            bytes_per_s: l.and_then(|l| l.bandwidth_mbps).unwrap_or(net.bandwidth_mbps) * 1e6 / 8.0,
            loss: l.and_then(|l| l.loss).unwrap_or(net.loss),
        }
    }

    /// The shaping of the directed link i -> j in a real cluster: its [`LinkCost`] when
    /// `[cluster] shape = true`, else `None`.
    pub fn link_shape(&self, i: usize, j: usize) -> Option<LinkCost> {
        self.config.cluster.shape.then(|| self.link(i, j))
    }

    /// The address node `i` is configured to listen on, if any.
    pub fn node_address(&self, i: usize) -> Option<&str> {
        self.node_section(i).and_then(|s| s.address.as_deref())
    }

    /// Node `i`'s device: its `[[nodes]]` entry's, else `[run] device`, else the CPU.
    pub fn device(&self, i: usize) -> Device {
        self.node_section(i).and_then(|s| s.device).or(self.config.run.device).unwrap_or_default()
    }

    /// Per-node sample and class counts.
    pub fn node_stats(&self) -> Vec<NodeDataStats> {
        self.node_data
            .iter()
            .map(|d| NodeDataStats {
                samples: d.len(),
                class_counts: if d.classes.is_some() { d.class_counts() } else { Vec::new() },
            })
            .collect()
    }

    /// What a run's `summary.json` says about the run before it starts.
    pub fn header(&self) -> dprox_eval::RunHeader {
        dprox_eval::RunHeader {
            name: self.name.clone(),
            algorithm: self.config.run.algorithm,
            nodes: self.n(),
            edges: self.graph.num_edges(),
            spectral_gap: self.facts.spectral_gap,
            dim: self.dim,
            config: serde_json::to_value(&self.config).unwrap_or_default(),
        }
    }

    fn node_section(&self, i: usize) -> Option<&NodeSection> {
        self.config.nodes.iter().find(|s| s.id == i)
    }
}

/// A config file's stem, the default run name.
pub fn stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

impl Prepared {
    /// The model's named tensors in the parameter vector (one flat `x` for a custom objective).
    pub fn tensors(&self) -> Vec<dprox_objective::TensorLayout> {
        let flat =
            || vec![dprox_objective::TensorLayout { name: "x".into(), shape: vec![self.dim], offset: 0 }];
        if self.custom.is_some() || self.model.kind == ModelKind::Custom {
            return flat();
        }
        self.model.tensors(self.shape, self.dim).unwrap_or_else(|_| flat())
    }

    /// Writes `xbar` as `model.safetensors` at `path`, with the run's name, algorithm and model
    /// kind in its metadata.
    pub fn save_model(&self, path: &Path, xbar: &[f32]) -> Result<(), dprox_eval::model::ModelError> {
        let kind = serde_json::to_value(self.config.model.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let metadata = [
            ("run".to_string(), self.name.clone()),
            ("algorithm".to_string(), self.config.run.algorithm.to_string()),
            ("model".to_string(), kind),
            ("format".to_string(), "dprox".to_string()),
        ];
        dprox_eval::model::save(path, &self.tensors(), xbar, metadata.into_iter().collect())
    }

    /// Reads a `model.safetensors` of this run's model into a parameter vector.
    pub fn load_model(&self, path: &Path) -> Result<Vec<f32>, dprox_eval::model::ModelError> {
        dprox_eval::model::load(path, &self.tensors(), self.dim)
    }
}

#[cfg(test)]
mod balance_tests {
    use super::split_by_weight;

    #[test]
    fn a_split_adds_up_and_follows_the_weights() {
        // 16 nodes x 32 samples, four at a quarter of the speed: 12 x 39.4 and 4 x 9.8.
        let mut w = vec![1.0; 16];
        for s in &mut w[..4] {
            *s = 0.25;
        }
        let p = split_by_weight(512, &w);
        assert_eq!(p.iter().sum::<usize>(), 512);
        assert_eq!(&p[..4], &[10, 10, 10, 10]);
        assert!(p[4..].iter().all(|&b| b == 39 || b == 40), "{p:?}");
        assert_eq!(split_by_weight(10, &[1.0, 1.0, 1.0]), vec![4, 3, 3], "ties go to the lower index");
        assert_eq!(split_by_weight(3, &[100.0, 1.0, 1.0]), vec![1, 1, 1], "at least one sample each");
        assert_eq!(split_by_weight(64, &[2.0, 1.0, 1.0]), vec![32, 16, 16]);
    }
}
