//! The one error type of this crate.
//!
//! Messages are written for a person looking at a terminal: every file error names the path, the
//! 1-based line and the column or token where it applies, and the offending text, so the bad spot
//! can be found without a debugger.

use std::path::Path;

/// Everything that can go wrong while loading, transforming, splitting or partitioning data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file does not exist.
    #[error("{path}: file not found")]
    NotFound {
        /// The path as given.
        path: String,
    },

    /// Any other I/O failure: permissions, a corrupt gzip stream, text that is not UTF-8.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The path as given.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The file holds no data rows (empty, blank, or only a header or comments).
    #[error("{path}: no data rows (the file is empty or holds only blank lines, a header or comments)")]
    Empty {
        /// The path as given.
        path: String,
    },

    /// A CSV row has a different number of fields from the first data row.
    #[error(
        "{path}: line {line} has {got} fields, expected {expected} (as in the first data row, line {first_line})"
    )]
    FieldCount {
        /// The path as given.
        path: String,
        /// 1-based line of the bad row.
        line: usize,
        /// Fields found on that line.
        got: usize,
        /// Fields of the first data row.
        expected: usize,
        /// 1-based line of the first data row.
        first_line: usize,
    },

    /// A CSV field does not parse as a number.
    #[error("{path}: line {line}, column {column}: cannot parse `{text}` as a number")]
    BadNumber {
        /// The path as given.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (field) number.
        column: usize,
        /// The field's text.
        text: String,
    },

    /// A CSV field is NaN or infinite.
    #[error("{path}: line {line}, column {column}: value `{text}` is not finite (NaN or infinite)")]
    NonFinite {
        /// The path as given.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (field) number.
        column: usize,
        /// The field's text.
        text: String,
    },

    /// A classification label is not a non-negative integer.
    #[error("{path}: label `{text}` at line {line} is not a non-negative integer class index")]
    LabelNotInteger {
        /// The path as given.
        path: String,
        /// 1-based line.
        line: usize,
        /// The label's text.
        text: String,
    },

    /// A classification label is not below the declared number of classes.
    #[error("{path}: label {label} at line {line} is outside the class range 0..{classes}")]
    LabelOutOfRange {
        /// The path as given.
        path: String,
        /// 1-based line (for IDX files: 1-based item number).
        line: usize,
        /// The label.
        label: u64,
        /// The declared number of classes.
        classes: usize,
    },

    /// A LIBSVM file has more distinct labels than the declared number of classes.
    #[error("{path}: {found} distinct labels ({labels}) but classes = {classes}")]
    TooManyLabels {
        /// The path as given.
        path: String,
        /// Number of distinct labels found.
        found: usize,
        /// The declared number of classes.
        classes: usize,
        /// The distinct labels (possibly abbreviated), for the message.
        labels: String,
    },

    /// A malformed LIBSVM token (bad, zero, non-ascending or too large index; bad or NaN value).
    #[error("{path}: line {line}: token `{token}`: {reason}")]
    BadToken {
        /// The path as given.
        path: String,
        /// 1-based line.
        line: usize,
        /// The offending token.
        token: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An IDX file starts with the wrong magic number.
    #[error("{path}: IDX magic number is {found:#010x}, expected {expected:#010x} ({what})")]
    BadMagic {
        /// The path as given.
        path: String,
        /// The magic number found.
        found: u32,
        /// The magic number expected.
        expected: u32,
        /// What kind of file was expected.
        what: &'static str,
    },

    /// A binary file is shorter than its header says.
    #[error("{path}: truncated: {what} needs {expected} bytes, the file has {got}")]
    Truncated {
        /// The path as given.
        path: String,
        /// What was being read.
        what: &'static str,
        /// Bytes needed (after decompression).
        expected: usize,
        /// Bytes present (after decompression).
        got: usize,
    },

    /// The IDX images and labels files disagree on the number of samples.
    #[error(
        "images file {images_path} holds {images} images but labels file {labels_path} holds {labels} labels"
    )]
    CountMismatch {
        /// The images file.
        images_path: String,
        /// Number of images.
        images: usize,
        /// The labels file.
        labels_path: String,
        /// Number of labels.
        labels: usize,
    },

    /// `Scale::Standardize` was asked for sparse features.
    #[error(
        "Scale::Standardize is not supported for sparse features: subtracting the mean would make \
         every entry nonzero and destroy sparsity; use Scale::MaxAbs or Scale::Factor instead"
    )]
    SparseStandardize,

    /// A scaler fitted on one feature count was applied to data with another.
    #[error("the scaler was fitted on {expected} features but the data set has {got}")]
    FeatureMismatch {
        /// Features seen when fitting.
        expected: usize,
        /// Features of the data set being transformed.
        got: usize,
    },

    /// An operation that needs class labels got regression data.
    #[error(
        "{what} needs classification data (classes = Some(..)), but the data set holds regression targets"
    )]
    NotClassification {
        /// The operation.
        what: &'static str,
    },

    /// A partition left a node without samples.
    #[error("node {node} received no samples ({scheme}): {hint}")]
    EmptyNode {
        /// The first empty node.
        node: usize,
        /// The partitioner and its parameters, for example `dirichlet alpha = 0.01`.
        scheme: String,
        /// How many nodes are empty and what to change.
        hint: String,
    },

    /// Label skew left classes that have samples without any node holding them.
    #[error(
        "label skew: classes {classes:?} are held by no node (nodes = {nodes}, classes_per_node = \
         {per_node}); their samples would be dropped: raise classes_per_node or the number of nodes"
    )]
    UncoveredClasses {
        /// The uncovered classes, ascending.
        classes: Vec<usize>,
        /// Number of nodes.
        nodes: usize,
        /// Classes per node asked for.
        per_node: usize,
    },

    /// An argument is out of its valid range (the message says which and its value).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Maps an I/O error on `path` to `NotFound` or `Io`.
pub(crate) fn io_error(path: &Path, e: std::io::Error) -> DataError {
    let path = path.display().to_string();
    if e.kind() == std::io::ErrorKind::NotFound {
        DataError::NotFound { path }
    } else {
        DataError::Io { path, source: e }
    }
}
