//! Example redrive filter: **selective replay after a fix**.
//!
//! Classifies each dead letter by the error its consumer recorded
//! (`failure.error_text`, `failure.error_class` and `failure.reason`,
//! lowercased, plain substring match):
//!
//! - a **permanent** pattern matches → skip, reason `permanent error: matched "<pattern>"`
//!   (checked first: never replay something that also looks permanent);
//! - else a **transient** pattern matches → replay, reason `transient error: matched "<pattern>"`;
//! - no failure text at all → the `default` verdict, reason `no failure context`;
//! - no pattern matches → the `default` verdict, reason `unclassified error`.
//!
//! Config (`init`):
//!
//! | key | meaning | default |
//! | --- | --- | --- |
//! | `transient` | comma-separated patterns, replacing the defaults | [`DEFAULT_TRANSIENT`] |
//! | `permanent` | comma-separated patterns, replacing the defaults | [`DEFAULT_PERMANENT`] |
//! | `default` | verdict for no match / no failure context: `replay`, `skip` or `discard` | `skip` |
//!
//! The logic is deliberately simple (no regex) so it ports unchanged to the
//! Python, JS and Go versions of this example.

use redrive_guest::{Config, Decision, FailureInfo, Filter, Message, Verdict, log};

/// Patterns that mark an error as transient (worth replaying) by default.
pub const DEFAULT_TRANSIENT: &[&str] = &[
    "timeout",
    "timed out",
    "connection refused",
    "connection reset",
    "econnrefused",
    "econnreset",
    "500 internal server error",
    "502 bad gateway",
    "503 service unavailable",
    "504 gateway timeout",
    "throttl",
    "rate limit",
    "too many requests",
    "429",
    "temporarily unavailable",
    "deadlock",
];

/// Patterns that mark an error as permanent (replaying will not help) by default.
pub const DEFAULT_PERMANENT: &[&str] = &[
    "validation",
    "invalid",
    "schema version",
    "unknown schema",
    "unprocessable",
    "400 bad request",
    "422",
    "not found",
    "404",
    "constraint violation",
];

/// How a message's failure was classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorClass {
    /// A permanent pattern matched (the pattern, as configured, lowercased).
    Permanent(String),
    /// A transient pattern matched (and no permanent one).
    Transient(String),
    /// There is failure text, but no pattern matched.
    Unclassified,
    /// The message carries no failure text at all.
    NoContext,
}

impl ErrorClass {
    /// Short name for logs: `permanent`, `transient`, `unclassified` or `no-context`.
    pub fn name(&self) -> &'static str {
        match self {
            ErrorClass::Permanent(_) => "permanent",
            ErrorClass::Transient(_) => "transient",
            ErrorClass::Unclassified => "unclassified",
            ErrorClass::NoContext => "no-context",
        }
    }
}

/// The filter: pattern lists (lowercased) and the default verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteByError {
    /// Transient patterns, lowercased, in match order.
    pub transient: Vec<String>,
    /// Permanent patterns, lowercased, in match order.
    pub permanent: Vec<String>,
    /// Verdict for unclassified errors and messages without failure context.
    pub default: Verdict,
}

impl Default for RouteByError {
    fn default() -> Self {
        RouteByError {
            transient: lowercase_all(DEFAULT_TRANSIENT.iter().map(|p| p.to_string())),
            permanent: lowercase_all(DEFAULT_PERMANENT.iter().map(|p| p.to_string())),
            default: Verdict::Skip,
        }
    }
}

fn lowercase_all(patterns: impl IntoIterator<Item = String>) -> Vec<String> {
    patterns.into_iter().map(|p| p.to_lowercase()).collect()
}

impl RouteByError {
    /// Classifies a failure: permanent patterns first, then transient ones,
    /// each list in its configured order (the first matching pattern wins).
    pub fn classify(&self, failure: &FailureInfo) -> ErrorClass {
        if failure.is_unknown() {
            return ErrorClass::NoContext;
        }
        let haystack = [&failure.error_text, &failure.error_class, &failure.reason]
            .into_iter()
            .flatten()
            .map(|text| text.to_lowercase())
            .collect::<Vec<_>>()
            .join("\n");
        let find = |patterns: &[String]| {
            patterns
                .iter()
                .find(|pattern| haystack.contains(pattern.as_str()))
                .cloned()
        };
        if let Some(pattern) = find(&self.permanent) {
            ErrorClass::Permanent(pattern)
        } else if let Some(pattern) = find(&self.transient) {
            ErrorClass::Transient(pattern)
        } else {
            ErrorClass::Unclassified
        }
    }
}

impl Filter for RouteByError {
    fn init(config: &Config) -> Result<Self, String> {
        config.check_keys(&["transient", "permanent", "default"])?;
        let defaults = RouteByError::default();
        Ok(RouteByError {
            transient: config.get_list("transient").map_or(defaults.transient, lowercase_all),
            permanent: config.get_list("permanent").map_or(defaults.permanent, lowercase_all),
            default: config.get_parsed_or("default", defaults.default)?,
        })
    }

    fn decide(&mut self, msg: &Message) -> Result<Decision, String> {
        let class = self.classify(&msg.failure);
        let decision = match &class {
            ErrorClass::Permanent(pattern) => Decision::skip(format!("permanent error: matched \"{pattern}\"")),
            ErrorClass::Transient(pattern) => Decision::replay(format!("transient error: matched \"{pattern}\"")),
            ErrorClass::NoContext => Decision::new(self.default, "no failure context"),
            ErrorClass::Unclassified => Decision::new(self.default, "unclassified error"),
        };
        log::info(format!("error class: {} -> {}", class.name(), decision.verdict));
        Ok(decision)
    }
}

