//! The audit trail: one JSONL file per module, the discard archive. The audit directory is private (mode
//! 0700, refused when others can write to it); files are created with mode 0600 and never written through
//! a symlink.
//!
//! A run starts its part of each module's file with a header line ([`RunHeader`]: the module, its sha256, the
//! redrive version, when the run started); the records after it, up to the next header, are that module's
//! (one line per message it decided, [`AuditRecord`]). What is constant for a run is written once, not per
//! message.

mod archive;

pub use archive::{
    ARCHIVE_KEY_ATTRIBUTE, DISCARD_REASON_ATTRIBUTE, DISCARDED_BY_ATTRIBUTE, DISCARDED_FROM_ATTRIBUTE, DiscardArchive,
    Discarded,
};

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::core::files;
use crate::filter::{AuditRecord, LoadedModule};

/// The audit files' write buffers: records of many messages go out in one `write`.
const BUFFER: usize = 256 * 1024;

/// The first line a run writes to a module's audit file: what is the same for every record after it.
#[derive(Debug, Serialize)]
pub struct RunHeader<'a> {
    /// When the run started.
    pub run_started: DateTime<Utc>,
    /// The module's name (also the file's name).
    pub module: &'a str,
    /// Its place in the chain, from 1. The first module's records give the hash of every body as the source
    /// delivered it; a later module's records give it only when an earlier module replaced the body.
    pub position: usize,
    /// sha256 of the module's wasm: the exact code that made the records below.
    pub module_sha256: &'a str,
    /// The redrive version that ran it.
    pub redrive: &'a str,
}

/// Per-module audit files in one directory: `<dir>/<module>.jsonl`, appended to.
pub struct AuditLog {
    dir: PathBuf,
    files: HashMap<String, BufWriter<File>>,
}

impl AuditLog {
    /// Create `dir` if needed (private), open the audit file of each of `modules` now, so a file that cannot be
    /// written stops the run before anything moves, and start each with this run's [`RunHeader`].
    pub fn open<'a>(dir: &Path, modules: impl IntoIterator<Item = &'a LoadedModule>) -> Result<Self> {
        files::private_dir(dir).context("the audit directory cannot be used")?;
        let mut log = Self {
            dir: dir.to_owned(),
            files: HashMap::new(),
        };
        let run_started = Utc::now();
        for (index, module) in modules.into_iter().enumerate() {
            let path = log.path_for(&module.name);
            let file = files::open_append_lines(&path)
                .with_context(|| format!("cannot open the audit file {}", path.display()))?;
            let mut out = BufWriter::with_capacity(BUFFER, file);
            let header = RunHeader {
                run_started,
                module: &module.name,
                position: index + 1,
                module_sha256: &module.sha256,
                redrive: env!("CARGO_PKG_VERSION"),
            };
            serde_json::to_writer(&mut out, &header)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"))
                .with_context(|| format!("cannot write to the audit file {}", path.display()))?;
            log.files.insert(module.name.clone(), out);
        }
        Ok(log)
    }

    /// The path of a module's audit file.
    pub fn path_for(&self, module: &str) -> PathBuf {
        Self::path_in(&self.dir, module)
    }

    /// The path of a module's audit file in the audit directory `dir`.
    pub fn path_in(dir: &Path, module: &str) -> PathBuf {
        dir.join(format!("{}.jsonl", safe_file_name(module)))
    }

    /// Append the records of one message.
    pub fn write(&mut self, records: &[AuditRecord]) -> Result<()> {
        let mut lines = AuditLines::default();
        lines.encode(records)?;
        self.append(&lines)
    }

    /// Append records already serialised (outside the lock the log is shared behind).
    pub fn append(&mut self, lines: &AuditLines) -> Result<()> {
        for (module, range) in &lines.lines {
            let out = self
                .files
                .get_mut(module)
                .ok_or_else(|| anyhow!("no audit file was opened for the module `{module}`"))?;
            out.write_all(&lines.bytes[range.clone()])
                .with_context(|| format!("cannot write to the audit file of `{module}`"))?;
        }
        Ok(())
    }

    /// Flush and fsync every file.
    pub fn sync(&mut self) -> Result<()> {
        for (module, out) in &mut self.files {
            out.flush()
                .and_then(|()| out.get_ref().sync_data())
                .with_context(|| format!("cannot flush the audit file of `{module}`"))?;
        }
        Ok(())
    }
}

/// One message's audit records as JSON lines, each with the module whose file it goes to. A worker keeps one
/// and reuses it, so serialising costs no lock and, after the first messages, no allocation for the bytes.
#[derive(Default)]
pub struct AuditLines {
    bytes: Vec<u8>,
    lines: Vec<(String, Range<usize>)>,
}

impl AuditLines {
    /// Serialise `records`, replacing what was here.
    pub fn encode(&mut self, records: &[AuditRecord]) -> Result<()> {
        self.bytes.clear();
        self.lines.clear();
        for record in records {
            let start = self.bytes.len();
            serde_json::to_writer(&mut self.bytes, record)
                .with_context(|| format!("cannot write the audit record of `{}`", record.module))?;
            self.bytes.push(b'\n');
            self.lines.push((record.module.clone(), start..self.bytes.len()));
        }
        Ok(())
    }
}

fn safe_file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.#".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_become_safe_file_names() {
        assert_eq!(safe_file_name("route-by-error#2"), "route-by-error#2");
        assert_eq!(safe_file_name("../etc/passwd"), ".._etc_passwd");
    }
}
