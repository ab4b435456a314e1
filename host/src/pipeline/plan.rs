//! Plans: what a dry run decided, grouped by error, written to a file that `redrive run --plan` replays
//! exactly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::groups::ErrorGroups;
pub use super::groups::{ErrorGroup, Sample, normalize_error};
use crate::core::envelope::{Envelope, Outcome};
use crate::filter::{ChainOutcome, LoadedModule};

/// Plan file format version.
pub const PLAN_VERSION: u32 = 1;

/// Collects a dry run's decisions.
#[derive(Debug, Default)]
pub struct PlanCollector {
    groups: ErrorGroups,
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
        self.groups.add(env, outcome);
        self.messages.push(PlannedMessage {
            id: env.id.clone(),
            verdict: outcome.outcome,
        });
    }

    /// Error groups, largest first.
    pub fn groups(&self) -> Vec<&ErrorGroup> {
        self.groups.sorted()
    }

    /// Build the plan file.
    pub fn into_plan(self, source: &str, modules: Vec<PlannedModule>, options: serde_json::Value) -> Plan {
        let groups = self.groups.into_sorted();
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
        crate::core::files::write_private(path, &json)
            .with_context(|| format!("cannot write the plan {}", path.display()))
    }

    /// Read a plan file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read(path).with_context(|| format!("cannot read the plan {}", path.display()))?;
        Self::from_bytes(&text).with_context(|| format!("{} is not a plan this redrive can use", path.display()))
    }

    /// A plan from the bytes of a plan file.
    pub fn from_bytes(text: &[u8]) -> Result<Self> {
        let plan: Plan = serde_json::from_slice(text).context("not a redrive plan file")?;
        if plan.version != PLAN_VERSION {
            bail!(
                "a version {} plan; this redrive reads version {PLAN_VERSION}",
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