redrive_guest::export_filter!(RouteByError);

#[cfg(test)]
mod tests {
    use super::*;
    use redrive_guest::Verdict::{Discard, Replay, Skip};

    fn filter(pairs: &[(&str, &str)]) -> RouteByError {
        RouteByError::init(&Config::from_pairs(pairs.iter().copied())).unwrap()
    }

    fn decide(filter: &mut RouteByError, msg: Message) -> (Verdict, String) {
        let d = filter.decide(&msg).unwrap();
        assert_eq!(d.body, None);
        assert!(d.attribute_changes.is_empty());
        (d.verdict, d.reason)
    }

    #[test]
    fn transient_errors_are_replayed() {
        let mut f = filter(&[]);
        let msg = Message::new("m", "{}").with_error_text("Upstream said: 503 Service Unavailable");
        assert_eq!(
            decide(&mut f, msg),
            (Replay, "transient error: matched \"503 service unavailable\"".into())
        );
        let msg = Message::new("m", "").with_error_class("Connection reset by peer");
        assert_eq!(
            decide(&mut f, msg),
            (Replay, "transient error: matched \"connection reset\"".into())
        );
        let msg = Message::new("m", "").with_error_text("request was THROTTLED");
        assert_eq!(
            decide(&mut f, msg),
            (Replay, "transient error: matched \"throttl\"".into())
        );
    }

    #[test]
    fn permanent_wins_over_transient() {
        let mut f = filter(&[]);
        let msg = Message::new("m", "")
            .with_error_text("timeout while loading")
            .with_error_class("ValidationError");
        assert_eq!(
            decide(&mut f, msg),
            (Skip, "permanent error: matched \"validation\"".into())
        );
        let msg = Message::new("m", "").with_error_text("invalid token after 429 retry");
        assert_eq!(
            decide(&mut f, msg),
            (Skip, "permanent error: matched \"invalid\"".into())
        );
    }

    #[test]
    fn broker_reason_is_looked_at_too() {
        let mut f = filter(&[("transient", "expired")]);
        let msg = Message::new("m", "").with_failure_reason("expired");
        assert_eq!(
            decide(&mut f, msg),
            (Replay, "transient error: matched \"expired\"".into())
        );
    }

    #[test]
    fn no_context_and_unclassified_use_the_default() {
        let mut f = filter(&[]);
        assert_eq!(
            decide(&mut f, Message::new("m", "").with_receive_count(5)),
            (Skip, "no failure context".into())
        );
        assert_eq!(
            decide(&mut f, Message::new("m", "").with_error_text("disk on fire")),
            (Skip, "unclassified error".into())
        );
        let mut f = filter(&[("default", "replay")]);
        assert_eq!(
            decide(&mut f, Message::new("m", "").with_error_text("  ")),
            (Replay, "no failure context".into())
        );
        let mut f = filter(&[("default", "Discard")]);
        assert_eq!(
            decide(&mut f, Message::new("m", "").with_error_text("disk on fire")),
            (Discard, "unclassified error".into())
        );
    }

    #[test]
    fn config_replaces_default_patterns_and_lowercases_them() {
        let mut f = filter(&[("transient", " Disk On Fire , ,flaky"), ("permanent", "")]);
        assert_eq!(f.transient, vec!["disk on fire", "flaky"]);
        assert!(f.permanent.is_empty());
        assert_eq!(
            decide(&mut f, Message::new("m", "").with_error_text("DISK ON FIRE")),
            (Replay, "transient error: matched \"disk on fire\"".into())
        );
        // The default transient patterns are gone.
        assert_eq!(
            decide(&mut f, Message::new("m", "").with_error_text("timeout")),
            (Skip, "unclassified error".into())
        );
        // And "invalid" is no longer permanent.
        assert_eq!(
            decide(&mut f, Message::new("m", "").with_error_text("invalid flaky thing")),
            (Replay, "transient error: matched \"flaky\"".into())
        );
    }

    #[test]
    fn non_ascii_error_text() {
        let mut f = filter(&[("transient", "ZEITÜBERSCHREITUNG")]);
        let msg = Message::new("m", "").with_error_text("Fehler: Zeitüberschreitung beim Lesen");
        assert_eq!(
            decide(&mut f, msg),
            (Replay, "transient error: matched \"zeitüberschreitung\"".into())
        );
    }

    #[test]
    fn bad_config_is_an_init_error_naming_the_key() {
        let err = RouteByError::init(&Config::from_pairs([("default", "maybe")])).unwrap_err();
        assert_eq!(
            err,
            "config key 'default': invalid value 'maybe' (expected one of replay, skip, discard)"
        );
        let err = RouteByError::init(&Config::from_pairs([("transiant", "x")])).unwrap_err();
        assert!(err.contains("unknown config key 'transiant'"), "{err}");
    }

    #[test]
    fn logs_one_line_naming_the_class() {
        let mut f = filter(&[]);
        let _ = log::take_native_logs();
        f.decide(&Message::new("m", "").with_error_text("ETIMEDOUT: timeout"))
            .unwrap();
        let lines = log::take_native_logs();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].level, log::Level::Info);
        assert_eq!(lines[0].text, "error class: transient -> replay");
    }

    #[test]
    fn sample_files_match() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/filters/route-by-error");
        let checked = redrive_guest::testing::assert_examples::<RouteByError>(
            &Config::default(),
            &format!("{dir}/input.jsonl"),
            &format!("{dir}/expected.jsonl"),
        );
        assert!((12..=25).contains(&checked), "{checked} messages");
    }
}
