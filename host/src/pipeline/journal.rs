//! The run journal: every message's transitions, appended as JSONL (mode 0600). It makes a crashed or
//! interrupted run resumable: a message acked before is not touched again, a message forwarded and
//! confirmed (or archived) but not yet acked is acked on resume instead of being forwarded again, and a
//! message that was being sent when the run died is *in doubt*: a destination that can be read back is
//! asked whether it arrived before it is sent again.
//!
//! The journal also holds the run lock of its source (`journal-<hash>.lock` beside it): one run at a time
//! per DLQ and audit directory.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::past::PastMap;
use crate::core::ids::{JournalKey, id_digest, sha256_hex};
use crate::core::{RunLock, files};

/// A transition of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// About to be sent to a destination that can be read back (durable before the send starts).
    Sending,
    /// The destination confirmed the forwarded message.
    Confirmed,
    /// The message was written to the discard archive.
    Archived,
    /// The message was sent to the park destination.
    Parked,
    /// The message was removed from the DLQ.
    Acked,
    /// The message was left in the DLQ.
    Released,
}

/// What an earlier run did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PastState {
    /// Removed from the DLQ: nothing more to do.
    Acked,
    /// Its fate is durable elsewhere (confirmed, archived, parked) but it was not acked yet: ack it now.
    SettledNotAcked,
    /// It was being sent when the earlier run ended: it may or may not have arrived.
    InDoubt,
}

#[derive(Serialize, Deserialize)]
struct Line<'a> {
    id: std::borrow::Cow<'a, str>,
    event: Event,
}

/// Appends transitions; knows what earlier runs against the same source did.
pub struct Journal {
    path: PathBuf,
    out: Mutex<BufWriter<File>>,
    /// Keyed by [`id_digest`]: 16 bytes per message on a large resume.
    past: PastMap,
    _lock: RunLock,
}

impl Journal {
    /// The journal's path for `source_identity` in `dir`: `journal-<hash of the source>.jsonl`.
    pub fn path_for(dir: &Path, source_identity: &str) -> PathBuf {
        dir.join(format!(
            "journal-{}.jsonl",
            &sha256_hex(source_identity.as_bytes())[..12]
        ))
    }

    /// Take the source's run lock in `dir` (a private directory), then open its journal.
    pub fn open(dir: &Path, source_identity: &str) -> Result<Self> {
        files::private_dir(dir)?;
        let path = Self::path_for(dir, source_identity);
        let lock = RunLock::acquire(&path.with_extension("lock"), source_identity)?;
        let past = read_past(&path)?;
        let file = files::open_append_lines(&path)
            .with_context(|| format!("cannot open the run journal {}", path.display()))?;
        Ok(Self {
            path,
            out: Mutex::new(BufWriter::with_capacity(256 * 1024, file)),
            past,
            _lock: lock,
        })
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Messages earlier runs settled or left in doubt.
    pub fn resumed(&self) -> usize {
        self.past.len()
    }

    /// Messages an earlier run was sending when it ended.
    pub fn in_doubt(&self) -> usize {
        self.past.states().filter(|s| *s == PastState::InDoubt).count()
    }

    /// What an earlier run did with the message of this key, if anything that matters for this run.
    pub fn past(&self, key: &JournalKey) -> Option<PastState> {
        self.past.get(key.digest())
    }

    /// Append transitions (buffered; see [`Journal::sync`]).
    pub fn record<'a>(&self, event: Event, keys: impl IntoIterator<Item = &'a JournalKey>) -> Result<()> {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        for key in keys {
            serde_json::to_writer(
                &mut *out,
                &Line {
                    id: key.as_str().into(),
                    event,
                },
            )?;
            out.write_all(b"\n")
                .with_context(|| format!("cannot write the run journal {}", self.path.display()))?;
        }
        Ok(())
    }

    /// Make everything recorded so far durable.
    pub fn sync(&self) -> Result<()> {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        out.flush()
            .and_then(|()| out.get_ref().sync_data())
            .with_context(|| format!("cannot sync the run journal {}", self.path.display()))
    }
}

fn read_past(path: &Path) -> Result<PastMap> {
    let Some(file) = files::open_read_nofollow(path)? else {
        return Ok(PastMap::default());
    };
    read_lines(BufReader::new(file)).with_context(|| format!("cannot read the run journal {}", path.display()))
}

