//! What can go wrong making a figure.

use std::path::PathBuf;

/// An error of [`crate::plot`] and the functions under it. Every variant names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The output file's extension is neither `.png` nor `.svg`.
    #[error("{path}: cannot tell the figure format from the extension {}; use .png or .svg", .extension.as_deref().map(|e| format!("`.{e}`")).unwrap_or_else(|| "(none)".into()))]
    UnsupportedFormat {
        /// The output path.
        path: PathBuf,
        /// Its extension, if it has one.
        extension: Option<String>,
    },
    /// The figure is too small to hold six panels.
    #[error("a figure of {width} x {height} pixels is too small for six panels (at least 300 x 200)")]
    TooSmall {
        /// Width asked for.
        width: u32,
        /// Height asked for.
        height: u32,
    },
    /// No run folder was given.
    #[error("no run folders to plot")]
    NoRuns,
    /// A run folder does not exist (or is not a folder).
    #[error("run folder {path} does not exist")]
    MissingDir {
        /// The folder.
        path: PathBuf,
    },
    /// A run folder holds no `metrics.csv`.
    #[error("{path} does not exist: is its folder the output of `dprox sim` or `dprox launch`?")]
    MissingMetrics {
        /// The missing `metrics.csv`.
        path: PathBuf,
    },
    /// A `metrics.csv` holds a header and no rows (or nothing at all).
    #[error("{path} holds no rows")]
    NoRows {
        /// The `metrics.csv`.
        path: PathBuf,
    },
    /// Reading a file failed.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A `summary.json` is not valid JSON.
    #[error("{path} is not valid JSON: {source}")]
    BadSummary {
        /// The `summary.json`.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The output folder could not be created.
    #[error("creating {path}: {source}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The bundled font could not be registered with plotters (a bug: the font is compiled in).
    #[error("the bundled font (DejaVu Sans) could not be loaded")]
    Font,
    /// Drawing or writing the figure failed.
    #[error("drawing {path}: {message}")]
    Draw {
        /// The output file.
        path: PathBuf,
        /// The plotters error, as text (its type depends on the backend).
        message: String,
    },
}
