//! What every deployment mounts: `config.toml` (data paths rewritten to `MOUNT/data/`), the
//! data files, `tls/STEM/` per identity (the CA certificate and that identity's key and
//! certificate) and `tls/nodes/` (every node's, for schedulers that cannot mount a different
//! folder per node), the CA's key kept apart in `ca/`, `run/` for the results, and
//! `prometheus.yml`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use dprox_prepare::Prepared;

/// A deployment's files, written.
pub struct Bundle {
    /// The folder on this machine.
    pub dir: PathBuf,
    /// Where it is mounted where the processes run.
    pub mount: PathBuf,
    /// The run.
    pub run: Prepared,
    /// Whether it holds TLS files.
    pub tls: bool,
}

impl Bundle {
    /// Writes the bundle of `config` into `dir`, for processes that see it at `mount`.
    pub fn write(config: &Path, dir: &Path, mount: &Path, tls: bool) -> anyhow::Result<Bundle> {
        let run = Prepared::from_file(config)?;
        std::fs::create_dir_all(dir.join("data")).with_context(|| format!("creating {}", dir.display()))?;
        let b = Bundle { dir: dir.to_path_buf(), mount: mount.to_path_buf(), run, tls };
        b.write_config()?;
        if tls {
            b.write_tls()?;
        }
        let out = dir.join("run");
        std::fs::create_dir_all(&out)?;
        // The processes run as an unprivileged user of the image: they must be able to write.
        set_mode(&out, 0o777)?;
        Ok(b)
    }

    /// `rel` as the processes see it.
    pub fn mounted(&self, rel: &str) -> String {
        self.mount.join(rel).display().to_string()
    }

    /// The config with each data file copied into `data/` and its path rewritten.
    fn write_config(&self) -> anyhow::Result<()> {
        let mut c = self.run.resolved_config();
        let copy = |p: &mut Option<String>| -> anyhow::Result<()> {
            let Some(path) = p else { return Ok(()) };
            let name = Path::new(path.as_str()).file_name().context("a data path without a file name")?;
            let to = self.dir.join("data").join(name);
            std::fs::copy(path.as_str(), &to).with_context(|| format!("copying {path}"))?;
            set_mode(&to, 0o644)?;
            *path = self.mount.join("data").join(name).display().to_string();
            Ok(())
        };
        for p in [&mut c.data.train, &mut c.data.labels, &mut c.data.test, &mut c.data.test_labels] {
            copy(p)?;
        }
        for s in &mut c.nodes {
            copy(&mut s.train)?;
            copy(&mut s.labels)?;
        }
        let text = toml::to_string(&c)?;
        let to = self.dir.join("config.toml");
        std::fs::write(&to, format!("# Deployed config of run `{}`.\n{text}", self.run.name()))?;
        set_mode(&to, 0o644)?;
        Ok(())
    }

    /// The CA and identities in `ca/` (made once, kept), copied per identity into `tls/`.
    fn write_tls(&self) -> anyhow::Result<()> {
        let ca = self.dir.join("ca");
        let n = self.run.n();
        dprox_net::certs::make(&ca, n)?;
        let stems: Vec<String> =
            (0..n).map(|i| format!("node-{i}")).chain(["coordinator".into(), "operator".into()]).collect();
        for stem in &stems {
            self.copy_identity(&ca, &self.dir.join("tls").join(stem), std::slice::from_ref(stem))?;
        }
        let nodes: Vec<String> = (0..n).map(|i| format!("node-{i}")).collect();
        self.copy_identity(&ca, &self.dir.join("tls/nodes"), &nodes)
    }

    /// Copies the CA certificate and the keys and certificates of `stems` into `to`. The copies
    /// are readable by the image's unprivileged user (each folder is mounted only where it is
    /// needed; `ca/` keeps the originals at 0600).
    fn copy_identity(&self, ca: &Path, to: &Path, stems: &[String]) -> anyhow::Result<()> {
        std::fs::create_dir_all(to)?;
        let mut files = vec!["ca.pem".to_string()];
        for s in stems {
            files.extend([format!("{s}.pem"), format!("{s}.key")]);
        }
        for f in files {
            std::fs::copy(ca.join(&f), to.join(&f))?;
            set_mode(&to.join(&f), 0o644)?;
        }
        set_mode(to, 0o755)
    }
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}
