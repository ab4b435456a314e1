//! The discard archive: every discarded message, whole, written before it is removed from the DLQ.
//! Lines are in the JSONL message format with the reason added as attributes, so a discard can be undone
//! with `redrive run --from file:<archive> ...`.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::jsonl::message_to_json;
use crate::message::{Envelope, id_digest};

/// Attribute naming why a message was discarded.
pub const DISCARD_REASON_ATTRIBUTE: &str = "x-redrive-discard-reason";
/// Attribute naming the module that discarded it.
pub const DISCARDED_BY_ATTRIBUTE: &str = "x-redrive-discarded-by";

/// Only the id of an archived line (the rest is skipped, not copied).
#[derive(serde::Deserialize)]
struct IdOnly {
    id: String,
}

/// Appends discarded messages, fsync per batch.
///
/// On open it reads the ids already archived, so a run resumed after a crash between the archive's fsync
/// and the journal entry does not archive a message twice.
pub struct DiscardArchive {
    path: PathBuf,
    file: File,
    /// Ids archived before this run, as [`id_digest`]s.
    existing: HashSet<u128>,
}

impl DiscardArchive {
    /// Open (create with mode 0600) the archive for appending.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let existing = match File::open(path) {
            Ok(f) => BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| serde_json::from_str::<IdOnly>(&l).ok())
                .map(|line| id_digest(&line.id))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashSet::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read the discard archive {}", path.display())),
        };
        let file = super::open_private_append(path)
            .with_context(|| format!("cannot open the discard archive {}", path.display()))?;
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
    pub fn write(&mut self, batch: &[(&Envelope, &str, &str)]) -> Result<()> {
        let mut buf = Vec::with_capacity(batch.len() * 1200);
        for (env, reason, module) in batch {
            if self.existing.contains(&id_digest(&env.id)) {
                continue; // archived by an earlier, interrupted run
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reopened_archive_does_not_archive_a_message_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("discarded.jsonl");
        let env = |id: &str| Envelope {
            id: id.into(),
            body: b"x".to_vec(),
            ..Default::default()
        };
        let (a, b) = (env("a"), env("b"));
        DiscardArchive::open(&path)
            .unwrap()
            .write(&[(&a, "test traffic", "drop")])
            .unwrap();
        DiscardArchive::open(&path)
            .unwrap()
            .write(&[(&a, "test traffic", "drop"), (&b, "test traffic", "drop")])
            .unwrap();
        let ids: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(ids, ["a", "b"]);
        let first: serde_json::Value =
            serde_json::from_str(std::fs::read_to_string(&path).unwrap().lines().next().unwrap()).unwrap();
        assert_eq!(first["attributes"][DISCARD_REASON_ATTRIBUTE], "test traffic");
    }
}
