//! From a validated config to everything a run needs: the graph and its weights, each node's data
//! and objective, the test set, the initial point and the per-node core configs. The simulator and
//! the cluster node both start here, so they see the same data and the same x^0.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dprox_core::{Algorithm, BatchSize, NodeConfig};
use dprox_data::{CsvOptions, Dataset, LabelColumn, LibsvmOptions, Partitioner, Scale, SyntheticSpec, Task};
use dprox_objective::{ModelKind, ModelSpec, Objective, Shape};
use dprox_topology::{Graph, MixingMatrix, TopologyFacts};

use crate::custom::ObjectiveFactory;
use crate::error::{ConfigError, invalid};
use crate::schema::*;

/// A run, ready to start: built once from a config, shared by every driver.
#[derive(Debug)]
pub struct Prepared {
    /// The config it was built from.
    pub config: Config,
    /// Run name (config `run.name`, else the file stem).
    pub name: String,
    /// The communication graph.
    pub graph: Graph,
    /// Its mixing matrix W.
    pub mixing: MixingMatrix,
    /// Degrees and spectral gap.
    pub facts: TopologyFacts,
    /// Global data shape (features, classes).
    pub shape: Shape,
    /// The model, as configured (superseded once [`Prepared::with_objective`] gives one).
    pub model: ModelSpec,
    /// Number of parameters d (0 for `kind = "custom"` until [`Prepared::with_objective`]).
    pub dim: usize,
    /// The initial point x^0, identical on every node (empty for `kind = "custom"` until
    /// [`Prepared::with_objective`]).
    pub x0: Vec<f32>,
    /// Node i's local training data.
    pub node_data: Vec<Arc<Dataset>>,
    /// The held-out test set.
    pub test: Option<Arc<Dataset>>,
    /// Warnings from validation (settings without effect).
    pub warnings: Vec<String>,
    /// The embedding program's objective, once [`Prepared::with_objective`] has supplied it; it
    /// then builds every objective instead of `model`.
    pub(crate) custom: Option<ObjectiveFactory>,
}

/// A link's cost in a shaped cluster.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkCost {
    /// One-way latency, seconds.
    pub latency_s: f64,
    /// Bandwidth, bytes per second.
    pub bytes_per_s: f64,
    /// Probability that a chunk is lost and resent.
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

/// Reads and parses a config file (without validating it).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    parse(&text, path)
}

/// Parses config text; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })
}

impl Prepared {
    /// Loads, validates and prepares the config at `path` (data paths relative to its folder).
    pub fn from_file(path: &Path) -> Result<Prepared, ConfigError> {
        let config = load(path)?;
        let name = config.run.name.clone().unwrap_or_else(|| {
            path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
        });
        Prepared::new(config, path.parent().unwrap_or(Path::new(".")), name)
    }

