//! Opening files (plain or gzip), reading them line by line, and parsing numbers fast.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::error::{DataError, io_error};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const BUF: usize = 1 << 16;

/// Opens `path` for buffered reading, decompressing on the fly when the file starts with the gzip
/// magic bytes. The content decides, not the extension: `.csv` files that are secretly gzipped
/// (and `.gz` files that are not) are common after copying data around.
pub(crate) fn open(path: &Path) -> Result<Box<dyn BufRead>, DataError> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    let mut reader = BufReader::with_capacity(BUF, file);
    // One fill of a fresh file buffer returns min(file size, BUF) bytes, so two bytes are there
    // whenever the file has them.
    let head = reader.fill_buf().map_err(|e| io_error(path, e))?;
    if head.starts_with(&GZIP_MAGIC) {
        // Multi-member aware: `cat a.gz b.gz` and bgzip output are valid gzip too.
        Ok(Box::new(BufReader::with_capacity(BUF, MultiGzDecoder::new(reader))))
    } else {
        Ok(Box::new(reader))
    }
}

/// The whole (decompressed) content of `path`.
pub(crate) fn read_all(path: &Path) -> Result<Vec<u8>, DataError> {
    let mut out = Vec::new();
    open(path)?.read_to_end(&mut out).map_err(|e| io_error(path, e))?;
    Ok(out)
}

/// Line reader that reuses one buffer, so the hot loop allocates nothing per line or field.
pub(crate) struct Lines {
    reader: Box<dyn BufRead>,
    buf: String,
    line: usize,
    path: String,
    src: std::path::PathBuf,
}

impl Lines {
    /// Opens `path` (plain or gzip).
    pub(crate) fn open(path: &Path) -> Result<Lines, DataError> {
        Ok(Lines {
            reader: open(path)?,
            buf: String::new(),
            line: 0,
            path: path.display().to_string(),
            src: path.to_path_buf(),
        })
    }

    /// The path, as printed in messages.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The next line (1-based number, text without the line terminator), or `None` at the end.
    pub(crate) fn next_line(&mut self) -> Result<Option<(usize, &str)>, DataError> {
        self.buf.clear();
        let n = self.reader.read_line(&mut self.buf).map_err(|e| io_error(&self.src, e))?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        let text = self.buf.strip_suffix('\n').unwrap_or(&self.buf);
        let text = text.strip_suffix('\r').unwrap_or(text);
        Ok(Some((self.line, text)))
    }
}

/// Parses a number as `f32`. Short unsigned integers (pixel values, counts, most labels) take a
/// fast path that is exact because every integer below 10^7 < 2^24 is representable; anything
/// else goes through the standard library parser (which also accepts `nan`, `inf`, `+1`, `1e-3`).
#[inline]
pub(crate) fn parse_f32(s: &str) -> Option<f32> {
    let b = s.as_bytes();
    if !b.is_empty() && b.len() <= 7 && b.iter().all(u8::is_ascii_digit) {
        let mut v = 0u32;
        for &d in b {
            v = v * 10 + u32::from(d - b'0');
        }
        return Some(v as f32);
    }
    s.parse::<f32>().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_f32;

    #[test]
    fn fast_path_agrees_with_std() {
        for s in ["0", "7", "255", "0012", "9999999", "12345678", "-3", "+4", "1.5", "1e3", "nan"] {
            let (a, b) = (parse_f32(s), s.parse::<f32>().ok());
            assert!(a == b || (a.is_some_and(f32::is_nan) && b.is_some_and(f32::is_nan)), "{s}");
        }
        assert_eq!(parse_f32(""), None);
        assert_eq!(parse_f32("x1"), None);
    }
}
