//! The run's average model at its last evaluation, kept as `model.safetensors`.

use std::path::Path;

use dprox_prepare::Prepared;

/// Writes `xbar` (nothing when no row was evaluated); a failure is logged, not fatal: the metrics
/// and the summary still say what the run computed.
pub(crate) fn write(run: &Prepared, path: &Path, xbar: &[f32]) {
    if xbar.is_empty() {
        return;
    }
    match run.save_model(path, xbar) {
        Ok(()) => tracing::info!("the average model is in {}", path.display()),
        Err(e) => tracing::error!("the average model could not be written: {e}"),
    }
}
