//! The config as a run folder keeps it: every data path absolute, so that the copy runs from
//! anywhere (`dprox sim OUT/config.toml` repeats the run), with the command line's overrides
//! already applied.

use std::path::Path;

use dprox_config::Config;

use crate::Prepared;
use crate::data::resolve;

impl Prepared {
    /// The config with `[run] name` set to the run's name, and every data path (`[data] train`, `labels`, `test`, `test_labels`, and each
    /// `[[nodes]]` entry's `train` and `labels`) resolved against the config's folder.
    pub fn resolved_config(&self) -> Config {
        let mut c = self.config.clone();
        // The run keeps its name wherever the copy is run from.
        c.run.name = Some(self.name.clone());
        let abs = |p: &mut Option<String>| {
            if let Some(path) = p {
                *path = resolve(&self.base, path).display().to_string();
            }
        };
        abs(&mut c.data.train);
        abs(&mut c.data.labels);
        abs(&mut c.data.test);
        abs(&mut c.data.test_labels);
        for s in &mut c.nodes {
            abs(&mut s.train);
            abs(&mut s.labels);
        }
        c
    }

    /// Writes [`Prepared::resolved_config`] as TOML to `path` (atomically: written beside it and
    /// renamed, so a reader never sees half).
    pub fn write_config(&self, path: &Path) -> std::io::Result<()> {
        let text = toml::to_string(&self.resolved_config()).map_err(std::io::Error::other)?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let header = format!(
            "# The config of run `{}`, as it ran: data paths resolved, command-line overrides applied.\n",
            self.name
        );
        std::fs::write(&tmp, header + &text)?;
        std::fs::rename(&tmp, path)
    }
}
