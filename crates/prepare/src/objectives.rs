//! Building objectives: a node's f_i (or the test set's) on its device, from the configured model
//! or from the embedding program's own objective.
//!
//! dprox cannot build an objective it does not ship (`[model] kind = "custom"`), so the program
//! embedding dprox hands over a factory: by name, through an [`Objectives`] registry that
//! `[model] name` selects (what `dprox_cli::main_with` does), or directly with
//! [`Prepared::with_objective`]. From then on every objective built through
//! [`Prepared::objective`] (the simulator's, the coordinator's evaluator, a node's) is the
//! program's own, on the same data, with the same size and x^0.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use dprox_config::schema::InitKind;
use dprox_data::Dataset;
use dprox_objective::{Device, ModelKind, Objective, ObjectiveError, Shape};

use crate::Prepared;
use crate::error::{PrepareError, invalid};

/// Whose objective: a node's (on its local data) or the test set's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Node i's f_i on its local training data.
    Node(usize),
    /// The model on the held-out test set (for accuracy).
    Test,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Node(i) => write!(f, "node {i}"),
            Part::Test => f.write_str("the test set"),
        }
    }
}

/// Where to build an objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// On the device the config gives it (`[[nodes]] device`, else `[run] device`, else the CPU).
    Configured,
    /// On the CPU whatever the config says: what the coordinator evaluates phi(xbar) with, so
    /// that it needs no GPU and does not load every node's data onto the nodes' devices.
    Cpu,
}

/// The signature of an objective factory: it builds `part`'s objective on `data`, sized by the
/// run's global `shape`. It is called once per node (and for the test set) in every process that
/// needs that objective, so it must be deterministic.
pub type Factory = dyn Fn(Part, Arc<Dataset>, Shape) -> Box<dyn Objective> + Send + Sync;

/// A factory, shared: a `Prepared` shared between the coordinator and the nodes (an
/// `Arc<Prepared>`) stays `Send + Sync` and builds from one place.
#[derive(Clone)]
pub(crate) struct ObjectiveFactory(Arc<Factory>);

impl fmt::Debug for ObjectiveFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ObjectiveFactory(<the embedding program's objective>)")
    }
}

/// The named objectives of a program embedding dprox; `[model] kind = "custom", name = "..."`
/// selects one.
///
/// ```
/// use dprox_prepare::{Objectives, Part};
/// # use dprox_objective::{Batch, Objective};
/// # struct Zero;
/// # impl Objective for Zero {
/// #     fn dim(&self) -> usize { 1 }
/// #     fn num_samples(&self) -> usize { 1 }
/// #     fn loss_grad(&mut self, _: &[f32], _: Batch<'_>, g: &mut [f32]) -> f64 { g[0] = 0.0; 0.0 }
/// # }
/// let objectives = Objectives::new().with("zero", |_part: Part, _data, _shape| Box::new(Zero));
/// assert_eq!(objectives.names().collect::<Vec<_>>(), ["zero"]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Objectives {
    by_name: BTreeMap<String, ObjectiveFactory>,
}

impl Objectives {
    /// No objectives (the stock `dprox` command).
    pub fn new() -> Objectives {
        Objectives::default()
    }

    /// Registers `factory` under `name` (a later registration of the same name replaces it).
    pub fn with(
        mut self,
        name: &str,
        factory: impl Fn(Part, Arc<Dataset>, Shape) -> Box<dyn Objective> + Send + Sync + 'static,
    ) -> Objectives {
        self.by_name.insert(name.to_string(), ObjectiveFactory(Arc::new(factory)));
        self
    }

    /// The registered names, ascending.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    fn listed(&self) -> String {
        if self.by_name.is_empty() {
            "none: the stock dprox command has no custom objectives; build your own program with \
             dprox_cli::main_with (see examples/custom-objective)"
                .to_string()
        } else {
            self.names().collect::<Vec<_>>().join(", ")
        }
    }
}

impl Prepared {
    /// Part `part`'s objective (node i's f_i on its local data, or the test set's), placed as
    /// `placement` says. The embedding program's own objective when one was given
    /// ([`Prepared::with_objective`], [`Prepared::with_registered`]); for `kind = "custom"`
    /// without one, the error says how to give it.
    pub fn objective(&self, part: Part, placement: Placement) -> Result<Box<dyn Objective>, PrepareError> {
        let data = match part {
            Part::Node(i) => self.node_data[i].clone(),
            Part::Test => self.test.clone().ok_or_else(|| invalid("data", "the run has no test set"))?,
        };
        match &self.custom {
            Some(factory) => {
                let f = (factory.0)(part, data, self.shape);
                // Checked again because the factory runs again: a nondeterministic one would
                // otherwise hand the core a gradient of the wrong length.
                if f.dim() == self.dim { Ok(f) } else { Err(mismatch(part, f.dim(), self.dim)) }
            }
            None if self.model.kind == ModelKind::Custom => Err(ObjectiveError::CustomModel.into()),
            None => {
                let device = match (placement, part) {
                    (Placement::Cpu, _) => Device::Cpu,
                    (Placement::Configured, Part::Node(i)) => self.device(i),
                    (Placement::Configured, Part::Test) => self.config.run.device.unwrap_or_default(),
                };
                self.build_on(part, device, data)
            }
        }
    }

