//! Benchmark probe (`bench/call-floor`): a filter on the probe world of
//! `bench/call-floor/wit/probe.wit`, where `decide` gets a handle to the message and reads
//! only what it asks for. Not a redrive filter: redrive loads `redrive:filter@0.1.0` only.
//!
//! Config `mode` picks what `decide` does, so one module measures six costs:
//!
//! - `noop`: replays without reading anything (the call floor of the probe world);
//! - `read`: reads the failure's error text, error class and reason with three getters, then replays;
//! - `read1`: the same three texts with one getter (`failure`), then replays;
//! - `route`: route-by-error on the three texts (one getter), with its defaults passed in as the
//!   config keys `transient` and `permanent`: the same decision, reason and log line as
//!   `route-by-error.wasm`;
//! - `route-nolog`: `route` without the log line (one host call less);
//! - `route-finder`: `route` with a searcher per pattern built at init (memchr) instead of
//!   `str::contains` per pattern and message.

pub mod classify;

#[cfg(target_arch = "wasm32")]
mod guest {
    use std::cell::RefCell;

    use crate::classify::{Class, classify, classify_finders, finders, pattern_list};

    wit_bindgen::generate!({ path: "../../wit", world: "lazy" });

    use redrive::probe::host::log;
    use redrive::probe::types::{LogLevel, Verdict};

    enum Mode {
        Noop,
        Read,
        Read1,
        Route {
            permanent: Vec<String>,
            transient: Vec<String>,
            log: bool,
            finders: Option<(
                Vec<memchr::memmem::Finder<'static>>,
                Vec<memchr::memmem::Finder<'static>>,
            )>,
        },
    }

    thread_local! {
        static MODE: RefCell<Option<Mode>> = const { RefCell::new(None) };
    }

    fn decision(verdict: Verdict, reason: impl Into<String>) -> Decision {
        Decision {
            verdict,
            reason: reason.into(),
            body: None,
            attribute_changes: Vec::new(),
        }
    }

    struct Probe;

    impl Guest for Probe {
        fn init(config: Vec<(String, String)>) -> Result<(), String> {
            let get = |key: &str| config.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
            let mode = match get("mode") {
                Some("noop") => Mode::Noop,
                Some("read") => Mode::Read,
                Some("read1") => Mode::Read1,
                Some(route @ ("route" | "route-nolog" | "route-finder")) => {
                    let permanent = pattern_list(get("permanent").unwrap_or_default());
                    let transient = pattern_list(get("transient").unwrap_or_default());
                    let finders = (route == "route-finder").then(|| (finders(&permanent), finders(&transient)));
                    Mode::Route {
                        permanent,
                        transient,
                        log: route != "route-nolog",
                        finders,
                    }
                }
                other => {
                    return Err(format!(
                        "mode must be noop, read, read1 or route[-nolog|-finder], not {other:?}"
                    ));
                }
            };
            MODE.with(|slot| *slot.borrow_mut() = Some(mode));
            Ok(())
        }

        fn decide(msg: &Message) -> Result<Decision, String> {
            MODE.with(|slot| match slot.borrow().as_ref() {
                None => Err("init was not called".to_string()),
                Some(Mode::Noop) => Ok(decision(Verdict::Replay, "noop")),
                Some(Mode::Read) => {
                    let texts = (msg.error_text(), msg.error_class(), msg.reason());
                    std::hint::black_box(texts);
                    Ok(decision(Verdict::Replay, "read"))
                }
                Some(Mode::Read1) => {
                    std::hint::black_box(msg.failure());
                    Ok(decision(Verdict::Replay, "read"))
                }
                Some(Mode::Route {
                    permanent,
                    transient,
                    log: with_log,
                    finders,
                }) => {
                    let f = msg.failure();
                    let texts = [f.error_text.as_deref(), f.error_class.as_deref(), f.reason.as_deref()];
                    let class = match finders {
                        Some((p, t)) => classify_finders(texts, p, t),
                        None => classify(texts, permanent, transient),
                    };
                    let (made, name) = match class {
                        Class::Permanent(p) => (
                            decision(Verdict::Skip, format!("permanent error: matched \"{p}\"")),
                            "permanent",
                        ),
                        Class::Transient(p) => (
                            decision(Verdict::Replay, format!("transient error: matched \"{p}\"")),
                            "transient",
                        ),
                        Class::NoContext => (decision(Verdict::Skip, "no failure context"), "no-context"),
                        Class::Unclassified => (decision(Verdict::Skip, "unclassified error"), "unclassified"),
                    };
                    let verdict = match made.verdict {
                        Verdict::Replay => "replay",
                        Verdict::Skip => "skip",
                        Verdict::Discard => "discard",
                    };
                    if *with_log {
                        log(LogLevel::Info, &format!("error class: {name} -> {verdict}"));
                    }
                    Ok(made)
                }
            })
        }
    }

    export!(Probe);
}
