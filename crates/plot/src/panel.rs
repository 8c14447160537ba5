//! What each panel shows, and the points each run contributes to it (before any drawing).

use crate::{Run, TimeAxis};

/// One panel of the grid: a metric (y) against iterations or time (x).
#[derive(Clone, Debug)]
pub(crate) struct PanelSpec {
    pub title: String,
    pub x_col: &'static str,
    pub x_label: String,
    pub y_col: &'static str,
    pub y_label: String,
    /// Values are multiplied by this before plotting (percent, megabytes).
    pub y_factor: f64,
    pub log_y: bool,
}

/// The six panels, row by row (2 x 3).
pub(crate) fn specs(runs: &[Run], time: TimeAxis) -> Vec<PanelSpec> {
    let (unit, bytes_factor) = bytes_unit(runs);
    let t = time.column();
    let t_label = time.label();
    let spec = |title: &str, x_col, x_label: &str, y_col, y_label: &str, y_factor, log_y| PanelSpec {
        title: title.into(),
        x_col,
        x_label: x_label.into(),
        y_col,
        y_label: y_label.into(),
        y_factor,
        log_y,
    };
    vec![
        spec("objective", "iter", "iteration", "objective", "objective", 1.0, false),
        spec("test accuracy", "iter", "iteration", "test_accuracy", "test accuracy (%)", 100.0, false),
        spec("consensus error", "iter", "iteration", "consensus_error", "consensus error (log)", 1.0, true),
        spec(
            "bytes sent",
            "iter",
            "iteration",
            "bytes_sent",
            &format!("bytes sent ({unit})"),
            bytes_factor,
            false,
        ),
        spec("objective vs time", t, t_label, "objective", "objective", 1.0, false),
        spec("consensus error vs time", t, t_label, "consensus_error", "consensus error (log)", 1.0, true),
    ]
}

/// A decimal unit for the largest `bytes_sent` of any run, and the factor into it.
fn bytes_unit(runs: &[Run]) -> (&'static str, f64) {
    let max = runs
        .iter()
        .filter_map(|r| r.column("bytes_sent"))
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    match max {
        m if m >= 1e9 => ("GB", 1e-9),
        m if m >= 1e6 => ("MB", 1e-6),
        m if m >= 1e3 => ("kB", 1e-3),
        _ => ("bytes", 1.0),
    }
}

/// The points of every run in one panel, and what to say about the ones missing.
#[derive(Clone, Debug)]
pub(crate) struct PanelData {
    /// Per run (in run order): its points, empty when it has none to show.
    pub series: Vec<Vec<(f64, f64)>>,
    /// Shown in the middle of a panel with no points at all.
    pub empty_note: Option<String>,
    /// Shown under the plot when some runs (not all) have nothing to show.
    pub footnote: Option<String>,
    /// The x extent of every row with a finite value, shown or not: a log panel then spans
    /// the same iterations as its linear neighbours although its zero at iteration 0 is skipped.
    x_extent: Option<(f64, f64)>,
}

impl PanelData {
    /// Finite points only; on a log axis, positive values only (a consensus error of exactly 0,
    /// as at iteration 0 or under all-reduce, has no place on it).
    pub fn new(spec: &PanelSpec, runs: &[Run]) -> PanelData {
        let series: Vec<Vec<(f64, f64)>> = runs
            .iter()
            .map(|r| match (r.column(spec.x_col), r.column(spec.y_col)) {
                (Some(xs), Some(ys)) => xs
                    .iter()
                    .zip(ys)
                    .map(|(&x, &y)| (x, y * spec.y_factor))
                    .filter(|&(x, y)| x.is_finite() && y.is_finite() && (!spec.log_y || y > 0.0))
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        let x_extent = runs
            .iter()
            .filter_map(|r| Some(r.column(spec.x_col)?.iter().zip(r.column(spec.y_col)?)))
            .flatten()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(&x, _)| x)
            .fold(None, |acc: Option<(f64, f64)>, x| Some(acc.map_or((x, x), |(a, b)| (a.min(x), b.max(x)))));
        let what = if spec.log_y { "positive values" } else { "values" };
        let has_column = |r: &Run| r.column(spec.x_col).is_some() && r.column(spec.y_col).is_some();
        let empty_note = if series.iter().all(Vec::is_empty) {
            Some(if !runs.iter().any(has_column) {
                let missing: Vec<&str> = [spec.x_col, spec.y_col]
                    .into_iter()
                    .filter(|c| !runs.iter().any(|r| r.column(c).is_some()))
                    .collect();
                format!("no {} column in metrics.csv", missing.join(" or "))
            } else {
                format!("no {what} of {}", spec.y_col)
            })
        } else {
            None
        };
        let footnote = if empty_note.is_none() {
            let without: Vec<&str> = runs
                .iter()
                .zip(&series)
                .filter(|(_, s)| s.is_empty())
                .map(|(r, _)| r.name.as_str())
                .collect();
            (!without.is_empty()).then(|| format!("no {what} to show: {}", without.join(", ")))
        } else {
            None
        };
        PanelData { series, empty_note, footnote, x_extent }
    }

    /// The x and y extent of all points, widened a little (and made non-empty) for the axes.
    pub fn ranges(&self, log_y: bool) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
        let (y0, y1) = self
            .series
            .iter()
            .flatten()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
        let Some((x0, x1)) = self.x_extent.filter(|_| y0.is_finite()) else {
            return (0.0..1.0, if log_y { 0.1..1.0 } else { 0.0..1.0 });
        };
        let x = if x1 > x0 { x0..x1 } else { x0 - 0.5..x0 + 0.5 };
        let y = if log_y {
            // Out to the powers of ten around the data (with a margin of a twentieth of a
            // decade), so that the axis has at least two labelled ticks: a log axis labels powers
            // of ten, and a span inside one decade would show a single label.
            let (l0, l1) = (y0.log10(), y1.log10());
            let (mut l0, mut l1) = ((l0 - 0.05).floor(), (l1 + 0.05).ceil());
            if l1 - l0 < 1.0 {
                l1 = l0 + 1.0;
            }
            // Just past the powers, so that rounding in powf keeps them on the axis.
            (l0, l1) = (l0 - 1e-9, l1 + 1e-9);
            10f64.powf(l0)..10f64.powf(l1)
        } else if y1 > y0 {
            let pad = (y1 - y0) * 0.05;
            y0 - pad..y1 + pad
        } else {
            let pad = if y0 == 0.0 { 1.0 } else { y0.abs() * 0.1 };
            y0 - pad..y0 + pad
        };
        (x, y)
    }
}
