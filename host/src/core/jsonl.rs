//! The JSONL message format: one dead letter per line.
//!
//! It is what `redrive filter test --input` reads and what the `file:` source reads and sinks write:
//!
//! ```json
//! {"id": "m-1", "body": "{\"order\":42}", "attributes": {"x-tenant": "acme"},
//!  "origin": {"system": "rabbitmq", "dlq": "orders.dlq", "original_queue": "orders"},
//!  "failure": {"reason": "rejected", "error_text": "timeout after 30s", "error_class": "TimeoutError",
//!              "receive_count": 3, "first_failed_at": "2026-11-01T10:00:00Z", "last_failed_at": "2026-11-01T10:05:00Z"},
//!  "replay_count": 0}
//! ```
//!
//! `id` is required. The body is either `body` (UTF-8 text) or `body_base64` (standard base64, for binary
//! bodies); with neither the body is empty. Attribute values that are not strings are kept as JSON text.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::envelope::{Envelope, FailureContext, Origin, REPLAY_COUNT_ATTRIBUTE};

/// A line that could not be read as a message.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub problem: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMessage {
    id: Value,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
    #[serde(default)]
    attributes: Option<Map<String, Value>>,
    #[serde(default)]
    origin: Option<Origin>,
    #[serde(default)]
    failure: Option<FailureContext>,
    #[serde(default)]
    replay_count: Option<u32>,
}

/// One line's bytes as text, or why it is not text.
pub fn line_text(bytes: &[u8], line: usize) -> Result<&str, LineError> {
    std::str::from_utf8(bytes).map_err(|e| LineError {
        line,
        problem: format!("not UTF-8 text (invalid byte at column {})", e.valid_up_to() + 1),
    })
}

/// Parse one JSONL line (1-based `line` number, for errors) into an envelope.
/// `default_origin` is used when the line carries no `origin`.
pub fn parse_message(text: &str, line: usize, default_origin: &Origin) -> Result<Envelope, LineError> {
    let err = |problem: String| LineError { line, problem };
    if text.starts_with('\u{feff}') {
        return Err(err(
            "starts with a byte-order mark (U+FEFF, bytes EF BB BF): save the file as UTF-8 without a BOM".into(),
        ));
    }
    let raw: RawMessage = serde_json::from_str(text).map_err(|e| err(format!("not a message object: {e}")))?;
    let id = match raw.id {
        Value::String(s) if !s.is_empty() => s,
        Value::Number(n) => n.to_string(),
        other => return Err(err(format!("`id` must be a non-empty string, found {other}"))),
    };
    let body = match (raw.body, raw.body_base64) {
        (Some(_), Some(_)) => return Err(err("give either `body` or `body_base64`, not both".into())),
        (Some(text), None) => text.into_bytes(),
        (None, Some(b64)) => BASE64
            .decode(b64.trim())
            .map_err(|e| err(format!("`body_base64` is not valid base64: {e}")))?,
        (None, None) => Vec::new(),
    };
    let attributes: Vec<(String, String)> = raw
        .attributes
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect();
    Ok(Envelope {
        id,
        body,
        origin: raw.origin.unwrap_or_else(|| default_origin.clone()),
        failure: raw.failure.unwrap_or_default(),
        // The field wins; otherwise the header redrive sets on every forward.
        replay_count: raw
            .replay_count
            .or_else(|| {
                attributes
                    .iter()
                    .find(|(k, _)| k == REPLAY_COUNT_ATTRIBUTE)
                    .and_then(|(_, v)| v.trim().parse().ok())
            })
            .unwrap_or(0),
        attributes,
        ..Envelope::default()
    })
}

/// Write a body as `body` when it is UTF-8 text, else as `body_base64`.
pub fn insert_body(obj: &mut Map<String, Value>, body: &[u8]) {
    match std::str::from_utf8(body) {
        Ok(text) => obj.insert("body".into(), Value::String(text.to_owned())),
        Err(_) => obj.insert("body_base64".into(), Value::String(BASE64.encode(body))),
    };
}

/// Read a body written by [`insert_body`]: `body` or `body_base64`, `None` when neither is present.
pub fn read_body(obj: &Map<String, Value>) -> Result<Option<Vec<u8>>, String> {
    if let Some(v) = obj.get("body") {
        return v
            .as_str()
            .map(|s| Some(s.as_bytes().to_vec()))
            .ok_or_else(|| "`body` must be a string".to_string());
    }
    if let Some(v) = obj.get("body_base64") {
        let s = v.as_str().ok_or("`body_base64` must be a string")?;
        return BASE64
            .decode(s.trim())
            .map(Some)
            .map_err(|e| format!("`body_base64` is not valid base64: {e}"));
    }
    Ok(None)
}

