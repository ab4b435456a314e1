//! Files and directories redrive writes: created private, never written through a symlink, never shared
//! with other users, and never the same file as another input or output of the run.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a file or directory cannot be used safely.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// It is a symbolic link where redrive writes.
    #[error(
        "{0} is a symlink: redrive does not write through symlinks in its audit directory or archive (they could \
         point anywhere); remove it, or give the real path"
    )]
    Symlink(PathBuf),
    /// Other users could plant files (or symlinks) in it.
    #[error(
        "{path} is writable by other users (mode {mode:04o}): they could replace what redrive writes there; \
         make it private (chmod 700 {path}) or use another directory"
    )]
    SharedDirectory {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It belongs to another user.
    #[error("{path} belongs to another user (uid {owner}, redrive runs as uid {me}); use a directory of your own")]
    NotOwned {
        /// The file or directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Who redrive runs as.
        me: u32,
    },
    /// Something that must be a regular file is not.
    #[error("{path} is a {kind}, not a regular file")]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, and where.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl FileError {
    fn io(context: String, source: io::Error) -> Self {
        FileError::Io { context, source }
    }
}

/// The effective user id redrive runs as.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// This machine's host name, for lock holders and messages.
pub fn host_name() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

/// Create `dir` (and missing parents) with mode 0700, then check that it is a directory of this user's
/// that no one else can write to.
pub fn private_dir(dir: &Path) -> Result<(), FileError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| FileError::io(format!("cannot create the directory {}", dir.display()), e))?;
    check_private_dir(dir)
}

