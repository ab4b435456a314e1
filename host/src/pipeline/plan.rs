//! Plans: what a dry run decided, grouped by error, written to a file that `redrive run --plan` replays
//! exactly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::core::envelope::{Envelope, Outcome};
use crate::filter::{ChainOutcome, LoadedModule};

/// Plan file format version.
pub const PLAN_VERSION: u32 = 1;
const SAMPLES_PER_GROUP: usize = 3;

/// A decision kept as a sample of its error group.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sample {
    /// Message id.
    pub id: String,
    /// Outcome.
    pub verdict: Outcome,
    /// The deciding module's reason.
    pub reason: String,
}

/// Messages whose error text normalises to the same pattern.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ErrorGroup {
    /// The normalised error text.
    pub pattern: String,
    /// Messages in the group.
    pub count: u64,
    /// Messages per outcome.
    pub verdicts: HashMap<Outcome, u64>,
    /// A few sample decisions.
    pub samples: Vec<Sample>,
}

/// Collects a dry run's decisions.
#[derive(Debug, Default)]
pub struct PlanCollector {
    groups: HashMap<String, ErrorGroup>,
    messages: Vec<PlannedMessage>,
}

/// One message of a plan.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlannedMessage {
    /// Message id.
    pub id: String,
    /// What the chain decided.
    pub verdict: Outcome,
}

impl PlanCollector {
    /// Record one decision.
    pub fn add(&mut self, env: &Envelope, outcome: &ChainOutcome) {
        let text = env
            .failure
            .error_text
            .as_deref()
            .or(env.failure.reason.as_deref())
            .map_or_else(|| "(no failure context)".to_owned(), normalize_error);
        let group = self.groups.entry(text.clone()).or_insert_with(|| ErrorGroup {
            pattern: text,
            ..Default::default()
        });
        group.count += 1;
        *group.verdicts.entry(outcome.outcome).or_default() += 1;
        if group.samples.len() < SAMPLES_PER_GROUP {
            group.samples.push(Sample {
                id: env.id.clone(),
                verdict: outcome.outcome,
                reason: outcome.reason.clone(),
            });
        }
        self.messages.push(PlannedMessage {
            id: env.id.clone(),
            verdict: outcome.outcome,
        });
    }

    /// Error groups, largest first.
    pub fn groups(&self) -> Vec<&ErrorGroup> {
        let mut groups: Vec<&ErrorGroup> = self.groups.values().collect();
        groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.pattern.cmp(&b.pattern)));
        groups
    }

    /// Build the plan file.
    pub fn into_plan(self, source: &str, modules: Vec<PlannedModule>, options: serde_json::Value) -> Plan {
        let mut groups: Vec<ErrorGroup> = self.groups.into_values().collect();
        groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.pattern.cmp(&b.pattern)));
        Plan {
            version: PLAN_VERSION,
            created_at: Utc::now(),
            source: source.to_owned(),
            modules,
            options,
            error_groups: groups,
            messages: self.messages,
        }
    }
}

/// A module as the plan saw it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlannedModule {
    /// Name.
    pub name: String,
    /// Path of the wasm file.
    pub path: PathBuf,
    /// sha256 of the wasm file: `run --plan` refuses to run if it changed.
    pub sha256: String,
    /// Configuration given to init.
    pub config: Vec<(String, String)>,
}

impl From<&LoadedModule> for PlannedModule {
    fn from(m: &LoadedModule) -> Self {
        Self {
            name: m.name.clone(),
            path: m.path.clone(),
            sha256: m.sha256.clone(),
            config: m.config.clone(),
        }
    }
}

/// A plan file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    /// Format version.
    pub version: u32,
    /// When the plan was made.
    pub created_at: DateTime<Utc>,
    /// Source identity.
    pub source: String,
    /// The chain.
    pub modules: Vec<PlannedModule>,
    /// The options the plan was made with.
    pub options: serde_json::Value,
    /// Error groups with samples.
    pub error_groups: Vec<ErrorGroup>,
    /// Every message and its planned outcome.
    pub messages: Vec<PlannedMessage>,
}

impl Plan {
    /// Write as JSON (mode 0600).
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        use std::io::Write;
        options
            .open(path)
            .and_then(|mut f| f.write_all(&json))
            .with_context(|| format!("cannot write the plan {}", path.display()))
    }

    /// Read a plan file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read(path).with_context(|| format!("cannot read the plan {}", path.display()))?;
        let plan: Plan =
            serde_json::from_slice(&text).with_context(|| format!("{} is not a redrive plan file", path.display()))?;
        if plan.version != PLAN_VERSION {
            bail!(
                "{} is a version {} plan; this redrive reads version {PLAN_VERSION}",
                path.display(),
                plan.version
            );
        }
        Ok(plan)
    }

    /// The selection `run --plan` is restricted to, with the modules it must run.
    pub fn selection(&self) -> PlanSelection {
        PlanSelection {
            ids: self.messages.iter().map(|m| (m.id.clone(), m.verdict)).collect(),
            modules: self.modules.clone(),
        }
    }
}

