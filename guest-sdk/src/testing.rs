//! Run a filter natively against the JSONL sample files that
//! `redrive filter test` uses (feature `testing`).
//!
//! Enable it for tests only:
//!
//! ```toml
//! [dev-dependencies]
//! redrive-guest = { path = "../redrive/guest-sdk", features = ["testing"] }
//! ```
//!
//! then, in a test:
//!
//! ```no_run
//! # use redrive_guest::{Config, Decision, Filter, Message};
//! # struct MyFilter;
//! # impl Filter for MyFilter {
//! #     fn init(_: &Config) -> Result<Self, String> { Ok(MyFilter) }
//! #     fn decide(&mut self, _: &Message) -> Result<Decision, String> { Ok(Decision::replay("x")) }
//! # }
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
//! redrive_guest::testing::assert_examples::<MyFilter>(
//!     &Config::default(),
//!     &format!("{dir}/input.jsonl"),
//!     &format!("{dir}/expected.jsonl"),
//! );
//! ```
//!
//! # Message file (`input.jsonl`)
//!
//! One JSON object per line (blank lines are ignored):
//!
//! ```json
//! {"id": "m-1", "body": "<UTF-8 text>", "attributes": {"name": "value"},
//!  "origin": {"system": "rabbitmq", "dlq": "orders.dlq", "original_queue": "orders"},
//!  "failure": {"reason": "rejected", "error_text": "...", "error_class": "...", "receive_count": 3,
//!              "first_failed_at": "2026-11-01T10:00:00Z", "last_failed_at": "2026-11-01T10:05:00Z"},
//!  "replay_count": 0}
//! ```
//!
//! `body_base64` (standard base64) replaces `body` for binary payloads; with
//! neither, the body is empty. Every field but `id` is optional.
//!
//! # Expectation file (`expected.jsonl`)
//!
//! ```json
//! {"id": "m-1", "verdict": "replay", "reason": "<exact reason>", "body": "<new body>"}
//! ```
//!
//! `verdict` is `replay`, `skip`, `discard` or `failed` (the filter returned
//! an error; `reason` is then the error text). `body` (or `body_base64`) is
//! given only when the filter returns a new body, and then must equal it.

use std::collections::HashMap;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

use crate::{Config, Decision, FailureInfo, Filter, Message, Origin, Verdict};

/// What a sample file expects for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// The message id.
    pub id: String,
    /// The expected verdict; `None` means `failed` (`decide` returns an error).
    pub verdict: Option<Verdict>,
    /// The exact reason (or error text, for `failed`).
    pub reason: String,
    /// The exact new body, when the filter is expected to return one.
    pub body: Option<Vec<u8>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageLine {
    id: String,
    body: Option<String>,
    body_base64: Option<String>,
    #[serde(default)]
    attributes: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    origin: Option<OriginLine>,
    #[serde(default)]
    failure: Option<FailureLine>,
    #[serde(default)]
    replay_count: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OriginLine {
    #[serde(default)]
    system: String,
    #[serde(default)]
    dlq: String,
    original_queue: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailureLine {
    reason: Option<String>,
    error_text: Option<String>,
    error_class: Option<String>,
    receive_count: Option<u32>,
    first_failed_at: Option<String>,
    last_failed_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectationLine {
    id: String,
    verdict: String,
    reason: String,
    body: Option<String>,
    body_base64: Option<String>,
}

fn body_from(text: Option<String>, base64: Option<String>, what: &str) -> Result<Option<Vec<u8>>, String> {
    match (text, base64) {
        (Some(_), Some(_)) => Err(format!("{what}: give either body or body_base64, not both")),
        (Some(text), None) => Ok(Some(text.into_bytes())),
        (None, Some(encoded)) => BASE64
            .decode(encoded.trim())
            .map(Some)
            .map_err(|err| format!("{what}: bad body_base64: {err}")),
        (None, None) => Ok(None),
    }
}

fn lines(jsonl: &str) -> impl Iterator<Item = (usize, &str)> {
    jsonl
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty())
}

/// Parses a message file (see the [module docs](self)).
pub fn parse_messages(jsonl: &str) -> Result<Vec<Message>, String> {
    lines(jsonl)
        .map(|(number, line)| {
            let at = format!("line {number}");
            let parsed: MessageLine = serde_json::from_str(line).map_err(|err| format!("{at}: {err}"))?;
            let body = body_from(parsed.body, parsed.body_base64, &at)?.unwrap_or_default();
            let attributes = parsed
                .attributes
                .into_iter()
                .map(|(name, value)| match value {
                    serde_json::Value::String(text) => (name, text),
                    other => (name, other.to_string()),
                })
                .collect();
            let origin = parsed
                .origin
                .map(|o| Origin {
                    system: o.system,
                    dlq: o.dlq,
                    original_queue: o.original_queue,
                })
                .unwrap_or_default();
            let failure = match parsed.failure {
                None => FailureInfo::default(),
                Some(f) => FailureInfo {
                    reason: f.reason,
                    error_text: f.error_text,
                    error_class: f.error_class,
                    receive_count: f.receive_count,
                    first_failed_at_ms: f
                        .first_failed_at
                        .as_deref()
                        .map(|t| parse_rfc3339_ms(t).map_err(|err| format!("{at}: {err}")))
                        .transpose()?,
                    last_failed_at_ms: f
                        .last_failed_at
                        .as_deref()
                        .map(|t| parse_rfc3339_ms(t).map_err(|err| format!("{at}: {err}")))
                        .transpose()?,
                },
            };
            Ok(Message {
                id: parsed.id,
                body,
                attributes,
                origin,
                failure,
                replay_count: parsed.replay_count,
            })
        })
        .collect()
}

/// Parses an expectation file (see the [module docs](self)).
pub fn parse_expectations(jsonl: &str) -> Result<Vec<Expectation>, String> {
    lines(jsonl)
        .map(|(number, line)| {
            let at = format!("line {number}");
            let parsed: ExpectationLine = serde_json::from_str(line).map_err(|err| format!("{at}: {err}"))?;
            let verdict = match parsed.verdict.as_str() {
                "failed" => None,
                other => Some(
                    other
                        .parse::<Verdict>()
                        .map_err(|err| format!("{at}: verdict '{other}': {err} or failed"))?,
                ),
            };
            Ok(Expectation {
                id: parsed.id,
                verdict,
                reason: parsed.reason,
                body: body_from(parsed.body, parsed.body_base64, &at)?,
            })
        })
        .collect()
}

/// Parses an RFC 3339 timestamp (`2026-11-01T10:00:00Z`,
/// `2026-11-01T12:00:00.250+02:00`) into milliseconds since the Unix epoch.
pub fn parse_rfc3339_ms(text: &str) -> Result<i64, String> {
    let bad = || format!("'{text}' is not an RFC 3339 timestamp");
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = text.get(range).ok_or_else(bad)?;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        part.parse().map_err(|_| bad())
    };
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return Err(bad());
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return Err(bad());
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let len = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return Err(bad());
        }
        let first3: String = fraction[..len].chars().chain("000".chars()).take(3).collect();
        millis = first3.parse::<i64>().map_err(|_| bad())?;
        rest = &fraction[len..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return Err(bad()),
            };
            let hours: i64 = rest[1..3].parse().map_err(|_| bad())?;
            let minutes: i64 = rest[4..6].parse().map_err(|_| bad())?;
            sign * (hours * 60 + minutes)
        }
        _ => return Err(bad()),
    };
    // Days since 1970-01-01 in the proleptic Gregorian calendar.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1000 + millis)
}

