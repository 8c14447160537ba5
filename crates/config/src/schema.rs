//! The run config file, key by key. Unknown keys are errors (a typo must not silently fall back
//! to a default).

use dprox_compress::CompressorSpec;
use dprox_core::{Algorithm, BatchSize, Prox};
use dprox_objective::{Activation, Device, ModelKind, Pool};
use serde::{Deserialize, Serialize};

/// A whole run: what to train, on which data, over which graph, with which algorithm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[run]`.
    pub run: RunSection,
    /// `[topology]`.
    pub topology: TopologySection,
    /// `[data]`.
    pub data: DataSection,
    /// `[model]`.
    pub model: ModelSection,
    /// `[regularizer]` (none when absent).
    #[serde(default)]
    pub regularizer: Prox,
    /// `[optimizer]`.
    pub optimizer: OptimizerSection,
    /// `[compression]` (identity when absent).
    #[serde(default)]
    pub compression: CompressionSection,
    /// `[network]`: the simulator's model of compute and links.
    #[serde(default)]
    pub network: NetworkSection,
    /// `[[links]]`: per-link overrides of the network defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkSection>,
    /// `[[nodes]]`: per-node overrides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeSection>,
    /// `[cluster]`: settings of a real cluster (`dprox launch`, `dprox-node`).
    #[serde(default)]
    pub cluster: ClusterSection,
    /// `[[faults]]`: the fault schedule, applied alike by the simulator and `dprox launch`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultSection>,
}

/// What a scheduled fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The node leaves gracefully at iteration `at` (keeping its state), optionally rejoining.
    Leave,
    /// The node's process is killed at iteration `at` (its state is lost), optionally restarted.
    Crash,
    /// The node stops for `seconds` at iteration `at`, then goes on.
    Pause,
    /// The link is down from iteration `at` until iteration `until`.
    LinkDown,
}

/// `[[faults]]`: one scheduled fault, e.g. `{ node = 3, at = 100, kind = "leave", rejoin = 200 }`
/// or `{ link = [0, 1], at = 50, until = 80, kind = "link_down" }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSection {
    /// The node (leave, crash, pause).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<usize>,
    /// The link (link_down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<[usize; 2]>,
    /// The iteration it happens at: the node does not start this iteration (leave, crash), or
    /// pauses before it; the link carries no message of it.
    pub at: u64,
    /// What happens.
    pub kind: FaultKind,
    /// The iteration the node takes part again from (leave, crash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejoin: Option<u64>,
    /// The iteration the link is up again from (link_down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
    /// How long the node pauses (pause).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

/// `[cluster]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Apply the `[network]` and `[[links]]` latency, bandwidth and loss in the nodes' transport,
    /// so a local cluster behaves like the simulated network.
    #[serde(default)]
    pub shape: bool,
    /// Seconds a node waits for a neighbour's message before failing with an error naming it.
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// Seconds between heartbeats; the coordinator declares a node dead after 10 missed ones.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_s: f64,
    /// Seconds the coordinator waits for every node to register before it gives up on the run,
    /// naming the nodes that never came.
    #[serde(default = "default_register_timeout")]
    pub register_timeout_s: f64,
    /// The coordinator's host:port, for nodes started by hand (`dprox-node --coordinator` wins).
    #[serde(default)]
    pub coordinator: Option<String>,
    /// The run goes on while at least this many nodes are live; below, it fails with a
    /// checkpoint to resume from.
    #[serde(default = "default_min_nodes")]
    pub min_nodes: usize,
    /// Nodes on one host hand their messages' bytes over in shared memory (the gRPC chunk
    /// carries a slot of it); off, every byte travels through gRPC.
    #[serde(default = "default_shared_memory")]
    pub shared_memory: bool,
}

fn default_shared_memory() -> bool {
    true
}

fn default_min_nodes() -> usize {
    2
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            shape: false,
            timeout_s: default_timeout(),
            heartbeat_s: default_heartbeat(),
            register_timeout_s: default_register_timeout(),
            coordinator: None,
            min_nodes: default_min_nodes(),
            shared_memory: default_shared_memory(),
        }
    }
}

fn default_timeout() -> f64 {
    30.0
}
fn default_heartbeat() -> f64 {
    1.0
}
fn default_register_timeout() -> f64 {
    600.0
}

