//! The shape of the code, checked: one direction of dependencies (`core` ← `brokers`, `filter`, `audit` ←
//! `pipeline` ← `commands` ← `main`), brokers that know no other broker and no pipeline, a pipeline that sees
//! brokers only through the `core` traits, and small files. These rules are what make the next broker
//! cheap to add (docs/adapters.md); this test keeps them true.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, with its path relative to `src/` and its code without comments.
fn sources(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let code: String = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .map(|l| format!("{l}\n"))
                    .collect();
                let relative = path.strip_prefix(src()).unwrap().display().to_string();
                out.push((relative, code));
            }
        }
    }
    out.sort();
    out
}

/// The top-level modules (and, for `brokers`, the broker) a file's code names with `crate::...`.
fn uses(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let mut parts = path.split("::").filter(|p| !p.is_empty());
        let Some(top) = parts.next() else { continue };
        match (top, parts.next()) {
            ("brokers", Some(broker)) if broker.chars().all(|c| c.is_lowercase() || c == '_') => {
                found.insert(format!("brokers::{broker}"));
            }
            (top, _) => {
                found.insert(top.to_owned());
            }
        }
    }
    found
}

fn violations(rule: impl Fn(&str, &BTreeSet<String>) -> Vec<String>) -> Vec<String> {
    sources(&src())
        .iter()
        .flat_map(|(file, code)| rule(file, &uses(code)).into_iter().map(move |v| format!("{file}: {v}")))
        .collect()
}

#[test]
fn core_imports_nothing_else_of_the_crate() {
    let found = violations(|file, used| {
        if !file.starts_with("core/") {
            return Vec::new();
        }
        used.iter()
            .filter(|u| *u != "core")
            .map(|u| format!("uses crate::{u}"))
            .collect()
    });
    assert!(found.is_empty(), "core must be a leaf:\n{}", found.join("\n"));
}

#[test]
fn a_broker_knows_only_core_and_itself() {
    let found = violations(|file, used| {
        let Some(rest) = file.strip_prefix("brokers/") else {
            return Vec::new();
        };
        let own = match rest.split_once('/') {
            Some((broker, _)) => format!("brokers::{broker}"),
            None => return Vec::new(), // brokers/mod.rs maps schemes to brokers
        };
        used.iter()
            .filter(|u| *u != "core" && **u != own)
            .map(|u| format!("uses crate::{u}"))
            .collect()
    });
    assert!(found.is_empty(), "brokers depend only on core:\n{}", found.join("\n"));
}

#[test]
fn the_pipeline_sees_no_broker_and_nothing_above_it() {
    let found = violations(|file, used| {
        if !file.starts_with("pipeline/") {
            return Vec::new();
        }
        used.iter()
            .filter(|u| u.starts_with("brokers") || ["commands", "cli", "observe"].contains(&u.as_str()))
            .map(|u| format!("uses crate::{u}"))
            .collect()
    });
    assert!(
        found.is_empty(),
        "the pipeline sees brokers only through core's traits:\n{}",
        found.join("\n")
    );
}

#[test]
fn filter_and_audit_stay_below_the_pipeline() {
    let found = violations(|file, used| {
        let allowed: &[&str] = if file.starts_with("filter/") {
            &["core", "filter"]
        } else if file.starts_with("audit/") {
            &["core", "audit", "filter"]
        } else {
            return Vec::new();
        };
        used.iter()
            .filter(|u| !allowed.contains(&u.as_str()))
            .map(|u| format!("uses crate::{u}"))
            .collect()
    });
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn observers_read_the_pipeline_and_know_no_broker() {
    let found = violations(|file, used| {
        if !file.starts_with("observe/") {
            return Vec::new();
        }
        used.iter()
            .filter(|u| !["core", "filter", "pipeline", "observe"].contains(&u.as_str()))
            .map(|u| format!("uses crate::{u}"))
            .collect()
    });
    assert!(
        found.is_empty(),
        "metrics, reports and the live page read the pipeline's telemetry only:\n{}",
        found.join("\n")
    );
}

#[test]
fn nothing_builds_on_the_fuzzing_entry_points() {
    let found = violations(|_, used| {
        used.iter()
            .filter(|u| *u == "decoders")
            .map(|u| format!("uses crate::{u}"))
            .collect()
    });
    assert!(
        found.is_empty(),
        "decoders.rs is for fuzz targets and property tests; the program reaches the decoders directly:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_commands_know_the_command_line() {
    let found = violations(|file, used| {
        if file.starts_with("commands/") || file == "main.rs" || file == "cli.rs" {
            return Vec::new();
        }
        used.iter()
            .filter(|u| *u == "cli")
            .map(|u| format!("uses crate::{u}"))
            .collect()
    });
    assert!(found.is_empty(), "{}", found.join("\n"));
    let cli = sources(&src())
        .into_iter()
        .find(|(file, _)| file == "cli.rs")
        .map(|(_, code)| uses(&code))
        .unwrap_or_default();
    assert!(
        cli.is_empty(),
        "cli.rs holds only the clap definitions, it uses {cli:?}"
    );
}

#[test]
fn the_command_profile_does_not_reach_back_into_the_engine() {
    let found = violations(|file, _| {
        if !file.starts_with("filter/command/") {
            return Vec::new();
        }
        let code = std::fs::read_to_string(src().join(file)).unwrap_or_default();
        let back =
            code.contains("super::engine") || code.contains("filter::engine") || code.contains("super::super::engine");
        if back {
            vec!["imports the engine".into()]
        } else {
            Vec::new()
        }
    });
    assert!(
        found.is_empty(),
        "engine uses command, not the other way round:\n{}",
        found.join("\n")
    );
}

#[test]
fn no_source_file_is_longer_than_600_lines() {
    let long: Vec<String> = sources(&src())
        .iter()
        .filter_map(|(file, _)| {
            let lines = std::fs::read_to_string(src().join(file)).unwrap().lines().count();
            (lines > 600).then(|| format!("{file}: {lines} lines"))
        })
        .collect();
    assert!(long.is_empty(), "split these by what they do:\n{}", long.join("\n"));
}