fn show_body(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(text) => format!("{text:?}"),
        Err(_) => format!("base64 {}", BASE64.encode(body)),
    }
}

/// Runs `F` (initialised with `config`) over `messages` and compares each
/// result with its expectation (matched by id): verdict, reason and body.
/// Returns how many messages were checked, or a report of every mismatch.
pub fn check<F: Filter>(config: &Config, messages: &[Message], expectations: &[Expectation]) -> Result<usize, String> {
    let mut filter = F::init(config).map_err(|err| format!("init failed: {err}"))?;
    let mut by_id: HashMap<&str, &Expectation> = HashMap::new();
    for expectation in expectations {
        if by_id.insert(&expectation.id, expectation).is_some() {
            return Err(format!("two expectations for id {}", expectation.id));
        }
    }
    let mut report = String::new();
    for msg in messages {
        let Some(expected) = by_id.remove(msg.id.as_str()) else {
            let _ = writeln!(report, "{}: no expectation", msg.id);
            continue;
        };
        let (verdict, reason, body) = match filter.decide(msg) {
            Ok(Decision {
                verdict, reason, body, ..
            }) => (Some(verdict), reason, body),
            Err(error) => (None, error, None),
        };
        let name = |v: Option<Verdict>| v.map_or("failed", Verdict::as_str);
        if verdict != expected.verdict {
            let _ = writeln!(
                report,
                "{}: verdict {} (expected {})",
                msg.id,
                name(verdict),
                name(expected.verdict)
            );
        }
        if reason != expected.reason {
            let _ = writeln!(report, "{}: reason {reason:?} (expected {:?})", msg.id, expected.reason);
        }
        if body != expected.body {
            let show = |b: &Option<Vec<u8>>| b.as_deref().map_or("no body".into(), show_body);
            let _ = writeln!(
                report,
                "{}: body {} (expected {})",
                msg.id,
                show(&body),
                show(&expected.body)
            );
        }
    }
    let mut missing: Vec<&str> = by_id.into_keys().collect();
    missing.sort_unstable();
    for id in missing {
        let _ = writeln!(report, "{id}: expected but not in the input");
    }
    if report.is_empty() {
        Ok(messages.len())
    } else {
        Err(report)
    }
}

