//! `model.safetensors`: a run's average model x̄ in the safetensors format (what PyTorch users
//! load with `safetensors.torch.load_file`), one named f32 tensor per layer with its shape, and
//! back.

use std::collections::HashMap;
use std::path::Path;

use dprox_objective::TensorLayout;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// A model file that could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ModelError {
    /// The file.
    pub path: std::path::PathBuf,
    /// What went wrong.
    pub message: String,
}

fn error(path: &Path, message: impl std::fmt::Display) -> ModelError {
    ModelError { path: path.to_path_buf(), message: message.to_string() }
}

/// Writes `x` as the tensors of `layout` to `path` (atomically), with `metadata` in the header.
pub fn save(
    path: &Path,
    layout: &[TensorLayout],
    x: &[f32],
    metadata: HashMap<String, String>,
) -> Result<(), ModelError> {
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut views = Vec::with_capacity(layout.len());
    for t in layout {
        let data = bytes
            .get(4 * t.offset..4 * (t.offset + t.len()))
            .ok_or_else(|| error(path, format!("{} lies past the model's {} values", t.name, x.len())))?;
        let view = TensorView::new(Dtype::F32, t.shape.clone(), data).map_err(|e| error(path, e))?;
        views.push((t.name.clone(), view));
    }
    let out = safetensors::serialize(views, Some(metadata)).map_err(|e| error(path, e))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, out).and_then(|_| std::fs::rename(&tmp, path)).map_err(|e| error(path, e))
}

/// Reads the tensors of `layout` from `path` into one parameter vector of `dim` values; each
/// must be there, f32, with its shape.
pub fn load(path: &Path, layout: &[TensorLayout], dim: usize) -> Result<Vec<f32>, ModelError> {
    let bytes = std::fs::read(path).map_err(|e| error(path, e))?;
    let st =
        SafeTensors::deserialize(&bytes).map_err(|e| error(path, format!("not a safetensors file: {e}")))?;
    let mut x = vec![0.0f32; dim];
    for t in layout {
        let view = st
            .tensor(&t.name)
            .map_err(|_| error(path, format!("no tensor `{}` (the config's model has it)", t.name)))?;
        if view.dtype() != Dtype::F32 || view.shape() != t.shape.as_slice() {
            return Err(error(
                path,
                format!(
                    "tensor `{}` is {:?} {:?}, the model's is F32 {:?}",
                    t.name,
                    view.dtype(),
                    view.shape(),
                    t.shape
                ),
            ));
        }
        for (dst, c) in x[t.offset..t.offset + t.len()].iter_mut().zip(view.data().chunks_exact(4)) {
            *dst = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
    }
    Ok(x)
}
