//! `redrive.toml`: the run configuration file. Command-line flags override it. Relative paths in the file
//! (file: URLs, filter paths, directories) are relative to the file's own directory, and the verify command
//! runs there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// The file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct FileConfig {
    pub from: Option<String>,
    pub to: Option<String>,
    #[serde(default)]
    pub filters: Vec<FilterEntry>,
    pub rate: Option<String>,
    pub burst: Option<u32>,
    pub ramp_from: Option<String>,
    pub ramp_over: Option<String>,
    pub canary: Option<u64>,
    pub verify_cmd: Option<String>,
    pub verify: Option<String>,
    pub max: Option<u64>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub max_replays: Option<u32>,
    pub park: Option<String>,
    pub fleet: Option<String>,
    pub max_in_flight: Option<usize>,
    pub message_memory: Option<String>,
    pub abort_if_returning: Option<String>,
    pub returning_window: Option<String>,
    pub audit_dir: Option<PathBuf>,
    pub archive: Option<PathBuf>,
    pub remainder: Option<PathBuf>,
    pub workers: Option<usize>,
    pub allow_reorder: Option<bool>,
    /// AWS settings for SQS (`profile`, `region`, `endpoint_url`).
    #[serde(default)]
    pub aws: AwsEntry,
    /// Sandbox limits for every module (`memory = "64MiB"`, `timeout = "1s"`, ...).
    #[serde(default)]
    pub limits: BTreeMap<String, toml::Value>,
}

/// The `[aws]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsEntry {
    /// Named profile.
    pub profile: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Endpoint URL (a local SQS-compatible server).
    pub endpoint_url: Option<String>,
}

/// One `[[filters]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterEntry {
    /// Path of the wasm module.
    pub path: PathBuf,
    /// Display name (default: the file stem).
    pub name: Option<String>,
    /// Configuration given to the filter's init.
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
    /// Sandbox limits for this module.
    #[serde(default)]
    pub limits: BTreeMap<String, toml::Value>,
}

/// A loaded config file and the directory its relative paths are relative to.
#[derive(Debug)]
pub struct LoadedConfig {
    /// The settings.
    pub file: FileConfig,
    /// The file's directory (the current directory when there is no file).
    pub dir: PathBuf,
}

impl Default for LoadedConfig {
    fn default() -> Self {
        Self {
            file: FileConfig::default(),
            dir: PathBuf::from("."),
        }
    }
}

impl LoadedConfig {
    /// Read and parse `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read the config file {}", path.display()))?;
        let file: FileConfig =
            toml::from_str(&text).with_context(|| format!("{} is not a valid redrive config", path.display()))?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        Ok(Self { file, dir })
    }

    /// A path from the file, made relative to the file's directory.
    pub fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.dir.join(p)
        }
    }

    /// A URL from the file: `file:` URLs with relative paths are made relative to the file's directory.
    pub fn url(&self, url: &str) -> String {
        match url.strip_prefix("file:") {
            Some(p) if !p.is_empty() && !Path::new(p).is_absolute() => format!("file:{}", self.dir.join(p).display()),
            _ => url.to_owned(),
        }
    }
}

/// A TOML value as the string a filter's init or a limit setting receives.
pub fn value_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => items.iter().map(value_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("redrive.toml");
        std::fs::write(
            &path,
            r#"
from = "file:dlq.jsonl"
to = "file:/abs/out.jsonl"
canary = 10
[limits]
timeout = "500ms"
[[filters]]
path = "f.wasm"
config = { transient = ["timeout", "503"], threshold = 3 }
"#,
        )
        .unwrap();
        let loaded = LoadedConfig::read(&path).unwrap();
        assert_eq!(
            loaded.url(loaded.file.from.as_deref().unwrap()),
            format!("file:{}", dir.path().join("dlq.jsonl").display())
        );
        assert_eq!(loaded.url("file:/abs/out.jsonl"), "file:/abs/out.jsonl");
        assert_eq!(loaded.path(&loaded.file.filters[0].path), dir.path().join("f.wasm"));
        assert_eq!(value_text(&loaded.file.filters[0].config["transient"]), "timeout,503");
        assert_eq!(value_text(&loaded.file.filters[0].config["threshold"]), "3");
    }

    #[test]
    fn unknown_keys_are_refused_with_the_key_named() {
        let err = toml::from_str::<FileConfig>("form = \"file:x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `form`"), "{err}");
    }
}
