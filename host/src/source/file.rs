//! `file:path/dlq.jsonl`: a DLQ export in the JSONL message format (the embedded default).
//!
//! A file cannot delete lines. Acked lines are remembered (and recorded in the run journal, so a resumed
//! run skips them), and at the end the lines still "in the DLQ" can be written to a remainder file.
//! One pass reads the file as long as it was when the pass started: lines appended during the run wait
//! for the next pass.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{AckToken, Acker, AdapterError, Delivery, PassSize, Received, Source, SourceMode, SourceOptions};
use crate::jsonl::parse_message;
use crate::message::Origin;

/// Reads a JSONL DLQ export.
pub struct FileSource {
    path: PathBuf,
    identity: String,
    origin: Origin,
    reader: BufReader<tokio::fs::File>,
    /// Bytes of the file that belong to this pass.
    pass_bytes: u64,
    read_bytes: u64,
    line_no: u64,
    pass_lines: PassSize,
    removed: Arc<RemovedLines>,
    remainder: Option<PathBuf>,
    buf: Vec<u8>,
}

impl FileSource {
    /// Open `path` for one pass.
    pub async fn open(path: &str, _mode: SourceMode, options: &SourceOptions) -> Result<Self, AdapterError> {
        if path.is_empty() {
            return Err(AdapterError::Config("file: needs a path, e.g. file:dlq.jsonl".into()));
        }
        let path = PathBuf::from(path);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| AdapterError::io(format!("cannot open the DLQ file {}", path.display()), e))?;
        let pass_bytes = file
            .metadata()
            .await
            .map_err(|e| AdapterError::io(format!("cannot stat {}", path.display()), e))?
            .len();
        let absolute = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
        let pass_lines = PassSize::default();
        if options.count_pass {
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
            read_bytes: 0,
            line_no: 0,
            pass_lines,
            removed: Arc::new(RemovedLines::default()),
            remainder: options.remainder.clone(),
            buf: Vec::with_capacity(4096),
            path,
        })
    }
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
                key: String::new(),
            };
            let line = match std::str::from_utf8(&self.buf) {
                Ok(line) if line.trim().is_empty() => continue,
                Ok(line) => line,
                Err(_) => {
                    return Ok(Some(Received::Malformed {
                        token,
                        problem: format!("line {}: not UTF-8 text", self.line_no),
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

    async fn finish(&mut self) -> Result<Vec<String>, AdapterError> {
        let Some(out) = &self.remainder else {
            return Ok(vec![format!(
                "{} is unchanged (a file cannot delete lines); pass --remainder FILE to write what is still in the DLQ",
                self.path.display()
            )]);
        };
        let kept = write_remainder(&self.path, out, &self.removed).await?;
        Ok(vec![format!(
            "still in the DLQ: {kept} messages, written to {}",
            out.display()
        )])
    }
}

/// Copy every line not acked to `out` (created with mode 0600, replaced atomically).
async fn write_remainder(src: &Path, out: &Path, removed: &RemovedLines) -> Result<u64, AdapterError> {
    let io = |what: &str, e| AdapterError::io(format!("{what} {}", out.display()), e);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| io("cannot create the directory of", e))?;
    }
    let tmp = out.with_extension("tmp");
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true).mode(0o600);
    let mut writer = tokio::io::BufWriter::new(options.open(&tmp).await.map_err(|e| io("cannot create", e))?);
    let file = tokio::fs::File::open(src)
        .await
        .map_err(|e| AdapterError::io(format!("cannot reopen {}", src.display()), e))?;
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let (mut line_no, mut kept) = (0u64, 0u64);
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| AdapterError::io(format!("cannot read {}", src.display()), e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if line.trim_ascii().is_empty() || removed.contains(line_no) {
            continue;
        }
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        writer.write_all(&line).await.map_err(|e| io("cannot write", e))?;
        kept += 1;
    }
    writer.flush().await.map_err(|e| io("cannot write", e))?;
    writer.get_ref().sync_all().await.map_err(|e| io("cannot sync", e))?;
    tokio::fs::rename(&tmp, out)
        .await
        .map_err(|e| io("cannot rename into", e))?;
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
        let options = SourceOptions {
            remainder: Some(remainder.clone()),
            count_pass: true,
            ..Default::default()
        };
        let mut source = FileSource::open(dlq.to_str().unwrap(), SourceMode::Consume, &options)
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
        source
            .acker()
            .ack(&[AckToken {
                seq: 1,
                key: String::new(),
            }])
            .await
            .unwrap();
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
