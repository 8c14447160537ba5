//! Resuming a run from its last complete checkpoint: the coordinator's own (membership and the
//! record so far) and every live member's of the same iteration.

use std::path::{Path, PathBuf};

use dprox_eval::Recorder;
use dprox_prepare::Prepared;

use crate::CoordinatorError;
use crate::evaluator::checkpoints;
use crate::shared::CoordinatorCheckpoint;
use crate::state::Membership;

/// Where a resumed run picks up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumePoint {
    /// The iteration it starts at (every live member starts from its checkpoint of it).
    pub iteration: u64,
    /// The members taking part then, ascending.
    pub live: Vec<usize>,
    /// Nodes away then whose scheduled rejoin is still ahead (they are started to join).
    pub rejoining: Vec<usize>,
}

/// The node checkpoint of `id` at iteration `t` in run folder `out`.
fn node_checkpoint(out: &Path, id: usize, t: u64) -> PathBuf {
    out.join("checkpoints").join(format!("node-{id}")).join(format!("iter-{t:012}.ckpt"))
}

/// The latest intact coordinator checkpoint in `out` whose live members all have theirs.
fn latest(out: &Path) -> Result<CoordinatorCheckpoint, CoordinatorError> {
    let folder = out.join("checkpoints").join("coordinator");
    let mut why = format!("no complete checkpoint to resume from in {}", folder.display());
    for (t, path) in checkpoints(&folder).into_iter().rev() {
        match dprox_eval::checkpoint::read::<CoordinatorCheckpoint>(&path) {
            Ok(c) => match c.membership.live.iter().find(|&&j| !node_checkpoint(out, j, t).exists()) {
                None => return Ok(c),
                Some(j) => {
                    why = format!("the checkpoint of iteration {t} lacks node {j}'s state");
                }
            },
            Err(e) => why = format!("{}: {e}", path.display()),
        }
    }
    Err(CoordinatorError::Resume(why))
}

/// Where the run in `out` resumes: what `dprox launch --resume` starts.
pub fn resume_point(out: &Path) -> Result<ResumePoint, CoordinatorError> {
    let c = latest(out)?;
    let m = &c.membership;
    let rejoining = (0..m.retired.len())
        .filter(|j| !m.live.contains(j) && m.scheduled_rejoin(*j, c.iteration).is_some())
        .collect();
    Ok(ResumePoint { iteration: c.iteration, live: m.live.iter().copied().collect(), rejoining })
}

/// The membership, start and record of the run in `out`, from its last complete checkpoint.
/// Node checkpoints after it (written by the interrupted run past its last complete one) are
/// removed: the resumed run computes those iterations again, and a rejoining node must not
/// start from a state of the interrupted future.
pub(crate) fn resumed(
    run: &Prepared,
    out: &Path,
) -> Result<(Membership, Option<u64>, Recorder), CoordinatorError> {
    let c = latest(out)?;
    let summary: dprox_eval::Summary = serde_json::from_str(&c.summary)
        .map_err(|e| CoordinatorError::Resume(format!("the checkpoint's summary: {e}")))?;
    tracing::info!("resuming {} from its checkpoint at iteration {}", run.name(), c.iteration);
    for id in 0..run.n() {
        let dir = out.join("checkpoints").join(format!("node-{id}"));
        for (t, path) in checkpoints(&dir) {
            if t > c.iteration {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    let recorder = Recorder::resume(out, summary, c.iteration)?;
    Ok((c.membership, Some(c.iteration), recorder))
}
