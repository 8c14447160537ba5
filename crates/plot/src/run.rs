//! One run folder read back: its `metrics.csv` by column, and its name from `summary.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::PlotError;

/// A run folder (the `--out` of `dprox sim` or `dprox launch`), read back for plotting.
#[derive(Clone, Debug)]
pub struct Run {
    /// The folder.
    pub dir: PathBuf,
    /// `name` from `summary.json`, else the folder's name.
    pub name: String,
    /// `algorithm` from `summary.json`, if there is one.
    pub algorithm: Option<String>,
    /// `status` from `summary.json` (`completed` or `failed`), if there is one.
    pub status: Option<String>,
    /// Each column of `metrics.csv` by its header name, one value per row; empty or unparsable
    /// cells are NaN.
    pub columns: BTreeMap<String, Vec<f64>>,
}

impl Run {
    /// Reads `dir/metrics.csv` and, when present, `dir/summary.json`. Columns are found by the
    /// CSV header, so files with fewer or more columns than today's [`dprox_eval::METRICS_HEADER`]
    /// load too.
    pub fn load(dir: &Path) -> Result<Run, PlotError> {
        if !dir.is_dir() {
            return Err(PlotError::MissingDir { path: dir.to_path_buf() });
        }
        let metrics = dir.join("metrics.csv");
        if !metrics.is_file() {
            return Err(PlotError::MissingMetrics { path: metrics });
        }
        let header = header(&metrics)?;
        let rows = dprox_eval::read_metrics(&metrics)
            .map_err(|source| PlotError::Read { path: metrics.clone(), source })?;
        if header.is_empty() || rows.is_empty() {
            return Err(PlotError::NoRows { path: metrics });
        }
        // A truncated last line (a run killed mid-write) lacks its last cells: NaN, not a shift.
        let columns = header
            .iter()
            .map(|h| (h.clone(), rows.iter().map(|r| r.get(h).copied().unwrap_or(f64::NAN)).collect()))
            .collect();

        let dir_name = dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        let summary_path = dir.join("summary.json");
        let (name, algorithm, status) = if summary_path.is_file() {
            let text = std::fs::read_to_string(&summary_path)
                .map_err(|source| PlotError::Read { path: summary_path.clone(), source })?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|source| PlotError::BadSummary { path: summary_path.clone(), source })?;
            let text_of =
                |k: &str| v.get(k).and_then(|x| x.as_str()).filter(|s| !s.is_empty()).map(String::from);
            (text_of("name").unwrap_or(dir_name), text_of("algorithm"), text_of("status"))
        } else {
            (dir_name, None, None)
        };
        Ok(Run { dir: dir.to_path_buf(), name, algorithm, status, columns })
    }

    /// The values of column `name`, if `metrics.csv` has it.
    pub fn column(&self, name: &str) -> Option<&[f64]> {
        self.columns.get(name).map(Vec::as_slice)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.columns.values().next().map_or(0, Vec::len)
    }

    /// The legend entry: the name, the algorithm when the name does not already say it, and
    /// `failed` for a run that stopped early.
    pub fn label(&self) -> String {
        let mut label = self.name.clone();
        if let Some(a) = &self.algorithm
            && !self.name.contains(a.as_str())
        {
            label.push_str(&format!(" ({a})"));
        }
        if self.status.as_deref() == Some("failed") {
            label.push_str(" [failed]");
        }
        label
    }
}

/// The header line of a CSV file, split at commas.
fn header(path: &Path) -> Result<Vec<String>, PlotError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| PlotError::Read { path: path.into(), source })?;
    let first = text.lines().next().unwrap_or_default().trim();
    Ok(if first.is_empty() { Vec::new() } else { first.split(',').map(|h| h.trim().to_string()).collect() })
}
