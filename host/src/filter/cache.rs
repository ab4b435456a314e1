//! On-disk cache of compiled modules, so a second start does not recompile.
//!
//! An artifact's key is the sha256 of the wasm bytes plus a hash of the wasmtime version and every
//! engine setting that affects compiled code (`Engine::precompile_compatibility_hash`). A changed
//! module, a new wasmtime or new engine settings miss the cache instead of loading a wrong artifact.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::component::Component;
use wasmtime::{Engine, Module};

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
        self.load(engine, wasm, digest, &COMPONENTS)
    }

    /// Load the compiled core module (a command-profile filter) for `wasm`, like [`component`](Self::component).
    pub fn module(&self, engine: &Engine, wasm: &[u8], digest: &str) -> wasmtime::Result<(Module, CacheUse)> {
        self.load(engine, wasm, digest, &MODULES)
    }

    fn load<T>(&self, engine: &Engine, wasm: &[u8], digest: &str, kind: &Kind<T>) -> wasmtime::Result<(T, CacheUse)> {
        let Some(dir) = &self.dir else {
            return Ok(((kind.compile)(engine, wasm)?, CacheUse::Compiled));
        };
        let path = dir.join(format!("{digest}-{:016x}.{}", engine_key(engine), kind.extension));
        if path.exists() {
            match (kind.deserialize_file)(engine, &path) {
                Ok(compiled) => return Ok((compiled, CacheUse::Hit)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unusable cached module; recompiling")
                }
            }
        }
        let artifact = (kind.precompile)(engine, wasm)?;
        if let Err(e) = store(dir, &path, &artifact) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot write the compiled-module cache; continuing without it");
        }
        Ok(((kind.deserialize)(engine, &artifact)?, CacheUse::Compiled))
    }
}

/// How to compile, store and load one kind of artifact.
struct Kind<T> {
    extension: &'static str,
    compile: fn(&Engine, &[u8]) -> wasmtime::Result<T>,
    precompile: fn(&Engine, &[u8]) -> wasmtime::Result<Vec<u8>>,
    deserialize_file: fn(&Engine, &Path) -> wasmtime::Result<T>,
    deserialize: fn(&Engine, &[u8]) -> wasmtime::Result<T>,
}

// SAFETY (the `deserialize*` calls below): cached files are written by `store` from this engine's
// `precompile_*` output, into a directory created with mode 0700; the file name ties them to this wasmtime
// version and engine settings, and wasmtime still checks the header and compatibility on load. In-memory
// artifacts were produced just before by the same engine.
const COMPONENTS: Kind<Component> = Kind {
    extension: "cwasm",
    compile: |engine, wasm| Component::new(engine, wasm),
    precompile: |engine, wasm| engine.precompile_component(wasm),
    deserialize_file: |engine, path| unsafe { Component::deserialize_file(engine, path) },
    deserialize: |engine, bytes| unsafe { Component::deserialize(engine, bytes) },
};

const MODULES: Kind<Module> = Kind {
    extension: "cwasm-core",
    compile: |engine, wasm| Module::new(engine, wasm),
    precompile: |engine, wasm| engine.precompile_module(wasm),
    deserialize_file: |engine, path| unsafe { Module::deserialize_file(engine, path) },
    deserialize: |engine, bytes| unsafe { Module::deserialize(engine, bytes) },
};

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