/// Check that an existing directory belongs to this user and is not writable by group or others.
pub fn check_private_dir(dir: &Path) -> Result<(), FileError> {
    let meta = std::fs::metadata(dir).map_err(|e| FileError::io(format!("cannot read {}", dir.display()), e))?;
    if !meta.is_dir() {
        return Err(FileError::NotRegular {
            path: dir.to_owned(),
            kind: "file (a directory was expected)",
        });
    }
    let me = euid();
    if meta.uid() != me {
        return Err(FileError::NotOwned {
            path: dir.to_owned(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(FileError::SharedDirectory {
            path: dir.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Open `path` for appending (and reading, to look at its last line), creating it with mode 0600. Refuses a
/// symlink (`O_NOFOLLOW`) and anything that is not a regular file.
pub fn open_append(path: &Path) -> Result<File, FileError> {
    open_nofollow(path, OpenOptions::new().create(true).read(true).append(true))
}

/// Open `path` for appending lines ([`open_append`]) and end a torn last line first: a write cut short (a
/// kill -9 between two writes of a buffer, a full disk) leaves a line without its newline, and whatever is
/// appended next would merge into it and be unreadable with it. The torn line stays (unreadable, as it was);
/// the next line starts on its own.
pub fn open_append_lines(path: &Path) -> Result<File, FileError> {
    let mut file = open_append(path)?;
    end_torn_line(path, &mut file)?;
    Ok(file)
}

/// End the torn last line of `file` (open for reading and appending, as [`open_append`] opens), if it has
/// one: see [`open_append_lines`]. `path` is for the error. A file other processes append to must be locked
/// around this.
pub fn end_torn_line(path: &Path, file: &mut File) -> Result<(), FileError> {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    let io = |source: io::Error| FileError::io(format!("cannot end the torn last line of {}", path.display()), source);
    let len = file.metadata().map_err(io)?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1).map_err(io)?;
    if last[0] != b'\n' {
        file.write_all(b"\n").and_then(|()| file.sync_data()).map_err(io)?;
    }
    Ok(())
}

/// Write `bytes` to `path` (created with mode 0600, or truncated), for outputs people keep: plans, reports.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

/// Open `path` for reading and writing, creating it with mode 0600, refusing a symlink.
pub fn open_read_write(path: &Path) -> Result<File, FileError> {
    open_nofollow(
        path,
        OpenOptions::new().create(true).truncate(false).read(true).write(true),
    )
}

/// Open an existing file for reading without following a symlink; `Ok(None)` when there is none.
pub fn open_read_nofollow(path: &Path) -> Result<Option<File>, FileError> {
    match open_nofollow(path, OpenOptions::new().read(true)) {
        Ok(file) => Ok(Some(file)),
        Err(FileError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Open with `options`, new files with mode 0600, never through a symlink; only a regular file will do.
fn open_nofollow(path: &Path, options: &mut OpenOptions) -> Result<File, FileError> {
    let file = options
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| opened(path, e, "open"))?;
    check_regular(path, &file)?;
    Ok(file)
}

fn opened(path: &Path, e: io::Error, verb: &str) -> FileError {
    if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
        FileError::Symlink(path.to_owned())
    } else {
        FileError::io(format!("cannot {verb} {}", path.display()), e)
    }
}

fn check_regular(path: &Path, file: &File) -> Result<(), FileError> {
    let meta = file
        .metadata()
        .map_err(|e| FileError::io(format!("cannot stat {}", path.display()), e))?;
    match file_kind(&meta.file_type()) {
        None => Ok(()),
        Some(kind) => Err(FileError::NotRegular {
            path: path.to_owned(),
            kind,
        }),
    }
}

/// `None` for a regular file, else what it is, in words.
pub fn file_kind(kind: &std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("directory")
    } else if kind.is_fifo() {
        Some("FIFO (named pipe)")
    } else if kind.is_symlink() {
        Some("symlink")
    } else if kind.is_socket() {
        Some("socket")
    } else if kind.is_char_device() || kind.is_block_device() {
        Some("device")
    } else {
        Some("special file")
    }
}

/// What makes two paths the same file: the resolved path, and the device and inode when it exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileIdentity {
    resolved: PathBuf,
    inode: Option<(u64, u64)>,
}

impl FileIdentity {
    /// Identify `path`, which may not exist yet (then its directory is resolved).
    pub fn of(path: &Path) -> Self {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let inode = std::fs::metadata(&absolute).ok().map(|m| (m.dev(), m.ino()));
        let resolved =
            std::fs::canonicalize(&absolute).unwrap_or_else(|_| match (absolute.parent(), absolute.file_name()) {
                (Some(dir), Some(name)) => std::fs::canonicalize(dir)
                    .map(|d| d.join(name))
                    .unwrap_or_else(|_| absolute.clone()),
                _ => absolute.clone(),
            });
        Self { resolved, inode }
    }

    /// True when both name the same file: the same resolved path, or the same inode (a hard link).
    pub fn same_as(&self, other: &Self) -> bool {
        self.resolved == other.resolved || (self.inode.is_some() && self.inode == other.inode)
    }
}

/// A directory for this user's run locks: `$XDG_RUNTIME_DIR/redrive`, else `<tmp>/redrive-<uid>`; private.
pub fn runtime_dir() -> Result<PathBuf, FileError> {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(base) => PathBuf::from(base).join("redrive"),
        None => std::env::temp_dir().join(format!("redrive-{}", euid())),
    };
    private_dir(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dirs_and_refusals() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(private_dir(&dir), Err(FileError::SharedDirectory { .. })));

        let target = tmp.path().join("target");
        std::fs::write(&target, "x").unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(open_append(&link), Err(FileError::Symlink(_))));
        assert!(matches!(open_read_nofollow(&link), Err(FileError::Symlink(_))));
        assert!(open_read_nofollow(&tmp.path().join("none")).unwrap().is_none());
        let f = open_append(&tmp.path().join("new")).unwrap();
        assert_eq!(f.metadata().unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_torn_last_line_is_ended_so_the_next_line_stands_alone() {
        use std::io::Write;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("journal.jsonl");
        std::fs::write(&path, "{\"id\":\"a\"}\n{\"id\":\"b").unwrap();
        let mut f = open_append_lines(&path).unwrap();
        f.write_all(b"{\"id\":\"c\"}\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, ["{\"id\":\"a\"}", "{\"id\":\"b", "{\"id\":\"c\"}"]);
        // A whole file, or an empty one, is left as it is.
        drop(open_append_lines(&path).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        let empty = tmp.path().join("empty.jsonl");
        drop(open_append_lines(&empty).unwrap());
        assert_eq!(std::fs::read(&empty).unwrap(), b"");
    }

    #[test]
    fn same_file_through_links_and_spellings() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a.jsonl");
        std::fs::write(&a, "x").unwrap();
        std::fs::hard_link(&a, tmp.path().join("h.jsonl")).unwrap();
        std::os::unix::fs::symlink(&a, tmp.path().join("s.jsonl")).unwrap();
        std::fs::create_dir(tmp.path().join("sub")).unwrap();
        let id = FileIdentity::of(&a);
        assert!(id.same_as(&FileIdentity::of(&tmp.path().join("h.jsonl"))));
        assert!(id.same_as(&FileIdentity::of(&tmp.path().join("s.jsonl"))));
        assert!(id.same_as(&FileIdentity::of(&tmp.path().join("sub/../a.jsonl"))));
        let new = FileIdentity::of(&tmp.path().join("sub/../new.jsonl"));
        assert!(new.same_as(&FileIdentity::of(&tmp.path().join("new.jsonl"))));
        assert!(!new.same_as(&id));
    }
}
