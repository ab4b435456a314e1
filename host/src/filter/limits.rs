//! Per-module sandbox limits and instance policy, with their defaults and parsing.

use std::fmt;
use std::time::Duration;

/// How often the epoch advances; per-call deadlines are counted in these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Deadline ticks for a timeout: rounded up, plus one for the tick already under way.
pub(crate) fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64).max(1) + 1
}

/// Resource limits applied to one module, per message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory cap, in bytes (default 64 MiB).
    pub memory_bytes: u64,
    /// Wall-clock deadline for one call, enforced by epoch interruption (default 1 s).
    pub timeout: Duration,
    /// Fuel budget for one call, in wasm instructions (about 10⁹ a second); `None` (the default): fuel is not
    /// counted, and the deadline alone bounds a call.
    pub fuel: Option<u64>,
    /// Largest body a module may return (default 8 MiB).
    pub max_output_bytes: u64,
    /// Log volume kept per message: `log` lines plus captured stdout/stderr (default 64 KiB).
    pub max_log_bytes: u64,
}

impl Limits {
    /// Give a store this call's fuel: its budget where fuel is counted; nothing to do otherwise.
    pub(crate) fn refuel(&self, mut store: impl wasmtime::AsContextMut) -> wasmtime::Result<()> {
        match self.fuel {
            Some(budget) => store.as_context_mut().set_fuel(budget),
            None => Ok(()),
        }
    }

    /// What the call since [`Limits::refuel`] spent, from the fuel its store has left; `None` where fuel is
    /// not counted.
    pub(crate) fn fuel_spent(&self, store: impl wasmtime::AsContext) -> Option<u64> {
        let budget = self.fuel?;
        Some(budget.saturating_sub(store.as_context().get_fuel().unwrap_or(0)))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            timeout: Duration::from_secs(1),
            fuel: None,
            max_output_bytes: 8 << 20,
            max_log_bytes: 64 << 10,
        }
    }
}

/// Longest reason one decision may give, in bytes: a reason is a sentence for the audit log.
pub const MAX_REASON_BYTES: usize = 4 << 10;
/// Most attribute changes one decision may make.
pub const MAX_ATTRIBUTE_CHANGES: usize = 1_000;
/// Largest total size of the names and values in one decision's attribute changes, in bytes.
pub const MAX_ATTRIBUTE_BYTES: usize = 1 << 20;

/// How instances of a module are used across messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstancePolicy {
    /// Keep one instance across messages (fast); throw it away after a failure and every `recycle_every` messages.
    Reuse {
        /// Messages after which the instance is replaced by a fresh one.
        recycle_every: u64,
    },
    /// A fresh instance for every message: no state can leak from one message to the next.
    Fresh,
}

impl Default for InstancePolicy {
    fn default() -> Self {
        InstancePolicy::Reuse { recycle_every: 10_000 }
    }
}

impl fmt::Display for InstancePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstancePolicy::Reuse { recycle_every } => write!(f, "reuse (recycled every {recycle_every} messages)"),
            InstancePolicy::Fresh => f.write_str("fresh instance per message"),
        }
    }
}

/// Everything the host decides about running one module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleSettings {
    /// Sandbox limits.
    pub limits: Limits,
    /// Instance reuse policy.
    pub policy: InstancePolicy,
    /// After this many failures in a row the module is disabled and the run stops (default 10).
    pub max_consecutive_failures: u32,
}

impl Default for ModuleSettings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            policy: InstancePolicy::default(),
            max_consecutive_failures: 10,
        }
    }
}

/// A setting given with a bad value.
#[derive(Debug, thiserror::Error)]
#[error("bad value {value:?} for `{key}`: {problem}")]
pub struct SettingError {
    /// The setting's name.
    pub key: String,
    /// The value given.
    pub value: String,
    /// What is wrong and what is expected.
    pub problem: String,
}