/// `[run]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// The algorithm every node runs.
    pub algorithm: Algorithm,
    /// Number of iterations.
    pub iterations: u64,
    /// Seed of every random choice (data split, partition, minibatches, compressors, init).
    #[serde(default)]
    pub seed: u64,
    /// Evaluate the metrics every this many iterations (and at 0 and the last).
    #[serde(default = "default_eval_every")]
    pub eval_every: u64,
    /// A name for the run (defaults to the config file's stem).
    #[serde(default)]
    pub name: Option<String>,
    /// Compute device of every node: "cpu" (default), "cuda" (= "cuda:0"), "cuda:N" or "auto"
    /// (CUDA device 0 when one opens, else the CPU). A `[[nodes]]` entry's `device` overrides it.
    #[serde(default)]
    pub device: Option<Device>,
    /// Write a checkpoint of every node (and the coordinator's record) every this many
    /// iterations; 0 or absent: none. `--resume` continues from the last complete one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub checkpoint_every: u64,
    /// How minibatches are sized across nodes of different speeds.
    #[serde(default, skip_serializing_if = "is_none_balance")]
    pub balance: Balance,
}

/// Work balance (docs/algorithms.md, "Balancing work by speed").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Every node uses its configured batch size.
    #[default]
    None,
    /// Each node's minibatch is sized in proportion to its configured `[[nodes]] speed`,
    /// keeping the total per iteration (the sum of the configured sizes): the same sizes in the
    /// simulator and in a cluster, so their runs stay equal.
    Speed,
    /// As `speed`, with each node's gradient throughput as the weight: in a cluster, the one it
    /// measured and reported at registration; in the simulator, its speed (the simulator's
    /// compute model).
    Throughput,
}

fn is_none_balance(b: &Balance) -> bool {
    *b == Balance::None
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn default_eval_every() -> u64 {
    10
}

/// Graph families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopologyKind {
    /// Cycle.
    Ring,
    /// 2-D wraparound grid.
    Torus,
    /// Every pair connected.
    Complete,
    /// Node 0 is the hub.
    Star,
    /// i ~ i xor 2^k.
    Hypercube,
    /// i ~ i + 2^k mod n.
    Exponential,
    /// Random G(n, p).
    ErdosRenyi,
    /// An explicit edge list.
    Edges,
}

/// Mixing-weight rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightsKind {
    /// Metropolis-Hastings.
    #[default]
    Metropolis,
    /// 1 / (1 + max degree).
    MaxDegree,
    /// The `matrix` key, n x n.
    Explicit,
}

/// `[topology]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySection {
    /// Graph family.
    pub kind: TopologyKind,
    /// Number of nodes n.
    pub nodes: usize,
    /// Mixing weights.
    #[serde(default)]
    pub weights: WeightsKind,
    /// Torus rows (cols = nodes / rows); the most square factorisation when absent.
    #[serde(default)]
    pub rows: Option<usize>,
    /// Erdos-Renyi edge probability.
    #[serde(default)]
    pub p: Option<f64>,
    /// Erdos-Renyi seed (defaults to the run seed).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Edge list for `kind = "edges"`.
    #[serde(default)]
    pub edges: Option<Vec<[usize; 2]>>,
    /// Explicit mixing matrix for `weights = "explicit"`.
    #[serde(default)]
    pub matrix: Option<Vec<Vec<f64>>>,
    /// How the mixing changes between iterations.
    #[serde(default)]
    pub schedule: ScheduleKind,
}

/// Time-varying topologies (docs/algorithms.md, "Time-varying schedules").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// The graph's mixing matrix at every iteration.
    #[default]
    Static,
    /// Node i sends to i + 2^k and receives from i - 2^k, k cycling through 0..ceil(log2 n)
    /// (with `kind = "exponential"`).
    OnePeerExponential,
    /// A random matching of the graph's edges per iteration, drawn from the seed
    /// (`topology.seed`, else the run's).
    RandomMatching,
}

/// File formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    /// Comma-separated values, optionally gzipped.
    #[default]
    Csv,
    /// LIBSVM / svmlight.
    Libsvm,
    /// MNIST IDX (train = images, labels = labels file).
    Idx,
}

/// Where the label sits in a CSV row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelColumnKey {
    /// First field.
    First,
    /// Last field.
    #[default]
    Last,
}

/// `feature_scale`: a number, or the name of a rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FeatureScale {
    /// Multiply every feature by this.
    Factor(f64),
    /// `"none"`: leave the features as they are.
    None,
    /// `"standardize"`: zero mean and unit variance per feature (fitted on the training data).
    Standardize,
    /// `"max_abs"`: divide each feature by its largest magnitude (fitted on the training data).
    MaxAbs,
}

