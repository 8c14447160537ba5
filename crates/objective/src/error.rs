//! The one error type of this crate: everything that can be wrong with a model spec or its data.

/// Why a model could not be built on a data set.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ObjectiveError {
    /// The data set is inconsistent: no samples, targets that do not match the rows, or
    /// malformed sparse arrays (see [`dprox_data::Dataset::validate`]).
    #[error(transparent)]
    Data(#[from] dprox_data::InvalidDataset),

    /// The data's feature count differs from the model's input size.
    #[error("the data has {data} features, the model expects {model}")]
    FeatureMismatch {
        /// Columns of the data.
        data: usize,
        /// Features in the model's [`Shape`](crate::Shape).
        model: usize,
    },

    /// Logistic regression was asked for on data that is not binary.
    #[error("logistic regression needs 2 classes, the data has {}; use {}",
        classes.map_or_else(|| "none (regression targets)".to_string(), |c| c.to_string()),
        if classes.is_some() { "softmax" } else { "least_squares" })]
    LogisticClasses {
        /// The number of classes of the shape, `None` for regression data.
        classes: Option<usize>,
    },

    /// A classifier was asked for on regression data (no number of classes).
    #[error("{model} needs class labels, but the shape has no classes (regression targets)")]
    MissingClasses {
        /// The model, in words.
        model: &'static str,
    },

    /// A multinomial classifier needs at least two classes.
    #[error("{model} needs at least 2 classes, the shape has {classes}")]
    TooFewClasses {
        /// The model, in words.
        model: &'static str,
        /// The number of classes given.
        classes: usize,
    },

    /// An MLP without hidden layers (that is softmax regression; ask for it by name).
    #[error("an mlp needs at least one hidden layer (hidden = []); use softmax for none")]
    NoHiddenLayers,

    /// A hidden layer of width zero (an MLP's, or a LeNet's dense layers).
    #[error("{model} hidden layer {layer} has width 0")]
    ZeroWidth {
        /// The model, `mlp` or `lenet`.
        model: &'static str,
        /// Index of the offending layer in `hidden`.
        layer: usize,
    },

    /// A LeNet's image shape does not match the number of features.
    #[error(
        "image = [{}, {}, {}] has {pixels} values per sample, but the data has {features} features",
        image[0], image[1], image[2]
    )]
    ImageSize {
        /// The configured `[channels, height, width]`.
        image: [usize; 3],
        /// channels x height x width.
        pixels: usize,
        /// Features of the data.
        features: usize,
    },

    /// A LeNet on data whose image shape cannot be guessed.
    #[error(
        "cannot infer the image shape of {features} features (neither a square nor 3 channels of a \
         square); set image = [channels, height, width]"
    )]
    UnknownImage {
        /// Features of the data.
        features: usize,
    },

    /// A LeNet's image is too small for its two convolutions and pools.
    #[error(
        "a lenet needs images of at least 12x12 pixels (a padded 5x5 convolution, a 2x2 pool, a 5x5 \
         convolution and a 2x2 pool), got {height}x{width}"
    )]
    ImageTooSmall {
        /// Image height.
        height: usize,
        /// Image width.
        width: usize,
    },

    /// A LeNet's `channels` is not two positive counts.
    #[error("a lenet needs channels = [c1, c2], two positive counts, got {channels:?}")]
    ConvChannels {
        /// The configured channels.
        channels: Vec<usize>,
    },

    /// A target is not a class index in `0..classes`.
    #[error("sample {index} has label {label}, which is not a class in 0..{classes}")]
    BadLabel {
        /// The sample.
        index: usize,
        /// Its target.
        label: f32,
        /// The number of classes of the model.
        classes: usize,
    },

    /// `kind = "custom"` was asked to be sized or built from its spec: only the program embedding
    /// dprox knows that objective, so it has to hand it over.
    #[error(
        "model kind `custom`: the objective is supplied by the program embedding dprox — register \
         it with `dprox_cli::main_with` and select it with `[model] name`, or call \
         `Prepared::with_objective` (see examples/custom-objective)"
    )]
    CustomModel,

    /// A regression target is NaN or infinite.
    #[error("sample {index} has a non-finite target {value}")]
    NonFiniteTarget {
        /// The sample.
        index: usize,
        /// Its target.
        value: f32,
    },
}