/// What a journal's lines say about each message (by [`id_digest`] of its key).
pub fn read_lines(reader: impl BufRead) -> std::io::Result<PastMap> {
    let mut past = PastMap::default();
    // Bytes, not text: a line torn inside a multi-byte character must not make the whole journal unreadable.
    for line in reader.split(b'\n') {
        let line = line?;
        // A torn line (crash or full disk mid-write) is ignored: its event was not durable. So is a `decided` line
        // of a journal written before 2026-12-03 (no longer an event; the decision is in the audit logs).
        let Ok(Line { id, event }) = serde_json::from_slice::<Line>(&line) else {
            continue;
        };
        let key = id_digest(&id);
        match event {
            Event::Acked => past.update(key, |_| PastState::Acked),
            Event::Confirmed | Event::Archived | Event::Parked => past.update(key, |old| match old {
                None | Some(PastState::InDoubt) => PastState::SettledNotAcked,
                Some(other) => other,
            }),
            Event::Sending => past.update(key, |old| old.unwrap_or(PastState::InDoubt)),
            // A release after a send that failed leaves the message in doubt: a send given up on (the
            // destination unreachable) may still have arrived, and the next run asks before sending again.
            Event::Released => {}
        }
    }
    Ok(past)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys<const N: usize>(texts: [&str; N]) -> Vec<JournalKey> {
        texts
            .iter()
            .map(|t| JournalKey::from_journal((*t).to_owned()))
            .collect()
    }

    fn key(text: &str) -> JournalKey {
        JournalKey::from_journal(text.to_owned())
    }

    #[test]
    fn reads_journals_that_still_hold_decided_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = Journal::open(dir.path(), "file:/x").unwrap().path().to_owned();
        let earlier = [
            r#"{"id":"a","event":"decided"}"#,
            r#"{"id":"a","event":"confirmed"}"#,
            r#"{"id":"b","event":"decided"}"#,
            r#"{"id":"c","event":"decided"}"#,
            r#"{"id":"c","event":"acked"}"#,
        ];
        std::fs::write(&path, earlier.join("\n") + "\n").unwrap();
        let j = Journal::open(dir.path(), "file:/x").unwrap();
        assert_eq!(j.past(&key("a")), Some(PastState::SettledNotAcked));
        assert_eq!(j.past(&key("b")), None, "decided and nothing more: do it again");
        assert_eq!(j.past(&key("c")), Some(PastState::Acked));
    }

    #[test]
    fn remembers_what_earlier_runs_settled() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = Journal::open(dir.path(), "file:/x").unwrap();
            j.record(Event::Confirmed, &keys(["a", "b"])).unwrap();
            j.record(Event::Acked, &keys(["a"])).unwrap();
            j.record(Event::Archived, &keys(["c"])).unwrap();
            j.record(Event::Released, &keys(["d"])).unwrap();
            j.record(Event::Sending, &keys(["e", "f", "g"])).unwrap();
            j.record(Event::Confirmed, &keys(["f"])).unwrap();
            j.record(Event::Released, &keys(["g"])).unwrap();
            j.sync().unwrap();
        }
        let j = Journal::open(dir.path(), "file:/x").unwrap();
        assert_eq!(j.past(&key("a")), Some(PastState::Acked));
        assert_eq!(j.past(&key("b")), Some(PastState::SettledNotAcked));
        assert_eq!(j.past(&key("c")), Some(PastState::SettledNotAcked));
        assert_eq!(j.past(&key("d")), None);
        assert_eq!(j.past(&key("e")), Some(PastState::InDoubt));
        assert_eq!(j.past(&key("f")), Some(PastState::SettledNotAcked));
        assert_eq!(
            j.past(&key("g")),
            Some(PastState::InDoubt),
            "a failed send may still have arrived"
        );
        assert_eq!(j.in_doubt(), 2);
        let err = Journal::open(dir.path(), "file:/x").err().unwrap().to_string();
        assert!(err.contains("another redrive run"), "one run per journal: {err}");
        drop(j);
        let other = Journal::open(dir.path(), "file:/y").unwrap();
        assert_eq!(other.past(&key("a")), None, "journals are per source");
    }
}
