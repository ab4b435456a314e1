//! A row of a failed-jobs table as an envelope.

use chrono::{DateTime, NaiveDateTime, Utc};

use super::url::PgUrl;
use crate::core::envelope::{Envelope, FailureContext, Origin, REPLAY_COUNT_ATTRIBUTE};

/// A row to an envelope: the body column is the body; the other columns are attributes; error,
/// failed-at and queue fill the failure context and origin.
pub(super) fn envelope(url: &PgUrl, id: String, body: Vec<u8>, row_json: &str) -> Result<Envelope, String> {
    let c = &url.columns;
    let row: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(row_json).map_err(|e| format!("row {id} could not be read: {e}"))?;
    let mut attributes = Vec::with_capacity(row.len());
    let mut notes = Vec::new();
    let mut failure = FailureContext::default();
    let mut original = None;
    for (name, value) in row {
        if name == c.body {
            continue;
        }
        let text = match value {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        if name == c.error {
            // Laravel stores the whole stack trace: the first line is the error.
            failure.error_text = Some(text.lines().next().unwrap_or("").to_owned());
        } else if name == c.failed_at {
            match parse_time(&text) {
                Some(t) => failure.last_failed_at = Some(t),
                None => notes.push(format!("{name} {text:?} is not a time")),
            }
        } else if name == c.queue {
            original = Some(text.clone());
        }
        attributes.push((name, text));
    }
    let replay_count = attributes
        .iter()
        .find(|(k, _)| k == REPLAY_COUNT_ATTRIBUTE)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    Ok(Envelope {
        id,
        body,
        attributes,
        origin: Origin {
            system: "database".into(),
            dlq: c.table.clone(),
            original_queue: original,
        },
        failure,
        replay_count,
        notes,
        id_unique_per_send: true,
        ..Default::default()
    })
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    // `timestamp without time zone` from row_to_json: 2026-11-20T08:00:00[.123456], taken as UTC.
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}
