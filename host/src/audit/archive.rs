//! The discard archive: every discarded message, whole, written before it is removed from the DLQ.
//! Lines are in the JSONL message format with the reason added as attributes, so a discard can be undone
//! with `redrive run --from file:<archive> ...`.
//!
//! Several runs may share one archive (the default lives in the audit directory, whatever the source).
//! A message is known in it by its *archive key*: a digest of its source's identity and its journal key
//! (id, replay count, failure history, occurrence), never by its bare id, which two sources may share.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::core::digest_set::DigestSet;
use crate::core::envelope::Envelope;
use crate::core::files;
use crate::core::ids::id_digest;
use crate::core::jsonl::write_message_line;
use crate::core::line_attribute::string_attribute;

/// Attribute naming why a message was discarded.
pub const DISCARD_REASON_ATTRIBUTE: &str = "x-redrive-discard-reason";
/// Attribute naming the module that discarded it.
pub const DISCARDED_BY_ATTRIBUTE: &str = "x-redrive-discarded-by";
/// Attribute naming the source it was discarded from (its identity, without credentials).
pub const DISCARDED_FROM_ATTRIBUTE: &str = "x-redrive-discarded-from";
/// Attribute carrying the archive key ([`crate::core::ids::archive_key`]).
pub const ARCHIVE_KEY_ATTRIBUTE: &str = "x-redrive-archive-key";

/// One message to archive.
pub struct Discarded<'a> {
    /// The message as it came from the DLQ.
    pub envelope: &'a Envelope,
    /// Why it was discarded.
    pub reason: &'a str,
    /// The module that discarded it (`None` only if something other than a module did).
    pub module: Option<&'a str>,
    /// Its [`archive_key`](crate::core::ids::archive_key).
    pub key: &'a str,
}

/// Appends discarded messages, fsync per batch, under an exclusive lock (other runs may share the file).
///
/// On open it reads the keys already archived, so a run resumed after a crash between the archive's fsync
/// and the journal entry does not archive a message twice.
pub struct DiscardArchive {
    path: PathBuf,
    file: File,
    /// Archive keys present before this run, as [`id_digest`]s.
    existing: DigestSet<u128>,
}

impl DiscardArchive {
    /// Open (create with mode 0600, never through a symlink) the archive for appending.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let existing = match files::open_read_nofollow(path)? {
            // Bytes, not text: a line torn inside a character must not hide the lines after it.
            Some(f) => BufReader::new(f)
                .split(b'\n')
                .map_while(Result::ok)
                .filter_map(|line| string_attribute(&line, ARCHIVE_KEY_ATTRIBUTE).map(|key| id_digest(&key)))
                .collect(),
            None => DigestSet::default(),
        };
        let mut file =
            files::open_append(path).with_context(|| format!("cannot open the discard archive {}", path.display()))?;
        // Runs of other sources may share the archive: they write under this lock.
        file.lock()
            .with_context(|| format!("cannot lock the discard archive {}", path.display()))?;
        let ended = files::end_torn_line(path, &mut file);
        file.unlock()
            .with_context(|| format!("cannot unlock the discard archive {}", path.display()))?;
        ended?;
        Ok(Self {
            path: path.to_owned(),
            file,
            existing,
        })
    }

    /// The archive's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write a batch of discarded messages (original body and attributes) with their reasons, durably.
    /// `source` is the identity of the DLQ they come from.
    pub fn write(&mut self, source: &str, batch: &[Discarded<'_>]) -> Result<()> {
        let mut buf = Vec::with_capacity(batch.len() * 1200);
        for item in batch {
            if !self.existing.insert(id_digest(item.key)) {
                continue; // archived by an earlier, interrupted run of the same source
            }
            let mut archived = item.envelope.clone();
            let attributes = &mut archived.attributes;
            attributes.push((DISCARD_REASON_ATTRIBUTE.to_owned(), item.reason.to_owned()));
            if let Some(module) = item.module {
                attributes.push((DISCARDED_BY_ATTRIBUTE.to_owned(), module.to_owned()));
            }
            attributes.extend([
                (DISCARDED_FROM_ATTRIBUTE.to_owned(), source.to_owned()),
                (ARCHIVE_KEY_ATTRIBUTE.to_owned(), item.key.to_owned()),
            ]);
            write_message_line(&mut buf, &archived);
        }
        let io =
            |e| anyhow::Error::from(e).context(format!("cannot write the discard archive {}", self.path.display()));
        self.file.lock().map_err(io)?;
        let written = self.file.write_all(&buf).and_then(|()| self.file.sync_data());
        let unlocked = self.file.unlock();
        written.and(unlocked).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ids::{JournalKey, archive_key};

    fn archived(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_message_is_archived_once_per_source_and_key_never_by_bare_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("discarded.jsonl");
        let env = |id: &str| Envelope {
            id: id.into(),
            body: b"x".to_vec(),
            ..Default::default()
        };
        let (a, b) = (env("a"), env("b"));
        let key = |text: &str| JournalKey::from_journal(text.to_owned());
        let (ka, kb) = (
            archive_key("file:/one", &key("a#r0")),
            archive_key("file:/one", &key("b#r0")),
        );
        let item = |envelope, key| Discarded {
            envelope,
            reason: "test traffic",
            module: Some("drop"),
            key,
        };
        DiscardArchive::open(&path)
            .unwrap()
            .write("file:/one", &[item(&a, &ka)])
            .unwrap();
        DiscardArchive::open(&path)
            .unwrap()
            .write("file:/one", &[item(&a, &ka), item(&b, &kb)])
            .unwrap();
        // The same id from another source is another message.
        let other = archive_key("file:/two", &key("a#r0"));
        DiscardArchive::open(&path)
            .unwrap()
            .write("file:/two", &[item(&a, &other)])
            .unwrap();
        let lines = archived(&path);
        let ids: Vec<&str> = lines.iter().map(|v| v["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["a", "b", "a"]);
        assert_eq!(lines[0]["attributes"][DISCARD_REASON_ATTRIBUTE], "test traffic");
        assert_eq!(lines[2]["attributes"][DISCARDED_FROM_ATTRIBUTE], "file:/two");
    }
}
