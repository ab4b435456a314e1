//! Write [redrive](https://example.invalid/redrive) dead-letter filters in Rust.
//!
//! A filter looks at one dead letter at a time and decides whether redrive
//! **replays** it (optionally with a repaired body and changed attributes),
//! **skips** it (it stays in the dead-letter queue) or **discards** it (it is
//! archived, then removed from the queue). It runs sandboxed as a WebAssembly
//! component implementing the WIT world in this crate's `wit/filter.wit`.
//!
//! With this crate a filter is one [`Filter`] impl plus one
//! [`export_filter!`] line, and it can be unit-tested natively with a plain
//! `cargo test` (the component bindings only exist when compiling to wasm).
//!
//! # A complete filter
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "skip-old-retries"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib", "rlib"]   # cdylib: the wasm component; rlib: native tests
//!
//! [dependencies]
//! # Inside the redrive repository: `redrive-guest.workspace = true`.
//! redrive-guest = { path = "../redrive/guest-sdk" }
//!
//! [dev-dependencies]
//! # Optional: `redrive_guest::testing` runs the filter on JSONL sample files.
//! redrive-guest = { path = "../redrive/guest-sdk", features = ["testing"] }
//! ```
//!
//! `src/lib.rs`:
//!
//! ```
//! use redrive_guest::{log, Config, Decision, Filter, Message};
//!
//! /// Skips messages that were already replayed too often.
//! pub struct SkipOldRetries {
//!     max_replays: u32,
//! }
//!
//! impl Filter for SkipOldRetries {
//!     fn init(config: &Config) -> Result<Self, String> {
//!         config.check_keys(&["max_replays"])?;
//!         Ok(SkipOldRetries {
//!             max_replays: config.get_parsed_or("max_replays", 3)?,
//!         })
//!     }
//!
//!     fn decide(&mut self, msg: &Message) -> Result<Decision, String> {
//!         if msg.replay_count >= self.max_replays {
//!             log::info(format!("{} was replayed {} times", msg.id, msg.replay_count));
//!             return Ok(Decision::skip("replayed too often"));
//!         }
//!         Ok(Decision::replay("first replays"))
//!     }
//! }
//!
//! redrive_guest::export_filter!(SkipOldRetries);
//!
//! // Native unit test (in a real crate: a #[cfg(test)] module).
//! let mut filter = SkipOldRetries::init(&Config::from_pairs([("max_replays", "2")])).unwrap();
//! let decision = filter.decide(&Message::new("m-1", "{}").with_replay_count(2)).unwrap();
//! assert_eq!(decision, Decision::skip("replayed too often"));
//! assert_eq!(log::take_native_logs().last().unwrap().text, "m-1 was replayed 2 times");
//! ```
//!
//! # Building
//!
//! ```sh
//! cargo build --target wasm32-wasip2 --release
//! ```
//!
//! The component is `target/wasm32-wasip2/release/<crate_name>.wasm` (the crate
//! name with `-` replaced by `_`, e.g. `skip_old_retries.wasm`); the crate type
//! must include `"cdylib"` (and `"rlib"` to unit-test it natively). Install the
//! target once with `rustup target add wasm32-wasip2`. Check the result with
//! `wasm-tools component wit <file>.wasm`: it exports `init` and `decide` and
//! imports `redrive:filter/host@0.1.0`. Inside the redrive repository,
//! `scripts/build-filters.sh <package>` builds with the size-optimised `wasm`
//! profile and copies the result to `build/filters/<package>.wasm`.
//!
//! # Sandbox
//!
//! A filter gets no WASI capabilities: no files, no network, no environment
//! variables. What it prints to
//! stdout/stderr is captured into the audit record (capped). The host enforces
//! a memory cap (64 MiB by default), a per-message deadline (1 s by default)
//! and a fuel budget; a filter that traps, panics or hits a limit marks the
//! message `failed` (it stays in the dead-letter queue) and its instance is
//! thrown away.

#![warn(missing_docs)]

// Lets the generated bindings refer to this crate by name, from inside it and
// from the `export_filter!` expansion in a filter crate alike.
extern crate self as redrive_guest;

mod config;
mod decision;
pub mod log;
mod message;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::Config;
pub use decision::{AttributeChange, Decision, Verdict};
pub use message::{FailureInfo, Message, Origin};

/// The component bindings generated from `wit/filter.wit` (wasm only).
///
/// Not a stable API: use [`Filter`] and [`export_filter!`] instead.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "filter",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "redrive_guest::bindings",
        runtime_path: "redrive_guest::__private::wit_bindgen::rt",
    });
}

