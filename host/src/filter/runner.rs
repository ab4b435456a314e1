//! Running one module on messages: instance policy, per-call limits, failure accounting.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use wasmtime::{InstancePre, Store};

use super::blocking::WaitLimit;
use super::command::{self, CommandState};
use super::component::{Filter, WitMessage, from_wit};
use super::engine::{ComponentStart, LoadedModule, ModuleKind};
use super::error::FilterError;
use super::failure::{self, CallFailure, FailureContext, FailureKind};
use super::limits::deadline_ticks;
use super::limits::{
    InstancePolicy, Limits, MAX_ATTRIBUTE_BYTES, MAX_ATTRIBUTE_CHANGES, MAX_REASON_BYTES, format_size,
};
use super::sandbox::{GuestState, LogLine};
use super::watched::ReadFlag;
use crate::core::envelope::{AttributeChange, Decision};

/// The result of one module looking at one message.
#[derive(Debug)]
pub struct ModuleCall {
    /// The decision, or how and why the call failed (trap, timeout, limit, error returned by the filter).
    pub result: Result<Decision, CallFailure>,
    /// Wall time of the call, including instantiation when a fresh instance was needed.
    pub duration: Duration,
    /// Fuel the call consumed, where fuel is counted.
    pub fuel: Option<u64>,
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
    /// A command module's live instance (instance policy `reuse`).
    session: Option<command::Session>,
    /// The command module exits after answering: every message gets a fresh instance.
    session_unsupported: bool,
    consecutive_failures: u32,
    last_failure: Option<String>,
}

/// Why an instance could not be started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StartFailure {
    /// Instantiating or `init` trapped, ran out of time, fuel or memory: what the sandbox saw.
    Trap(String),
    /// `init` returned an error: the filter's own message.
    Init(String),
}

impl StartFailure {
    /// The start-up error naming `module`.
    pub(crate) fn into_error(self, module: &str) -> FilterError {
        let module = module.to_string();
        match self {
            StartFailure::Trap(reason) => FilterError::Start { module, reason },
            StartFailure::Init(message) => FilterError::Init { module, message },
        }
    }
}

