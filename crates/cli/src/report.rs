//! The result summary printed at the end of a run.

use std::path::Path;

use dprox_eval::Summary;

/// Prints the final metrics and where the files are.
pub fn print_summary(s: &Summary, out: &Path, quiet: bool) {
    let Some(last) = &s.last else { return };
    let e = &last.eval;
    if quiet {
        println!(
            "{} {}: objective {:.6} consensus {:.3e} test_accuracy {} bytes {}",
            s.name,
            s.algorithm,
            e.objective,
            e.consensus_error,
            e.test_accuracy.map(|a| format!("{a:.4}")).unwrap_or_else(|| "-".into()),
            s.bytes_sent
        );
        return;
    }
    println!();
    println!("run            {} ({}, {} nodes, {} edges)", s.name, s.algorithm, s.nodes, s.edges);
    println!("iterations     {}", s.iterations);
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
