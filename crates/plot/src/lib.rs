//! Figures of dprox runs: the `metrics.csv` of several run folders side by side, as one PNG or
//! SVG, each run a coloured line in every panel. This is what `dprox plot` draws.
//!
//! The grid has six panels: objective, test accuracy, consensus error (log scale) and bytes sent
//! against iterations, then objective and consensus error (log scale) against time (simulated
//! seconds by default, see [`TimeAxis`]). Columns are found by the CSV header: a column a run
//! lacks (say `test_accuracy` of a run without a test set) leaves an empty panel with a note
//! rather than an error, and values a log axis cannot show (zero, as the consensus error at
//! iteration 0 or under all-reduce, or NaN) are skipped.
//!
//! Text is drawn with a TTF font compiled into the crate (DejaVu Sans), so figures render the
//! same on a machine with no system fonts.
//!
//! # Layout
//! - [`run`]: [`Run`], one run folder read back (`metrics.csv` by column, name from `summary.json`).
//! - `panel`: what each panel shows and which points of each run go into it.
//! - `draw`: the drawing with plotters, shared by the PNG and SVG backends; [`PALETTE`].
//! - `font`: the bundled font and its one-time registration with plotters.
//! - [`error`]: what can go wrong, [`PlotError`].
//!
//! # Example
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let run = dir.path().join("run");
//! std::fs::create_dir(&run)?;
//! let rows = "0,2.3,0,0.1,0,0,0,0,2.3,1\n10,0.9,0.001,0.8,0.5,4000,0.1,0.2,0.8,0.3\n";
//! std::fs::write(run.join("metrics.csv"), format!("{}\n{rows}", dprox_eval::METRICS_HEADER))?;
//!
//! let out = dir.path().join("figure.svg");
//! let plotted = dprox_plot::plot(&[&run], &out, &dprox_plot::PlotOptions::default())?;
//! assert_eq!(plotted.format, dprox_plot::Format::Svg);
//! assert_eq!(plotted.runs[0].label, "run");
//! assert_eq!(plotted.panels.len(), 6);
//! assert!(std::fs::read_to_string(&out)?.contains("consensus error"));
//! # Ok(())
//! # }
//! ```

use std::io::IsTerminal;
use std::ops::Range;
use std::path::{Path, PathBuf};

use plotters::prelude::{BitMapBackend, DrawingBackend, IntoDrawingArea, SVGBackend};

mod draw;
pub mod error;
mod font;
mod panel;
pub mod run;

pub use draw::{PALETTE, run_color};
pub use error::PlotError;
pub use run::Run;

/// The figure's file format, from the output file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `.png`: a bitmap.
    Png,
    /// `.svg`: vector graphics, text kept as text.
    Svg,
}

impl Format {
    /// `.png` or `.svg` (any case); anything else is [`PlotError::UnsupportedFormat`].
    pub fn from_path(path: &Path) -> Result<Format, PlotError> {
        let ext = path.extension().map(|e| e.to_string_lossy().into_owned());
        match ext.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("png") => Ok(Format::Png),
            Some("svg") => Ok(Format::Svg),
            _ => Err(PlotError::UnsupportedFormat { path: path.to_path_buf(), extension: ext }),
        }
    }
}

/// Which `metrics.csv` column the time panels use as their x axis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimeAxis {
    /// `sim_time_s`: the simulator's virtual clock (a cluster run's slowest node's elapsed time).
    #[default]
    Simulated,
    /// `wall_time_s`: real seconds the run took.
    Wall,
}

impl TimeAxis {
    /// The column name.
    pub fn column(self) -> &'static str {
        match self {
            TimeAxis::Simulated => "sim_time_s",
            TimeAxis::Wall => "wall_time_s",
        }
    }

    /// The axis description.
    pub fn label(self) -> &'static str {
        match self {
            TimeAxis::Simulated => "simulated time (s)",
            TimeAxis::Wall => "wall-clock time (s)",
        }
    }
}

/// How to draw the figure.
#[derive(Clone, Debug)]
pub struct PlotOptions {
    /// Width in pixels (SVG: user units).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The x axis of the time panels.
    pub time: TimeAxis,
    /// A title above the legend.
    pub title: Option<String>,
    /// Show a progress bar on stderr, if stderr is a terminal (never otherwise).
    pub progress: bool,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions { width: 1800, height: 1000, time: TimeAxis::default(), title: None, progress: false }
    }
}

/// A rectangle of the figure in pixels, `x.start..x.end` by `y.start..y.end` from the top left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PixelRect {
    /// Columns.
    pub x: Range<i32>,
    /// Rows.
    pub y: Range<i32>,
}

/// One run as drawn.
#[derive(Clone, Debug)]
pub struct RunEntry {
    /// The run folder.
    pub dir: PathBuf,
    /// Its legend entry.
    pub label: String,
    /// Its line colour (RGB).
    pub color: (u8, u8, u8),
}

