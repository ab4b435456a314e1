//! `file:path/dlq.jsonl`: a DLQ export in the JSONL message format (the embedded default).
//!
//! A file cannot delete lines. Acked lines are remembered (and recorded in the run journal, so a resumed
//! run skips them), and at the end the lines still "in the DLQ" can be written to a remainder file.
//! One pass reads the file as long as it was when the pass started: lines appended during the run wait
//! for the next pass.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use std::os::unix::fs::MetadataExt;

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::arrivals::FileArrivals;
use crate::core::RunLock;
use crate::core::adapter::{AckToken, Acker, AdapterError, Arrivals, Delivery, PassSize, Received, Source, SourceMode};
use crate::core::envelope::Origin;
use crate::core::files::{self, file_kind};
use crate::core::jsonl::{line_text, parse_message};

/// Reads a JSONL DLQ export.
pub struct FileSource {
    path: PathBuf,
    identity: String,
    origin: Origin,
    reader: BufReader<tokio::fs::File>,
    /// Bytes of the file that belong to this pass: up to its last newline when it was opened.
    pass_bytes: u64,
    /// The file ended with a line without a newline when the pass started (left for the next run).
    unterminated: bool,
    /// Device and inode: the remainder is only written from the same file.
    file_id: (u64, u64),
    /// Held for the pass: one run per DLQ file.
    _lock: Option<RunLock>,
    read_bytes: u64,
    line_no: u64,
    pass_lines: PassSize,
    removed: Arc<RemovedLines>,
    remainder: Option<PathBuf>,
    buf: Vec<u8>,
}

impl FileSource {
    /// Open `path` for one pass. A replay ([`SourceMode::Consume`]) takes the file's run lock first: a
    /// second run on the same file (by any path, with any audit directory) is refused while this one lasts.
    pub async fn open(
        path: &str,
        mode: SourceMode,
        remainder: Option<PathBuf>,
        count_pass: bool,
    ) -> Result<Self, AdapterError> {
        if path.is_empty() {
            return Err(AdapterError::Config("file: needs a path, e.g. file:dlq.jsonl".into()));
        }
        let path = PathBuf::from(path);
        // Only regular files: a FIFO would block the open (and cannot be read twice for the remainder), a
        // directory cannot be read at all.
        let meta = std::fs::metadata(&path)
            .map_err(|e| AdapterError::io(format!("cannot open the DLQ file {}", path.display()), e))?;
        if let Some(kind) = file_kind(&meta.file_type()) {
            return Err(AdapterError::Config(format!(
                "{} is a {kind}, not a regular file: redrive reads a DLQ file twice (the pass, then what is left),                  so write the messages to a file first",
                path.display()
            )));
        }
        let lock = match mode {
            SourceMode::Consume => Some(lock_file(&path, meta.dev(), meta.ino())?),
            SourceMode::Peek => None,
        };
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| AdapterError::io(format!("cannot open the DLQ file {}", path.display()), e))?;
        let length = file
            .metadata()
            .await
            .map_err(|e| AdapterError::io(format!("cannot stat {}", path.display()), e))?
            .len();
        // The pass ends at the last newline: a last line without one may still be being written.
        let pass_bytes = complete_lines_end(&path, length).await?;
        let absolute = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
        let pass_lines = PassSize::default();
        if count_pass {
            // Counting reads the whole file: do it beside the pass, never before the first message.
            let (slot, path) = (pass_lines.clone(), path.clone());
            tokio::spawn(async move {
                if let Ok(n) = count_lines(&path, pass_bytes).await {
                    let _ = slot.set(n);
                }
            });
        }
        Ok(Self {
            identity: format!("file:{}", absolute.display()),
            origin: Origin {
                system: "file".into(),
                dlq: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                original_queue: None,
            },
            reader: BufReader::with_capacity(256 * 1024, file),
            pass_bytes,
            unterminated: length > pass_bytes,
            file_id: (meta.dev(), meta.ino()),
            read_bytes: 0,
            line_no: 0,
            pass_lines,
            removed: Arc::new(RemovedLines::default()),
            remainder,
            buf: Vec::with_capacity(4096),
            path,
            _lock: lock,
        })
    }
}

/// The run lock of the file with this device and inode, in the user's runtime directory.
fn lock_file(path: &Path, dev: u64, ino: u64) -> Result<RunLock, AdapterError> {
    let dir = files::runtime_dir().map_err(|e| AdapterError::Config(e.to_string()))?;
    RunLock::acquire(
        &dir.join(format!("file-{dev:x}-{ino:x}.lock")),
        &format!("the DLQ file {}", path.display()),
    )
    .map_err(|e| AdapterError::Config(e.to_string()))
}

