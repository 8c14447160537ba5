//! Drawing the figure with plotters, on any backend (PNG and SVG share every line of it).

use std::ops::Range;

use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::PixelRect;
use crate::font::FAMILY;
use crate::panel::{PanelData, PanelSpec};

/// Line colours, one per run in order (matplotlib's "tab10"), cycling after ten runs.
pub const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// The colour of the `i`th run.
pub fn run_color(i: usize) -> (u8, u8, u8) {
    PALETTE[i % PALETTE.len()]
}

fn rgb(i: usize) -> RGBColor {
    let (r, g, b) = run_color(i);
    RGBColor(r, g, b)
}

/// Markers ride on each line at a few points, a different shape per run and at different points
/// for each run, so that lines which coincide (all-reduce and DProxSGT reach the same objective,
/// and send the same bytes on 5 nodes) stay told apart.
fn mark<DB: DrawingBackend, CT: CoordTranslate>(
    area: &DrawingArea<DB, CT>,
    at: CT::From,
    run: usize,
    r: i32,
) -> DrawResult<(), DB> {
    let (e, fill) = (EmptyElement::at(at), rgb(run).filled());
    match run % 4 {
        0 => area.draw(&(e + Circle::new((0, 0), r, fill))),
        1 => area.draw(&(e + Rectangle::new([(-r + 1, -r + 1), (r - 1, r - 1)], fill))),
        2 => area.draw(&(e + TriangleMarker::new((0, 0), r + 1, fill))),
        _ => area.draw(&(e + Cross::new((0, 0), r, rgb(run).stroke_width(2)))),
    }
}

/// The points of a run's line that carry its markers: about ten, shifted along the line by run.
fn marked(points: &[(f64, f64)], run: usize, runs: usize) -> impl Iterator<Item = (f64, f64)> + '_ {
    let step = points.len().div_ceil(10).max(1);
    let offset = run * step / runs.max(1);
    points.iter().copied().enumerate().filter(move |(k, _)| k % step == offset % step).map(|(_, p)| p)
}

type DrawResult<T, DB> = Result<T, DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Sizes in pixels at the default 1800 x 1000, scaled with the figure.
struct Scale(f64);

impl Scale {
    fn px(&self, v: f64) -> f64 {
        v * self.0
    }
    fn pxi(&self, v: f64) -> i32 {
        (v * self.0).round() as i32
    }
}

/// What to draw, all decided beforehand.
pub(crate) struct Figure<'a> {
    pub labels: &'a [String],
    pub title: Option<&'a str>,
    pub specs: &'a [PanelSpec],
    pub data: &'a [PanelData],
    /// Panel grid: rows, columns.
    pub grid: (usize, usize),
}

/// Draws `fig` onto `root` (title, legend, then the grid of panels) and returns each panel's
/// plotting area. `tick` is called once per panel drawn.
pub(crate) fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    fig: &Figure<'_>,
    mut tick: impl FnMut(),
) -> DrawResult<Vec<PixelRect>, DB> {
    let (w, h) = root.dim_in_pixel();
    let s = Scale((w as f64 / 1800.0).min(h as f64 / 1000.0).max(0.4));
    root.fill(&WHITE)?;

    let mut area = root.clone();
    if let Some(title) = fig.title {
        area = area.titled(title, (FAMILY, s.px(28.0)).into_font().color(&BLACK))?;
    }
    let legend_h = legend(&area, fig, &s)?;
    let (_, grid) = area.split_vertically(legend_h);

    let cells = grid.split_evenly(fig.grid);
    let mut rects = Vec::with_capacity(fig.specs.len());
    for ((cell, spec), data) in cells.iter().zip(fig.specs).zip(fig.data) {
        let (x, y) = data.ranges(spec.log_y);
        let rect = if spec.log_y {
            panel(cell, spec, data, x, y.log_scale(), &s, &|v: &f64| format!("{v:.0e}"))?
        } else {
            panel(cell, spec, data, x, y, &s, &|v: &f64| number(*v))?
        };
        rects.push(rect);
        tick();
    }
    root.present()?;
    Ok(rects)
}