impl ModuleRunner {
    /// Start the module: instantiate it and call `init` with its configuration, so that a module which
    /// refuses its configuration is a start-up error naming the module.
    pub fn new(module: Arc<LoadedModule>) -> Result<Self, FilterError> {
        let mut runner = Self {
            module,
            live: None,
            session: None,
            session_unsupported: false,
            consecutive_failures: 0,
            last_failure: None,
        };
        let module = Arc::clone(&runner.module);
        let started = match &module.kind {
            ModuleKind::Component(_) => runner.start().map(|(live, _logs)| runner.live = Some(live)),
            ModuleKind::Command(pre) => match module.settings.policy {
                InstancePolicy::Fresh => runner.check_command_init(pre),
                InstancePolicy::Reuse { .. } => runner.start_session(pre).map(drop),
            },
        };
        match started {
            Ok(()) => Ok(runner),
            Err(failure) => Err(failure.into_error(&runner.module.name)),
        }
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

    fn record(&mut self, result: &Result<Decision, CallFailure>) {
        match result {
            Ok(_) => self.consecutive_failures = 0,
            Err(failure) => {
                self.consecutive_failures += 1;
                self.last_failure = Some(failure.message.clone());
            }
        }
    }

    /// Let the module decide about one message. Never panics and never propagates a guest fault:
    /// any failure comes back as `result: Err(reason)`, and the instance that failed is thrown away.
    pub(crate) fn decide(&mut self, message: &WitMessage) -> ModuleCall {
        let module = Arc::clone(&self.module);
        let call = match &module.kind {
            ModuleKind::Component(_) => self.decide_component(message),
            ModuleKind::Command(pre) => self.decide_command(pre, message),
        };
        self.record(&call.result);
        call
    }

    /// A command module: through its live session (policy `reuse`), or a fresh instance per message.
    fn decide_command(&mut self, pre: &InstancePre<CommandState>, message: &WitMessage) -> ModuleCall {
        let reuse = matches!(self.module.settings.policy, InstancePolicy::Reuse { .. });
        if !reuse || self.session_unsupported {
            return self.decide_command_fresh(pre, message);
        }
        let started = Instant::now();
        let mut logs = Vec::new();
        if self.session.is_none() {
            match self.start_session(pre) {
                Ok(init_logs) => logs = init_logs,
                Err(StartFailure::Trap(reason) | StartFailure::Init(reason)) => {
                    return ModuleCall {
                        result: Err(CallFailure::new(
                            FailureKind::CouldNotStart,
                            format!("could not start a new instance: {reason}"),
                        )),
                        duration: started.elapsed(),
                        fuel: None,
                        logs: Vec::new(),
                    };
                }
            }
        }
        let Some(session) = self.session.as_mut() else {
            // The module answered `init` and exited: it does not loop over its requests.
            return self.decide_command_fresh(pre, message);
        };
        let turn = session.call(command::decide_request(message).into_bytes());
        let fuel = turn.fuel;
        logs.extend(turn.logs);
        let result = turn.answers.and_then(|answers| match answers.as_slice() {
            [decision] => self.check_output(command::parse_decision(decision)?),
            [] => Err(bad_output(
                "it wrote no decision on stdout before reading its next request",
            )),
            _ => Err(bad_output(
                "it wrote more than one decision line on stdout for one message",
            )),
        });
        let recycle_every = match self.module.settings.policy {
            InstancePolicy::Reuse { recycle_every } => recycle_every,
            InstancePolicy::Fresh => 0,
        };
        if result.is_err()
            || self
                .session
                .as_ref()
                .is_none_or(|s| !s.is_alive() || s.calls > recycle_every)
        {
            self.session = None;
        }
        ModuleCall {
            result,
            duration: started.elapsed(),
            fuel,
            logs,
        }
    }

    /// Start a command session and check its answer to `init`; the session is kept when its instance lives
    /// on. Returns the log lines of the start.
    fn start_session(&mut self, pre: &InstancePre<CommandState>) -> Result<Vec<LogLine>, StartFailure> {
        let (session, turn) = command::Session::start(
            pre,
            &self.module.settings.limits,
            &self.module.config,
            self.module.engine.stopping(),
        );
        let answers = turn.answers.map_err(|f| StartFailure::Trap(f.message))?;
        let first = answers.first().ok_or_else(|| {
            StartFailure::Trap(
                "it did not answer `init` on stdout: a command filter reads JSON lines on stdin and answers each \
                 with one line (guest-sdk/wit/command.schema.json)"
                    .to_string(),
            )
        })?;
        match command::parse_init_answer(first) {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Err(StartFailure::Init(message)),
            Err(problem) => return Err(StartFailure::Trap(problem)),
        }
        self.session_unsupported = session.is_none();
        self.session = session;
        Ok(turn.logs)
    }

    /// A command module, fresh instance: fed `init` and `decide`, answering with two lines.
    fn decide_command_fresh(&self, pre: &InstancePre<CommandState>, message: &WitMessage) -> ModuleCall {
        let started = Instant::now();
        let mut requests = command::init_request(&self.module.config);
        requests.push_str(&command::decide_request(message));
        let run = command::run(
            pre,
            &self.module.settings.limits,
            requests.into_bytes(),
            self.module.engine.stopping(),
        );
        let result = run.answers.and_then(|answers| {
            let mut answers = answers.into_iter();
            let init = answers.next().ok_or_else(|| {
                bad_output("it exited without answering `init` on stdout (see guest-sdk/wit/command.schema.json)")
            })?;
            if let Err(message) = command::parse_init_answer(&init).map_err(bad_output)? {
                return Err(CallFailure::new(
                    FailureKind::CouldNotStart,
                    format!("filter refused its configuration: {message}"),
                ));
            }
            let decision = answers
                .next()
                .ok_or_else(|| bad_output("it answered `init` but exited with no decision on stdout"))?;
            if answers.next().is_some() {
                return Err(bad_output(
                    "it wrote more than one decision line on stdout for one message",
                ));
            }
            self.check_output(command::parse_decision(&decision)?)
        });
        ModuleCall {
            result,
            duration: started.elapsed(),
            fuel: run.fuel,
            logs: run.logs,
        }
    }

    /// A command module at start-up: run `init` alone, so a refused configuration stops the run at once.
    fn check_command_init(&self, pre: &InstancePre<CommandState>) -> Result<(), StartFailure> {
        let request = command::init_request(&self.module.config);
        let run = command::run(
            pre,
            &self.module.settings.limits,
            request.into_bytes(),
            self.module.engine.stopping(),
        );
        let answers = run.answers.map_err(|f| StartFailure::Trap(f.message))?;
        let first = answers.first().ok_or_else(|| {
            StartFailure::Trap(
                "it exited without answering `init` on stdout: a command filter reads JSON lines on stdin and \
                 answers each with one line (guest-sdk/wit/command.schema.json)"
                    .to_string(),
            )
        })?;
        match command::parse_init_answer(first) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(StartFailure::Init(message)),
            Err(problem) => Err(StartFailure::Trap(problem)),
        }
    }