/// Where the complete lines of the first `length` bytes end: just after the last newline (0 if none).
async fn complete_lines_end(path: &Path, length: u64) -> Result<u64, AdapterError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::File::open(&path)?;
        let mut end = length;
        let mut chunk = vec![0u8; 64 * 1024];
        while end > 0 {
            let start = end.saturating_sub(chunk.len() as u64);
            let want = (end - start) as usize;
            file.seek(SeekFrom::Start(start))?;
            file.read_exact(&mut chunk[..want])?;
            if let Some(at) = chunk[..want].iter().rposition(|b| *b == b'\n') {
                return Ok(start + at as u64 + 1);
            }
            end = start;
        }
        Ok(0)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r)
    .map_err(|e| AdapterError::io("cannot read the end of the DLQ file", e))
}

/// Count non-empty lines within the first `limit` bytes (for progress bars).
async fn count_lines(path: &Path, limit: u64) -> std::io::Result<u64> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::{BufRead, Read};
        let file = std::fs::File::open(path)?;
        let mut reader = std::io::BufReader::with_capacity(256 * 1024, file.take(limit));
        let mut count = 0;
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line)? > 0 {
            if !line.trim_ascii().is_empty() {
                count += 1;
            }
            line.clear();
        }
        Ok(count)
    })
    .await
    .map_err(std::io::Error::other)?
}

#[async_trait]
impl Source for FileSource {
    fn identity(&self) -> &str {
        &self.identity
    }

    fn pass_size(&self) -> PassSize {
        self.pass_lines.clone()
    }

    async fn next(&mut self) -> Result<Option<Received>, AdapterError> {
        loop {
            if self.read_bytes >= self.pass_bytes {
                return Ok(None);
            }
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .await
                .map_err(|e| AdapterError::io(format!("cannot read {}", self.path.display()), e))?;
            if n == 0 {
                return Ok(None);
            }
            self.read_bytes += n as u64;
            self.line_no += 1;
            let token = AckToken {
                seq: self.line_no,
                key: None,
            };
            let line = match line_text(&self.buf, self.line_no as usize) {
                Ok(line) if line.trim().is_empty() => continue,
                Ok(line) => line,
                Err(e) => {
                    return Ok(Some(Received::Malformed {
                        token,
                        problem: e.to_string(),
                    }));
                }
            };
            return Ok(Some(match parse_message(line, self.line_no as usize, &self.origin) {
                Ok(envelope) => Received::Message(Delivery { envelope, token }),
                Err(e) => Received::Malformed {
                    token,
                    problem: e.to_string(),
                },
            }));
        }
    }

    fn acker(&self) -> Arc<dyn Acker> {
        self.removed.clone()
    }

    fn arrivals(&self) -> Option<Box<dyn Arrivals>> {
        Some(Box::new(FileArrivals::new(
            self.path.clone(),
            self.file_id,
            self.origin.clone(),
            self.pass_bytes,
        )))
    }

    async fn finish(&mut self) -> Result<Vec<String>, AdapterError> {
        let mut notes = Vec::new();
        if self.unterminated {
            notes.push(format!(
                "the last line of {} has no final newline: it may still have been being written, so it was left                  for the next run (if the file is complete, add the newline: echo >> {})",
                self.path.display(),
                self.path.display()
            ));
        }
        let Some(out) = &self.remainder else {
            notes.push(format!(
                "{} is unchanged (a file cannot delete lines); pass --remainder FILE to write what is still in the DLQ",
                self.path.display()
            ));
            return Ok(notes);
        };
        let kept = write_remainder(&self.path, self.file_id, self.pass_bytes, out, &self.removed).await?;
        notes.push(format!(
            "still in the DLQ: {kept} messages, written to {}",
            out.display()
        ));
        Ok(notes)
    }
}

/// Copy every line not acked to `out`, byte for byte (an unterminated last line stays unterminated).
/// Written to a new temporary file beside `out` (unique name, created exclusively, mode 0600), synced, then
/// renamed over `out`. Refused when the source was replaced or truncated during the run.
async fn write_remainder(
    src: &Path,
    src_id: (u64, u64),
    pass_bytes: u64,
    out: &Path,
    removed: &Arc<RemovedLines>,
) -> Result<u64, AdapterError> {
    let (src, out, removed) = (src.to_owned(), out.to_owned(), removed.clone());
    tokio::task::spawn_blocking(move || write_remainder_now(&src, src_id, pass_bytes, &out, &removed))
        .await
        .map_err(|e| AdapterError::io("the remainder task failed", std::io::Error::other(e)))?
}