/// A redrive filter: created once per instance from its config, then asked to
/// decide about one message at a time.
///
/// Export it with [`export_filter!`]. The same instance sees every message of
/// a run's worker (in order), so it may keep state, but should not rely on
/// seeing all messages: the host may start fresh instances at any time.
pub trait Filter: Sized + 'static {
    /// Creates the filter from its configuration. Return an error to refuse to
    /// start (for example a bad config value): the run stops with that error
    /// and the module's name.
    fn init(config: &Config) -> Result<Self, String>;

    /// Decides what happens to one message. Returning an error marks the
    /// message `failed`: it stays in the dead-letter queue.
    fn decide(&mut self, msg: &Message) -> Result<Decision, String>;
}

/// Exports a [`Filter`] implementation as the redrive filter component.
///
/// Write it once, at the top level of the filter crate:
///
/// ```
/// # use redrive_guest::{Config, Decision, Filter, Message};
/// pub struct ReplayAll;
///
/// impl Filter for ReplayAll {
///     fn init(_config: &Config) -> Result<Self, String> {
///         Ok(ReplayAll)
///     }
///     fn decide(&mut self, _msg: &Message) -> Result<Decision, String> {
///         Ok(Decision::replay("replay everything"))
///     }
/// }
///
/// redrive_guest::export_filter!(ReplayAll);
/// ```
///
/// On `wasm32` it exports the component's `init` and `decide` functions: `init`
/// calls [`Filter::init`] and keeps the instance in a static cell, `decide`
/// converts the message and calls [`Filter::decide`] on it (before a successful
/// `init` it returns the error `"init was not called"`). On other targets it
/// only checks that the type implements [`Filter`] and generates no code, so
/// the crate still builds and unit-tests natively.
#[cfg(target_arch = "wasm32")]
#[macro_export]
macro_rules! export_filter {
    ($filter:ty $(,)?) => {
        const _: () = {
            ::std::thread_local! {
                static __REDRIVE_FILTER: $crate::__private::Slot<$filter> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            struct __RedriveFilterExport;

            impl $crate::bindings::Guest for __RedriveFilterExport {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    __REDRIVE_FILTER.with(|slot| $crate::__private::init::<$filter>(slot, config))
                }

                fn decide(
                    msg: $crate::bindings::Message,
                ) -> ::core::result::Result<$crate::bindings::Decision, ::std::string::String> {
                    __REDRIVE_FILTER.with(|slot| $crate::__private::decide_wit::<$filter>(slot, msg))
                }
            }

    $crate::bindings::export!(__RedriveFilterExport with_types_in $crate::bindings);
        };
    };
}

/// Exports a [`Filter`] implementation as the redrive filter component.
///
/// Write it once, at the top level of the filter crate:
///
/// ```
/// # use redrive_guest::{Config, Decision, Filter, Message};
/// pub struct ReplayAll;
///
/// impl Filter for ReplayAll {
///     fn init(_config: &Config) -> Result<Self, String> {
///         Ok(ReplayAll)
///     }
///     fn decide(&mut self, _msg: &Message) -> Result<Decision, String> {
///         Ok(Decision::replay("replay everything"))
///     }
/// }
///
/// redrive_guest::export_filter!(ReplayAll);
/// ```
///
/// On `wasm32` it exports the component's `init` and `decide` functions: `init`
/// calls [`Filter::init`] and keeps the instance in a static cell, `decide`
/// converts the message and calls [`Filter::decide`] on it (before a successful
/// `init` it returns the error `"init was not called"`). On other targets it
/// only checks that the type implements [`Filter`] and generates no code, so
/// the crate still builds and unit-tests natively.
#[cfg(not(target_arch = "wasm32"))]
#[macro_export]
macro_rules! export_filter {
    ($filter:ty $(,)?) => {
        const _: () = {
            fn __redrive_assert_filter<F: $crate::Filter>() {}
            let _ = __redrive_assert_filter::<$filter>;
        };
    };
}

/// Support code for [`export_filter!`]. Not a stable API.
#[doc(hidden)]
pub mod __private {
    use std::cell::RefCell;

    use crate::{Config, Decision, Filter, Message};

    #[cfg(target_arch = "wasm32")]
    pub use wit_bindgen;

    /// Where the exported filter instance lives between calls.
    pub type Slot<F> = RefCell<Option<F>>;

