//! Objectives that dprox does not ship: `[model] kind = "custom"` and [`Prepared::with_objective`].
//!
//! dprox cannot build such an objective from the config, so the program embedding dprox hands over
//! a factory. From then on everything that builds objectives through [`Prepared::objective`] and
//! [`Prepared::test_objective`] (the simulator, the coordinator's evaluator, a node started with
//! `run.objective(id)`) gets the program's own, on the same data, with the same size and x^0.

use std::fmt;
use std::sync::Arc;

use dprox_data::Dataset;
use dprox_objective::{ModelKind, Objective, ObjectiveError, Shape};

use crate::build::Prepared;
use crate::error::{ConfigError, invalid};
use crate::schema::InitKind;

/// What [`Prepared::with_objective`] takes, as a trait object.
type Factory = dyn Fn(Arc<Dataset>, Shape) -> Box<dyn Objective> + Send + Sync;

/// The embedding program's objective factory. An `Arc` so that a `Prepared` shared between the
/// coordinator and the nodes (an `Arc<Prepared>`) stays `Send + Sync` and builds from one place.
#[derive(Clone)]
pub(crate) struct ObjectiveFactory(Arc<Factory>);

impl fmt::Debug for ObjectiveFactory {
    // A closure has no Debug of its own; `Prepared` derives Debug, so say what is there.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ObjectiveFactory(<the embedding program's objective>)")
    }
}

impl Prepared {
    /// Trains the embedding program's own objective: `factory(data, shape)` builds it on one
    /// node's local data (and on the test set, for evaluation), sized by the run's global `shape`.
    ///
    /// Meant for `[model] kind = "custom"`, whose `Prepared::new` leaves `dim` at 0 and `x0` empty
    /// and whose [`Prepared::objective`] fails until this is called. It is also allowed with a
    /// built-in kind, to wrap or replace that model: the config's `[model]` is then superseded
    /// (`model` keeps describing the config, but no objective is built from it; the data was read
    /// as the built-in kind reads it).
    ///
    /// This builds node 0's objective to set [`Prepared::dim`] and [`Prepared::x0`] (the
    /// objective's seeded [`Objective::init`] with `run.seed` when `[model] init = "seeded"`,
    /// zeros otherwise, as for the built-in models), then builds every other node's and the test
    /// set's to check that all have that size. The factory is called again by every later
    /// [`Prepared::objective`] and [`Prepared::test_objective`], so it must be deterministic (see
    /// the "Determinism you must provide" section of [`Objective`]).
    ///
    /// Devices: dprox cannot move your code onto a GPU, so a custom objective runs wherever its
    /// own code runs. A `device` other than "cpu" or "auto" (in `[run]` or any `[[nodes]]` entry)
    /// is refused here rather than silently ignored; "auto" means the CPU for a custom objective.
    ///
    /// Errors ([`ConfigError::Invalid`]): a device key as above; an objective with no parameters;
    /// a node (or the test set) whose objective has another size than node 0's, naming it.
    ///
    /// ```
    /// use dprox_config::{Prepared, parse};
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
    /// let cfg = parse(r#"
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
    /// assert_eq!(run.dim, 0); // nothing to size yet
    /// assert!(run.objective(0).is_err());
    /// let run = run.with_objective(|data, _shape| Box::new(Mean(data))).unwrap();
    /// assert_eq!((run.dim, run.x0.clone()), (1, vec![0.0]));
    /// assert_eq!(run.objective(2).unwrap().num_samples(), run.node_data[2].len());
    /// ```
    pub fn with_objective(
        mut self,
        factory: impl Fn(Arc<Dataset>, Shape) -> Box<dyn Objective> + Send + Sync + 'static,
    ) -> Result<Prepared, ConfigError> {
        self.check_custom_devices()?;
        let factory = ObjectiveFactory(Arc::new(factory));
        let first = (factory.0)(self.node_data[0].clone(), self.shape);
        let dim = first.dim();
        if dim == 0 {
            return Err(invalid("model", "the custom objective of node 0 has no parameters (dim() is 0)"));
        }
        // Every node must share one parameter vector; a factory that sizes the model by the
        // node's own data (say, the classes it happens to hold) is caught here, not mid-run.
        for i in 1..self.n() {
            let d = (factory.0)(self.node_data[i].clone(), self.shape).dim();
            if d != dim {
                return Err(mismatch(&format!("node {i}"), d, dim));
            }
        }
        if let Some(t) = &self.test {
            let d = (factory.0)(t.clone(), self.shape).dim();
            if d != dim {
                return Err(mismatch("the test set", d, dim));
            }
        }
        let mut x0 = vec![0.0f32; dim];
        if self.config.model.init == InitKind::Seeded {
            first.init(self.config.run.seed, &mut x0);
        }
        self.dim = dim;
        self.x0 = x0;
        self.custom = Some(factory);
        Ok(self)
    }

    /// The objective on `data` (`what` names whose, for errors) when it is not the configured
    /// built-in model's: the factory's, or, for `kind = "custom"` without one, the error saying
    /// to supply it. `None`: build the configured model.
    pub(crate) fn custom_objective(
        &self,
        what: &str,
        data: Arc<Dataset>,
    ) -> Option<Result<Box<dyn Objective>, ConfigError>> {
        match &self.custom {
            Some(factory) => {
                let f = (factory.0)(data, self.shape);
                // Checked again because the factory runs again: a nondeterministic one would
                // otherwise hand the core a gradient of the wrong length.
                Some(if f.dim() == self.dim { Ok(f) } else { Err(mismatch(what, f.dim(), self.dim)) })
            }
            None if self.model.kind == ModelKind::Custom => Some(Err(ObjectiveError::CustomModel.into())),
            None => None,
        }
    }

    /// Refuses GPU device settings, which a custom objective could not honour.
    fn check_custom_devices(&self) -> Result<(), ConfigError> {
        let refuse = |key: &str, whose: &str, device: &str| {
            invalid(
                key,
                format!(
                    "{whose} on device `{device}`: a custom objective runs where its own code runs, \
                     dprox cannot place it on a device; use \"cpu\" or \"auto\", or leave device out"
                ),
            )
        };
        let on_cpu = |d: &str| matches!(d, "cpu" | "auto");
        if let Some(d) = self.config.run.device.as_deref()
            && !on_cpu(d)
        {
            return Err(refuse("run.device", "the run", d));
        }
        for (k, s) in self.config.nodes.iter().enumerate() {
            if let Some(d) = s.device.as_deref()
                && !on_cpu(d)
            {
                return Err(refuse(&format!("nodes[{k}].device"), &format!("node {}", s.id), d));
            }
        }
        Ok(())
    }
}

/// The error for an objective whose size differs from node 0's.
fn mismatch(what: &str, dim: usize, expected: usize) -> ConfigError {
    invalid(
        "model",
        format!(
            "the custom objective of {what} has {dim} parameters, node 0's has {expected}: every node \
             must build the same parameter vector (size it by the `Shape` argument, not by the \
             node's own data)"
        ),
    )
}
