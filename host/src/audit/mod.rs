//! The audit trail: one JSONL file per module, the discard archive. The audit directory is private (mode
//! 0700, refused when others can write to it); files are created with mode 0600 and never written through
//! a symlink.

mod archive;

pub use archive::{
    ARCHIVE_KEY_ATTRIBUTE, DISCARD_REASON_ATTRIBUTE, DISCARDED_BY_ATTRIBUTE, DISCARDED_FROM_ATTRIBUTE, DiscardArchive,
    Discarded,
};

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::core::files;
use crate::filter::AuditRecord;

/// Per-module audit files in one directory: `<dir>/<module>.jsonl`, appended to.
pub struct AuditLog {
    dir: PathBuf,
    files: HashMap<String, BufWriter<File>>,
}

impl AuditLog {
    /// Create `dir` if needed (private), and open the audit file of each of `modules` now, so a file that
    /// cannot be written stops the run before anything moves.
    pub fn open<'a>(dir: &Path, modules: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        files::private_dir(dir).context("the audit directory cannot be used")?;
        let mut log = Self {
            dir: dir.to_owned(),
            files: HashMap::new(),
        };
        for module in modules {
            log.file(module)?;
        }
        Ok(log)
    }

    fn file(&mut self, module: &str) -> Result<&mut BufWriter<File>> {
        let path = self.path_for(module);
        Ok(match self.files.entry(module.to_owned()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry
                .insert(BufWriter::new(files::open_append_lines(&path).with_context(|| {
                    format!("cannot open the audit file {}", path.display())
                })?)),
        })
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
        for record in records {
            let out = self.file(&record.module)?;
            serde_json::to_writer(&mut *out, record)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"))
                .with_context(|| format!("cannot write to the audit file of `{}`", record.module))?;
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
