//! A chain of modules: the body a module returns feeds the next; the first skip, discard or failure
//! ends the chain; every module that saw a message leaves one audit record for it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::component::to_wit;
use super::engine::{FilterEngine, LoadedModule};
use super::error::FilterError;
use super::failure::FailureKind;
use super::options::{EngineOptions, EngineSettings};
use super::runner::ModuleRunner;
use super::sandbox::LogLine;
use super::spec::ModuleSpec;
use crate::core::envelope::{AttributeChange, Envelope, Outcome, apply_attribute_changes};
use crate::core::ids::sha256_hex;

/// The modules of a chain, compiled and linked. Shared by all workers; each worker makes its own
/// [`ChainRunner`].
#[derive(Clone)]
pub struct FilterChain {
    engine: FilterEngine,
    modules: Vec<Arc<LoadedModule>>,
}

impl std::fmt::Debug for FilterChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterChain")
            .field("modules", &self.modules)
            .finish_non_exhaustive()
    }
}

impl FilterChain {
    /// Build an engine sized for `workers` and load every module of `specs`, in order.
    /// Module names are made unique (`name#2`) so audit files do not collide.
    pub fn load(specs: &[ModuleSpec], workers: usize, settings: &EngineSettings) -> Result<Self, FilterError> {
        let engine = FilterEngine::new(&EngineOptions::for_modules(specs, workers, settings))?;
        Self::load_with(&engine, specs)
    }

    /// Load every module of `specs` into an existing engine.
    pub fn load_with(engine: &FilterEngine, specs: &[ModuleSpec]) -> Result<Self, FilterError> {
        let mut modules = Vec::with_capacity(specs.len());
        let mut names: Vec<String> = Vec::new();
        for spec in specs {
            let mut spec = spec.clone();
            let base = spec.name.clone();
            let mut n = 1;
            while names.contains(&spec.name) {
                n += 1;
                spec.name = format!("{base}#{n}");
            }
            names.push(spec.name.clone());
            modules.push(Arc::new(engine.load(&spec)?));
        }
        Ok(Self {
            engine: engine.clone(),
            modules,
        })
    }

    /// The engine the chain runs on ([`FilterEngine::interrupt`] stops its calls when the run stops).
    pub fn engine(&self) -> &FilterEngine {
        &self.engine
    }

    /// The modules, in chain order.
    pub fn modules(&self) -> &[Arc<LoadedModule>] {
        &self.modules
    }

    /// Start one instance of every module (calling `init`) for one worker.
    pub fn runner(&self) -> Result<ChainRunner, FilterError> {
        let runners = self
            .modules
            .iter()
            .map(|m| ModuleRunner::new(m.clone()))
            .collect::<Result<_, _>>()?;
        Ok(ChainRunner { runners })
    }
}

/// One module's record of one message, written to its audit log.
#[derive(Clone, Debug, Serialize)]
pub struct AuditRecord {
    /// When the module finished with the message (written to the microsecond).
    #[serde(serialize_with = "micros")]
    pub time: DateTime<Utc>,
    /// The message id.
    pub message_id: String,
    /// Module name (the audit file's name, and its run header's: not repeated in each line).
    #[serde(skip)]
    pub module: String,
    /// The module's verdict, or `failed`.
    pub verdict: Outcome,
    /// The module's reason, or why it failed.
    pub reason: String,
    /// How it failed, when it did: `trap`, `timeout`, `out_of_fuel`, `memory_refused`, `filter_error`,
    /// `bad_output`, `could_not_start`, `interrupted` (for grouping failures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<FailureKind>,
    /// Wall time, in microseconds.
    pub duration_us: u64,
    /// Fuel consumed, the module's cost for this message in wasm instructions: only where fuel is counted
    /// (some module has a fuel budget, `--fuel`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// sha256 of the body the module was given: always in the first module's record; in a later module's only
    /// when an earlier module replaced the body (absent: the body as the source delivered it, whose hash the first
    /// module's record of the message gives).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_sha256_in: Option<String>,
    /// sha256 of the body after the module, when it replaced the body with a different one; absent when the body
    /// went on as it came in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_sha256_out: Option<String>,
    /// The module's log lines (capped, with a truncation marker).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogLine>,
    /// What the source noticed about the message (a malformed dead-letter header, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_notes: Vec<String>,
}

