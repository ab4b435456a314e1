//! Run locks: one run at a time per DLQ. An exclusive `flock` on a lock file, which the kernel releases
//! when the holder exits in any way (kill -9 included), so a lock left by a dead process is simply taken
//! over. The file says who holds it, for the refusal message.
//!
//! A holder that lets go removes its lock file (while still holding the lock), so lock files do not pile up
//! in the runtime directory. A run that opened the file just before it was removed then holds a lock on a file
//! no longer at the path: it notices (the path's inode is not its file's) and starts again with a new file.
//! A file left by a process that was killed stays, and is taken over by the next run.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
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
        let io = |e: std::io::Error| FileError::Io {
            context: format!("cannot use the lock file {}", path.display()),
            source: e,
        };
        // Each pass that fails to settle lost a race with a holder removing the file: a handful is plenty.
        for _ in 0..8 {
            let mut file = open_read_write(path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => return Err(held(&mut file, path, what)),
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e).into()),
            }
            if !still_at(&file, path).map_err(io)? {
                continue;
            }
            let holder = holder_text();
            file.set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| file.write_all(format!("{holder}\n").as_bytes()))
                .and_then(|()| file.sync_data())
                .map_err(io)?;
            return Ok(Self {
                _file: file,
                path: path.to_owned(),
            });
        }
        Err(io(std::io::Error::other(
            "it kept being removed and created again by other processes; try again",
        ))
        .into())
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    /// Remove the lock file while still holding the lock; the lock itself goes when the file is closed.
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::debug!(path = %self.path.display(), "cannot remove the lock file: {e}");
        }
    }
}

/// The refusal for a lock another run holds, naming it as its file says.
fn held(file: &mut File, path: &Path, what: &str) -> LockError {
    let mut holder = String::new();
    let _ = file.read_to_string(&mut holder);
    let holder = holder.trim();
    LockError::Held {
        what: what.to_owned(),
        holder: if holder.is_empty() {
            "a process that has not said who it is yet".into()
        } else {
            holder.to_owned()
        },
        path: path.to_owned(),
    }
}

/// Whether `path` still names `file` (a holder letting go removes it, and a new run creates another).
fn still_at(file: &File, path: &Path) -> std::io::Result<bool> {
    let ours = file.metadata()?;
    match std::fs::symlink_metadata(path) {
        Ok(there) => Ok(there.dev() == ours.dev() && there.ino() == ours.ino()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
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
        assert!(!path.exists(), "a holder letting go removes its lock file");
        let second = RunLock::acquire(&path, "the DLQ").unwrap();
        assert!(path.exists());
        drop(second);
    }

    #[test]
    fn a_lock_on_a_file_removed_under_it_is_not_a_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.lock");
        // What a run that opened the file just before its holder removed it would hold.
        let stale = open_read_write(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(!still_at(&stale, &path).unwrap());
        let holder = RunLock::acquire(&path, "the DLQ").unwrap();
        assert!(!still_at(&stale, &path).unwrap(), "a new file is at the path");
        assert!(stale.try_lock().is_ok(), "the removed file's lock excludes no one");
        assert!(RunLock::acquire(&path, "the DLQ").is_err(), "the new file's lock does");
        drop(holder);
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