/// The planned outcome of each message of a plan, and the modules the plan was made with.
#[derive(Clone, Debug, Default)]
pub struct PlanSelection {
    ids: HashMap<String, Outcome>,
    modules: Vec<PlannedModule>,
}

impl PlanSelection {
    /// The planned outcome of `id`, or `None` if the message was not in the plan.
    pub fn planned(&self, id: &str) -> Option<Outcome> {
        self.ids.get(id).copied()
    }

    /// Refuse if a module changed since the plan was made.
    pub fn check_modules(&self, loaded: &[PlannedModule]) -> Result<()> {
        if loaded.len() != self.modules.len() {
            bail!(
                "the plan was made with {} filter modules, this run has {}",
                self.modules.len(),
                loaded.len()
            );
        }
        for (planned, now) in self.modules.iter().zip(loaded) {
            if planned.sha256 != now.sha256 {
                bail!(
                    "filter `{}` changed since the plan was made (sha256 {} then, {} now): make a new plan",
                    planned.name,
                    &planned.sha256[..12.min(planned.sha256.len())],
                    &now.sha256[..12.min(now.sha256.len())]
                );
            }
            if planned.config != now.config {
                bail!(
                    "filter `{}` has a different configuration than when the plan was made",
                    planned.name
                );
            }
        }
        Ok(())
    }
}

/// Normalise an error text so that messages failing the same way group together: quoted values become
/// `<str>`, addresses `<addr>`, numbers `<n>` (HTTP status codes 100–599 are kept), and words with digits
/// (ids, hex, hostnames with suffixes) `<id>`.
pub fn normalize_error(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if !word.is_empty() {
            out.push_str(&normalize_word(word));
            word.clear();
        }
    };
    while let Some(c) = chars.next() {
        if c == '\'' || c == '"' || c == '`' {
            flush(&mut word, &mut out);
            let mut quoted = String::new();
            let mut closed = false;
            for q in chars.by_ref() {
                if q == c {
                    closed = true;
                    break;
                }
                quoted.push(q);
            }
            if closed {
                out.push_str("<str>");
            } else {
                out.push(c);
                out.push_str(&quoted);
            }
        } else if c.is_alphanumeric() || "_.:-/".contains(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn normalize_word(word: &str) -> String {
    let trimmed = word.trim_end_matches([':', '.', '-', '/']);
    let tail = &word[trimmed.len()..];
    if !trimmed.chars().any(|c| c.is_ascii_digit()) {
        return word.to_owned();
    }
    let normalized = if trimmed.chars().all(|c| c.is_ascii_digit()) {
        match trimmed.parse::<u32>() {
            Ok(n) if trimmed.len() == 3 && (100..600).contains(&n) => trimmed.to_owned(),
            _ => "<n>".to_owned(),
        }
    } else if is_address(trimmed) {
        "<addr>".to_owned()
    } else if let Some(unit) = number_with_unit(trimmed) {
        format!("<n>{unit}")
    } else {
        "<id>".to_owned()
    };
    normalized + tail
}

fn is_address(word: &str) -> bool {
    let host = word.rsplit_once(':').map_or(word, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            word
        }
    });
    let parts: Vec<&str> = host.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()))
}

fn number_with_unit(word: &str) -> Option<&str> {
    let digits = word.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = word.split_at(digits);
    (!number.is_empty() && unit.chars().all(|c| c.is_ascii_alphabetic()) && unit.len() <= 3).then_some(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_that_differ_only_in_values_group_together() {
        let cases = [
            (
                "upstream timeout after 30000ms calling payments-7f9c",
                "upstream timeout after <n>ms calling <id>",
            ),
            (
                "upstream timeout after 12000ms calling payments-01ab",
                "upstream timeout after <n>ms calling <id>",
            ),
            ("connection refused: 10.0.3.12:5432", "connection refused: <addr>"),
            (
                "HTTP 503 Service Unavailable from inventory",
                "HTTP 503 Service Unavailable from inventory",
            ),
            (
                "validation failed: field 'sku' missing in item 3",
                "validation failed: field <str> missing in item <n>",
            ),
            (
                "deadlock detected while updating order ord-000481",
                "deadlock detected while updating order <id>",
            ),
            (
                "429 Too Many Requests (retry after 12s)",
                "429 Too Many Requests (retry after <n>s)",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(normalize_error(text), want, "{text}");
        }
    }
}
