//! The result summary printed at the end of a run, and the progress bar's message.

use std::path::Path;

use dprox_eval::{MetricsRow, Summary};

/// `objective 0.41275  consensus 9.22e-10  test acc 91.30%`: a row as the progress bar shows it.
pub fn progress_message(r: &MetricsRow) -> String {
    format!(
        "objective {:.5}  consensus {:.2e}{}",
        r.eval.objective,
        r.eval.consensus_error,
        r.eval.test_accuracy.map(|a| format!("  test acc {:.2}%", 100.0 * a)).unwrap_or_default()
    )
}

/// One line: what `sim -q` prints (and `launch` always, with the size of the run when `size`).
pub fn summary_line(s: &Summary, size: bool) -> String {
    let what = match size {
        true => format!("{} {}: {}, {} iterations,", s.run.name, s.run.algorithm, nodes(s), s.iterations),
        false => format!("{} {}:", s.run.name, s.run.algorithm),
    };
    let Some(e) = s.last.as_ref().map(|l| &l.eval) else {
        return format!("{what} no metrics row");
    };
    format!(
        "{what} objective {:.6} consensus {:.3e} test_accuracy {} bytes {}",
        e.objective,
        e.consensus_error,
        e.test_accuracy.map(|a| format!("{a:.4}")).unwrap_or_else(|| "-".into()),
        s.bytes_sent
    )
}

/// "8 nodes", or for a run that ended with fewer, "ended with 7 of 8 nodes".
fn nodes(s: &Summary) -> String {
    match s.live_nodes < s.run.nodes {
        true => format!("ended with {} of {} nodes", s.live_nodes, s.run.nodes),
        false => format!("{} nodes", s.run.nodes),
    }
}

/// Prints the final metrics and where the files are.
pub fn print_summary(s: &Summary, out: &Path, quiet: bool) {
    let Some(last) = &s.last else { return };
    if quiet {
        println!("{}", summary_line(s, false));
        return;
    }
    let e = &last.eval;
    println!();
    println!(
        "run            {} ({}, {} nodes, {} edges)",
        s.run.name, s.run.algorithm, s.run.nodes, s.run.edges
    );
    println!("iterations     {}", s.iterations);
    if !s.events.is_empty() || s.live_nodes < s.run.nodes {
        let epochs = s.events.last().map_or(0, |e| e.epoch);
        println!(
            "membership     {} change(s), {epochs} epoch(s) after the first; ended with {} of {} nodes",
            s.events.len(),
            s.live_nodes,
            s.run.nodes
        );
    }
    println!("objective      {:.6}   (loss {:.6})", e.objective, e.loss);
    println!("consensus err  {:.3e}", e.consensus_error);
    println!("grad mapping   {:.3e}", e.grad_mapping);
    if let Some(a) = e.test_accuracy {
        println!("test accuracy  {:.2}%", 100.0 * a);
    }
    println!("density        {:.4}", e.density);
    println!("bytes sent     {} ({:.2} MB)", s.bytes_sent, s.bytes_sent as f64 / 1e6);
    println!("simulated time {:.3} s", s.sim_time_s);
    println!("wall time      {:.2} s", s.wall_time_s);
    println!("output         {}/metrics.csv, {}/summary.json", out.display(), out.display());
}
