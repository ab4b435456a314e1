//! `file:path/out.jsonl`: appends replayed messages in the JSONL message format, fsync per batch.
//!
//! On open it reads the replay ids already in the file, so a run resumed after a crash between the fsync
//! and the journal entry does not write a message twice.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use crate::core::adapter::{AdapterError, Redelivery, SendError, Sink};
use crate::core::digest_set::DigestSet;
use crate::core::envelope::{Envelope, REPLAY_ID_ATTRIBUTE};
use crate::core::ids::id_digest;
use crate::core::jsonl::write_message_line;
use crate::core::line_attribute::string_attribute;

/// Appends to a JSONL file.
pub struct FileSink {
    path: PathBuf,
    state: Arc<Mutex<State>>,
}

struct State {
    file: std::fs::File,
    /// Replay ids present when the file was opened, as [`id_digest`]s.
    existing: DigestSet<u128>,
}

impl FileSink {
    /// Open (create with mode 0600) `path` for appending.
    pub async fn open(path: &str) -> Result<Self, AdapterError> {
        if path.is_empty() {
            return Err(AdapterError::Config(
                "file: needs a path, e.g. file:staging.jsonl".into(),
            ));
        }
        let path = std::path::absolute(path).unwrap_or_else(|_| PathBuf::from(path));
        let p = path.clone();
        let state = tokio::task::spawn_blocking(move || -> Result<State, AdapterError> {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| AdapterError::io(format!("cannot create the directory of {}", p.display()), e))?;
            }
            let existing = existing_replay_ids(&p)?;
            let mut file = append_private(&p)
                .map_err(|e| AdapterError::io(format!("cannot open {} for appending", p.display()), e))?;
            // A line a crash or a full disk cut short must not swallow the next one.
            crate::core::files::end_torn_line(&p, &mut file).map_err(|e| AdapterError::Config(e.to_string()))?;
            Ok(State { file, existing })
        })
        .await
        .map_err(|e| AdapterError::Config(format!("sink open task failed: {e}")))??;
        Ok(Self {
            path,
            state: Arc::new(Mutex::new(state)),
        })
    }
}

/// Open the destination for appending, created with mode 0600. It is the operator's own path, so a
/// symlink there is followed (the run's checks compare the resolved file with its other files).
fn append_private(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

fn existing_replay_ids(path: &std::path::Path) -> Result<DigestSet<u128>, AdapterError> {
    let mut ids = DigestSet::default();
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(AdapterError::io(format!("cannot read {}", path.display()), e)),
    };
    // Bytes, not text: a line a crash cut inside a character must not make the file unreadable.
    for line in std::io::BufReader::new(file).split(b'\n') {
        let line = line.map_err(|e| AdapterError::io(format!("cannot read {}", path.display()), e))?;
        if let Some(id) = string_attribute(&line, REPLAY_ID_ATTRIBUTE) {
            ids.insert(id_digest(&id));
        }
    }
    Ok(ids)
}

#[async_trait]
impl Sink for FileSink {
    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn max_batch(&self) -> usize {
        256
    }

    fn redelivery(&self) -> Redelivery {
        Redelivery::Deduplicated
    }

    async fn send(&self, batch: &[Envelope]) -> Vec<Result<(), SendError>> {
        let mut buf = Vec::with_capacity(batch.len() * 1200);
        {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            for env in batch {
                let written_before = !state.existing.is_empty()
                    && env
                        .attribute(REPLAY_ID_ATTRIBUTE)
                        .is_some_and(|id| state.existing.contains(id_digest(id)));
                if written_before {
                    continue; // already written by an earlier, interrupted run
                }
                write_message_line(&mut buf, env);
            }
        }
        let state = self.state.clone();
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            state.file.write_all(&buf).and_then(|()| state.file.sync_data())
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        match written {
            Ok(()) => vec![Ok(()); batch.len()],
            Err(e) => {
                let error = SendError::retryable(format!("cannot append to {}: {e}", path.display()));
                vec![Err(error); batch.len()]
            }
        }
    }

    async fn close(&self) -> Result<(), AdapterError> {
        let state = self.state.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || state.lock().unwrap_or_else(PoisonError::into_inner).file.sync_all())
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|e| AdapterError::io(format!("cannot sync {}", path.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_and_skips_replay_ids_already_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.jsonl");
        let env = |id: &str| Envelope {
            id: id.into(),
            body: b"{}".to_vec(),
            attributes: vec![(REPLAY_ID_ATTRIBUTE.into(), format!("r-{id}"))],
            ..Default::default()
        };
        let sink = FileSink::open(path.to_str().unwrap()).await.unwrap();
        assert!(sink.send(&[env("a"), env("b")]).await.iter().all(Result::is_ok));
        sink.close().await.unwrap();
        let sink = FileSink::open(path.to_str().unwrap()).await.unwrap();
        assert!(sink.send(&[env("b"), env("c")]).await.iter().all(Result::is_ok));
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
        assert_eq!(ids, ["a", "b", "c"]);
    }
}
