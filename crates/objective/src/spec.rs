//! What a user asks for (the `[model]` config table) and the factory that builds it on a node's data.

use std::sync::Arc;

use dprox_data::Dataset;
use serde::{Deserialize, Serialize};

use crate::{LeNet, LeNetArch, LeastSquares, Logistic, Mlp, Objective, ObjectiveError, Softmax};

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
    /// LeNet-5-like convolutional network on images, with a softmax cross-entropy output.
    #[serde(rename = "lenet")]
    LeNet,
    /// An objective dprox does not ship: the program embedding dprox supplies it (through
    /// `dprox_cli::main_with` or `dprox_prepare::Prepared::with_objective`, see
    /// `examples/custom-objective`). dprox cannot
    /// size or build it from a spec, so [`ModelSpec::dim`] and [`build`] refuse it with
    /// [`ObjectiveError::CustomModel`].
    Custom,
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

/// The 2x2 (stride 2) pooling of a LeNet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    /// The largest of the four values (ties to the first in row-major order).
    #[default]
    Max,
    /// The mean of the four values.
    Average,
}

/// A model, as configured. `hidden` and `activation` matter only for [`ModelKind::Mlp`] and
/// [`ModelKind::LeNet`]; `image`, `channels` and `pool` only for [`ModelKind::LeNet`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The model family.
    pub kind: ModelKind,
    /// Hidden layer widths of an MLP, input side first (at least one, none zero). For a LeNet,
    /// the widths of the dense layers between the convolutions and the output (default
    /// `[120, 84]` when empty).
    #[serde(default)]
    pub hidden: Vec<usize>,
    /// Hidden-layer nonlinearity of an MLP or a LeNet.
    #[serde(default)]
    pub activation: Activation,
    /// Whether every layer has a bias (default true); without one, its entries are absent.
    #[serde(default = "yes")]
    pub bias: bool,
    /// A LeNet's input image as `[channels, height, width]`; each sample's features are the image
    /// in channel-major (CHW) order. Inferred when absent: a square of one channel
    /// (784 features: `[1, 28, 28]`) or of three (3072: `[3, 32, 32]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<[usize; 3]>,
    /// Output channels of a LeNet's two 5x5 convolutions (default `[6, 16]` when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<usize>,
    /// A LeNet's pooling.
    #[serde(default)]
    pub pool: Pool,
}

fn yes() -> bool {
    true
}

impl ModelSpec {
    /// A model of `kind` with a bias, no hidden layers and relu.
    pub fn new(kind: ModelKind) -> Self {
        ModelSpec {
            kind,
            hidden: Vec::new(),
            activation: Activation::Relu,
            bias: true,
            image: None,
            channels: Vec::new(),
            pool: Pool::Max,
        }
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
                Ok(c.saturating_mul(p + bias))
            }
            ModelKind::Mlp => {
                let c = classes_of("an mlp", shape)?;
                if self.hidden.is_empty() {
                    return Err(ObjectiveError::NoHiddenLayers);
                }
                if let Some(layer) = self.hidden.iter().position(|&h| h == 0) {
                    return Err(ObjectiveError::ZeroWidth { model: "mlp", layer });
                }
                let mut inputs = p;
                let mut dim = 0;
                for &outputs in self.hidden.iter().chain([c].iter()) {
                    // Saturating: an absurd width is refused by its size, not by an overflow.
                    dim = outputs.saturating_mul(inputs.saturating_add(bias)).saturating_add(dim);
                    inputs = outputs;
                }
                Ok(dim)
            }
            ModelKind::LeNet => Ok(LeNetArch::from_spec(self, shape)?.dim()),
            // Only the user's code knows its size; say where it has to come from.
            ModelKind::Custom => Err(ObjectiveError::CustomModel),
        }
    }
}

/// The number of classes a multinomial model needs from `shape`.
pub(crate) fn classes_of(model: &'static str, shape: Shape) -> Result<usize, ObjectiveError> {
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
        ModelKind::LeNet => Box::new(LeNet::new(data, LeNetArch::from_spec(spec, shape)?)?),
        // dim() above has already refused it; kept explicit so that the match stays exhaustive.
        ModelKind::Custom => return Err(ObjectiveError::CustomModel),
    })
}

/// Where one named tensor of a model sits in its flat parameter vector (what
/// `model.safetensors` names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorLayout {
    /// Its name, PyTorch style: `weight`, `bias`, `layers.0.weight`, `conv1.weight`, ...
    pub name: String,
    /// Its shape (a weight matrix is outputs x inputs, row-major, as in `torch.nn.Linear`).
    pub shape: Vec<usize>,
    /// Offset of its first value in the parameter vector.
    pub offset: usize,
}

impl TensorLayout {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ModelSpec {
    /// The model's named tensors for the global `shape`, in parameter order (they tile the whole
    /// vector). A custom model is one flat tensor `x` of `dim` values (its layout is its own).
    ///
    /// A LeNet's convolutions are `conv1.weight` (c1 x 25 * image channels) and `conv2.weight`
    /// (c2 x 25 * c1), each row a unit's weights over its 5 x 5 patch in the order the model's
    /// im2col reads it (conv 1: channel, row, column; conv 2: row, column, channel); its dense
    /// layers are `fc1`, `fc2`, ... and the last is the output layer.
    pub fn tensors(&self, shape: Shape, dim: usize) -> Result<Vec<TensorLayout>, ObjectiveError> {
        let mut t = Tiles { v: Vec::new(), offset: 0, bias: self.bias };
        match self.kind {
            ModelKind::Custom => t.push("x".into(), vec![dim]),
            ModelKind::Logistic | ModelKind::LeastSquares => t.layer("", 1, shape.features),
            ModelKind::Softmax => t.layer("", classes_of("softmax regression", shape)?, shape.features),
            ModelKind::Mlp => {
                let c = classes_of("an mlp", shape)?;
                let mut inputs = shape.features;
                for (l, &out) in self.hidden.iter().chain([c].iter()).enumerate() {
                    t.layer(&format!("layers.{l}."), out, inputs);
                    inputs = out;
                }
            }
            ModelKind::LeNet => {
                for (k, l) in LeNetArch::from_spec(self, shape)?.layers().iter().enumerate() {
                    let prefix = if k < 2 { format!("conv{}.", k + 1) } else { format!("fc{}.", k - 1) };
                    t.layer(&prefix, l.outputs, l.inputs);
                }
            }
        }
        Ok(t.v)
    }
}

/// Tensors laid one after another in a parameter vector.
struct Tiles {
    v: Vec<TensorLayout>,
    offset: usize,
    bias: bool,
}

impl Tiles {
    fn push(&mut self, name: String, shape: Vec<usize>) {
        let len: usize = shape.iter().product();
        self.v.push(TensorLayout { name, shape, offset: self.offset });
        self.offset += len;
    }

    /// An affine layer: `PREFIXweight` (outputs x inputs), then `PREFIXbias` (outputs).
    fn layer(&mut self, prefix: &str, outputs: usize, inputs: usize) {
        self.push(format!("{prefix}weight"), vec![outputs, inputs]);
        if self.bias {
            self.push(format!("{prefix}bias"), vec![outputs]);
        }
    }
}