#[derive(Serialize)]
struct OutOrigin<'a> {
    system: &'a str,
    dlq: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_queue: Option<&'a str>,
}

/// Serialise an envelope as one JSONL line (without the trailing newline), in the format
/// [`parse_message`] reads.
pub fn message_to_json(env: &Envelope) -> Value {
    let mut obj = Map::new();
    obj.insert("id".into(), Value::String(env.id.clone()));
    insert_body(&mut obj, &env.body);
    if !env.attributes.is_empty() {
        let attrs: Map<String, Value> = env
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        obj.insert("attributes".into(), Value::Object(attrs));
    }
    let origin = OutOrigin {
        system: &env.origin.system,
        dlq: &env.origin.dlq,
        original_queue: env.origin.original_queue.as_deref(),
    };
    obj.insert("origin".into(), serde_json::to_value(origin).unwrap_or(Value::Null));
    if !env.failure.is_empty() {
        obj.insert(
            "failure".into(),
            serde_json::to_value(&env.failure).unwrap_or(Value::Null),
        );
    }
    if env.replay_count > 0 {
        obj.insert("replay_count".into(), Value::from(env.replay_count));
    }
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            system: "file".into(),
            dlq: "dlq.jsonl".into(),
            original_queue: None,
        }
    }

    #[test]
    fn parses_text_and_binary_bodies() {
        let m = parse_message(r#"{"id":"a","body":"héllo"}"#, 1, &origin()).unwrap();
        assert_eq!(m.body, "héllo".as_bytes());
        assert_eq!(m.origin.system, "file");
        let m = parse_message(r#"{"id":"b","body_base64":"AAH/"}"#, 2, &origin()).unwrap();
        assert_eq!(m.body, vec![0, 1, 255]);
        let m = parse_message(r#"{"id":7}"#, 3, &origin()).unwrap();
        assert_eq!(m.id, "7");
        assert!(m.body.is_empty());
    }

    #[test]
    fn reports_problems_with_line_numbers() {
        let e = parse_message("{not json", 4, &origin()).unwrap_err();
        assert_eq!(e.line, 4);
        assert!(e.to_string().starts_with("line 4: not a message object"));
        let e = parse_message(r#"{"id":""}"#, 5, &origin()).unwrap_err();
        assert!(e.problem.contains("`id`"), "{e}");
        let e = parse_message(r#"{"id":"x","body":"a","body_base64":"AA=="}"#, 6, &origin()).unwrap_err();
        assert!(e.problem.contains("not both"), "{e}");
        let e = parse_message(r#"{"id":"x","bdy":"a"}"#, 7, &origin()).unwrap_err();
        assert!(e.problem.contains("unknown field `bdy`"), "{e}");
    }

    #[test]
    fn a_byte_order_mark_and_invalid_utf8_are_named() {
        let e = parse_message("\u{feff}{\"id\":\"a\"}", 1, &origin()).unwrap_err();
        assert!(e.to_string().contains("byte-order mark"), "{e}");
        let e = line_text(b"{\"id\":\"\xff\"}", 3).unwrap_err();
        assert_eq!(e.to_string(), "line 3: not UTF-8 text (invalid byte at column 8)");
    }

    #[test]
    fn failure_context_and_attributes_round_trip() {
        let line = r#"{"id":"m","body":"x","attributes":{"k":"v","n":3},"failure":{"error_text":"boom","receive_count":3,"first_failed_at":"2026-11-01T10:00:00Z"},"replay_count":2}"#;
        let m = parse_message(line, 1, &origin()).unwrap();
        assert_eq!(m.attribute("n"), Some("3"));
        assert_eq!(m.failure.receive_count, Some(3));
        assert_eq!(m.replay_count, 2);
        let again = parse_message(&message_to_json(&m).to_string(), 1, &origin()).unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn binary_body_round_trips_as_base64() {
        let env = Envelope {
            id: "bin".into(),
            body: vec![0xff, 0xfe, 0],
            origin: origin(),
            ..Default::default()
        };
        let json = message_to_json(&env);
        assert!(json.get("body_base64").is_some());
        assert_eq!(parse_message(&json.to_string(), 1, &origin()).unwrap(), env);
    }
}
