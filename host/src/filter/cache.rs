//! On-disk cache of compiled modules, so a second start does not recompile.
//!
//! Loading a compiled artifact runs its machine code, so the cache is trusted only as far as it can be:
//! - the directory is created with mode 0700, and one that belongs to another user or that others can
//!   write to is not used at all (with a warning);
//! - a cached file is opened without following symlinks and used only when it is a regular file of ours
//!   that others cannot write;
//! - each file starts with a header binding it to the sha256 of the module's wasm and holding the sha256
//!   of the artifact after it, so an artifact renamed or copied over another module's file is recompiled
//!   instead of run;
//! - the file name carries a hash of the wasmtime version and every engine setting that affects compiled
//!   code (`Engine::precompile_compatibility_hash`), and wasmtime checks that again on load.
//!
//! Files are written to a new temporary file in the directory (unique name, created exclusively) and
//! renamed into place.

use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;

use crate::core::files;

/// Where compiled modules are kept. `None` disables the cache.
#[derive(Clone, Debug)]
pub struct ArtifactCache {
    dir: Option<PathBuf>,
}

/// How a module got compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheUse {
    /// Loaded from the cache.
    Hit,
    /// Compiled now (and stored, when the cache is enabled).
    Compiled,
}

/// The first bytes of every cached artifact.
const MAGIC: &[u8; 16] = b"redrive-cwasm-1\n";
/// Magic, the wasm's sha256, the artifact's sha256.
const HEADER_LEN: usize = MAGIC.len() + 32 + 32;

impl ArtifactCache {
    /// A cache in `dir` (created on first use with mode 0700), or no cache. An existing directory that
    /// another user owns, or that others can write to, is not used.
    pub fn new(dir: Option<PathBuf>) -> Self {
        let dir = dir.filter(|dir| match std::fs::symlink_metadata(dir) {
            Err(_) => true, // created private on first store
            Ok(_) => match files::check_private_dir(dir) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!("not using the compiled-module cache: {e}");
                    false
                }
            },
        });
        Self { dir }
    }

    /// The default cache directory: `$REDRIVE_CACHE_DIR`, else `$XDG_CACHE_HOME/redrive/modules`,
    /// else `~/.cache/redrive/modules`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("REDRIVE_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("redrive").join("modules"))
    }

    /// The cache directory, when enabled.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn path(&self, engine: &Engine, digest: &str, extension: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{digest}-{:016x}.{extension}", engine_key(engine))))
    }

    /// The cached artifact of the module whose wasm has sha256 `digest`, checked as described in the module
    /// docs; `None` on a miss or when the file cannot be trusted (reported through `tracing`).
    pub(crate) fn lookup(&self, engine: &Engine, digest: &str, extension: &str) -> Option<Vec<u8>> {
        let path = self.path(engine, digest, extension)?;
        match read_checked(&path, digest) {
            Ok(found) => found,
            Err(why) => {
                tracing::warn!(path = %path.display(), "ignoring a cached module: {why}; recompiling");
                None
            }
        }
    }

    /// Store the artifact of the module whose wasm has sha256 `digest`. A cache that cannot be written only
    /// costs a recompile next time: it is reported through `tracing`.
    pub(crate) fn store(&self, engine: &Engine, digest: &str, extension: &str, artifact: &[u8]) {
        let (Some(dir), Some(path)) = (self.dir.as_ref(), self.path(engine, digest, extension)) else {
            return;
        };
        if let Err(e) = write_checked(dir, &path, digest, artifact) {
            tracing::warn!(dir = %dir.display(), "cannot write the compiled-module cache; continuing without it: {e}");
        }
    }
}

fn read_checked(path: &Path, digest: &str) -> Result<Option<Vec<u8>>, String> {
    let Some(mut file) = files::open_read_nofollow(path).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if meta.uid() != files::euid() || meta.permissions().mode() & 0o022 != 0 {
        return Err("it belongs to another user or others can write it".into());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a redrive cache file".into());
    }
    let wasm_digest = &bytes[MAGIC.len()..MAGIC.len() + 32];
    if hex::encode(wasm_digest) != digest {
        return Err("it was compiled from another module".into());
    }
    let payload = &bytes[HEADER_LEN..];
    if Sha256::digest(payload).as_slice() != &bytes[MAGIC.len() + 32..HEADER_LEN] {
        return Err("its contents do not match their checksum".into());
    }
    bytes.drain(..HEADER_LEN);
    Ok(Some(bytes))
}

fn write_checked(dir: &Path, path: &Path, digest: &str, artifact: &[u8]) -> Result<(), String> {
    files::private_dir(dir).map_err(|e| e.to_string())?;
    let wasm_digest = hex::decode(digest).map_err(|e| e.to_string())?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".redrive-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| e.to_string())?;
    let file = tmp.as_file_mut();
    file.write_all(MAGIC)
        .and_then(|()| file.write_all(&wasm_digest))
        .and_then(|()| file.write_all(&Sha256::digest(artifact)))
        .and_then(|()| file.write_all(artifact))
        .and_then(|()| file.sync_all())
        .map_err(|e| e.to_string())?;
    tmp.persist(path).map_err(|e| e.error.to_string())?;
    Ok(())
}

fn engine_key(engine: &Engine) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swapped_or_altered_artifact_is_not_returned() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        let cache = ArtifactCache::new(Some(dir.clone()));
        let engine = Engine::default();
        let (a, b) = (hex::encode([1u8; 32]), hex::encode([2u8; 32]));
        cache.store(&engine, &a, "cwasm", b"artifact of a");
        cache.store(&engine, &b, "cwasm", b"artifact of b");
        assert_eq!(
            cache.lookup(&engine, &a, "cwasm").as_deref(),
            Some(&b"artifact of a"[..])
        );
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let (pa, pb) = (
            cache.path(&engine, &a, "cwasm").unwrap(),
            cache.path(&engine, &b, "cwasm").unwrap(),
        );
        std::fs::copy(&pb, &pa).unwrap();
        assert_eq!(cache.lookup(&engine, &a, "cwasm"), None, "b's artifact under a's name");
        let mut bytes = std::fs::read(&pb).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&pb, bytes).unwrap();
        assert_eq!(cache.lookup(&engine, &b, "cwasm"), None, "altered");
    }

    #[test]
    fn a_directory_others_can_write_is_not_used() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(ArtifactCache::new(Some(tmp.path().to_owned())).dir().is_none());
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(ArtifactCache::new(Some(tmp.path().to_owned())).dir().is_some());
    }
}
