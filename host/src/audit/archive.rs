//! The discard archive: every discarded message, whole, written before it is removed from the DLQ.
//! Lines are in the JSONL message format with the reason added as attributes, so a discard can be undone
//! with `redrive run --from file:<archive> ...`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::jsonl::message_to_json;
use crate::message::Envelope;

/// Attribute naming why a message was discarded.
pub const DISCARD_REASON_ATTRIBUTE: &str = "x-redrive-discard-reason";
/// Attribute naming the module that discarded it.
pub const DISCARDED_BY_ATTRIBUTE: &str = "x-redrive-discarded-by";

/// Appends discarded messages, fsync per batch.
pub struct DiscardArchive {
    path: PathBuf,
    file: File,
}

impl DiscardArchive {
    /// Open (create with mode 0600) the archive for appending.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = super::open_private_append(path)
            .with_context(|| format!("cannot open the discard archive {}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }

    /// The archive's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write a batch of discarded messages (original body and attributes) with their reasons, durably.
    pub fn write(&mut self, batch: &[(&Envelope, &str, &str)]) -> Result<()> {
        let mut buf = Vec::with_capacity(batch.len() * 1200);
        for (env, reason, module) in batch {
            let mut archived = (*env).clone();
            archived
                .attributes
                .push((DISCARD_REASON_ATTRIBUTE.into(), (*reason).to_owned()));
            archived
                .attributes
                .push((DISCARDED_BY_ATTRIBUTE.into(), (*module).to_owned()));
            serde_json::to_writer(&mut buf, &message_to_json(&archived))?;
            buf.push(b'\n');
        }
        self.file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data())
            .with_context(|| format!("cannot write the discard archive {}", self.path.display()))
    }
}