/// Reads the two files, runs [`check`] and panics with a readable report on
/// any mismatch (for `#[test]` functions). Returns how many messages matched.
pub fn assert_examples<F: Filter>(config: &Config, input_path: &str, expected_path: &str) -> usize {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_else(|err| panic!("cannot read {path}: {err}"));
    let messages = parse_messages(&read(input_path)).unwrap_or_else(|err| panic!("{input_path}: {err}"));
    let expectations = parse_expectations(&read(expected_path)).unwrap_or_else(|err| panic!("{expected_path}: {err}"));
    match check::<F>(config, &messages, &expectations) {
        Ok(count) => count,
        Err(report) => panic!("{input_path} does not match {expected_path}:\n{report}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_and_minimal_messages() {
        let jsonl = r#"
{"id": "m-1", "body": "héllo", "attributes": {"x-test": "1", "n": 5}, "origin": {"system": "rabbitmq", "dlq": "orders.dlq", "original_queue": "orders"}, "failure": {"reason": "rejected", "error_text": "timeout", "error_class": "TimeoutError", "receive_count": 3, "first_failed_at": "2026-11-01T10:00:00Z", "last_failed_at": "2026-11-01T10:05:00.5+01:00"}, "replay_count": 2}

{"id": "m-2", "body_base64": "//4A"}
{"id": "m-3"}
"#;
        let msgs = parse_messages(jsonl).unwrap();
        assert_eq!(msgs.len(), 3);
        let m = &msgs[0];
        assert_eq!(m.body_str(), Some("héllo"));
        assert_eq!(m.attribute("x-test"), Some("1"));
        assert_eq!(m.attribute("n"), Some("5"));
        assert_eq!(m.origin.original_queue.as_deref(), Some("orders"));
        assert_eq!(m.failure.receive_count, Some(3));
        assert_eq!(m.failure.first_failed_at_ms, Some(1_793_527_200_000));
        assert_eq!(
            m.failure.last_failed_at_ms,
            Some(1_793_527_200_000 + 5 * 60_000 - 3_600_000 + 500)
        );
        assert_eq!(m.replay_count, 2);
        assert_eq!(msgs[1].body, vec![0xff, 0xfe, 0x00]);
        assert!(msgs[2].body.is_empty());
        assert!(msgs[2].failure.is_unknown());
    }

    #[test]
    fn rejects_bad_lines() {
        assert!(
            parse_messages(r#"{"id": "a", "body": "x", "body_base64": "eA=="}"#)
                .unwrap_err()
                .contains("not both")
        );
        assert!(
            parse_messages(r#"{"id": "a", "bdy": "x"}"#)
                .unwrap_err()
                .starts_with("line 1:")
        );
        assert!(parse_expectations(r#"{"id": "a", "verdict": "drop", "reason": ""}"#).is_err());
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59.999Z"), Ok(-1));
        assert_eq!(parse_rfc3339_ms("2000-03-01T00:00:00Z"), Ok(951_868_800_000));
        assert_eq!(parse_rfc3339_ms("2000-03-01T02:00:00+02:00"), Ok(951_868_800_000));
        assert!(parse_rfc3339_ms("2000-13-01T00:00:00Z").is_err());
        assert!(parse_rfc3339_ms("yesterday").is_err());
        assert!(parse_rfc3339_ms("2000-03-01T00:00:00").is_err());
    }

    struct Echo;

    impl Filter for Echo {
        fn init(_: &Config) -> Result<Self, String> {
            Ok(Echo)
        }

        fn decide(&mut self, msg: &Message) -> Result<Decision, String> {
            match msg.body_str() {
                Some("fail") => Err("no".into()),
                Some(text) => Ok(Decision::replay_with_body("echo", text.to_uppercase())),
                None => Ok(Decision::skip("binary")),
            }
        }
    }

    #[test]
    fn check_reports_every_mismatch() {
        let msgs = parse_messages(
            "{\"id\":\"a\",\"body\":\"x\"}\n{\"id\":\"b\",\"body\":\"fail\"}\n{\"id\":\"c\",\"body_base64\":\"/w==\"}",
        )
        .unwrap();
        let good = parse_expectations(
            "{\"id\":\"a\",\"verdict\":\"replay\",\"reason\":\"echo\",\"body\":\"X\"}\n\
             {\"id\":\"b\",\"verdict\":\"failed\",\"reason\":\"no\"}\n\
             {\"id\":\"c\",\"verdict\":\"skip\",\"reason\":\"binary\"}",
        )
        .unwrap();
        assert_eq!(check::<Echo>(&Config::default(), &msgs, &good), Ok(3));

        let bad = parse_expectations(
            "{\"id\":\"a\",\"verdict\":\"replay\",\"reason\":\"echo\"}\n\
             {\"id\":\"b\",\"verdict\":\"skip\",\"reason\":\"no\"}\n\
             {\"id\":\"z\",\"verdict\":\"skip\",\"reason\":\"?\"}",
        )
        .unwrap();
        let report = check::<Echo>(&Config::default(), &msgs, &bad).unwrap_err();
        assert!(report.contains("a: body \"X\" (expected no body)"), "{report}");
        assert!(report.contains("b: verdict failed (expected skip)"), "{report}");
        assert!(report.contains("c: no expectation"), "{report}");
        assert!(report.contains("z: expected but not in the input"), "{report}");
    }
}
