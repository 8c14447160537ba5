//! Checkpoint files: a value (a node's state, a simulation's, the coordinator's record) written
//! atomically (a temporary file renamed into place, so a reader never sees half) with a checksum,
//! and read back only when the checksum matches.
//!
//! The format: the magic `DPXCKPT1`, the CRC-32 of the payload (4 bytes, little endian), then the
//! payload (bincode of the value). Floats travel as their bits, so a resumed run continues from
//! exactly the same numbers.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

const MAGIC: &[u8; 8] = b"DPXCKPT1";

/// A checkpoint that could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be written or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file is not a complete, intact checkpoint (truncated, corrupted, another format).
    #[error("{}: not an intact checkpoint ({reason})", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Writes `value` to `path` atomically, with its checksum.
pub fn write<T: Serialize>(path: &Path, value: &T) -> Result<(), CheckpointError> {
    let io = |source| CheckpointError::Io { path: path.to_path_buf(), source };
    let payload = bincode::serialize(value).map_err(|e| io(std::io::Error::other(e)))?;
    let mut bytes = Vec::with_capacity(payload.len() + 12);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, &bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Reads the value at `path`, refusing a file whose checksum does not match.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T, CheckpointError> {
    let bytes =
        std::fs::read(path).map_err(|source| CheckpointError::Io { path: path.to_path_buf(), source })?;
    let corrupt = |reason: String| CheckpointError::Corrupt { path: path.to_path_buf(), reason };
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(corrupt("no checkpoint header".into()));
    }
    let sum = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    let payload = &bytes[12..];
    if crc32fast::hash(payload) != sum {
        return Err(corrupt("checksum mismatch".into()));
    }
    bincode::deserialize(payload).map_err(|e| corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_reads_back_bit_for_bit_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c/x.ckpt");
        let value = (7u64, vec![0.1f32, -0.0, f32::MIN_POSITIVE], vec![1e-300f64, 3.5]);
        write(&p, &value).unwrap();
        let back: (u64, Vec<f32>, Vec<f64>) = read(&p).unwrap();
        assert_eq!(back.0, 7);
        assert_eq!(
            back.1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            value.1.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(back.2, value.2);
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        let e = read::<(u64, Vec<f32>, Vec<f64>)>(&p).unwrap_err().to_string();
        assert!(e.ends_with("not an intact checkpoint (checksum mismatch)"), "{e}");
        std::fs::write(&p, &bytes[..5]).unwrap();
        assert!(read::<u64>(&p).unwrap_err().to_string().contains("no checkpoint header"));
    }
}
