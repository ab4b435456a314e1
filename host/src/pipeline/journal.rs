//! The run journal: every message's transitions, appended as JSONL (mode 0600). It makes a crashed or
//! interrupted run resumable: a message acked before is not touched again, a message forwarded and
//! confirmed (or archived) but not yet acked is acked on resume instead of being forwarded again, and a
//! message that was being sent when the run died is *in doubt*: a destination that can be read back is
//! asked whether it arrived before it is sent again.
//!
//! The journal also holds the run lock of its source (`journal-<hash>.lock` beside it): one run at a time
//! per DLQ and audit directory.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::core::RunLock;
use crate::core::files;
use crate::filter::sha256_hex;
use crate::message::{Envelope, id_digest};

/// A transition of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// The chain decided (the outcome is in the audit logs).
    Decided,
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
    /// Keyed by [`id_digest`]: flat memory per message on a large resume.
    past: HashMap<u128, PastState>,
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
        let file =
            files::open_append(&path).with_context(|| format!("cannot open the run journal {}", path.display()))?;
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
        self.past.values().filter(|s| **s == PastState::InDoubt).count()
    }

    /// What an earlier run did with message `id`, if anything that matters for this run.
    pub fn past(&self, id: &str) -> Option<PastState> {
        self.past.get(&id_digest(id)).copied()
    }

    /// Append transitions (buffered; see [`Journal::sync`]).
    pub fn record<'a>(&self, event: Event, ids: impl IntoIterator<Item = &'a str>) -> Result<()> {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        for id in ids {
            serde_json::to_writer(&mut *out, &Line { id: id.into(), event })?;
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

fn read_past(path: &Path) -> Result<HashMap<u128, PastState>> {
    let mut past = HashMap::new();
    let Some(file) = files::open_read_nofollow(path)? else {
        return Ok(past);
    };
    for line in BufReader::new(file).lines() {
        let line = line.with_context(|| format!("cannot read the run journal {}", path.display()))?;
        // A torn last line (crash mid-write) is ignored: its event was not durable.
        let Ok(Line { id, event }) = serde_json::from_str::<Line>(&line) else {
            continue;
        };
        let key = id_digest(&id);
        match event {
            Event::Acked => {
                past.insert(key, PastState::Acked);
            }
            Event::Confirmed | Event::Archived | Event::Parked => {
                let state = past.entry(key).or_insert(PastState::SettledNotAcked);
                if *state == PastState::InDoubt {
                    *state = PastState::SettledNotAcked;
                }
            }
            Event::Sending => {
                past.entry(key).or_insert(PastState::InDoubt);
            }
            // A release after a send that failed leaves the message in doubt: a send given up on (the
            // destination unreachable) may still have arrived, and the next run asks before sending again.
            Event::Decided | Event::Released => {}
        }
    }
    Ok(past)
}

/// The key a message is journaled under: its id, plus what tells this dead letter apart from the same
/// message dead-lettered again later (its replay count, delivery count and last failure time). A message
/// that was replayed, failed again and came back to the DLQ is therefore new work for a later run, not
/// "settled before" — which would remove it without forwarding it. Where the broker gives every send a
/// new id ([`Envelope::id_unique_per_send`], SQS) the id and replay count are enough, and the receive
/// count must stay out: SQS raises it on every receive, redrive's own included.
pub fn journal_key(env: &Envelope) -> String {
    use std::fmt::Write;
    let mut key = format!("{}#r{}", env.id, env.replay_count);
    if env.id_unique_per_send {
        return key;
    }
    if let Some(n) = env.failure.receive_count {
        let _ = write!(key, ".c{n}");
    }
    if let Some(at) = env.failure.last_failed_at {
        let _ = write!(key, ".t{}", at.timestamp_millis());
    }
    key
}

/// The journal key of the `occurrence`-th message (1-based) with the same [`journal_key`] in one pass of a
/// source whose ids can repeat (a file with the same id on two lines): the first keeps its key, later ones
/// are told apart by their place, so no copy is ever taken for another.
pub fn occurrence_key(key: String, occurrence: u32) -> String {
    if occurrence <= 1 {
        key
    } else {
        format!("{key}#o{occurrence}")
    }
}

/// The stable replay id of a message: derived from the source and the message's journal key (its id,
/// replay count, failure history and occurrence), so a resumed pass reuses it, a genuine later replay gets
/// a new one, and two dead letters sharing an id never share a replay id.
pub fn replay_id(source_identity: &str, journal_key: &str) -> String {
    sha256_hex(format!("{source_identity}\n{journal_key}").as_bytes())[..32].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_what_earlier_runs_settled() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = Journal::open(dir.path(), "file:/x").unwrap();
            j.record(Event::Confirmed, ["a", "b"]).unwrap();
            j.record(Event::Acked, ["a"]).unwrap();
            j.record(Event::Archived, ["c"]).unwrap();
            j.record(Event::Released, ["d"]).unwrap();
            j.record(Event::Sending, ["e", "f", "g"]).unwrap();
            j.record(Event::Confirmed, ["f"]).unwrap();
            j.record(Event::Released, ["g"]).unwrap();
            j.sync().unwrap();
        }
        let j = Journal::open(dir.path(), "file:/x").unwrap();
        assert_eq!(j.past("a"), Some(PastState::Acked));
        assert_eq!(j.past("b"), Some(PastState::SettledNotAcked));
        assert_eq!(j.past("c"), Some(PastState::SettledNotAcked));
        assert_eq!(j.past("d"), None);
        assert_eq!(j.past("e"), Some(PastState::InDoubt));
        assert_eq!(j.past("f"), Some(PastState::SettledNotAcked));
        assert_eq!(
            j.past("g"),
            Some(PastState::InDoubt),
            "a failed send may still have arrived"
        );
        assert_eq!(j.in_doubt(), 2);
        let err = Journal::open(dir.path(), "file:/x").err().unwrap().to_string();
        assert!(err.contains("another redrive run"), "one run per journal: {err}");
        drop(j);
        let other = Journal::open(dir.path(), "file:/y").unwrap();
        assert_eq!(other.past("a"), None, "journals are per source");
    }

    #[test]
    fn a_message_that_comes_back_after_a_replay_has_a_new_journal_key() {
        let first = Envelope {
            id: "m".into(),
            ..Default::default()
        };
        let mut back = first.clone();
        back.replay_count = 1;
        assert_ne!(journal_key(&first), journal_key(&back));
        let mut failed_again = first.clone();
        failed_again.failure.receive_count = Some(2);
        assert_ne!(journal_key(&first), journal_key(&failed_again));
        assert_eq!(journal_key(&first), journal_key(&first.clone()));

        let sqs = Envelope {
            id: "m".into(),
            id_unique_per_send: true,
            ..Default::default()
        };
        let mut received_again = sqs.clone();
        received_again.failure.receive_count = Some(7);
        assert_eq!(journal_key(&sqs), journal_key(&received_again));
    }

    #[test]
    fn replay_ids_are_stable_and_change_with_the_key_and_the_source() {
        assert_eq!(replay_id("s", "m#r0"), replay_id("s", "m#r0"));
        assert_ne!(replay_id("s", "m#r0"), replay_id("s", "m#r1"));
        assert_ne!(replay_id("s", "m#r0"), replay_id("t", "m#r0"));
        assert_eq!(replay_id("s", "m#r0").len(), 32);
        assert_eq!(occurrence_key("m#r0".into(), 1), "m#r0");
        assert_ne!(occurrence_key("m#r0".into(), 2), "m#r0");
    }
}
