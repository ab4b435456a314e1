//! Errors raised while loading and starting filter modules.

use std::path::PathBuf;

/// A filter module that cannot be loaded or started. Every variant names the module and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The file could not be read.
    #[error("cannot read filter module {path}: {source}")]
    Read {
        /// The module's path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not WebAssembly.
    #[error(
        "{path} is not a WebAssembly file (it does not start with the `\\0asm` header); pass the .wasm a filter build produced"
    )]
    NotWasm {
        /// The module's path.
        path: PathBuf,
    },
    /// The file is a core module without a `_start` export.
    #[error(
        "{path} is a core WebAssembly module without a `_start` export, so it is neither profile of the filter \
         contract: build a component (guest-sdk/wit/filter.wit; Rust: `cargo build --target wasm32-wasip2 \
         --release`) or a WASI preview-1 command that speaks guest-sdk/wit/command.schema.json \
         (see docs/writing-filters.md)"
    )]
    CoreModule {
        /// The module's path.
        path: PathBuf,
    },
    /// The module file is larger than the limit.
    #[error(
        "filter `{module}` is {} large, over the module size limit of {} (--max-module-size); \
         is it the right file?",
        super::limits::format_size(*size),
        super::limits::format_size(*limit)
    )]
    TooLarge {
        /// Module name.
        module: String,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// Compilation failed (invalid wasm, unsupported feature, or over a compile limit).
    #[error("filter `{module}` does not compile: {message}")]
    Compile {
        /// Module name.
        module: String,
        /// The compiler's explanation.
        message: String,
    },
    /// The component does not implement the `redrive:filter` world, or imports something redrive does not provide.
    #[error(
        "filter `{module}` does not fit the redrive:filter@0.1.0 contract: {message}. \
         Build it against guest-sdk/wit/filter.wit"
    )]
    Contract {
        /// Module name.
        module: String,
        /// What does not match.
        message: String,
    },
    /// A command module imports something other than WASI preview 1.
    #[error(
        "filter `{module}` is a WASI command module, but redrive cannot run it: {message}. A command filter may \
         import only `wasi_snapshot_preview1` (build it for wasm32-wasip1 / GOOS=wasip1 / wasm32-wasi)"
    )]
    CommandContract {
        /// Module name.
        module: String,
        /// What does not link.
        message: String,
    },
    /// A fresh instance could not be created or trapped while starting.
    #[error("filter `{module}` failed to start: {reason}")]
    Start {
        /// Module name.
        module: String,
        /// Readable reason.
        reason: String,
    },
    /// The filter's `init` returned an error.
    #[error("filter `{module}` refused its configuration: {message}")]
    Init {
        /// Module name.
        module: String,
        /// The filter's own message.
        message: String,
    },
    /// The engine could not be set up.
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
    /// The compiled-module cache could not be used (the run goes on without it where possible).
    #[error("compiled-module cache at {path}: {message}")]
    Cache {
        /// The cache directory.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// A wasmtime error and its causes on one line, each cause once ([`crate::core::adapter::error_chain`]).
pub(crate) fn error_chain(err: &wasmtime::Error) -> String {
    crate::core::adapter::join_causes(err.chain().map(ToString::to_string))
}