/// An RFC 3339 time to the microsecond (the audit records' `time`).
fn micros<S: serde::Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    // Not `format("%Y-…")`: that parses its format string on every call (1.7 % of a filtered replay's CPU).
    serializer.serialize_str(&time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// What the chain decided about one message.
#[derive(Clone, Debug)]
pub struct ChainOutcome {
    /// Replay, skip, discard — or failed.
    pub outcome: Outcome,
    /// The reason given by the module that settled the outcome (the last one, for a replay).
    pub reason: String,
    /// That module's name; `None` for the chain of no modules (`--no-filter`), which decides nothing itself.
    pub decided_by: Option<String>,
    /// The new body, when a module replaced it.
    pub body: Option<Vec<u8>>,
    /// Attribute changes from every module, in order.
    pub attribute_changes: Vec<AttributeChange>,
    /// One record per module that saw the message.
    pub records: Vec<AuditRecord>,
}

/// A module was disabled after failing too many messages in a row; the run must stop.
#[derive(Clone, Debug, thiserror::Error)]
#[error(
    "filter `{module}` is disabled: it failed {failures} messages in a row (the `redrive.max-failures` limit). \
     The run stops here so it does not burn through the DLQ; failed messages stay in the DLQ. Last failure: {last_reason}"
)]
pub struct ModuleDisabled {
    /// Module name.
    pub module: String,
    /// Failures in a row.
    pub failures: u32,
    /// The last failure's reason.
    pub last_reason: String,
}

/// A worker's instances of a chain.
pub struct ChainRunner {
    runners: Vec<ModuleRunner>,
}

impl ChainRunner {
    /// Run the chain on one message. Returns [`ModuleDisabled`] instead of an outcome when a module was
    /// disabled by an earlier message: the message was not looked at and must stay where it is.
    pub fn decide(&mut self, env: &Envelope) -> Result<ChainOutcome, ModuleDisabled> {
        if self.runners.is_empty() {
            // `--no-filter`: every message is replayed as it came, and there is no module to audit.
            return Ok(ChainOutcome {
                outcome: Outcome::Replay,
                reason: String::new(),
                decided_by: None,
                body: None,
                attribute_changes: Vec::new(),
                records: Vec::new(),
            });
        }
        if let Some(disabled) = self.disabled() {
            return Err(disabled);
        }
        // The message as the modules see it, copied once: each module's changes are applied to it in place.
        let mut message = to_wit(env, &env.body, &env.attributes);
        let mut body_changed = false;
        let mut changes = Vec::new();
        let mut records = Vec::with_capacity(self.runners.len());
        let mut body_hash = sha256_hex(&env.body);
        let mut last = (Outcome::Replay, String::new(), String::new());

        for (position, runner) in self.runners.iter_mut().enumerate() {
            let as_delivered = position > 0 && !body_changed;
            let call = runner.decide(&message);
            let module = runner.module();
            let hash_in = body_hash.clone();
            let (outcome, reason, kind) = match call.result {
                Ok(decision) => {
                    if let Some(new_body) = decision.body {
                        body_hash = sha256_hex(&new_body);
                        message.body = new_body;
                        body_changed = true;
                    }
                    apply_attribute_changes(&mut message.attributes, &decision.attribute_changes);
                    changes.extend(decision.attribute_changes);
                    (Outcome::from(decision.verdict), decision.reason, None)
                }
                Err(failure) => (Outcome::Failed, failure.message, Some(failure.kind)),
            };
            records.push(AuditRecord {
                time: Utc::now(),
                message_id: env.id.clone(),
                module: module.name.clone(),
                verdict: outcome,
                reason: reason.clone(),
                kind,
                duration_us: call.duration.as_micros() as u64,
                fuel: call.fuel,
                body_sha256_out: (body_hash != hash_in).then(|| body_hash.clone()),
                body_sha256_in: (!as_delivered).then_some(hash_in),
                logs: call.logs,
                source_notes: env.notes.clone(),
            });
            last = (outcome, reason, module.name.clone());
            if outcome != Outcome::Replay {
                break;
            }
        }
        let (outcome, reason, decided_by) = last;
        Ok(ChainOutcome {
            outcome,
            reason,
            decided_by: Some(decided_by),
            body: body_changed.then_some(message.body),
            attribute_changes: changes,
            records,
        })
    }

    /// True for the chain of no modules (`--no-filter`): every message is replayed unchanged.
    pub fn is_empty(&self) -> bool {
        self.runners.is_empty()
    }

    /// The first disabled module, if any, as the error a run stops with.
    pub fn disabled(&self) -> Option<ModuleDisabled> {
        self.runners.iter().find(|r| r.is_disabled()).map(|r| ModuleDisabled {
            module: r.module().name.clone(),
            failures: r.consecutive_failures(),
            last_reason: r.last_failure().unwrap_or_default().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn audit_times_are_rfc3339_to_the_microsecond_in_utc() {
        #[derive(Serialize)]
        struct At(#[serde(serialize_with = "micros")] DateTime<Utc>);
        let whole = Utc.with_ymd_and_hms(2026, 12, 6, 3, 25, 0).single().unwrap();
        let odd = whole + chrono::Duration::nanoseconds(1_234_567);
        assert_eq!(
            serde_json::to_string(&At(whole)).unwrap(),
            r#""2026-12-06T03:25:00.000000Z""#
        );
        assert_eq!(
            serde_json::to_string(&At(odd)).unwrap(),
            r#""2026-12-06T03:25:00.001234Z""#
        );
    }
}