/// The legend strip across the top: a line sample and a label per run, wrapped into rows.
/// Returns its height.
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    fig: &Figure<'_>,
    s: &Scale,
) -> DrawResult<i32, DB> {
    let style = (FAMILY, s.px(18.0)).into_font().color(&BLACK);
    let (width, _) = area.dim_in_pixel();
    let (margin, sample, gap, spacing, row_h) =
        (s.pxi(24.0), s.pxi(36.0), s.pxi(8.0), s.pxi(32.0), s.pxi(30.0));
    let mut x = margin;
    let mut row = 0;
    let mut placed = Vec::with_capacity(fig.labels.len());
    for label in fig.labels {
        let (tw, _) = area.estimate_text_size(label, &style)?;
        let item = sample + gap + tw as i32;
        if x > margin && x + item > width as i32 - margin {
            x = margin;
            row += 1;
        }
        placed.push((x, row));
        x += item + spacing;
    }
    let top = s.pxi(10.0);
    for (i, (label, &(x, row))) in fig.labels.iter().zip(&placed).enumerate() {
        let y = top + row * row_h + row_h / 2;
        area.draw(&PathElement::new(
            vec![(x, y), (x + sample, y)],
            rgb(i).stroke_width(s.pxi(3.0).max(2) as u32),
        ))?;
        mark(area, (x + sample / 2, y), i, s.pxi(5.0).max(3))?;
        area.draw(&Text::new(
            label.as_str(),
            (x + sample + gap, y),
            style.pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    let rows = if fig.labels.is_empty() { 0 } else { row + 1 };
    Ok(top + rows * row_h + s.pxi(6.0))
}

/// One panel: axes, one line per run, and its notes.
fn panel<DB: DrawingBackend, Y>(
    cell: &DrawingArea<DB, Shift>,
    spec: &PanelSpec,
    data: &PanelData,
    x: Range<f64>,
    y: Y,
    s: &Scale,
    y_format: &dyn Fn(&f64) -> String,
) -> DrawResult<PixelRect, DB>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let footnote_h = if data.footnote.is_some() { s.pxi(22.0) } else { 0 };
    let mut chart = ChartBuilder::on(cell)
        .caption(&spec.title, (FAMILY, s.px(21.0)).into_font().color(&BLACK))
        .margin(s.pxi(10.0))
        .margin_right(s.pxi(24.0))
        .margin_bottom(s.pxi(10.0) + footnote_h)
        .x_label_area_size(s.pxi(48.0))
        .y_label_area_size(s.pxi(78.0))
        .build_cartesian_2d(x, y)?;

    let label_style = (FAMILY, s.px(15.0)).into_font().color(&BLACK);
    let desc_style = (FAMILY, s.px(16.0)).into_font().color(&BLACK);
    let empty = data.empty_note.is_some();
    let blank = |_: &f64| String::new();
    let x_format = |v: &f64| number(*v);
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(&spec.x_label)
        .y_desc(&spec.y_label)
        .label_style(label_style)
        .axis_desc_style(desc_style)
        .light_line_style(RGBColor(244, 244, 244))
        .max_light_lines(if spec.log_y { 9 } else { 1 })
        .bold_line_style(RGBColor(215, 215, 215))
        .x_labels(6)
        .y_labels(6);
    if empty {
        mesh.disable_mesh().x_label_formatter(&blank).y_label_formatter(&blank);
    } else {
        mesh.x_label_formatter(&x_format).y_label_formatter(y_format);
    }
    mesh.draw()?;

    // At least 2 pixels: plotters draws thinner lines anti-aliased, faint on a bitmap.
    let width = s.pxi(2.0).max(2) as u32;
    for (i, points) in data.series.iter().enumerate() {
        if points.len() > 1 {
            chart.draw_series(LineSeries::new(points.iter().copied(), rgb(i).stroke_width(width)))?;
        }
    }
    let plot = chart.plotting_area();
    for (i, points) in data.series.iter().enumerate() {
        for p in marked(points, i, data.series.len()) {
            mark(plot, p, i, s.pxi(5.0).max(3))?;
        }
    }

    let (px, py) = plot.get_pixel_range();
    let note_style = (FAMILY, s.px(17.0)).into_font().color(&RGBColor(90, 90, 90));
    if let Some(note) = &data.empty_note {
        let centre = ((px.start + px.end) / 2, (py.start + py.end) / 2);
        cell.draw(&Text::new(
            note.as_str(),
            rel(cell, centre),
            note_style.pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
    }
    if let Some(note) = &data.footnote {
        let (_, ch) = cell.dim_in_pixel();
        let at = (s.pxi(12.0), ch as i32 - footnote_h / 2 - s.pxi(4.0));
        let small = (FAMILY, s.px(14.0)).into_font().color(&RGBColor(90, 90, 90));
        cell.draw(&Text::new(note.as_str(), at, small.pos(Pos::new(HPos::Left, VPos::Center))))?;
    }
    Ok(PixelRect { x: px, y: py })
}

/// A point given in figure pixels, as coordinates relative to `cell` (what `cell.draw` takes).
fn rel<DB: DrawingBackend>(cell: &DrawingArea<DB, Shift>, (x, y): (i32, i32)) -> (i32, i32) {
    let (x0, y0) = cell.get_base_pixel();
    (x - x0, y - y0)
}

/// A tick label: as few digits as the value needs (`0`, `0.5`, `400`, `1.2e6`).
fn number(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e6).contains(&a) {
        return format!("{v:.1e}");
    }
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::{marked, number};

    #[test]
    fn markers_of_coinciding_runs_fall_on_different_points() {
        let line: Vec<(f64, f64)> = (0..51).map(|k| (k as f64, 1.0)).collect();
        let xs = |run| marked(&line, run, 3).map(|p| p.0 as usize).collect::<Vec<_>>();
        let (a, b, c) = (xs(0), xs(1), xs(2));
        assert_eq!(a, [0, 6, 12, 18, 24, 30, 36, 42, 48]);
        assert_eq!(b, [2, 8, 14, 20, 26, 32, 38, 44, 50]);
        assert_eq!(c[0], 4);
        assert_eq!(marked(&line[..1], 2, 3).count(), 1, "a single point is always marked");
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(number(0.0), "0");
        assert_eq!(number(400.0), "400");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(0.125), "0.125");
        assert_eq!(number(2.5e7), "2.5e7");
        assert_eq!(number(-1.5), "-1.5");
    }
}
