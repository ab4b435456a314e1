//! A row of a failed-jobs table as an envelope.

use super::url::PgUrl;
use crate::core::envelope::Envelope;
use crate::core::failed_jobs;

/// A row to an envelope ([`failed_jobs::envelope`]); `row_json` is the row as `row_to_json` wrote it.
pub(super) fn envelope(url: &PgUrl, id: String, body: Vec<u8>, row_json: &str) -> Result<Envelope, String> {
    let row: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(row_json).map_err(|e| format!("row {id} could not be read: {e}"))?;
    let row = row
        .into_iter()
        .map(|(name, value)| {
            let text = match value {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s),
                other => Some(other.to_string()),
            };
            (name, text)
        })
        .collect();
    Ok(failed_jobs::envelope(&url.table.columns, id, body, row))
}
