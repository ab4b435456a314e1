//! The component profile: host bindings for the `redrive:filter` WIT world and conversions to and from it.

use wasmtime::component::{HasSelf, Linker};

use super::sandbox::GuestState;
use crate::core::envelope::{AttributeChange, Decision, Envelope, Verdict};

mod bindings {
    wasmtime::component::bindgen!({
        world: "filter",
        path: "../guest-sdk/wit",
    });
}

use bindings::redrive::filter::types as wit;
pub(crate) use bindings::{Filter, FilterPre};

/// The WIT package and version this host implements.
pub const CONTRACT: &str = "redrive:filter@0.1.0";

impl bindings::redrive::filter::host::Host for GuestState {
    fn log(&mut self, level: wit::LogLevel, text: String) {
        let level = match level {
            wit::LogLevel::Trace => "trace",
            wit::LogLevel::Debug => "debug",
            wit::LogLevel::Info => "info",
            wit::LogLevel::Warn => "warn",
            wit::LogLevel::Error => "error",
        };
        self.logs.push(level, &text);
    }
}

impl wit::Host for GuestState {}

/// Add WASI (backed by the deny-all context of [`GuestState`]) and the `host` interface to a linker.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    Filter::add_to_linker::<GuestState, HasSelf<GuestState>>(linker, |state| state)?;
    Ok(())
}

/// The message as the guest sees it: the envelope with the current body and attributes of the chain.
pub(crate) type WitMessage = wit::Message;

pub(crate) fn to_wit(env: &Envelope, body: &[u8], attributes: &[(String, String)]) -> WitMessage {
    wit::Message {
        id: env.id.clone(),
        body: body.to_vec(),
        attributes: attributes.to_vec(),
        origin: wit::Origin {
            system: env.origin.system.clone(),
            dlq: env.origin.dlq.clone(),
            original_queue: env.origin.original_queue.clone(),
        },
        failure: wit::FailureInfo {
            reason: env.failure.reason.clone(),
            error_text: env.failure.error_text.clone(),
            error_class: env.failure.error_class.clone(),
            receive_count: env.failure.receive_count,
            first_failed_at_ms: env.failure.first_failed_at.map(|t| t.timestamp_millis()),
            last_failed_at_ms: env.failure.last_failed_at.map(|t| t.timestamp_millis()),
        },
        replay_count: env.replay_count,
    }
}

pub(crate) fn from_wit(d: wit::Decision) -> Decision {
    Decision {
        verdict: match d.verdict {
            wit::Verdict::Replay => Verdict::Replay,
            wit::Verdict::Skip => Verdict::Skip,
            wit::Verdict::Discard => Verdict::Discard,
        },
        reason: d.reason,
        body: d.body,
        attribute_changes: d
            .attribute_changes
            .into_iter()
            .map(|c| match c {
                wit::AttributeChange::Set((k, v)) => AttributeChange::Set(k, v),
                wit::AttributeChange::Remove(k) => AttributeChange::Remove(k),
            })
            .collect(),
    }
}
