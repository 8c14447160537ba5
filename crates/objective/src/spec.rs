//! What a user asks for (the `[model]` config table) and the factory that builds it on a node's data.

use std::sync::Arc;

use dprox_data::Dataset;
use serde::{Deserialize, Serialize};

use crate::{LeastSquares, Logistic, Mlp, Objective, ObjectiveError, Softmax};

/// The model family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Binary logistic regression (2 classes, labels 0/1).
    Logistic,
    /// Multinomial logistic (softmax) regression.
    Softmax,
    /// Linear least squares on real (or class-index) targets.
    LeastSquares,
    /// Multilayer perceptron with a softmax cross-entropy output.
    Mlp,
}

/// The nonlinearity of an MLP's hidden layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// max(0, v).
    #[default]
    Relu,
    /// tanh(v).
    Tanh,
    /// 1 / (1 + e^-v).
    Sigmoid,
}

impl Activation {
    /// The activation of `v`.
    #[inline]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Activation::Relu => v.max(0.0),
            Activation::Tanh => v.tanh(),
            Activation::Sigmoid => 1.0 / (1.0 + (-v).exp()),
        }
    }

    /// The derivative at the pre-activation, written in terms of the output `a = apply(v)` (all
    /// three allow it, so backpropagation needs to keep only the outputs). relu'(0) is taken as 0.
    #[inline]
    pub fn derivative_from_output(self, a: f32) -> f32 {
        match self {
            Activation::Relu => {
                if a > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::Tanh => 1.0 - a * a,
            Activation::Sigmoid => a * (1.0 - a),
        }
    }
}

/// A model, as configured. `hidden` and `activation` matter only for [`ModelKind::Mlp`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The model family.
    pub kind: ModelKind,
    /// Hidden layer widths of an MLP, input side first (at least one, none zero).
    #[serde(default)]
    pub hidden: Vec<usize>,
    /// Hidden-layer nonlinearity of an MLP.
    #[serde(default)]
    pub activation: Activation,
    /// Whether every layer has a bias (default true); without one, its entries are absent.
    #[serde(default = "yes")]
    pub bias: bool,
}

fn yes() -> bool {
    true
}

impl ModelSpec {
    /// A model of `kind` with a bias, no hidden layers and relu.
    pub fn new(kind: ModelKind) -> Self {
        ModelSpec { kind, hidden: Vec::new(), activation: Activation::Relu, bias: true }
    }

    /// The number of parameters on data of `shape`, or why the spec does not fit the shape.
    pub fn dim(&self, shape: Shape) -> Result<usize, ObjectiveError> {
        let bias = usize::from(self.bias);
        let p = shape.features;
        match self.kind {
            ModelKind::Logistic => match shape.classes {
                Some(2) => Ok(p + bias),
                classes => Err(ObjectiveError::LogisticClasses { classes }),
            },
            ModelKind::LeastSquares => Ok(p + bias),
            ModelKind::Softmax => {
                let c = classes_of("softmax regression", shape)?;
                Ok(c * (p + bias))
            }
            ModelKind::Mlp => {
                let c = classes_of("an mlp", shape)?;
                if self.hidden.is_empty() {
                    return Err(ObjectiveError::NoHiddenLayers);
                }
                if let Some(layer) = self.hidden.iter().position(|&h| h == 0) {
                    return Err(ObjectiveError::ZeroWidth { layer });
                }
                let mut inputs = p;
                let mut dim = 0;
                for &outputs in self.hidden.iter().chain([c].iter()) {
                    dim += outputs * (inputs + bias);
                    inputs = outputs;
                }
                Ok(dim)
            }
        }
    }
}

/// The number of classes a multinomial model needs from `shape`.
fn classes_of(model: &'static str, shape: Shape) -> Result<usize, ObjectiveError> {
    match shape.classes {
        None => Err(ObjectiveError::MissingClasses { model }),
        Some(classes) if classes < 2 => Err(ObjectiveError::TooFewClasses { model, classes }),
        Some(classes) => Ok(classes),
    }
}

/// The GLOBAL shape of the problem, which fixes the model's size on every node. It is not read off
/// a node's data: under label skew a node may see only 2 of 10 classes, but its model still needs
/// 10 outputs so that all nodes share one parameter vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// Number of input features.
    pub features: usize,
    /// Number of classes, `None` for regression.
    pub classes: Option<usize>,
}

impl Shape {
    /// The shape of a whole (unpartitioned) data set.
    pub fn of(data: &Dataset) -> Shape {
        Shape { features: data.num_features(), classes: data.classes }
    }
}

/// Builds the model `spec` on a node's local `data`, sized by the global `shape`.
///
/// Fails when the spec does not fit the shape (see [`ModelSpec::dim`]), when the data's feature
/// count differs from `shape.features`, when the data is empty or malformed, or when a label is
/// not a class index below `shape.classes`.
pub fn build(
    spec: &ModelSpec,
    data: Arc<Dataset>,
    shape: Shape,
) -> Result<Box<dyn Objective>, ObjectiveError> {
    spec.dim(shape)?;
    if data.num_features() != shape.features {
        return Err(ObjectiveError::FeatureMismatch { data: data.num_features(), model: shape.features });
    }
    // dim() has checked that a classifier's shape has classes.
    let classes = shape.classes.unwrap_or(0);
    Ok(match spec.kind {
        ModelKind::Logistic => Box::new(Logistic::new(data, spec.bias)?),
        ModelKind::LeastSquares => Box::new(LeastSquares::new(data, spec.bias)?),
        ModelKind::Softmax => Box::new(Softmax::new(data, classes, spec.bias)?),
        ModelKind::Mlp => Box::new(Mlp::new(data, classes, &spec.hidden, spec.activation, spec.bias)?),
    })
}
