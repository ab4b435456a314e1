//! Before anything is opened: the run's files must be different files.

use std::path::PathBuf;

use anyhow::Result;

use super::config::RunConfig;
use super::plan::PlannedModule;
use crate::audit::AuditLog;
use crate::core::{Destination, Endpoint, FileIdentity};

/// Refuse a run whose files overlap: the source, the destination, the park destination, the remainder, the
/// discard archive and the audit files must be different files (compared after resolving `..` and
/// symlinks, and by inode for hard links).
pub(super) fn check_distinct_files(config: &RunConfig, modules: &[PlannedModule]) -> Result<()> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    if let Some(path) = config.from.file_path() {
        files.push(("the source".into(), PathBuf::from(path)));
    }
    for (label, destination) in [("--to", &config.to), ("--park", &config.park)] {
        if let Some(path) = destination
            .as_ref()
            .and_then(Destination::endpoint)
            .and_then(Endpoint::file_path)
        {
            files.push((label.into(), PathBuf::from(path)));
        }
    }
    if let Some(remainder) = &config.remainder {
        files.push(("--remainder".into(), remainder.clone()));
    }
    if !config.dry_run {
        files.push(("the discard archive (--archive)".into(), config.archive.clone()));
    }
    for module in modules {
        files.push((
            format!("the audit file of `{}`", module.name),
            AuditLog::path_in(&config.audit_dir, &module.name),
        ));
    }
    let identities: Vec<FileIdentity> = files.iter().map(|(_, path)| FileIdentity::of(path)).collect();
    for (i, a) in identities.iter().enumerate() {
        for (j, b) in identities.iter().enumerate().skip(i + 1) {
            if a.same_as(b) {
                anyhow::bail!(
                    "{} ({}) and {} ({}) are the same file: each must be a file of its own, or one would \
                     overwrite or re-read the other; give another path",
                    files[j].0,
                    files[j].1.display(),
                    files[i].0,
                    files[i].1.display()
                );
            }
        }
    }
    Ok(())
}
