//! `dprox plot DIR... --out FILE.png|.svg`: the runs' metrics side by side, drawn by `dprox_plot`.

use std::path::PathBuf;

use anyhow::Context;
use dprox_plot::{PlotOptions, TimeAxis};

/// Arguments of `dprox plot`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Run folders (the --out of `dprox sim` or `dprox launch`), one line each.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// The figure to write: .png or .svg.
    #[arg(long)]
    out: PathBuf,
    /// The x axis of the time panels: sim (sim_time_s) or wall (wall_time_s).
    #[arg(long, default_value = "sim", value_parser = ["sim", "wall"])]
    time: String,
    /// A title above the legend.
    #[arg(long)]
    title: Option<String>,
    /// Width in pixels.
    #[arg(long, default_value_t = PlotOptions::default().width)]
    width: u32,
    /// Height in pixels.
    #[arg(long, default_value_t = PlotOptions::default().height)]
    height: u32,
    /// Print nothing on success.
    #[arg(long, short)]
    quiet: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let options = PlotOptions {
        width: args.width,
        height: args.height,
        time: if args.time == "wall" { TimeAxis::Wall } else { TimeAxis::Simulated },
        title: args.title,
        progress: !args.quiet,
    };
    let plotted = dprox_plot::plot(&args.dirs, &args.out, &options)
        .with_context(|| format!("plotting into {}", args.out.display()))?;
    if !args.quiet {
        println!(
            "wrote {} ({} x {}), {} runs:",
            plotted.path.display(),
            plotted.width,
            plotted.height,
            plotted.runs.len()
        );
        for r in &plotted.runs {
            println!("  {}  ({})", r.label, r.dir.display());
        }
        for p in plotted.panels.iter().filter(|p| p.note.is_some()) {
            println!("note: {}: {}", p.title, p.note.as_deref().unwrap_or_default());
        }
    }
    Ok(())
}