fn write_remainder_now(
    src: &Path,
    src_id: (u64, u64),
    pass_bytes: u64,
    out: &Path,
    removed: &RemovedLines,
) -> Result<u64, AdapterError> {
    use std::io::{BufRead, Write};
    let io = |what: &str, e| AdapterError::io(format!("{what} {}", out.display()), e);
    let file = std::fs::File::open(src).map_err(|e| AdapterError::io(format!("cannot reopen {}", src.display()), e))?;
    let meta = file
        .metadata()
        .map_err(|e| AdapterError::io(format!("cannot stat {}", src.display()), e))?;
    if (meta.dev(), meta.ino()) != src_id || meta.len() < pass_bytes {
        return Err(AdapterError::Config(format!(
            "{} was replaced or truncated during the run, so the remainder cannot be worked out from it; the run \
             journal knows what was settled: run the same command again on the file as it is now",
            src.display()
        )));
    }
    let dir = match out.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir.to_owned(),
        None => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| io("cannot create the directory of", e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".redrive-remainder-")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(|e| io("cannot create a temporary file beside", e))?;
    let mut writer = std::io::BufWriter::with_capacity(256 * 1024, tmp.as_file());
    let mut reader = std::io::BufReader::with_capacity(256 * 1024, file);
    let mut line = Vec::new();
    let (mut line_no, mut kept) = (0u64, 0u64);
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| AdapterError::io(format!("cannot read {}", src.display()), e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if line.trim_ascii().is_empty() || removed.contains(line_no) {
            continue;
        }
        writer.write_all(&line).map_err(|e| io("cannot write", e))?;
        kept += 1;
    }
    writer.flush().map_err(|e| io("cannot write", e))?;
    drop(writer);
    tmp.as_file().sync_all().map_err(|e| io("cannot sync", e))?;
    tmp.persist(out).map_err(|e| io("cannot rename into", e.error))?;
    Ok(kept)
}

/// Line numbers acked in this pass, as a bitset (one bit per line: flat memory whatever the file's size).
#[derive(Default)]
struct RemovedLines {
    bits: Mutex<Vec<u64>>,
}

impl RemovedLines {
    fn insert(&self, line: u64) {
        let mut bits = self.bits.lock().unwrap_or_else(PoisonError::into_inner);
        let word = (line / 64) as usize;
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        bits[word] |= 1 << (line % 64);
    }

    fn contains(&self, line: u64) -> bool {
        let bits = self.bits.lock().unwrap_or_else(PoisonError::into_inner);
        bits.get((line / 64) as usize)
            .is_some_and(|w| w & (1 << (line % 64)) != 0)
    }
}

#[async_trait]
impl Acker for RemovedLines {
    async fn ack(&self, tokens: &[AckToken]) -> Result<(), AdapterError> {
        for token in tokens {
            self.insert(token.seq);
        }
        Ok(())
    }

    async fn release(&self, _tokens: &[AckToken]) -> Result<(), AdapterError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_pass_reads_messages_reports_malformed_lines_and_writes_the_remainder() {
        let dir = tempfile::tempdir().unwrap();
        let dlq = dir.path().join("dlq.jsonl");
        std::fs::write(
            &dlq,
            "{\"id\":\"a\",\"body\":\"1\"}\n\n{oops\n{\"id\":\"b\",\"body\":\"2\"}\n",
        )
        .unwrap();
        let remainder = dir.path().join("out/rest.jsonl");
        let mut source = FileSource::open(
            dlq.to_str().unwrap(),
            SourceMode::Consume,
            Some(remainder.clone()),
            true,
        )
        .await
        .unwrap();
        let size = source.pass_size();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while size.get().is_none() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(size.get(), Some(&3), "counted in the background");
        // Appended during the run: not part of this pass.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&dlq)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"id\":\"late\"}\n"))
            .unwrap();
        let mut seen = Vec::new();
        while let Some(r) = source.next().await.unwrap() {
            match r {
                Received::Message(d) => seen.push((d.envelope.id, d.token.seq)),
                Received::Malformed { token, problem } => {
                    assert_eq!(token.seq, 3);
                    assert!(problem.starts_with("line 3:"), "{problem}");
                }
            }
        }
        assert_eq!(seen, vec![("a".to_string(), 1), ("b".to_string(), 4)]);
        source.acker().ack(&[AckToken { seq: 1, key: None }]).await.unwrap();
        source.finish().await.unwrap();
        let rest = std::fs::read_to_string(&remainder).unwrap();
        assert_eq!(rest, "{oops\n{\"id\":\"b\",\"body\":\"2\"}\n{\"id\":\"late\"}\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&remainder).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
