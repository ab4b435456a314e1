//! Error groups: messages whose error text differs only in values (ids, numbers, addresses, quoted
//! strings) counted together, with a few samples each. Plans write them to their file; reports and the
//! live page show them.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::core::envelope::{Envelope, Outcome};
use crate::filter::ChainOutcome;

const SAMPLES_PER_GROUP: usize = 3;
/// Most distinct groups kept; past it, new patterns count under [`OTHER_ERRORS`] (memory stays bounded
/// whatever the DLQ holds).
const MAX_GROUPS: usize = 1000;
/// The group of the patterns past `MAX_GROUPS`.
pub const OTHER_ERRORS: &str = "(other errors: more distinct patterns than a report keeps)";

/// A decision kept as a sample of its error group.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sample {
    /// Message id.
    pub id: String,
    /// Outcome.
    pub verdict: Outcome,
    /// The deciding module's reason.
    pub reason: String,
}

/// Messages whose error text normalises to the same pattern.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ErrorGroup {
    /// The normalised error text.
    pub pattern: String,
    /// Messages in the group.
    pub count: u64,
    /// Messages per outcome.
    pub verdicts: HashMap<Outcome, u64>,
    /// A few sample decisions.
    pub samples: Vec<Sample>,
}

/// Error groups being counted.
#[derive(Debug, Default, Clone)]
pub struct ErrorGroups {
    groups: HashMap<String, ErrorGroup>,
}

impl ErrorGroups {
    /// Count one decision in its message's group.
    pub fn add(&mut self, env: &Envelope, outcome: &ChainOutcome) {
        let mut text = error_pattern(env);
        if self.groups.len() >= MAX_GROUPS && !self.groups.contains_key(&text) {
            text = OTHER_ERRORS.to_owned();
        }
        let group = self.groups.entry(text.clone()).or_insert_with(|| ErrorGroup {
            pattern: text,
            ..Default::default()
        });
        group.count += 1;
        *group.verdicts.entry(outcome.outcome).or_default() += 1;
        if group.samples.len() < SAMPLES_PER_GROUP {
            group.samples.push(Sample {
                id: env.id.clone(),
                verdict: outcome.outcome,
                reason: outcome.reason.clone(),
            });
        }
    }

    /// The groups, largest first.
    pub fn sorted(&self) -> Vec<&ErrorGroup> {
        let mut groups: Vec<&ErrorGroup> = self.groups.values().collect();
        groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.pattern.cmp(&b.pattern)));
        groups
    }

    /// The groups, largest first, owned.
    pub fn into_sorted(self) -> Vec<ErrorGroup> {
        let mut groups: Vec<ErrorGroup> = self.groups.into_values().collect();
        groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.pattern.cmp(&b.pattern)));
        groups
    }
}

/// The group a message's error belongs to: its error text (else the broker's reason), normalised.
pub fn error_pattern(env: &Envelope) -> String {
    env.failure
        .error_text
        .as_deref()
        .or(env.failure.reason.as_deref())
        .map_or_else(|| "(no failure context)".to_owned(), normalize_error)
}

/// Normalise an error text so that messages failing the same way group together: quoted values become
/// `<str>`, addresses `<addr>`, numbers `<n>` (HTTP status codes 100–599 are kept), and words with digits
/// (ids, hex, hostnames with suffixes) `<id>`.
pub fn normalize_error(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if !word.is_empty() {
            out.push_str(&normalize_word(word));
            word.clear();
        }
    };
    while let Some(c) = chars.next() {
        if c == '\'' || c == '"' || c == '`' {
            flush(&mut word, &mut out);
            let mut quoted = String::new();
            let mut closed = false;
            for q in chars.by_ref() {
                if q == c {
                    closed = true;
                    break;
                }
                quoted.push(q);
            }
            if closed {
                out.push_str("<str>");
            } else {
                out.push(c);
                out.push_str(&quoted);
            }
        } else if c.is_alphanumeric() || "_.:-/".contains(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn normalize_word(word: &str) -> String {
    let trimmed = word.trim_end_matches([':', '.', '-', '/']);
    let tail = &word[trimmed.len()..];
    if !trimmed.chars().any(|c| c.is_ascii_digit()) {
        return word.to_owned();
    }
    let normalized = if trimmed.chars().all(|c| c.is_ascii_digit()) {
        match trimmed.parse::<u32>() {
            Ok(n) if trimmed.len() == 3 && (100..600).contains(&n) => trimmed.to_owned(),
            _ => "<n>".to_owned(),
        }
    } else if is_address(trimmed) {
        "<addr>".to_owned()
    } else if let Some(unit) = number_with_unit(trimmed) {
        format!("<n>{unit}")
    } else {
        "<id>".to_owned()
    };
    normalized + tail
}

fn is_address(word: &str) -> bool {
    let host = word.rsplit_once(':').map_or(word, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            word
        }
    });
    let parts: Vec<&str> = host.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()))
}

fn number_with_unit(word: &str) -> Option<&str> {
    let digits = word.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = word.split_at(digits);
    (!number.is_empty() && unit.chars().all(|c| c.is_ascii_alphabetic()) && unit.len() <= 3).then_some(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_that_differ_only_in_values_group_together() {
        let cases = [
            (
                "upstream timeout after 30000ms calling payments-7f9c",
                "upstream timeout after <n>ms calling <id>",
            ),
            (
                "upstream timeout after 12000ms calling payments-01ab",
                "upstream timeout after <n>ms calling <id>",
            ),
            ("connection refused: 10.0.3.12:5432", "connection refused: <addr>"),
            (
                "HTTP 503 Service Unavailable from inventory",
                "HTTP 503 Service Unavailable from inventory",
            ),
            (
                "validation failed: field 'sku' missing in item 3",
                "validation failed: field <str> missing in item <n>",
            ),
            (
                "deadlock detected while updating order ord-000481",
                "deadlock detected while updating order <id>",
            ),
            (
                "429 Too Many Requests (retry after 12s)",
                "429 Too Many Requests (retry after <n>s)",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(normalize_error(text), want, "{text}");
        }
    }
}
