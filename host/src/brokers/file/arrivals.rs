//! Lines appended to a DLQ file after the pass started, for the re-poison breaker: read from where the pass
//! ends, never written, each complete line once.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use async_trait::async_trait;

use crate::core::adapter::{AdapterError, Arrivals};
use crate::core::envelope::{Envelope, Origin};
use crate::core::jsonl::{line_text, parse_message};

/// Most bytes read in one look (the rest waits for the next).
const MOST_PER_POLL: u64 = 4 * 1024 * 1024;

/// Watches the end of one DLQ file.
pub struct FileArrivals {
    path: PathBuf,
    /// Device and inode of the file the pass reads: a replaced file is not watched further.
    file_id: (u64, u64),
    origin: Origin,
    /// Where the next complete line starts.
    offset: u64,
}

impl FileArrivals {
    /// Watch `path` (the pass's file) from `offset`, the end of the pass.
    pub fn new(path: PathBuf, file_id: (u64, u64), origin: Origin, offset: u64) -> Self {
        Self {
            path,
            file_id,
            origin,
            offset,
        }
    }

    fn read_new(&mut self) -> Result<Vec<Envelope>, AdapterError> {
        let context = || format!("cannot read the end of {}", self.path.display());
        let mut file = std::fs::File::open(&self.path).map_err(|e| AdapterError::io(context(), e))?;
        let meta = file.metadata().map_err(|e| AdapterError::io(context(), e))?;
        if (meta.dev(), meta.ino()) != self.file_id || meta.len() <= self.offset {
            return Ok(Vec::new());
        }
        file.seek(SeekFrom::Start(self.offset))
            .map_err(|e| AdapterError::io(context(), e))?;
        let mut bytes = Vec::new();
        file.take(MOST_PER_POLL)
            .read_to_end(&mut bytes)
            .map_err(|e| AdapterError::io(context(), e))?;
        // Only complete lines: the last one may still be being written.
        let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else {
            return Ok(Vec::new());
        };
        self.offset += end as u64 + 1;
        Ok(bytes[..end]
            .split(|b| *b == b'\n')
            .filter_map(|line| {
                let text = line_text(line, 0).ok()?;
                let text = text.trim();
                (!text.is_empty()).then(|| parse_message(text, 0, &self.origin).ok())?
            })
            .collect())
    }
}

#[async_trait]
impl Arrivals for FileArrivals {
    async fn poll(&mut self) -> Result<Vec<Envelope>, AdapterError> {
        tokio::task::block_in_place(|| self.read_new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn only_complete_lines_appended_after_the_pass_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dlq.jsonl");
        std::fs::write(&path, "{\"id\":\"old\",\"body\":\"x\"}\n").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let mut watch = FileArrivals::new(path.clone(), (meta.dev(), meta.ino()), Origin::default(), meta.len());
        assert!(watch.read_new().unwrap().is_empty());
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        write!(f, "{{\"id\":\"a\",\"body\":\"x\"}}\nnot json\n\n{{\"id\":\"b\",\"bo").unwrap();
        let ids: Vec<String> = watch.read_new().unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["a"], "malformed and blank lines are skipped, the half line waits");
        writeln!(f, "dy\":\"x\"}}").unwrap();
        let ids: Vec<String> = watch.read_new().unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["b"]);
        assert!(watch.read_new().unwrap().is_empty());
    }
}
