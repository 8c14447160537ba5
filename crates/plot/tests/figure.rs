//! Figures drawn from metrics.csv files written the way runs write them: PNG pixels per panel,
//! SVG text (legend, captions: the bundled font at work), empty panels, and the errors.

use std::path::{Path, PathBuf};

use dprox_eval::{Evaluation, METRICS_HEADER, MetricsRow, MetricsWriter};
use dprox_plot::{Format, PlotError, PlotOptions, Plotted, plot};
use tempfile::TempDir;

/// One synthetic run: `rows` evaluations every 10 iterations, converging at `rate`.
struct Fake {
    name: &'static str,
    algorithm: &'static str,
    rate: f64,
    /// None: no test set (empty test_accuracy cells, as the simulator writes them).
    accuracy: bool,
    /// Consensus error exactly zero throughout (all-reduce).
    exact_consensus: bool,
}

impl Fake {
    fn new(name: &'static str, algorithm: &'static str, rate: f64) -> Fake {
        Fake { name, algorithm, rate, accuracy: true, exact_consensus: false }
    }

    /// Writes `root/NAME/metrics.csv` with MetricsWriter, and `summary.json` with the name and
    /// algorithm, and returns the folder.
    fn write(&self, root: &Path) -> PathBuf {
        let dir = root.join(self.name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = MetricsWriter::create(&dir.join("metrics.csv")).unwrap();
        for k in 0..=20u64 {
            let t = k as f64;
            let objective = 0.4 + 2.0 * (-self.rate * t).exp();
            // Zero at iteration 0 (every node starts at the same point), as real runs do.
            let consensus = if k == 0 || self.exact_consensus { 0.0 } else { (-self.rate * 2.0 * t).exp() };
            w.write(&MetricsRow {
                iter: 10 * k,
                eval: Evaluation {
                    objective,
                    loss: objective - 0.1,
                    consensus_error: consensus,
                    grad_mapping: 1.0 / (1.0 + t),
                    test_accuracy: self.accuracy.then(|| 0.9 - 0.8 * (-self.rate * t).exp()),
                    density: 0.5,
                },
                bytes_sent: 1000 * k * (1 + (self.rate * 10.0) as u64),
                sim_time_s: 0.01 * t / self.rate,
                wall_time_s: 0.002 * t,
            })
            .unwrap();
        }
        let summary =
            serde_json::json!({ "name": self.name, "algorithm": self.algorithm, "status": "completed" });
        std::fs::write(dir.join("summary.json"), summary.to_string()).unwrap();
        dir
    }
}

fn three_runs(root: &Path) -> Vec<PathBuf> {
    vec![
        Fake::new("fast", "dproxsgt", 0.3).write(root),
        Fake::new("slow-choco", "choco", 0.1).write(root),
        Fake { accuracy: false, exact_consensus: true, ..Fake::new("central", "allreduce", 0.2) }.write(root),
    ]
}

fn options(width: u32, height: u32) -> PlotOptions {
    PlotOptions { width, height, ..PlotOptions::default() }
}

/// A decoded RGB image.
struct Image {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl Image {
    fn read(path: &Path) -> Image {
        let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
        let mut reader = decoder.read_info().expect("a PNG header");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("the PNG decodes");
        assert_eq!(info.color_type, png::ColorType::Rgb, "8-bit RGB");
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        buf.truncate(info.buffer_size());
        Image { width: info.width, height: info.height, rgb: buf }
    }

    fn pixel(&self, x: i32, y: i32) -> (u8, u8, u8) {
        let k = 3 * (y as usize * self.width as usize + x as usize);
        (self.rgb[k], self.rgb[k + 1], self.rgb[k + 2])
    }

    /// Pixels inside `x` by `y` that satisfy `pred`.
    fn count(
        &self,
        x: std::ops::Range<i32>,
        y: std::ops::Range<i32>,
        pred: impl Fn((u8, u8, u8)) -> bool,
    ) -> usize {
        let x = x.start.max(0)..x.end.min(self.width as i32);
        let y = y.start.max(0)..y.end.min(self.height as i32);
        y.flat_map(|r| x.clone().map(move |c| (c, r))).filter(|&(c, r)| pred(self.pixel(c, r))).count()
    }
}

/// The contents of the SVG's `<text>` elements, trimmed.
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim().to_string()))
        .collect()
}

/// Within 40 of `want` in each channel: a line pixel, allowing for blending at its edges.
fn near(c: (u8, u8, u8), want: (u8, u8, u8)) -> bool {
    c.0.abs_diff(want.0) < 40 && c.1.abs_diff(want.1) < 40 && c.2.abs_diff(want.2) < 40
}

fn panel<'a>(p: &'a Plotted, title: &str) -> &'a dprox_plot::PanelReport {
    p.panels.iter().find(|q| q.title == title).unwrap_or_else(|| panic!("no panel {title}: {p:#?}"))
}

