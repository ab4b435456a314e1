//! Running one module on messages: instance policy, per-call limits, failure accounting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;

use super::component::{Filter, WitMessage, from_wit};
use super::engine::{LoadedModule, deadline_ticks};
use super::error::FilterError;
use super::failure::{self, FailureContext};
use super::limits::{InstancePolicy, Limits, format_size};
use super::sandbox::{GuestState, LogLine};
use crate::message::Decision;

/// The result of one module looking at one message.
#[derive(Debug)]
pub struct ModuleCall {
    /// The decision, or why the call failed (trap, timeout, limit, error returned by the filter).
    pub result: Result<Decision, String>,
    /// Wall time of the call, including instantiation when a fresh instance was needed.
    pub duration: Duration,
    /// Fuel the call consumed.
    pub fuel: u64,
    /// What the module logged.
    pub logs: Vec<LogLine>,
}

/// One live instance and its store.
struct Live {
    store: Store<GuestState>,
    filter: Filter,
    calls: u64,
}

/// Runs one module for one worker. Not shared between threads; each worker has its own.
pub struct ModuleRunner {
    module: Arc<LoadedModule>,
    live: Option<Live>,
    consecutive_failures: u32,
    last_failure: Option<String>,
}

/// Why an instance could not be started.
enum StartFailure {
    Trap(String),
    Init(String),
}

impl ModuleRunner {
    /// Start the module: instantiate it and call `init` with its configuration, so that a module which
    /// refuses its configuration is a start-up error naming the module.
    pub fn new(module: Arc<LoadedModule>) -> Result<Self, FilterError> {
        let mut runner = Self {
            module,
            live: None,
            consecutive_failures: 0,
            last_failure: None,
        };
        match runner.start() {
            Ok((live, _logs)) => runner.live = Some(live),
            Err(StartFailure::Trap(reason)) => {
                return Err(FilterError::Start {
                    module: runner.module.name.clone(),
                    reason,
                });
            }
            Err(StartFailure::Init(message)) => {
                return Err(FilterError::Init {
                    module: runner.module.name.clone(),
                    message,
                });
            }
        }
        Ok(runner)
    }

    /// The module this runner runs.
    pub fn module(&self) -> &Arc<LoadedModule> {
        &self.module
    }

    /// True once the module failed `max_consecutive_failures` times in a row.
    pub fn is_disabled(&self) -> bool {
        self.consecutive_failures >= self.module.settings.max_consecutive_failures
    }

    /// Failures in a row so far.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// The reason of the most recent failure.
    pub fn last_failure(&self) -> Option<&str> {
        self.last_failure.as_deref()
    }

    fn record(&mut self, result: &Result<Decision, String>) {
        match result {
            Ok(_) => self.consecutive_failures = 0,
            Err(reason) => {
                self.consecutive_failures += 1;
                self.last_failure = Some(reason.clone());
            }
        }
    }

    /// Let the module decide about one message. Never panics and never propagates a guest fault:
    /// any failure comes back as `result: Err(reason)`, and the instance that failed is thrown away.
    pub(crate) fn decide(&mut self, message: &WitMessage) -> ModuleCall {
        let started = Instant::now();
        let mut start_logs = Vec::new();
        let mut live = match self.live.take() {
            Some(live) => live,
            None => match self.start() {
                Ok((live, logs)) => {
                    start_logs = logs;
                    live
                }
                Err(StartFailure::Trap(reason) | StartFailure::Init(reason)) => {
                    let result = Err(format!("could not start a fresh instance: {reason}"));
                    self.record(&result);
                    return ModuleCall {
                        result,
                        duration: started.elapsed(),
                        fuel: 0,
                        logs: Vec::new(),
                    };
                }
            },
        };

        let limits = &self.module.settings.limits;
        let prepared = live
            .store
            .set_fuel(limits.fuel)
            .map(|()| live.store.set_epoch_deadline(deadline_ticks(limits.timeout)));
        live.store.data_mut().limiter.refused_memory = None;
        let outcome = prepared.and_then(|()| live.filter.call_decide(&mut live.store, message));
        let fuel = limits.fuel.saturating_sub(live.store.get_fuel().unwrap_or(0));
        live.calls += 1;

        let state = live.store.data_mut();
        let (result, trapped) = match outcome {
            Ok(Ok(decision)) => (self.check_output(from_wit(decision)), false),
            Ok(Err(message)) => (Err(format!("filter returned an error: {message}")), false),
            Err(err) => (Err(describe_failure(state, &err, limits)), true),
        };
        let mut logs = start_logs;
        logs.extend(state.take_logs());
        self.record(&result);
        // A trapped instance refuses further calls: drop it, the next message gets a fresh one.
        let keep = !trapped
            && match self.module.settings.policy {
                InstancePolicy::Fresh => false,
                InstancePolicy::Reuse { recycle_every } => live.calls < recycle_every,
            };
        if keep {
            self.live = Some(live);
        }
        ModuleCall {
            result,
            duration: started.elapsed(),
            fuel,
            logs,
        }
    }

    fn check_output(&self, decision: Decision) -> Result<Decision, String> {
        let max = self.module.settings.limits.max_output_bytes;
        match &decision.body {
            Some(body) if body.len() as u64 > max => Err(format!(
                "output too large: returned a body of {}, the limit is {}",
                format_size(body.len() as u64),
                format_size(max)
            )),
            _ => Ok(decision),
        }
    }

    /// A fresh instance with `init` called, under the module's limits.
    fn start(&self) -> Result<(Live, Vec<super::sandbox::LogLine>), StartFailure> {
        let module = &self.module;
        let limits = &module.settings.limits;
        let mut store = Store::new(
            module.engine.wasmtime(),
            GuestState::new(limits.memory_bytes, limits.max_log_bytes),
        );
        store.limiter(|state| &mut state.limiter);
        let describe =
            |store: &mut Store<GuestState>, err: wasmtime::Error| describe_failure(store.data(), &err, limits);
        if let Err(e) = store.set_fuel(limits.fuel) {
            return Err(StartFailure::Trap(describe(&mut store, e)));
        }
        store.set_epoch_deadline(deadline_ticks(limits.timeout));
        let filter = match module.pre.instantiate(&mut store) {
            Ok(filter) => filter,
            Err(e) => return Err(StartFailure::Trap(describe(&mut store, e))),
        };
        match filter.call_init(&mut store, &module.config) {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Err(StartFailure::Init(message)),
            Err(e) => return Err(StartFailure::Trap(describe(&mut store, e))),
        }
        let logs = store.data_mut().take_logs();
        Ok((
            Live {
                store,
                filter,
                calls: 0,
            },
            logs,
        ))
    }
}

/// Describe a failed call with what the sandbox saw: a refused memory growth, the guest's stderr.
fn describe_failure(state: &GuestState, err: &wasmtime::Error, limits: &Limits) -> String {
    failure::describe(
        err,
        &FailureContext {
            limits,
            refused_memory: state.limiter.refused_memory,
            stderr: &state.stderr.peek_text(),
        },
    )
}
