//! What `sim` and `launch` share: the config file and the command line's overrides of it.

use std::path::{Path, PathBuf};

use dprox_core::Algorithm;
use dprox_prepare::{Objectives, Prepared};

/// A run config with command-line overrides.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// The run config (TOML).
    pub config: PathBuf,
    /// Override run.algorithm (dproxsgt, cdproxsgt, dpsgd, choco, allreduce).
    #[arg(long, value_parser = parse_algorithm)]
    pub algorithm: Option<Algorithm>,
    /// Override run.iterations.
    #[arg(long)]
    pub iterations: Option<u64>,
}

fn parse_algorithm(s: &str) -> Result<Algorithm, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("unknown algorithm `{s}` (dproxsgt, cdproxsgt, dpsgd, choco, allreduce)"))
}

impl RunArgs {
    /// Loads the config, applies the overrides, and prepares the run (a custom objective from
    /// `objectives`). The run's name is `[run] name`, else the file's stem with the overriding
    /// algorithm appended.
    pub fn prepare(&self, objectives: &Objectives) -> anyhow::Result<Prepared> {
        let path = &self.config;
        let mut config = dprox_config::load(path)?;
        if let Some(a) = self.algorithm {
            config.run.algorithm = a;
        }
        if let Some(t) = self.iterations {
            config.run.iterations = t;
        }
        let name = config.run.name.clone().unwrap_or_else(|| {
            let stem = dprox_prepare::stem(path);
            match self.algorithm {
                Some(a) => format!("{stem}-{a}"),
                None => stem,
            }
        });
        let base = path.parent().unwrap_or(Path::new("."));
        Ok(Prepared::new(config, base, name)?.with_registered(objectives)?)
    }
}

/// Refuses to resume the run in `out` with a config other than the one it ran with (its
/// `config.toml`): a resumed run must be the same run.
pub fn check_resume(run: &Prepared, out: &Path) -> anyhow::Result<()> {
    let kept = out.join("config.toml");
    let ran = dprox_config::load(&kept)
        .map_err(|e| anyhow::anyhow!("cannot resume the run in {}: {e}", out.display()))?;
    let json = |c: &dprox_config::Config| serde_json::to_value(c).unwrap_or_default();
    anyhow::ensure!(
        json(&ran) == json(&run.resolved_config()),
        "cannot resume the run in {}: this config (with its overrides) differs from the one it ran with, {}; resume with that one",
        out.display(),
        kept.display()
    );
    Ok(())
}