#[test]
fn png_has_the_size_asked_and_every_run_in_every_panel_it_belongs_to() {
    let dir = TempDir::new().unwrap();
    let runs = three_runs(dir.path());
    let out = dir.path().join("figs/compare.png"); // the folder is created
    let plotted = plot(&runs, &out, &options(1200, 700)).unwrap();
    assert_eq!(plotted.format, Format::Png);
    let labels: Vec<&str> = plotted.runs.iter().map(|r| r.label.as_str()).collect();
    // The algorithm is added where the name does not say it.
    assert_eq!(labels, ["fast (dproxsgt)", "slow-choco", "central (allreduce)"]);

    let img = Image::read(&out);
    assert_eq!((img.width, img.height), (1200, 700));
    assert_eq!(plotted.panels.len(), 6);
    let titles: Vec<&str> = plotted.panels.iter().map(|p| p.title.as_str()).collect();
    assert_eq!(
        titles,
        [
            "objective",
            "test accuracy",
            "consensus error",
            "bytes sent",
            "objective vs time",
            "consensus error vs time"
        ]
    );

    for p in &plotted.panels {
        let (w, h) = (p.area.x.end - p.area.x.start, p.area.y.end - p.area.y.start);
        assert!(w > 200 && h > 150, "panel {} is {w} x {h}", p.title);
        for (i, run) in plotted.runs.iter().enumerate() {
            let n = img.count(p.area.x.clone(), p.area.y.clone(), |c| near(c, run.color));
            if p.shown.contains(&i) {
                assert!(n >= 50, "panel {}: only {n} pixels of {} ({:?})", p.title, run.label, run.color);
            } else {
                assert_eq!(n, 0, "panel {}: {} has nothing to show but drew {n} pixels", p.title, run.label);
            }
        }
    }
    // Without a test set, and with a consensus error of exactly zero (nothing on a log axis),
    // `central` is left out of those panels, and the footnote says so.
    let everyone = vec![0, 1, 2];
    for title in ["objective", "bytes sent", "objective vs time"] {
        assert_eq!(panel(&plotted, title).shown, everyone, "{title}");
        assert_eq!(panel(&plotted, title).note, None, "{title}");
    }
    for title in ["test accuracy", "consensus error", "consensus error vs time"] {
        let p = panel(&plotted, title);
        assert_eq!(p.shown, [0, 1], "{title}");
        assert!(p.note.as_deref().is_some_and(|n| n.contains("central")), "{title}: {:?}", p.note);
    }
    assert!(panel(&plotted, "consensus error").note.as_deref().unwrap().contains("positive"));

    // Text drawn with the bundled font: dark pixels in the legend strip above the panels.
    let top = plotted.panels.iter().map(|p| p.area.y.start).min().unwrap();
    let dark = img.count(0..1200, 0..top.min(60), |(r, g, b)| r < 100 && g < 100 && b < 100);
    assert!(dark > 100, "the legend has {dark} dark pixels: no text?");
}

