//! Compiling a module, bounded: a module is untrusted input, and compiling it costs the host memory and
//! time that fuel and deadlines do not cover (a 30 MB module of four huge functions took 4.9 GB and 45 s).
//!
//! - [`Compilation::Subprocess`] (what the `redrive` binary uses): the module is compiled by a child process
//!   (`redrive __compile`, hidden) whose data segment is capped with `RLIMIT_DATA` and whose run is capped
//!   in CPU and wall time; a child that runs out is killed and the module refused with the limit named.
//! - [`Compilation::InProcess`]: compiled on the calling thread, unbounded (library users, benchmarks).
//!
//! Either way a module larger than the size limit is refused before anything else.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use super::cache::{ArtifactCache, CacheUse};
use super::error::{FilterError, error_chain};
use super::limits::format_size;
use super::options::EngineOptions;

/// How modules are compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compilation {
    /// On the calling thread, unbounded.
    InProcess,
    /// In a child process of `exe` (the redrive binary), bounded.
    Subprocess {
        /// The `redrive` executable.
        exe: PathBuf,
        /// Memory the compiler may use (its data segment), in bytes.
        memory_bytes: u64,
        /// Wall time the compilation may take.
        timeout: Duration,
    },
}

/// Default memory a compilation may use: 2 GiB (the largest guests we build, Python and JavaScript
/// runtimes of 12–19 MB, need well under half of it).
pub const DEFAULT_COMPILE_MEMORY: u64 = 2 << 30;
/// Default wall time a compilation may take.
pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default largest module accepted, in bytes.
pub const DEFAULT_MAX_MODULE_BYTES: u64 = 64 << 20;

/// What kind of artifact to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArtifactKind {
    /// A component (`Engine::precompile_component`).
    Component,
    /// A core module (`Engine::precompile_module`).
    Module,
}

impl ArtifactKind {
    fn arg(self) -> &'static str {
        match self {
            ArtifactKind::Component => "component",
            ArtifactKind::Module => "module",
        }
    }
}

/// Why a bounded compilation did not produce an artifact.
#[derive(Debug)]
pub(crate) enum CompileFailure {
    /// The compiler said no (invalid wasm, unsupported feature).
    Refused(String),
    /// It needed more memory than allowed.
    Memory(u64),
    /// It ran longer than allowed.
    Time(Duration),
    /// The child could not be run.
    Spawn(String),
}

impl CompileFailure {
    /// The failure in words, naming the limit and the flag that sets it.
    pub(crate) fn describe(&self) -> String {
        match self {
            CompileFailure::Refused(message) => message.clone(),
            CompileFailure::Memory(limit) => format!(
                "compiling it needs more than {} of memory (--compile-memory); a module this large or with \
                 functions this big is refused",
                format_size(*limit)
            ),
            CompileFailure::Time(limit) => format!(
                "compiling it takes longer than {} (--compile-timeout)",
                humantime::format_duration(*limit)
            ),
            CompileFailure::Spawn(why) => format!("cannot start the compiler process: {why}"),
        }
    }
}

/// The compiled form of `wasm` (of module `name`): from the cache, or compiled (bounded as the settings say)
/// and cached under `digest`: the sha256 of `wasm`, or for a pre-initialised component its key (`snapshot.rs`).
pub(crate) fn cached<T>(
    engine: &Engine,
    cache: &ArtifactCache,
    options: &EngineOptions,
    name: &str,
    wasm: &[u8],
    digest: &str,
    kind: &Kind<T>,
) -> Result<(T, CacheUse), FilterError> {
    let compile_error = |message: String| FilterError::Compile {
        module: name.to_owned(),
        message,
    };
    if let Some(compiled) = lookup(engine, cache, name, digest, kind) {
        return Ok((compiled, CacheUse::Hit));
    }
    let artifact = match &options.settings.compilation {
        Compilation::InProcess if cache.dir().is_none() => {
            return (kind.compile)(engine, wasm)
                .map(|compiled| (compiled, CacheUse::Compiled))
                .map_err(|e| compile_error(error_chain(&e)));
        }
        Compilation::InProcess => (kind.precompile)(engine, wasm).map_err(|e| compile_error(error_chain(&e)))?,
        Compilation::Subprocess {
            exe,
            memory_bytes,
            timeout,
        } => in_subprocess(exe, *memory_bytes, *timeout, options, kind.artifact, wasm)
            .map_err(|failure| compile_error(failure.describe()))?,
    };
    cache.store(engine, digest, kind.extension, &artifact);
    let compiled = (kind.deserialize)(engine, &artifact).map_err(|e| compile_error(error_chain(&e)))?;
    Ok((compiled, CacheUse::Compiled))
}

/// The compiled form cached under `digest`, if the cache holds a usable one.
pub(crate) fn lookup<T>(engine: &Engine, cache: &ArtifactCache, name: &str, digest: &str, kind: &Kind<T>) -> Option<T> {
    let artifact = cache.lookup(engine, digest, kind.extension)?;
    match (kind.deserialize)(engine, &artifact) {
        Ok(compiled) => Some(compiled),
        Err(e) => {
            tracing::warn!(module = %name, "ignoring an unusable cached module ({e}); recompiling");
            None
        }
    }
}

/// How to compile and load one kind of artifact.
pub(crate) struct Kind<T> {
    extension: &'static str,
    artifact: ArtifactKind,
    compile: fn(&Engine, &[u8]) -> wasmtime::Result<T>,
    precompile: fn(&Engine, &[u8]) -> wasmtime::Result<Vec<u8>>,
    deserialize: fn(&Engine, &[u8]) -> wasmtime::Result<T>,
}

