//! The node's own metrics file, `nodes/node-ID.csv`: a row per evaluation point.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::NodeError;

/// `nodes/node-ID.csv` under the run folder, or nothing when the node has no folder.
pub(crate) struct NodeRecord {
    file: Option<(std::fs::File, PathBuf)>,
}

impl NodeRecord {
    /// Creates the file with its header; with `append` (a node joining or resuming), adds to the
    /// file of its earlier life instead, when there is one.
    pub(crate) fn create(out: Option<&Path>, id: usize, append: bool) -> Result<NodeRecord, NodeError> {
        let Some(dir) = out else { return Ok(NodeRecord { file: None }) };
        let dir = dir.join("nodes");
        let path = dir.join(format!("node-{id}.csv"));
        let io = |source| NodeError::Record { path: path.clone(), source };
        std::fs::create_dir_all(&dir).map_err(io)?;
        if append && path.exists() {
            let f = std::fs::OpenOptions::new().append(true).open(&path).map_err(io)?;
            return Ok(NodeRecord { file: Some((f, path)) });
        }
        let mut f = std::fs::File::create(&path).map_err(io)?;
        writeln!(f, "iter,elapsed_s,compute_s,wait_s,payload_bytes,framed_bytes").map_err(io)?;
        Ok(NodeRecord { file: Some((f, path)) })
    }

    /// Appends a row.
    pub(crate) fn row(
        &mut self,
        t: u64,
        elapsed: f64,
        compute: f64,
        wait: f64,
        payload: u64,
        framed: u64,
    ) -> Result<(), NodeError> {
        if let Some((f, path)) = &mut self.file {
            writeln!(f, "{t},{elapsed},{compute},{wait},{payload},{framed}")
                .map_err(|source| NodeError::Record { path: path.clone(), source })?;
        }
        Ok(())
    }
}
