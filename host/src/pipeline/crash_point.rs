//! Crash points: named steps between two durable writes where a crash is the most dangerous, which the fault
//! tests can make the process die at (kill -9 of itself), exactly there.
//!
//! Random kills find the wide windows of a run (reading, deciding, waiting for a confirm); the windows
//! between "the destination has it" and "the journal says so" last microseconds and a random kill almost never
//! lands in them. `REDRIVE_CRASH_AT=STEP[:N]` makes the run kill itself with SIGKILL (no destructor, no flush,
//! like `kill -9` or a power cut) the Nth time (default 1) it reaches `STEP`; the next run must then lose and
//! double nothing beyond what the README promises for the broker. The variable is read once; a run without it
//! pays one relaxed load per batch. An unknown step name is an error at start (exit 2), so a test cannot pass
//! by never crashing.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Result, bail};

/// The environment variable that arms a crash point.
pub const CRASH_AT_VAR: &str = "REDRIVE_CRASH_AT";

/// A step of the run a crash can be injected at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// A batch is about to go to the destination (after its `sending` journal line is durable, where the
    /// destination can be read back).
    Sending,
    /// The destination confirmed the batch; the journal does not say so yet.
    Sent,
    /// The confirmations are durable in the journal; nothing of the batch is acked yet.
    Confirmed,
    /// Discarded messages are in the archive (fsynced); the journal does not say so yet.
    Archived,
    /// The source acked a batch; the journal does not say so yet.
    Acked,
}

impl CrashPoint {
    /// Every crash point, in the order a message meets them.
    pub const ALL: [CrashPoint; 5] = [
        CrashPoint::Sending,
        CrashPoint::Sent,
        CrashPoint::Confirmed,
        CrashPoint::Archived,
        CrashPoint::Acked,
    ];

    /// The name used in `REDRIVE_CRASH_AT`.
    pub fn name(self) -> &'static str {
        match self {
            CrashPoint::Sending => "sending",
            CrashPoint::Sent => "sent",
            CrashPoint::Confirmed => "confirmed",
            CrashPoint::Archived => "archived",
            CrashPoint::Acked => "acked",
        }
    }
}

/// An armed crash point: where, and on which hit.
#[derive(Debug, PartialEq, Eq)]
struct Armed {
    point: CrashPoint,
    hit: u64,
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

/// Read `REDRIVE_CRASH_AT` (once, at the start of a run): a mistake in it is an error naming the steps.
pub fn arm_from_env() -> Result<()> {
    let armed = match std::env::var(CRASH_AT_VAR) {
        Ok(value) => Some(parse(&value)?),
        Err(_) => None,
    };
    if let Some(armed) = &armed {
        tracing::warn!(
            "{CRASH_AT_VAR} is set: this run kills itself at step `{}` (hit {}), for fault tests",
            armed.point.name(),
            armed.hit
        );
    }
    // A second run in the same process (tests) keeps the first setting.
    let _ = ARMED.set(armed);
    Ok(())
}

fn parse(value: &str) -> Result<Armed> {
    let (name, hit) = match value.split_once(':') {
        Some((name, hit)) => (name, Some(hit)),
        None => (value, None),
    };
    let Some(point) = CrashPoint::ALL.into_iter().find(|p| p.name() == name.trim()) else {
        let names: Vec<&str> = CrashPoint::ALL.iter().map(|p| p.name()).collect();
        bail!(
            "{CRASH_AT_VAR}={value:?}: unknown step {name:?}; the steps are {} (optionally `:N` for the Nth time)",
            names.join(", ")
        );
    };
    let hit = match hit {
        None => 1,
        Some(n) => match n.trim().parse::<u64>() {
            Ok(n) if n >= 1 => n,
            _ => bail!("{CRASH_AT_VAR}={value:?}: after `:` comes how many times the step is reached first, 1 or more"),
        },
    };
    Ok(Armed { point, hit })
}

/// The run reached `point`: if it is the armed one and this is the armed hit, say so and die by SIGKILL.
pub fn reached(point: CrashPoint) {
    let Some(Some(armed)) = ARMED.get() else {
        return;
    };
    if armed.point != point || HITS.fetch_add(1, Ordering::Relaxed) + 1 != armed.hit {
        return;
    }
    eprintln!(
        "crash point `{}` reached (hit {}): killing this process",
        point.name(),
        armed.hit
    );
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    // SIGKILL cannot be caught; should it not be delivered at once, nothing more may happen here.
    std::process::abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_and_its_hit_are_read() {
        assert_eq!(
            parse("sent:3").unwrap(),
            Armed {
                point: CrashPoint::Sent,
                hit: 3
            }
        );
        assert_eq!(
            parse("acked").unwrap(),
            Armed {
                point: CrashPoint::Acked,
                hit: 1
            }
        );
    }

    #[test]
    fn mistakes_name_the_steps() {
        let e = parse("send").unwrap_err().to_string();
        assert!(
            e.contains("unknown step") && e.contains("sending, sent, confirmed, archived, acked"),
            "{e}"
        );
        let e = parse("sent:0").unwrap_err().to_string();
        assert!(e.contains("1 or more"), "{e}");
        assert!(parse("sent:x").is_err());
    }

    #[test]
    fn every_name_is_read_back() {
        for point in CrashPoint::ALL {
            assert_eq!(parse(point.name()).unwrap().point, point);
        }
    }
}
