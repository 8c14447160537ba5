//! LIBSVM / svmlight text files: `label index:value index:value ...`, stored sparse.

use std::path::Path;

use crate::csv::MAX_CLASS_LABEL;
use crate::dataset::{Csr, Dataset, Features, Task};
use crate::error::DataError;
use crate::read::{Lines, parse_f32};

/// How to read a LIBSVM file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LibsvmOptions {
    /// Number of features; `None` takes the largest index in the file. Give it when loading a
    /// test file, so that train and test agree even if the test file never uses the last feature.
    pub num_features: Option<usize>,
    /// Classification or regression.
    pub task: Task,
    /// Number of classes (classification only); `None` uses the number of distinct labels.
    pub classes: Option<usize>,
}

/// Loads a LIBSVM/svmlight file into a [`Dataset`] with [`Features::Sparse`] features.
///
/// - Indices are 1-based and strictly ascending within a line; they are stored 0-based.
/// - Everything from `#` to the end of a line is a comment; blank lines are skipped; `qid:` tokens
///   (svmlight ranking files) are skipped; gzip is detected from the magic bytes.
/// - Explicit zero values are kept as written.
/// - Classification: every label must be an integer. The sorted distinct label values are mapped
///   to `0..C`: `-1/+1` become `0/1` and `1..=K` become `0..K`. The mapping depends only on
///   which labels occur in *this* file, so a test file that lacks the smallest label of its
///   training file would be mapped differently: check [`Dataset::class_counts`] when that matters.
///   With `classes` given it is an error to find more distinct labels than classes; fewer is
///   allowed (the data set still gets `classes` classes).
/// - Regression: labels are any finite reals.
pub fn load_libsvm(path: impl AsRef<Path>, opts: &LibsvmOptions) -> Result<Dataset, DataError> {
    let path = path.as_ref();
    if opts.task == Task::Regression && opts.classes.is_some() {
        return Err(DataError::InvalidArgument(format!(
            "{}: classes = {:?} was given for a regression task",
            path.display(),
            opts.classes
        )));
    }
    let mut lines = Lines::open(path)?;
    let p = lines.path().to_string();
    let mut csr = Csr { indptr: vec![0], ..Csr::default() };
    let mut labels: Vec<f64> = Vec::new();
    // The first non-integer label, reported only if the task turns out to be classification.
    let mut first_fractional: Option<(usize, String)> = None;
    let mut max_index = 0usize;

    while let Some((line, text)) = lines.next_line()? {
        let text = text.split_once('#').map_or(text, |(data, _comment)| data);
        let mut tokens = text.split_ascii_whitespace();
        let Some(label_tok) = tokens.next() else {
            continue;
        };
        let label = parse_label(label_tok, &p, line)?;
        if first_fractional.is_none() && (label.fract() != 0.0 || label.abs() >= MAX_CLASS_LABEL) {
            first_fractional = Some((line, label_tok.to_string()));
        }
        // `+ 0.0` turns -0 into 0, so the two cannot become distinct classes below.
        labels.push(label + 0.0);
        let last = parse_features(tokens, opts.num_features, &p, line, &mut csr)?;
        max_index = max_index.max(last);
        csr.indptr.push(csr.indices.len());
    }

    if labels.is_empty() {
        return Err(DataError::Empty { path: p });
    }
    csr.rows = labels.len();
    csr.cols = opts.num_features.unwrap_or(max_index);
    let (targets, classes) = match opts.task {
        Task::Regression => (labels.iter().map(|&l| l as f32).collect(), None),
        Task::Classification => class_targets(&labels, first_fractional, opts.classes, p)?,
    };
    Ok(Dataset { features: Features::Sparse(csr), targets, classes })
}

/// The error for `token` on line `line` of `path`.
fn bad(path: &str, line: usize, token: &str, reason: String) -> DataError {
    DataError::BadToken { path: path.to_string(), line, token: token.to_string(), reason }
}

/// The label token of a line as a finite number.
fn parse_label(label_tok: &str, p: &str, line: usize) -> Result<f64, DataError> {
    let label: f64 =
        label_tok.parse().map_err(|_| bad(p, line, label_tok, "the label is not a number".into()))?;
    if !label.is_finite() {
        return Err(bad(p, line, label_tok, "the label is not finite (NaN or infinite)".into()));
    }
    Ok(label)
}

/// Appends the `index:value` tokens of one line to `csr` (without closing the row) and returns
/// the line's last index (0 when it has none). Refuses an index that is not 1-based, not
/// strictly ascending, above `num_features` or beyond 32 bits, and a value that is not a finite
/// number; `qid:` tokens are skipped.
fn parse_features<'t>(
    tokens: impl Iterator<Item = &'t str>,
    num_features: Option<usize>,
    p: &str,
    line: usize,
    csr: &mut Csr,
) -> Result<usize, DataError> {
    let mut prev = 0usize;
    for tok in tokens {
        if tok.starts_with("qid:") {
            continue;
        }
        let err = |reason: String| bad(p, line, tok, reason);
        let (idx_s, val_s) = tok.split_once(':').ok_or_else(|| err("expected `index:value`".into()))?;
        let idx: usize =
            idx_s.parse().map_err(|_| err(format!("index `{idx_s}` is not a non-negative integer")))?;
        if idx == 0 {
            return Err(err("index 0: LIBSVM indices are 1-based".into()));
        }
        if idx <= prev {
            return Err(err(format!(
                "index {idx} does not follow {prev}: indices must be strictly ascending"
            )));
        }
        if let Some(nf) = num_features
            && idx > nf
        {
            return Err(err(format!("index {idx} is larger than num_features = {nf}")));
        }
        if idx > u32::MAX as usize {
            return Err(err(format!("index {idx} does not fit in 32 bits")));
        }
        let val = parse_f32(val_s).ok_or_else(|| err(format!("value `{val_s}` is not a number")))?;
        if !val.is_finite() {
            return Err(err(format!("value `{val_s}` is not finite (NaN or infinite)")));
        }
        csr.indices.push((idx - 1) as u32);
        csr.values.push(val);
        prev = idx;
    }
    Ok(prev)
}

/// Classification targets: refuses a non-integer label (`first_fractional`, the first one seen)
/// and more distinct labels than `classes`, then maps the sorted distinct labels to `0..C`.
/// Returns the targets and the number of classes (`classes`, or the number of distinct labels).
fn class_targets(
    labels: &[f64],
    first_fractional: Option<(usize, String)>,
    classes: Option<usize>,
    p: String,
) -> Result<(Vec<f32>, Option<usize>), DataError> {
    if let Some((line, text)) = first_fractional {
        return Err(DataError::LabelNotInteger { path: p, line, text });
    }
    let mut distinct = labels.to_vec();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    if let Some(c) = classes
        && distinct.len() > c
    {
        return Err(DataError::TooManyLabels {
            path: p,
            found: distinct.len(),
            classes: c,
            labels: list_labels(&distinct),
        });
    }
    let targets = labels
        .iter()
        .map(|l| distinct.binary_search_by(|d| d.total_cmp(l)).expect("label is in distinct") as f32)
        .collect();
    Ok((targets, Some(classes.unwrap_or(distinct.len()))))
}

/// The distinct labels for a message, abbreviated after 20.
fn list_labels(distinct: &[f64]) -> String {
    let mut s: Vec<String> = distinct.iter().take(20).map(|l| l.to_string()).collect();
    if distinct.len() > 20 {
        s.push("...".into());
    }
    s.join(", ")
}
