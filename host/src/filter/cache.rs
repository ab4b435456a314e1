//! On-disk cache of compiled modules, so a second start does not recompile.
//!
//! An artifact's key is the sha256 of the wasm bytes plus a hash of the wasmtime version and every
//! engine setting that affects compiled code (`Engine::precompile_compatibility_hash`). A changed
//! module, a new wasmtime or new engine settings miss the cache instead of loading a wrong artifact.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

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

impl ArtifactCache {
    /// A cache in `dir` (created on first use with mode 0700), or no cache.
    pub fn new(dir: Option<PathBuf>) -> Self {
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

    /// Load the compiled component for `wasm` (whose sha256 is `digest`), compiling and storing it on a miss.
    /// A cache that cannot be read or written only costs a recompile: it is reported through `tracing`.
    pub fn component(&self, engine: &Engine, wasm: &[u8], digest: &str) -> wasmtime::Result<(Component, CacheUse)> {
        let Some(dir) = &self.dir else {
            return Ok((Component::new(engine, wasm)?, CacheUse::Compiled));
        };
        let path = dir.join(format!("{digest}-{:016x}.cwasm", engine_key(engine)));
        if path.exists() {
            // SAFETY: the file was written by `store` below from `Engine::precompile_component` output, into a
            // directory we create with mode 0700; the key ties it to this wasmtime version and engine settings,
            // and wasmtime still checks the header and compatibility on load.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, CacheUse::Hit)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unusable cached module; recompiling")
                }
            }
        }
        let artifact = engine.precompile_component(wasm)?;
        if let Err(e) = store(dir, &path, &artifact) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot write the compiled-module cache; continuing without it");
        }
        // SAFETY: `artifact` was produced just now by this engine's `precompile_component`.
        let component = unsafe { Component::deserialize(engine, &artifact)? };
        Ok((component, CacheUse::Compiled))
    }
}

fn engine_key(engine: &Engine) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}

/// Write atomically: a temporary file in the same directory, then rename.
fn store(dir: &Path, path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    create_private_dir(dir)?;
    let tmp = dir.join(format!(".tmp-{}-{:?}", std::process::id(), std::thread::current().id()));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(artifact)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}