    /// The test set's objective, if the run has a test set (see [`Prepared::objective`]).
    pub fn test_objective(&self, placement: Placement) -> Result<Option<Box<dyn Objective>>, PrepareError> {
        self.test.as_ref().map(|_| self.objective(Part::Test, placement)).transpose()
    }

    /// Builds the configured model on `data` on `device`, through dprox-compute. Model errors keep
    /// their `model:` form; device errors name whose objective and which device.
    fn build_on(
        &self,
        part: Part,
        device: Device,
        data: Arc<Dataset>,
    ) -> Result<Box<dyn Objective>, PrepareError> {
        use dprox_compute::ComputeError;
        dprox_compute::build(device, &self.model, data, self.shape).map_err(|e| match e {
            ComputeError::Objective(e) => PrepareError::Model(e),
            source => PrepareError::Device { what: part.to_string(), device, source },
        })
    }

    /// For `[model] kind = "custom"`: trains the objective of `objectives` that `[model] name`
    /// selects (see [`Prepared::with_objective`]). Any other kind is returned as it is.
    ///
    /// Errors: `kind = "custom"` without a name, or with a name that is not registered (the
    /// message lists the registered ones).
    pub fn with_registered(self, objectives: &Objectives) -> Result<Prepared, PrepareError> {
        if self.model.kind != ModelKind::Custom {
            return Ok(self);
        }
        let Some(name) = self.config.model.name.clone() else {
            return Err(invalid(
                "model.name",
                format!(
                    "kind = \"custom\" needs the name of a registered objective (registered: {})",
                    objectives.listed()
                ),
            ));
        };
        let Some(factory) = objectives.by_name.get(&name) else {
            return Err(invalid(
                "model.name",
                format!(
                    "no custom objective `{name}` is registered in this program (registered: {})",
                    objectives.listed()
                ),
            ));
        };
        let factory = factory.clone();
        self.with_factory(factory)
    }