    /// A component: the live instance (or a fresh one), `decide` under the module's limits.
    fn decide_component(&mut self, message: &WitMessage) -> ModuleCall {
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
                    return ModuleCall {
                        result: Err(CallFailure::new(
                            FailureKind::CouldNotStart,
                            format!("could not start a fresh instance: {reason}"),
                        )),
                        duration: started.elapsed(),
                        fuel: None,
                        logs: Vec::new(),
                    };
                }
            },
        };

        let limits = &self.module.settings.limits;
        let prepared = arm(&mut live.store, limits);
        live.store.data_mut().limiter.refused_memory = None;
        live.store.data_mut().wait.restart();
        let outcome = prepared.and_then(|()| live.filter.call_decide(&mut live.store, message));
        let fuel = limits.fuel_spent(&live.store);
        live.calls += 1;

        let state = live.store.data_mut();
        let (result, trapped) = match outcome {
            Ok(Ok(decision)) => (self.check_output(from_wit(decision)), false),
            Ok(Err(message)) => (
                Err(CallFailure::new(
                    FailureKind::FilterError,
                    format!("filter returned an error: {message}"),
                )),
                false,
            ),
            Err(err) => (Err(describe_failure(state, &err, limits)), true),
        };
        let mut logs = start_logs;
        logs.extend(state.take_logs());
        // A trapped instance refuses further calls: drop it, the next message gets a fresh one.
        let keep = !trapped
            && match self.module.settings.policy {
                InstancePolicy::Fresh => false,
                InstancePolicy::Reuse { recycle_every } => live.calls < recycle_every,
            };
        if keep {
            self.live = Some(live);
        } else {
            // Torn down inside the call's time: resetting a fresh instance's memory (half of its cost, most of it
            // in the kernel) is part of what the message cost, and its record and `filter test` say so.
            drop(live);
        }
        ModuleCall {
            result,
            duration: started.elapsed(),
            fuel,
            logs,
        }
    }

    /// A decision within the caps of what a filter may hand back: body size (`max-output`), reason length,
    /// number and size of attribute changes. Past a cap the message fails, before the host spends any work on it.
    fn check_output(&self, decision: Decision) -> Result<Decision, CallFailure> {
        let max = self.module.settings.limits.max_output_bytes;
        if let Some(body) = decision.body.as_ref().filter(|b| b.len() as u64 > max) {
            return Err(bad_output(format!(
                "output too large: returned a body of {}, the limit is {}",
                format_size(body.len() as u64),
                format_size(max)
            )));
        }
        if decision.reason.len() > MAX_REASON_BYTES {
            return Err(bad_output(format!(
                "reason too long: {}, the limit is {}",
                format_size(decision.reason.len() as u64),
                format_size(MAX_REASON_BYTES as u64)
            )));
        }
        let changes = &decision.attribute_changes;
        if changes.len() > MAX_ATTRIBUTE_CHANGES {
            return Err(bad_output(format!(
                "too many attribute changes: {}, the limit is {MAX_ATTRIBUTE_CHANGES}",
                changes.len()
            )));
        }
        let bytes: usize = changes
            .iter()
            .map(|c| match c {
                AttributeChange::Set(name, value) => name.len() + value.len(),
                AttributeChange::Remove(name) => name.len(),
            })
            .sum();
        if bytes > MAX_ATTRIBUTE_BYTES {
            return Err(bad_output(format!(
                "attribute changes too large: {} of names and values, the limit is {}",
                format_size(bytes as u64),
                format_size(MAX_ATTRIBUTE_BYTES as u64)
            )));
        }
        Ok(decision)
    }

    /// A fresh instance ready to decide, under the module's limits: `init` called with the configuration,
    /// unless the component is pre-initialised (`init` already ran on this configuration, at load).
    fn start(&self) -> Result<(Live, Vec<super::sandbox::LogLine>), StartFailure> {
        let module = &self.module;
        let ModuleKind::Component(component) = &module.kind else {
            return Err(StartFailure::Trap("not a component".into()));
        };
        let limits = &module.settings.limits;
        let mut store = guest_store(module.engine.wasmtime(), limits, module.engine.stopping(), None);
        if let Err(e) = arm(&mut store, limits) {
            return Err(start_trap(store.data(), &e, limits));
        }
        let filter = match component.pre.instantiate(&mut store) {
            Ok(filter) => filter,
            Err(e) => return Err(start_trap(store.data(), &e, limits)),
        };
        if component.start == ComponentStart::CallInit {
            run_init(&filter, &mut store, &module.config, limits)?;
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

/// Call `init` with `config` on a new instance (its store armed for the call): how it failed, as a start-up
/// failure. The runner's start and the pre-initialiser's single `init` (`snapshot.rs`) both report through it.
pub(crate) fn run_init(
    filter: &Filter,
    store: &mut Store<GuestState>,
    config: &[(String, String)],
    limits: &Limits,
) -> Result<(), StartFailure> {
    match filter.call_init(&mut *store, config) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(message)) => Err(StartFailure::Init(message)),
        Err(e) => Err(start_trap(store.data(), &e, limits)),
    }
}

