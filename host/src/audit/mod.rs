//! The audit trail: one JSONL file per module, the discard archive; all files created with mode 0600.

mod archive;

pub use archive::{DISCARD_REASON_ATTRIBUTE, DISCARDED_BY_ATTRIBUTE, DiscardArchive};

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::filter::AuditRecord;

/// Per-module audit files in one directory: `<dir>/<module>.jsonl`, appended to.
pub struct AuditLog {
    dir: PathBuf,
    files: HashMap<String, BufWriter<File>>,
}

impl AuditLog {
    /// Create `dir` if needed.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create the audit directory {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_owned(),
            files: HashMap::new(),
        })
    }

    /// The path of a module's audit file.
    pub fn path_for(&self, module: &str) -> PathBuf {
        self.dir.join(format!("{}.jsonl", safe_file_name(module)))
    }

    /// Append the records of one message.
    pub fn write(&mut self, records: &[AuditRecord]) -> Result<()> {
        for record in records {
            let path = self.path_for(&record.module);
            let out = match self.files.entry(record.module.clone()) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => entry
                    .insert(BufWriter::new(open_private_append(&path).with_context(|| {
                        format!("cannot open the audit file {}", path.display())
                    })?)),
            };
            serde_json::to_writer(&mut *out, record)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"))
                .with_context(|| format!("cannot write to the audit file {}", path.display()))?;
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

/// Open a file for appending, creating it with mode 0600.
pub fn open_private_append(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
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