impl Serialize for FeatureScale {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FeatureScale::Factor(f) => s.serialize_f64(*f),
            FeatureScale::None => s.serialize_str("none"),
            FeatureScale::Standardize => s.serialize_str("standardize"),
            FeatureScale::MaxAbs => s.serialize_str("max_abs"),
        }
    }
}

impl<'de> Deserialize<'de> for FeatureScale {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<FeatureScale, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = FeatureScale;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a positive number, \"none\", \"standardize\" or \"max_abs\"")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<FeatureScale, E> {
                if v.is_finite() && v > 0.0 {
                    Ok(FeatureScale::Factor(v))
                } else {
                    Err(E::custom(format!("a scale factor must be positive, got {v}")))
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<FeatureScale, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<FeatureScale, E> {
                self.visit_f64(v as f64)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FeatureScale, E> {
                match v {
                    "none" => Ok(FeatureScale::None),
                    "standardize" => Ok(FeatureScale::Standardize),
                    "max_abs" => Ok(FeatureScale::MaxAbs),
                    _ => Err(E::custom(format!(
                        "unknown rule `{v}`: use a number, \"none\", \"standardize\" or \"max_abs\""
                    ))),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `partition = { kind = ... }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PartitionSection {
    /// Shuffled, equal shares.
    Iid,
    /// Each node holds `classes_per_node` classes (node i of 5 holds {i, 9 - i} of 10).
    LabelSkew {
        /// Classes per node.
        classes_per_node: usize,
    },
    /// Per-class Dirichlet(alpha) shares.
    Dirichlet {
        /// Concentration.
        alpha: f64,
    },
}

/// `synthetic = { kind = ... }`: generated data instead of a file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSection {
    /// `sparse_logistic`, `least_squares` or `gaussian_mixture`.
    pub kind: SyntheticKind,
    /// Number of samples.
    pub samples: usize,
    /// Number of features.
    pub features: usize,
    /// Fraction of nonzero features per sample (linear generators).
    #[serde(default = "one")]
    pub density: f64,
    /// Nonzeros of the planted solution (linear generators).
    #[serde(default)]
    pub support: Option<usize>,
    /// Target noise (least squares).
    #[serde(default)]
    pub noise: Option<f64>,
    /// Classes (gaussian_mixture).
    #[serde(default)]
    pub classes: Option<usize>,
    /// Distance scale of the class centres (gaussian_mixture).
    #[serde(default)]
    pub separation: Option<f64>,
}

fn one() -> f64 {
    1.0
}

/// Synthetic generators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyntheticKind {
    /// Binary labels from a planted sparse logistic model.
    SparseLogistic,
    /// Real targets from a planted sparse linear model plus noise.
    LeastSquares,
    /// Gaussian class clusters.
    GaussianMixture,
}

/// `[data]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Training file shared by the nodes (relative paths are relative to the config file).
    #[serde(default)]
    pub train: Option<String>,
    /// IDX labels file (format = "idx").
    #[serde(default)]
    pub labels: Option<String>,
    /// Generated data instead of a file.
    #[serde(default)]
    pub synthetic: Option<SyntheticSection>,
    /// File format.
    #[serde(default)]
    pub format: DataFormat,
    /// CSV label position.
    #[serde(default)]
    pub label_column: LabelColumnKey,
    /// Number of classes (inferred from the labels when absent).
    #[serde(default)]
    pub classes: Option<usize>,
    /// LIBSVM feature count (inferred when absent).
    #[serde(default)]
    pub features: Option<usize>,
    /// Feature scaling, fitted on the training set.
    #[serde(default)]
    pub feature_scale: Option<FeatureScale>,
    /// Held-out fraction of the training data used as the test set.
    #[serde(default)]
    pub test_fraction: Option<f64>,
    /// A separate test file (same format; `test_labels` for IDX).
    #[serde(default)]
    pub test: Option<String>,
    /// IDX test labels file.
    #[serde(default)]
    pub test_labels: Option<String>,
    /// How the training data is dealt out to the nodes.
    #[serde(default = "default_partition")]
    pub partition: PartitionSection,
}

fn default_partition() -> PartitionSection {
    PartitionSection::Iid
}

/// Initial point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitKind {
    /// x^0 = 0.
    Zeros,
    /// The model's seeded random init (same on every node).
    Seeded,
}

/// `[model]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Model family.
    pub kind: ModelKind,
    /// The registered objective of the program embedding dprox that `kind = "custom"` trains
    /// (see `dprox_cli::main_with`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Initial point: `zeros` by default for the linear models, `seeded` for `mlp` and `lenet`
    /// (see [`ModelSection::init`]).
    #[serde(default, rename = "init", skip_serializing_if = "Option::is_none")]
    pub init_key: Option<InitKind>,
    /// Hidden widths: of an MLP, or of a LeNet's dense layers (default `[120, 84]`).
    #[serde(default)]
    pub hidden: Vec<usize>,
    /// MLP or LeNet activation.
    #[serde(default)]
    pub activation: Activation,
    /// Bias terms.
    #[serde(default = "yes")]
    pub bias: bool,
    /// LeNet input image `[channels, height, width]` (inferred from square images when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<[usize; 3]>,
    /// LeNet convolution channels `[c1, c2]` (default `[6, 16]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<usize>,
    /// LeNet pooling, `"max"` or `"average"`.
    #[serde(default)]
    pub pool: Pool,
}

fn yes() -> bool {
    true
}

impl ModelSection {
    /// The initial point: the `init` key, else the kind's default. Networks start from their
    /// seeded init, because from zeros every hidden unit computes the same function and receives
    /// the same gradient, so a ReLU network learns nothing but its last bias; the linear models
    /// start from zeros.
    pub fn init(&self) -> InitKind {
        self.init_key.unwrap_or(match self.kind {
            ModelKind::Mlp | ModelKind::LeNet => InitKind::Seeded,
            _ => InitKind::Zeros,
        })
    }
}

/// `[optimizer]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSection {
    /// Step size eta.
    pub lr: f32,
    /// Minibatch size, or "full".
    #[serde(default = "default_batch")]
    pub batch_size: BatchSize,
    /// Consensus step for x (cdproxsgt, choco).
    #[serde(default = "default_gamma")]
    pub gamma_x: f32,
    /// Consensus step for y (cdproxsgt).
    #[serde(default = "default_gamma")]
    pub gamma_y: f32,
}

fn default_batch() -> BatchSize {
    BatchSize::Full
}

fn default_gamma() -> f32 {
    1.0
}

/// `[compression]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionSection {
    /// Q_x.
    #[serde(default)]
    pub x: CompressorSpec,
    /// Q_y.
    #[serde(default)]
    pub y: CompressorSpec,
    /// zstd level for sparse index blocks (plain encoding when absent).
    #[serde(default)]
    pub zstd: Option<i32>,
}

