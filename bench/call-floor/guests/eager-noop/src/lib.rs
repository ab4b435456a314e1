//! Benchmark probe (`bench/call-floor`): a `redrive:filter@0.1.0` filter that replays every
//! message without reading it. What a call costs it is the floor of the current contract:
//! the host lowers the whole message into the guest and the SDK converts it, whether the
//! filter reads it or not.

use redrive_guest::{Config, Decision, Filter, Message};

/// Replays everything, reads nothing.
pub struct EagerNoop;

impl Filter for EagerNoop {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(EagerNoop)
    }

    fn decide(&mut self, _msg: &Message) -> Result<Decision, String> {
        Ok(Decision::replay("noop"))
    }
}

redrive_guest::export_filter!(EagerNoop);