#[test]
fn svg_holds_the_legend_and_the_captions_as_text() {
    let dir = TempDir::new().unwrap();
    let runs = three_runs(dir.path());
    let out = dir.path().join("compare.SVG");
    let opts = PlotOptions { title: Some("three runs".into()), ..PlotOptions::default() };
    let plotted = plot(&runs, &out, &opts).unwrap();
    assert_eq!(plotted.format, Format::Svg);
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..200.min(svg.len())]);
    assert!(svg.contains(r#"width="1800" height="1000""#), "{}", &svg[..200.min(svg.len())]);
    let texts = svg_texts(&svg);
    for text in [
        "three runs",
        "fast (dproxsgt)",
        "slow-choco",
        "central (allreduce)",
        "objective",
        "test accuracy (%)",
        "consensus error (log)",
        "bytes sent (kB)",
        "simulated time (s)",
        "iteration",
        "1e-5",
    ] {
        assert!(texts.iter().any(|t| t == text), "the SVG lacks the text {text:?}: {texts:?}");
    }
    assert!(svg.contains("sans-serif"), "text without its font family");
    for run in &plotted.runs {
        let (r, g, b) = run.color;
        assert!(svg.contains(&format!("#{r:02X}{g:02X}{b:02X}")), "no line of {}", run.label);
    }
}

#[test]
fn missing_columns_make_empty_panels_with_a_note() {
    let dir = TempDir::new().unwrap();
    // A metrics.csv of another shape: no test_accuracy column, no sim_time_s.
    let run = dir.path().join("old");
    std::fs::create_dir(&run).unwrap();
    let mut csv = String::from("iter,objective,consensus_error,bytes_sent,wall_time_s\n");
    for k in 0..10 {
        csv += &format!(
            "{},{},{},{},{}\n",
            5 * k,
            1.0 / (1.0 + k as f64),
            0.1 / (1.0 + k as f64),
            100 * k,
            0.1 * k as f64
        );
    }
    csv += "50,NaN,,,0.9\n"; // non-finite and empty cells are skipped, not errors
    std::fs::write(run.join("metrics.csv"), csv).unwrap();
    let out = dir.path().join("old.png");
    let plotted = plot(&[&run], &out, &options(900, 600)).unwrap();
    assert_eq!(plotted.runs[0].label, "old", "the folder names a run without summary.json");

    let acc = panel(&plotted, "test accuracy");
    assert!(acc.shown.is_empty());
    assert_eq!(acc.note.as_deref(), Some("no test_accuracy column in metrics.csv"));
    let time = panel(&plotted, "objective vs time");
    assert_eq!(time.note.as_deref(), Some("no sim_time_s column in metrics.csv"));
    assert!(panel(&plotted, "objective").shown == [0]);

    let img = Image::read(&out);
    let color = plotted.runs[0].color;
    for p in [acc, time] {
        assert_eq!(img.count(p.area.x.clone(), p.area.y.clone(), |c| near(c, color)), 0, "{}", p.title);
        // The note is drawn in the middle of the panel.
        let dark = img.count(p.area.x.clone(), p.area.y.clone(), |(r, g, b)| r < 160 && r == g && g == b);
        assert!(dark > 50, "{}: no note drawn ({dark} grey pixels)", p.title);
    }

    // With --time wall, the same file has its time panels.
    let wall = PlotOptions { time: dprox_plot::TimeAxis::Wall, ..options(900, 600) };
    let plotted = plot(&[&run], &dir.path().join("wall.svg"), &wall).unwrap();
    assert_eq!(panel(&plotted, "objective vs time").shown, [0]);
}

#[test]
fn test_accuracy_cells_all_empty_is_a_note_too() {
    let dir = TempDir::new().unwrap();
    let run = Fake { accuracy: false, ..Fake::new("no-test", "dpsgd", 0.2) }.write(dir.path());
    let plotted = plot(&[&run], &dir.path().join("f.svg"), &PlotOptions::default()).unwrap();
    assert_eq!(panel(&plotted, "test accuracy").note.as_deref(), Some("no values of test_accuracy"));
}

#[test]
fn errors_name_what_is_wrong() {
    let dir = TempDir::new().unwrap();
    let run = Fake::new("a", "dproxsgt", 0.2).write(dir.path());

    for bad in ["figure.jpg", "figure", "figure.png.txt"] {
        let out = dir.path().join(bad);
        let e = plot(&[&run], &out, &PlotOptions::default()).unwrap_err();
        assert!(matches!(e, PlotError::UnsupportedFormat { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains(&out.display().to_string()) && msg.contains(".png or .svg"), "{msg}");
        assert!(!out.exists());
    }
    let e = plot(&[&run], &dir.path().join("f.jpg"), &PlotOptions::default()).unwrap_err();
    assert!(e.to_string().contains("`.jpg`"), "{e}");

    let missing = dir.path().join("no-such-run");
    let out = dir.path().join("f.png");
    let e = plot(&[run.clone(), missing.clone()], &out, &PlotOptions::default()).unwrap_err();
    assert!(matches!(e, PlotError::MissingDir { .. }), "{e:?}");
    assert_eq!(e.to_string(), format!("run folder {} does not exist", missing.display()));
    assert!(!out.exists(), "nothing is drawn when a run is missing");

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = plot(&[&empty], &out, &PlotOptions::default()).unwrap_err();
    assert!(matches!(e, PlotError::MissingMetrics { .. }), "{e:?}");
    assert!(e.to_string().contains(&empty.join("metrics.csv").display().to_string()), "{e}");

    std::fs::write(empty.join("metrics.csv"), format!("{METRICS_HEADER}\n")).unwrap();
    let e = plot(&[&empty], &out, &PlotOptions::default()).unwrap_err();
    assert!(matches!(e, PlotError::NoRows { .. }), "{e:?}");

    std::fs::write(run.join("summary.json"), "{ not json").unwrap();
    let e = plot(&[&run], &out, &PlotOptions::default()).unwrap_err();
    assert!(matches!(e, PlotError::BadSummary { .. }), "{e:?}");
    assert!(e.to_string().contains("summary.json"), "{e}");

    let tiny = PlotOptions { width: 0, ..PlotOptions::default() };
    assert!(matches!(plot(&[&run], &out, &tiny), Err(PlotError::TooSmall { width: 0, .. })));

    let none: [&Path; 0] = [];
    assert!(matches!(plot(&none, &out, &PlotOptions::default()), Err(PlotError::NoRuns)));
}

#[test]
fn runs_with_the_same_name_are_told_apart() {
    let dir = TempDir::new().unwrap();
    let a = Fake::new("same", "dproxsgt", 0.2).write(&dir.path().join("x"));
    let b = Fake::new("same", "dproxsgt", 0.3).write(&dir.path().join("y"));
    let plotted = plot(&[&a, &b], &dir.path().join("f.svg"), &PlotOptions::default()).unwrap();
    assert_ne!(plotted.runs[0].label, plotted.runs[1].label);
    assert!(plotted.runs[1].label.contains(&b.display().to_string()), "{}", plotted.runs[1].label);
}