/// One panel as drawn.
#[derive(Clone, Debug)]
pub struct PanelReport {
    /// The panel's caption.
    pub title: String,
    /// Where its plotting area (inside the axes) lies in the figure.
    pub area: PixelRect,
    /// Indices (into [`Plotted::runs`]) of the runs with at least one point in this panel.
    pub shown: Vec<usize>,
    /// The note drawn in or under the panel when some or all runs have nothing to show.
    pub note: Option<String>,
}

/// What [`plot`] wrote.
#[derive(Clone, Debug)]
pub struct Plotted {
    /// The output file.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The runs, in the order given, with their colours.
    pub runs: Vec<RunEntry>,
    /// The panels, row by row.
    pub panels: Vec<PanelReport>,
}

/// The panel grid: rows, columns.
const GRID: (usize, usize) = (2, 3);

/// Reads every run folder in `dirs` and draws them into `out` (`.png` or `.svg`, creating its
/// folder if needed). Fails, naming the path, on a bad extension, a missing folder or a folder
/// without `metrics.csv`, before drawing anything.
pub fn plot<P: AsRef<Path>>(dirs: &[P], out: &Path, options: &PlotOptions) -> Result<Plotted, PlotError> {
    Format::from_path(out)?;
    check_size(options)?;
    if dirs.is_empty() {
        return Err(PlotError::NoRuns);
    }
    let bar = progress_bar(options.progress, (dirs.len() + GRID.0 * GRID.1) as u64);
    bar.set_message("reading runs");
    let mut runs = Vec::with_capacity(dirs.len());
    for dir in dirs {
        runs.push(Run::load(dir.as_ref())?);
        bar.inc(1);
    }
    bar.set_message("drawing");
    let result = render_with(&runs, out, options, || bar.inc(1));
    bar.finish_and_clear();
    result
}

/// Draws runs already read into `out` (`.png` or `.svg`).
pub fn render(runs: &[Run], out: &Path, options: &PlotOptions) -> Result<Plotted, PlotError> {
    render_with(runs, out, options, || {})
}

fn render_with(
    runs: &[Run],
    out: &Path,
    options: &PlotOptions,
    tick: impl FnMut(),
) -> Result<Plotted, PlotError> {
    let format = Format::from_path(out)?;
    check_size(options)?;
    if runs.is_empty() {
        return Err(PlotError::NoRuns);
    }
    font::ensure_registered()?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        std::fs::create_dir_all(parent)
            .map_err(|source| PlotError::CreateDir { path: parent.into(), source })?;
    }

    let labels = labels(runs);
    let specs = panel::specs(runs, options.time);
    let data: Vec<panel::PanelData> = specs.iter().map(|s| panel::PanelData::new(s, runs)).collect();
    let fig = draw::Figure {
        labels: &labels,
        title: options.title.as_deref(),
        specs: &specs,
        data: &data,
        grid: GRID,
    };
    let size = (options.width, options.height);
    let rects = match format {
        Format::Png => draw_on(BitMapBackend::new(out, size), &fig, out, tick)?,
        Format::Svg => draw_on(SVGBackend::new(out, size), &fig, out, tick)?,
    };

    let panels = specs
        .iter()
        .zip(&data)
        .zip(rects)
        .map(|((spec, d), area)| PanelReport {
            title: spec.title.clone(),
            area,
            shown: (0..runs.len()).filter(|&i| !d.series[i].is_empty()).collect(),
            note: d.empty_note.clone().or_else(|| d.footnote.clone()),
        })
        .collect();
    let runs = runs
        .iter()
        .zip(labels)
        .enumerate()
        .map(|(i, (r, label))| RunEntry { dir: r.dir.clone(), label, color: run_color(i) })
        .collect();
    Ok(Plotted {
        path: out.to_path_buf(),
        format,
        width: options.width,
        height: options.height,
        runs,
        panels,
    })
}

fn draw_on<DB: DrawingBackend>(
    backend: DB,
    fig: &draw::Figure<'_>,
    out: &Path,
    tick: impl FnMut(),
) -> Result<Vec<PixelRect>, PlotError> {
    let root = backend.into_drawing_area();
    draw::draw(&root, fig, tick)
        .map_err(|e| PlotError::Draw { path: out.to_path_buf(), message: e.to_string() })
}

fn check_size(options: &PlotOptions) -> Result<(), PlotError> {
    if options.width < 300 || options.height < 200 {
        return Err(PlotError::TooSmall { width: options.width, height: options.height });
    }
    Ok(())
}

/// Legend entries; runs that would share one get their folder appended.
fn labels(runs: &[Run]) -> Vec<String> {
    let plain: Vec<String> = runs.iter().map(Run::label).collect();
    plain
        .iter()
        .zip(runs)
        .map(|(l, r)| {
            if plain.iter().filter(|m| *m == l).count() > 1 {
                format!("{l} [{}]", r.dir.display())
            } else {
                l.clone()
            }
        })
        .collect()
}

/// A progress bar on stderr, hidden unless asked for and stderr is a terminal.
fn progress_bar(show: bool, total: u64) -> indicatif::ProgressBar {
    if !show || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {bar:30} {pos}/{len}  {msg}")
            .expect("static template"),
    );
    bar
}
