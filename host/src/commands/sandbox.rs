//! Sandbox limits and engine settings from the command line's sandbox flags (`--memory`, `--timeout`, …,
//! `--cache-dir`, `--compile-memory`): the settings every module starts from.

use crate::cli::SandboxArgs;
use crate::filter::{
    Compilation, DEFAULT_COMPILE_MEMORY, DEFAULT_COMPILE_TIMEOUT, DEFAULT_MAX_MODULE_BYTES, EngineSettings,
    ModuleSettings, SettingError, parse_size,
};

/// Each sandbox flag with the setting it sets, and its value when given.
pub fn flags(args: &SandboxArgs) -> [(&'static str, Option<&str>); 8] {
    [
        ("memory", args.memory.as_deref()),
        ("timeout", args.timeout.as_deref()),
        ("fuel", args.fuel.as_deref()),
        ("max-output", args.max_output.as_deref()),
        ("max-log", args.max_log.as_deref()),
        ("instance", args.instance.as_deref()),
        ("recycle-every", args.recycle_every.as_deref()),
        ("max-failures", args.max_failures.as_deref()),
    ]
}

/// The settings every module starts from.
pub fn module_settings(args: &SandboxArgs) -> Result<ModuleSettings, SettingError> {
    let mut settings = ModuleSettings::default();
    for (key, value) in flags(args) {
        if let Some(value) = value {
            settings.set(key, value).map_err(|e| SettingError {
                key: format!("--{key}"),
                ..e
            })?;
        }
    }
    Ok(settings)
}

/// The engine settings: cache directory, module size limit, and compilation in a bounded child process
/// of this executable.
pub fn engine_settings(args: &SandboxArgs) -> Result<EngineSettings, SettingError> {
    let size = |flag: &str, value: &Option<String>, default: u64| match value {
        None => Ok(default),
        Some(text) => parse_size(text).map_err(|problem| SettingError {
            key: format!("--{flag}"),
            value: text.clone(),
            problem,
        }),
    };
    let compile_timeout = match &args.compile_timeout {
        None => DEFAULT_COMPILE_TIMEOUT,
        Some(text) => humantime::parse_duration(text).map_err(|e| SettingError {
            key: "--compile-timeout".into(),
            value: text.clone(),
            problem: format!("{e}; expected a duration like 90s or 5m"),
        })?,
    };
    let memory_bytes = size("compile-memory", &args.compile_memory, DEFAULT_COMPILE_MEMORY)?;
    let compilation = match std::env::current_exe() {
        Ok(exe) => Compilation::Subprocess {
            exe,
            memory_bytes,
            timeout: compile_timeout,
        },
        Err(e) => {
            tracing::warn!("cannot find the redrive executable ({e}); compiling modules without limits");
            Compilation::InProcess
        }
    };
    Ok(EngineSettings {
        cache_dir: if args.no_cache {
            None
        } else {
            args.cache_dir
                .clone()
                .or_else(crate::filter::ArtifactCache::default_dir)
        },
        compilation,
        max_module_bytes: size("max-module-size", &args.max_module_size, DEFAULT_MAX_MODULE_BYTES)?,
        fresh_start: crate::filter::FreshStart::Snapshot,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command, FilterCommand};

    #[test]
    fn sandbox_flags_name_the_flag_in_errors() {
        let cli =
            Cli::try_parse_from(["redrive", "filter", "test", "m.wasm", "--input", "x", "--memory", "big"]).unwrap();
        let Command::Filter(FilterCommand::Test(args)) = cli.command else {
            panic!("parsed as another command")
        };
        let err = super::module_settings(&args.sandbox).unwrap_err().to_string();
        assert!(err.contains("`--memory`"), "{err}");
    }
}
