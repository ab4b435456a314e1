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
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
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
    attributes: AttributeList,
    #[serde(default)]
    origin: Option<Origin>,
    #[serde(default)]
    failure: Option<FailureContext>,
    #[serde(default)]
    replay_count: Option<u32>,
}

/// A line's `attributes` object, read straight into name-value pairs: sorted by name, the last of a
/// repeated name wins, values that are not strings kept as JSON text.
#[derive(Default)]
struct AttributeList(Vec<(String, String)>);

impl<'de> Deserialize<'de> for AttributeList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = AttributeList;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of attributes")
            }

            fn visit_unit<E: serde::de::Error>(self) -> Result<AttributeList, E> {
                Ok(AttributeList::default())
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AttributeList, A::Error> {
                let mut pairs: Vec<(String, String)> = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some((name, value)) = map.next_entry::<String, Value>()? {
                    let value = match value {
                        Value::String(text) => text,
                        other => other.to_string(),
                    };
                    pairs.push((name, value));
                }
                Ok(AttributeList(sorted_last_of_each_name(pairs, |pair| pair.0.as_str())))
            }
        }
        deserializer.deserialize_any(Pairs)
    }
}

/// `items` sorted by name, keeping only the last of each name (what a JSON object with a repeated key means).
fn sorted_last_of_each_name<T>(mut items: Vec<T>, name: impl Fn(&T) -> &str) -> Vec<T> {
    // Stable: of equal names, the later one stays later.
    items.sort_by(|a, b| name(a).cmp(name(b)));
    let mut kept: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        match kept.last_mut() {
            Some(last) if name(last) == name(&item) => *last = item,
            _ => kept.push(item),
        }
    }
    kept
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
    let attributes = raw.attributes.0;
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

/// An envelope as one JSONL line, in the format [`parse_message`] reads, serialised straight from the
/// envelope: nothing is copied into an intermediate [`Value`]. The keys come in sorted order, as a
/// `serde_json` object writes them; attributes are sorted by name and, where a name repeats, the last
/// value wins (what reading the line back gives).
pub struct JsonlMessage<'a>(pub &'a Envelope);

impl Serialize for JsonlMessage<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let env = self.0;
        let mut map = serializer.serialize_map(None)?;
        if !env.attributes.is_empty() {
            map.serialize_entry("attributes", &SortedAttributes(&env.attributes))?;
        }
        match std::str::from_utf8(&env.body) {
            Ok(text) => map.serialize_entry("body", text)?,
            Err(_) => map.serialize_entry("body_base64", &BASE64.encode(&env.body))?,
        }
        if !env.failure.is_empty() {
            map.serialize_entry("failure", &env.failure)?;
        }
        map.serialize_entry("id", &env.id)?;
        map.serialize_entry(
            "origin",
            &OutOrigin {
                system: &env.origin.system,
                dlq: &env.origin.dlq,
                original_queue: env.origin.original_queue.as_deref(),
            },
        )?;
        if env.replay_count > 0 {
            map.serialize_entry("replay_count", &env.replay_count)?;
        }
        map.end()
    }
}

/// Attributes as a JSON object: sorted by name, the last of a repeated name wins.
struct SortedAttributes<'a>(&'a [(String, String)]);

impl Serialize for SortedAttributes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let kept = sorted_last_of_each_name(self.0.iter().collect(), |pair| pair.0.as_str());
        let mut map = serializer.serialize_map(Some(kept.len()))?;
        for (name, value) in kept {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct OutOrigin<'a> {
    system: &'a str,
    dlq: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_queue: Option<&'a str>,
}

/// Append an envelope to `buf` as one JSONL line, newline included.
pub fn write_message_line(buf: &mut Vec<u8>, env: &Envelope) {
    // Serialising these types into a Vec cannot fail: every key is a string and no value can refuse.
    let _ = serde_json::to_writer(&mut *buf, &JsonlMessage(env));
    buf.push(b'\n');
}

/// An envelope as a JSON object, in the format [`parse_message`] reads (for callers that change it before
/// writing; [`write_message_line`] writes one without the copy).
pub fn message_to_json(env: &Envelope) -> Value {
    serde_json::to_value(JsonlMessage(env)).unwrap_or(Value::Null)
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

    #[test]
    fn a_written_line_has_sorted_keys_and_the_last_of_a_repeated_attribute() {
        let env = Envelope {
            id: "m-1".into(),
            body: br#"{"a":"\u00e9\n"}"#.to_vec(),
            attributes: vec![
                ("z".into(), "1".into()),
                ("k".into(), "first".into()),
                ("a".into(), "\"quoted\"".into()),
                ("k".into(), "second".into()),
            ],
            origin: origin(),
            failure: FailureContext {
                error_text: Some("boom\n\tat x".into()),
                receive_count: Some(4),
                ..Default::default()
            },
            replay_count: 3,
            ..Default::default()
        };
        let mut line = Vec::new();
        write_message_line(&mut line, &env);
        assert_eq!(line.last(), Some(&b'\n'));
        let text = std::str::from_utf8(&line[..line.len() - 1]).unwrap();
        assert!(
            text.starts_with(r#"{"attributes":{"a":"\"quoted\"","k":"second","z":"1"},"body":"#),
            "{text}"
        );
        let back = parse_message(text, 1, &Origin::default()).unwrap();
        let mut expected = env.clone();
        expected.attributes = vec![
            ("a".into(), "\"quoted\"".into()),
            ("k".into(), "second".into()),
            ("z".into(), "1".into()),
        ];
        assert_eq!(back, expected);
        assert_eq!(serde_json::from_str::<Value>(text).unwrap(), message_to_json(&env));
    }

    #[test]
    fn attributes_are_read_sorted_with_the_last_of_a_repeated_name() {
        let line = r#"{"id":"m","attributes":{"b":"2","a":true,"b":"3","c":null}}"#;
        let m = parse_message(line, 1, &origin()).unwrap();
        let names: Vec<(&str, &str)> = m.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(names, [("a", "true"), ("b", "3"), ("c", "null")]);
        let m = parse_message(r#"{"id":"m","attributes":null}"#, 1, &origin()).unwrap();
        assert!(m.attributes.is_empty());
        let e = parse_message(r#"{"id":"m","attributes":"x"}"#, 2, &origin()).unwrap_err();
        assert!(e.problem.contains("expected an object of attributes"), "{e}");
    }
}