    /// The error `decide` returns before a successful `init`.
    pub const NOT_INITIALISED: &str = "init was not called";

    /// `init` export: builds the filter and stores it (a failed `init` leaves
    /// no instance behind).
    pub fn init<F: Filter>(slot: &Slot<F>, config: Vec<(String, String)>) -> Result<(), String> {
        slot.borrow_mut().take();
        let filter = F::init(&Config::new(config))?;
        *slot.borrow_mut() = Some(filter);
        Ok(())
    }

    /// `decide` export, on SDK types.
    pub fn decide<F: Filter>(slot: &Slot<F>, msg: &Message) -> Result<Decision, String> {
        match slot.borrow_mut().as_mut() {
            Some(filter) => filter.decide(msg),
            None => Err(NOT_INITIALISED.to_string()),
        }
    }

    /// `decide` export, on the generated WIT types.
    #[cfg(target_arch = "wasm32")]
    pub fn decide_wit<F: Filter>(
        slot: &Slot<F>,
        msg: crate::bindings::Message,
    ) -> Result<crate::bindings::Decision, String> {
        decide(slot, &wit::message_from_wit(msg)).map(wit::decision_to_wit)
    }

    #[cfg(target_arch = "wasm32")]
    mod wit {
        use crate::bindings::redrive::filter::types as w;
        use crate::{AttributeChange, Decision, FailureInfo, Message, Origin, Verdict};

        pub(super) fn message_from_wit(msg: w::Message) -> Message {
            Message {
                id: msg.id,
                body: msg.body,
                attributes: msg.attributes,
                origin: Origin {
                    system: msg.origin.system,
                    dlq: msg.origin.dlq,
                    original_queue: msg.origin.original_queue,
                },
                failure: FailureInfo {
                    reason: msg.failure.reason,
                    error_text: msg.failure.error_text,
                    error_class: msg.failure.error_class,
                    receive_count: msg.failure.receive_count,
                    first_failed_at_ms: msg.failure.first_failed_at_ms,
                    last_failed_at_ms: msg.failure.last_failed_at_ms,
                },
                replay_count: msg.replay_count,
            }
        }

        pub(super) fn decision_to_wit(decision: Decision) -> w::Decision {
            w::Decision {
                verdict: match decision.verdict {
                    Verdict::Replay => w::Verdict::Replay,
                    Verdict::Skip => w::Verdict::Skip,
                    Verdict::Discard => w::Verdict::Discard,
                },
                reason: decision.reason,
                body: decision.body,
                attribute_changes: decision
                    .attribute_changes
                    .into_iter()
                    .map(|change| match change {
                        AttributeChange::Set(name, value) => w::AttributeChange::Set((name, value)),
                        AttributeChange::Remove(name) => w::AttributeChange::Remove(name),
                    })
                    .collect(),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        struct Counter {
            seen: u32,
            label: String,
        }

        impl Filter for Counter {
            fn init(config: &Config) -> Result<Self, String> {
                match config.get("label") {
                    Some(label) => Ok(Counter {
                        seen: 0,
                        label: label.to_string(),
                    }),
                    None => Err("missing label".into()),
                }
            }

            fn decide(&mut self, msg: &Message) -> Result<Decision, String> {
                self.seen += 1;
                Ok(Decision::replay(format!("{} {} {}", self.label, self.seen, msg.id)))
            }
        }

        crate::export_filter!(Counter);

        #[test]
        fn decide_before_init_is_an_error() {
            let slot: Slot<Counter> = RefCell::new(None);
            assert_eq!(
                decide(&slot, &Message::new("m", "")),
                Err("init was not called".to_string())
            );
        }

        #[test]
        fn init_keeps_the_instance_between_calls() {
            let slot: Slot<Counter> = RefCell::new(None);
            init(&slot, vec![("label".into(), "n".into())]).unwrap();
            assert_eq!(decide(&slot, &Message::new("a", "")).unwrap().reason, "n 1 a");
            assert_eq!(decide(&slot, &Message::new("b", "")).unwrap().reason, "n 2 b");
        }

        #[test]
        fn failed_init_leaves_no_instance() {
            let slot: Slot<Counter> = RefCell::new(None);
            init(&slot, vec![("label".into(), "n".into())]).unwrap();
            assert_eq!(init(&slot, vec![]), Err("missing label".to_string()));
            assert_eq!(decide(&slot, &Message::new("m", "")), Err(NOT_INITIALISED.to_string()));
        }
    }
}
