//! MNIST's IDX binary format: a big-endian header, then raw unsigned bytes.

use std::path::Path;

use ndarray::Array2;

use crate::dataset::{Dataset, Features};
use crate::error::DataError;
use crate::read::read_all;

/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;
/// MNIST has ten digit classes.
const CLASSES: usize = 10;

/// Loads an MNIST-style image/label pair of IDX files (plain or gzip, detected by content).
///
/// Features are dense `f32` raw pixel values `0..=255`, one row per image of `rows * cols`
/// pixels in row-major order; scale them with [`crate::fit_scaler`]. The data set has 10 classes
/// and every label must be below 10. Bytes after the declared data are ignored.
pub fn load_idx(images_path: impl AsRef<Path>, labels_path: impl AsRef<Path>) -> Result<Dataset, DataError> {
    let (ip, lp) = (images_path.as_ref(), labels_path.as_ref());
    let images = read_all(ip)?;
    let labels = read_all(lp)?;
    let ips = ip.display().to_string();
    let lps = lp.display().to_string();

    let dims = header(&images, &ips, IDX_IMAGES_MAGIC, 3, "u8 images, n x rows x cols")?;
    let (n, pixels) = (dims[0], dims[1] * dims[2]);
    // Saturate rather than overflow on a corrupt header: the length check then reports it.
    let total = n.saturating_mul(pixels);
    let image_data = body(&images, &ips, 16, total, "the image data")?;
    let label_dims = header(&labels, &lps, IDX_LABELS_MAGIC, 1, "u8 labels")?;
    if label_dims[0] != n {
        return Err(DataError::CountMismatch {
            images_path: ips,
            images: n,
            labels_path: lps,
            labels: label_dims[0],
        });
    }
    let label_data = body(&labels, &lps, 8, n, "the label data")?;

    let mut targets = Vec::with_capacity(n);
    for (i, &l) in label_data.iter().enumerate() {
        if usize::from(l) >= CLASSES {
            return Err(DataError::LabelOutOfRange {
                path: lps,
                line: i + 1,
                label: l.into(),
                classes: CLASSES,
            });
        }
        targets.push(f32::from(l));
    }
    let pixels_f32: Vec<f32> = image_data.iter().map(|&b| f32::from(b)).collect();
    let matrix = Array2::from_shape_vec((n, pixels), pixels_f32).expect("length checked above");
    Ok(Dataset { features: Features::Dense(matrix), targets, classes: Some(CLASSES) })
}

/// Checks the magic number and returns the `ndim` big-endian dimensions that follow it.
fn header(
    bytes: &[u8],
    path: &str,
    magic: u32,
    ndim: usize,
    what: &'static str,
) -> Result<Vec<usize>, DataError> {
    let need = 4 + 4 * ndim;
    if bytes.len() < 4 {
        return Err(DataError::Truncated {
            path: path.into(),
            what: "the IDX magic number",
            expected: 4,
            got: bytes.len(),
        });
    }
    let found = be_u32(&bytes[..4]);
    if found != magic {
        return Err(DataError::BadMagic { path: path.into(), found, expected: magic, what });
    }
    if bytes.len() < need {
        return Err(DataError::Truncated {
            path: path.into(),
            what: "the IDX header",
            expected: need,
            got: bytes.len(),
        });
    }
    Ok((0..ndim).map(|d| be_u32(&bytes[4 + 4 * d..8 + 4 * d]) as usize).collect())
}

/// The `len` data bytes after a header of `start` bytes.
fn body<'a>(
    bytes: &'a [u8],
    path: &str,
    start: usize,
    len: usize,
    what: &'static str,
) -> Result<&'a [u8], DataError> {
    let end = start.saturating_add(len);
    bytes.get(start..end).ok_or_else(|| DataError::Truncated {
        path: path.into(),
        what,
        expected: end,
        got: bytes.len(),
    })
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