/// `[network]`: defaults of the simulator's cost model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// One-way latency of a link, milliseconds.
    #[serde(default = "default_latency")]
    pub latency_ms: f64,
    /// Bandwidth of a link, megabits per second.
    #[serde(default = "default_bandwidth")]
    pub bandwidth_mbps: f64,
    /// Compute throughput of a speed-1 node, GFLOP/s.
    #[serde(default = "default_gflops")]
    pub gflops: f64,
    /// Probability that a chunk is lost and resent (cluster shaping only).
    #[serde(default)]
    pub loss: f64,
}

impl Default for NetworkSection {
    fn default() -> Self {
        NetworkSection {
            latency_ms: default_latency(),
            bandwidth_mbps: default_bandwidth(),
            gflops: default_gflops(),
            loss: 0.0,
        }
    }
}

fn default_latency() -> f64 {
    0.5
}
fn default_bandwidth() -> f64 {
    1000.0
}
fn default_gflops() -> f64 {
    20.0
}

/// `[[links]]`: one undirected link's properties.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSection {
    /// One end.
    pub a: usize,
    /// The other end.
    pub b: usize,
    /// Latency, ms (network default when absent).
    #[serde(default)]
    pub latency_ms: Option<f64>,
    /// Bandwidth, Mbit/s (network default when absent).
    #[serde(default)]
    pub bandwidth_mbps: Option<f64>,
    /// Loss probability (network default when absent; cluster shaping only).
    #[serde(default)]
    pub loss: Option<f64>,
}

/// `[[nodes]]`: one node's overrides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Node id.
    pub id: usize,
    /// A training file that replaces this node's partition.
    #[serde(default)]
    pub train: Option<String>,
    /// IDX labels for `train`.
    #[serde(default)]
    pub labels: Option<String>,
    /// Relative compute speed (simulator), default 1.
    #[serde(default)]
    pub speed: Option<f64>,
    /// Minibatch size override for this node.
    #[serde(default)]
    pub batch_size: Option<BatchSize>,
    /// host:port the node's gossip server listens on (a free loopback port when absent).
    #[serde(default)]
    pub address: Option<String>,
    /// Compute device of this node: "cpu", "cuda", "cuda:N" or "auto" (default: `run.device`,
    /// else "cpu").
    #[serde(default)]
    pub device: Option<Device>,
}