    /// Validates `config` and builds the run; relative data paths are resolved against `base`.
    pub fn new(config: Config, base: &Path, name: String) -> Result<Prepared, ConfigError> {
        let warnings = config.validate()?;
        let (graph, mixing) = topology(&config)?;
        for (k, l) in config.links.iter().enumerate() {
            if !graph.has_edge(l.a, l.b) && config.run.algorithm != Algorithm::Allreduce {
                return Err(invalid(
                    &format!("links[{k}]"),
                    format!("{}-{} is not an edge of the topology", l.a, l.b),
                ));
            }
        }
        let facts = TopologyFacts::compute(&graph, &mixing)?;
        let data = load_data(&config, base)?;
        let model = ModelSpec {
            kind: config.model.kind,
            hidden: config.model.hidden.clone(),
            activation: config.model.activation,
            bias: config.model.bias,
            image: config.model.image,
            channels: config.model.channels.clone(),
            pool: config.model.pool,
        };
        // A custom model has no size until `with_objective` supplies it: dim 0, empty x^0.
        let mut x0 = Vec::new();
        if model.kind != ModelKind::Custom {
            let dim = model.dim(data.shape)?;
            // Build node 0's objective once: it checks that the model fits the data, and gives x^0.
            let first = dprox_objective::build(&model, data.nodes[0].clone(), data.shape)?;
            x0 = vec![0.0f32; dim];
            if config.model.init == InitKind::Seeded {
                first.init(config.run.seed, &mut x0);
            }
        }
        let dim = x0.len();
        Ok(Prepared {
            name,
            graph,
            mixing,
            facts,
            shape: data.shape,
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

    /// Number of nodes.
    pub fn n(&self) -> usize {
        self.config.topology.nodes
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
        }
    }

    /// A fresh objective for node `i` on its local data, on the node's device (see
    /// [`Prepared::device`]); the embedding program's own, when [`Prepared::with_objective`] gave
    /// one. With `kind = "custom"` and none given, the error says to call it.
    pub fn objective(&self, i: usize) -> Result<Box<dyn Objective>, ConfigError> {
        if let Some(custom) = self.custom_objective(&format!("node {i}"), self.node_data[i].clone()) {
            return custom;
        }
        self.build_on_device(&format!("node {i}"), self.device(i), self.node_data[i].clone())
    }

    /// An objective on the test set (for accuracy), if there is one, on the run-wide device
    /// (`run.device`, else "cpu"); the embedding program's own, as for [`Prepared::objective`].
    pub fn test_objective(&self) -> Result<Option<Box<dyn Objective>>, ConfigError> {
        if let Some(custom) =
            self.test.as_ref().and_then(|t| self.custom_objective("the test set", t.clone()))
        {
            return custom.map(Some);
        }
        let device = self.config.run.device.as_deref().unwrap_or("cpu");
        self.test.as_ref().map(|t| self.build_on_device("the test set", device, t.clone())).transpose()
    }

    /// Node `i`'s objective on the CPU whatever its device (the embedding program's own for a
    /// custom model): what the coordinator evaluates phi(xbar) with, so that it needs no GPU and
    /// does not load every node's data onto the nodes' devices.
    pub fn objective_on_cpu(&self, i: usize) -> Result<Box<dyn Objective>, ConfigError> {
        if let Some(custom) = self.custom_objective(&format!("node {i}"), self.node_data[i].clone()) {
            return custom;
        }
        self.build_on_device(&format!("node {i}"), "cpu", self.node_data[i].clone())
    }

    /// The test-set objective on the CPU (see [`Prepared::objective_on_cpu`]).
    pub fn test_objective_on_cpu(&self) -> Result<Option<Box<dyn Objective>>, ConfigError> {
        if let Some(custom) =
            self.test.as_ref().and_then(|t| self.custom_objective("the test set", t.clone()))
        {
            return custom.map(Some);
        }
        self.test.as_ref().map(|t| self.build_on_device("the test set", "cpu", t.clone())).transpose()
    }

    /// Builds the model on `data` on the named device, through dprox-compute. Model errors keep
    /// their `model:` form; device errors name whose objective and which device.
    fn build_on_device(
        &self,
        what: &str,
        device: &str,
        data: Arc<Dataset>,
    ) -> Result<Box<dyn Objective>, ConfigError> {
        use dprox_compute::ComputeError;
        let fail =
            |source| ConfigError::Device { what: what.to_string(), device: device.to_string(), source };
        let dev = dprox_compute::Device::parse(device).map_err(fail)?;
        dprox_compute::build(dev, &self.model, data, self.shape).map_err(|e| match e {
            ComputeError::Objective(e) => ConfigError::Model(e),
            e => fail(e),
        })
    }

    /// Node `i`'s minibatch size.
    pub fn batch_size(&self, i: usize) -> BatchSize {
        let key = self
            .node_section(i)
            .and_then(|s| s.batch_size.as_ref())
            .unwrap_or(&self.config.optimizer.batch_size);
        match key {
            BatchKey::Samples(b) => BatchSize::Samples(*b),
            BatchKey::Named(_) => BatchSize::Full,
        }
    }

    /// Node `i`'s relative compute speed.
    pub fn speed(&self, i: usize) -> f64 {
        self.node_section(i).and_then(|s| s.speed).unwrap_or(1.0)
    }

    /// (latency in seconds, bandwidth in bytes per second) of the link between `i` and `j`.
    pub fn link(&self, i: usize, j: usize) -> (f64, f64) {
        let net = &self.config.network;
        let l = self.config.links.iter().find(|l| (l.a, l.b) == (i, j) || (l.b, l.a) == (i, j));
        let lat = l.and_then(|l| l.latency_ms).unwrap_or(net.latency_ms) / 1e3;
        let bw = l.and_then(|l| l.bandwidth_mbps).unwrap_or(net.bandwidth_mbps) * 1e6 / 8.0;
        (lat, bw)
    }

    /// The shaping of the directed link i -> j in a real cluster (`[cluster] shape = true`):
    /// (latency s, bytes per second, loss probability). `None` when shaping is off.
    pub fn link_shape(&self, i: usize, j: usize) -> Option<LinkCost> {
        if !self.config.cluster.shape {
            return None;
        }
        let (latency_s, bytes_per_s) = self.link(i, j);
        let l = self.config.links.iter().find(|l| (l.a, l.b) == (i, j) || (l.b, l.a) == (i, j));
        Some(LinkCost {
            latency_s,
            bytes_per_s,
            loss: l.and_then(|l| l.loss).unwrap_or(self.config.network.loss),
        })
    }

    /// The address node `i` is configured to listen on, if any.
    pub fn node_address(&self, i: usize) -> Option<&str> {
        self.node_section(i).and_then(|s| s.address.as_deref())
    }

    /// Node `i`'s device: its `[[nodes]]` entry's, else `run.device`, else "cpu".
    pub fn device(&self, i: usize) -> &str {
        self.node_section(i)
            .and_then(|s| s.device.as_deref())
            .or(self.config.run.device.as_deref())
            .unwrap_or("cpu")
    }

    /// The peers node `i` exchanges messages with (its graph neighbours; every other node for
    /// all-reduce), ascending.
    pub fn peers(&self, i: usize) -> Vec<usize> {
        self.node_config(i).row.iter().map(|&(j, _)| j).filter(|&j| j != i).collect()
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

    fn node_section(&self, i: usize) -> Option<&NodeSection> {
        self.config.nodes.iter().find(|s| s.id == i)
    }
}

fn topology(c: &Config) -> Result<(Graph, MixingMatrix), ConfigError> {
    let t = &c.topology;
    let n = t.nodes;
    let graph = match t.kind {
        TopologyKind::Ring => Graph::ring(n)?,
        TopologyKind::Torus => match t.rows {
            Some(r) if r > 0 && n.is_multiple_of(r) => Graph::torus(r, n / r)?,
            Some(r) => return Err(invalid("topology.rows", format!("{r} rows do not divide {n} nodes"))),
            None => Graph::torus_auto(n)?,
        },
        TopologyKind::Complete => Graph::complete(n)?,
        TopologyKind::Star => Graph::star(n)?,
        TopologyKind::Hypercube => Graph::hypercube(n)?,
        TopologyKind::Exponential => Graph::exponential(n)?,
        TopologyKind::ErdosRenyi => Graph::erdos_renyi(n, t.p.unwrap_or(0.0), t.seed.unwrap_or(c.run.seed))?,
        TopologyKind::Edges => {
            let edges: Vec<(usize, usize)> = t.edges.iter().flatten().map(|e| (e[0], e[1])).collect();
            Graph::from_edges(n, &edges)?
        }
    };
    let mixing = match t.weights {
        WeightsKind::Metropolis => MixingMatrix::metropolis(&graph)?,
        WeightsKind::MaxDegree => MixingMatrix::max_degree(&graph)?,
        WeightsKind::Explicit => MixingMatrix::explicit(&graph, t.matrix.as_deref().unwrap_or(&[]))?,
    };
    mixing.validate(&graph)?;
    Ok((graph, mixing))
}

struct LoadedData {
    nodes: Vec<Arc<Dataset>>,
    test: Option<Arc<Dataset>>,
    shape: Shape,
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
}

fn load_data(c: &Config, base: &Path) -> Result<LoadedData, ConfigError> {
    let d = &c.data;
    let n = c.topology.nodes;
    let seed = c.run.seed;
    let task = match c.model.kind {
        ModelKind::LeastSquares => Task::Regression,
        // A custom objective may regress or classify: labels are classes only when counted.
        ModelKind::Custom if d.classes.is_none() => Task::Regression,
        _ => Task::Classification,
    };
    let classes = if task == Task::Regression { None } else { d.classes };
    let read =
        |path: &str, labels: Option<&String>, features: Option<usize>| -> Result<Dataset, ConfigError> {
            let path = resolve(base, path);
            Ok(match d.format {
                DataFormat::Csv => dprox_data::load_csv(
                    &path,
                    &CsvOptions {
                        label_column: match d.label_column {
                            LabelColumnKey::First => LabelColumn::First,
                            LabelColumnKey::Last => LabelColumn::Last,
                        },
                        classes,
                        task,
                    },
                )?,
                DataFormat::Libsvm => dprox_data::load_libsvm(
                    &path,
                    &LibsvmOptions { num_features: features.or(d.features), task, classes },
                )?,
                DataFormat::Idx => {
                    let labels = labels
                        .ok_or_else(|| invalid("data.labels", "format = \"idx\" needs a labels file"))?;
                    dprox_data::load_idx(&path, resolve(base, labels))?
                }
            })
        };
    let shared = match (&d.train, &d.synthetic) {
        (Some(p), _) => Some(read(p, d.labels.as_ref(), None)?),
        (None, Some(s)) => Some(synthetic(s, seed, task)?),
        (None, None) => None,
    };
    let (mut train, mut test) = match (shared, d.test_fraction) {
        (Some(data), Some(f)) if f > 0.0 => {
            let (a, b) = dprox_data::split_test(&data, f, seed)?;
            (Some(a), Some(b))
        }
        (shared, _) => (shared, None),
    };
    if let Some(t) = &d.test {
        let features = train.as_ref().map(|t| t.num_features());
        test = Some(read(t, d.test_labels.as_ref(), features)?);
    }
    let mut own: Vec<Option<Dataset>> = (0..n).map(|_| None).collect();
    for s in &c.nodes {
        if let Some(p) = &s.train {
            own[s.id] = Some(read(p, s.labels.as_ref(), train.as_ref().map(|t| t.num_features()))?);
        }
    }
    // Every file must have as many features as the shared training data (else node 0's file).
    // Checked before scaling, which would otherwise fail first with a message naming no file.
    let reference = match (&train, &own[0]) {
        (Some(t), _) => Some((
            t.num_features(),
            match &d.train {
                Some(p) => format!("the shared data (data.train = {p:?})"),
                None => "the synthetic data".to_string(),
            },
        )),
        (None, Some(o)) => {
            let p = c.nodes.iter().find(|s| s.id == 0).and_then(|s| s.train.as_deref()).unwrap_or_default();
            Some((o.num_features(), format!("node 0's file {p:?}")))
        }
        (None, None) => None,
    };
    if let Some((features, reference)) = &reference {
        for (k, s) in c.nodes.iter().enumerate() {
            if let (Some(p), Some(ds)) = (&s.train, &own[s.id])
                && ds.num_features() != *features
            {
                return Err(invalid(
                    &format!("nodes[{k}].train"),
                    format!(
                        "node {}'s file {p:?} has {} features, {reference} has {features}",
                        s.id,
                        ds.num_features()
                    ),
                ));
            }
        }
        if let (Some(p), Some(t)) = (&d.test, &test)
            && t.num_features() != *features
        {
            return Err(invalid(
                "data.test",
                format!("the test file {p:?} has {} features, {reference} has {features}", t.num_features()),
            ));
        }
    }
    // Scale with statistics of the training data (shared file, else node 0's file) only.
    let scale = match &d.feature_scale {
        None => Scale::None,
        Some(FeatureScale::Factor(f)) => Scale::Factor(*f as f32),
        Some(FeatureScale::Named(s)) => match s.as_str() {
            "standardize" => Scale::Standardize,
            "max_abs" => Scale::MaxAbs,
            _ => Scale::None,
        },
    };
    if scale != Scale::None {
        let fit_on = train.as_ref().or(own.iter().flatten().next()).expect("validated: some training data");
        let scaler = dprox_data::fit_scaler(fit_on, scale)?;
        for ds in train.iter_mut().chain(test.iter_mut()).chain(own.iter_mut().flatten()) {
            scaler.apply(ds)?;
        }
    }
    let parts = match &train {
        Some(t) => {
            let scheme = match d.partition {
                PartitionSection::Iid => Partitioner::Iid,
                PartitionSection::LabelSkew { classes_per_node } => {
                    Partitioner::LabelSkew { classes_per_node }
                }
                PartitionSection::Dirichlet { alpha } => Partitioner::Dirichlet { alpha },
            };
            Some(dprox_data::partition(t, n, scheme, seed)?)
        }
        None => None,
    };
    let mut nodes = Vec::with_capacity(n);
    for (i, o) in own.into_iter().enumerate() {
        let data = match (o, &parts, &train) {
            (Some(ds), _, _) => ds,
            (None, Some(p), Some(t)) => t.subset(&p[i]),
            _ => return Err(invalid(&format!("nodes[{i}]"), "has no training data")),
        };
        nodes.push(data);
    }
    let features = nodes[0].num_features();
    for (i, ds) in nodes.iter().enumerate() {
        if ds.is_empty() {
            return Err(invalid(&format!("nodes[{i}]"), format!("node {i} received no samples")));
        }
    }
    let classes = match task {
        Task::Regression => None,
        Task::Classification => {
            let seen = nodes.iter().chain(test.iter()).filter_map(|d| d.classes).max();
            d.classes.or(seen)
        }
    };
    Ok(LoadedData {
        nodes: nodes.into_iter().map(Arc::new).collect(),
        test: test.map(Arc::new),
        shape: Shape { features, classes },
    })
}

fn synthetic(s: &SyntheticSection, seed: u64, task: Task) -> Result<Dataset, ConfigError> {
    let spec = SyntheticSpec {
        samples: s.samples,
        features: s.features,
        density: s.density,
        support: s.support.unwrap_or((s.features / 10).max(1)),
        noise: s.noise.unwrap_or(0.1),
        seed,
    };
    let data = match s.kind {
        SyntheticKind::SparseLogistic => dprox_data::sparse_logistic(&spec)?.data,
        SyntheticKind::LeastSquares => dprox_data::least_squares(&spec)?.data,
        SyntheticKind::GaussianMixture => {
            dprox_data::gaussian_mixture(
                s.samples,
                s.features,
                s.classes.unwrap_or(2),
                s.separation.unwrap_or(3.0),
                seed,
            )?
            .data
        }
    };
    if task == Task::Regression && data.classes.is_some() {
        // least_squares on class labels is allowed: treat the labels as real targets.
        return Ok(Dataset { classes: None, ..data });
    }
    Ok(data)
}
