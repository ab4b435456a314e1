//! Run locks: one run at a time per DLQ. An exclusive `flock` on a lock file, which the kernel releases
//! when the holder exits in any way (kill -9 included), so a lock left by a dead process is simply taken
//! over. The file says who holds it, for the refusal message.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::files::{FileError, host_name, open_read_write};

/// A held run lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

/// Why a run lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run holds it.
    #[error(
        "another redrive run is working on {what}: {holder} (lock file {path}). Two runs at once would forward \
         messages twice: wait for that run to end, or stop it (Ctrl-C, or kill -TERM its pid)"
    )]
    Held {
        /// What is locked, in words.
        what: String,
        /// Who holds it: `pid N on HOST since TIME`.
        holder: String,
        /// The lock file.
        path: PathBuf,
    },
    /// The lock file cannot be used.
    #[error(transparent)]
    File(#[from] FileError),
}

impl RunLock {
    /// Take the lock at `path` (created with mode 0600, never through a symlink) for `what`.
    pub fn acquire(path: &Path, what: &str) -> Result<Self, LockError> {
        let mut file = open_read_write(path)?;
        let io = |e: std::io::Error| FileError::Io {
            context: format!("cannot use the lock file {}", path.display()),
            source: e,
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    what: what.to_owned(),
                    holder: if holder.is_empty() {
                        "a process that has not said who it is yet".into()
                    } else {
                        holder.to_owned()
                    },
                    path: path.to_owned(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e).into()),
        }
        let holder = holder_text();
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(format!("{holder}\n").as_bytes()))
            .and_then(|()| file.sync_data())
            .map_err(io)?;
        Ok(Self {
            _file: file,
            path: path.to_owned(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Who holds a lock taken now: `pid N on HOST since TIME`.
pub fn holder_text() -> String {
    format!(
        "pid {} on {} since {}",
        std::process::id(),
        host_name(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// True when `holder` (as [`holder_text`] wrote it) names a process of this host that no longer exists: a
/// lock it left in a shared store (a Redis key) can be taken over at once instead of when it expires.
pub fn holder_is_gone(holder: &str) -> bool {
    let Some(rest) = holder.strip_prefix("pid ") else {
        return false;
    };
    let Some((pid, rest)) = rest.split_once(" on ") else {
        return false;
    };
    let host = rest.split(" since ").next().unwrap_or(rest);
    let Some(pid) = pid.parse::<i32>().ok().and_then(rustix::process::Pid::from_raw) else {
        return false;
    };
    host == host_name() && rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_told_who_holds_it_and_a_released_lock_is_taken_over() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.lock");
        let first = RunLock::acquire(&path, "the DLQ").unwrap();
        let err = RunLock::acquire(&path, "the DLQ").unwrap_err().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        drop(first);
        RunLock::acquire(&path, "the DLQ").unwrap();
    }

    #[test]
    fn a_holder_is_gone_only_when_its_process_on_this_host_is() {
        assert!(!holder_is_gone(&holder_text()), "this process is alive");
        let dead = format!("pid 999999999 on {} since 2026-01-01T00:00:00Z", host_name());
        assert!(holder_is_gone(&dead));
        assert!(!holder_is_gone(
            "pid 999999999 on another-host since 2026-01-01T00:00:00Z"
        ));
        assert!(!holder_is_gone("something else"));
    }
}