// SAFETY (the `deserialize` calls below): artifacts come from this engine's own `precompile_*` (in this
// process, or in the compiler child process with the same `engine_config`), or from the cache, which only
// returns files of this user's that others cannot write, in a private directory, bound by a checked header
// to the digest they were stored under (a module's sha256, or a snapshot's key: `snapshot.rs`) and to their
// own checksum (see `cache.rs`); wasmtime checks the artifact's header and its compatibility with this engine
// again on load.
pub(crate) const COMPONENTS: Kind<Component> = Kind {
    extension: "cwasm",
    artifact: ArtifactKind::Component,
    compile: |engine, wasm| Component::new(engine, wasm),
    precompile: |engine, wasm| engine.precompile_component(wasm),
    deserialize: |engine, bytes| unsafe { Component::deserialize(engine, bytes) },
};

pub(crate) const MODULES: Kind<Module> = Kind {
    extension: "cwasm-core",
    artifact: ArtifactKind::Module,
    compile: |engine, wasm| Module::new(engine, wasm),
    precompile: |engine, wasm| engine.precompile_module(wasm),
    deserialize: |engine, bytes| unsafe { Module::deserialize(engine, bytes) },
};

/// Precompile `wasm` in a bounded child process; returns the serialized artifact.
pub(crate) fn in_subprocess(
    exe: &std::path::Path,
    memory_bytes: u64,
    timeout: Duration,
    options: &EngineOptions,
    kind: ArtifactKind,
    wasm: &[u8],
) -> Result<Vec<u8>, CompileFailure> {
    let mut child = Command::new(exe)
        .arg("__compile")
        .args(["--kind", kind.arg()])
        .args(["--max-memory-bytes", &options.max_memory_bytes.to_string()])
        .args(["--max-instances", &options.max_instances.to_string()])
        .args(["--allocation", options.allocation.arg()])
        .args(["--fuel", options.fuel.arg()])
        .args(["--limit-memory-bytes", &memory_bytes.to_string()])
        .args(["--limit-cpu-secs", &(timeout.as_secs() * 2 + 1).to_string()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CompileFailure::Spawn(e.to_string()))?;
    let (Some(mut stdin), Some(mut stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        return Err(CompileFailure::Spawn("no pipes to the child".into()));
    };
    std::thread::scope(|scope| {
        scope.spawn(move || {
            // A child that died early closes its stdin: the write fails, the exit status says why.
            let _ = stdin.write_all(wasm);
        });
        let artifact = scope.spawn(move || {
            let mut out = Vec::new();
            stdout.read_to_end(&mut out).map(|_| out)
        });
        let errors = scope.spawn(move || {
            let mut text = String::new();
            let _ = stderr.take(64 << 10).read_to_string(&mut text);
            text
        });
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() > timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(CompileFailure::Time(timeout));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(CompileFailure::Spawn(e.to_string())),
            }
        };
        let artifact = artifact.join().unwrap_or_else(|_| Ok(Vec::new()));
        let errors = errors.join().unwrap_or_default();
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(0), _) => artifact.map_err(|e| CompileFailure::Spawn(format!("reading the artifact: {e}"))),
            (Some(EXIT_REFUSED), _) => Err(CompileFailure::Refused(errors.trim().to_owned())),
            // SIGXCPU: the CPU-time backstop.
            (_, Some(24)) => Err(CompileFailure::Time(timeout)),
            // An allocation refused by RLIMIT_DATA aborts the child (or it exits with its own message).
            _ if errors.contains("memory allocation")
                || errors.contains("out of memory")
                || status.signal() == Some(6) =>
            {
                Err(CompileFailure::Memory(memory_bytes))
            }
            _ => Err(CompileFailure::Refused(format!(
                "the compiler process ended with {status}: {}",
                errors.trim()
            ))),
        }
    })
}

/// Exit code of `redrive __compile` when the compiler refused the module.
pub const EXIT_REFUSED: i32 = 3;

/// The child side (`redrive __compile`): cap this process, read wasm on stdin, write the artifact on stdout.
pub fn compile_child(
    kind: &str,
    options: &EngineOptions,
    limit_memory_bytes: u64,
    limit_cpu_secs: u64,
) -> Result<u8, String> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let cap = |resource, value: u64| {
        setrlimit(
            resource,
            Rlimit {
                current: Some(value),
                maximum: Some(value),
            },
        )
        .map_err(|e| format!("cannot set the compiler's limits: {e}"))
    };
    cap(Resource::Data, limit_memory_bytes)?;
    cap(Resource::Cpu, limit_cpu_secs)?;
    let mut wasm = Vec::new();
    std::io::stdin()
        .read_to_end(&mut wasm)
        .map_err(|e| format!("cannot read the module: {e}"))?;
    let engine = wasmtime::Engine::new(&super::options::engine_config(options)).map_err(|e| e.to_string())?;
    let artifact = match kind {
        "component" => engine.precompile_component(&wasm),
        "module" => engine.precompile_module(&wasm),
        other => return Err(format!("unknown artifact kind {other:?}")),
    };
    match artifact {
        Ok(bytes) => {
            std::io::stdout()
                .write_all(&bytes)
                .map_err(|e| format!("cannot write the artifact: {e}"))?;
            Ok(0)
        }
        Err(e) => {
            eprintln!("{}", super::error::error_chain(&e));
            Ok(EXIT_REFUSED as u8)
        }
    }
}