impl ModuleSettings {
    /// The host setting names, as accepted by [`ModuleSettings::set`] (and after `redrive.` in a module spec).
    pub const KEYS: &'static [&'static str] = &[
        "memory",
        "timeout",
        "fuel",
        "max-output",
        "max-log",
        "instance",
        "recycle-every",
        "max-failures",
    ];

    /// Change one setting by name, e.g. `("memory", "128MiB")`, `("timeout", "250ms")`, `("instance", "fresh")`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SettingError> {
        let bad = |problem: &str| SettingError {
            key: key.to_owned(),
            value: value.to_owned(),
            problem: problem.to_owned(),
        };
        match key {
            "memory" => self.limits.memory_bytes = parse_size(value).map_err(|p| bad(&p))?,
            "max-output" => self.limits.max_output_bytes = parse_size(value).map_err(|p| bad(&p))?,
            "max-log" => self.limits.max_log_bytes = parse_size(value).map_err(|p| bad(&p))?,
            "timeout" => {
                let d = humantime::parse_duration(value)
                    .map_err(|e| bad(&format!("{e}; expected a duration like 500ms or 2s")))?;
                if d.is_zero() {
                    return Err(bad("must be more than zero"));
                }
                self.limits.timeout = d;
            }
            "fuel" => {
                self.limits.fuel = match value {
                    "off" => None,
                    units => Some(
                        units
                            .replace('_', "")
                            .parse()
                            .map_err(|_| bad("expected a whole number of fuel units, or `off`"))?,
                    ),
                }
            }
            "instance" => {
                self.policy = match value {
                    "reuse" => match self.policy {
                        InstancePolicy::Fresh => InstancePolicy::default(),
                        keep => keep,
                    },
                    "fresh" => InstancePolicy::Fresh,
                    _ => return Err(bad("expected `reuse` or `fresh`")),
                }
            }
            "recycle-every" => {
                let n: u64 = value.parse().map_err(|_| bad("expected a whole number of messages"))?;
                if n == 0 {
                    return Err(bad("must be at least 1"));
                }
                if let InstancePolicy::Reuse { recycle_every } = &mut self.policy {
                    *recycle_every = n;
                }
            }
            "max-failures" => {
                let n: u32 = value.parse().map_err(|_| bad("expected a whole number"))?;
                if n == 0 {
                    return Err(bad("must be at least 1"));
                }
                self.max_consecutive_failures = n;
            }
            _ => {
                return Err(bad(&format!(
                    "unknown setting; known settings: {}",
                    Self::KEYS.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// Parse a byte size such as `64MiB`, `512 KiB`, `1GB` or `1048576`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| format!("{text:?} is not a size; expected e.g. 64MiB, 512KiB or a number of bytes"))
}

/// Format a byte count for people: `64 MiB`, `1.5 KiB`.
pub fn format_size(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_ones() {
        let s = ModuleSettings::default();
        assert_eq!(s.limits.memory_bytes, 64 * 1024 * 1024);
        assert_eq!(s.limits.timeout, Duration::from_secs(1));
        assert_eq!(s.limits.fuel, None, "fuel is counted only when asked for");
        assert_eq!(s.max_consecutive_failures, 10);
        assert!(matches!(s.policy, InstancePolicy::Reuse { .. }));
    }

    #[test]
    fn settings_parse_and_reject_with_the_key_named() {
        let mut s = ModuleSettings::default();
        s.set("memory", "128MiB").unwrap();
        assert_eq!(s.limits.memory_bytes, 128 << 20);
        s.set("timeout", "250ms").unwrap();
        assert_eq!(s.limits.timeout, Duration::from_millis(250));
        s.set("fuel", "10_000_000").unwrap();
        assert_eq!(s.limits.fuel, Some(10_000_000));
        s.set("fuel", "off").unwrap();
        assert_eq!(s.limits.fuel, None);
        assert!(s.set("fuel", "lots").unwrap_err().problem.contains("`off`"));
        s.set("recycle-every", "5").unwrap();
        assert_eq!(s.policy, InstancePolicy::Reuse { recycle_every: 5 });
        s.set("instance", "fresh").unwrap();
        assert_eq!(s.policy, InstancePolicy::Fresh);

        let e = s.set("memory", "lots").unwrap_err().to_string();
        assert!(e.contains("`memory`") && e.contains("64MiB"), "{e}");
        let e = s.set("timeout", "0s").unwrap_err().to_string();
        assert!(e.contains("more than zero"), "{e}");
        let e = s.set("colour", "red").unwrap_err().to_string();
        assert!(e.contains("known settings"), "{e}");
    }

    #[test]
    fn deadline_ticks_round_up() {
        assert_eq!(deadline_ticks(Duration::from_secs(1)), 101);
        assert_eq!(deadline_ticks(Duration::from_millis(1)), 2);
        assert_eq!(deadline_ticks(Duration::from_millis(15)), 3);
    }

    #[test]
    fn sizes_format_for_people() {
        assert_eq!(format_size(64 << 20), "64.0 MiB");
        assert_eq!(parse_size("1 KiB").unwrap(), 1024);
    }
}