/// A start that trapped (arming, instantiating or `init`), worded with what the sandbox saw.
fn start_trap(state: &GuestState, err: &wasmtime::Error, limits: &Limits) -> StartFailure {
    StartFailure::Trap(describe_failure(state, err, limits).message)
}

/// A store for one instance of a component, with the module's sandbox: memory cap, log caps, a deadline for
/// blocking host calls; with `watch`, the guest's clocks and random sources set that flag when read. Arm it
/// with [`arm`] before each call.
pub(crate) fn guest_store(
    engine: &wasmtime::Engine,
    limits: &Limits,
    stopping: Arc<AtomicBool>,
    watch: Option<&ReadFlag>,
) -> Store<GuestState> {
    let wait = WaitLimit::starting_now(limits.timeout, stopping);
    let state = GuestState::new(limits.memory_bytes, limits.max_log_bytes, wait, watch);
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    store
}

/// Give the store one call's budget: fuel (where counted) and the epoch deadline.
pub(crate) fn arm(store: &mut Store<GuestState>, limits: &Limits) -> wasmtime::Result<()> {
    limits.refuel(&mut *store)?;
    store.set_epoch_deadline(deadline_ticks(limits.timeout));
    Ok(())
}

/// Describe a failed call with what the sandbox saw: a refused memory growth, the guest's stderr.
fn describe_failure(state: &GuestState, err: &wasmtime::Error, limits: &Limits) -> CallFailure {
    failure::describe(
        err,
        &FailureContext {
            limits,
            refused_memory: state.limiter.refused_memory,
            stderr: &state.stderr.peek_text(),
            stopping: state.wait.stopping.load(std::sync::atomic::Ordering::Relaxed),
        },
    )
}

/// A decision that breaks the contract or a cap.
fn bad_output(message: impl Into<String>) -> CallFailure {
    CallFailure::new(FailureKind::BadOutput, message)
}