    /// Trains the embedding program's own objective: `factory(part, data, shape)` builds it on one
    /// node's local data (and on the test set, for evaluation), sized by the run's global `shape`.
    ///
    /// Meant for `[model] kind = "custom"`, whose `Prepared::new` leaves `dim` at 0 and `x0` empty
    /// and whose [`Prepared::objective`] fails until this is called. It is also allowed with a
    /// built-in kind, to wrap or replace that model: the config's `[model]` is then superseded
    /// (the data was read as the built-in kind reads it).
    ///
    /// This builds node 0's objective to set [`Prepared::dim`] and [`Prepared::x0`] (the
    /// objective's seeded [`Objective::init`] with `run.seed` when `[model] init = "seeded"`,
    /// zeros otherwise, as for the built-in models), then builds every other node's and the test
    /// set's to check that all have that size. The factory is called again by every later
    /// [`Prepared::objective`], so it must be deterministic (see the "Determinism you must
    /// provide" section of [`Objective`]).
    ///
    /// Devices: dprox cannot move your code onto a GPU, so a custom objective runs wherever its
    /// own code runs. A `device` other than "cpu" or "auto" (in `[run]` or any `[[nodes]]` entry)
    /// is refused here rather than silently ignored; "auto" means the CPU for a custom objective.
    ///
    /// Errors: a device key as above; an objective with no parameters; a node (or the test set)
    /// whose objective has another size than node 0's, naming it.
    ///
    /// ```
    /// use dprox_prepare::{Part, Placement, Prepared};
    /// use dprox_objective::{Batch, Objective};
    ///
    /// // f(x) = mean_j 0.5 (x - y_j)^2: the mean of a node's targets.
    /// struct Mean(std::sync::Arc<dprox_data::Dataset>);
    /// impl Objective for Mean {
    ///     fn dim(&self) -> usize {
    ///         1
    ///     }
    ///     fn num_samples(&self) -> usize {
    ///         self.0.len()
    ///     }
    ///     fn loss_grad(&mut self, x: &[f32], batch: Batch<'_>, grad: &mut [f32]) -> f64 {
    ///         let all: Vec<usize> = (0..self.0.len()).collect();
    ///         let idx = if let Batch::Indices(ix) = batch { ix } else { &all[..] };
    ///         let (mut loss, mut g) = (0.0, 0.0);
    ///         for &j in idx {
    ///             let r = f64::from(x[0]) - f64::from(self.0.targets[j]);
    ///             loss += 0.5 * r * r;
    ///             g += r;
    ///         }
    ///         grad[0] = (g / idx.len() as f64) as f32;
    ///         loss / idx.len() as f64
    ///     }
    /// }
    ///
    /// let cfg = dprox_config::parse(r#"
    ///     [run]
    ///     algorithm = "dproxsgt"
    ///     iterations = 10
    ///     [topology]
    ///     kind = "ring"
    ///     nodes = 3
    ///     [data]
    ///     synthetic = { kind = "least_squares", samples = 90, features = 4 }
    ///     [model]
    ///     kind = "custom"
    ///     [optimizer]
    ///     lr = 0.5
    /// "#, "mean.toml".as_ref()).unwrap();
    /// let run = Prepared::new(cfg, ".".as_ref(), "mean".into()).unwrap();
    /// assert_eq!(run.dim(), 0); // nothing to size yet
    /// assert!(run.objective(Part::Node(0), Placement::Configured).is_err());
    /// let run = run.with_objective(|_part, data, _shape| Box::new(Mean(data))).unwrap();
    /// assert_eq!((run.dim(), run.x0()), (1, &[0.0f32][..]));
    /// let f = run.objective(Part::Node(2), Placement::Configured).unwrap();
    /// assert_eq!(f.num_samples(), run.node_data(2).len());
    /// ```
    pub fn with_objective(
        self,
        factory: impl Fn(Part, Arc<Dataset>, Shape) -> Box<dyn Objective> + Send + Sync + 'static,
    ) -> Result<Prepared, PrepareError> {
        self.with_factory(ObjectiveFactory(Arc::new(factory)))
    }

    fn with_factory(mut self, factory: ObjectiveFactory) -> Result<Prepared, PrepareError> {
        self.check_custom_devices()?;
        let first = (factory.0)(Part::Node(0), self.node_data[0].clone(), self.shape);
        let dim = first.dim();
        if dim == 0 {
            return Err(invalid("model", "the custom objective of node 0 has no parameters (dim() is 0)"));
        }
        // Every node must share one parameter vector; a factory that sizes the model by the
        // node's own data (say, the classes it happens to hold) is caught here, not mid-run.
        for i in 1..self.n() {
            let d = (factory.0)(Part::Node(i), self.node_data[i].clone(), self.shape).dim();
            if d != dim {
                return Err(mismatch(Part::Node(i), d, dim));
            }
        }
        if let Some(t) = &self.test {
            let d = (factory.0)(Part::Test, t.clone(), self.shape).dim();
            if d != dim {
                return Err(mismatch(Part::Test, d, dim));
            }
        }
        let mut x0 = vec![0.0f32; dim];
        if self.config.model.init() == InitKind::Seeded {
            first.init(self.config.run.seed, &mut x0);
        }
        self.dim = dim;
        self.x0 = x0;
        self.custom = Some(factory);
        Ok(self)
    }

    /// Refuses GPU device settings, which a custom objective could not honour.
    fn check_custom_devices(&self) -> Result<(), PrepareError> {
        let refuse = |key: &str, whose: &str, device: Device| {
            invalid(
                key,
                format!(
                    "{whose} on device `{device}`: a custom objective runs where its own code runs, \
                     dprox cannot place it on a device; use \"cpu\" or \"auto\", or leave device out"
                ),
            )
        };
        let on_cpu = |d: Device| matches!(d, Device::Cpu | Device::Auto);
        if let Some(d) = self.config.run.device
            && !on_cpu(d)
        {
            return Err(refuse("run.device", "the run", d));
        }
        for (k, s) in self.config.nodes.iter().enumerate() {
            if let Some(d) = s.device
                && !on_cpu(d)
            {
                return Err(refuse(&format!("nodes[{k}].device"), &format!("node {}", s.id), d));
            }
        }
        Ok(())
    }
}

/// The error for an objective whose size differs from node 0's.
fn mismatch(part: Part, dim: usize, expected: usize) -> PrepareError {
    invalid(
        "model",
        format!(
            "the custom objective of {part} has {dim} parameters, node 0's has {expected}: every node \
             must build the same parameter vector (size it by the `Shape` argument, not by the \
             node's own data)"
        ),
    )
}
